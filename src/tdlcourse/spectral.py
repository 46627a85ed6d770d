r"""Spectral bias: targets on the circle, per-frequency errors and NTK eigenvalues.

For chapter 9 of the course plan, spectral bias (not built yet).

Inputs live on the unit circle :math:`x(\theta) = (\cos\theta, \sin\theta)`. A dot-product kernel
:math:`K(x, x') = K(\theta - \theta')` is diagonalized by the Fourier modes: its eigenvalues are
:math:`\mu_k = \frac{1}{2\pi}\int_{-\pi}^{\pi} K(\theta)\cos(k\theta)\,d\theta` with eigenfunctions
:math:`\cos k\theta, \sin k\theta` (:math:`\mu_k` appears twice for k >= 1). In the NTK regime
gradient flow on squared loss shrinks the error in mode k like :math:`\exp(-\eta\mu_k t)`, so
low frequencies are learned first (Rahaman et al. 2019; Basri, Jacobs, Kasten & Kritchman 2019).
A bias-free two-layer ReLU net has :math:`\mu_k = 0` for odd k >= 3 and cannot fit those
harmonics at all; biases make them positive.

Amplitude convention (stated once): a component :math:`a\sin(k\theta + \varphi)` has amplitude
:math:`|a|` at frequency k; the constant component c has amplitude :math:`|c|` at k = 0.
"""

from __future__ import annotations

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


@lru_cache(maxsize=8)
def _leggauss(n):
    return np.polynomial.legendre.leggauss(n)


def _circle_coeffs(kmax, n, kernel, **kw):
    # mu_k = (1/pi) int_0^pi K(theta) cos(k theta) dtheta; K is smooth in theta on [0, pi], so
    # Gauss-Legendre in theta converges fast (the kink of K(phi) at phi = 0 is only in the periodic variable)
    t, w = _leggauss(n)
    theta = 0.5 * np.pi * (t + 1.0)
    w = 0.5 * np.pi * w
    x0 = np.array([[1.0, 0.0]])
    xs = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    fn = _ntk.analytic_ntk if kernel == "ntk" else _ntk.analytic_nngp
    K = np.asarray(fn(x0, xs, **kw))[0]
    return (np.cos(np.arange(kmax + 1)[:, None] * theta[None, :]) * (w * K)).sum(1) / np.pi


def ntk_eigenvalues_circle(kmax: int, depth: int = 1, bias: bool = False, *, kernel: str = "ntk",
                           activation="relu", sigma_w2: float = 1.0, sigma_b2: float | None = None,
                           n_quad: int = 256) -> CircleSpectrum:
    r"""Eigenvalues :math:`\mu_k = \frac1\pi\int_0^\pi K(\theta)\cos k\theta\,d\theta`, k = 0..kmax,
    of the analytic NTK (``kernel="ntk"``) or NNGP kernel (``"nngp"``) of :mod:`tdlcourse.ntk` on the
    unit circle (Basri et al. 2019; Bietti & Mairal 2019). They equal the eigenvalues of the
    Gram matrix of n equispaced points divided by n as n grows (each k >= 1 twice).
    ``bias=False`` forces ``sigma_b2 = 0``; ``bias=True`` uses ``sigma_b2`` (default 1.0) in every
    layer. Gauss-Legendre quadrature with ``n_quad`` nodes, checked against ``2 n_quad``.
    Bias-free two-layer relu: :math:`\mu_k = 0` for odd k >= 3, :math:`\mu_k > 0` otherwise.
    """
    kmax = validate.nonnegative_int("kmax", kmax)
    kernel = validate.one_of("kernel", kernel, ("ntk", "nngp"))
    n_quad = validate.integer("n_quad", n_quad, lo=8)
    if bias:
        sigma_b2 = validate.positive("sigma_b2", 1.0 if sigma_b2 is None else sigma_b2)
    else:
        if sigma_b2 not in (None, 0, 0.0):
            raise ValueError(f"sigma_b2={sigma_b2!r} needs bias=True (bias=False means sigma_b2 = 0)")
        sigma_b2 = 0.0
    kw = dict(depth=depth, activation=activation, sigma_w2=sigma_w2, sigma_b2=float(sigma_b2))
    mu = _circle_coeffs(kmax, n_quad, kernel, **kw)
    err = np.abs(_circle_coeffs(kmax, 2 * n_quad, kernel, **kw) - mu)
    ok = bool(np.all(err <= 1e-10 * max(np.abs(mu).max(), 1e-300)))
    if not ok:
        warnings.warn(f"ntk_eigenvalues_circle: quadrature error up to {err.max():.2g}; raise n_quad",
                      RuntimeWarning, stacklevel=2)
    return CircleSpectrum(np.arange(kmax + 1), mu, err, ok)
