r"""Approximation and depth: the tent map, piece counting, the product gate, deep vs shallow nets.

For chapter 4, approximation and depth (``book/04_approximation_depth.md``,
``labs/04_approximation_depth.ipynb``).

Conventions (stated once, used everywhere here):

- The tent map is f(x) = 2x on [0, 1/2] and 2(1 - x) on [1/2, 1]; f^k is f composed k times, a
  sawtooth with 2^k linear pieces on [0, 1] (Telgarsky 2016, "Benefits of depth in neural networks").
- A *piecewise-linear map* on an interval is given as a pair ``(breakpoints, values)`` of float64
  arrays: strictly increasing breakpoints x_0 < ... < x_n (the interval's ends included) and the
  values at them; the map is the linear interpolation (continuous). Its number of *pieces* is the
  number of maximal intervals on which it is affine (consecutive collinear segments merged).
  Piece counting is in float64 with a tolerance ``tol`` (not rational arithmetic): a slope change
  smaller than ``tol`` times the larger slope (plus ``tol``) is not a breakpoint.
- Errors of a fit g to a target h on an interval I are *mean squared errors under uniform x*,
  E = (1/|I|) \int_I (h - g)^2 dx; on I = [0, 1] this is the squared L2(0, 1) distance.
  ``best_affine_error(k)`` = min_{a, b} \int_0^1 (f^k(x) - a - b x)^2 dx = 1/12 for every k >= 1
  (the L2 distance itself is 1/sqrt(12) = 0.2887).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import models as _models
from . import train as _train
from .data import Data
from .validate import in_interval, int_sequence, number, positive_int

__all__ = [
    "tent_power", "sawtooth_mlp", "PiecewiseLinear", "tent_pieces", "count_pieces", "compose",
    "compose_pieces", "squared_error", "affine_fit_error", "best_affine_error", "max_pieces",
    "few_pieces_error_lower_bound", "GATE_ACTIVATIONS", "product_gate", "product_gate_error_coefficient",
    "mlp_params", "EqualParameters", "equal_parameter_widths", "net_pieces", "SawtoothFits", "fit_sawtooth",
]


# ============================================================================ the tent map

def _unit_interval(name: str, x: np.ndarray) -> None:
    if x.size and not (np.all(np.isfinite(x)) and x.min() >= 0.0 and x.max() <= 1.0):
        raise ValueError(f"{name} must lie in [0, 1] (the tent map's domain); got values in "
                         f"[{np.nanmin(x):g}, {np.nanmax(x):g}]")


def tent_power(x, k: int):
    r"""f^k(x) for the tent map f(x) = 2x (x <= 1/2), 2(1 - x) (x >= 1/2), by composing f k times.

    Closed form (the oracle in the tests): f^k(x) = 1 - |(2^k x mod 2) - 1|, the distance of 2^k x
    to the nearest even integer; f^k has 2^k linear pieces on [0, 1] (Telgarsky 2016, Sec. 3).
    ``x``: a float (returns a float), a numpy array (float64 result) or a torch tensor (same dtype
    and device), all in [0, 1]. ``k``: an integer >= 1.
    """
    k = positive_int("k", k)
    if isinstance(x, torch.Tensor):
        _unit_interval("x", x.detach().to("cpu", torch.float64).numpy())
        y = x
        for _ in range(k):
            y = torch.where(y <= 0.5, 2 * y, 2 * (1 - y))
        return y
    scalar = np.ndim(x) == 0 and not isinstance(x, np.ndarray)
    if scalar:
        number("x", x)
    y = np.asarray(x, dtype=np.float64)
    _unit_interval("x", y)
    for _ in range(k):
        y = np.where(y <= 0.5, 2 * y, 2 * (1 - y))
    return float(y) if scalar else y


def sawtooth_mlp(k: int, *, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    r"""A ReLU MLP 1 -> 2 -> ... -> 2 -> 1 with k hidden layers of width 2 computing f^k on [0, 1].

    Telgarsky (2016): on [0, 1], f(x) = 2 relu(x) - 4 relu(x - 1/2). Layer 1 computes
    (relu(x), relu(x - 1/2)); each further layer feeds z = 2 h_1 - 4 h_2 = f^{l-1}(x) in [0, 1] into
    (relu(z), relu(z - 1/2)) (weights [[2, -4], [2, -4]], bias (0, -1/2)); the read-out is 2 h_1 - 4 h_2.
    So 6k + 1 parameters in depth k give 2^k pieces, while a one-hidden-layer net of width m has
    at most m + 1. Every weight and bias is a dyadic rational, so float32 evaluation is exact up to
    rounding of the inputs.
    """
    k = positive_int("k", k)
    layers: list[nn.Module] = []
    for i in range(k):
        lin = nn.Linear(1 if i == 0 else 2, 2, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor([[1.0], [1.0]] if i == 0 else [[2.0, -4.0], [2.0, -4.0]]))
            lin.bias.copy_(torch.tensor([0.0, -0.5]))
        layers += [lin, nn.ReLU()]
    out = nn.Linear(2, 1, dtype=dtype)
    with torch.no_grad():
        out.weight.copy_(torch.tensor([[2.0, -4.0]]))
        out.bias.zero_()
    return nn.Sequential(*layers, out)


# ============================================================================ piecewise-linear maps

@dataclass(frozen=True, eq=False)
class PiecewiseLinear:
    """A continuous piecewise-linear map: linear interpolation of ``values`` at ``breakpoints``."""

    breakpoints: np.ndarray
    values: np.ndarray

    def __call__(self, x) -> np.ndarray:
        return np.interp(np.asarray(x, dtype=np.float64), self.breakpoints, self.values)

    def pieces(self, tol: float = 1e-9) -> int:
        """Number of maximal affine pieces (see ``count_pieces``)."""
        return count_pieces(self.breakpoints, self.values, tol=tol)

    def simplified(self, tol: float = 1e-9) -> "PiecewiseLinear":
        """The same map with the breakpoints where the slope does not change removed."""
        keep = _kinks(self.breakpoints, self.values, tol)
        return PiecewiseLinear(self.breakpoints[keep], self.values[keep])


def _as_map(xname: str, yname: str, breakpoints, values) -> PiecewiseLinear:
    x = np.asarray(breakpoints, dtype=np.float64).reshape(-1)
    y = np.asarray(values, dtype=np.float64).reshape(-1)
    if x.size < 2 or x.shape != y.shape:
        raise ValueError(f"{xname} and {yname} must be 1-D arrays of the same length >= 2; "
                         f"got shapes {np.shape(breakpoints)} and {np.shape(values)}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{xname} must be finite; got {x}")
    if not np.all(np.isfinite(y)):
        raise ValueError(f"{yname} must be finite; got {y}")
    if np.any(np.diff(x) <= 0):
        raise ValueError(f"{xname} must be strictly increasing; got {x}")
    return PiecewiseLinear(x, y)


def _kinks(x: np.ndarray, y: np.ndarray, tol: float) -> np.ndarray:
    """Mask of the breakpoints to keep: both ends and those where the slope changes."""
    s = np.diff(y) / np.diff(x)
    change = np.abs(np.diff(s)) > tol * (1 + np.maximum(np.abs(s[1:]), np.abs(s[:-1])))
    return np.concatenate([[True], change, [True]])


def count_pieces(breakpoints, values, *, tol: float = 1e-9) -> int:
    r"""Number of linear pieces of the continuous piecewise-linear map through (x_i, y_i).

    1 + the number of interior breakpoints where the slope s_i = (y_{i+1} - y_i)/(x_{i+1} - x_i)
    changes by more than tol (1 + max(|s_i|, |s_{i-1}|)). float64, not exact rationals.
    """
    tol = in_interval("tol", tol, 0.0, 1e-3, closed="left")
    g = _as_map("breakpoints", "values", breakpoints, values)
    return int(_kinks(g.breakpoints, g.values, tol).sum()) - 1


def tent_pieces(k: int) -> PiecewiseLinear:
    """f^k on [0, 1] as a piecewise-linear map: breakpoints j / 2^k, values 0, 1, 0, 1, ..., 0."""
    k = positive_int("k", k)
    n = 2 ** k
    return PiecewiseLinear(np.arange(n + 1) / n, (np.arange(n + 1) % 2).astype(np.float64))


def compose(maps: Sequence[tuple], *, tol: float = 1e-9) -> PiecewiseLinear:
    r"""The composition g_m o ... o g_1 of continuous piecewise-linear maps (``maps[0]`` applied first).

    Each map is ``(breakpoints, values)``; the range of g_j must lie in the domain of g_{j+1} (to
    ``tol``). The breakpoints of g o h are those of h and the points where h crosses a breakpoint of g
    (on each linear segment of h, found by solving h(x) = c). float64 with tolerance ``tol``.
    """
    tol = in_interval("tol", tol, 0.0, 1e-3, closed="left")
    if isinstance(maps, (str, bytes)) or not isinstance(maps, Sequence) or len(maps) < 1:
        raise ValueError(f"maps={maps!r:.60} must be a non-empty sequence of (breakpoints, values) pairs")
    for i, m in enumerate(maps):
        if isinstance(m, (str, bytes)) or not isinstance(m, Sequence) or len(m) != 2:
            raise ValueError(f"maps[{i}] must be a (breakpoints, values) pair; got {type(m).__name__}")
    gs = [_as_map(f"maps[{i}] breakpoints", f"maps[{i}] values", *m) for i, m in enumerate(maps)]
    cur = gs[0]
    for i, g in enumerate(gs[1:], start=1):
        lo, hi = g.breakpoints[0], g.breakpoints[-1]
        span = tol * (1 + hi - lo)
        if cur.values.min() < lo - span or cur.values.max() > hi + span:
            raise ValueError(f"maps[{i}] is defined on [{lo:g}, {hi:g}] but the composition so far takes values in "
                             f"[{cur.values.min():g}, {cur.values.max():g}]")
        x, y = cur.breakpoints, np.clip(cur.values, lo, hi)
        new_x = [x]
        for c in g.breakpoints[1:-1]:
            y0, y1 = y[:-1], y[1:]
            cross = (np.minimum(y0, y1) < c) & (np.maximum(y0, y1) > c)
            t = (c - y0[cross]) / (y1[cross] - y0[cross])
            new_x.append(x[:-1][cross] + t * np.diff(x)[cross])
        xs = np.unique(np.concatenate(new_x))
        cur = PiecewiseLinear(xs, g(np.interp(xs, x, y)))
    return cur.simplified(tol)


def compose_pieces(maps: Sequence[tuple], *, tol: float = 1e-9) -> int:
    """Number of linear pieces of the composition ``compose(maps)`` (``maps[0]`` applied first)."""
    return compose(maps, tol=tol).pieces(tol)


def _segment_moments(x: np.ndarray, y: np.ndarray) -> tuple[float, float, float, float, float]:
    """|I|, int g, int x g, int g^2 and int x^2 over I by Simpson's rule, exact for the (at most
    quadratic) integrands of a piecewise-linear g."""
    h = np.diff(x)
    xm, ym = (x[:-1] + x[1:]) / 2, (y[:-1] + y[1:]) / 2
    simpson = lambda f0, fm, f1: float(np.sum(h * (f0 + 4 * fm + f1)) / 6)  # noqa: E731
    return (float(x[-1] - x[0]), simpson(y[:-1], ym, y[1:]), simpson(x[:-1] * y[:-1], xm * ym, x[1:] * y[1:]),
            simpson(y[:-1] ** 2, ym ** 2, y[1:] ** 2), simpson(x[:-1] ** 2, xm ** 2, x[1:] ** 2))


def squared_error(breakpoints, values, fit_breakpoints, fit_values) -> float:
    r"""Mean squared error (1/|I|) \int_I (h(x) - g(x))^2 dx between two piecewise-linear maps on one interval.

    h = (breakpoints, values) (e.g. ``tent_pieces(k)``), g = (fit_breakpoints, fit_values) (e.g. a
    shallow net's pieces); both must have the same end points. Exact up to float rounding: h - g is
    linear between the merged breakpoints and Simpson's rule integrates its square exactly.
    """
    h = _as_map("breakpoints", "values", breakpoints, values)
    g = _as_map("fit_breakpoints", "fit_values", fit_breakpoints, fit_values)
    a, b = h.breakpoints[[0, -1]]
    if not np.allclose(g.breakpoints[[0, -1]], (a, b), rtol=0, atol=1e-12 * (1 + b - a)):
        raise ValueError(f"fit_breakpoints must span the same interval [{a:g}, {b:g}] as breakpoints; "
                         f"got [{g.breakpoints[0]:g}, {g.breakpoints[-1]:g}]")
    x = np.unique(np.concatenate([h.breakpoints, np.clip(g.breakpoints, a, b)]))
    length, _, _, sq, _ = _segment_moments(x, h(x) - g(x))
    return sq / length


def affine_fit_error(breakpoints, values) -> float:
    r"""min_{a, b} (1/|I|) \int_I (h(x) - a - b x)^2 dx for the piecewise-linear map h = (breakpoints, values).

    With x uniform on I: the minimum is Var(h) - Cov(x, h)^2 / Var(x), from the exact moments of h
    (least squares in L2(I); Simpson's rule is exact here).
    """
    h = _as_map("breakpoints", "values", breakpoints, values)
    length, s_g, s_xg, s_gg, s_xx = _segment_moments(h.breakpoints, h.values)
    ex, eg = (h.breakpoints[0] + h.breakpoints[-1]) / 2, s_g / length
    var_x, var_g, cov = s_xx / length - ex ** 2, s_gg / length - eg ** 2, s_xg / length - ex * eg
    return float(max(var_g - cov ** 2 / var_x, 0.0))


def best_affine_error(k: int) -> float:
    r"""min_{a, b} \int_0^1 (f^k(x) - a - b x)^2 dx, the mean squared error of the best affine fit of f^k.

    Equals 1/12 for every k >= 1: f^k(1 - x) = f^k(x), so the best fit is the constant 1/2 (the
    mean), and f^k(x) is uniform on [0, 1] when x is (f preserves Lebesgue measure), with variance
    1/12. Computed here from the exact moments (``affine_fit_error(tent_pieces(k))``), not assumed.
    """
    t = tent_pieces(k)
    return affine_fit_error(t.breakpoints, t.values)


# ============================================================================ Telgarsky's counting bounds

def max_pieces(width: int, depth: int) -> int:
    r"""(2m)^L: the most linear pieces a ReLU net R -> R with L hidden layers of width m can have.

    Telgarsky (2016, Lemma 2.3 with the ReLU being 2-sawtooth): a sum of functions with N_1, N_2
    pieces has at most N_1 + N_2 pieces, so a neuron of layer l has at most 2 m N_{l-1} pieces and
    N_L <= (2m)^L. (The exact 1-D maximum is smaller: (m + 1)^L, ``regions.max_regions_1d``.)
    """
    return (2 * positive_int("width", width)) ** positive_int("depth", depth)


def few_pieces_error_lower_bound(k: int, pieces: int, *, norm: str = "mse") -> float:
    r"""A lower bound on the distance on [0, 1] between f^k and any continuous function g with at most t pieces.

    Telgarsky's argument (2016, Lemma 3.1/3.2, proof of Theorem 1.1; the constant here is the one
    proved below, which is sharper than the paper's): f^k - 1/2 alternates sign on 2^k + 1 triangles
    (2^k - 1 of base 2^{-k}, two half-triangles at the ends); g - 1/2 changes sign at most t times,
    so at most t triangles are cut and at least N = 2^{k-1} - t whole triangles lie where g is on the
    other side of 1/2, where |f^k - g| >= |f^k - 1/2|. At most two of them are half-triangles, so

        norm="l1":  \int_0^1 |f^k - g| dx   >= 2^{-k-2} max(N - 1, N/2)
        norm="mse": \int_0^1 (f^k - g)^2 dx >= 2^{-k}/12 max(N - 1, N/2)   (N <= 0: the bound is 0).

    Shallow nets need many units: a one-hidden-layer ReLU net of width m has t <= m + 1 pieces, so
    it stays at mean squared error ~ 1/24 unless m >= 2^{k-1} - 1.
    """
    k, t = positive_int("k", k), positive_int("pieces", pieces)
    if norm not in ("l1", "mse"):
        raise ValueError(f"norm={norm!r} is not allowed; allowed: 'l1', 'mse'")
    n = 2 ** (k - 1) - t
    if n <= 0:
        return 0.0
    area = 2.0 ** (-k - 2) if norm == "l1" else 2.0 ** (-k) / 12
    return area * max(n - 1, n / 2)


# ============================================================================ the product gate

def _softplus(z):
    return np.logaddexp(0.0, z)


def _gelu(z):
    from scipy.special import ndtr
    return z * ndtr(z)


def _silu(z):
    from scipy.special import expit
    return z * expit(z)


# name -> (s, s''(0), s''''(0)); the Taylor coefficients are derived in the docstring of product_gate.
GATE_ACTIVATIONS: dict[str, tuple] = {
    "softplus": (_softplus, 0.25, -0.125),
    "exp": (np.exp, 1.0, 1.0),
    "gelu": (_gelu, 2 / math.sqrt(2 * math.pi), -4 / math.sqrt(2 * math.pi)),
    "silu": (_silu, 0.5, -0.5),
    "swish": (_silu, 0.5, -0.5),
}
_REFUSED = {"tanh": "s''(0) = 0 (odd function)", "sigmoid": "s''(0) = 0 (sigmoid - 1/2 is odd)",
            "relu": "no second derivative at 0", "leaky_relu": "no second derivative at 0",
            "elu": "no second derivative at 0 (s'' jumps from 1 to 0)", "linear": "s'' = 0"}


def _gate_activation(activation: str) -> tuple:
    if isinstance(activation, str) and activation in GATE_ACTIVATIONS:
        return GATE_ACTIVATIONS[activation]
    why = f" ({_REFUSED[activation]})" if isinstance(activation, str) and activation in _REFUSED else ""
    raise ValueError(f"activation={activation!r} is not allowed{why}: the product gate needs a smooth activation "
                     f"with s''(0) != 0; allowed: {', '.join(map(repr, GATE_ACTIVATIONS))}")


def product_gate(u, v, a, activation: str = "softplus"):
    r"""The 4-neuron multiplication gate of Lin, Tegmark & Rolnick (2017, "Why does deep and cheap learning
    work so well?", Sec. III.A and Fig. 2):

    .. math:: uv \approx \frac{s(a(u+v)) + s(-a(u+v)) - s(a(u-v)) - s(-a(u-v))}{4 a^2 s''(0)}.

    Taylor expansion: s(z) + s(-z) = 2 s(0) + s''(0) z^2 + s''''(0) z^4 / 12 + O(z^6), so the gate
    equals uv + a^2 C(u, v) + O(a^4) with C = s''''(0) uv (u^2 + v^2) / (6 s''(0))
    (``product_gate_error_coefficient``): the error is O(a^2) as a -> 0. ``activation``: one of
    ``GATE_ACTIVATIONS`` ("softplus": s'' = 1/4, s'''' = -1/8; "exp": 1, 1; "gelu" = x Phi(x):
    2 phi(0), -4 phi(0); "silu"/"swish" = x sigmoid(x): 1/2, -1/2). tanh and sigmoid have
    s''(0) = 0 and ReLU has no s''(0): refused. ``u``, ``v``: floats or arrays (broadcast), ``a > 0``;
    float64. Rounding limits small a: the numerator cancels to ~ a^2, so keep a >= ~1e-4.
    """
    s, s2, _ = _gate_activation(activation)
    a = in_interval("a", a, 0.0, math.inf, closed="neither")
    scalar = np.ndim(u) == 0 and np.ndim(v) == 0
    uu, vv = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    if not (np.all(np.isfinite(uu)) and np.all(np.isfinite(vv))):
        raise ValueError("u and v must be finite")
    p, m = a * (uu + vv), a * (uu - vv)
    out = (s(p) + s(-p) - s(m) - s(-m)) / (4 * a ** 2 * s2)
    return float(out) if scalar else out


def product_gate_error_coefficient(u, v, activation: str = "softplus"):
    r"""C(u, v) = s''''(0) uv (u^2 + v^2) / (6 s''(0)): product_gate(u, v, a) - uv = C a^2 + O(a^4)."""
    _, s2, s4 = _gate_activation(activation)
    scalar = np.ndim(u) == 0 and np.ndim(v) == 0
    uu, vv = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    out = s4 * uu * vv * (uu ** 2 + vv ** 2) / (6 * s2)
    return float(out) if scalar else out


# ============================================================================ deep vs shallow at equal parameters

def mlp_params(widths: Sequence[int]) -> int:
    """Parameters of a 1 -> widths -> 1 MLP with biases: sum over layers of (n_in + 1) n_out."""
    dims = [1, *int_sequence("widths", widths), 1]
    return sum((a + 1) * b for a, b in zip(dims[:-1], dims[1:]))


@dataclass(frozen=True)
class EqualParameters:
    """A deep-narrow and a shallow-wide 1-D MLP with (nearly) the same number of parameters."""

    deep: tuple[int, ...]
    shallow: tuple[int, ...]
    deep_params: int
    shallow_params: int


def equal_parameter_widths(depth: int, width: int) -> EqualParameters:
    """``depth`` hidden layers of ``width`` against one hidden layer of width m, m chosen so that
    3m + 1 (its parameter count) is nearest to the deep net's ``mlp_params`` (ties: the larger m)."""
    deep = (positive_int("width", width),) * positive_int("depth", depth)
    p = mlp_params(deep)
    m = max(1, int(round((p - 1) / 3 + 1e-9)))
    return EqualParameters(deep, (m,), p, mlp_params((m,)))


@dataclass(frozen=True, eq=False)
class SawtoothFits:
    """Trained fits of f^k (one model per (k, seed)): ``errors[i, j]`` is the exact mean squared error
    \\int_0^1 (f^{ks[i]} - net)^2 dx of seed j (from the net's breakpoints), ``pieces[i, j]`` its
    number of linear pieces on [0, 1], ``train_mse`` the final training loss."""

    widths: tuple[int, ...]
    ks: tuple[int, ...]
    seeds: tuple[int, ...]
    errors: np.ndarray
    pieces: np.ndarray
    train_mse: np.ndarray
    models: list
    seconds: float

    def best(self) -> np.ndarray:
        """The smallest error over seeds, per k."""
        return self.errors.min(axis=1)


def net_pieces(model: nn.Module) -> PiecewiseLinear:
    """A 1-D ReLU net on [0, 1] as an exact piecewise-linear map (breakpoints from ``regions.count_regions_1d``)."""
    from .regions import count_regions_1d
    first = next((m for m in model.modules() if isinstance(m, nn.Linear)), None)
    if first is None or first.in_features != 1:
        raise ValueError(f"model must be a ReLU MLP with 1 input; got in_features="
                         f"{None if first is None else first.in_features}")
    r = count_regions_1d(model, [0.0], [1.0])
    x = np.concatenate([[0.0], r.breakpoints, [1.0]])
    p = next(model.parameters())
    with torch.no_grad():
        y = model(torch.as_tensor(x, dtype=p.dtype, device=p.device)[:, None]).reshape(-1)
    return PiecewiseLinear(x, y.to("cpu", torch.float64).numpy())


def fit_sawtooth(widths: Sequence[int], ks: Sequence[int], *, seeds: Sequence[int] = (0, 1, 2, 3),
                 n_train: int = 512, steps: int = 2000, lr: float = 1e-2, he_init: bool = True,
                 progress: bool = False) -> SawtoothFits:
    r"""Train 1 -> widths -> 1 ReLU MLPs on f^k for every k in ``ks`` and seed in ``seeds``, in ONE
    ``train.fit_ensemble`` call (each model its own target), by Adam on the mean squared error over
    ``n_train`` equally spaced points of [0, 1]. Initialization (seeded per model): He, W ~ N(0, 2/fan_in)
    and b ~ N(0, 0.1) with ``he_init`` (narrow deep nets die less often), else PyTorch's default.
    Reports the exact error \int_0^1 (f^k - net)^2 dx of each trained net (``squared_error`` on its
    pieces) and its piece count.
    """
    widths = int_sequence("widths", widths)
    ks = int_sequence("ks", ks)
    seeds = tuple(int(s) for s in seeds)
    if not seeds:
        raise ValueError("seeds must hold at least one seed")
    n_train, steps = positive_int("n_train", n_train), positive_int("steps", steps)
    x = torch.linspace(0, 1, n_train, dtype=torch.float32)[:, None]
    items, nets = [], []
    for k in ks:
        y = tent_power(x, k)
        for s in seeds:
            items.append(Data(x, y, x, y, name=f"f^{k}"))
            init = dict(init="gaussian", sigma_w2=2.0, sigma_b2=0.1) if he_init else {}
            nets.append(_models.mlp(1, widths, 1, seed=1000 * k + s, **init))
    res = _train.fit_ensemble(nets, items, steps=steps, lr=lr, optimizer="adam", loss="mse",
                              eval_every=steps, progress=progress, desc=f"fit f^k, widths {widths}")
    errors = np.zeros((len(ks), len(seeds)))
    pieces = np.zeros((len(ks), len(seeds)), dtype=int)
    train_mse = np.zeros((len(ks), len(seeds)))
    for i, k in enumerate(ks):
        t = tent_pieces(k)
        for j in range(len(seeds)):
            m = res.models[i * len(seeds) + j]
            g = net_pieces(m)
            errors[i, j] = squared_error(t.breakpoints, t.values, g.breakpoints, g.values)
            pieces[i, j] = g.pieces()
            train_mse[i, j] = res.histories[i * len(seeds) + j].final("train_loss")
    return SawtoothFits(widths, ks, seeds, errors, pieces, train_mse, res.models, res.seconds)
