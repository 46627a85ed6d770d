r"""Random matrices for signal propagation and dynamical isometry.

For chapter 7 of the course plan, gradients, finite width and dynamical isometry (not built yet).

Conventions (stated once): :math:`W` is :math:`p \times n` with i.i.d. entries of mean 0 and
variance :math:`\sigma^2`, :math:`\gamma = p/n`, and the spectrum studied is that of
:math:`W W^T / n` (p eigenvalues). Products :math:`P = W_L \cdots W_1` are of square
:math:`n \times n` Gaussian matrices with entries :math:`N(0, 1/n)` (Pennington, Schoenholz &
Ganguli 2017, 2018), and "squared singular values" are the eigenvalues of :math:`P P^T`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from . import validate


class MPEdges(NamedTuple):
    """Support edges of the Marchenko-Pastur law (a tuple: ``lo, hi = marchenko_pastur_edges(g)``)."""

    lower: float
    upper: float


def marchenko_pastur_edges(gamma: float, sigma2: float = 1.0) -> MPEdges:
    r"""Edges :math:`\lambda_\pm = \sigma^2 (1 \pm \sqrt\gamma)^2` of the Marchenko-Pastur law
    (Marchenko & Pastur 1967), the limiting spectrum of :math:`W W^T/n` in the module's convention.
    For :math:`\gamma = 0.25`: (0.25, 2.25). (For :math:`\gamma > 1` there is also an atom at 0.)
    """
    g, s = validate.positive("gamma", gamma), validate.positive("sigma2", sigma2)
    r = math.sqrt(g)
    return MPEdges(s * (1.0 - r) ** 2, s * (1.0 + r) ** 2)


def marchenko_pastur_density(x, gamma: float, sigma2: float = 1.0):
    r"""Density of the continuous part of the Marchenko-Pastur law,

    .. math:: \rho(x) = \frac{\sqrt{(\lambda_+ - x)(x - \lambda_-)}}{2\pi\sigma^2\gamma x}
              \quad \text{on } [\lambda_-, \lambda_+], \ 0 \text{ elsewhere},

    which integrates to 1 for :math:`\gamma \le 1` and to :math:`1/\gamma` for :math:`\gamma > 1`
    (the remaining mass :math:`1 - 1/\gamma` is an atom at 0, not included). ``x`` scalar or array;
    returns a float or numpy array.
    """
    lo, hi = marchenko_pastur_edges(gamma, sigma2)
    gamma, sigma2 = float(gamma), float(sigma2)
    x = np.asarray(x, dtype=float)
    inside = (x > lo) & (x < hi)
    xs = np.where(inside, x, 1.0)
    rho = np.where(inside, np.sqrt(np.maximum((hi - xs) * (xs - lo), 0.0)) / (2.0 * np.pi * sigma2 * gamma * xs), 0.0)
    return float(rho) if rho.ndim == 0 else rho


def jacobian_singular_values(model: nn.Module, x: torch.Tensor, *, chunk_size: int | None = None) -> torch.Tensor:
    r"""Singular values of the input-output Jacobian :math:`J(x) = \partial f(x)/\partial x` at each
    input of the batch ``x`` ``[B, ...]`` (a 1-D ``x`` is one input), descending, shape
    ``[B, min(k, D)]`` (``[min(k, D)]`` for one input), with k outputs and D input entries.
    Dynamical isometry (Pennington, Schoenholz & Ganguli 2017) asks for all of them near 1.
    Per-sample Jacobians by ``torch.func.vmap(jacrev)`` of ``functional_call`` with detached
    parameters: the model is not modified (mode, parameters, ``.grad`` untouched); it must treat
    samples independently.
    """
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        got = f"shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a torch tensor [B, ...] (or a 1-D single input); got {got}")
    if chunk_size is not None:
        chunk_size = validate.positive_int("chunk_size", chunk_size)
    single = x.dim() == 1
    xb = x.unsqueeze(0) if single else x
    state = {k: v.detach() for k, v in model.named_parameters()}
    state.update(dict(model.named_buffers()))

    def f(xi):
        return functional_call(model, state, (xi.unsqueeze(0),)).reshape(-1)

    J = vmap(jacrev(f), chunk_size=chunk_size)(xb)  # [B, k, *in_shape]
    s = torch.linalg.svdvals(J.reshape(J.shape[0], J.shape[1], -1))
    return s[0] if single else s


def fuss_catalan(depth: int, k: int) -> float:
    r""":math:`k`-th moment :math:`\lim_n E[\frac1n \mathrm{tr}(PP^T)^k]` of the squared singular
    values of a product of ``depth`` = L independent :math:`n \times n` matrices with :math:`N(0, 1/n)`
    entries: the Fuss-Catalan number :math:`\frac{1}{Lk + 1}\binom{(L+1)k}{k}` (Alexeev, Goetze &
    Tikhomirov 2010; Pennington et al. 2018). k = 1: 1 for every L; k = 2: L + 1. L = 1 gives the
    Catalan numbers (Marchenko-Pastur, :math:`\gamma = 1`).
    """
    L, k = validate.positive_int("depth", depth), validate.nonnegative_int("k", k)
    return math.comb((L + 1) * k, k) / (L * k + 1)


def gaussian_product(n: int, depth: int, *, generator: torch.Generator | None = None,
                     dtype: torch.dtype = torch.float64, device=None) -> torch.Tensor:
    r"""One sample of :math:`P = W_L \cdots W_1` with i.i.d. :math:`N(0, 1/n)` entries, :math:`n\times n`."""
    n, L = validate.positive_int("n", n), validate.positive_int("depth", depth)
    P = torch.eye(n, dtype=dtype, device=device)
    for _ in range(L):
        P = torch.randn(n, n, generator=generator, dtype=dtype, device=device) @ P / math.sqrt(n)
    return P


@dataclass(frozen=True)
class MomentEstimate:
    """Monte Carlo moments ``moments[j]`` of order ``orders[j]`` of the squared singular values of
    the product, with standard errors across the ``n_samples`` products and the n -> infinity
    values ``limit`` (Fuss-Catalan)."""

    orders: np.ndarray
    moments: np.ndarray
    stderr: np.ndarray
    limit: np.ndarray
    n: int
    depth: int
    n_samples: int


def product_moments(n: int, depth: int, kmax: int = 2, n_samples: int = 32, *, seed: int = 0) -> MomentEstimate:
    r"""Estimate :math:`m_k = E[\frac1n\mathrm{tr}(PP^T)^k] = E[\frac1n\sum_i s_i^{2k}]`, k = 1..kmax,
    for products of ``depth`` :math:`N(0, 1/n)` matrices by Monte Carlo over ``n_samples`` products
    (torch generator seeded with ``seed``). :math:`m_1 = 1` exactly at every n; higher moments
    approach the Fuss-Catalan numbers with O(1/n) corrections and grow with depth, which is why
    Gaussian deep linear (and ReLU) nets are far from isometric.
    """
    n, L = validate.positive_int("n", n), validate.positive_int("depth", depth)
    kmax = validate.positive_int("kmax", kmax)
    S = validate.integer("n_samples", n_samples, lo=2)
    g = torch.Generator().manual_seed(int(seed))
    orders = np.arange(1, kmax + 1)
    vals = np.empty((S, kmax))
    for i in range(S):
        s2 = torch.linalg.svdvals(gaussian_product(n, L, generator=g)).numpy() ** 2
        vals[i] = [np.mean(s2**k) for k in orders]
    return MomentEstimate(orders, vals.mean(0), vals.std(0, ddof=1) / math.sqrt(S),
                          np.array([fuss_catalan(L, int(k)) for k in orders]), n, L, S)
