"""Random-feature regression and double descent (chapter 2).

A random-feature model fixes a random first layer and fits only the read-out by least squares:
f(x) = beta^T phi(x) with features phi_k(x) = sigma(<w_k, x> + b_k) / sqrt(p), k = 1..p. Sweeping
the number of features p through the number of training points n shows the double-descent curve
of Belkin, Hsu, Ma, Mandal 2019 ("Reconciling modern machine-learning practice and the classical
bias-variance trade-off", PNAS; random Fourier and ReLU features on MNIST): the test error of the
minimum-norm least-squares fit peaks at the interpolation threshold p = n and falls again for
p > n. Nakkiran, Venkat, Kakade, Ma 2020 ("Optimal regularization can mitigate double descent")
show that a well-chosen ridge removes the peak. For isotropic Gaussian features the expected risk
of minimum-norm least squares has a closed form on both sides of the threshold (Belkin, Hsu, Xu
2020, Thm. 1, exact for finite n and p; Hastie, Montanari, Rosset, Tibshirani 2022, Thm. 1, its
proportional limit p/n -> gamma): ``linear_min_norm_risk``, checked against
``linear_min_norm_simulation``.

Conventions (stated once, here):

- Rows are samples: X is [n, d_in], the feature matrix Phi is [n, p], targets Y are [n] or [n, k].
- Feature weights w_k ~ N(0, I / d_in) (so <w_k, x> has variance ||x||^2 / d_in, about 1 for
  standardized inputs), features divided by sqrt(p) so that Phi Phi^T tends to the kernel matrix
  E_w[sigma(<w, x>) sigma(<w, x'>)] as p grows. Activations ``ACTIVATIONS``: ``relu`` and
  ``tanh`` without bias (b = 0); ``cos`` is sqrt(2) cos(<w, x> + b), b ~ U[0, 2 pi), the random
  Fourier features of the Gaussian kernel exp(-||x - x'||^2 / (2 d_in)) (Rahimi & Recht 2007).
- Centre the inputs before calling a feature map (``data.digits`` standardizes by default). With
  raw pixels (all >= 0) and a bias, many ReLU features are affine on the training set, the feature
  matrix loses rank, and the peak moves away from p = n.
- Least squares minimizes ||Phi beta - Y||^2 + ridge ||beta||^2 (sums, not means); ridge = 0 gives
  the minimum-norm solution Phi^+ Y.
- Errors: the mean squared error is (1/n) sum_i ||f(x_i) - y_i||^2, summed over the k outputs
  (one-hot targets for class labels); the classification error is the fraction of points whose
  argmax output is not their class.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .validate import int_sequence, integer, nonnegative, one_of, positive_int

__all__ = ["ACTIVATIONS", "FeatureMap", "feature_map", "least_squares", "DoubleDescent", "double_descent",
           "RidgeSelection", "select_ridge", "linear_min_norm_risk", "MonteCarlo", "linear_min_norm_simulation",
           "relu_hermite_coefficients", "relu_polynomial_floor"]

ACTIVATIONS = ("relu", "tanh", "cos")


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=np.float64)
    a.setflags(write=False)
    return a


def _matrix(name: str, x, cols: int | None = None) -> np.ndarray:
    """A finite float64 [rows, cols] array (torch tensors are copied to the CPU)."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n, d], got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must hold finite numbers only")
    return a


def _labels(name: str, y, n: int) -> np.ndarray:
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    a = np.asarray(y)
    if a.shape != (n,) or a.dtype.kind not in "iu":
        raise ValueError(f"{name} must be {n} integer class labels, shape ({n},), got shape {a.shape} "
                         f"and dtype {a.dtype}")
    if n and a.min() < 0:
        raise ValueError(f"{name} must hold class labels >= 0, got {int(a.min())}")
    return a.astype(np.int64)


# ============================================================================ feature maps

@dataclass(frozen=True, eq=False)
class FeatureMap:
    """Random features phi(x) = sigma(W x + b) / sqrt(p) with fixed weights (see the module docstring).

    ``weight`` is [p, d_in] with entries N(0, 1/d_in); ``phase`` is [p] (zero except for ``cos``).
    Calling it on X [n, d_in] returns Phi [n, p] in float64. The arrays are read-only. Made by
    ``feature_map``; the first q features of a map with p >= q features and the same seed are the
    q features of ``feature_map(d_in, q, seed=seed)`` (times sqrt(q / p), the normalization).
    """

    weight: np.ndarray
    phase: np.ndarray
    activation: str
    seed: int

    @property
    def p(self) -> int:
        return int(self.weight.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.weight.shape[1])

    def __call__(self, X) -> np.ndarray:
        z = _matrix("X", X, self.d_in) @ self.weight.T + self.phase
        if self.activation == "relu":
            h = np.maximum(z, 0.0)
        elif self.activation == "tanh":
            h = np.tanh(z)
        else:
            h = math.sqrt(2.0) * np.cos(z)
        return h / math.sqrt(self.p)

    def __repr__(self) -> str:
        return f"FeatureMap(d_in={self.d_in}, p={self.p}, activation={self.activation!r}, seed={self.seed})"


def feature_map(d_in: int, p: int, *, activation: str = "relu", seed: int = 0) -> FeatureMap:
    """``p`` random features of ``d_in``-dimensional inputs: W_kj ~ N(0, 1/d_in) i.i.d., phases
    b_k ~ U[0, 2 pi) for ``activation="cos"`` (else 0), drawn from numpy's PCG64 seeded with
    (seed, 0) for W and (seed, 1) for b, so maps of different p with one seed are nested.
    Centre the inputs first (module docstring)."""
    d_in, p = positive_int("d_in", d_in), positive_int("p", p)
    activation = one_of("activation", activation, ACTIVATIONS)
    seed = integer("seed", seed, lo=0)
    w = np.random.default_rng([seed, 0]).standard_normal((p, d_in)) / math.sqrt(d_in)
    b = (np.random.default_rng([seed, 1]).uniform(0.0, 2.0 * math.pi, p) if activation == "cos"
         else np.zeros(p))
    return FeatureMap(_frozen(w), _frozen(b), activation, seed)


# ============================================================================ least squares

def _svd_solve(u: np.ndarray, s: np.ndarray, vt: np.ndarray, Y: np.ndarray, ridge: float) -> np.ndarray:
    """beta = V diag(s / (s^2 + ridge)) U^T Y; at ridge 0 singular values below the pseudo-inverse's
    cut-off (numpy's: max(n, p) eps s_max) count as zero."""
    if ridge > 0:
        f = s / (s * s + ridge)
    else:
        cut = max(u.shape[0], vt.shape[1]) * np.finfo(np.float64).eps * (s[0] if s.size else 0.0)
        f = np.where(s > cut, 1.0 / np.where(s > cut, s, 1.0), 0.0)
    return vt.T @ (f[:, None] * (u.T @ Y)) if Y.ndim == 2 else vt.T @ (f * (u.T @ Y))


def least_squares(Phi, Y, ridge: float = 0.0) -> np.ndarray:
    r"""Least-squares read-out: :math:`\hat\beta = \arg\min_\beta \|\Phi\beta - Y\|^2 + \lambda\|\beta\|^2`
    with :math:`\lambda` = ``ridge`` >= 0, and for :math:`\lambda = 0` the minimum-norm minimizer
    :math:`\Phi^+ Y` (the interpolant of smallest norm when p >= n and Phi has rank n).

    Computed from the thin SVD :math:`\Phi = U S V^\top` (r = min(n, p) singular values):
    :math:`\hat\beta = V \,\mathrm{diag}(s_i / (s_i^2 + \lambda))\, U^\top Y`. For p > n this is the dual
    form :math:`\Phi^\top(\Phi\Phi^\top + \lambda I_n)^{-1} Y` and for p < n the primal
    :math:`(\Phi^\top\Phi + \lambda I_p)^{-1}\Phi^\top Y`, without forming either Gram matrix (whose
    condition number is the square of Phi's), so it stays accurate at p ~ n. ``Phi`` is [n, p],
    ``Y`` is [n] or [n, k]; returns [p] or [p, k] in float64.
    """
    Phi = _matrix("Phi", Phi)
    Y_arr = np.asarray(Y.detach().cpu().double().numpy() if hasattr(Y, "detach") else Y, dtype=np.float64)
    if Y_arr.ndim not in (1, 2) or Y_arr.shape[0] != Phi.shape[0]:
        raise ValueError(f"Y must be [n] or [n, k] with n = {Phi.shape[0]} rows like Phi, got shape {Y_arr.shape}")
    if not np.all(np.isfinite(Y_arr)):
        raise ValueError("Y must hold finite numbers only")
    ridge = nonnegative("ridge", ridge)
    u, s, vt = np.linalg.svd(Phi, full_matrices=False)
    return _svd_solve(u, s, vt, Y_arr, ridge)


# ============================================================================ double descent

@dataclass(frozen=True, eq=False)
class DoubleDescent:
    """Result of ``double_descent``: errors of the random-feature least-squares fit at each p.

    Arrays are indexed like ``ps``; each is the mean over ``seeds`` (feature draws), with its
    standard error (sample standard deviation / sqrt(len(seeds)); NaN for one seed). MSE and
    classification error as in the module docstring (one-hot targets).
    """

    ps: np.ndarray
    n: int
    ridge: float
    activation: str
    seeds: tuple[int, ...]
    train_mse: np.ndarray
    test_mse: np.ndarray
    test_mse_se: np.ndarray
    train_error: np.ndarray
    test_error: np.ndarray
    test_error_se: np.ndarray

    @property
    def peak_p(self) -> int:
        """The p of the largest mean test MSE."""
        return int(self.ps[int(np.argmax(self.test_mse))])

    def at(self, p: int) -> int:
        """Index of ``p`` in ``ps``."""
        hits = np.flatnonzero(self.ps == p)
        if not hits.size:
            raise ValueError(f"p={p} is not one of the swept ps {self.ps.tolist()}")
        return int(hits[0])


def _check_ps(ps) -> tuple[int, ...]:
    ps = int_sequence("ps", ps, lo=1)
    if any(b <= a for a, b in zip(ps, ps[1:])):
        raise ValueError(f"ps={list(ps)} must be strictly increasing positive integers")
    return ps


def _one_hot(y: np.ndarray, k: int) -> np.ndarray:
    out = np.zeros((y.size, k))
    out[np.arange(y.size), y] = 1.0
    return out


def _sweep(x_train, y_train, x_eval, y_eval, ps, ridges, seeds, activation) -> dict[str, np.ndarray]:
    """Metrics [len(ridges), len(seeds), len(ps)]; one SVD per (seed, p), shared by all ridges."""
    xtr = _matrix("x_train", x_train)
    n, d = xtr.shape
    ytr = _labels("y_train", y_train, n)
    xev = _matrix("x_test", x_eval, d)
    yev = _labels("y_test", y_eval, xev.shape[0])
    ps = _check_ps(ps)
    seeds = int_sequence("seeds", seeds, lo=0)
    activation = one_of("activation", activation, ACTIVATIONS)
    k = int(max(ytr.max(), yev.max(initial=0))) + 1
    Y = _one_hot(ytr, k)
    Yev = _one_hot(yev, k)
    shape = (len(ridges), len(seeds), len(ps))
    out = {key: np.empty(shape) for key in ("train_mse", "test_mse", "train_error", "test_error")}
    for si, seed in enumerate(seeds):
        fm = feature_map(d, ps[-1], activation=activation, seed=seed)
        big_tr, big_ev = fm(xtr), fm(xev)
        for pi, p in enumerate(ps):
            scale = math.sqrt(ps[-1] / p)           # the first p features of the big map, renormalized
            ftr, fev = big_tr[:, :p] * scale, big_ev[:, :p] * scale
            u, s, vt = np.linalg.svd(ftr, full_matrices=False)
            for ri, ridge in enumerate(ridges):
                beta = _svd_solve(u, s, vt, Y, ridge)
                out_tr, out_ev = ftr @ beta, fev @ beta
                out["train_mse"][ri, si, pi] = np.mean(np.sum((out_tr - Y) ** 2, axis=1))
                out["test_mse"][ri, si, pi] = np.mean(np.sum((out_ev - Yev) ** 2, axis=1))
                out["train_error"][ri, si, pi] = np.mean(out_tr.argmax(1) != ytr)
                out["test_error"][ri, si, pi] = np.mean(out_ev.argmax(1) != yev)
    out["n"] = n
    return out


def _mean_se(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard error over axis 0 (the seeds)."""
    s = a.shape[0]
    se = a.std(axis=0, ddof=1) / math.sqrt(s) if s > 1 else np.full(a.shape[1:], np.nan)
    return _frozen(a.mean(axis=0)), _frozen(se)


def double_descent(x_train, y_train, x_test, y_test, ps: Sequence[int], *, ridge: float = 0.0,
                   seeds: Sequence[int] = (0,), activation: str = "relu") -> DoubleDescent:
    """Random-feature least squares (``least_squares`` with ``ridge``; 0 = minimum norm) on one-hot
    targets of the class labels ``y_train`` (integers; k = 1 + the largest label), for each number of
    features p in ``ps`` (strictly increasing) and each feature seed in ``seeds``; returns the train
    and test MSE and classification error averaged over the seeds, with standard errors.

    For each seed one ``feature_map(d_in, max(ps), seed=seed)`` is drawn and p uses its first p
    features (nested, so the curve over p is one family of models, as in Belkin et al. 2019).
    Inputs must be centred (module docstring). The double-descent peak of the minimum-norm fit sits
    at the interpolation threshold p = n = len(x_train) (Belkin et al. 2019; Nakkiran et al. 2020).
    """
    ridge = nonnegative("ridge", ridge)
    res = _sweep(x_train, y_train, x_test, y_test, ps, (ridge,), seeds, activation)
    tr_mse, _ = _mean_se(res["train_mse"][0])
    te_mse, te_mse_se = _mean_se(res["test_mse"][0])
    tr_err, _ = _mean_se(res["train_error"][0])
    te_err, te_err_se = _mean_se(res["test_error"][0])
    return DoubleDescent(ps=np.array(_check_ps(ps), dtype=np.int64), n=int(res["n"]), ridge=ridge,
                         activation=activation, seeds=tuple(int(s) for s in seeds), train_mse=tr_mse,
                         test_mse=te_mse, test_mse_se=te_mse_se, train_error=tr_err, test_error=te_err,
                         test_error_se=te_err_se)


@dataclass(frozen=True, eq=False)
class RidgeSelection:
    """Result of ``select_ridge``: the held-out MSE of each candidate ridge averaged over ``ps`` and
    the seeds (``val_mse``, [len(ridges)]), the chosen ``ridge`` (the candidate with the smallest),
    and each candidate's held-out curve over p averaged over the seeds (``val_curves``,
    [len(ridges), len(ps)])."""

    ridges: np.ndarray
    val_mse: np.ndarray
    ridge: float
    ps: np.ndarray
    val_curves: np.ndarray


def select_ridge(x_train, y_train, x_val, y_val, ps: Sequence[int], ridges: Sequence[float], *,
                 seeds: Sequence[int] = (0,), activation: str = "relu") -> RidgeSelection:
    """Choose one ridge for a whole random-feature sweep on held-out data: for each candidate in
    ``ridges`` (each >= 0), the validation MSE (one-hot targets) of ``least_squares(Phi, Y, ridge)``
    averaged over the features counts ``ps`` and the ``seeds``; the smallest wins (the first on ties).
    ``(x_val, y_val)`` must be held out from both the training and the test set. Nakkiran et al.
    2020 prove that for isotropic linear regression the optimally tuned ridge makes the test risk
    monotone in the number of features; with one ridge tuned on held-out data the random-feature
    curve loses its peak at p = n (the lab shows it)."""
    if isinstance(ridges, (str, bytes)) or not hasattr(ridges, "__iter__"):
        raise ValueError(f"ridges={ridges!r} must be a sequence of numbers >= 0")
    ridges = tuple(nonnegative(f"ridges[{i}]", r) for i, r in enumerate(ridges))
    if not ridges:
        raise ValueError("ridges=[] must hold at least one ridge >= 0")
    res = _sweep(x_train, y_train, x_val, y_val, ps, ridges, seeds, activation)
    val = res["test_mse"].mean(axis=(1, 2))
    return RidgeSelection(ridges=_frozen(ridges), val_mse=_frozen(val), ridge=float(ridges[int(np.argmin(val))]),
                          ps=np.array(_check_ps(ps), dtype=np.int64), val_curves=_frozen(res["test_mse"].mean(axis=1)))


# ============================================================================ the linear-Gaussian model

def linear_min_norm_risk(n: int, p: int, beta_norm2: float, sigma2: float) -> float:
    r"""Expected excess risk of minimum-norm least squares with isotropic Gaussian features
    (Belkin, Hsu, Xu 2020, "Two models of double descent for weak features", Thm. 1 with all p
    features used; Hastie, Montanari, Rosset, Tibshirani 2022, Thm. 1, is its limit p/n -> gamma).

    Model: rows x_i ~ N(0, I_p) of X [n, p], y = X beta + eps with eps ~ N(0, sigma2 I_n), beta fixed
    with ||beta||^2 = ``beta_norm2``, and :math:`\hat\beta = X^+ y`. The excess risk of a new
    x ~ N(0, I_p) is :math:`E[(x^\top(\hat\beta - \beta))^2] = E\|\hat\beta - \beta\|^2`:

    - p <= n - 2: :math:`\sigma^2 p / (n - p - 1)` (no bias; the variance is
      :math:`\sigma^2 E\,\mathrm{tr}(X^\top X)^{-1}`, the mean of an inverse Wishart matrix);
    - p >= n + 2: :math:`\|\beta\|^2 (1 - n/p) + \sigma^2 n / (p - n - 1)` (the bias is the part of
      beta outside the row space of X, a uniformly random n-dimensional subspace; the variance is
      :math:`\sigma^2 E\,\mathrm{tr}(X X^\top)^{-1}`);
    - n - 1 <= p <= n + 1: infinite (``math.inf``) when sigma2 > 0.

    With sigma2 = 0 there is no variance term and the risk is finite for every p: 0 for p <= n,
    :math:`\|\beta\|^2 (1 - n/p)` for p > n. BHX's Thm. 1 states the risk with the noise added,
    :math:`E[(y - x^\top\hat\beta)^2]` = this + sigma2. Plain numbers in, a float out:
    ``linear_min_norm_risk(100, 50, 1, 1) = 1.020408``, ``linear_min_norm_risk(100, 200, 1, 1) = 1.510101``.
    """
    n, p = positive_int("n", n), positive_int("p", p)
    beta_norm2, sigma2 = nonnegative("beta_norm2", beta_norm2), nonnegative("sigma2", sigma2)
    bias = beta_norm2 * (1.0 - n / p) if p > n else 0.0
    if sigma2 == 0.0:
        return float(bias)
    if p <= n - 2:
        return sigma2 * p / (n - p - 1)
    if p >= n + 2:
        return bias + sigma2 * n / (p - n - 1)
    return math.inf


@dataclass(frozen=True)
class MonteCarlo:
    """A Monte Carlo mean with its standard error (sample standard deviation / sqrt(trials)).

    ``variance_finite`` says whether the sampled quantity has a finite variance, so that the
    standard error means something (see ``linear_min_norm_simulation``)."""

    mean: float
    stderr: float
    trials: int
    variance_finite: bool


def linear_min_norm_simulation(n: int, p: int, beta_norm2: float, sigma2: float, *, trials: int = 2000,
                               seed: int = 0) -> MonteCarlo:
    r"""Monte Carlo estimate of ``linear_min_norm_risk(n, p, beta_norm2, sigma2)``: each trial draws
    X [n, p] with N(0, 1) entries and the noise, fits :math:`\hat\beta = X^+ y` (batched SVD
    pseudo-inverse) and records :math:`\|\hat\beta - \beta\|^2`, which is exactly the excess risk
    :math:`E_x[(x^\top(\hat\beta - \beta))^2]` of that fit (isotropic x), so only the training draw is
    random. beta = sqrt(beta_norm2) e_1 (the risk depends on beta only through its norm, by
    rotational invariance).

    The per-trial value has a finite variance only when sigma2 = 0 or |p - n| >= 4 (second moments
    of the inverse Wishart matrix need n - p - 3 > 0, resp. p - n - 3 > 0); otherwise the standard
    error is not a valid error bar, and for |p - n| <= 1 the mean itself is infinite: both warn.
    """
    n, p = positive_int("n", n), positive_int("p", p)
    beta_norm2, sigma2 = nonnegative("beta_norm2", beta_norm2), nonnegative("sigma2", sigma2)
    trials, seed = integer("trials", trials, lo=2), integer("seed", seed, lo=0)
    finite_var = sigma2 == 0.0 or abs(p - n) >= 4
    if not finite_var:
        warnings.warn(f"n={n}, p={p}: the excess risk of a trial has infinite variance"
                      + (" and infinite mean" if abs(p - n) <= 1 else "")
                      + "; the standard error is not a valid error bar", RuntimeWarning, stacklevel=2)
    rng = np.random.default_rng(seed)
    beta = np.zeros(p)
    beta[0] = math.sqrt(beta_norm2)
    chunk = max(1, min(trials, 4_000_000 // (n * p)))   # bounds memory at ~32 MB per block
    values = []
    for start in range(0, trials, chunk):
        t = min(chunk, trials - start)
        X = rng.standard_normal((t, n, p))
        y = X @ beta + math.sqrt(sigma2) * rng.standard_normal((t, n))
        beta_hat = np.einsum("tpn,tn->tp", np.linalg.pinv(X), y)
        values.append(np.sum((beta_hat - beta) ** 2, axis=1))
    v = np.concatenate(values)
    return MonteCarlo(mean=float(v.mean()), stderr=float(v.std(ddof=1) / math.sqrt(trials)), trials=trials,
                      variance_finite=bool(finite_var))



# ============================================================================ a single ReLU neuron (chapter 11)

def relu_hermite_coefficients(kmax: int) -> np.ndarray:
    r"""The coefficients a_k = E[relu(z) h_k(z)], z ~ N(0, 1), of relu in the orthonormal Hermite basis
    h_k = He_k / sqrt(k!), k = 0..kmax:

    .. math:: a_0 = \frac{1}{\sqrt{2\pi}},\quad a_1 = \frac12,\quad a_k = 0 \ (k \ge 3 \text{ odd}),\quad
              a_k = \frac{(-1)^{k/2+1}(k-3)!!}{\sqrt{2\pi\, k!}} \ (k \ge 2 \text{ even}),

    from relu(z) = z/2 + |z|/2 and E[|z| He_k(z)] = 2 phi(0) (-1)^{k/2+1} (k-3)!! for even k
    (integration by parts on the half line; (-1)!! = 1). Parseval: sum_k a_k^2 = E[relu(z)^2] = 1/2.
    Computed by the ratio a_{k+2} / a_k = -(k - 1) / sqrt((k + 1)(k + 2)) (no factorials overflow).
    """
    kmax = integer("kmax", kmax, lo=0)
    a = np.zeros(kmax + 1)
    a[0] = 1.0 / math.sqrt(2.0 * math.pi)
    if kmax >= 1:
        a[1] = 0.5
    if kmax >= 2:
        a[2] = 1.0 / math.sqrt(4.0 * math.pi)
    for k in range(2, kmax - 1, 2):
        a[k + 2] = -a[k] * (k - 1) / math.sqrt((k + 1) * (k + 2))
    return a


def relu_polynomial_floor(degree: int) -> float:
    r"""The relative error of the best polynomial of degree <= L (``degree``) in x for the target
    y = relu(<w*, x>), x ~ N(0, I_d), ||w*|| = 1: by the Hermite expansion (the projection onto
    polynomials of degree <= L in Gaussian space keeps the terms k <= L),

    .. math:: \frac{\min_{\deg q \le L} E(y - q(x))^2}{\mathrm{Var}(y)}
              = \frac{\sum_{k > L} a_k^2}{1/2 - 1/(2\pi)},

    independent of d (0.2665 for L = 1, 0.0331 for L = 2 and 3). Random-features and kernel regression
    with p features (or n samples) in dimension d fit, for large d, only the degree-L part with
    d^L << p << d^{L+1} (Ghorbani, Mei, Misiakiewicz, Montanari 2021, "Linearized two-layers neural
    networks in high dimension", Ann. Statist., Thm 1), so this is their error with a fixed p as d grows:
    the quantitative form of Yehudai & Shamir 2019 (Thm 4.2).
    """
    degree = integer("degree", degree, lo=0)
    a = relu_hermite_coefficients(degree)
    var = 0.5 - 1.0 / (2.0 * math.pi)
    return float((0.5 - np.sum(a ** 2)) / var)
