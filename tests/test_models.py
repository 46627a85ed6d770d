"""Model builders: architecture, parameter counts, initialization statistics, seeding, bad input."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from tdlcourse import models


def test_mlp_layers_and_parameter_count_closed_form():
    net = models.mlp(5, [7, 3], 2, activation="tanh")
    kinds = [type(m) for m in net]
    assert kinds == [nn.Linear, nn.Tanh, nn.Linear, nn.Tanh, nn.Linear]
    dims = [5, 7, 3, 2]
    assert models.num_params(net) == sum(a * b + b for a, b in zip(dims[:-1], dims[1:]))
    assert models.num_params(models.mlp(5, [7, 3], 2, bias=False)) == 5 * 7 + 7 * 3 + 3 * 2
    assert models.num_params(models.mlp(4, [], 3)) == 4 * 3 + 3  # no hidden layer: a linear model
    flat = models.mlp(12, [4], 2, flatten=True)
    assert isinstance(flat[0], nn.Flatten) and flat(torch.randn(3, 3, 4)).shape == (3, 2)


def test_mlp_forward_equals_the_formula():
    net = models.mlp(3, [4], 2, activation="tanh", sigma_w2=1.0, sigma_b2=0.5, seed=0, dtype=torch.float64)
    x = torch.randn(6, 3, dtype=torch.float64)
    w1, b1, w2, b2 = (p.detach() for p in net.parameters())
    assert torch.allclose(net(x), torch.tanh(x @ w1.T + b1) @ w2.T + b2, rtol=1e-12, atol=1e-12)


def test_gaussian_init_variances_match_sigma_w2_over_fan_in():
    # Monte Carlo oracle: 160000 weights, relative standard error of the variance sqrt(2/N) = 0.35 %.
    net = models.mlp(400, [400], 400, sigma_w2=2.0, sigma_b2=0.3, seed=1)
    w = net[2].weight.detach().double()
    assert abs(w.mean().item()) < 4 * math.sqrt(2.0 / 400 / w.numel())
    assert w.var().item() == pytest.approx(2.0 / 400, rel=0.02)
    b = torch.cat([net[0].bias, net[2].bias]).detach().double()  # 800 biases: rel. s.e. 5 %
    assert b.var().item() == pytest.approx(0.3, rel=0.2)


@pytest.mark.parametrize("shape, init", [((30, 50), "semi_orthogonal"), ((50, 30), "semi_orthogonal"),
                                         ((40, 40), "semi_orthogonal"), ((40, 40), "orthogonal")])
def test_orthogonal_init_is_scaled_orthogonal(shape, init):
    d_in, d_out = shape[1], shape[0]
    net = models.mlp(d_in, [], d_out, sigma_w2=1.7, init=init, seed=3, dtype=torch.float64)
    w = net[0].weight.detach()
    small = w @ w.T if d_out <= d_in else w.T @ w
    assert torch.allclose(small, 1.7 * torch.eye(min(shape), dtype=torch.float64), atol=1e-10)


def test_orthogonal_init_of_a_non_square_layer_must_say_how():
    # issue 14: a non-square layer with init="orthogonal" raises, naming init and the allowed choice
    with pytest.raises(ValueError, match=r"init='orthogonal' needs square layers.*fan_out=10, fan_in=64.*"
                                         r"init='semi_orthogonal'"):
        models.mlp(64, [64, 64], 10, activation="tanh", sigma_w2=1.0, init="orthogonal", seed=0)
    with pytest.raises(ValueError, match=r"init='orthogonal' needs square layers"):
        models.cnn(1, 10, channels=(4,), image_size=8, hidden=8, sigma_w2=1.0, init="orthogonal")
    with pytest.raises(ValueError, match=r"semi_orthogonal=False needs a square matrix.*rows=3, cols=5"):
        models.orthogonal_matrix(3, 5)
    sq = models.resmlp(6, 6, 3, 6, sigma_w2=1.0, init="orthogonal", seed=0, dtype=torch.float64)  # all square
    for m in sq.modules():
        if isinstance(m, nn.Linear):
            assert torch.allclose(m.weight @ m.weight.T, torch.eye(6, dtype=torch.float64), atol=1e-12)


def test_orthogonal_matrix_is_haar():
    # Haar measure on O(n): E[tr Q] = 0, E[(tr Q)^2] = 1, E[Q_11^2] = 1/n (Diaconis & Shahshahani 1994);
    # QR without the sign correction is not Haar (E[Q_11] != 0 there).
    g = torch.Generator().manual_seed(0)
    S, n = 4000, 4
    qs = torch.stack([models.orthogonal_matrix(n, n, generator=g) for _ in range(S)])
    assert torch.allclose(qs @ qs.transpose(1, 2), torch.eye(n, dtype=torch.float64).expand(S, n, n), atol=1e-12)
    tr = qs.diagonal(dim1=1, dim2=2).sum(1).numpy()
    q11 = qs[:, 0, 0].numpy()
    assert abs(tr.mean()) < 4 * tr.std() / math.sqrt(S)
    assert abs((tr**2).mean() - 1.0) < 4 * (tr**2).std() / math.sqrt(S)
    assert abs(q11.mean()) < 4 * q11.std() / math.sqrt(S)
    assert abs((q11**2).mean() - 1 / n) < 4 * (q11**2).std() / math.sqrt(S)
    semi = models.orthogonal_matrix(3, 7, semi_orthogonal=True, generator=g)
    assert semi.shape == (3, 7) and torch.allclose(semi @ semi.T, torch.eye(3, dtype=torch.float64), atol=1e-12)
    assert models.orthogonal_matrix(7, 3, semi_orthogonal=True, dtype=torch.float32).dtype == torch.float32


def test_seed_reproduces_without_touching_the_global_rng():
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    a = models.mlp(4, [8], 2, seed=11)
    after = torch.rand(3)
    assert torch.equal(expected, after)
    b = models.mlp(4, [8], 2, seed=11)
    c = models.mlp(4, [8], 2, seed=12)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)
    g1 = models.mlp(4, [8], 2, sigma_w2=2.0, seed=11)
    g2 = models.mlp(4, [8], 2, sigma_w2=2.0, seed=11)
    assert all(torch.equal(p, q) for p, q in zip(g1.parameters(), g2.parameters()))


def test_dtype_and_device_arguments():
    net = models.mlp(3, [4], 2, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 and p.device.type == "cpu" for p in net.parameters())


@pytest.mark.parametrize("kwargs, match", [
    (dict(d_in=0), r"d_in=0"),
    (dict(widths=[4, 0]), r"widths"),
    (dict(activation="swish"), r"activation='swish'.*'relu', 'tanh'"),
    (dict(init="xavier"), r"init='xavier'.*'default', 'gaussian', 'orthogonal', 'semi_orthogonal'"),
    (dict(init="gaussian"), r"needs sigma_w2"),
    (dict(sigma_w2=-1.0), r"sigma_w2=-1 must lie in \[0, inf\)"),
    (dict(sigma_w2=1.0, sigma_b2=-0.1), r"sigma_b2=-0.1"),
    (dict(d_out=True), r"d_out=True"),
])
def test_mlp_bad_input(kwargs, match):
    args = dict(d_in=3, widths=[4], d_out=2) | kwargs
    with pytest.raises(ValueError, match=match):
        models.mlp(args.pop("d_in"), args.pop("widths"), args.pop("d_out"), **args)


def test_cnn_shapes_parameter_count_and_conv_fan_in():
    net = models.cnn(3, 10, channels=(8, 16), hidden=32, seed=0)
    assert net(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    expected = (3 * 9 * 8 + 8) + (8 * 9 * 16 + 16) + (16 * 8 * 8 * 32 + 32) + (32 * 10 + 10)
    assert models.num_params(net) == expected
    assert models.cnn(1, 10, image_size=28, channels=(4,), hidden=8)(torch.randn(1, 1, 28, 28)).shape == (1, 10)
    # fan_in of a 3x3 convolution = in_channels * 9 (Monte Carlo, 64*9*128 = 73728 weights).
    wide = models.cnn(64, 2, channels=(128,), image_size=2, hidden=2, sigma_w2=2.0, seed=0)
    assert wide[0].weight.detach().double().var().item() == pytest.approx(2.0 / (64 * 9), rel=0.03)
    with pytest.raises(ValueError, match="image_size"):
        models.cnn(3, 10, channels=(8, 8, 8, 8, 8, 8), image_size=32)
    with pytest.raises(ValueError, match="channels"):
        models.cnn(3, 10, channels=())


def test_resmlp_forward_equals_the_residual_formula():
    net = models.resmlp(3, 5, 2, 2, activation="tanh", alpha=0.5, sigma_w2=1.0, sigma_b2=0.1, seed=0,
                        dtype=torch.float64)
    plain = models.resmlp(3, 5, 2, 2, activation="tanh", alpha=0.5, skip=False, sigma_w2=1.0, sigma_b2=0.1,
                          seed=0, dtype=torch.float64)
    x = torch.randn(4, 3, dtype=torch.float64)
    p = [t.detach() for t in net.parameters()]
    h = x @ p[0].T + p[1]
    hp = h.clone()
    for w, b in ((p[2], p[3]), (p[4], p[5])):
        h = h + 0.5 * (torch.tanh(h) @ w.T + b)
        hp = 0.5 * (torch.tanh(hp) @ w.T + b)
    assert torch.allclose(net(x), h @ p[6].T + p[7], atol=1e-12)
    assert torch.allclose(plain(x), hp @ p[6].T + p[7], atol=1e-12)  # same parameters, no skip path
    assert models.num_params(models.resmlp(3, 5, 0, 2)) == 3 * 5 + 5 + 5 * 2 + 2
    with pytest.raises(ValueError, match="depth"):
        models.resmlp(3, 5, -1, 2)


def test_resmlp_branch_scaling_one_over_sqrt_depth():
    net = models.resmlp(3, 5, 16, 2, alpha="1/sqrt(depth)", sigma_w2=2.0, seed=0, dtype=torch.float64)
    quarter = models.resmlp(3, 5, 16, 2, alpha=0.25, sigma_w2=2.0, seed=0, dtype=torch.float64)
    assert [m.alpha for m in net if isinstance(m, models.Residual)] == [0.25] * 16
    x = torch.randn(4, 3, dtype=torch.float64)
    assert torch.equal(net(x), quarter(x))
    assert models.resmlp(3, 5, 0, 2, alpha="1/sqrt(depth)")(x.float()).shape == (4, 2)  # depth 0: no block
    with pytest.raises(ValueError, match=r"alpha='1/depth' must be a number or one of '1/sqrt\(depth\)'"):
        models.resmlp(3, 5, 4, 2, alpha="1/depth")
