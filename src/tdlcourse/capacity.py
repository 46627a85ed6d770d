"""Capacity measures and generalization bounds.

Chapter 1 uses the VC bound and the Rademacher complexity; chapter 2 the norm-based and PAC-Bayes
bounds: path norms, spectral complexity and normalized margins here, optimized PAC-Bayes posteriors
in ``pacbayes``. Conventions: logs are natural (KL in nats); risks are 0-1 risks in [0, 1]; a torch
weight W has shape [out, in] and acts as x -> W x; bounds are returned as computed, never clipped
(a value above 1 is vacuous).
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .validate import in_interval, integer, nonnegative, positive, positive_int, probability

if TYPE_CHECKING:  # torch is imported where it is used: the bounds above the MLP norms need only numpy
    import torch   # (an autograding kernel that checks vc_gap starts 1.2 s faster)
    from torch import nn


def vc_gap(d: int, m: int, delta: float) -> float:
    r"""Uniform-convergence gap of the VC bound (Mohri, Rostamizadeh, Talwalkar, *Foundations of
    Machine Learning*, 2nd ed., Cor. 3.19): with probability at least 1 - delta over m samples,
    every h in a class of VC dimension d satisfies

    .. math:: R(h) \le \hat R(h) + \sqrt{\frac{2 d \ln(e m / d)}{m}} + \sqrt{\frac{\ln(1/\delta)}{2m}}.

    Returns the two square-root terms summed. Requires integers ``1 <= d <= m`` and
    ``0 < delta < 1``. ``vc_gap(100, 1797, 0.05) = 0.686746``. A value above 1 means the bound
    is vacuous for the 0-1 loss; it is returned as computed, never clipped.
    """
    d, m = positive_int("d", d), positive_int("m", m)
    if d > m:
        raise ValueError(f"d={d} must be <= m={m} (the bound uses ln(e m / d) with m >= d)")
    delta = probability("delta", delta, open_=True)
    return math.sqrt(2.0 * d * math.log(math.e * m / d) / m) + math.sqrt(math.log(1.0 / delta) / (2.0 * m))


def vc_vacuous_dimension(m: int, delta: float, level: float = 1.0) -> int:
    """The smallest integer VC dimension ``d`` (``1 <= d <= m``) at which ``vc_gap(d, m, delta)``
    reaches ``level`` (default 1: the bound says nothing about the 0-1 loss). ``vc_gap`` increases
    in d on [1, m] (its derivative in d is proportional to ln(m/d) >= 0), so a bisection is exact.
    Raises ``ValueError`` when even d = m stays below ``level``.
    ``vc_vacuous_dimension(1258, 0.05)`` is the answer to question 2 of assignment 1."""
    m, level = positive_int("m", m), positive("level", level)
    if vc_gap(m, m, delta) < level:
        raise ValueError(f"vc_gap(d, m={m}, delta={delta}) stays below level={level} for every d <= m")
    lo, hi = 0, m  # vc_gap(lo) < level <= vc_gap(hi), with vc_gap(0) read as 0
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if vc_gap(mid, m, delta) >= level:
            hi = mid
        else:
            lo = mid
    return hi


# ============================================================================ Rademacher complexity

MAX_RADEMACHER_POINTS = 20


def rademacher_linear(points) -> float:
    r"""Exact empirical Rademacher complexity of the unit-ball linear class
    :math:`\{x \mapsto \langle w, x\rangle : \|w\|_2 \le 1\}` on the rows x_1..x_m of ``points``:

    .. math:: \hat{\mathfrak R}_S = \mathbb E_\sigma \sup_{\|w\|_2\le 1} \frac1m \sum_i \sigma_i \langle w, x_i\rangle
              = \frac1m \mathbb E_\sigma \Big\|\sum_i \sigma_i x_i\Big\|_2

    (Cauchy-Schwarz: the sup is attained at w parallel to sum_i sigma_i x_i; Mohri et al., Thm 5.10
    bounds it by sqrt(sum_i ||x_i||^2) / m). The expectation over sigma uniform on {-1, +1}^m is
    computed exactly by enumerating the 2^m sign vectors (2^(m-1) by the symmetry sigma -> -sigma),
    so m <= 20. Convention: (1/m) inside the sup, no absolute value. Returns a float.
    """
    torch = sys.modules.get("torch")  # a tensor can only exist if torch is imported
    if torch is not None and isinstance(points, torch.Tensor):
        points = points.detach().to("cpu", torch.float64).numpy()
    x = np.asarray(points, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1 or not np.all(np.isfinite(x)):
        raise ValueError(f"points must be a finite [m, d] array with m >= 1 rows; got shape {x.shape}")
    m = x.shape[0]
    if m > MAX_RADEMACHER_POINTS:
        raise ValueError(f"points has m={m} rows; exact enumeration of 2^m sign vectors is limited to "
                         f"m <= {MAX_RADEMACHER_POINTS} (use a Monte Carlo estimate for more)")
    n = 1 << (m - 1)                       # sigma_1 = +1 fixed
    total = 0.0
    chunk = 1 << 15
    for start in range(0, n, chunk):
        k = np.arange(start, min(n, start + chunk), dtype=np.int64)
        bits = (k[:, None] >> np.arange(m - 1, dtype=np.int64)) & 1
        s = x[0] + (1 - 2 * bits).astype(np.float64) @ x[1:]
        total += float(np.linalg.norm(s, axis=1).sum())
    return total / (n * m)


# ============================================================================ PAC-Bayes

def _check_bound_args(emp_risk, kl, m, delta, m_min: int = 1) -> tuple[float, float, int, float]:
    """(emp_risk, kl, m, delta) normalized: an empirical 0-1 risk in [0, 1], KL(Q || P) >= 0 in nats,
    m >= m_min samples, delta in (0, 1)."""
    return (probability("emp_risk", emp_risk), nonnegative("kl", kl), integer("m", m, lo=m_min),
            probability("delta", delta, open_=True))


def mcallester_bound(emp_risk: float, kl: float, m: int, delta: float) -> float:
    r"""McAllester's PAC-Bayes bound (McAllester 1999; the form used by Dziugaite & Roy 2017):
    with probability >= 1 - delta over m samples, for every posterior Q,

    .. math:: L(Q) \le \hat L(Q) + \sqrt{\frac{\mathrm{KL}(Q\|P) + \ln(2m/\delta)}{2(m-1)}}.

    KL in nats; needs m >= 2. ``mcallester_bound(0.03, 5000, 55000, 0.025) = 0.243529``.
    Returned as computed (a value above 1 is vacuous), never clipped.
    """
    emp_risk, kl, m, delta = _check_bound_args(emp_risk, kl, m, delta, m_min=2)
    return emp_risk + math.sqrt((kl + math.log(2.0 * m / delta)) / (2.0 * (m - 1)))


def kl_bernoulli(q: float, p: float) -> float:
    r"""Binary KL divergence kl(q || p) = q ln(q/p) + (1-q) ln((1-q)/(1-p)) in nats (0 ln 0 = 0);
    ``q`` and ``p`` in [0, 1] (the result is +inf where p is 0 or 1 and q is not)."""
    q, p = probability("q", q), probability("p", p)
    out = 0.0
    if q > 0:
        out += math.inf if p <= 0 else q * math.log(q / p)
    if q < 1:
        out += math.inf if p >= 1 else (1 - q) * math.log((1 - q) / (1 - p))
    return out


def kl_inverse(q: float, c: float, tol: float = 1e-12) -> float:
    r"""Upper kl-inverse: :math:`\mathrm{kl}^{-1}(q, c) = \sup\{p \in [q, 1] : \mathrm{kl}(q\|p) \le c\}`.

    kl(q || p) increases in p on [q, 1], so bisection keeps a bracket [lo, hi] with
    kl(q || lo) <= c < kl(q || hi) until hi - lo <= ``tol``; the upper end ``hi`` is returned, so the
    answer is never below the exact inverse and at most ``tol`` above it.
    """
    q, c = probability("q", q), nonnegative("c", c)
    tol = in_interval("tol", tol, 0.0, 1e-2, closed="neither")
    if c == 0.0:
        return q  # (bisection would only resolve p to ~sqrt(eps) here: kl is flat at p = q)
    if q >= 1.0 or kl_bernoulli(q, 1.0) <= c:
        return 1.0
    lo, hi = q, 1.0
    while hi - lo > tol:
        mid = 0.5 * (lo + hi)
        if kl_bernoulli(q, mid) > c:
            hi = mid
        else:
            lo = mid
    return hi


def pac_bayes_kl_bound(emp_risk: float, kl: float, m: int, delta: float, tol: float = 1e-12) -> float:
    r"""PAC-Bayes-kl bound (Langford & Seeger 2001; Maurer 2004): with probability >= 1 - delta,
    for every posterior Q,

    .. math:: \mathrm{kl}\big(\hat L(Q) \,\|\, L(Q)\big) \le c = \frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt m/\delta)}{m},

    so L(Q) <= kl_inverse(L_hat, c) (to ``tol``). Always at most the Pinsker form L_hat + sqrt(c / 2).
    Maurer's theorem, which gives the constant 2 sqrt(m), needs m >= 8: a smaller m is refused.
    """
    emp_risk, kl, m, delta = _check_bound_args(emp_risk, kl, m, delta, m_min=8)
    c = (kl + math.log(2.0 * math.sqrt(m) / delta)) / m
    return kl_inverse(emp_risk, c, tol)


# ============================================================================ norms of MLPs

# 1-Lipschitz activations: the spectral complexity of Bartlett et al. 2017 takes rho_i = 1.
_LIPSCHITZ = ("relu", "tanh")


def _mlp(model: nn.Module, activations: tuple[str, ...] = ("relu",)) -> tuple:
    """``layers.parse_mlp`` of an MLP read at inference (Dropout = identity) with these activations."""
    from .layers import parse_mlp  # imports torch: only here (see the imports above)
    return parse_mlp(model, activations=activations, dropout=True)


def _linear_layers(model: nn.Module, activations: tuple[str, ...] = ("relu",)) -> list:
    """The ``layers.Linear`` specs (``.weight`` [out, in], ``.bias``) of an MLP (see ``_mlp``)."""
    from .layers import linear_layers
    return linear_layers(_mlp(model, activations))


def _work(t: torch.Tensor) -> torch.Tensor:
    """Detached copy in float64 on the parameter's device (float32 on MPS, which has no float64)."""
    import torch
    return t.detach().to(torch.float32 if t.device.type == "mps" else torch.float64)


def path_norm(model: nn.Module, p: float = 2, bias: bool = True) -> float:
    r"""l_p path norm of a ReLU MLP (Neyshabur, Tomioka, Srebro 2015, "Norm-based capacity control"):

    .. math:: \phi_p(w) = \Big(\sum_{\text{paths } v_0 \to \dots \to v_L} \prod_{l} |w_{v_l v_{l-1}}|^p\Big)^{1/p},

    computed by one forward pass of the layers with |W|^p on an all-ones input. Bias convention
    (``bias=True``): each bias is an edge from a constant unit, so paths may also start at a bias
    of any layer, i.e. the pass is v_l = |W_l|^p v_{l-1} + |b_l|^p; ``bias=False`` ignores biases.
    Invariant under rescaling a hidden neuron (incoming weights and bias times c > 0, outgoing
    weights times 1/c). Requires p >= 1.
    """
    p = in_interval("p", p, 1.0, math.inf, closed="left")
    import torch
    layers = _linear_layers(model)
    w0 = layers[0].weight
    v = torch.ones(w0.shape[1], device=w0.device, dtype=_work(w0).dtype)
    for lin in layers:
        v = _work(lin.weight).abs().pow(p) @ v
        if bias and lin.bias is not None:
            v = v + _work(lin.bias).abs().pow(p)
    return float(v.sum().pow(1.0 / p))


def _spectral_norm(w: torch.Tensor) -> float:
    import torch
    return float(torch.linalg.matrix_norm(w, ord=2))


def spectral_complexity(model: nn.Module, ref=None) -> float:
    r"""Spectral complexity of Bartlett, Foster, Telgarsky 2017 ("Spectrally-normalized margin
    bounds"), with 1-Lipschitz activations (ReLU or tanh, rho_i = 1):

    .. math:: R_A = \Big(\prod_{i=1}^{L} \|A_i\|_\sigma\Big)
              \Big(\sum_{i=1}^{L} \frac{\|A_i^\top - M_i^\top\|_{2,1}^{2/3}}{\|A_i\|_\sigma^{2/3}}\Big)^{3/2}.

    Convention (theirs): ||A||_{p,q} = ||(||A_{:,1}||_p, ..., ||A_{:,m}||_p)||_q over columns, so for a
    torch weight A = W [out, in] (x -> A x), ||A^T||_{2,1} = sum over output neurons of the l2 norm
    of their incoming weights (the rows of W). ||.||_sigma is the largest singular value.
    ``ref``: the reference matrices M_i: None (zeros), an nn.Sequential of the same shapes (e.g.
    the network at initialization) or a sequence of tensors. Biases are ignored.
    """
    import torch
    from torch import nn
    layers = _linear_layers(model, _LIPSCHITZ)
    if ref is None:
        refs = [None] * len(layers)
    elif isinstance(ref, nn.Module):
        refs = [lin.weight for lin in _linear_layers(ref, _LIPSCHITZ)]
    else:
        refs = list(ref)
    if len(refs) != len(layers):
        raise ValueError(f"ref has {len(refs)} matrices; model has {len(layers)} Linear layers")
    log_prod, total = 0.0, 0.0
    for lin, m_i in zip(layers, refs):
        a = _work(lin.weight)
        if m_i is not None:
            m_i = torch.as_tensor(m_i).detach().to(a.device, a.dtype)
            if m_i.shape != a.shape:
                raise ValueError(f"ref matrix of shape {tuple(m_i.shape)} does not match weight {tuple(a.shape)}")
            a_diff = a - m_i
        else:
            a_diff = a
        s = _spectral_norm(a)
        if s == 0.0:
            return 0.0
        log_prod += math.log(s)
        total += (float(a_diff.norm(dim=1).sum()) / s) ** (2.0 / 3.0)
    return math.exp(log_prod) * total ** 1.5



def path_norm_arrays(weights, biases=None, p: float = 2) -> float:
    r"""``path_norm`` from plain arrays: the l_p path norm (Neyshabur, Tomioka, Srebro 2015) of the
    ReLU network with weight matrices ``weights`` = [W_1, ..., W_L], each [out, in] as in
    ``nn.Linear`` (x -> W x + b), and optional ``biases`` = [b_1, ..., b_L] (each [out] or None;
    ``biases=None``: no biases):

    .. math:: \phi_p = \Big(\mathbf 1^\top v_L\Big)^{1/p}, \quad v_0 = \mathbf 1, \quad
              v_l = |W_l|^p v_{l-1} + |b_l|^p,

    the sum over all paths (from an input unit or from a bias, each bias an edge from a constant
    unit) of the product of |edge weight|^p. Equals ``path_norm(model, p)`` for the ``nn.Sequential``
    of ``nn.Linear`` and ``nn.ReLU`` with these weights (``bias=True``; with ``biases=None`` the
    ``bias=False`` value). Invariant when a hidden neuron's incoming weights and bias are multiplied
    by c > 0 and its outgoing weights by 1/c. numpy only (no torch); returns a float.
    """
    p = in_interval("p", p, 1.0, math.inf, closed="left")
    if isinstance(weights, np.ndarray) or not isinstance(weights, (list, tuple)) or not weights:
        raise ValueError("weights must be a non-empty list of 2-D arrays [out, in]")
    Ws = []
    for i, w in enumerate(weights):
        a = np.asarray(w, dtype=np.float64)
        if a.ndim != 2 or a.size == 0 or not np.all(np.isfinite(a)):
            raise ValueError(f"weights[{i}] must be a finite 2-D array [out, in], got shape {a.shape}")
        if Ws and a.shape[1] != Ws[-1].shape[0]:
            raise ValueError(f"weights[{i}] has shape {a.shape}: its {a.shape[1]} inputs do not match the "
                             f"{Ws[-1].shape[0]} outputs of weights[{i - 1}]")
        Ws.append(a)
    if biases is None:
        Bs = [None] * len(Ws)
    else:
        if isinstance(biases, np.ndarray) or not isinstance(biases, (list, tuple)) or len(biases) != len(Ws):
            raise ValueError(f"biases must be None or a list of {len(Ws)} arrays (one per weight matrix, "
                             "an entry may be None)")
        Bs = []
        for i, (b, w) in enumerate(zip(biases, Ws)):
            if b is None:
                Bs.append(None)
                continue
            a = np.asarray(b, dtype=np.float64)
            if a.shape != (w.shape[0],) or not np.all(np.isfinite(a)):
                raise ValueError(f"biases[{i}] must be a finite array of shape ({w.shape[0]},), got shape {a.shape}")
            Bs.append(a)
    v = np.ones(Ws[0].shape[1])
    for w, b in zip(Ws, Bs):
        v = np.abs(w) ** p @ v
        if b is not None:
            v = v + np.abs(b) ** p
    return float(v.sum() ** (1.0 / p))


# ============================================================================ a table of measures

@dataclass(frozen=True)
class Measure:
    """One row of ``measures``: a capacity measure, its margin-normalized value, and a bound.

    ``bound`` is a generalization bound on the 0-1 test error where one applies (else None);
    ``vacuous`` is True when ``bound > 1`` (None when there is no bound). Nothing is clipped.
    """

    name: str
    value: float
    normalized: float | None
    bound: float | None
    vacuous: bool | None
    formula: str


@dataclass(frozen=True)
class MeasureTable:
    """Result of ``measures``: rows plus the margin they were normalized by."""

    rows: tuple[Measure, ...]
    margin: float                # gamma: the margin_quantile quantile of the training margins
    margin_quantile: float
    train_error: float           # fraction of misclassified points (margin <= 0)
    m: int
    delta: float

    def __getitem__(self, name: str) -> Measure:
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"{name!r}; rows: {', '.join(r.name for r in self.rows)}")

    def as_dict(self) -> dict[str, Measure]:
        return {r.name: r for r in self.rows}


def margins(model: nn.Module, X, y) -> torch.Tensor:
    r"""Multiclass margins gamma_i = f(x_i)_{y_i} - max_{j != y_i} f(x_i)_j of an MLP (one output per
    class); for a single output, gamma_i = s_i f(x_i) with s_i = +1 for y_i in {1} and -1 for y_i
    in {0, -1}. Computed from the weights (Dropout as identity): the model's mode is not used.
    """
    import torch
    from .layers import Activation, Linear
    layers = _mlp(model, _LIPSCHITZ)
    w0 = next(l.weight for l in layers if isinstance(l, Linear))
    h = torch.as_tensor(X).detach().to(w0.device, _work(w0).dtype).flatten(1)  # so Flatten layers are no-ops
    with torch.no_grad():
        for layer in layers:
            if isinstance(layer, Linear):
                h = h @ _work(layer.weight).T + (_work(layer.bias) if layer.bias is not None else 0.0)
            elif isinstance(layer, Activation):
                h = layer(h)
    y = torch.as_tensor(y).to(h.device).long().reshape(-1)
    if y.shape[0] != h.shape[0]:
        raise ValueError(f"y has {y.shape[0]} labels for {h.shape[0]} inputs")
    if h.shape[1] == 1:
        if not bool(((y == 1) | (y == 0) | (y == -1)).all()):
            raise ValueError("with a single output, y must hold labels in {0, 1} or {-1, 1}")
        return torch.where(y == 1, 1.0, -1.0).to(h.dtype) * h[:, 0]
    if int(y.min()) < 0 or int(y.max()) >= h.shape[1]:
        raise ValueError(f"y must hold class indices in [0, {h.shape[1] - 1}]")
    true = h.gather(1, y[:, None])[:, 0]
    other = h.scatter(1, y[:, None], -math.inf).max(dim=1).values
    return true - other



def normalized_margins(model: nn.Module, X, y, ref=None) -> torch.Tensor:
    r"""Margins normalized by the spectral complexity, as in the margin distributions of Bartlett,
    Foster, Telgarsky 2017 (Sec. 2; the quantity their Thm. 1.1 bound scales with):

    .. math:: \tilde\gamma_i = \frac{\gamma_i}{R_A \|X\|_2 / n}, \qquad
              \|X\|_2 = \Big(\sum_{j=1}^n \|x_j\|_2^2\Big)^{1/2},

    with gamma_i the multiclass margins f(x_i)_{y_i} - max_{j != y_i} f(x_i)_j (``margins``), R_A the
    spectral complexity (``spectral_complexity(model, ref)``; ``ref=None``: reference matrices 0) and
    n the number of rows of ``X``. Their ||X||_2 is the l2 norm of the stacked data, the Frobenius
    norm of X [n, d] (inputs flattened), not its spectral norm. Normalizing makes margins
    comparable across networks and label sets: scaling the last layer by c > 0 scales gamma_i and R_A
    alike. Returns a float64 tensor [n] on the model's device; raises if R_A = 0.
    """
    import torch
    gam = margins(model, X, y)
    rc = spectral_complexity(model, ref)
    if rc == 0.0:
        raise ValueError("model has spectral complexity R_A = 0 (a zero weight matrix): normalized margins "
                         "are undefined")
    x = torch.as_tensor(X).detach().to(gam.device, gam.dtype).flatten(1)
    n = x.shape[0]
    return gam / (rc * float(x.pow(2).sum().sqrt()) / n)


def measures(model: nn.Module, data, *, margin_quantile: float = 0.05, delta: float = 0.05) -> MeasureTable:
    r"""Norm-based capacity measures of a ReLU MLP and their margin-normalized versions.

    ``data = (X, y)`` is the training set (m points). Neyshabur, Bhojanapalli, McAllester, Srebro 2017
    ("Exploring generalization in deep learning") compare measures only after normalizing them by
    the margin gamma; here gamma is the ``margin_quantile`` quantile of the margins (``margins``),
    a low quantile rather than the minimum, which a single point can drive to 0 (0 gives the minimum).
    Rows (W_i the weights, L layers, bias-free formulas; biases enter the path norms only):

    - ``frobenius_sum_sq`` = sum_i ||W_i||_F^2 (weight decay; not scale-invariant, no normalization).
    - ``frobenius_product`` = prod_i ||W_i||_F; normalized (prod_i ||W_i||_F / gamma)^2. Bound (only
      for bias-free nets): Golowich, Rakhlin, Shamir 2018 (Thm 1) bound the Rademacher complexity by
      prod_i ||W_i||_F (sqrt(2 ln(2) L) + 1) sqrt(sum_j ||x_j||^2) / m, plugged into the empirical
      margin bound (one output: coef = 2, Mohri et al. 2018 Thm 5.8; k classes: coef = 4k, Kuznetsov,
      Mohri, Syed 2015 / Mohri et al. 2018 Thm 9.2), with L_ramp,gamma the mean ramp loss
      min(1, max(0, 1 - gamma_j / gamma)):
      L_ramp,gamma + (coef / gamma) R_S + 3 sqrt(ln(2/delta) / (2m)). Norms and gamma are those of the
      trained net (plug-in: a union bound over norm and margin levels adds lower-order terms).
    - ``spectral_product`` = prod_i ||W_i||_sigma (the Lipschitz constant bound); normalized (. / gamma)^2.
    - ``path_norm_1``, ``path_norm_2``: ``path_norm`` with p = 1, 2; normalized (. / gamma)^2.
    - ``spectral_complexity`` = R_A (``spectral_complexity``, M_i = 0); normalized
      R_A sqrt(sum_j ||x_j||^2) / (gamma m), the quantity of Bartlett et al. 2017 (their bound adds
      unspecified constants and log factors, so no bound is reported).

    If gamma <= 0 (more than a ``margin_quantile`` fraction of points misclassified) the normalized
    values and the bound are +inf, with a warning.
    """
    import torch
    margin_quantile = in_interval("margin_quantile", margin_quantile, 0.0, 1.0, closed="left")
    delta = probability("delta", delta, open_=True)
    try:
        X, y = data
    except (TypeError, ValueError):
        raise ValueError("data must be a pair (X, y)") from None
    layers = _linear_layers(model)
    gam = margins(model, X, y)
    m = int(gam.shape[0])
    if m < 1:
        raise ValueError("data must hold at least one point")
    gamma = float(torch.quantile(gam, float(margin_quantile)))
    train_error = float((gam <= 0).double().mean())
    k = int(layers[-1].weight.shape[0])
    x_norm = float(torch.as_tensor(X).detach().double().flatten(1).pow(2).sum().sqrt())
    weights = [_work(l.weight) for l in layers]
    fro = [float(w.norm()) for w in weights]
    spec = [_spectral_norm(w) for w in weights]
    has_bias = any(l.bias is not None and bool(l.bias.detach().abs().max() > 0) for l in layers)

    ok = gamma > 0
    if not ok:
        warnings.warn(f"the {margin_quantile} quantile of the margins is {gamma:.3g} <= 0: margin-normalized "
                      "measures and bounds are +inf", RuntimeWarning, stacklevel=2)

    def norm2(v: float) -> float:
        return (v / gamma) ** 2 if ok else math.inf

    fro_prod = math.prod(fro)
    bound = vacuous = None
    if not has_bias:
        if ok:
            rad = fro_prod * (math.sqrt(2.0 * math.log(2.0) * len(layers)) + 1.0) * x_norm / m
            ramp = float((1.0 - gam / gamma).clamp(0.0, 1.0).mean())
            coef = 2.0 if k == 1 else 4.0 * k
            bound = ramp + coef / gamma * rad + 3.0 * math.sqrt(math.log(2.0 / delta) / (2.0 * m))
        else:
            bound = math.inf
        vacuous = bound > 1.0
    rc = spectral_complexity(model)
    rows = (
        Measure("frobenius_sum_sq", sum(f * f for f in fro), None, None, None, "sum_i ||W_i||_F^2"),
        Measure("frobenius_product", fro_prod, norm2(fro_prod), bound, vacuous,
                "prod_i ||W_i||_F; normalized (./gamma)^2"),
        Measure("spectral_product", math.prod(spec), norm2(math.prod(spec)), None, None,
                "prod_i ||W_i||_sigma; normalized (./gamma)^2"),
        Measure("path_norm_1", path_norm(model, 1), norm2(path_norm(model, 1)), None, None,
                "l1 path norm; normalized (./gamma)^2"),
        Measure("path_norm_2", path_norm(model, 2), norm2(path_norm(model, 2)), None, None,
                "l2 path norm; normalized (./gamma)^2"),
        Measure("spectral_complexity", rc, rc * x_norm / (gamma * m) if ok else math.inf, None, None,
                "R_A (Bartlett et al. 2017); normalized R_A ||X||_F / (gamma m)"),
    )
    return MeasureTable(rows=rows, margin=gamma, margin_quantile=float(margin_quantile),
                        train_error=train_error, m=m, delta=float(delta))
