r"""Spectral bias: targets on the circle, per-frequency errors and NTK eigenvalues.

For chapter 9 of the course, spectral bias (``labs/09_spectral_bias.ipynb``).

Inputs live on the unit circle :math:`x(\theta) = (\cos\theta, \sin\theta)`. A dot-product kernel
:math:`K(x, x') = K(\theta - \theta')` is diagonalized by the Fourier modes: its eigenvalues are
:math:`\mu_k = \frac{1}{2\pi}\int_{-\pi}^{\pi} K(\theta)\cos(k\theta)\,d\theta` with eigenfunctions
:math:`\cos k\theta, \sin k\theta` (:math:`\mu_k` appears twice for k >= 1). In the NTK regime
gradient flow on squared loss shrinks the error in mode k like :math:`\exp(-\eta\mu_k t)`, so
low frequencies are learned first (Rahaman et al. 2019; Basri, Jacobs, Kasten & Kritchman 2019).
A bias-free two-layer ReLU net has :math:`\mu_k = 0` for odd k >= 3 and cannot fit those
harmonics at all; biases make them positive.

Training convention (stated once): :func:`train_circle` trains the two-layer
:class:`tdlcourse.ntk.NTKMLP` (NTK parametrization, both layers and both biases trained) by full-batch
gradient descent with step :math:`\eta` on :math:`L = \frac{1}{2n}\sum_i (g(x_i) - y_i)^2`, the mean
over the n grid points with the factor 1/2. Then the error in mode k is multiplied by
:math:`1 - \eta\lambda_k` per step, :math:`\lambda_k` the eigenvalue of the NTK Gram matrix divided
by n (:func:`grid_eigenvalues`; :math:`\to \mu_k` as n grows): :func:`mode_decay_rate`,
:func:`predicted_mode_error`, :func:`efold_time`, measured by :func:`fit_decay_rates`.

Amplitude convention (stated once): a component :math:`a\sin(k\theta + \varphi)` has amplitude
:math:`|a|` at frequency k; the constant component c has amplitude :math:`|c|` at k = 0.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import torch

from . import ntk as _ntk
from . import validate


@dataclass(frozen=True)
class CirclePoints:
    """``n`` equispaced angles ``theta = 2 pi j / n`` (numpy ``[n]``) and the points
    ``x = (cos theta, sin theta)`` (torch ``[n, 2]``). Unpacks as ``theta, x = circle_points(n)``."""

    theta: np.ndarray
    x: torch.Tensor

    def __iter__(self):
        return iter((self.theta, self.x))


def circle_points(n: int, *, dtype: torch.dtype | None = None, device=None) -> CirclePoints:
    """Uniform grid of ``n`` points on the unit circle (the grid :func:`per_frequency_error` needs)."""
    n = validate.positive_int("n", n)
    theta = 2.0 * np.pi * np.arange(n) / n
    x = torch.as_tensor(np.stack([np.cos(theta), np.sin(theta)], axis=1),
                        dtype=dtype or torch.get_default_dtype(), device=device)
    return CirclePoints(theta, x)


def _freqs(freqs, name="freqs"):
    k = np.atleast_1d(np.asarray(freqs))
    if k.ndim != 1 or k.size == 0:
        raise ValueError(f"{name}={freqs!r} must be a non-empty 1-D sequence of integers >= 0 (periodic modes)")
    for i, v in enumerate(k.tolist()):
        if not (isinstance(v, float) and v.is_integer() and v >= 0):  # 2.0 is frequency 2
            validate.nonnegative_int(f"{name}[{i}]", v)
    return k.astype(int)


def frequency_target(theta, freqs, amps, phases=None):
    r"""Target :math:`\lambda(\theta) = \sum_j A_j \sin(k_j\theta + \varphi_j)` (Rahaman et al. 2019,
    here on the circle). ``theta`` numpy or torch (the result has its type); ``freqs`` integers
    >= 0, ``amps`` and ``phases`` (default 0) of the same length.
    """
    k = _freqs(freqs)
    a = np.atleast_1d(np.asarray(amps, dtype=float))
    p = np.zeros(k.size) if phases is None else np.atleast_1d(np.asarray(phases, dtype=float))
    if a.shape != k.shape or p.shape != k.shape:
        raise ValueError(f"amps and phases must have the same length as freqs ({k.size}); got {a.size} and {p.size}")
    if isinstance(theta, torch.Tensor):
        t = theta[..., None]
        return (torch.as_tensor(a, dtype=t.dtype, device=t.device)
                * torch.sin(torch.as_tensor(k, dtype=t.dtype, device=t.device) * t
                            + torch.as_tensor(p, dtype=t.dtype, device=t.device))).sum(-1)
    t = np.asarray(theta, dtype=float)[..., None]
    return (a * np.sin(k * t + p)).sum(-1)


def _np(x):
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def _amplitudes(v: np.ndarray) -> np.ndarray:
    n = v.shape[-1]
    amp = np.abs(np.fft.rfft(v, axis=-1)) / n
    amp[..., 1 : (n + 1) // 2] *= 2.0  # cos/sin pairs; k = 0 and the Nyquist mode k = n/2 are single
    return amp


def per_frequency_error(f_values, target_values) -> np.ndarray:
    r"""Amplitude of the error :math:`f - \lambda` at each frequency :math:`k = 0, \dots, n//2`, by
    FFT over the last axis, which must hold a uniform periodic grid of n points (e.g.
    :func:`circle_points`). Amplitude convention of the module docstring; leading axes are kept.
    Network outputs of shape ``[n, 1]`` are squeezed. Returns numpy ``[..., n//2 + 1]``.
    """
    f, y = _np(f_values), _np(target_values)
    if f.ndim == y.ndim + 1 and f.shape[-1] == 1:
        f = f[..., 0]
    try:
        e = f - y
    except ValueError:
        raise ValueError(f"f_values {f.shape} and target_values {y.shape} must have broadcastable shapes") from None
    if e.ndim == 0 or e.shape[-1] < 2:
        raise ValueError(f"the last axis must be a periodic grid of >= 2 points; got shape {e.shape}")
    return _amplitudes(e)


@dataclass(frozen=True)
class FrequencyErrorHistory:
    """Per-frequency error over training: ``errors[t, j]`` is the error amplitude at frequency
    ``freqs[j]`` for snapshot ``steps[t]`` (divided by the target's amplitude if ``relative``)."""

    steps: np.ndarray
    freqs: np.ndarray
    errors: np.ndarray
    relative: bool

    def first_below(self, level: float) -> np.ndarray:
        """For each frequency, the first recorded step at which the error is below ``level``
        (``nan`` if it never is): e.g. ``level=exp(-1)`` on a relative history gives the measured
        e-fold time to compare with :func:`efold_time`."""
        level = validate.positive("level", level)
        below = self.errors < level
        first = np.argmax(below, axis=0)
        return np.where(below.any(axis=0), np.asarray(self.steps, dtype=float)[first], np.nan)


def frequency_error_history(snapshots, target_values, freqs=None, steps=None, relative: bool = False) -> FrequencyErrorHistory:
    r"""Stack :func:`per_frequency_error` over training snapshots of the network's values on the
    grid into a ``[T, K]`` array (as plotted by Rahaman et al. 2019: :math:`|\tilde f_k - \tilde\lambda_k|`
    over training). ``freqs``: frequencies to keep (default all ``0..n//2``); ``steps``: labels of the
    snapshots (default ``0..T-1``); ``relative`` divides by the target's amplitude at each kept
    frequency (which must be non-zero).
    """
    snaps = [_np(s) for s in snapshots]
    if not snaps:
        raise ValueError("snapshots must be a non-empty sequence of arrays on the grid")
    err = np.stack([per_frequency_error(s, target_values) for s in snaps])
    n_k = err.shape[-1]
    k = np.arange(n_k) if freqs is None else _freqs(freqs)
    if k.max() >= n_k:
        raise ValueError(f"freqs={freqs!r} must be <= n//2 = {n_k - 1} for this grid")
    err = err[..., k]
    if relative:
        full = _amplitudes(_np(target_values))
        ref = full[..., k]
        if np.any(ref <= 1e-12 * max(full.max(), 1e-300)):
            raise ValueError(f"relative=True needs a target with non-zero amplitude at every frequency in freqs={k.tolist()}")
        err = err / ref
    s = np.arange(len(snaps)) if steps is None else np.asarray(steps)
    if s.shape != (len(snaps),):
        raise ValueError(f"steps must have one label per snapshot ({len(snaps)}); got shape {s.shape}")
    return FrequencyErrorHistory(s, k, err, bool(relative))


@dataclass(frozen=True)
class CircleSpectrum:
    """Kernel eigenvalues ``mu[k]`` on the circle for ``k = 0..kmax``, with ``abs_error`` (the
    change when the quadrature order is doubled) and ``converged`` (all errors below 1e-10 of the
    largest eigenvalue)."""

    k: np.ndarray
    mu: np.ndarray
    abs_error: np.ndarray
    converged: bool

    @property
    def value(self) -> np.ndarray:
        """The eigenvalues ``mu`` (what ``tdlcheck`` compares, as for the other result objects)."""
        return self.mu


def _bias_var(bias, sigma_b2):
    if validate.boolean("bias", bias):
        return validate.positive("sigma_b2", 1.0 if sigma_b2 is None else sigma_b2)
    if sigma_b2 not in (None, 0, 0.0):
        raise ValueError(f"sigma_b2={sigma_b2!r} needs bias=True (bias=False means sigma_b2 = 0)")
    return 0.0


@lru_cache(maxsize=8)
def _leggauss(n):
    return np.polynomial.legendre.leggauss(n)


def _embed(theta, features):
    if features is None:
        return np.stack([np.cos(theta), np.sin(theta)], axis=1)
    return _fourier_np(theta, features)


def _circle_coeffs(kmax, n, kernel, features=None, **kw):
    # mu_k = (1/pi) int_0^pi K(theta) cos(k theta) dtheta; K is smooth in theta on [0, pi], so
    # Gauss-Legendre in theta converges fast (the kink of K(phi) at phi = 0 is only in the periodic variable)
    t, w = _leggauss(n)
    theta = 0.5 * np.pi * (t + 1.0)
    w = 0.5 * np.pi * w
    x0 = _embed(np.zeros(1), features)
    xs = _embed(theta, features)
    fn = _ntk.analytic_ntk if kernel == "ntk" else _ntk.analytic_nngp
    K = np.asarray(fn(x0, xs, **kw))[0]
    return (np.cos(np.arange(kmax + 1)[:, None] * theta[None, :]) * (w * K)).sum(1) / np.pi


def ntk_eigenvalues_circle(kmax: int, depth: int = 1, bias: bool = False, *, kernel: str = "ntk",
                           activation="relu", sigma_w2: float = 1.0, sigma_b2: float | None = None,
                           n_quad: int = 256, features=None) -> CircleSpectrum:
    r"""Eigenvalues :math:`\mu_k = \frac1\pi\int_0^\pi K(\theta)\cos k\theta\,d\theta`, k = 0..kmax,
    of the analytic NTK (``kernel="ntk"``) or NNGP kernel (``"nngp"``) of :mod:`tdlcourse.ntk` on the
    unit circle (Basri et al. 2019; Bietti & Mairal 2019). They equal the eigenvalues of the
    Gram matrix of n equispaced points divided by n as n grows (each k >= 1 twice).
    ``bias=False`` forces ``sigma_b2 = 0``; ``bias=True`` uses ``sigma_b2`` (default 1.0) in every
    layer. Gauss-Legendre quadrature with ``n_quad`` nodes, checked against ``2 n_quad``.
    Bias-free two-layer relu: :math:`\mu_k = 0` for odd k >= 3, :math:`\mu_k > 0` otherwise.
    ``features``: integer frequencies :math:`b_1..b_J`; the net then sees the Fourier features
    :func:`fourier_features` of the angle instead of :math:`(\cos\theta, \sin\theta)`. The kernel is
    still a function of :math:`\theta - \theta'` (the features' dot product is
    :math:`\frac1J\sum_j\cos b_j(\theta - \theta')`), so the Fourier modes stay its eigenfunctions.
    """
    kmax = validate.nonnegative_int("kmax", kmax)
    feats = None if features is None else _feature_freqs(features)
    kernel = validate.one_of("kernel", kernel, ("ntk", "nngp"))
    n_quad = validate.integer("n_quad", n_quad, lo=8)
    sigma_b2 = _bias_var(bias, sigma_b2)
    kw = dict(depth=depth, activation=activation, sigma_w2=sigma_w2, sigma_b2=float(sigma_b2), features=feats)
    mu = _circle_coeffs(kmax, n_quad, kernel, **kw)
    err = np.abs(_circle_coeffs(kmax, 2 * n_quad, kernel, **kw) - mu)
    ok = bool(np.all(err <= 1e-10 * max(np.abs(mu).max(), 1e-300)))
    if not ok:
        warnings.warn(f"ntk_eigenvalues_circle: quadrature error up to {err.max():.2g}; raise n_quad",
                      RuntimeWarning, stacklevel=2)
    return CircleSpectrum(np.arange(kmax + 1), mu, err, ok)


def _feature_freqs(features):
    b = validate.int_sequence("features", features, lo=1)
    if np.gcd.reduce(np.array(b)) != 1:
        # all b_j multiples of g: the features, and the net, have period 2 pi / g and cannot tell theta from theta + 2 pi / g
        raise ValueError(f"features={list(b)!r} must have greatest common divisor 1 (otherwise the map is not injective)")
    return b


def _fourier_np(theta, b):
    t = np.asarray(theta, dtype=float)[:, None] * np.asarray(b, dtype=float)[None, :]
    return np.concatenate([np.cos(t), np.sin(t)], axis=1) / np.sqrt(len(b))


def fourier_features(theta, features, *, dtype: torch.dtype | None = None, device=None) -> torch.Tensor:
    r"""Fourier-feature map of an angle (Tancik et al. 2020, eq. 2, with integer frequencies so that it
    stays periodic): :math:`\gamma(\theta) = J^{-1/2}(\cos b_1\theta, \dots, \cos b_J\theta,
    \sin b_1\theta, \dots, \sin b_J\theta)`, a unit vector, so the NTK of a net fed
    :math:`\gamma(\theta)` is :func:`tdlcourse.ntk.analytic_ntk` of :math:`\gamma(\theta)\cdot\gamma(\theta')
    = \frac1J\sum_j \cos b_j(\theta-\theta')`. ``features=(1,)`` is the plain input
    :math:`(\cos\theta, \sin\theta)`. ``theta``: numpy ``[n]``; ``features``: integers >= 1 with
    greatest common divisor 1. Returns torch ``[n, 2J]``.
    """
    b = _feature_freqs(features)
    t = np.asarray(theta, dtype=float)
    if t.ndim != 1:
        raise ValueError(f"theta must be a 1-D array of angles; got shape {t.shape}")
    return torch.as_tensor(_fourier_np(t, b), dtype=dtype or torch.get_default_dtype(), device=device)


def grid_eigenvalues(n: int, depth: int = 1, bias: bool = False, *, kernel: str = "ntk", activation="relu",
                     sigma_w2: float = 1.0, sigma_b2: float | None = None, features=None) -> np.ndarray:
    r"""Exact eigenvalues :math:`\lambda_k^{(n)}`, k = 0..n//2, of :math:`K/n`, the Gram matrix of the
    analytic NTK (or NNGP kernel) on the n equispaced points of :func:`circle_points` divided by n:
    the matrix the training dynamics on that grid see. It is circulant, so
    :math:`\lambda_k^{(n)} = \frac1n\sum_{j=0}^{n-1} K(2\pi j/n)\cos(2\pi jk/n)` exactly, with the Fourier
    mode k as eigenvector (twice for 0 < k < n/2). By aliasing, :math:`\lambda_k^{(n)} =
    \sum_{j\in\mathbb Z}\mu_{|k + jn|}`, which tends to :func:`ntk_eigenvalues_circle`'s
    :math:`\mu_k` as n grows. Arguments as :func:`ntk_eigenvalues_circle`; numpy ``[n//2 + 1]``.
    """
    n = validate.integer("n", n, lo=2)
    kernel = validate.one_of("kernel", kernel, ("ntk", "nngp"))
    sigma_b2 = _bias_var(bias, sigma_b2)
    feats = None if features is None else _feature_freqs(features)
    theta = 2.0 * np.pi * np.arange(n) / n
    fn = _ntk.analytic_ntk if kernel == "ntk" else _ntk.analytic_nngp
    row = np.asarray(fn(_embed(theta[:1], feats), _embed(theta, feats), depth=depth, activation=activation,
                        sigma_w2=sigma_w2, sigma_b2=sigma_b2))[0]
    return np.fft.rfft(row).real / n  # the row is even (K(theta) = K(-theta)), so the DFT is real


def _eta_mu(mu, eta):
    eta = validate.positive("eta", eta)
    m = np.asarray(mu, dtype=float)
    if not np.all(np.isfinite(m)) or np.any(m < 0):
        raise ValueError(f"mu must hold finite eigenvalues >= 0; got {mu!r}")
    return eta, m


def mode_decay_rate(mu, eta: float, *, discrete: bool = True) -> np.ndarray:
    r"""Predicted decay rate per step of the error in an eigenmode with kernel eigenvalue ``mu`` under
    gradient descent with step ``eta`` on :math:`L = \frac{1}{2n}\sum_i (f(x_i) - y_i)^2` in the kernel
    regime (Jacot et al. 2018; Basri et al. 2019; Rahaman et al. 2019): the error is multiplied by
    :math:`1 - \eta\mu` each step, so its amplitude decays at rate :math:`-\log|1 - \eta\mu|`
    (``discrete=True``; negative: the mode diverges, :math:`\eta\mu > 2`) or, for gradient flow,
    :math:`\eta\mu` (``discrete=False``; the two agree to :math:`O((\eta\mu)^2)`). ``mu`` here is the
    eigenvalue of :math:`K/n` (:func:`grid_eigenvalues`; :math:`\mu_k` for large n). The loss
    normalization matters: a sum over samples multiplies the rate by n, dropping the 1/2 by 2.
    """
    eta, m = _eta_mu(mu, eta)
    if not validate.boolean("discrete", discrete):
        return eta * m
    with np.errstate(divide="ignore"):
        return 0.0 - np.log(np.abs(1.0 - eta * m))  # 0.0 - : mu = 0 gives +0.0, so its e-fold time is +inf


def predicted_mode_error(mu, eta: float, steps, *, discrete: bool = True) -> np.ndarray:
    r"""Predicted relative error amplitude :math:`|1 - \eta\mu_k|^t` (``discrete=True``) or
    :math:`e^{-\eta\mu_k t}` (gradient flow) at each step t of ``steps`` (shape ``[T]``) for each
    eigenvalue of ``mu`` (shape ``[K]``): numpy ``[T, K]``. Convention of :func:`mode_decay_rate`.
    """
    t = np.asarray(steps, dtype=float)
    if t.ndim != 1 or np.any(t < 0):
        raise ValueError(f"steps must be a 1-D array of times >= 0; got {steps!r}")
    rate = np.atleast_1d(mode_decay_rate(mu, eta, discrete=discrete))
    with np.errstate(invalid="ignore"):  # eta mu = 1: rate inf, the mode is gone after one step (0 * inf at t = 0)
        return np.where(t[:, None] == 0, 1.0, np.exp(-np.outer(t, rate)))


def efold_time(mu, eta: float, *, discrete: bool = True) -> np.ndarray:
    r"""Predicted number of steps (or, with ``discrete=False``, gradient-flow time in units of steps)
    to reduce the error in a mode with eigenvalue ``mu`` by a factor e: ``1 / mode_decay_rate``;
    ``inf`` where :math:`\mu = 0` (the mode is never learned), negative where it diverges."""
    rate = mode_decay_rate(mu, eta, discrete=discrete)
    with np.errstate(divide="ignore"):
        return 1.0 / rate


@dataclass(frozen=True)
class DecayFit:
    r"""Least-squares fit :math:`\log e_k(t) = c_k - r_k t` of measured per-frequency errors.

    ``rate`` :math:`r_k` with its OLS standard error ``stderr``, ``intercept`` :math:`c_k`,
    ``n_points`` used, ``rms_residual`` of the fit in :math:`\log e` (large: the decay is not
    exponential), ``window`` the ``(first, last)`` step fitted and ``ok`` (at least ``min_points``
    points); rates of frequencies that are not ``ok`` are ``nan``."""

    freqs: np.ndarray
    rate: np.ndarray
    stderr: np.ndarray
    intercept: np.ndarray
    n_points: np.ndarray
    rms_residual: np.ndarray
    window: np.ndarray
    ok: np.ndarray


def fit_decay_rates(history: FrequencyErrorHistory, *, floor: float = 1e-3, max_step=None,
                    min_points: int = 3) -> DecayFit:
    r"""Fit a decay rate to each column of ``history.errors`` (from :func:`frequency_error_history`,
    ideally ``relative=True``): ordinary least squares of :math:`\log e_k(t)` on t over the steps
    from the first record until just before :math:`e_k` first falls below ``floor`` times its value
    at the first record (the rounding and nonlinear floors lie below that) and up to ``max_step``.
    The standard error is the OLS one, :math:`\hat s/\sqrt{\sum (t - \bar t)^2}`; it is exact for
    independent noise in :math:`\log e` and otherwise measures how far the curve is from a straight
    line. Frequencies with fewer than ``min_points`` points get ``nan`` and ``ok=False`` (and a
    ``RuntimeWarning``). Compare with :func:`mode_decay_rate`.
    """
    floor = validate.in_interval("floor", floor, 0.0, 1.0, closed="neither")
    min_points = validate.integer("min_points", min_points, lo=3)
    if not isinstance(history, FrequencyErrorHistory):
        raise ValueError(f"history must be a FrequencyErrorHistory (frequency_error_history); got {type(history).__name__}")
    t_all = np.asarray(history.steps, dtype=float)
    if max_step is not None:
        max_step = validate.number("max_step", max_step)
    K = history.errors.shape[1]
    out = {k: np.full(K, np.nan) for k in ("rate", "stderr", "intercept", "rms")}
    npts, win, ok = np.zeros(K, dtype=int), np.full((K, 2), np.nan), np.zeros(K, dtype=bool)
    for j in range(K):
        e = history.errors[:, j]
        below = np.flatnonzero(~(e > floor * e[0]))  # nan counts as below
        stop = below[0] if below.size else e.size
        sel = np.arange(stop)
        if max_step is not None:
            sel = sel[t_all[sel] <= max_step]
        npts[j] = sel.size
        if sel.size < min_points or e[0] <= 0:
            continue
        t, z = t_all[sel], np.log(e[sel])
        tc = t - t.mean()
        slope = float(tc @ (z - z.mean()) / (tc @ tc))
        icpt = float(z.mean() - slope * t.mean())
        res = z - (icpt + slope * t)
        out["rate"][j], out["intercept"][j] = -slope, icpt
        out["stderr"][j] = float(np.sqrt(res @ res / (sel.size - 2) / (tc @ tc)))
        out["rms"][j] = float(np.sqrt(np.mean(res ** 2)))
        win[j], ok[j] = (t[0], t[-1]), True
    if not ok.all():
        bad = history.freqs[~ok].tolist()
        warnings.warn(f"fit_decay_rates: fewer than {min_points} points above the floor for frequencies {bad}; "
                      "their rates are nan (record more often or lower floor)", RuntimeWarning, stacklevel=2)
    return DecayFit(np.asarray(history.freqs), out["rate"], out["stderr"], out["intercept"], npts, out["rms"], win, ok)


@dataclass(frozen=True)
class CircleRun:
    r"""One run of :func:`train_circle`. ``steps`` ``[T]`` recorded; ``outputs[t]`` the network's
    (centred) outputs :math:`g_t` on the grid; ``history``: relative per-frequency errors at
    ``freqs``; ``loss`` :math:`\frac1{2n}\sum_i(g_t(x_i) - y_i)^2`; ``displacement``
    :math:`\|\theta_t - \theta_0\| / \|\theta_0\|`; ``kernel_change``: relative Frobenius change
    :math:`\|\hat\Theta_T - \hat\Theta_0\|_F / \|\hat\Theta_0\|_F` of the empirical NTK on the grid from
    init to the last step (0 in the kernel regime); ``finite``: no NaN/inf (else training stopped)."""

    steps: np.ndarray
    outputs: np.ndarray
    history: FrequencyErrorHistory
    loss: np.ndarray
    displacement: np.ndarray
    kernel_change: float
    eta: float
    width: int
    sigma_w2: float
    sigma_b2: float
    features: tuple | None
    finite: bool


def _two_layer_grads(x, h, W2, r, sw, sb, bias):
    # backprop of L = (1/2n) sum (g - y)^2 through f = sqrt(sw/m) W2 relu(h) + sqrt(sb) b2 with
    # h = sqrt(sw) W1 x + sqrt(sb) b1 (already computed), given r = (g - y)/n
    c1, c2 = math.sqrt(sw), math.sqrt(sw / W2.shape[1])
    gW2 = c2 * (r @ h.clamp(min=0))[None, :]
    d = (c2 * r[:, None] * W2) * (h > 0)
    gW1 = c1 * (d.T @ x)
    if not bias:
        return [gW1, gW2]
    return [gW1, math.sqrt(sb) * d.sum(0), gW2, math.sqrt(sb) * r.sum()[None]]


def train_circle(target, freqs, *, width: int, eta: float, steps: int, sigma_w2: float = 1.0,
                 sigma_b2: float = 0.0, features=None, seed: int = 0, record: int = 1,
                 dtype: torch.dtype = torch.float64, device=None) -> CircleRun:
    r"""Train a two-layer ReLU net in the NTK parametrization (:class:`tdlcourse.ntk.NTKMLP` with
    ``depth=1``, both layers and, when ``sigma_b2 > 0``, both biases trained; exactly the net whose
    NTK is :func:`tdlcourse.ntk.analytic_ntk` and whose eigenvalues are :func:`ntk_eigenvalues_circle`)
    on the n equispaced points of :func:`circle_points`, ``n = len(target)``, by full-batch gradient
    descent :math:`\theta \leftarrow \theta - \eta\nabla L` on
    :math:`L = \frac1{2n}\sum_i (g(x_i) - y_i)^2`, for ``steps`` steps.

    The output is centred, :math:`g(x) = f(x; \theta) - f(x; \theta_0)` (the initial function
    subtracted, its parameters frozen), so :math:`g_0 = 0` and the NTK is unchanged (Chizat, Oyallon &
    Bach 2019 use the same device): the error starts as :math:`-y` and its size is set by the target's
    amplitude. In the kernel regime the error in Fourier mode k is multiplied by
    :math:`1 - \eta\lambda_k` per step (:func:`grid_eigenvalues`, :func:`mode_decay_rate`).
    ``features``: feed :func:`fourier_features` of the angle instead of :math:`(\cos\theta, \sin\theta)`.
    ``freqs``: frequencies tracked in ``history`` (relative to the target's amplitude there, so non-zero
    in the target). Gradients by hand (checked against autograd in the tests), every ``record`` steps.
    """
    y_np = _np(target)
    if y_np.ndim != 1:
        raise ValueError(f"target must be a 1-D array of values on the grid; got shape {y_np.shape}")
    if not np.all(np.isfinite(y_np)) or y_np.size < 2:
        raise ValueError(f"target must hold >= 2 finite values (one per grid point); got {y_np.size} values")
    n = y_np.size
    width = validate.positive_int("width", width)
    eta = validate.positive("eta", eta)
    steps = validate.nonnegative_int("steps", steps)
    record = validate.positive_int("record", record)
    seed = validate.nonnegative_int("seed", seed)
    sw = validate.positive("sigma_w2", sigma_w2)
    sb = validate.nonnegative("sigma_b2", sigma_b2)
    feats = None if features is None else _feature_freqs(features)
    theta = circle_points(n).theta
    x = (circle_points(n, dtype=dtype, device=device).x if feats is None
         else fourier_features(theta, feats, dtype=dtype, device=device))
    _freqs(freqs)
    net = _ntk.NTKMLP(x.shape[1], width, 1, sigma_w2=sw, sigma_b2=sb, dtype=dtype, device=device,
                      generator=torch.Generator(device=device or "cpu").manual_seed(seed))
    W1, W2 = (w.detach().clone() for w in net.weights)
    b1, b2 = (None, None) if net.biases is None else (b.detach().clone() for b in net.biases)
    params = [p for p in (W1, b1, W2, b2) if p is not None]
    init = [p.clone() for p in params]
    k0 = _two_layer_ntk(x, W1, b1, W2, b2, sw, sb)
    norm0 = math.sqrt(sum(float((p ** 2).sum()) for p in init))
    with torch.no_grad():
        f0 = net(x)[:, 0]
    y = torch.as_tensor(y_np, dtype=dtype, device=x.device)
    c2, cb = math.sqrt(sw / width), math.sqrt(sb)

    def forward():
        h = math.sqrt(sw) * (x @ W1.T) + (0.0 if b1 is None else cb * b1)
        return h, c2 * (h.clamp(min=0) @ W2[0]) + (0.0 if b2 is None else cb * b2[0]) - f0

    rec_steps, outs, losses, disp = [], [], [], []
    finite = True
    for s in range(steps + 1):
        h, g = forward()
        r = g - y
        if not torch.isfinite(r).all():
            finite = False
            break
        if s % record == 0 or s == steps:
            rec_steps.append(s)
            outs.append(g.detach().cpu().double().numpy())
            losses.append(0.5 * float(r @ r) / n)
            disp.append(math.sqrt(sum(float(((p - q) ** 2).sum()) for p, q in zip(params, init))) / norm0)
        if s == steps:
            break
        for p, gr in zip(params, _two_layer_grads(x, h, W2, r / n, sw, sb, b1 is not None)):
            p.sub_(eta * gr)
    if not finite:
        warnings.warn(f"train_circle: the outputs became NaN/inf at step {s} (eta={eta} too large?); "
                      "the run stops there", RuntimeWarning, stacklevel=2)
    k1 = _two_layer_ntk(x, W1, b1, W2, b2, sw, sb)
    change = float(torch.linalg.norm(k1 - k0) / torch.linalg.norm(k0))
    hist = frequency_error_history(outs, y_np, freqs=freqs, steps=np.asarray(rec_steps), relative=True)
    return CircleRun(np.asarray(rec_steps), np.stack(outs), hist, np.asarray(losses), np.asarray(disp),
                     change, eta, width, sw, sb, feats, finite)


def _two_layer_ntk(x, W1, b1, W2, b2, sw, sb):
    # sum over all parameters of grad f(x) grad f(x')^T for the two-layer net of _two_layer_grads
    m = W1.shape[0]
    h = math.sqrt(sw) * (x @ W1.T) + (0.0 if b1 is None else math.sqrt(sb) * b1)
    a, d = h.clamp(min=0), (h > 0).to(x.dtype) * W2[0]
    K = (sw / m) * (a @ a.T) + (sw / m) * (d @ d.T) * (sw * (x @ x.T) + sb)
    return K + sb if b2 is not None else K
