r"""Random matrices for signal propagation and dynamical isometry (chapter 7: gradients, finite
width and dynamical isometry).

Marchenko-Pastur, products of Gaussian matrices (Fuss-Catalan moments and the exact finite-width
second moment), input-output Jacobian spectra of deep nets and their spread against free
probability (Pennington, Schoenholz & Ganguli 2017), and the exact and simulated log-norm
statistics of deep ReLU nets at finite width (Hanin 2018; Hanin & Nica 2019).

Conventions (stated once): :math:`W` is :math:`p \times n` with i.i.d. entries of mean 0 and
variance :math:`\sigma^2`, :math:`\gamma = p/n`, and the spectrum studied is that of
:math:`W W^T / n` (p eigenvalues). Products :math:`P = W_L \cdots W_1` are of square
:math:`n \times n` Gaussian matrices with entries :math:`N(0, 1/n)` (Pennington, Schoenholz &
Ganguli 2017, 2018), and "squared singular values" are the eigenvalues of :math:`P P^T`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import torch
from scipy import integrate, special
from torch import nn
from torch.func import jacrev, vmap

from . import meanfield, models, validate
from ._functional import call, tensor_aliases


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
    aliases = tensor_aliases(model)

    def f(xi):
        return call(model, state, (xi.unsqueeze(0),), aliases=aliases).reshape(-1)

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


def gaussian_product_m2(n: int, depth: int) -> float:
    r"""Exact finite-n :math:`E[\frac1n \mathrm{tr}(PP^T)^2]` for :math:`P = W_L \cdots W_1`, :math:`n \times n`,
    i.i.d. real :math:`N(0, 1/n)` entries. With :math:`A = P_{l-1}P_{l-1}^T`, Wick's theorem over the
    independent :math:`W_l` gives the recursion

    .. math:: m_l = t_{l-1} + (1 + 1/n)\, m_{l-1}, \qquad t_l = t_{l-1} + 2 m_{l-1}/n^2,

    for :math:`m_l = E[\mathrm{tr}(A_l^2)]/n` and :math:`t_l = E[(\mathrm{tr} A_l)^2]/n^2`, :math:`m_0 = t_0 = 1`.
    L = 1: 2 + 1/n; n = 1: 3^L. As n grows it tends to the Fuss-Catalan L + 1; the correction is
    O(L^2/n): at n = 256 it is +3.3% at L = 16 and +41% at L = 128.
    """
    n, L = validate.positive_int("n", n), validate.positive_int("depth", depth)
    m, t = 1.0, 1.0
    for _ in range(L):
        m, t = t + (1.0 + 1.0 / n) * m, t + 2.0 * m / n**2
    return m


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


# ---------------------------------------------------------------- log-norms of deep ReLU nets


@dataclass(frozen=True)
class LogNormMoments:
    r"""Exact mean and variance of :math:`\log(\|x_L\|^2/\|x_0\|^2)` for a He-initialized ReLU net with
    ``widths`` = :math:`(n_0, \dots, n_L)`; ``layer_means[l-1]``, ``layer_vars[l-1]`` are layer l's
    terms (they add: the layer terms are independent), ``rule_of_thumb`` is
    :math:`5 \sum_{l=1}^L 1/n_l` (Hanin 2018), the large-width approximation of ``var``."""

    mean: float
    var: float
    layer_means: np.ndarray
    layer_vars: np.ndarray
    rule_of_thumb: float
    widths: tuple[int, ...]

    @property
    def value(self) -> tuple[float, float]:
        """``(mean, var)``: what ``tdlcheck`` compares with a student's answer."""
        return (self.mean, self.var)


@lru_cache(maxsize=256)
def _relu_layer_moments(n_in: int, n_out: int) -> tuple[float, float]:
    # K ~ Bin(n_out, 1/2) conditioned on K >= 1; E log chi2_k = psi(k/2) + log 2, Var = psi'(k/2)
    k = np.arange(1, n_out + 1)
    logp = (special.gammaln(n_out + 1) - special.gammaln(k + 1) - special.gammaln(n_out - k + 1)
            - n_out * math.log(2.0) - math.log1p(-(2.0 ** -n_out)))
    p = np.exp(logp)
    m = math.log(2.0 / n_in) + special.digamma(k / 2.0) + math.log(2.0)
    mean = float(p @ m)
    var = float(p @ (special.polygamma(1, k / 2.0) + (m - mean) ** 2))
    return mean, var


def relu_log_norm_moments(widths) -> LogNormMoments:
    r"""Exact mean and variance of :math:`\log(\|x_L\|^2 / \|x_0\|^2)` for a bias-free ReLU net
    :math:`x_l = \mathrm{relu}(W_l x_{l-1})`, :math:`W_l \in \mathbb{R}^{n_l \times n_{l-1}}` with i.i.d.
    :math:`N(0, 2/n_{l-1})` entries (He init), any fixed :math:`x_0 \ne 0`.
    ``widths`` = :math:`(n_0, n_1, \dots, n_L)`: the input dimension first, so the depth is
    ``len(widths) - 1`` (every width 50 and depth 20 is ``[50] * 21``).

    Given :math:`x_{l-1}`, :math:`W_l x_{l-1} \sim N(0, \tfrac{2}{n_{l-1}}\|x_{l-1}\|^2 I)`, so
    :math:`\|x_l\|^2/\|x_{l-1}\|^2 = \tfrac{2}{n_{l-1}} \chi^2_{K_l}` with :math:`K_l \sim \mathrm{Bin}(n_l, 1/2)`
    the number of active units, independent of :math:`x_{l-1}`: the log-norm is a sum of
    independent layer terms (Hanin 2018, "Which neural net architectures give rise to exploding and
    vanishing gradients?"; Hanin & Nica 2019, "Products of many large random matrices and gradients
    in deep neural networks"). Each term is conditioned on :math:`K_l \ge 1` (otherwise
    :math:`x_l = 0` and the log is :math:`-\infty`; probability :math:`2^{-n_l}`), and

    .. math:: E[\log \chi^2_k] = \psi(k/2) + \log 2, \qquad \mathrm{Var}[\log \chi^2_k] = \psi'(k/2),

    averaged over :math:`K_l` (the variance by the law of total variance). For large widths the
    variance is about :math:`5 \sum_l 1/n_l`. n = 50, L = 20: mean -1.034776, variance 2.163363.
    """
    w = validate.int_sequence("widths", widths, min_len=2)
    terms = [_relu_layer_moments(a, b) for a, b in zip(w[:-1], w[1:])]
    means = np.array([t[0] for t in terms])
    vars_ = np.array([t[1] for t in terms])
    return LogNormMoments(float(means.sum()), float(vars_.sum()), means, vars_,
                          5.0 * sum(1.0 / n for n in w[1:]), w)


@dataclass(frozen=True)
class LogNormEstimate:
    r"""Monte Carlo estimates over ``n_samples`` independent nets of the mean and variance of
    :math:`\log(\|x_l\|^2/\|x_0\|^2)` at each depth ``depths[i]`` = l, with standard errors
    (of the variance: :math:`\sqrt{(\mu_4 - \sigma^4 (S-3)/(S-1))/S}`, from the sample's fourth
    central moment). ``n_samples[i]`` nets are alive at depth ``depths[i]`` (a ReLU layer with no
    active unit, probability :math:`2^{-n_l}`, kills a net; the exact moments condition on that not
    happening). ``log_ratios[i, s]`` is net s's value at depth ``depths[i]`` (-inf once dead).
    ``alpha`` is the residual branch scale (None: a plain ReLU net)."""

    depths: np.ndarray
    mean: np.ndarray
    var: np.ndarray
    stderr_mean: np.ndarray
    stderr_var: np.ndarray
    n_samples: np.ndarray
    alpha: float | None
    log_ratios: np.ndarray


def log_norm_mc(widths, n_samples: int, *, alpha: float | None = None, sigma_w2: float = 2.0,
                seed: int = 0) -> LogNormEstimate:
    r"""Monte Carlo of :math:`\log(\|x_l\|^2/\|x_0\|^2)`, l = 1..L, over ``n_samples`` independent
    random nets with ``widths`` = :math:`(n_0, \dots, n_L)` (as :func:`relu_log_norm_moments`) and
    :math:`W_l` i.i.d. :math:`N(0, \sigma_w^2/n_{l-1})`, in float64, all nets advanced together.

    ``alpha=None``: the plain net :math:`x_l = \mathrm{relu}(W_l x_{l-1})`, :math:`x_0 \sim N(0, I)`
    (its law does not depend on :math:`x_0`). ``alpha`` a number: the residual net
    :math:`x_l = x_{l-1} + \alpha W_l\,\mathrm{relu}(x_{l-1})` (``models.resmlp``'s blocks without
    biases; all widths equal), for which :math:`\alpha = 1/\sqrt{L}` keeps the variance bounded in
    depth (Hanin & Rolnick 2018, "How to start training"; Hayou et al. 2021, "Stable ResNet"). The
    prefix of a net is a net, so one pass estimates every depth (the depths' estimates are
    correlated; each is unbiased).
    """
    w = validate.int_sequence("widths", widths, min_len=2)
    S = validate.integer("n_samples", n_samples, lo=4)
    sw = validate.positive("sigma_w2", sigma_w2)
    if alpha is not None:
        alpha = validate.number("alpha", alpha)
        if len(set(w)) != 1:
            raise ValueError(f"widths={list(w)} must all be equal for a residual net (alpha={alpha})")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(S, w[0], 1, generator=g, dtype=torch.float64)
    log0 = torch.log((x**2).sum((1, 2)))
    out = np.empty((len(w) - 1, S))
    for l, (a, b) in enumerate(zip(w[:-1], w[1:])):
        W = torch.randn(S, b, a, generator=g, dtype=torch.float64) * math.sqrt(sw / a)
        x = torch.relu(W @ x) if alpha is None else x + alpha * (W @ torch.relu(x))
        with np.errstate(divide="ignore"):
            out[l] = (torch.log((x**2).sum((1, 2))) - log0).numpy()  # -inf once a layer dies
    # the exact moments condition on no layer dying (K_l >= 1 for all l): drop the dead nets
    ok = np.isfinite(out)
    n = ok.sum(1)
    if n.min() < 4:
        raise ValueError(f"widths={list(w)}: only {n.min()} of n_samples={S} nets stay alive; use wider layers")
    mean = np.where(ok, out, 0.0).sum(1) / n
    dev = np.where(ok, out - mean[:, None], 0.0)
    var = (dev**2).sum(1) / (n - 1)
    mu4 = (dev**4).sum(1) / n
    se_var = np.sqrt(np.maximum(mu4 - var**2 * (n - 3) / (n - 1), 0.0) / n)
    return LogNormEstimate(np.arange(1, len(w)), mean, var, np.sqrt(var / n), se_var, n, alpha, out)


# ---------------------------------------------------------------- Jacobian spectra of deep nets


def spread(sq_singular_values) -> float:
    r"""The spread :math:`\mathrm{var}(\lambda)/m_1^2 = m_2/m_1^2 - 1` of squared singular values
    :math:`\lambda` (eigenvalues of :math:`JJ^T`), :math:`m_k` = the mean of :math:`\lambda^k`. 0 for an
    isometry up to scale; unlike max/min it stays finite when some :math:`\lambda` are 0 (ReLU)."""
    lam = np.asarray(sq_singular_values, dtype=float).reshape(-1)
    if lam.size < 2 or not np.all(np.isfinite(lam)) or np.any(lam < 0):
        raise ValueError(f"sq_singular_values must hold >= 2 finite values >= 0; got {lam.size} values"
                         + ("" if lam.size < 2 else f", min {lam.min():.3g}"))
    m1 = lam.mean()
    if m1 == 0:
        raise ValueError("sq_singular_values are all 0: the spread var/m1^2 is undefined")
    return float(lam.var() / m1**2)


JACOBIAN_ACTIVATIONS = ("linear", "tanh", "relu")
WEIGHTS = ("gaussian", "orthogonal")


@dataclass(frozen=True)
class JacobianSpectra:
    r"""Squared singular values ``sq_singular[i]`` (shape ``[n_samples, width]``) of the input-output
    Jacobian at depth ``depths[i]``, their spread per sample and its mean ``spread`` with standard
    error ``spread_stderr`` (None for one sample), the moments ``m1``, ``m2`` (pooled over samples)
    with standard errors, and the free-probability limit ``spread_limit``
    (:func:`jacobian_spread_limit`). ``q0`` is the first pre-activations' variance."""

    depths: np.ndarray
    sq_singular: tuple[np.ndarray, ...]
    spread: np.ndarray
    spread_stderr: np.ndarray | None
    m1: np.ndarray
    m1_stderr: np.ndarray | None
    m2: np.ndarray
    m2_stderr: np.ndarray | None
    spread_limit: np.ndarray
    weights: str
    activation: str
    sigma_w2: float
    sigma_b2: float
    q0: float
    width: int
    n_samples: int


def _dphi2_moments(activation: str, q: float) -> tuple[float, float]:
    """(mu_1, mu_2) with mu_k = E[phi'(sqrt(q) z)^(2k)]."""
    if activation == "linear":
        return 1.0, 1.0
    if activation == "relu":
        return 0.5, 0.5
    s = math.sqrt(q)

    def mu(k):
        f = lambda z: np.cosh(s * z) ** (-4 * k) * math.exp(-0.5 * z * z) / math.sqrt(2.0 * math.pi)
        return integrate.quad(f, -12.0, 12.0, points=[0.0], epsabs=1e-14, epsrel=1e-12, limit=200)[0]

    return mu(1), mu(2)


def jacobian_spread_limit(activation: str, q: float, depth: int, weights: str = "gaussian") -> float:
    r"""Large-width limit of the spread :math:`\mathrm{var}(\lambda)/m_1^2` of the squared singular values
    of :math:`J = D_L W_L \cdots D_1 W_1` at a fixed point q of the length map:

    .. math:: L\left(\frac{\mu_2}{\mu_1^2} - 1 + [\text{Gaussian } W]\right), \qquad
              \mu_k = E[\phi'(\sqrt q z)^{2k}],

    because :math:`JJ^T` is a product of asymptotically free factors :math:`D_l^2` and :math:`W_lW_l^T`
    whose normalized variances add (Pennington, Schoenholz & Ganguli 2017, "Resurrecting the
    sigmoid", Sec. 4-5): :math:`W_lW_l^T` contributes 1 (Marchenko-Pastur at :math:`\gamma = 1`) if
    Gaussian, 0 if orthogonal. Linear Gaussian: L (the Fuss-Catalan :math:`m_2 - 1`); ReLU: 2L
    (Gaussian), L (orthogonal); orthogonal tanh: small when q is small.
    """
    act = validate.one_of("activation", activation, JACOBIAN_ACTIVATIONS)
    wts = validate.one_of("weights", weights, WEIGHTS)
    q = validate.nonnegative("q", q)
    L = validate.positive_int("depth", depth)
    mu1, mu2 = _dphi2_moments(act, q)
    return L * (mu2 / mu1**2 - 1.0 + (1.0 if wts == "gaussian" else 0.0))


def _weight(kind: str, n: int, sw: float, g: torch.Generator, S: int) -> torch.Tensor:
    if kind == "gaussian":
        return torch.randn(S, n, n, generator=g, dtype=torch.float64) * math.sqrt(sw / n)
    return torch.stack([models.orthogonal_matrix(n, n, generator=g) for _ in range(S)]) * math.sqrt(sw)


def jacobian_spectra(width: int, depths, *, weights: str = "gaussian", activation: str = "linear",
                     sigma_w2: float = 1.0, sigma_b2: float = 0.0, q0: float | None = None,
                     n_samples: int = 1, seed: int = 0) -> JacobianSpectra:
    r"""Squared singular values of the input-output Jacobian of ``n_samples`` random nets
    :math:`h^l = W^l x^{l-1} + b^l`, :math:`x^l = \phi(h^l)` of constant ``width`` n, at each depth in
    ``depths`` (one net of depth ``max(depths)`` per sample; its prefixes give the smaller depths).
    :math:`W^l` is Gaussian :math:`N(0, \sigma_w^2/n)` or :math:`\sqrt{\sigma_w^2}` times Haar
    orthogonal, :math:`b^l \sim N(0, \sigma_b^2)`. ``q0`` is the first pre-activations' variance
    :math:`q^1 = \sigma_w^2\|x^0\|^2/n + \sigma_b^2` (the input is scaled to it; default: the length
    map's fixed point :math:`q^*` for tanh, so that every layer sits at :math:`q^*`, and 1 otherwise).
    ``spread_limit`` evaluates :func:`jacobian_spread_limit` at ``q0``: the limit when ``q0`` is a fixed
    point (tanh at its :math:`q^*`; any q for linear and ReLU, whose :math:`\phi'^2` does not depend on q).

    :math:`J = D_L W^L \cdots D_1 W^1` with :math:`D_l = \mathrm{diag}(\phi'(h^l))` (the read-out is
    left out), built as that product in float64: the same numbers as autograd
    (:func:`jacobian_singular_values`), much faster at depth. Pennington, Schoenholz & Ganguli 2017:
    with orthogonal W, tanh and :math:`\chi_1 = 1` at small :math:`q^*` the spectrum stays near 1
    (dynamical isometry); Gaussian W or ReLU cannot.
    """
    n = validate.positive_int("width", width)
    ds = validate.int_sequence("depths", depths)
    wts = validate.one_of("weights", weights, WEIGHTS)
    act = validate.one_of("activation", activation, JACOBIAN_ACTIVATIONS)
    sw, sb = validate.positive("sigma_w2", sigma_w2), validate.nonnegative("sigma_b2", sigma_b2)
    S = validate.positive_int("n_samples", n_samples)
    if q0 is None:
        q0 = meanfield.qstar("tanh", sw, sb) if act == "tanh" else 1.0
    q0 = validate.positive("q0", q0)
    if q0 <= sb:
        raise ValueError(f"q0={q0:g} must exceed sigma_b2={sb:g} (q0 is the pre-activations' variance, "
                         "sigma_w2 |x0|^2/n + sigma_b2)")
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(S, n, 1, generator=g, dtype=torch.float64)
    x = x * torch.sqrt((q0 - sb) / sw * n / (x**2).sum(1, keepdim=True))
    J = torch.eye(n, dtype=torch.float64).expand(S, n, n)
    want, lams = set(ds), {}
    for l in range(1, max(ds) + 1):
        W = _weight(wts, n, sw, g, S)
        h = W @ x + torch.randn(S, n, 1, generator=g, dtype=torch.float64) * math.sqrt(sb)
        if act == "linear":
            x, d = h, torch.ones_like(h)
        elif act == "tanh":
            x, d = torch.tanh(h), 1.0 - torch.tanh(h) ** 2
        else:
            x, d = torch.relu(h), (h > 0).to(h.dtype)
        J = d * (W @ J)  # D_l W_l J_{l-1}: d [S, n, 1] scales the rows
        if l in want:
            lams[l] = (torch.linalg.svdvals(J) ** 2).numpy()
    sq = tuple(lams[L] for L in ds)
    sp = np.array([[spread(s) for s in lam] for lam in sq])
    m1 = np.array([lam.mean(1) for lam in sq])
    m2 = np.array([(lam**2).mean(1) for lam in sq])

    def se(a):
        return a.std(1, ddof=1) / math.sqrt(S) if S > 1 else None

    limit = np.array([jacobian_spread_limit(act, q0, L, weights=wts) for L in ds])
    return JacobianSpectra(np.array(ds), sq, sp.mean(1), se(sp), m1.mean(1), se(m1), m2.mean(1), se(m2),
                           limit, wts, act, sw, sb, q0, n, S)
