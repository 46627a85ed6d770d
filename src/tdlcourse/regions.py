"""Linear regions of ReLU networks: bounds on the maximum and exact / grid counts (the topic of the planned chapter 5).

Notation: input dimension n0, hidden widths (n_1, ..., n_L) (ReLU layers only; a final linear read-out
adds no regions). Convention used by every counter here: a *region* is a maximal connected set of
inputs on which the network's full activation pattern (the on/off state of every hidden ReLU) is
constant. On a region the network is affine, but two neighbouring regions can carry the same affine
map (e.g. a neuron whose outgoing weights are zero), so the number of *linear pieces* of the function
can be smaller; ``count_regions_1d`` reports both.

References: Montufar, Pascanu, Cho, Bengio 2014 (lower bound); Montufar 2017 "Notes on the number of
linear regions of deep neural networks" (upper bound); Serra, Tjandraatmadja, Ramalingam 2018
"Bounding and counting linear regions of deep neural networks" (tighter upper bound, exact for n0 = 1);
Hanin & Rolnick 2019 "Complexity of linear regions in deep networks" (counts at init and after training).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from math import comb, prod
from typing import NamedTuple, Sequence

import numpy as np
import torch
from torch import nn

from .layers import Activation, Linear, parse_mlp
from .validate import in_interval, int_sequence, integer, positive_int

__all__ = [
    "montufar_lower_bound", "montufar2017_upper_bound", "serra_upper_bound", "max_regions_1d",
    "count_regions_1d", "count_regions_2d", "LineRegions", "PlaneRegions",
]


# ----------------------------------------------------------------------------- bounds

def montufar_lower_bound(n0: int, widths: Sequence[int]) -> int:
    r"""Lower bound on the maximal number of regions (Montufar, Pascanu, Cho, Bengio 2014, Thm 4):
    a ReLU net with n0 inputs and hidden widths n_l >= n0 can have at least

    .. math:: \Big(\prod_{l=1}^{L-1} \lfloor n_l / n_0 \rfloor^{n_0}\Big) \sum_{j=0}^{n_0} \binom{n_L}{j}

    regions. ``montufar_lower_bound(2, (6, 6, 6)) = 1782``. Exact integer arithmetic.
    """
    n0, ws = positive_int("n0", n0), int_sequence("widths", widths)
    if min(ws) < n0:
        raise ValueError(f"widths={ws} must all be >= n0={n0}: the 2014 construction needs n_l >= n0")
    return prod((w // n0) ** n0 for w in ws[:-1]) * sum(comb(ws[-1], j) for j in range(n0 + 1))


def montufar2017_upper_bound(n0: int, widths: Sequence[int]) -> int:
    r"""Upper bound of Montufar 2017 ("Notes on the number of linear regions of deep neural networks"):

    .. math:: \prod_{l=1}^{L} \sum_{j=0}^{d_l} \binom{n_l}{j}, \qquad d_l = \min(n_0, n_1, \dots, n_l).

    Equals ``serra_upper_bound`` unless some layer is narrow (then Serra's is strictly smaller).
    """
    n0, ws = positive_int("n0", n0), int_sequence("widths", widths)
    out, d = 1, n0
    for n in ws:
        d = min(d, n)
        out *= sum(comb(n, j) for j in range(d + 1))
    return out


def serra_upper_bound(n0: int, widths: Sequence[int]) -> int:
    r"""Upper bound of Serra, Tjandraatmadja, Ramalingam 2018 (Thm 1) on the number of regions:

    .. math:: \sum_{(j_1,\dots,j_L) \in J} \prod_{l=1}^{L} \binom{n_l}{j_l}, \quad
              J = \{ 0 \le j_l \le \min(n_0, n_1 - j_1, \dots, n_{l-1} - j_{l-1}, n_l)\ \forall l \}.

    Summed by dynamic programming over d_l = min(n0, n_1 - j_1, ..., n_{l-1} - j_{l-1}) (the
    dimension still available to layer l), exact integers. ``serra_upper_bound(2, (6, 6, 6)) = 10648``;
    for n0 = 1 it is the exact maximum when every layer but the last has width >= 3.
    """
    n0, ws = positive_int("n0", n0), int_sequence("widths", widths)
    states: dict[int, int] = {n0: 1}
    for n in ws:
        new: dict[int, int] = defaultdict(int)
        for d, weight in states.items():
            for j in range(min(d, n) + 1):
                new[min(d, n - j)] += weight * comb(n, j)
        states = new
    return sum(states.values())


def max_regions_1d(widths: Sequence[int]) -> int:
    r"""Maximal number of regions of a ReLU net with one input (Serra et al. 2018, n0 = 1):
    :math:`\prod_{l=1}^{L} (n_l + 1)`. ``max_regions_1d((4, 4, 4)) = 125``.

    Attained (e.g. by a zig-zag construction) when n_1, ..., n_{L-1} >= 3; a hidden layer of width 1
    or 2 cannot pass on full zig-zags, so then this is only an upper bound and
    ``serra_upper_bound(1, widths)`` is smaller or equal.
    """
    return prod(n + 1 for n in int_sequence("widths", widths))


# ----------------------------------------------------------------------------- parsing a ReLU MLP

class _Affine(NamedTuple):
    """z = h w^T + b in float64 numpy (a read-only copy of a Linear layer)."""

    w: np.ndarray
    b: np.ndarray


def _relu_mlp_ops(model: nn.Module) -> list[_Affine | Activation]:
    """The layers of a ReLU MLP as float64 ``_Affine`` copies and ReLU ``Activation`` specs.

    Accepts what ``layers.parse_mlp`` reads with ReLU as the only activation; ``Identity``,
    ``Flatten`` and ``Dropout`` are the identity here (inputs are points, the net is read at inference).
    """
    ops: list[_Affine | Activation] = []
    for layer in parse_mlp(model, activations=["relu"], dropout=True,
                           why=" (activation regions are defined for ReLU nets)"):
        if isinstance(layer, Linear):
            w = layer.weight.detach().to("cpu", torch.float64).numpy().copy()
            b = (layer.bias.detach().to("cpu", torch.float64).numpy().copy() if layer.bias is not None
                 else np.zeros(w.shape[0]))
            ops.append(_Affine(w, b))
        elif isinstance(layer, Activation):
            ops.append(layer)
    return ops


def _input_dim(ops: list[_Affine | Activation]) -> int:
    return next(op.w.shape[1] for op in ops if isinstance(op, _Affine))


def _as_point(v, name: str, dim: int) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().to("cpu", torch.float64).numpy()
    p = np.asarray(v, dtype=np.float64).reshape(-1)
    if p.shape != (dim,) or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be a finite point with {dim} coordinates (the model's input size); "
                         f"got shape {np.asarray(v).shape}")
    return p


# ----------------------------------------------------------------------------- 1-D: exact

@dataclass(frozen=True, eq=False)
class LineRegions:
    """Regions of a ReLU net along the segment x(t) = a + t (b - a), t in [0, 1].

    ``count``: number of activation regions; ``breakpoints``: sorted t in (0, 1) where the pattern
    changes (count - 1 of them); ``patterns``: [count, n_neurons] bool, the pattern on each region in
    layer order; ``n_pieces``: number of maximal intervals on which the output is affine
    (``<= count``).
    """

    count: int
    breakpoints: np.ndarray
    patterns: np.ndarray
    n_pieces: int


def count_regions_1d(model: nn.Module, a, b, *, tol: float = 1e-10) -> LineRegions:
    r"""Exact number of activation regions of a ReLU MLP on the segment from ``a`` to ``b``.

    Along x(t) = a + t (b - a) every pre-activation is piecewise linear in t. Walking layer by layer,
    each interval of the current partition carries z(t) = alpha + beta t for the current layer's
    input; a Linear layer maps (alpha, beta) -> (W alpha + bias, W beta); a ReLU layer splits the
    intervals at the zero crossings t* = -alpha_i / beta_i lying strictly inside them, then zeroes
    the inactive coordinates. Regions are maximal intervals of constant activation pattern (see the
    module docstring); Serra et al. 2018 bound their number by ``max_regions_1d(widths)``.

    ``tol``: crossings closer than ``tol`` (in t) to each other or to an existing breakpoint are
    merged (non-generic coincidences). Works in float64 on a copy of the weights; the model is not
    touched.
    """
    ops = _relu_mlp_ops(model)
    dim = _input_dim(ops)
    a, b = _as_point(a, "a", dim), _as_point(b, "b", dim)
    if np.array_equal(a, b):
        raise ValueError("a and b must be different points (the segment is empty)")
    tol = in_interval("tol", tol, 0.0, 1e-3, closed="neither")

    ts = np.array([0.0, 1.0])               # breakpoints of the current partition
    alpha, beta = a[None, :], (b - a)[None, :]
    patterns = np.zeros((1, 0), dtype=bool)
    for op in ops:
        if isinstance(op, _Affine):
            alpha, beta = alpha @ op.w.T + op.b, beta @ op.w.T
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            tstar = -alpha / beta
        inside = (beta != 0) & (tstar > ts[:-1, None] + tol) & (tstar < ts[1:, None] - tol)
        new = np.sort(tstar[inside])
        if new.size:
            new = new[np.concatenate([[True], np.diff(new) > tol])]
            ts_new = np.sort(np.concatenate([ts, new]))
        else:
            ts_new = ts
        mids = 0.5 * (ts_new[:-1] + ts_new[1:])
        parent = np.searchsorted(ts, mids, side="right") - 1
        alpha, beta, patterns = alpha[parent], beta[parent], patterns[parent]
        active = alpha + beta * mids[:, None] > 0
        alpha, beta = np.where(active, alpha, 0.0), np.where(active, beta, 0.0)
        patterns = np.hstack([patterns, active])
        ts = ts_new

    # Degenerate splits (e.g. a neuron touching zero) can leave equal neighbours: merge them.
    keep = np.concatenate([[True], np.any(patterns[1:] != patterns[:-1], axis=1)])
    region_patterns = patterns[keep]
    breakpoints = ts[1:-1][keep[1:]]
    # Linear pieces: neighbours with the same slope (continuity then gives the same affine map).
    scale = max(1.0, float(np.abs(beta).max()))
    same = np.all(np.isclose(beta[1:], beta[:-1], rtol=1e-9, atol=1e-12 * scale), axis=1)
    n_pieces = 1 + int(np.count_nonzero(~same))
    return LineRegions(count=int(region_patterns.shape[0]), breakpoints=breakpoints,
                       patterns=region_patterns, n_pieces=n_pieces)


# ----------------------------------------------------------------------------- 2-D: grid

@dataclass(frozen=True, eq=False)
class PlaneRegions:
    """Activation regions seen on a grid over a 2-D box (a LOWER bound on the true count).

    ``count``: number of distinct activation patterns on the grid; ``region_ids``: int array
    [resolution, resolution], ``region_ids[i, j]`` is the region of the point (us[j], vs[i])
    (rows follow the second coordinate, as a plotly heatmap expects); ``us``, ``vs``: the grid
    coordinates; ``min_pixels``: pixels in the smallest region seen (1 or 2 means the resolution
    is probably too coarse).
    """

    count: int
    region_ids: np.ndarray
    us: np.ndarray
    vs: np.ndarray
    min_pixels: int


def _patterns(ops: list[_Affine | Activation], x: np.ndarray) -> np.ndarray:
    bits = []
    for op in ops:
        if isinstance(op, _Affine):
            x = x @ op.w.T + op.b
        else:
            bits.append(x > 0)
            x = np.maximum(x, 0.0)
    return np.hstack(bits) if bits else np.zeros((x.shape[0], 0), dtype=bool)


def count_regions_2d(model: nn.Module, box: Sequence[float] = (-1.0, 1.0, -1.0, 1.0),
                     resolution: int = 256, *, plane: Sequence | None = None,
                     chunk: int = 65536) -> PlaneRegions:
    r"""Activation regions of a ReLU MLP on a 2-D slice, by activation patterns on a grid.

    The slice is parametrised by (u, v) in ``box = (umin, umax, vmin, vmax)``:
    with ``plane=None`` the model must take 2 inputs and x = (u, v); with ``plane=(p0, p1, p2)``
    (three points of input space) x(u, v) = p0 + u (p1 - p0) + v (p2 - p0), so the box (0, 1, 0, 1)
    spans the parallelogram on the three points. Each point of a ``resolution`` x ``resolution``
    grid gets its full activation pattern; inputs with one pattern form a convex polytope (once
    the pattern is fixed every pre-activation is affine, so the region is an intersection of
    half-spaces), so distinct patterns = connected regions met by the grid. Regions
    thinner than a pixel are missed: the count is a LOWER bound on the regions in the box.
    """
    ops = _relu_mlp_ops(model)
    dim = _input_dim(ops)
    try:
        umin, umax, vmin, vmax = (float(c) for c in box)
    except (TypeError, ValueError):
        raise ValueError(f"box={box!r} must be four numbers (umin, umax, vmin, vmax)") from None
    if not (umin < umax and vmin < vmax):
        raise ValueError(f"box={box!r} must satisfy umin < umax and vmin < vmax")
    resolution = integer("resolution", resolution, lo=2, hi=4096)
    if plane is None:
        if dim != 2:
            raise ValueError(f"plane=None needs a model with 2 inputs; this one has {dim}: "
                             "pass plane=(p0, p1, p2), three points in input space")
        origin, e1, e2 = np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0])
    else:
        if len(plane) != 3:
            raise ValueError("plane must be three points (p0, p1, p2) in input space")
        p0, p1, p2 = (_as_point(p, f"plane[{i}]", dim) for i, p in enumerate(plane))
        origin, e1, e2 = p0, p1 - p0, p2 - p0
        if np.linalg.matrix_rank(np.stack([e1, e2])) < 2:
            raise ValueError("plane points p0, p1, p2 must not be collinear")

    us, vs = np.linspace(umin, umax, resolution), np.linspace(vmin, vmax, resolution)
    uu, vv = np.meshgrid(us, vs)            # [i, j] -> (us[j], vs[i])
    coords = np.stack([uu.ravel(), vv.ravel()], axis=1)
    keys = []
    for s in range(0, coords.shape[0], chunk):
        c = coords[s:s + chunk]
        x = origin + c[:, :1] * e1 + c[:, 1:] * e2
        keys.append(np.packbits(_patterns(ops, x), axis=1))
    keys = np.ascontiguousarray(np.vstack(keys))
    rows = keys.view(np.dtype((np.void, keys.shape[1]))).ravel() if keys.shape[1] else np.zeros(len(keys), "V1")
    _, ids, counts = np.unique(rows, return_inverse=True, return_counts=True)
    return PlaneRegions(count=int(counts.size), region_ids=ids.reshape(resolution, resolution).astype(np.int64),
                        us=us, vs=vs, min_pixels=int(counts.min()))
