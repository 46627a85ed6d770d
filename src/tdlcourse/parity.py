"""Parities defeat gradient-based learning: the gradient barely depends on the target.

Chapter 11, failures of gradient-based learning (lab 11).

Setting (Shalev-Shwartz, Shamir, Shammah 2017, "Failures of gradient-based deep learning", Sec. 2.1):
x uniform on {-1, +1}^n, targets the 2^n parities chi_S(x) = prod_{i in S} x_i (S subset of [n],
the empty set included), a model f_w(x) with scalar output, and the population loss
F_S(w) = E_x l(f_w(x), chi_S(x)). The parities are orthonormal in L2(x), so by Bessel's inequality

    Var_S(grad F_S(w)) = E_S ||grad F_S(w) - E_S' grad F_S'(w)||^2 <= G(w)^2 / 2^n,
    G(w)^2 = E_x ||d f_w(x) / d w||^2      (squared loss l = (1/2)(f - y)^2, Theorem 1),

so for large n the full-batch gradient carries almost no information on which parity is the target.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import grad, vmap

from . import validate
from .data import Data
from ._functional import call, tensor_aliases

__all__ = ["parity_gradient_variance", "ParityGradientVariance", "parity_inputs", "LOSSES", "MAX_N",
           "parity_task", "variance_bound", "sq_max_correlated", "sq_query_lower_bound", "Windows",
           "window_cnn", "tanh_net_parity_variance", "tanh_net_parity_bound"]

MAX_N = 12
LOSSES = ("squared", "logistic")
# b_max = sup |b(f)| where dl/df (f, y) = a(f) + y b(f) for y in {-1, +1}
_B_MAX = {"squared": 1.0, "logistic": 0.5}


@dataclass(frozen=True)
class ParityGradientVariance:
    """Exact statistics over all 2^n parity targets of the full-batch gradient g_S = grad_w F_S(w).

    ``variance`` = E_S ||g_S - E_S g_S||^2; ``mean_grad_norm`` = ||E_S g_S||; ``mean_sq_grad_norm``
    = E_S ||g_S||^2 (= variance + mean_grad_norm^2); ``g2`` = G^2 = E_x ||d f / d w||^2;
    ``bound`` = b_max^2 G^2 / 2^n, the theorem's bound (b_max = 1 for the squared loss, 1/2 for the
    logistic loss); ``n``; ``n_targets`` = 2^n; ``n_params``; ``loss``.
    """

    variance: float
    mean_grad_norm: float
    mean_sq_grad_norm: float
    g2: float
    bound: float
    n: int
    n_targets: int
    n_params: int
    loss: str


def parity_inputs(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """All 2^n points of {-1, +1}^n as a [2^n, n] tensor; row k has x_i = 1 - 2 * bit_i(k), so row 0
    is the all-ones point. n is at most 24 (2^24 rows of 24 entries: 1.6 GB as float32)."""
    n = validate.integer("n", n, lo=1, hi=24)
    k = torch.arange(1 << n, device=device)
    bits = (k[:, None] >> torch.arange(n, device=device)) & 1
    return (1 - 2 * bits).to(dtype)


def _loss_parts(f: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """dl/df (f, y) = a(f) + y b(f) for y = +-1."""
    if loss == "squared":                  # l = (f - y)^2 / 2: dl/df = f - y
        return f, -torch.ones_like(f)
    # l = ln(1 + exp(-y f)): dl/df = -y sigmoid(-y f)
    return 0.5 * (torch.sigmoid(f) - torch.sigmoid(-f)), -0.5 * torch.ones_like(f)


def parity_gradient_variance(model: nn.Module, n: int, loss: str = "squared", *,
                             chunk: int | None = None) -> ParityGradientVariance:
    r"""Exact variance across the 2^n parity targets of the full-batch gradient (Shalev-Shwartz,
    Shamir, Shammah 2017, Thm 1), by enumerating all 2^n inputs.

    With per-input gradients g(x) = d f_w(x) / d w and dl/df (f, y) = a(x) + y b(x) (squared loss
    l = (f - y)^2 / 2: a = f, b = -1; logistic loss l = ln(1 + e^{-y f}): a = (sigma(f) - sigma(-f)) / 2,
    b = -1/2), the gradient for target chi_S is g_S = E_x[a g] + E_x[chi_S(x) b(x) g(x)]. The 2^n
    characters are orthogonal (Walsh-Hadamard) and sum_S chi_S(x) = 2^n [x = 1], so, with N = 2^n and
    v(x) = b(x) g(x), Parseval gives the exact values

    .. math:: \mathrm{Var}_S(g_S) = \frac{1}{N} \mathbb E_x \|v(x)\|^2 - \frac{1}{N^2}\|v(\mathbf 1)\|^2,
              \qquad \mathbb E_S\, g_S = \mathbb E_x[a g] + \frac{1}{N} v(\mathbf 1),

    which never exceed b_max^2 E_x||g||^2 / N. Per-input gradients come from ``torch.func`` on the
    parameters' device and dtype (accumulated in float64), ``chunk`` inputs at a time; the model is
    not modified (parameters and buffers are passed as copies; its train/eval mode is used as is).
    The model must map a [B, n] batch to [B] or [B, 1].
    """
    n = validate.integer("n", n, lo=1, hi=MAX_N)  # all 2^n inputs and targets are enumerated
    loss = validate.one_of("loss", loss, LOSSES)
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters")
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    aliases = tensor_aliases(model)
    p0 = next(iter(params.values()))
    n_params = sum(p.numel() for p in params.values())
    N = 1 << n
    if chunk is None:
        chunk = max(1, min(N, (1 << 25) // max(n_params, 1)))  # ~256 MB of float64 gradients
    chunk = validate.positive_int("chunk", chunk)

    def f_single(p, x):
        out = call(model, (p, buffers), (x[None],), aliases=aliases)
        if out.numel() != 1:
            raise ValueError(f"model must output one number per input ([B] or [B, 1]); got shape {tuple(out.shape)}")
        return out.reshape(())

    per_example = vmap(grad(f_single), in_dims=(None, 0))
    X = parity_inputs(n, p0.dtype, p0.device)
    try:
        with torch.no_grad():
            f_all = call(model, (params, buffers), (X,), aliases=aliases).reshape(N, -1)
    except RuntimeError as err:
        raise ValueError(f"model could not be applied to a [{N}, {n}] batch of parity inputs (n={n}): {err}") from err
    if f_all.shape[1] != 1:
        raise ValueError(f"model must output one number per input ([B] or [B, 1]); got {f_all.shape[1]}")
    a_all, b_all = _loss_parts(f_all[:, 0].double(), loss)

    sum_v2 = sum_g2 = 0.0
    sum_ag = torch.zeros(n_params, dtype=torch.float64, device=p0.device)
    v_one = None
    for s in range(0, N, chunk):
        g = per_example(params, X[s:s + chunk])
        g = torch.cat([g[k].reshape(g[k].shape[0], -1) for k in params], dim=1).double()
        a, b = a_all[s:s + chunk], b_all[s:s + chunk]
        g2 = (g * g).sum(dim=1)
        sum_g2 += float(g2.sum())
        sum_v2 += float((b * b * g2).sum())
        sum_ag += (a[:, None] * g).sum(dim=0)
        if v_one is None:
            v_one = b[0] * g[0]            # row 0 is x = (1, ..., 1)
    variance = sum_v2 / N / N - float((v_one * v_one).sum()) / N ** 2
    mean = sum_ag / N + v_one / N
    mean_norm = float(mean.norm())
    g2 = sum_g2 / N
    return ParityGradientVariance(
        variance=max(variance, 0.0), mean_grad_norm=mean_norm, mean_sq_grad_norm=max(variance, 0.0) + mean_norm ** 2,
        g2=g2, bound=_B_MAX[loss] ** 2 * g2 / N, n=n, n_targets=N, n_params=n_params, loss=loss)


def variance_bound(g2: float, n: int, loss: str = "squared") -> float:
    """The bound of Shalev-Shwartz, Shamir, Shammah 2017 (Thm 1) on the variance over the 2^n parities
    of the full-batch gradient: Var_S(grad F_S(w)) <= b_max^2 G^2 / 2^n, with G^2 = E_x ||d f_w(x)/d w||^2
    (``g2``) and b_max = 1 for the squared loss, 1/2 for the logistic loss (``ParityGradientVariance.bound``)."""
    g2 = validate.nonnegative("g2", g2)
    n = validate.nonnegative_int("n", n)
    loss = validate.one_of("loss", loss, LOSSES)
    return _B_MAX[loss] ** 2 * g2 / 2.0 ** n


def parity_task(n: int, d: int | None = None, *, n_train: int, n_test: int, sparse: bool = False, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> Data:
    """Parity of n bits as a two-class task: class 1 where chi_S(x) = prod_{i in S} x_i = -1, else 0.

    Full parity (``sparse=False``): x_1..x_n uniform on {-1, +1}, S = [n], and the inputs padded with
    d - n zero columns (``d`` defaults to n), so parities of every n share one input width and one
    ``fit_ensemble`` (a zero column adds nothing to any pre-activation and gets a zero gradient).
    Sparse parity (``sparse=True``): all d bits uniform, S a fixed random n-subset of [d] drawn with
    ``seed`` (the harder task: the learner must also find S among C(d, n) subsets; Barak et al. 2022
    "Hidden progress in deep learning: SGD learns parities near the computational limit").
    Train and test points are drawn independently (a point may occur in both when 2^n is small).
    """
    n = validate.positive_int("n", n)
    d = n if d is None else validate.integer("d", d, lo=n)
    n_train, n_test = validate.positive_int("n_train", n_train), validate.positive_int("n_test", n_test)
    sparse = validate.boolean("sparse", sparse)
    rng = np.random.default_rng([validate.integer("seed", seed, lo=0), 14])
    subset = np.sort(rng.choice(d, size=n, replace=False)) if sparse else np.arange(n)
    x = 1.0 - 2.0 * rng.integers(0, 2, size=(n_train + n_test, d))
    if not sparse:
        x[:, n:] = 0.0
    y = (np.prod(x[:, subset], axis=1) < 0).astype(np.int64)
    xt, yt = torch.as_tensor(x, dtype=dtype), torch.as_tensor(y)
    kind = f"sparse parity of bits {subset.tolist()} among d={d}" if sparse else f"parity of n={n} bits (d={d})"
    return Data(xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:], num_classes=2, name=kind)


def sq_max_correlated(tau: float) -> int:
    """The largest number m of orthonormal functions f_1..f_m in L2(D) that one function g with
    ||g|| <= 1 can correlate with by more than ``tau`` (|<g, f_i>| > tau): m = ceil(1/tau^2) - 1.

    Bessel's inequality sum_i <g, f_i>^2 <= ||g||^2 <= 1 gives m tau^2 < 1, and
    g = (f_1 + ... + f_m)/sqrt(m) attains it (<g, f_i> = 1/sqrt(m) > tau). For a query
    phi: X x {-1, 1} -> [-1, 1] and a target f, E[phi(x, f(x))] = c_phi + <g_phi, f> with
    g_phi(x) = (phi(x, 1) - phi(x, -1)) / 2, so m bounds how many targets one statistical query with
    tolerance tau can tell apart from the rest (Blum, Furst, Jackson, Kearns, Mansour, Rudich 1994).
    """
    tau = validate.in_interval("tau", tau, 0.0, 1.0, closed="neither")
    return math.ceil(1.0 / (tau * tau) - 1e-12) - 1


def sq_query_lower_bound(n_functions: int, tau: float) -> int:
    """The number of statistical queries of tolerance ``tau`` needed to identify a target among
    ``n_functions`` = |H| orthonormal +-1-valued functions (e.g. the 2^n parities):

        q >= ceil((|H| - 1) / m),   m = ceil(1/tau^2) - 1   (``sq_max_correlated``),

    so q >= (|H| - 1) tau^2 up to rounding (Blum et al. 1994; Kearns 1998, "Efficient noise-tolerant
    learning from statistical queries", the SQ dimension). Proof: the adversary answers every query
    phi with its target-free part c_phi; that answer is within tau of the truth for every target f
    with |<g_phi, f>| <= tau, so each query rules out at most m functions, and while two remain the
    learner cannot tell which one is the target.
    """
    h = validate.integer("n_functions", n_functions, lo=1)  # exact Python ints: |H| = 2^100 is fine
    return -(-(h - 1) // sq_max_correlated(tau))


def _tanh_net(W, b, a) -> nn.Sequential:
    """f(x) = sum_j a_j tanh(w_j . x + b_j) as a float64 torch module (hw11's tiny model)."""
    arrays = {}
    for name, v, ndim in (("W", W, 2), ("b", b, 1), ("a", a, 1)):
        arr = np.asarray(v, dtype=np.float64)
        if arr.ndim != ndim or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty {ndim}-D array, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"{name} must hold finite numbers only")
        arrays[name] = arr
    m, n = arrays["W"].shape
    validate.integer("n (= W.shape[1])", n, lo=1, hi=MAX_N)
    for name in ("b", "a"):
        if arrays[name].shape != (m,):
            raise ValueError(f"{name} must have shape ({m},) (one entry per row of W), got {arrays[name].shape}")
    first, last = nn.Linear(n, m, dtype=torch.float64), nn.Linear(m, 1, bias=False, dtype=torch.float64)
    with torch.no_grad():
        first.weight.copy_(torch.from_numpy(arrays["W"]))
        first.bias.copy_(torch.from_numpy(arrays["b"]))
        last.weight.copy_(torch.from_numpy(arrays["a"])[None])
    return nn.Sequential(first, nn.Tanh(), last)


def tanh_net_parity_variance(W, b, a) -> float:
    """``parity_gradient_variance(model, n).variance`` (squared loss) for the one-hidden-layer tanh net
    f(x) = sum_j a_j tanh(w_j . x + b_j) with parameters theta = (W [m, n], b [m], a [m]), n = W.shape[1]:
    Var_S = E_S ||g_S - E_S' g_S'||^2, g_S = grad_theta E_x (f(x) - chi_S(x))^2 / 2 over all 2^n
    parities (Shalev-Shwartz, Shamir, Shammah 2017, Thm 1). A plain float (hw11's reference)."""
    net = _tanh_net(W, b, a)
    return parity_gradient_variance(net, net[0].in_features).variance


def tanh_net_parity_bound(W, b, a) -> float:
    """The bound G^2 / 2^n of Shalev-Shwartz, Shamir, Shammah 2017 (Thm 1) for the same tanh net,
    G^2 = E_x ||d f(x) / d theta||^2 over x uniform on {-1, +1}^n (squared loss, b_max = 1)."""
    net = _tanh_net(W, b, a)
    return parity_gradient_variance(net, net[0].in_features).bound


class Windows(nn.Module):
    """[B, n] -> [B, n - k + 1, k]: the k consecutive inputs at every position (stride 1, no padding)."""

    def __init__(self, k: int) -> None:
        super().__init__()
        self.k = validate.positive_int("k", k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.unfold(-1, self.k, 1)

    def extra_repr(self) -> str:
        return f"k={self.k}"


def window_cnn(n: int, k: int, channels: int, num_classes: int = 2, *, seed: int = 0,
               dtype: torch.dtype = torch.float32, device=None) -> nn.Sequential:
    """The convolutional net of Malach & Shalev-Shwartz 2020 for k-patterns: one convolution of width
    k with ``channels`` filters shared across the P = n - k + 1 positions, ReLU, and a linear read-out
    with its own weights per position,

        f(x) = sum_{j=1}^{P} U_j relu(W x_{j..j+k-1} + b) + c,

    written as ``Windows(k)``, ``Linear(k, channels)`` (the shared filters), ReLU, Flatten and
    ``Linear(P * channels, num_classes)``: the same function as ``Conv1d(1, channels, k)`` followed by
    a linear layer, with PyTorch's default initialization drawn from ``torch.Generator`` seeded with
    ``seed`` (the global RNG is not touched). The shared filters see the target window at every
    position, so gradient descent needs to learn only a function of k bits (their Thm 2).
    """
    n, channels = validate.positive_int("n", n), validate.positive_int("channels", channels)
    k = validate.integer("k", k, lo=1, hi=n)
    num_classes = validate.positive_int("num_classes", num_classes)
    seed = validate.integer("seed", seed, lo=0)
    layers = [Windows(k), nn.Linear(k, channels, dtype=dtype), nn.ReLU(), nn.Flatten(),
              nn.Linear((n - k + 1) * channels, num_classes, dtype=dtype)]
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in (layers[1], layers[4]):
            bound = 1.0 / math.sqrt(lin.in_features)  # nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
            lin.weight.copy_((torch.rand(lin.weight.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
            lin.bias.copy_((torch.rand(lin.bias.shape, generator=g, dtype=torch.float64) * 2 - 1) * bound)
    net = nn.Sequential(*layers)
    return net.to(device) if device is not None else net
