"""tdlcourse.implicit against independent oracles: the KKT system of the nearest interpolant, scipy's
SLSQP and a fine grid of directions for the hard-margin SVM, a brute force over supports for the
min-l1 interpolant, a direct minimization of Woodworth et al.'s Q_alpha, torch autograd for the
deep-factorization gradient, and the syllabus reference value of the effective rank."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import linalg, optimize

from tdlcourse import implicit


def _rng(seed=0):
    return np.random.default_rng(seed)


# ----------------------------------------------------------------------------- least squares

def _kkt_nearest(X, y, w0):
    """min ||w - w0||^2 s.t. Xw = y through its KKT system [[I, X^T], [X, 0]] [w; lam] = [w0; y]."""
    n, d = X.shape
    K = np.block([[np.eye(d), X.T], [X, np.zeros((n, n))]])
    return np.linalg.solve(K, np.concatenate([w0, y]))[:d]


@pytest.mark.parametrize("n,d", [(1, 3), (5, 12), (20, 50)])
def test_min_norm_interpolant_solves_the_kkt_system(n, d):
    rng = _rng(n)
    X, y, w0 = rng.normal(size=(n, d)), rng.normal(size=n), rng.normal(size=d)
    w = implicit.min_norm_interpolant(X, y, w0)
    assert np.allclose(w, _kkt_nearest(X, y, w0), atol=1e-11)
    assert np.allclose(X @ w, y, atol=1e-11)
    # Any other interpolant, w + a null-space vector, is farther from w0.
    null = linalg.null_space(X)
    for _ in range(5):
        other = w + null @ rng.normal(size=null.shape[1])
        assert np.linalg.norm(other - w0) > np.linalg.norm(w - w0)
    assert np.allclose(implicit.min_norm_interpolant(X, y), np.linalg.pinv(X) @ y, atol=1e-11)


def test_min_norm_interpolant_rank_deficient_is_the_gradient_descent_limit():
    rng = _rng(1)
    X = rng.normal(size=(6, 3)) @ rng.normal(size=(3, 10))  # rank 3 < n = 6: y is not in range(X)
    y, w0 = rng.normal(size=6), rng.normal(size=10)
    w = implicit.min_norm_interpolant(X, y, w0)
    gd = implicit.gd_least_squares(X, y, w0, steps=200_000, tol=1e-13)
    assert gd.converged and np.allclose(w, gd.w, atol=1e-8)
    assert np.allclose(X.T @ (X @ w - y), 0, atol=1e-10)  # a least-squares solution, not an interpolant
    assert np.linalg.norm(X @ w - y) > 0.1


def test_gradient_descent_reaches_the_interpolant_nearest_each_init():
    rng = _rng(2)
    X, y = rng.normal(size=(20, 50)), rng.normal(size=20)
    for w0 in (np.zeros(50), rng.normal(size=50)):
        gd = implicit.gd_least_squares(X, y, w0)
        target = _kkt_nearest(X, y, w0)
        err = np.linalg.norm(gd.w - target)
        assert gd.converged and err < 1e-9
        assert err <= gd.distance_bound * (1 + 1e-6) + 1e-15  # the certificate holds
        assert gd.residual < 1e-9 and gd.steps < 5000


def test_gradient_descent_flags_an_unconverged_run_and_checks_lr():
    rng = _rng(3)
    X, y = rng.normal(size=(20, 50)), rng.normal(size=20)
    short = implicit.gd_least_squares(X, y, steps=5)
    assert not short.converged and short.steps == 5 and short.distance_bound > 1e-3
    s_max = np.linalg.norm(X, 2)
    with pytest.raises(ValueError, match=r"lr=.* must lie in \(0, 2/s_max\^2\)"):
        implicit.gd_least_squares(X, y, lr=2.0 / s_max**2)


# ----------------------------------------------------------------------------- hard-margin SVM

def _slsqp_svm(X, y):
    Z = y[:, None] * X
    w_start = np.linalg.lstsq(Z, np.full(len(y), 2.0), rcond=None)[0]
    res = optimize.minimize(lambda w: 0.5 * w @ w, w_start, jac=lambda w: w, method="SLSQP",
                            constraints=[{"type": "ineq", "fun": lambda w: Z @ w - 1, "jac": lambda w: Z}],
                            options={"ftol": 1e-13, "maxiter": 2000})
    assert (Z @ res.x).min() > 1 - 1e-8  # feasible (SLSQP may stop at its precision limit, status 8)
    return res.x


@pytest.mark.parametrize("seed", range(8))
def test_max_margin_agrees_with_slsqp(seed):
    rng = _rng(seed)
    n, d = int(rng.integers(3, 30)), int(rng.integers(2, 7))
    X, y = implicit.separable_data(n, d, margin=0.05, seed=seed)
    mm = implicit.max_margin(X, y)
    ref = _slsqp_svm(X, y)
    assert np.allclose(mm.w_svm, ref, rtol=1e-6, atol=1e-8)
    assert mm.w_svm @ mm.w_svm <= ref @ ref * (1 + 1e-12)  # never worse than the general-purpose solver
    assert mm.kkt_residual < 1e-10 and mm.duality_gap < 1e-10
    margins = y * (X @ mm.w)
    assert math.isclose(mm.margin, margins.min(), rel_tol=1e-12) and math.isclose(np.linalg.norm(mm.w), 1.0)
    assert np.allclose(margins[mm.support], mm.margin, rtol=1e-9)  # support vectors sit on the margin
    assert np.allclose(mm.w_svm, (mm.alpha * y) @ X, rtol=1e-9, atol=1e-12)  # w_svm = sum alpha_i y_i x_i


def test_max_margin_in_2d_beats_every_direction_of_a_fine_grid():
    rng = _rng(4)
    X, y = implicit.separable_data(15, 2, margin=0.2, seed=4)
    mm = implicit.max_margin(X, y)
    theta = np.linspace(0, 2 * np.pi, 200_001)[:-1]
    U = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    grid = (y[:, None] * (X @ U.T)).min(axis=0)  # margin of each grid direction
    assert grid.max() <= mm.margin + 1e-12
    step = 2 * np.pi / 200_000
    assert grid.max() >= mm.margin - step * np.linalg.norm(X, axis=1).max()
    best = U[np.argmax(grid)]
    assert np.degrees(np.arccos(np.clip(best @ mm.w, -1, 1))) < 1e-3
    del rng


def test_max_margin_closed_forms():
    # One point: w = y x / |x|, margin |x|.
    mm = implicit.max_margin([[3.0, 4.0]], [-1.0])
    assert np.allclose(mm.w, [-0.6, -0.8]) and math.isclose(mm.margin, 5.0)
    # Two points z_1 = (1, 0), z_2 = (0, -1): the nearest point of the segment to 0 is (1/2, -1/2).
    mm = implicit.max_margin([[1.0, 0.0], [0.0, 1.0]], [1.0, -1.0])
    assert np.allclose(mm.w, np.array([1.0, -1.0]) / math.sqrt(2)) and math.isclose(mm.margin, 1 / math.sqrt(2))
    assert np.allclose(mm.alpha, [1.0, 1.0]) and list(mm.support) == [0, 1]
    w, margin = implicit.max_margin_arrays([[1.0, 0.0], [0.0, 1.0]], [1.0, -1.0])
    assert isinstance(w, np.ndarray) and isinstance(margin, float) and np.allclose(w, mm.w)


def test_max_margin_is_equivariant():
    X, y = implicit.separable_data(12, 3, margin=0.1, seed=5)
    mm = implicit.max_margin(X, y)
    perm = _rng(5).permutation(12)
    Q = np.linalg.qr(_rng(6).normal(size=(3, 3)))[0]
    mm2 = implicit.max_margin(2.5 * X[perm] @ Q.T, y[perm])
    assert np.allclose(mm2.w, Q @ mm.w, atol=1e-10) and math.isclose(mm2.margin, 2.5 * mm.margin, rel_tol=1e-10)


def _lp_separable(X, y) -> bool:
    """Independent check: is {w : y_i <w, x_i> >= 1} non-empty? (a feasibility LP)"""
    Z = y[:, None] * X
    res = optimize.linprog(np.zeros(X.shape[1]), A_ub=-Z, b_ub=-np.ones(len(y)), bounds=(None, None), method="highs")
    return res.status == 0


@pytest.mark.parametrize("X,y", [
    ([[1.0, 0.0], [-1.0, 0.0]], [1.0, 1.0]),                          # z_1 = -z_2
    ([[1.0, 1.0], [-1.0, -1.0], [1.0, -1.0], [-1.0, 1.0]], [1.0, 1.0, -1.0, -1.0]),  # XOR through 0
    ([[0.0, 0.0], [1.0, 2.0]], [1.0, -1.0]),                          # a point at the origin
])
def test_max_margin_rejects_data_that_is_not_separable(X, y):
    assert not _lp_separable(np.array(X), np.array(y))
    with pytest.raises(ValueError, match=r"X, y are not linearly separable through the origin"):
        implicit.max_margin(X, y)


def test_max_margin_separability_matches_the_lp_on_random_labels():
    rng = _rng(7)
    seen = set()
    for _ in range(40):
        X, y = rng.normal(size=(8, 3)), rng.choice([-1.0, 1.0], 8)
        sep = _lp_separable(X, y)
        seen.add(sep)
        if sep:
            assert implicit.max_margin(X, y).kkt_residual < 1e-10
        else:
            with pytest.raises(ValueError, match="not linearly separable"):
                implicit.max_margin(X, y)
    assert seen == {True, False}


def test_max_margin_checks_labels():
    with pytest.raises(ValueError, match=r"y\[1\]=0.5 must be a label -1 or \+1"):
        implicit.max_margin([[1.0], [2.0]], [1.0, 0.5])


# ----------------------------------------------------------------------------- logistic regression

def _plain_logistic_gd(X, y, lr, steps):
    w = np.zeros(X.shape[1])
    out = []
    for _ in range(steps):
        m = y * (X @ w)
        grad = -(X * (y / (1.0 + np.exp(m)))[:, None]).mean(axis=0)
        w = w - lr * grad
        out.append(w.copy())
    return np.array(out)


def test_logistic_gd_iterates_match_a_plain_loop_and_approach_the_svm():
    X, y = implicit.separable_data(50, 5, margin=0.3, seed=0)  # the lab's data set
    path = implicit.logistic_gd(X, y, steps=20_000, record=60)
    ref = _plain_logistic_gd(X, y, path.lr, 2000)
    early = path.steps <= 2000
    assert np.allclose(path.w[early], ref[path.steps[early] - 1], rtol=1e-12, atol=1e-12)
    # Loss falls, the norm grows, the angle to the SVM falls over the run.
    assert np.all(np.diff(path.loss) < 0) and np.all(np.diff(path.norm) > 0)
    late = path.steps >= 10  # on this data set the angle falls monotonically from t = 10 on
    assert np.all(np.diff(path.angle[late]) < 0) and path.angle[-1] < 0.5 * path.angle[late][0]
    # The angle is the angle: compare with arccos on the last iterate.
    w = path.w[-1]
    assert math.isclose(path.angle[-1], np.degrees(np.arccos(w @ path.svm.w / np.linalg.norm(w))), rel_tol=1e-6)
    fit = path.inverse_angle_fit(100, 20_000)
    assert fit.slope > 0 and fit.n >= 10


def test_logistic_gd_checks_the_step_size_and_separability():
    X, y = implicit.separable_data(20, 3, seed=1)
    beta = np.linalg.norm(y[:, None] * X, 2) ** 2 / (4 * 20)
    with pytest.raises(ValueError, match=r"lr=.* must lie in \(0, 2/beta\)"):
        implicit.logistic_gd(X, y, lr=2.0 / beta, steps=10)
    with pytest.raises(ValueError, match="not linearly separable"):
        implicit.logistic_gd([[1.0, 0.0], [-1.0, 0.0]], [1.0, 1.0], steps=10)


# ----------------------------------------------------------------------------- min-l1 and diagonal nets

def _brute_force_l1(X, y):
    """min ||w||_1 s.t. Xw = y is attained at a basic solution (support of size <= n): try them all."""
    n, d = X.shape
    best = None
    for S in itertools.combinations(range(d), n):
        A = X[:, S]
        if abs(np.linalg.det(A)) < 1e-12:
            continue
        w = np.zeros(d)
        w[list(S)] = np.linalg.solve(A, y)
        if best is None or np.abs(w).sum() < np.abs(best).sum():
            best = w
    return best


@pytest.mark.parametrize("seed", range(5))
def test_min_l1_interpolant_against_brute_force(seed):
    rng = _rng(seed)
    X, y = rng.normal(size=(3, 8)), rng.normal(size=3)
    w = implicit.min_l1_interpolant(X, y)
    ref = _brute_force_l1(X, y)
    assert np.allclose(X @ w, y, atol=1e-12)
    assert math.isclose(np.abs(w).sum(), np.abs(ref).sum(), rel_tol=1e-10)
    assert np.allclose(w, ref, atol=1e-9)  # unique for Gaussian data


def test_min_l1_recovers_a_sparse_vector_and_rejects_infeasible_problems():
    ds = implicit.sparse_regression(40, 100, 3, seed=0)
    assert np.allclose(implicit.min_l1_interpolant(ds.X, ds.y), ds.w_star, atol=1e-10)
    X = np.array([[1.0, 1.0, 0.0], [2.0, 2.0, 0.0]])
    with pytest.raises(ValueError, match="no w satisfies X w = y"):
        implicit.min_l1_interpolant(X, [1.0, 0.0])


def _q_alpha_minimizer(X, y, alpha):
    """Direct minimization of Q_alpha over {w0 + N c}: w0 a particular solution, N a null-space basis."""
    w0 = np.linalg.lstsq(X, y, rcond=None)[0]
    N = linalg.null_space(X)

    def q(c):
        w = w0 + N @ c
        z = w / alpha**2
        val = alpha**2 * np.sum(2 - np.sqrt(4 + z**2) + z * np.arcsinh(z / 2))
        grad = N.T @ np.arcsinh(z / 2)  # d/dw of alpha^2 q(w/alpha^2) = arcsinh(w / (2 alpha^2))
        return val, grad

    res = optimize.minimize(q, np.zeros(N.shape[1]), jac=True, method="BFGS",
                            options={"gtol": 1e-12, "maxiter": 10_000})
    return w0 + N @ res.x


@pytest.mark.parametrize("alpha", [0.05, 0.3, 1.0, 3.0])
def test_diagonal_net_limit_minimizes_q_alpha(alpha):
    rng = _rng(8)
    X, y = rng.normal(size=(4, 9)), rng.normal(size=4)
    w = implicit.diagonal_net_limit(X, y, alpha)
    assert np.allclose(X @ w, y, atol=1e-11)
    # Stationarity: grad Q_alpha(w) = arcsinh(w / (2 alpha^2)) lies in the row space of X.
    g = np.arcsinh(w / (2 * alpha**2))
    assert np.linalg.norm(g - X.T @ np.linalg.lstsq(X.T, g, rcond=None)[0]) < 1e-9 * max(1.0, np.linalg.norm(g))
    ref = _q_alpha_minimizer(X, y, alpha)
    assert np.allclose(w, ref, rtol=1e-5, atol=1e-7)


def test_diagonal_net_limit_interpolates_between_l1_and_l2():
    X, y = implicit.sparse_regression(40, 100, 3, seed=0)
    l1, l2 = implicit.min_l1_interpolant(X, y), implicit.min_norm_interpolant(X, y)
    rel = lambda a, b: np.linalg.norm(a - b) / np.linalg.norm(b)  # noqa: E731
    small, large = implicit.diagonal_net_limit(X, y, 1e-12), implicit.diagonal_net_limit(X, y, 100.0)
    assert rel(small, l1) < 1e-9 and rel(large, l2) < 1e-8
    errs = [rel(implicit.diagonal_net_limit(X, y, a), l1) for a in (1e-8, 1e-6, 1e-4, 1e-2)]
    assert all(a < b for a, b in zip(errs, errs[1:]))  # closer to min-l1 as alpha falls


def test_diagonal_net_gradient_descent_approaches_the_flow_limit_as_lr_falls():
    rng = _rng(9)
    X, y = rng.normal(size=(5, 12)) / math.sqrt(5), rng.normal(size=5)
    alpha = 0.5
    limit = implicit.diagonal_net_limit(X, y, alpha)
    errs = []
    for lr in (0.2, 0.05, 0.0125):
        r = implicit.diagonal_net(X, y, alpha, lr=lr, steps=400_000, tol=1e-10)
        assert r.converged and np.allclose(r.w, r.u**2 - r.v**2)
        errs.append(np.linalg.norm(r.w - limit) / np.linalg.norm(limit))
    assert errs[-1] < 1e-3 and errs[0] > errs[1] > errs[2]  # first-order in lr: the discretization effect


def test_diagonal_net_default_step_converges_and_divergence_raises():
    X, y = implicit.sparse_regression(40, 100, 3, seed=1)
    for alpha in (1e-3, 10.0):
        r = implicit.diagonal_net(X, y, alpha, steps=20_000, tol=1e-3)
        assert r.converged and r.residual <= 1e-3
    # The rich regime is slow: plateaus while coordinates leave the saddle at 0, then a slow tail.
    assert r.steps < 100 < implicit.diagonal_net(X, y, 1e-3, steps=20_000, tol=1e-3).steps
    with pytest.raises(RuntimeError, match="diverged"):
        implicit.diagonal_net(X, y, 1.0, lr=50.0, steps=1000)


# ----------------------------------------------------------------------------- effective rank

def test_effective_rank_reference_value_and_properties():
    assert math.isclose(implicit.effective_rank(np.diag([3.0, 2.0, 1.0])), 2.749459, abs_tol=5e-7)  # syllabus
    rng = _rng(10)
    Q1, Q2 = np.linalg.qr(rng.normal(size=(6, 6)))[0], np.linalg.qr(rng.normal(size=(5, 5)))[0]
    D = np.zeros((6, 5))
    D[:3, :3] = np.diag([2.0, 2.0, 2.0])
    assert math.isclose(implicit.effective_rank(Q1 @ D @ Q2), 3.0, rel_tol=1e-12)  # flat spectrum of rank 3
    M = rng.normal(size=(4, 7))
    assert math.isclose(implicit.effective_rank(-5 * M), implicit.effective_rank(M.T), rel_tol=1e-12)
    assert math.isclose(implicit.effective_rank(np.outer([1.0, 2.0], [3.0, 4.0, 5.0])), 1.0, rel_tol=1e-12)
    s = np.linalg.svd(M, compute_uv=False)
    p = s / s.sum()
    assert math.isclose(implicit.effective_rank(M), math.exp(-sum(p * np.log(p))), rel_tol=1e-12)
    with pytest.raises(ValueError, match="M is the zero matrix"):
        implicit.effective_rank(np.zeros((3, 2)))


# ----------------------------------------------------------------------------- deep matrix completion

def _torch_steps(T, mask, depth, init_scale, lr, steps, seed):
    """The same gradient descent, with torch autograd for the gradients."""
    m, k = T.shape
    h = min(m, k)
    rng = np.random.default_rng(seed)
    shapes = [(m if j == depth - 1 else h, k if j == 0 else h) for j in range(depth)]
    Ws = [torch.tensor(init_scale * rng.standard_normal(s) / math.sqrt(h), requires_grad=True) for s in shapes]
    Tt, Mt = torch.tensor(T), torch.tensor(mask, dtype=torch.float64)
    for _ in range(steps):
        W = Ws[0]
        for A in Ws[1:]:
            W = A @ W
        loss = 0.5 * ((Mt * (W - Tt)) ** 2).sum()
        grads = torch.autograd.grad(loss, Ws)
        with torch.no_grad():
            for A, g in zip(Ws, grads):
                A -= lr * g
    with torch.no_grad():
        W = Ws[0]
        for A in Ws[1:]:
            W = A @ W
    return W.detach().numpy()


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_deep_matrix_completion_gradient_matches_autograd(depth):
    T, mask = implicit.low_rank_completion(6, 2, 20, seed=1)
    T = T[:, :5]  # rectangular 6 x 5
    mask = mask[:, :5]
    r = implicit.deep_matrix_completion(T, mask, depth, init_scale=0.5, lr=0.01, steps=7, tol=1e-12, seed=3)
    ref = _torch_steps(T, mask, depth, 0.5, 0.01, 7, seed=3)
    assert r.steps == 7 and np.allclose(r.solution, ref, rtol=1e-10, atol=1e-12)


def test_depth_one_fits_only_the_observed_entries_and_depth_three_completes():
    T, mask = implicit.low_rank_completion(20, 2, 150, seed=0)
    d1 = implicit.deep_matrix_completion(T, mask, 1, init_scale=1e-3, tol=1e-6)
    assert d1.converged and d1.observed_error <= 1e-6
    assert np.allclose(d1.solution[~mask], 0, atol=1e-2) and d1.unobserved_error > 0.99
    d3 = implicit.deep_matrix_completion(T, mask, 3, init_scale=0.1, steps=30_000, tol=1e-4)
    assert d3.observed_error < 1e-3 and d3.unobserved_error < 0.05
    assert d3.effective_rank < d1.effective_rank / 3
    assert math.isclose(d3.effective_rank, implicit.effective_rank(d3.solution))
    full = implicit.deep_matrix_completion(T, np.ones_like(mask), 1, init_scale=0.1, tol=1e-8)
    assert full.converged and math.isnan(full.unobserved_error) and np.allclose(full.solution, T, atol=1e-6)


def test_deep_matrix_completion_rejects_an_empty_mask():
    T = np.ones((3, 3))
    with pytest.raises(ValueError, match="mask has no observed entry"):
        implicit.deep_matrix_completion(T, np.zeros((3, 3), bool), 2)
    with pytest.raises(ValueError, match="mask must have the shape of target"):
        implicit.deep_matrix_completion(T, np.ones((2, 3), bool), 2)


# ----------------------------------------------------------------------------- problem generators

def test_problem_generators():
    ds = implicit.separable_data(40, 5, margin=0.4, seed=2)
    X, y = ds
    assert X.shape == (40, 5) and set(np.unique(y)) == {-1.0, 1.0}
    assert np.all(y * (X @ ds.w_star) >= 0.4) and implicit.max_margin(X, y).margin >= 0.4
    sr = implicit.sparse_regression(10, 30, 4, seed=3)
    assert np.count_nonzero(sr.w_star) == 4 and np.allclose(sr.X @ sr.w_star, sr.y)
    cp = implicit.low_rank_completion(8, 2, 30, seed=4)
    assert cp.mask.sum() == 30 and np.linalg.matrix_rank(cp.target) == 2
