r"""Implicit bias: which interpolating solution gradient descent and the parametrization pick.

For chapter 3, implicit and simplicity bias (``book/03_implicit_bias.md``, ``labs/03_implicit_bias.ipynb``).

Notation (the book's): n examples, the rows x_i of X (shape [n, d]), targets or labels y_i, a
linear predictor w in R^d. Every convex problem here is solved to machine precision in float64
(numpy/scipy) and checked by its optimality conditions; every iterative trainer returns how far it
got (residuals, steps, a ``converged`` flag) instead of a silently unconverged answer.

- Least squares, n < d: gradient descent from w0 stays in w0 + rowspace(X), so it converges to
  the interpolant nearest w0, w0 + X^+ (y - X w0) (:func:`min_norm_interpolant`,
  :func:`gd_least_squares`).
- Separable classification: gradient descent on the logistic loss diverges in norm and converges
  in direction to the homogeneous hard-margin SVM, with an angle that decays like 1/log t
  (Soudry, Hoffer, Nacson, Gunasekar, Srebro 2018, Theorem 3) (:func:`max_margin`,
  :func:`logistic_gd`).
- Diagonal linear networks w = u*u - v*v from u = v = alpha 1: gradient flow converges to the
  interpolant minimizing Woodworth et al.'s Q_alpha, the min-l1 interpolant as alpha -> 0 and the
  min-l2 one as alpha -> infinity (Woodworth, Gunasekar, Lee, Moroshko, Savarese, Golan, Soudry,
  Srebro 2020, Theorem 1) (:func:`diagonal_net`, :func:`diagonal_net_limit`,
  :func:`min_l1_interpolant`).
- Deep matrix factorization from a small initialization finds low effective rank solutions of
  matrix completion (Gunasekar et al. 2017; Arora, Cohen, Hu, Luo 2019) (:func:`effective_rank`,
  :func:`deep_matrix_completion`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from . import validate

__all__ = [
    "min_norm_interpolant", "LeastSquaresGD", "gd_least_squares",
    "MaxMargin", "max_margin", "max_margin_arrays",
    "LinearFit", "LogisticPath", "logistic_gd",
    "min_l1_interpolant", "DiagonalNet", "diagonal_net", "diagonal_net_limit",
    "effective_rank", "MatrixCompletion", "deep_matrix_completion",
    "Dataset", "separable_data", "sparse_regression", "CompletionProblem", "low_rank_completion",
]


# ============================================================================ argument checks

def _array(name: str, value, ndim: int) -> np.ndarray:
    """A finite float64 array with ``ndim`` dimensions, each of length >= 1."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a {ndim}-D array of real numbers, got {type(value).__name__}") from None
    if a.ndim != ndim or 0 in a.shape:
        raise ValueError(f"{name} must be a {ndim}-D array of real numbers with no empty axis, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), a.shape)
        raise ValueError(f"{name}[{', '.join(map(str, i))}]={a[i]} must be finite")
    return a


def _design(X, y, w0=None):
    """(X [n, d], y [n], w0 [d] or None) checked against each other."""
    X = _array("X", X, 2)
    n, d = X.shape
    y = _array("y", y, 1)
    if y.shape != (n,):
        raise ValueError(f"y must hold one value per row of X, shape ({n},), got {y.shape}")
    if w0 is not None:
        w0 = _array("w0", w0, 1)
        if w0.shape != (d,):
            raise ValueError(f"w0 must be a vector in R^d with d = X.shape[1] = {d}, shape ({d},), got {w0.shape}")
    return X, y, w0


def _labels(y: np.ndarray) -> np.ndarray:
    bad = ~np.isin(y, (-1.0, 1.0))
    if bad.any():
        i = int(np.argmax(bad))
        raise ValueError(f"y[{i}]={y[i]:g} must be a label -1 or +1")
    return y


# ============================================================================ least squares

def min_norm_interpolant(X, y, w0=None) -> np.ndarray:
    r"""The interpolant nearest ``w0``: :math:`w = w_0 + X^+ (y - X w_0)`.

    For n < d and X of full row rank this is the unique solution of
    :math:`\min \|w - w_0\|_2` subject to :math:`X w = y`: every interpolant is
    :math:`w_0 + X^+(y - X w_0) + v` with v in the null space of X, orthogonal to the first part.
    It is where gradient descent on :math:`\frac12\|Xw - y\|^2` started at w0 converges (its
    iterates stay in w0 + rowspace(X); chapter 3, first theorem). ``w0=None`` means w0 = 0, the
    minimum-norm interpolant :math:`X^+ y`.

    Otherwise (rank(X) < n, or n >= d) the same formula gives the least-squares solution nearest
    w0, which is still the limit of gradient descent from w0, but it interpolates only if y lies in
    the range of X. ``X`` [n, d], ``y`` [n], ``w0`` [d]: plain arrays; returns a float64 array [d].
    The pseudo-inverse is applied through ``numpy.linalg.lstsq`` (SVD, default rank cutoff).
    """
    X, y, w0 = _design(X, y, w0)
    if w0 is None:
        w0 = np.zeros(X.shape[1])
    delta = np.linalg.lstsq(X, y - X @ w0, rcond=None)[0]
    return w0 + delta


@dataclass(frozen=True, eq=False)
class LeastSquaresGD:
    """Result of :func:`gd_least_squares`.

    ``distance_bound`` certifies the answer: the iterates move in w0 + rowspace(X), where the loss
    is strongly convex with constant s_min^2 (the smallest non-zero singular value of X squared),
    so :math:`\\|w - w_\\infty\\| \\le \\|\\nabla L(w)\\| / s_{min}^2` for the limit w_inf =
    ``min_norm_interpolant(X, y, w0)``.
    """

    w: np.ndarray
    steps: int
    lr: float
    residual: float        # ||X w - y||
    grad_norm: float       # ||X^T (X w - y)||
    distance_bound: float  # bound on ||w - w_inf||
    converged: bool


def _singular_range(X: np.ndarray) -> tuple[float, float]:
    s = np.linalg.svd(X, compute_uv=False)
    s_max = float(s[0])
    nonzero = s[s > s_max * max(X.shape) * np.finfo(float).eps]
    return s_max, float(nonzero[-1]) if nonzero.size else 0.0


def gd_least_squares(X, y, w0=None, *, lr: float | None = None, steps: int = 100_000,
                     tol: float = 1e-12) -> LeastSquaresGD:
    r"""Gradient descent on :math:`L(w) = \frac12\|Xw - y\|_2^2` from ``w0`` (default 0):
    :math:`w_{t+1} = w_t - \eta X^\top (X w_t - y)`.

    ``lr`` (eta) must lie in (0, 2 / s_max^2), s_max the largest singular value of X (the
    smoothness of L is s_max^2); the default is 1 / s_max^2. It stops after ``steps`` steps or as
    soon as :math:`\|\nabla L(w_t)\| \le` ``tol`` :math:`\cdot \|\nabla L(w_0)\|`
    (``converged``). The result carries the residual, the gradient norm and a bound on the distance
    to the limit (see :class:`LeastSquaresGD`).
    """
    X, y, w0 = _design(X, y, w0)
    steps = validate.positive_int("steps", steps)
    tol = validate.in_interval("tol", tol, 0.0, 1.0, closed="neither")
    s_max, s_min = _singular_range(X)
    if s_max == 0.0:
        raise ValueError("X is the zero matrix: gradient descent does not move")
    lr_max = 2.0 / s_max**2
    if lr is None:
        lr = 1.0 / s_max**2
    lr = validate.number("lr", lr)
    if not 0.0 < lr < lr_max:
        raise ValueError(f"lr={lr:g} must lie in (0, 2/s_max^2) = (0, {lr_max:.6g}) for gradient descent to converge "
                         "(s_max: the largest singular value of X)")
    w = np.zeros(X.shape[1]) if w0 is None else w0.copy()
    g = X.T @ (X @ w - y)
    stop = tol * float(np.linalg.norm(g))
    t = 0
    while t < steps and np.linalg.norm(g) > stop:
        w -= lr * g
        g = X.T @ (X @ w - y)
        t += 1
    gn = float(np.linalg.norm(g))
    return LeastSquaresGD(w=w, steps=t, lr=lr, residual=float(np.linalg.norm(X @ w - y)), grad_norm=gn,
                          distance_bound=gn / s_min**2, converged=gn <= stop)


# ============================================================================ hard-margin SVM

@dataclass(frozen=True, eq=False)
class MaxMargin:
    r"""The homogeneous hard-margin SVM of (X, y), from :func:`max_margin`.

    ``w`` is the unit max-margin direction, ``margin`` = :math:`\min_i y_i\langle w, x_i\rangle`
    (the largest achievable), ``w_svm`` = ``w / margin`` the solution of
    :math:`\min \|w\|^2` s.t. :math:`y_i \langle w, x_i\rangle \ge 1`, ``alpha`` its dual
    variables (:math:`w_{svm} = \sum_i \alpha_i y_i x_i`, alpha >= 0), ``support`` the indices with
    alpha_i > 0 (support vectors, on the margin). ``kkt_residual`` is the largest relative
    violation of the KKT conditions (primal and dual feasibility, stationarity, complementary
    slackness) and ``duality_gap`` the relative gap between the primal and dual objectives.
    """

    w: np.ndarray
    margin: float
    w_svm: np.ndarray
    alpha: np.ndarray
    support: np.ndarray
    kkt_residual: float
    duality_gap: float


_NOT_SEPARABLE = ("X, y are not linearly separable through the origin: no w has y_i <w, x_i> > 0 for every i "
                  "(the homogeneous hard-margin SVM, without bias, needs separable data)")


def _kkt(Z: np.ndarray, w: np.ndarray, alpha: np.ndarray) -> tuple[float, float]:
    """(KKT residual, relative duality gap) of min 1/2|w|^2 s.t. Z w >= 1 at (w, alpha)."""
    m = Z @ w
    scale = max(float(alpha.max()), 1e-300)
    primal = max(0.0, 1.0 - float(m.min()))
    dual = max(0.0, -float(alpha.min())) / scale
    station = float(np.linalg.norm(w - Z.T @ alpha)) / max(float(np.linalg.norm(w)), 1e-300)
    slack = float(np.max(np.abs(alpha * (m - 1.0)))) / scale
    p_obj = 0.5 * float(w @ w)
    d_obj = float(alpha.sum()) - 0.5 * float(np.sum((Z.T @ alpha) ** 2))
    return max(primal, dual, station, slack), abs(p_obj - d_obj) / max(p_obj, 1e-300)


def max_margin(X, y) -> MaxMargin:
    r"""The homogeneous hard-margin SVM (no bias), as in Soudry et al. 2018:

    .. math:: \hat w = \arg\min_w \|w\|_2^2 \ \text{ s.t. } \ y_i \langle w, x_i\rangle \ge 1 \ (i = 1..n),

    returned as the unit direction :math:`w = \hat w / \|\hat w\|` with the margin
    :math:`\gamma = \min_i y_i\langle w, x_i\rangle = 1/\|\hat w\|`. Equivalently, gamma is the
    distance from 0 to the convex hull of the points :math:`z_i = y_i x_i`, attained at
    :math:`\gamma w`.

    Solved exactly, not by a soft-margin approximation: this is a least-distance program, which
    Lawson & Hanson (1974, ch. 23) reduce to one non-negative least-squares problem
    (``scipy.optimize.nnls``, an active-set method). The support found there is then polished by
    solving the KKT equations on it, :math:`Z_S \hat w = 1`, :math:`\hat w = Z_S^\top \alpha_S`,
    and the KKT conditions are verified (``kkt_residual``; a ``RuntimeError`` if above 1e-8).
    Data that no homogeneous hyperplane separates (margin 0, e.g. a point x_i = 0 or two points
    with y_i x_i = -y_j x_j), or only with a margin below 1e-9 max_i ||x_i|| (numerically 0),
    raise ``ValueError``. ``y`` must hold labels -1 and +1.
    """
    X, y, _ = _design(X, y)
    _labels(y)
    n, d = X.shape
    Z = y[:, None] * X
    scale = float(np.linalg.norm(Z, axis=1).max())
    if scale == 0.0:
        raise ValueError(_NOT_SEPARABLE)
    Zs = Z / scale  # rows of norm <= 1: the margin of Zs lies in [0, 1]
    E = np.vstack([Zs.T, np.ones((1, n))])
    f = np.zeros(d + 1)
    f[-1] = 1.0
    u, _ = optimize.nnls(E, f, maxiter=50 * (n + d))
    r = E @ u - f
    # ||r||^2 = gamma^2 / (1 + gamma^2) at the solution (gamma: margin of Zs); r = 0 iff infeasible.
    if not r[-1] < -1e-18 or np.linalg.norm(r) < 1e-9:
        raise ValueError(_NOT_SEPARABLE)
    w = -r[:d] / r[-1]
    alpha = u / (-r[-1])
    best = (*_kkt(Zs, w, alpha), w, alpha)
    # Polish: the KKT equations on the support found.
    S = np.flatnonzero(alpha > 1e-12 * alpha.max())
    if S.size:
        w_p = np.linalg.lstsq(Zs[S], np.ones(S.size), rcond=None)[0]
        a_p = np.zeros(n)
        a_p[S] = np.linalg.lstsq(Zs[S].T, w_p, rcond=None)[0]
        cand = (*_kkt(Zs, w_p, a_p), w_p, a_p)
        if cand[0] <= best[0]:
            best = cand
    kkt, gap, w, alpha = best
    if float((Zs @ w).min()) <= 0.0 or 1.0 / np.linalg.norm(w) < 1e-9:
        raise ValueError(_NOT_SEPARABLE)
    if kkt > 1e-8:
        raise RuntimeError(f"max_margin: the KKT conditions hold only to {kkt:.2e} (> 1e-8); the problem is "
                           "numerically degenerate")
    alpha = np.maximum(alpha, 0.0)
    norm = float(np.linalg.norm(w))
    w_unit = w / norm
    margin = float((Z @ w_unit).min())
    return MaxMargin(w=w_unit, margin=margin, w_svm=w_unit / margin, alpha=alpha / scale**2,
                     support=np.flatnonzero(alpha > 0), kkt_residual=kkt, duality_gap=gap)


def max_margin_arrays(X, y) -> tuple[np.ndarray, float]:
    """``(w, margin)`` of :func:`max_margin`: the unit max-margin direction and
    min_i y_i <w, x_i>, as a plain array and float (the reference of assignment 3's SVM question)."""
    res = max_margin(X, y)
    return res.w, res.margin


# ============================================================================ logistic regression

@dataclass(frozen=True)
class LinearFit:
    """Least-squares line ``y = slope * x + intercept`` through ``n`` points, with its R^2."""

    slope: float
    intercept: float
    r2: float
    n: int


def _linear_fit(x: np.ndarray, y: np.ndarray) -> LinearFit:
    A = np.stack([x, np.ones_like(x)], axis=1)
    (slope, intercept), *_ = np.linalg.lstsq(A, y, rcond=None)
    res = y - (slope * x + intercept)
    ss = float(np.sum((y - y.mean()) ** 2))
    return LinearFit(float(slope), float(intercept), 1.0 - float(res @ res) / ss if ss > 0 else 1.0, int(x.size))


@dataclass(frozen=True, eq=False)
class LogisticPath:
    r"""Recorded gradient-descent iterates of :func:`logistic_gd`.

    ``steps`` [k] are the recorded step numbers t (log-spaced), ``w`` [k, d] the iterates,
    ``angle`` [k] the angle in degrees between w_t and the SVM direction ``svm.w``, ``loss`` [k]
    the mean logistic loss, ``norm`` [k] = ||w_t||. Soudry et al. 2018: w_t = w_svm log t + rho_t
    with rho_t bounded, so ||w_t|| grows like ||w_svm|| log t = log t / margin and the angle decays
    like 1/log t.
    """

    steps: np.ndarray
    w: np.ndarray
    angle: np.ndarray
    loss: np.ndarray
    norm: np.ndarray
    svm: MaxMargin
    lr: float

    def _window(self, t_min, t_max) -> np.ndarray:
        t_min, t_max = validate.positive("t_min", t_min), validate.positive("t_max", t_max)
        keep = (self.steps >= t_min) & (self.steps <= t_max)
        if keep.sum() < 3:
            raise ValueError(f"t_min={t_min:g}, t_max={t_max:g} hold {int(keep.sum())} recorded steps; need >= 3")
        return keep

    def inverse_angle_fit(self, t_min: float, t_max: float) -> LinearFit:
        """Fit 1/angle (1/degrees) = slope * ln t + intercept over the recorded t_min <= t <= t_max."""
        keep = self._window(t_min, t_max)
        return _linear_fit(np.log(self.steps[keep]), 1.0 / self.angle[keep])

    def norm_fit(self, t_min: float, t_max: float) -> LinearFit:
        """Fit ||w_t|| = slope * ln t + intercept; theory: slope -> ||w_svm|| = 1 / margin."""
        keep = self._window(t_min, t_max)
        return _linear_fit(np.log(self.steps[keep]), self.norm[keep])


def _angle_deg(w: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Angle between the rows of w and the unit vector u, in degrees (atan2: accurate near 0)."""
    along = w @ u
    perp = np.linalg.norm(w - along[:, None] * u[None, :], axis=1)
    return np.degrees(np.arctan2(perp, along))


def logistic_gd(X, y, *, lr: float | None = None, steps: int = 100_000, record: int = 200,
                w0=None) -> LogisticPath:
    r"""Gradient descent on the mean logistic loss
    :math:`L(w) = \frac1n\sum_i \log(1 + e^{-y_i\langle w, x_i\rangle})` of linearly separable
    data, :math:`w_{t+1} = w_t - \eta \nabla L(w_t)` from ``w0`` (default 0), recorded at ``record``
    log-spaced steps between 1 and ``steps``.

    Soudry et al. 2018 (Theorem 3): for separable data and any :math:`\eta < 2/\beta`, with
    :math:`\beta = s_{max}(X)^2 / (4n)` the smoothness of L, :math:`w_t / \|w_t\|` converges to the
    hard-margin SVM direction and :math:`w_t = \hat w \log t + \rho_t` with :math:`\rho_t` bounded,
    so the angle to it decays like 1/log t. The default lr is 1/beta. The SVM is computed exactly
    (:func:`max_margin`, which raises ``ValueError`` for data that is not separable). float64
    numpy; 10^5 steps of a 5-D problem with 50 points take about a second.
    """
    X, y, w0 = _design(X, y, w0)
    _labels(y)
    steps = validate.integer("steps", steps, lo=2)
    record = validate.integer("record", record, lo=2)
    svm = max_margin(X, y)
    n = X.shape[0]
    Z = y[:, None] * X
    beta = float(np.linalg.norm(Z, 2)) ** 2 / (4.0 * n)
    if lr is None:
        lr = 1.0 / beta
    lr = validate.number("lr", lr)
    if not 0.0 < lr < 2.0 / beta:
        raise ValueError(f"lr={lr:g} must lie in (0, 2/beta) = (0, {2.0 / beta:.6g}), beta = s_max(X)^2/(4n) the "
                         "smoothness of the mean logistic loss (Soudry et al. 2018, Theorem 3)")
    ts = np.unique(np.round(np.logspace(0, math.log10(steps), record)).astype(np.int64))
    w = np.zeros(X.shape[1]) if w0 is None else w0.copy()
    rec = np.empty((ts.size, w.size))
    ZT, c, j = Z.T.copy(), lr / n, 0
    for t in range(1, steps + 1):
        w += c * (ZT @ special.expit(-(Z @ w)))  # -grad L = (1/n) sum_i z_i sigmoid(-<z_i, w>)
        if t == ts[j]:
            rec[j] = w
            j += 1
    loss = np.mean(np.logaddexp(0.0, -(rec @ ZT)), axis=1)
    return LogisticPath(steps=ts, w=rec, angle=_angle_deg(rec, svm.w), loss=loss, norm=np.linalg.norm(rec, axis=1),
                        svm=svm, lr=lr)


# ============================================================================ sparse regression

def min_l1_interpolant(X, y) -> np.ndarray:
    r"""The minimum-l1 interpolant :math:`\arg\min \|w\|_1` s.t. :math:`Xw = y` (basis pursuit).

    Solved as the linear program :math:`\min 1^\top(p + q)` s.t. :math:`X(p - q) = y`,
    :math:`p, q \ge 0` with ``scipy.optimize.linprog(method="highs")``; w = p - q. The solver's
    status is checked: y outside the range of X raises ``ValueError``, any other failure
    ``RuntimeError``. The vertex it returns is polished by solving X_S w_S = y on its support S
    (kept only if it is at least as good), so w interpolates to about machine precision. Where
    the minimizer is not unique, one of them is returned.
    """
    X, y, _ = _design(X, y)
    n, d = X.shape
    res = optimize.linprog(np.ones(2 * d), A_eq=np.hstack([X, -X]), b_eq=y, bounds=(0, None), method="highs")
    if res.status == 2:
        raise ValueError("X, y: no w satisfies X w = y (y is not in the range of X; linprog reports infeasible)")
    if res.status != 0:
        raise RuntimeError(f"min_l1_interpolant: linprog (highs) did not solve the problem: {res.message}")
    w = res.x[:d] - res.x[d:]
    S = np.flatnonzero(np.abs(w) > 1e-9 * max(float(np.abs(w).max()), 1e-300))
    if 0 < S.size <= n:
        w_p = np.zeros(d)
        w_p[S] = np.linalg.lstsq(X[:, S], y, rcond=None)[0]
        if (np.linalg.norm(X @ w_p - y) <= np.linalg.norm(X @ w - y)
                and np.abs(w_p).sum() <= np.abs(w).sum() * (1 + 1e-9)):
            w = w_p
    return w


@dataclass(frozen=True, eq=False)
class DiagonalNet:
    """Result of :func:`diagonal_net`: w = u*u - v*v after ``steps`` steps, the final loss
    (1/(2n))||Xw - y||^2, the relative residual ||Xw - y|| / ||y||, ``converged`` (residual <= tol)
    and the loss recorded every ``record_every`` steps (``history``)."""

    w: np.ndarray
    u: np.ndarray
    v: np.ndarray
    alpha: float
    lr: float
    steps: int
    loss: float
    residual: float
    converged: bool
    history: np.ndarray
    record_every: int


def diagonal_net(X, y, alpha: float, *, lr: float | None = None, steps: int = 200_000, tol: float = 1e-9,
                 record_every: int = 100) -> DiagonalNet:
    r"""Gradient descent on a diagonal linear network :math:`w = u \odot u - v \odot v`
    (Woodworth et al. 2020, section 4) for :math:`L(u, v) = \frac{1}{2n}\|X w - y\|^2`, from
    :math:`u = v = \alpha\mathbf 1` (their initialization, so w(0) = 0):

    .. math:: u \leftarrow u \odot (1 - 2\eta g), \quad v \leftarrow v \odot (1 + 2\eta g), \quad g = X^\top(Xw - y)/n.

    Woodworth et al. (Theorem 1): gradient flow converges to the interpolant minimizing
    :math:`Q_\alpha(w) = \alpha^2 \sum_i q(w_i/\alpha^2)`, :math:`q(z) = 2 - \sqrt{4 + z^2} + z\,\mathrm{arcsinh}(z/2)`
    (:func:`diagonal_net_limit`): min-l1 as alpha -> 0, min-l2 as alpha -> infinity.
    Gradient descent with a finite step is close to the flow for small ``lr``; its effective
    initialization is slightly smaller than alpha (u_i v_i shrinks by 1 - 4 eta^2 g_i^2 per step).

    Learning rate. The curvature of L is at most :math:`4\lambda_{max}(X^\top X/n)\max_i(u_i^2 + v_i^2) + 2\|g\|_\infty`
    with :math:`u_i^2 + v_i^2 \le |w_i| + 2\alpha^2`, so it grows like alpha^2 at a large init
    and a step of order 1/alpha^2 is needed there. The default is
    :math:`\eta = 1 / (4\lambda_{max}(B + 2\alpha^2) + 2\|X^\top y/n\|_\infty)` with
    B = ||w_2||_2, w_2 the min-l2 interpolant (a scale for the largest |w_i| on the path; half
    the step at which the curvature bound would allow divergence when max |w_i| <= B).
    For tiny alpha the number of steps grows like log(1/alpha) (each coordinate leaves its
    saddle at an exponential rate). Stops when ||Xw - y|| <= ``tol`` ||y||; a divergent run
    (non-finite or exploding loss) raises ``RuntimeError``.
    """
    X, y, _ = _design(X, y)
    alpha = validate.positive("alpha", alpha)
    steps = validate.positive_int("steps", steps)
    tol = validate.in_interval("tol", tol, 0.0, 1.0, closed="neither")
    record_every = validate.positive_int("record_every", record_every)
    n = X.shape[0]
    lam = float(np.linalg.norm(X, 2)) ** 2 / n
    g0 = X.T @ y / n
    if lr is None:
        B = float(np.linalg.norm(np.linalg.lstsq(X, y, rcond=None)[0]))
        lr = 1.0 / (4.0 * lam * (B + 2.0 * alpha**2) + 2.0 * float(np.abs(g0).max()))
    lr = validate.positive("lr", lr)
    u = np.full(X.shape[1], alpha)
    v = u.copy()
    w = np.zeros_like(u)
    y_norm = max(float(np.linalg.norm(y)), 1e-300)
    stop = tol * y_norm
    hist = []
    t = 0
    while True:
        r = X @ w - y
        rn = float(np.linalg.norm(r))
        if t % record_every == 0:
            hist.append(0.5 * rn**2 / n)
        if rn <= stop or t >= steps:
            break
        if not math.isfinite(rn) or rn > 1e6 * y_norm:
            raise RuntimeError(f"diagonal_net diverged at step {t} (residual {rn:.3g}); lower lr={lr:g}")
        g = X.T @ r
        g *= 2.0 * lr / n
        u *= 1.0 - g
        v *= 1.0 + g
        np.subtract(u * u, v * v, out=w)
        t += 1
    return DiagonalNet(w=w, u=u, v=v, alpha=alpha, lr=lr, steps=t, loss=0.5 * rn**2 / n, residual=rn / y_norm,
                       converged=rn <= stop, history=np.asarray(hist), record_every=record_every)


def diagonal_net_limit(X, y, alpha: float, *, tol: float = 1e-10, max_iter: int = 1000) -> np.ndarray:
    r"""The limit of gradient flow on the diagonal network from u = v = alpha 1 (Woodworth et al.
    2020, Theorem 1): :math:`\arg\min Q_\alpha(w)` s.t. :math:`Xw = y`.

    Solved through its dual. Stationarity gives
    :math:`w = 2\alpha^2 \sinh(X^\top\lambda)` (the flow's own form: u = alpha e^{-2s},
    v = alpha e^{2s} with s in the row space of X), and lambda minimizes the strictly convex
    :math:`D(\lambda) = 2\alpha^2\sum_i\cosh((X^\top\lambda)_i) - y^\top\lambda` (X of full row
    rank, n <= d). Newton's method with backtracking, each step changing X^T lambda by at most 10
    in any coordinate, in log space so that alpha down to 1e-150 works; stops when
    ||Xw - y|| <= ``tol`` ||y|| and raises ``RuntimeError`` if that takes more than ``max_iter``
    iterations.
    """
    X, y, _ = _design(X, y)
    alpha = validate.positive("alpha", alpha)
    tol = validate.in_interval("tol", tol, 0.0, 1.0, closed="neither")
    max_iter = validate.positive_int("max_iter", max_iter)
    n, d = X.shape
    if n > d or np.linalg.matrix_rank(X) < n:
        raise ValueError(f"X must have full row rank n <= d (shape {X.shape}, rank {np.linalg.matrix_rank(X)}) "
                         "for the interpolant to exist for every y")
    c = math.log(2.0) + 2.0 * math.log(alpha)  # log(2 alpha^2)

    def log_cosh(z):
        a = np.abs(z)
        return a + np.log1p(np.exp(-2.0 * a)) - math.log(2.0)

    def dual(lam):
        return float(np.sum(np.exp(c + log_cosh(X.T @ lam)))) - float(y @ lam)

    def primal(lam):
        z = X.T @ lam
        a = np.abs(z)
        return np.sign(z) * np.exp(c + a + np.log1p(-np.exp(-2.0 * a)) - math.log(2.0))  # 2 alpha^2 sinh(z)

    lam = np.zeros(n)
    y_norm = max(float(np.linalg.norm(y)), 1e-300)
    with np.errstate(over="ignore", divide="ignore"):
        D = dual(lam)
        w = primal(lam)
        grad = X @ w - y
        gn = float(np.linalg.norm(grad))
        for _ in range(max_iter):
            if gn <= tol * y_norm:
                return w
            H = (X * np.exp(c + log_cosh(X.T @ lam))) @ X.T
            step = np.linalg.lstsq(H, grad, rcond=None)[0]
            dz = float(np.abs(X.T @ step).max())
            if dz > 10.0:  # trust region: at a tiny alpha the first Newton steps are ~1/alpha^2 long
                step *= 10.0 / dz
            slope = float(grad @ step)
            t = 1.0
            while t > 1e-30:
                new = lam - t * step
                D_new = dual(new)
                w_new = primal(new)
                grad_new = X @ w_new - y
                gn_new = float(np.linalg.norm(grad_new))
                # Armijo on D; near the optimum D stops resolving the decrease (rounding), so a
                # step that keeps D within rounding and lowers the residual is accepted too.
                if D_new <= D - 0.25 * t * slope or (D_new <= D + 1e-12 * (abs(D) + 1.0) and gn_new < gn):
                    break
                t *= 0.5
            else:
                break  # no step lowers D or the residual: converged to rounding
            lam, D, w, grad, gn = new, D_new, w_new, grad_new, gn_new
    res = gn / y_norm
    if res <= tol:
        return w
    raise RuntimeError(f"diagonal_net_limit: Newton's method stopped with relative residual {res:.2e} > tol={tol:g}")


# ============================================================================ matrix factorization

def effective_rank(M) -> float:
    r"""Effective rank (Roy & Vetterli 2007): :math:`\exp\big(-\sum_k p_k \ln p_k\big)` with
    :math:`p_k = \sigma_k / \sum_j \sigma_j` the normalized singular values of ``M`` (0 ln 0 = 0).

    Between 1 (rank one) and rank(M), equal to r when the r non-zero singular values are equal.
    Singular values (3, 2, 1) give 2.749459. ``M``: a 2-D array; the zero matrix raises
    ``ValueError`` (no normalized singular values).
    """
    M = _array("M", M, 2)
    s = np.linalg.svd(M, compute_uv=False)
    total = float(s.sum())
    if total == 0.0:
        raise ValueError("M is the zero matrix: its effective rank is undefined "
                         "(the singular values must not all be 0)")
    p = s[s > 0] / total
    return float(np.exp(-np.sum(p * np.log(p))))


@dataclass(frozen=True, eq=False)
class MatrixCompletion:
    """Result of :func:`deep_matrix_completion`. Errors are relative Frobenius errors:
    ``observed_error`` = ||P_obs(W - T)|| / ||P_obs T||, ``unobserved_error`` the same over the
    unobserved entries (nan when every entry is observed). ``history`` [k, 3] holds
    (step, observed error, effective rank) every ``record_every`` steps."""

    solution: np.ndarray
    depth: int
    init_scale: float
    lr: float
    steps: int
    observed_error: float
    unobserved_error: float
    effective_rank: float
    singular_values: np.ndarray
    converged: bool
    history: np.ndarray


def deep_matrix_completion(target, mask, depth: int, *, init_scale: float = 1e-2, lr: float | None = None,
                           steps: int = 100_000, tol: float = 1e-5, seed: int = 0,
                           record_every: int = 100) -> MatrixCompletion:
    r"""Matrix completion by gradient descent on a depth-N linear factorization
    :math:`W = W_N \cdots W_1` (Gunasekar et al. 2017 for N = 2; Arora, Cohen, Hu & Luo 2019,
    "Implicit regularization in deep matrix factorization", for N >= 2), loss
    :math:`L = \frac12\|P_\Omega(W - T)\|_F^2` over the observed entries Omega (``mask`` True).

    Shapes: T is [m, k]; W_1 is [h, k], W_2 ... W_{N-1} are [h, h], W_N is [m, h], h = min(m, k),
    so no factorization constrains the rank (depth 1 is W itself). Initialization (ours, stated
    once): W_j(0) = ``init_scale`` G_j / sqrt(h) with G_j standard Gaussian (``seed``), so each
    factor has singular values of order init_scale and the product of order init_scale^N. From a
    small init, depth 1 only fits the observed entries and leaves the others near 0; depth >= 2
    learns the singular values one at a time, sharper with depth (Arora et al. 2019, section 3),
    which lowers the effective rank (:func:`effective_rank`) of the solution.

    Gradients: :math:`\nabla_{W_j} L = (W_N\cdots W_{j+1})^\top\, P_\Omega(W - T)\, (W_{j-1}\cdots W_1)^\top`.
    Default lr: 1 / (N s^{2 - 2/N}) with s = ||P_Omega T||_2 / p (p: fraction observed), an
    estimate of ||T||_2 (the curvature near a balanced solution is about N ||W||_2^{2 - 2/N}), so
    the step stays below 2 / curvature; depth 1 then solves in one step. Stops when the
    relative observed error is <= ``tol`` (``converged``) or after ``steps`` steps; divergence
    raises ``RuntimeError``. A ``mask`` with no observed entry raises ``ValueError``.
    """
    T = _array("target", target, 2)
    M = np.asarray(mask)
    if M.shape != T.shape:
        raise ValueError(f"mask must have the shape of target {T.shape}, got {M.shape}")
    if M.dtype != bool:
        if not np.isin(M, (0, 1)).all():
            raise ValueError("mask must hold booleans (or 0/1): True where the entry of target is observed")
        M = M.astype(bool)
    if not M.any():
        raise ValueError(f"mask has no observed entry (all {M.size} entries False); at least one must be True")
    depth = validate.positive_int("depth", depth)
    init_scale = validate.positive("init_scale", init_scale)
    steps = validate.positive_int("steps", steps)
    tol = validate.in_interval("tol", tol, 0.0, 1.0, closed="neither")
    seed = validate.nonnegative_int("seed", seed)
    record_every = validate.positive_int("record_every", record_every)
    m, k = T.shape
    h = min(m, k)
    P = M.astype(np.float64)
    T_obs = P * T
    obs_norm = float(np.linalg.norm(T_obs))
    if obs_norm == 0.0:
        raise ValueError("target is 0 on every observed entry of mask: there is nothing to fit")
    unobs = ~M
    unobs_norm = float(np.linalg.norm(T[unobs])) if unobs.any() else 0.0
    if lr is None:
        s = float(np.linalg.norm(T_obs, 2)) / M.mean()
        lr = 1.0 / (depth * s ** (2.0 - 2.0 / depth))
    lr = validate.positive("lr", lr)
    rng = np.random.default_rng(seed)
    shapes = [(m if j == depth - 1 else h, k if j == 0 else h) for j in range(depth)]
    Ws = [init_scale * rng.standard_normal(s) / math.sqrt(h) for s in shapes]

    hist = []
    t = 0
    while True:
        prefix = [None, Ws[0]]  # prefix[j] = W_j ... W_1; prefix[depth] is W
        for j in range(1, depth):
            prefix.append(Ws[j] @ prefix[j])
        W = prefix[depth]
        G = P * (W - T)
        err = float(np.linalg.norm(G)) / obs_norm
        if not math.isfinite(err) or err > 1e6:
            raise RuntimeError(f"deep_matrix_completion diverged at step {t} (observed error {err:.3g}); "
                               f"lower lr={lr:g}")
        if t % record_every == 0:
            hist.append((t, err, effective_rank(W) if np.any(W) else 0.0))
        if err <= tol or t >= steps:
            break
        # gradient of W_j: (W_N ... W_{j+1})^T G (W_{j-1} ... W_1)^T, the suffix built from the top
        left = G
        for j in range(depth, 0, -1):
            A = Ws[j - 1]
            g = left if j == 1 else left @ prefix[j - 1].T
            if j > 1:
                left = A.T @ left
            A -= lr * g
        t += 1
    sv = np.linalg.svd(W, compute_uv=False)
    unobs_err = float(np.linalg.norm((W - T)[unobs])) / unobs_norm if unobs_norm > 0 else float("nan")
    return MatrixCompletion(solution=W, depth=depth, init_scale=init_scale, lr=lr, steps=t, observed_error=err,
                            unobserved_error=unobs_err, effective_rank=effective_rank(W), singular_values=sv,
                            converged=err <= tol, history=np.asarray(hist))


# ============================================================================ problems for the lab

@dataclass(frozen=True, eq=False)
class Dataset:
    """Inputs ``X`` [n, d] and targets or labels ``y`` [n]; ``w_star`` [d] is the teacher that made
    them. Unpacks as ``X, y = data``."""

    X: np.ndarray
    y: np.ndarray
    w_star: np.ndarray

    def __iter__(self):
        return iter((self.X, self.y))


def separable_data(n: int, d: int, *, margin: float = 0.1, seed: int = 0) -> Dataset:
    """n points in R^d, labelled y = sign(<w*, x>) by a random unit teacher w*, with a clear
    margin: x ~ N(0, I_d) is drawn until |<w*, x>| >= ``margin`` (rejection), so the data are
    separable through the origin with a hard margin of at least ``margin`` along w*."""
    n, d = validate.positive_int("n", n), validate.positive_int("d", d)
    margin = validate.in_interval("margin", margin, 0.0, 3.0, closed="left")
    seed = validate.nonnegative_int("seed", seed)
    rng = np.random.default_rng(seed)
    w = rng.standard_normal(d)
    w /= np.linalg.norm(w)
    rows = []
    while sum(len(r) for r in rows) < n:
        x = rng.standard_normal((4 * n, d))
        rows.append(x[np.abs(x @ w) >= margin])
    X = np.concatenate(rows)[:n]
    return Dataset(X=X, y=np.sign(X @ w), w_star=w)


def sparse_regression(n: int, d: int, k: int, *, seed: int = 0) -> Dataset:
    """A noiseless sparse regression: X [n, d] with i.i.d. N(0, 1/n) entries, a k-sparse teacher
    w* (support uniform at random, entries +-1 with random signs) and y = X w*."""
    n, d, k = validate.positive_int("n", n), validate.positive_int("d", d), validate.positive_int("k", k)
    if k > d:
        raise ValueError(f"k={k} must be <= d={d} (the number of non-zero entries of w*)")
    seed = validate.nonnegative_int("seed", seed)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d)) / math.sqrt(n)
    w = np.zeros(d)
    w[rng.choice(d, k, replace=False)] = rng.choice([-1.0, 1.0], k)
    return Dataset(X=X, y=X @ w, w_star=w)


@dataclass(frozen=True, eq=False)
class CompletionProblem:
    """A matrix completion problem: ``target`` [d, d] of rank ``rank`` and ``mask`` (True where
    observed). Unpacks as ``target, mask = problem``."""

    target: np.ndarray
    mask: np.ndarray
    rank: int

    def __iter__(self):
        return iter((self.target, self.mask))


def low_rank_completion(d: int, rank: int, observed: int, *, seed: int = 0) -> CompletionProblem:
    """A d x d target U V^T / sqrt(rank) (U, V [d, rank] standard Gaussian: entries of variance 1)
    with ``observed`` entries chosen uniformly at random without replacement."""
    d, rank = validate.positive_int("d", d), validate.positive_int("rank", rank)
    if rank > d:
        raise ValueError(f"rank={rank} must be <= d={d}")
    observed = validate.integer("observed", observed, lo=1, hi=d * d)
    seed = validate.nonnegative_int("seed", seed)
    rng = np.random.default_rng(seed)
    U, V = rng.standard_normal((d, rank)), rng.standard_normal((d, rank))
    mask = np.zeros(d * d, bool)
    mask[rng.choice(d * d, observed, replace=False)] = True
    return CompletionProblem(target=U @ V.T / math.sqrt(rank), mask=mask.reshape(d, d), rank=rank)
