"""Oracle tests for tdlcourse.ntk: the course's public reference values, closed forms, dense per-sample
gradients, Monte Carlo over random nets, 1/sqrt(width) convergence and dense linear solves."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import special

from tdlcourse import ntk

T = math.pi / 3


def _pair(theta, d=2):
    x = np.zeros((2, d))
    x[0, 0] = 1.0
    x[1, 0], x[1, 1] = math.cos(theta), math.sin(theta)
    return x


def _unit(n, d, seed):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return x / x.norm(dim=1, keepdim=True)


# ---------------------------------------------------------------- reference values, closed forms


@pytest.mark.parametrize("d", [2, 7])
def test_reference_two_layer_relu(d):
    x = _pair(T, d)
    nngp = ntk.analytic_nngp(x, depth=1, activation="relu", sigma_w2=1.0, sigma_b2=0.0)
    theta = ntk.analytic_ntk(x, depth=1, activation="relu", sigma_w2=1.0, sigma_b2=0.0)
    assert nngp[0, 1] == pytest.approx(0.304499, abs=5e-7)
    assert theta[0, 1] == pytest.approx(0.471166, abs=5e-7)
    assert theta[0, 1] - nngp[0, 1] == pytest.approx(0.166667, abs=5e-7)  # H_inf of Du et al.
    assert nngp[0, 0] == pytest.approx(0.5) and theta[0, 0] == pytest.approx(1.0)


def test_two_layer_relu_formulas_at_all_angles():
    t = np.linspace(0, np.pi, 13)
    x = np.stack([np.cos(t), np.sin(t)], 1)
    nngp = ntk.analytic_nngp(x[:1], x)[0]
    theta = ntk.analytic_ntk(x[:1], x)[0]
    np.testing.assert_allclose(nngp, (np.sin(t) + (np.pi - t) * np.cos(t)) / (2 * np.pi), atol=1e-14)
    np.testing.assert_allclose(theta - nngp, np.cos(t) * (np.pi - t) / (2 * np.pi), atol=1e-14)


def test_he_relu_diagonal_closed_form():
    # sigma_w2 = 2, no bias: Sigma^l(x, x) = 2|x|^2 and Sigma-dot = 1 on the diagonal, so Theta = (L+1) 2|x|^2
    x = np.array([[0.3, -1.2, 0.5], [2.0, 0.1, 0.0]])
    for L in range(4):
        th = ntk.analytic_ntk(x, depth=L, sigma_w2=2.0)
        np.testing.assert_allclose(np.diag(th), (L + 1) * 2 * (x**2).sum(1), rtol=1e-13)


def test_erf_closed_form_matches_quadrature_recursion():
    x = np.array([[0.3, -1.2, 0.5], [2.0, 0.1, 0.0], [-0.4, 0.4, 0.9]])
    quad = (special.erf, lambda u: 2 / math.sqrt(math.pi) * np.exp(-u * u))
    for f in (ntk.analytic_nngp, ntk.analytic_ntk):
        a = f(x, x[:2], depth=3, activation="erf", sigma_w2=1.7, sigma_b2=0.2)
        b = f(x, x[:2], depth=3, activation=quad, sigma_w2=1.7, sigma_b2=0.2)
        np.testing.assert_allclose(a, b, atol=1e-11)


def test_analytic_returns_torch_like_input():
    x = _unit(3, 4, 0).float()
    k = ntk.analytic_ntk(x, depth=2, activation="tanh", sigma_w2=1.5, sigma_b2=0.1)
    assert isinstance(k, torch.Tensor) and k.dtype == torch.float32 and k.shape == (3, 3)
    assert torch.allclose(k, k.T)
    assert isinstance(ntk.analytic_nngp(x.numpy(), depth=1), np.ndarray)


# ---------------------------------------------------------------- empirical NTK


def _dense_ntk(model, x):
    # oracle: per-sample gradients by plain autograd, one output at a time
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    for i in range(x.shape[0]):
        out = model(x[i : i + 1]).reshape(-1)
        rows.append(torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(o, params, retain_graph=True)])
                                 for o in out]))
    J = torch.stack(rows)  # [n, k, P]
    return torch.einsum("nkp,mlp->nmkl", J, J)


def test_empirical_ntk_matches_dense_gradients_and_leaves_model_alone():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2)).double()
    model.eval()
    model[0].bias.requires_grad_(False)  # frozen parameters do not count
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(5, 3, dtype=torch.float64)
    full = ntk.empirical_ntk(model, x, reduce="full")
    dense = _dense_ntk(model, x)
    assert full.shape == (5, 5, 2, 2)
    torch.testing.assert_close(full, dense, rtol=1e-12, atol=1e-12)
    tr = ntk.empirical_ntk(model, x)
    torch.testing.assert_close(tr, dense.diagonal(dim1=2, dim2=3).sum(-1))
    torch.testing.assert_close(ntk.empirical_ntk(model, x, reduce="mean"), tr / 2)
    torch.testing.assert_close(ntk.empirical_ntk(model, x[:2], x[2:]), tr[:2, 2:])
    assert not model.training and all(p.grad is None for p in model.parameters())
    for k, v in model.state_dict().items():
        assert torch.equal(v, before[k])


def test_empirical_ntk_width_convergence_rate():
    x = _unit(4, 3, 0)
    A = ntk.analytic_ntk(x, depth=2, sigma_w2=2.0, sigma_b2=0.1)
    widths, seeds, errs = [32, 64, 128, 256, 512, 1024], 10, []
    for w in widths:
        e2 = []
        for s in range(seeds):
            net = ntk.NTKMLP(3, w, 2, sigma_w2=2.0, sigma_b2=0.1, generator=torch.Generator().manual_seed(100 + s),
                             dtype=torch.float64)
            e2.append((torch.linalg.norm(ntk.empirical_ntk(net, x) - A) / torch.linalg.norm(A)).item() ** 2)
        errs.append(math.sqrt(np.mean(e2)))
    slope = np.polyfit(np.log(widths), np.log(errs), 1)[0]
    assert -0.8 <= slope <= -0.3, (slope, errs)  # theory: -1/2
    assert errs[-1] < 0.15


def test_mc_nngp_two_layer_exact_at_finite_width():
    # depth 1: E[f(x) f(x')] equals the NNGP at every width; 20000 random nets of width 16, batched
    S, m = 20000, 16
    g = torch.Generator().manual_seed(7)
    x = torch.as_tensor(np.vstack([_pair(T, 3), [[0.0, -0.6, 0.8]]]))
    W = torch.randn(S, m, 3, generator=g, dtype=torch.float64)
    a = torch.randn(S, m, generator=g, dtype=torch.float64)
    f = torch.einsum("sm,smn->sn", a, torch.relu(W @ x.T)) / math.sqrt(m)  # [S, n]
    prod = f[:, :, None] * f[:, None, :]
    emp, se = prod.mean(0).numpy(), (prod.std(0) / math.sqrt(S)).numpy()
    th = ntk.analytic_nngp(x.numpy(), depth=1)
    assert np.all(np.abs(emp - th) < 5 * se), (emp, th, se)
    assert th[0, 1] == pytest.approx(0.304499, abs=5e-7)


def test_mc_nngp_deep_erf_with_bias():
    # 8000 random depth-2 erf nets with biases in the NTK parametrization, batched in chunks
    S, w, sw, sb = 8000, 128, 1.8, 0.2
    x = _unit(3, 4, 3).float()
    g = torch.Generator().manual_seed(11)
    outs = []
    for _ in range(S // 1000):
        h = math.sqrt(sw) * torch.randn(1000, w, 4, generator=g) @ x.T + math.sqrt(sb) * torch.randn(1000, w, 1, generator=g)
        h = math.sqrt(sw / w) * torch.randn(1000, w, w, generator=g) @ torch.erf(h) + math.sqrt(sb) * torch.randn(1000, w, 1, generator=g)
        f = math.sqrt(sw / w) * torch.randn(1000, 1, w, generator=g) @ torch.erf(h) + math.sqrt(sb) * torch.randn(1000, 1, 1, generator=g)
        outs.append(f[:, 0, :])
    f = torch.cat(outs).double()
    prod = f[:, :, None] * f[:, None, :]
    emp, se = prod.mean(0).numpy(), (prod.std(0) / math.sqrt(S)).numpy()
    th = ntk.analytic_nngp(x.double().numpy(), depth=2, activation="erf", sigma_w2=sw, sigma_b2=sb)
    # Monte Carlo error plus the O(1/width) finite-width bias
    assert np.all(np.abs(emp - th) < 5 * se + 1.0 / w), (emp, th, se)


def test_ntkmlp_output_variance_matches_nngp():
    # the helper net itself: output variance over 400 inits of a width-64 depth-1 tanh net (exact at any width)
    x = _unit(2, 3, 4)
    f = torch.stack([ntk.NTKMLP(3, 64, 1, activation="tanh", sigma_w2=1.5, sigma_b2=0.3, dtype=torch.float64,
                                generator=torch.Generator().manual_seed(s))(x)[:, 0].detach() for s in range(400)])
    prod = f[:, :, None] * f[:, None, :]
    emp, se = prod.mean(0).numpy(), (prod.std(0) / math.sqrt(400)).numpy()
    th = ntk.analytic_nngp(x.numpy(), depth=1, activation="tanh", sigma_w2=1.5, sigma_b2=0.3)
    assert np.all(np.abs(emp - th) < 5 * se), (emp, th, se)


# ---------------------------------------------------------------- kernel regression


def test_kernel_regression_matches_dense_solve_and_interpolates():
    x = _unit(12, 3, 1).numpy()
    xt = _unit(5, 3, 2).numpy()
    K, Kx = ntk.analytic_ntk(x, depth=2), ntk.analytic_ntk(xt, x, depth=2)
    y = np.random.default_rng(0).normal(size=(12, 2))
    pred = ntk.kernel_regression(K, y, Kx)
    np.testing.assert_allclose(pred, Kx @ np.linalg.solve(K, y), rtol=1e-8, atol=1e-10)
    np.testing.assert_allclose(ntk.kernel_regression(K, y, K), y, atol=1e-9)
    sol = ntk.kernel_solve(K, y)
    assert sol.rank == 12 and sol.condition_number == pytest.approx(np.linalg.cond(K), rel=1e-6)
    np.testing.assert_allclose(K @ sol.alpha, y, atol=1e-9)
    pr = ntk.kernel_regression(K, y[:, 0], Kx, ridge=0.3)
    np.testing.assert_allclose(pr, Kx @ np.linalg.solve(K + 0.3 * np.eye(12), y[:, 0]), rtol=1e-10)
    assert pr.shape == (5,)
    assert ntk.kernel_solve(K, y, ridge=0.3).condition_number < sol.condition_number
    pt = ntk.kernel_regression(torch.as_tensor(K), torch.as_tensor(y), torch.as_tensor(Kx).float())
    assert isinstance(pt, torch.Tensor) and pt.dtype == torch.float32


def test_kernel_regression_singular_kernel_is_min_norm_lstsq():
    x = _unit(4, 3, 5).numpy()
    x = np.vstack([x, x[:2]])  # repeated points: singular Gram matrix
    K = ntk.analytic_ntk(x, depth=1)
    y = np.arange(6.0)
    with pytest.warns(RuntimeWarning, match="singular"):
        pred = ntk.kernel_regression(K, y, K)
    np.testing.assert_allclose(pred, K @ np.linalg.lstsq(K, y, rcond=None)[0], atol=1e-8)
    with pytest.warns(RuntimeWarning, match="singular"):
        assert ntk.kernel_solve(K, y).rank == 4


def test_bad_input():
    x = _unit(3, 2, 0)
    with pytest.raises(ValueError, match="reduce='sum'.*'trace'"):
        ntk.empirical_ntk(ntk.NTKMLP(2, 4, 1), x.float(), reduce="sum")
    with pytest.raises(ValueError, match="depth"):
        ntk.analytic_ntk(x, depth=-1)
    with pytest.raises(ValueError, match="activation"):
        ntk.analytic_nngp(x, activation="gelu")
    with pytest.raises(ValueError, match="sigma_w2"):
        ntk.analytic_ntk(x, sigma_w2=-1.0)
    with pytest.raises(ValueError, match="ridge"):
        ntk.kernel_regression(np.eye(2), np.ones(2), np.eye(2), ridge=-1)
    with pytest.raises(ValueError, match="k_test_train"):
        ntk.kernel_regression(np.eye(2), np.ones(2), np.eye(3))
    with pytest.raises(ValueError, match="width"):
        ntk.NTKMLP(2, 0, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ntk.kernel_regression(np.eye(2), np.ones(2), np.eye(2))  # well-conditioned: silent
