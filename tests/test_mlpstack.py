"""The hand-written backward pass of K stacked MLPs (``_mlpstack``) against autograd (float64 oracle)."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from tdlcourse import _mlpstack

K, B = 3, 7


def stacked(model: nn.Module, k: int = K, seed: int = 0) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(k, *p.shape, generator=g, dtype=torch.float64) * 0.7 for p in model.parameters()]


def autograd_reference(plan, params, x, shared, loss, lf, y, y_shared):
    leaves = [p.clone().requires_grad_(True) for p in params]
    losses = _mlpstack.batched_loss(loss, lf, _mlpstack.forward(plan, leaves, x, shared), y, y_shared)
    return losses.detach(), torch.autograd.grad(losses.sum(), leaves)


def check(model, x, shared, loss, y, y_shared, lf=None):
    names = [n for n, _ in model.named_parameters()]
    plan = _mlpstack.plan(model, names, x.dim() - (0 if shared else 1))
    assert plan is not None
    params = stacked(model)
    out = _mlpstack.forward(plan, params, x, shared)
    for j in range(K):  # the plan computes what the model computes
        member = torch.func.functional_call(model, dict(zip(names, (p[j] for p in params))), (x if shared else x[j],))
        torch.testing.assert_close(out[j], member, rtol=1e-12, atol=1e-12)
    lf = lf or (F.cross_entropy if loss == "cross_entropy" else None)
    ref_l, ref_g = autograd_reference(plan, params, x, shared, loss, lf, y, y_shared)
    ws = _mlpstack.Workspace()
    for _ in range(2):  # the second pass reuses the workspace buffers
        losses, grads = _mlpstack.forward_backward(plan, params, x, shared, loss, lf, y, y_shared, ws)
        torch.testing.assert_close(losses, ref_l, rtol=1e-12, atol=1e-12)
        for name, g, r in zip(names, grads, ref_g):
            torch.testing.assert_close(g, r, rtol=1e-11, atol=1e-12, msg=f"gradient of {name}")


ACTIVATIONS = [nn.ReLU(), nn.Tanh(), nn.Sigmoid(), nn.GELU(), nn.GELU(approximate="tanh"),
               nn.LeakyReLU(0.1), nn.SiLU()]


@pytest.mark.parametrize("act", ACTIVATIONS, ids=lambda m: repr(m))
@pytest.mark.parametrize("fan_in", [2, 40])  # narrow input (broadcast bmm) and wide (one shared GEMM)
def test_backward_equals_autograd_for_every_activation(act, fan_in):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(fan_in, 5), act, nn.Linear(5, 4), copy.deepcopy(act), nn.Linear(4, 3)).double()
    x = torch.randn(B, fan_in, dtype=torch.float64)
    y = torch.randint(0, 3, (B,))
    check(model, x, True, "cross_entropy", y, True)


@pytest.mark.parametrize("loss", ["mse", "cross_entropy", "callable"])
def test_backward_with_per_model_data_and_labels(loss):
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=False), nn.Tanh(), nn.Identity(),
                          nn.Linear(5, 3)).double()
    x = torch.randn(K, B, 2, 3, dtype=torch.float64)  # one dataset per model, flattened inside
    if loss == "mse":
        y, lf = torch.randn(K, B, 3, dtype=torch.float64), None
    elif loss == "cross_entropy":
        y, lf = torch.randint(0, 3, (K, B)), None
    else:
        y = torch.randn(K, B, 3, dtype=torch.float64)
        loss = lf = lambda out, t: (out - t).abs().pow(3).sum() / 5  # noqa: E731 (autograd fallback)
    check(model, x, False, loss, y, False, lf)


def test_scalar_output_and_chain_of_activations():
    # d_out = 1 takes the transposed product; two activations in a row; an activation first.
    torch.manual_seed(2)
    model = nn.Sequential(nn.Tanh(), nn.Linear(2, 6), nn.ReLU(), nn.Sigmoid(), nn.Linear(6, 1)).double()
    x = torch.randn(B, 2, dtype=torch.float64)
    check(model, x, True, "mse", torch.randn(B, dtype=torch.float64), True)


def test_closed_form_loss_gradients_match_autograd():
    torch.manual_seed(3)
    out = torch.randn(K, B, 4, dtype=torch.float64)
    for loss, y in (("mse", torch.randn(B, 4, dtype=torch.float64)), ("cross_entropy", torch.randint(0, 4, (B,)))):
        lf = F.cross_entropy if loss == "cross_entropy" else None
        leaf = out.clone().requires_grad_(True)
        ref = _mlpstack.batched_loss(loss, lf, leaf, y, True)
        (g_ref,) = torch.autograd.grad(ref.sum(), leaf)
        losses, g = _mlpstack.loss_and_grad(loss, lf, out.clone(), y, True)
        torch.testing.assert_close(losses, ref.detach(), rtol=1e-13, atol=1e-13)
        torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=1e-13)
        # and against the per-model torch losses
        for j in range(K):
            per = F.cross_entropy(out[j], y) if loss == "cross_entropy" else F.mse_loss(out[j], y)
            torch.testing.assert_close(losses[j], per, rtol=1e-13, atol=1e-13)


def test_plan_refuses_what_it_cannot_backpropagate():
    assert _mlpstack.plan(nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.1)), ["0.weight", "0.bias"], 2) is None
    assert _mlpstack.plan(nn.Sequential(nn.Linear(2, 3), nn.LayerNorm(3)),
                          ["0.weight", "0.bias", "1.weight", "1.bias"], 2) is None
    assert _mlpstack.plan(nn.Sequential(nn.ReLU()), [], 2) is None  # no linear layer
    lin = nn.Linear(2, 2)
    assert _mlpstack.plan(nn.Sequential(lin, nn.Tanh(), nn.Linear(2, 2, bias=False)),
                          ["0.weight", "2.weight"], 2) is None  # 0.bias is frozen (not in the list)
    assert _mlpstack.plan(nn.Sequential(nn.Linear(2, 3), nn.Flatten()), ["0.weight", "0.bias"], 2) is None
    assert _mlpstack.plan(nn.Sequential(nn.Linear(4, 3)), ["0.weight", "0.bias"], 3) is None  # 3-D inputs
    # A module used twice (a shared activation instance, tied weights): the Sequential's children list
    # it once, so the engine refuses it rather than train a different network.
    act = nn.ReLU()
    assert _mlpstack.plan(nn.Sequential(nn.Linear(2, 3), act, nn.Linear(3, 3), act, nn.Linear(3, 1)),
                          ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias"], 2) is None
    assert _mlpstack.plan(nn.Sequential(lin, nn.Tanh(), lin), ["0.weight", "0.bias"], 2) is None


def test_plan_names_its_ops():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5, bias=False), nn.GELU(approximate="tanh"),
                          nn.Sequential(nn.Identity(), nn.Linear(5, 3)))  # nested: read in forward order
    plan = _mlpstack.plan(model, [n for n, _ in model.named_parameters()], 3)
    assert [type(op) for op in plan.ops] == [_mlpstack.FlattenOp, _mlpstack.LinearOp, _mlpstack.ActivationOp,
                                             _mlpstack.LinearOp]
    assert plan.ops[1] == _mlpstack.LinearOp(weight=0, bias=None) and plan.ops[3] == (1, 2)
    assert plan.first_linear() is plan.ops[1] and plan.ends_with_linear()
    gelu = plan.ops[2]
    assert gelu.reads == "in" and gelu.forward_ is None
    z = torch.randn(4, 5, dtype=torch.float64)
    torch.testing.assert_close(gelu.forward(z), F.gelu(z, approximate="tanh"))


def test_forward_with_workspace_equals_autograd_forward():
    torch.manual_seed(4)
    model = nn.Sequential(nn.Linear(40, 6), nn.ReLU(), nn.Tanh(), nn.Linear(6, 6), nn.GELU(), nn.Linear(6, 1)).double()
    names = [n for n, _ in model.named_parameters()]
    plan = _mlpstack.plan(model, names, 2)
    params = stacked(model)
    ws = _mlpstack.Workspace()
    for x, shared in ((torch.randn(B, 40, dtype=torch.float64), True), (torch.randn(K, B, 40, dtype=torch.float64), False)):
        ref = _mlpstack.forward(plan, params, x, shared)
        for _ in range(2):
            torch.testing.assert_close(_mlpstack.forward(plan, params, x, shared, ws), ref, rtol=1e-13, atol=1e-13)
        for j in range(K):  # and against the model itself, one member at a time
            member = torch.func.functional_call(model, dict(zip(names, (p[j] for p in params))), (x if shared else x[j],))
            torch.testing.assert_close(ref[j], member, rtol=1e-12, atol=1e-12)
