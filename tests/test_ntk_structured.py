"""The layer-wise (structured) empirical NTK against per-parameter gradients and the Jacobian path."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from tdlcourse import _ntkmlp, models, ntk


def _gradient_oracle(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor) -> torch.Tensor:
    """Theta[n, m, j, l] = sum_p df_j(x_n)/dp df_l(x_m)/dp, one autograd call per sample and output."""
    params = [p for p in model.parameters() if p.requires_grad]

    def grads(x):
        out = []
        for i in range(x.shape[0]):
            f = model(x[i:i + 1]).reshape(-1)
            out.append([torch.cat([g.reshape(-1) for g in torch.autograd.grad(f[j], params, retain_graph=True)])
                        for j in range(f.shape[0])])
        return torch.stack([torch.stack(r) for r in out])  # [n, k, P]

    g1, g2 = grads(x1), grads(x2)
    return torch.einsum("njp,mlp->nmjl", g1, g2)


def _x(n, d, seed):
    return torch.randn(n, d, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "gelu", "leaky_relu", "silu", "linear"])
def test_structured_equals_per_parameter_gradients(activation):
    model = models.mlp(4, [6, 5], 3, activation=activation, seed=1, dtype=torch.float64)
    x1, x2 = _x(5, 4, 2), _x(3, 4, 3)
    oracle = _gradient_oracle(model, x1, x2)
    full = ntk.empirical_ntk(model, x1, x2, reduce="full", method="structured")
    torch.testing.assert_close(full, oracle, rtol=1e-12, atol=1e-12)
    tr = ntk.empirical_ntk(model, x1, x2, method="structured")
    torch.testing.assert_close(tr, torch.einsum("nmjj->nm", oracle), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ntk.empirical_ntk(model, x1, x2, reduce="mean", method="structured"), tr / 3)
    # x2 omitted: the same as passing x1 twice
    torch.testing.assert_close(ntk.empirical_ntk(model, x1, method="structured"),
                               ntk.empirical_ntk(model, x1, x1.clone(), method="jacobian"), rtol=1e-12, atol=1e-12)


def test_frozen_parameters_flatten_eval_dropout_and_output_activation():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Dropout(0.5), nn.Linear(5, 2),
                          nn.Sigmoid()).double().eval()
    model[1].bias.requires_grad_(False)
    model[4].weight.requires_grad_(False)
    x1 = torch.randn(4, 2, 3, dtype=torch.float64)
    x2 = torch.randn(3, 2, 3, dtype=torch.float64)
    a = ntk.empirical_ntk(model, x1, x2, reduce="full", method="structured")
    torch.testing.assert_close(a, _gradient_oracle(model, x1, x2), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("sigma_b2", [0.0, 0.4])
@pytest.mark.parametrize("activation", ["relu", "erf", "tanh"])
def test_ntkmlp_structured_matches_jacobian_path(activation, sigma_b2):
    net = ntk.NTKMLP(3, 7, 2, d_out=2, activation=activation, sigma_w2=1.6, sigma_b2=sigma_b2,
                     generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x1, x2 = _x(5, 3, 4), _x(2, 3, 5)
    a = ntk.empirical_ntk(net, x1, x2, reduce="full", method="structured")
    b = ntk.empirical_ntk(net, x1, x2, reduce="full", method="jacobian")
    torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_auto_falls_back_where_the_formula_does_not_apply():
    x = _x(4, 3, 6)
    shared = nn.Linear(3, 3).double()
    tied = nn.Sequential(shared, nn.Tanh(), shared, nn.Linear(3, 1)).double()  # one Linear used twice
    assert _ntkmlp.plan(tied)[0] is None
    torch.testing.assert_close(ntk.empirical_ntk(tied, x), _gradient_oracle(tied, x, x)[:, :, 0, 0])
    drop = nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.3), nn.Linear(4, 1)).double()  # training mode
    assert _ntkmlp.plan(drop)[0] is None
    seq3d = models.mlp(3, [4], 1, seed=0, dtype=torch.float64)  # Linear on [batch, 2, 3]: not [batch, features]
    x3 = torch.randn(2, 2, 3, dtype=torch.float64)
    torch.testing.assert_close(ntk.empirical_ntk(seq3d, x3), ntk.empirical_ntk(seq3d, x3, method="jacobian"))
    with pytest.raises(ValueError, match="method='structured'"):
        ntk.empirical_ntk(seq3d, x3, method="structured")
    with pytest.raises(ValueError, match="method='structured' needs a plain fully connected net: .*Dropout"):
        ntk.empirical_ntk(drop, x, method="structured")
    custom = ntk.NTKMLP(3, 4, 1, activation=lambda z: torch.softmax(z, -1), dtype=torch.float64)
    assert custom._structured_ops()[0] is None  # a custom callable may not be elementwise
    with pytest.raises(ValueError, match="method=.fast. is not allowed; allowed: .auto., .structured., .jacobian."):
        ntk.empirical_ntk(seq3d, x, method="fast")


def test_structured_path_leaves_the_model_alone_and_follows_its_device_and_dtype():
    model = models.mlp(3, [5], 2, seed=3).train()
    before = copy.deepcopy(model.state_dict())
    x = torch.randn(6, 3)
    k = ntk.empirical_ntk(model, x, method="structured")
    assert k.dtype == torch.float32 and k.device == x.device
    assert model.training and all(p.grad is None for p in model.parameters())
    for name, v in model.state_dict().items():
        assert torch.equal(v, before[name])
    ref = ntk.empirical_ntk(model.double(), x.double(), method="jacobian")
    assert float((k.double() - ref).abs().max() / ref.abs().max()) < 1e-5


def test_wide_net_without_a_jacobian():
    # P = 4.2M parameters: the Jacobian path would hold 64 x P floats; the structured one holds the
    # activations (64 x 2048 per layer) and the 64 x 64 kernel. Checked on rows 0-7 against the
    # Jacobian path in float64 (in float32 that path is itself off by about 1e-4 here: a sum over P terms).
    model = models.mlp(4, [2048, 2048], 1, seed=0)
    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(0))
    k = ntk.empirical_ntk(model, x, method="structured")
    ref = ntk.empirical_ntk(copy.deepcopy(model).double(), x[:8].double(), method="jacobian")
    assert float((k[:8, :8].double() - ref).abs().max() / ref.abs().max()) < 1e-6


def test_jacobian_path_leaves_a_model_with_a_shared_layer_alone():
    # torch.func.functional_call does not restore the parameters of a module registered twice;
    # empirical_ntk must not leave the user's model holding its detached copies.
    shared = nn.Linear(3, 3).double()
    tied = nn.Sequential(shared, nn.Tanh(), shared, nn.Linear(3, 1)).double()
    weight = shared.weight
    ntk.empirical_ntk(tied, _x(4, 3, 7))
    assert tied[0].weight is weight and tied[2].weight is weight
    assert isinstance(tied[0].weight, nn.Parameter)
