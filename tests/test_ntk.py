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


# ---------------------------------------------------------------- chapter 8: the relu diagonal (issue 14)


def test_relu_diagonal_is_exact():
    # Theta(x, x) = (L + 1) 2 |x|^2 for He relu without bias: arccos of a correlation one rounding step
    # below 1 lost ~3e-9 here (issue 14); the atan2 form with the exact Gram determinant loses nothing
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 10))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for L in (1, 3):
        for x2 in (None, x.copy()):
            th = ntk.analytic_ntk(x, x2, depth=L, sigma_w2=2.0)
            np.testing.assert_allclose(np.diag(th), 2 * (L + 1), rtol=4e-15, atol=0)
        nngp = ntk.analytic_nngp(x, depth=L, sigma_w2=2.0, sigma_b2=0.3)
        q = 2.0 + 0.3
        for _ in range(L):
            q = 2.0 * q / 2 + 0.3
        np.testing.assert_allclose(np.diag(nngp), q, rtol=4e-15, atol=0)


def test_relu_nearly_parallel_inputs_match_high_precision():
    mpmath = pytest.importorskip("mpmath")
    mpmath.mp.dps = 40
    for t in (1e-9, 1e-6, 1e-3, 0.7):
        x = _pair(t, 3)
        th, ng = ntk.analytic_ntk(x), ntk.analytic_nngp(x)
        T_ = mpmath.atan2(mpmath.mpf(x[1, 1]), mpmath.mpf(x[1, 0]))
        nngp = (mpmath.sin(T_) + (mpmath.pi - T_) * mpmath.cos(T_)) / (2 * mpmath.pi)
        hinf = mpmath.cos(T_) * (mpmath.pi - T_) / (2 * mpmath.pi)
        assert ng[0, 1] == pytest.approx(float(nngp), rel=1e-14, abs=0)
        assert th[0, 1] == pytest.approx(float(nngp + hinf), rel=1e-14, abs=0)
        assert ntk.relu_h_inf(x)[0, 1] == pytest.approx(float(hinf), rel=1e-14, abs=0)
    # deeper (He, no bias): the correlation map near 1 and at moderate angles against the recursion in 40 digits
    for angle in (1e-5, 0.5, 0.95, 2.5):
        x = _pair(angle, 3)
        q, c = mpmath.mpf(2), mpmath.cos(mpmath.atan2(mpmath.mpf(x[1, 1]), mpmath.mpf(x[1, 0])))
        th_mp = 2 * c
        for _ in range(3):
            t = mpmath.acos(c)
            c_new = (mpmath.sin(t) + (mpmath.pi - t) * c) / mpmath.pi
            th_mp = th_mp * (mpmath.pi - t) / mpmath.pi + q * c_new
            c = c_new
        assert ntk.analytic_ntk(x, depth=3, sigma_w2=2.0)[0, 1] == pytest.approx(float(th_mp), rel=1e-13, abs=0)


# ---------------------------------------------------------------- H^inf and lambda_0 (Du et al. 2019)


def test_h_inf_reference_closed_form_and_monte_carlo():
    x = _pair(T, 3)
    assert ntk.relu_h_inf(x)[0, 1] == pytest.approx(0.166667, abs=5e-7)
    xs = np.vstack([_unit(6, 4, 8).numpy() * np.array([[1.0], [2.0], [0.5], [1.0], [3.0], [1.0]]), np.zeros((1, 4))])
    H = ntk.relu_h_inf(xs)
    np.testing.assert_allclose(H, ntk.analytic_ntk(xs) - ntk.analytic_nngp(xs), atol=1e-14)
    # Monte Carlo over w ~ N(0, I): E[x_i . x_j 1{w.x_i >= 0} 1{w.x_j >= 0}]
    S = 100_000
    w = np.random.default_rng(3).normal(size=(S, 4))
    on = (w @ xs.T >= 0).astype(float)  # [S, n]
    prod = (xs @ xs.T)[None] * on[:, :, None] * on[:, None, :]
    mc, se = prod.mean(0), prod.std(0) / math.sqrt(S)
    assert np.all(np.abs(mc - H) <= 4 * se + 1e-12), np.abs(mc - H) / (se + 1e-300)
    assert ntk.relu_lambda0(xs[:6]) == pytest.approx(np.linalg.eigvalsh(H[:6, :6]).min(), rel=1e-12)
    assert ntk.relu_lambda0(xs[:6]) > 0


def test_lambda0_vanishes_for_parallel_inputs():
    # Du et al. 2019, Thm 3.1: lambda_0 > 0 iff no two inputs are parallel; x and 2x make H^inf singular
    x = _unit(5, 3, 9).numpy()
    assert ntk.relu_lambda0(np.vstack([x, 2 * x[:1]])) == pytest.approx(0.0, abs=1e-14)
    assert ntk.relu_lambda0(x) > 1e-3


# ---------------------------------------------------------------- kernel distance, power laws


def test_kernel_distance_dense():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(4, 4)), rng.normal(size=(4, 4))
    assert ntk.kernel_distance(a, b) == pytest.approx(np.sqrt(((a - b) ** 2).sum() / (b**2).sum()), rel=1e-14)
    assert ntk.kernel_distance(torch.as_tensor(b), b) == 0.0
    with pytest.raises(ValueError, match="k_ref"):
        ntk.kernel_distance(a, np.zeros((4, 4)))


def test_power_law_fit_exact_and_monte_carlo():
    w = np.array([64, 128, 256, 512, 1024, 4096])
    fit = ntk.power_law_fit(w, 3.0 * w**-0.5)
    assert fit.slope == pytest.approx(-0.5, abs=1e-12) and fit.intercept == pytest.approx(math.log(3.0), abs=1e-11)
    assert fit.residual_rms < 1e-12 and fit.stderr < 1e-10
    # one row: the least-squares standard error (as scipy.stats.linregress)
    from scipy import stats
    rng = np.random.default_rng(2)
    v = w**-0.7 * np.exp(0.1 * rng.normal(size=len(w)))
    lr = stats.linregress(np.log(w), np.log(v))
    f1 = ntk.power_law_fit(w, v)
    assert f1.slope == pytest.approx(lr.slope, rel=1e-10) and f1.stderr == pytest.approx(lr.stderr, rel=1e-8)
    # many seeds of log-normal noise around slope -0.7: the estimate is within 4 standard errors
    V = w[None] ** -0.7 * np.exp(0.3 * rng.normal(size=(200, len(w))))
    f = ntk.power_law_fit(w, V)
    assert abs(f.slope + 0.7) < 4 * f.stderr and len(f.seed_slopes) == 200
    sd = 0.3 / np.sqrt(((np.log(w) - np.log(w).mean()) ** 2).sum())  # exact sd of one seed's slope
    assert f.spread == pytest.approx(sd, rel=0.2)


# ---------------------------------------------------------------- linearized dynamics (Lee et al. 2019)


def _task(n=8, m=5, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = _unit(n, d, seed).numpy()
    xt = rng.normal(size=(m, d))
    return x, xt, rng.normal(size=n), rng.normal(size=n), rng.normal(size=m)


def test_linear_dynamics_matches_iterated_gradient_descent():
    x, xt, y, f0, g0 = _task()
    K, Kx = ntk.analytic_ntk(x, depth=2, sigma_w2=2.0), ntk.analytic_ntk(xt, x, depth=2, sigma_w2=2.0)
    lr = 1.5 / np.linalg.eigvalsh(K).max()  # oscillating top mode, still stable
    ld = ntk.linear_dynamics(K, y, Kx, f0, g0, lr=lr, steps=[0, 1, 7, 60])
    f, g, seen = f0.copy(), g0.copy(), {}
    for t in range(61):
        seen[t] = (f.copy(), g.copy(), 0.5 * ((f - y) ** 2).sum())
        r = f - y
        f, g = f - lr * K @ r, g - lr * Kx @ r
    for i, t in enumerate([0, 1, 7, 60]):
        np.testing.assert_allclose(ld.train_pred[i], seen[t][0], atol=1e-12)
        np.testing.assert_allclose(ld.test_pred[i], seen[t][1], atol=1e-11)
        assert ld.train_loss[i] == pytest.approx(seen[t][2], rel=1e-10, abs=1e-14)
    assert ld.stable
    # t = inf from f0 = 0 is kernel regression
    inf = ntk.linear_dynamics(K, y, Kx, lr=lr, steps=math.inf)
    np.testing.assert_allclose(inf.test_pred[0], ntk.kernel_regression(K, y, Kx), atol=1e-9)
    np.testing.assert_allclose(inf.train_pred[0], y, atol=1e-12)


def test_linear_dynamics_singular_kernel_and_unstable_rate():
    x, xt, y, f0, g0 = _task()
    x = np.vstack([x, x[:1]])  # a repeated point: singular kernel
    y = np.append(y, 0.0)
    K, Kx = ntk.analytic_ntk(x), ntk.analytic_ntk(xt, x)
    lr = 1.0 / np.linalg.eigvalsh(K).max()
    with pytest.warns(RuntimeWarning):
        mn = ntk.kernel_regression(K, y, Kx)
    np.testing.assert_allclose(ntk.linear_dynamics(K, y, Kx, lr=lr, steps=math.inf).test_pred[0], mn, atol=1e-8)
    big = 2.5 / np.linalg.eigvalsh(K).max()
    with pytest.warns(RuntimeWarning, match="unstable"):
        assert not ntk.linear_dynamics(K, y, lr=big, steps=10).stable
    with pytest.raises(ValueError, match="lr"):
        ntk.linear_dynamics(K, y, lr=big, steps=math.inf)
    with pytest.raises(ValueError, match="steps"):
        ntk.linear_dynamics(K, y, lr=lr, steps=[1, 2.5])


def test_train_with_linearization_against_parameter_space_oracle():
    from torch.func import functional_call, jvp

    torch.manual_seed(0)
    x, xt, y, _, _ = _task(n=6, m=4, d=3, seed=4)
    X, Xt = torch.as_tensor(x), torch.as_tensor(xt)
    net = ntk.NTKMLP(3, 16, 2, activation="tanh", sigma_w2=1.5, sigma_b2=0.2, dtype=torch.float64,
                     generator=torch.Generator().manual_seed(1))
    net.eval()
    before = {k: v.clone() for k, v in net.state_dict().items()}
    lr, steps = 0.05, 40
    run = ntk.train_with_linearization(net, X, y, Xt, lr=lr, steps=steps, record_every=10)
    assert list(run.steps) == [0, 10, 20, 30, 40]
    for k, v in net.state_dict().items():  # the user's model is untouched, its mode kept
        assert torch.equal(v, before[k])
    assert not net.training and not run.model.training
    # oracle 1: the net, by a plain gradient-descent loop on a copy
    import copy
    ref = copy.deepcopy(net)
    for _ in range(steps):
        loss = 0.5 * ((ref(X).reshape(-1) - torch.as_tensor(y)) ** 2).sum()
        g = torch.autograd.grad(loss, list(ref.parameters()))
        with torch.no_grad():
            for p, gi in zip(ref.parameters(), g):
                p.sub_(lr * gi)
    np.testing.assert_allclose(run.test_net[-1], ref(Xt).reshape(-1).detach().numpy(), atol=1e-12)
    # oracle 2: the linearized model f0 + J (theta - theta0) trained in parameter space (jvp)
    p0 = {k: v.detach().clone() for k, v in net.named_parameters()}
    th = {k: v.clone() for k, v in p0.items()}

    def flin(p, inp):
        f0, df = jvp(lambda q: functional_call(net, q, (inp,)).reshape(-1), (p0,), ({k: p[k] - p0[k] for k in p},))
        return f0 + df

    for t in range(steps + 1):
        if t % 10 == 0:
            i = t // 10
            np.testing.assert_allclose(run.train_lin[i], flin(th, X).detach().numpy(), atol=1e-11)
            np.testing.assert_allclose(run.test_lin[i], flin(th, Xt).detach().numpy(), atol=1e-11)
        tp = {k: v.clone().requires_grad_(True) for k, v in th.items()}
        loss = 0.5 * ((flin(tp, X) - torch.as_tensor(y)) ** 2).sum()
        g = torch.autograd.grad(loss, list(tp.values()))
        th = {k: (v - lr * gi).detach() for (k, v), gi in zip(th.items(), g)}
    np.testing.assert_allclose(run.train_net[0], run.train_lin[0], atol=1e-14)
    assert run.kernel_drift == pytest.approx(ntk.kernel_distance(run.ntk_final[:6, :6], run.ntk_init[:6, :6]))
    np.testing.assert_allclose(run.ntk_init, ntk.empirical_ntk(net, torch.cat([X, Xt])).numpy(), atol=1e-12)
    assert run.param_change > 0 and np.all(np.diff(run.loss_lin) <= 1e-12)


def test_train_with_linearization_raises_on_divergence_and_bad_input():
    x, xt, y, _, _ = _task(n=5, m=2, d=3, seed=5)
    net = ntk.NTKMLP(3, 8, 1, dtype=torch.float64)
    K = ntk.empirical_ntk(net, torch.as_tensor(x))
    lam = torch.linalg.eigvalsh(K).max().item()
    with pytest.raises(RuntimeError, match="diverged"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        ntk.train_with_linearization(net, x, y, lr=50.0 / lam, steps=2000)
    with pytest.raises(ValueError, match="lr"):
        ntk.train_with_linearization(net, x, y, lr=0.0, steps=3)
    with pytest.raises(ValueError, match="y_train"):
        ntk.train_with_linearization(net, x, y[:3], lr=0.1, steps=3)
    with pytest.raises(ValueError, match="one output"):
        ntk.train_with_linearization(ntk.NTKMLP(3, 8, 1, d_out=2, dtype=torch.float64), x, y, lr=0.1, steps=3)


def test_linear_loss_dense_powers():
    x, _, y, f0, _ = _task()
    K = ntk.analytic_ntk(x)
    lr, r0 = 0.9 / np.linalg.eigvalsh(K).max(), f0 - y
    dense = [0.5 * np.sum((np.linalg.matrix_power(np.eye(len(K)) - lr * K, t) @ r0) ** 2) for t in (0, 3, 40)]
    np.testing.assert_allclose(ntk.linear_loss(K, r0, lr, [0, 3, 40]), dense, rtol=1e-10)
    lam0 = np.linalg.eigvalsh(K).min()
    L = ntk.linear_loss(K, r0, lr, np.arange(200))
    assert np.all(L <= np.exp(-2 * lr * lam0 * np.arange(200)) * L[0] * (1 + 1e-12))
