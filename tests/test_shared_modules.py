"""Models that share a module (one Linear applied twice) or tie a weight across two modules.

torch 2.13's ``functional_call`` swaps a module's tensors once per name it is registered under and
"restores" a module registered twice with the swapped tensor: the user's model is left holding
plain tensors instead of its Parameters. Every library function that evaluates a model functionally
goes through ``tdlcourse._functional.call``; these tests check that the model comes back as it was
and that the numbers match an explicit function of the tied weights (the oracle).
"""

import pytest
import torch
from torch import nn

from tdlcourse import _functional, curvature, landscape, ntk, parity, randmat


def shared_net(seed: int = 0, d: int = 3) -> nn.Sequential:
    torch.manual_seed(seed)
    lin = nn.Linear(d, d)
    return nn.Sequential(lin, nn.Tanh(), lin, nn.Tanh(), nn.Linear(d, 1)).double()


def explicit(params: dict, x: torch.Tensor) -> torch.Tensor:
    """The shared net as a function of its three distinct tensors (the oracle)."""
    W, b, Wo, bo = params["0.weight"], params["0.bias"], params["4.weight"], params["4.bias"]
    h = torch.tanh(torch.tanh(x @ W.T + b) @ W.T + b)
    return h @ Wo.T + bo


def intact(model: nn.Module, before: dict) -> list[str]:
    bad = [f"{name}.{p}" for name, m in model.named_modules(remove_duplicate=False)
           for p, t in m._parameters.items() if t is not None and not isinstance(t, nn.Parameter)]
    now = dict(model.named_parameters())
    bad += [k for k, v in before.items() if k not in now or not torch.equal(now[k].detach(), v)]
    return bad


X = torch.randn(6, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
Y = torch.randn(6, 1, generator=torch.Generator().manual_seed(3), dtype=torch.float64)


def mse(out, y):
    return (out - y).pow(2).mean()


CALLS = {
    "hessian_eigs": lambda m: curvature.hessian_eigs(m, mse, (X, Y), k=1),
    "full_hessian": lambda m: curvature.full_hessian(m, mse, (X, Y)),
    "hessian_trace": lambda m: curvature.hessian_trace(m, mse, (X, Y), tol=0.5),
    "surface_1d": lambda m: landscape.surface_1d(m, mse, (X, Y), landscape.random_directions(m, 1)[0], steps=3),
    "jacobian_singular_values": lambda m: randmat.jacobian_singular_values(m, X),
    "parity_gradient_variance": lambda m: parity.parity_gradient_variance(m, 3),
    "empirical_ntk": lambda m: ntk.empirical_ntk(m, X),
}


@pytest.mark.parametrize("name", sorted(CALLS))
def test_shared_module_model_comes_back_intact(name):
    model = shared_net()
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    CALLS[name](model)
    assert intact(model, before) == []
    assert model[0] is model[2]


def test_call_matches_the_explicit_function_and_its_gradient():
    model = shared_net()
    params = {k: v.detach().clone().requires_grad_() for k, v in model.named_parameters()}
    out = _functional.call(model, params, (X,))
    ref = explicit(params, X)
    assert torch.allclose(out, ref, atol=1e-14)
    g = torch.autograd.grad(out.sum(), list(params.values()))
    g_ref = torch.autograd.grad(ref.sum(), list(params.values()))
    for a, b in zip(g, g_ref):
        assert torch.allclose(a, b, atol=1e-13)


def test_full_hessian_of_a_shared_net_against_autograd_of_the_explicit_function():
    model = shared_net()
    names = [k for k, _ in model.named_parameters()]
    spec = _functional.param_spec(model)
    theta = _functional.flat_params(model).detach()

    def loss(flat):
        return mse(explicit(dict(zip(names, spec.unflatten(flat).values())), X), Y)

    H_ref = torch.autograd.functional.hessian(loss, theta)
    H = curvature.full_hessian(model, mse, (X, Y))
    assert torch.allclose(H, H_ref, atol=1e-12)


def test_full_hessian_with_nn_mseloss():
    """torch 2.13's forward-over-reverse fails on nn.MSELoss; full_hessian must not use it."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 1)).double()
    H = curvature.full_hessian(model, nn.MSELoss(), (X, Y))
    H_ref = curvature.full_hessian(model, mse, (X, Y))
    assert torch.allclose(H, H_ref, atol=1e-14)
    with pytest.raises(ValueError, match="double_backward"):
        curvature.HessianOperator(model, nn.MSELoss(), (X, Y), method="forward_over_reverse")(torch.ones(21, dtype=torch.float64))


def test_weight_tied_across_modules():
    torch.manual_seed(4)
    a, b = nn.Linear(3, 3), nn.Linear(3, 3)
    b.weight = a.weight
    tied = nn.Sequential(a, nn.Tanh(), b, nn.Tanh(), nn.Linear(3, 1)).double()
    aliases = _functional.tensor_aliases(tied)
    assert set(aliases["0.weight"]) == {"0.weight", "2.weight"}
    before = {k: v.detach().clone() for k, v in tied.named_parameters()}
    p = {k: v.detach() * 0 + 0.5 for k, v in tied.named_parameters()}
    out = _functional.call(tied, p, (X,))
    h = torch.tanh(torch.tanh(X @ p["0.weight"].T + p["0.bias"]) @ p["0.weight"].T + p["2.bias"])
    assert torch.allclose(out, h @ p["4.weight"].T + p["4.bias"], atol=1e-14)
    assert intact(tied, before) == []
    assert tied[0].weight is tied[2].weight


def test_no_sharing_means_no_aliases():
    assert _functional.tensor_aliases(nn.Sequential(nn.Linear(2, 2), nn.Linear(2, 1))) is None
