"""Linear regions of ReLU networks: bounds on the maximum and exact / grid counts (chapter 5, linear regions).

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
    "count_regions_1d_arrays", "count_regions_segments", "SegmentCounts",
    "plane_through", "Plane", "region_map", "RegionMap", "region_figure", "zigzag_mlp",
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


def _zigzag_layer(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Kinks t, directions d, read-out c and offset beta of n ReLUs on g in [0, 1] such that
    beta + sum_i c_i relu(d_i (g - t_i)) zig-zags 0 -> 1 -> 0 ... across n + 1 pieces, each onto [0, 1].

    Slopes s_k = (-1)^k / w_k on pieces of widths w_k, kinks c_k = s_k - s_{k-1}; neuron 3 is flipped
    (d = -1), which the slope s_0 = -c_3 allows when 1 / w_0 = 1 / w_2 + 1 / w_3: w_2 = w_3 = 2 w_0."""
    w = np.ones(n + 1)
    w[2] = w[3] = 2.0
    w /= w.sum()
    t = np.cumsum(w)[:-1]
    s = np.array([(-1) ** k / w[k] for k in range(n + 1)])
    c = s[1:] - s[:-1]
    d = np.ones(n)
    d[2] = -1.0
    return t, d, c, float(-c[2] * t[2])          # f(0) = 0: only the flipped neuron is on at g = 0


def zigzag_mlp(widths: Sequence[int], dtype: torch.dtype = torch.float64) -> nn.Sequential:
    r"""A 1-input ReLU net with hidden widths ``widths`` that attains ``max_regions_1d(widths)`` =
    prod(n_l + 1) regions on [0, 1], showing that Serra et al.'s 2018 bound is tight for n0 = 1 (a
    folding construction in the spirit of Montufar et al. 2014, with n_l + 1 teeth per layer).

    Layer l (n_l >= 3) maps each region of the layers below onto [0, 1] and folds it n_l + 1 times;
    the last layer only needs its n_L kinks inside every piece, so any n_L >= 1 works there.
    """
    ws = int_sequence("widths", widths)
    if any(n < 3 for n in ws[:-1]):
        raise ValueError(f"widths={ws} must be >= 3 except for the last layer (a zig-zag of n_l + 1 teeth "
                         "with a bias-free flip needs 3 neurons)")
    layers: list[nn.Module] = []
    prev = None
    for li, n in enumerate(ws):
        last = li == len(ws) - 1
        if last:
            t, d = (np.arange(1, n + 1) - 0.5) / n, np.ones(n)
        else:
            t, d, c_next, beta_next = _zigzag_layer(n)
        if prev is None:
            W, b = d[:, None], -d * t
        else:
            c, beta = prev
            W, b = d[:, None] * c[None, :], d * (beta - t)
        with torch.random.fork_rng(devices=[]):     # nn.Linear's init would consume the global RNG
            lin = nn.Linear(W.shape[1], n, dtype=dtype)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(W))
            lin.bias.copy_(torch.as_tensor(b))
        layers += [lin, nn.ReLU()]
        if not last:
            prev = (c_next, beta_next)
    with torch.random.fork_rng(devices=[]):
        layers.append(nn.Linear(ws[-1], 1, dtype=dtype))
    with torch.no_grad():
        layers[-1].weight.fill_(1.0)
        layers[-1].bias.zero_()
    return nn.Sequential(*layers)


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


def _as_point(v, name: str, dim: int, why: str = "the model's input size") -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().to("cpu", torch.float64).numpy()
    p = np.asarray(v, dtype=np.float64).reshape(-1)
    if p.shape != (dim,) or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be a finite point with {dim} coordinates ({why}); "
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
    return _walk_1d(ops, a, b, tol)


def _walk_1d(ops: list[_Affine | Activation], a, b, tol: float) -> LineRegions:
    dim = _input_dim(ops)
    a, b = _as_point(a, "a", dim), _as_point(b, "b", dim)
    if np.array_equal(a, b):
        raise ValueError(f"a and b must be different points (the segment has length 0), got a = b = {a.tolist()}")
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


def _check_box(box) -> tuple[float, float, float, float]:
    try:
        umin, umax, vmin, vmax = (float(c) for c in box)
    except (TypeError, ValueError):
        raise ValueError(f"box={box!r} must be four numbers (umin, umax, vmin, vmax)") from None
    if not all(np.isfinite([umin, umax, vmin, vmax])) or not (umin < umax and vmin < vmax):
        raise ValueError(f"box={box!r} must be finite with umin < umax and vmin < vmax (lower < upper)")
    return umin, umax, vmin, vmax


def _plane_basis(plane, dim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(origin, e1, e2) of x(u, v) = origin + u e1 + v e2 for ``plane`` = None, a ``Plane`` or 3 points."""
    if plane is None:
        if dim != 2:
            raise ValueError(f"plane=None needs a model with 2 inputs; this one has {dim}: "
                             "pass plane=(p0, p1, p2), three points in input space")
        return np.zeros(2), np.array([1.0, 0.0]), np.array([0.0, 1.0])
    if isinstance(plane, Plane):
        if plane.origin.shape != (dim,):
            raise ValueError(f"plane lies in {plane.origin.shape[0]} dimensions; the model has {dim} inputs")
        return plane.origin, plane.e1, plane.e2
    if isinstance(plane, (str, bytes)) or len(plane) != 3:
        raise ValueError("plane must be three points (p0, p1, p2) in input space or a Plane")
    p0, p1, p2 = (_as_point(p, f"plane[{i}]", dim) for i, p in enumerate(plane))
    origin, e1, e2 = p0, p1 - p0, p2 - p0
    if np.linalg.matrix_rank(np.stack([e1, e2])) < 2:
        raise ValueError("plane points p0, p1, p2 must not be collinear")
    return origin, e1, e2


def count_regions_2d(model: nn.Module, box: Sequence[float] = (-1.0, 1.0, -1.0, 1.0),
                     resolution: int = 256, *, plane: Sequence | None = None,
                     chunk: int = 65536) -> PlaneRegions:
    r"""Activation regions of a ReLU MLP on a 2-D slice, by activation patterns on a grid.

    The slice is parametrised by (u, v) in ``box = (umin, umax, vmin, vmax)``:
    with ``plane=None`` the model must take 2 inputs and x = (u, v); with ``plane=(p0, p1, p2)``
    (three points of input space) x(u, v) = p0 + u (p1 - p0) + v (p2 - p0), so the box (0, 1, 0, 1)
    spans the parallelogram on the three points (a ``Plane`` from ``plane_through`` works too).
    Each point of a ``resolution`` x ``resolution`` grid gets its full activation pattern; inputs
    with one pattern form a convex polytope (once the pattern is fixed every pre-activation is
    affine, so the region is an intersection of half-spaces), so distinct patterns = connected
    regions met by the grid. Regions thinner than a pixel are missed: the count is a LOWER bound on
    the regions in the box (``region_map`` also checks the grid against the exact walk along rows).
    """
    ops = _relu_mlp_ops(model)
    dim = _input_dim(ops)
    umin, umax, vmin, vmax = _check_box(box)
    resolution = integer("resolution", resolution, lo=2, hi=4096)
    origin, e1, e2 = _plane_basis(plane, dim)

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


# ----------------------------------------------------------------------------- 1-D from numpy arrays

def count_regions_1d_arrays(weights: Sequence, biases: Sequence, a, b) -> int:
    r"""Exact number of activation regions on the segment [a, b] of the ReLU net given by arrays:
    x -> W_L relu(W_{L-1} ... relu(W_1 x + b_1) ... + b_{L-1}) + b_L, ``weights[l]`` of shape
    [n_{l+1}, n_l], ``biases[l]`` of shape [n_{l+1}] (ReLU after every layer but the last).

    Same walk and convention as ``count_regions_1d`` (equal to it on the equivalent ``nn.Sequential``);
    a plain-numpy entry point (lists of arrays in, an int out) for graded references.
    """
    if isinstance(weights, (str, bytes, np.ndarray)) or not isinstance(weights, Sequence) or len(weights) < 1:
        raise ValueError("weights must be a non-empty list of 2-D arrays, one [n_out, n_in] per layer")
    if isinstance(biases, (str, bytes, np.ndarray)) or not isinstance(biases, Sequence) \
            or len(biases) != len(weights):
        raise ValueError(f"biases must be a list of {len(weights)} 1-D arrays (one per weight matrix)")
    ops: list[_Affine | Activation] = []
    prev = None
    for i, (w, bias) in enumerate(zip(weights, biases)):
        w, bias = np.asarray(w, dtype=np.float64), np.asarray(bias, dtype=np.float64)
        if w.ndim != 2 or not np.all(np.isfinite(w)):
            raise ValueError(f"weights[{i}] must be a finite 2-D array [n_out, n_in], got shape {w.shape}")
        if prev is not None and w.shape[1] != prev:
            raise ValueError(f"weights[{i}] has {w.shape[1]} columns; the layer before has {prev} outputs")
        if bias.shape != (w.shape[0],) or not np.all(np.isfinite(bias)):
            raise ValueError(f"biases[{i}] must be a finite 1-D array of length {w.shape[0]}, got shape {bias.shape}")
        ops.append(_Affine(w.copy(), bias.copy()))
        ops.append(Activation(f"relu{i}", "relu"))
        prev = w.shape[0]
    ops.pop()                                # the read-out is linear
    if len(ops) == 1:
        raise ValueError("weights must hold at least 2 layers (one hidden ReLU layer and a read-out)")
    return _walk_1d(ops, a, b, 1e-10).count


# ----------------------------------------------------------------------------- many segments at once

@dataclass(frozen=True, eq=False)
class SegmentCounts:
    """Regions of a ReLU net along S segments a_s -> b_s.

    ``counts``: [S] int, activation regions on each segment (as ``count_regions_1d``);
    ``lengths``: [S] Euclidean lengths |b_s - a_s|; ``per_length``: counts / lengths;
    ``crossings_per_length``: (counts - 1) / lengths, the number of region boundaries crossed per unit
    length (the quantity Hanin & Rolnick 2019 bound in expectation by #neurons x a constant).
    """

    counts: np.ndarray
    lengths: np.ndarray
    per_length: np.ndarray
    crossings_per_length: np.ndarray


def _as_points(v, name: str, dim: int) -> np.ndarray:
    if isinstance(v, torch.Tensor):
        v = v.detach().to("cpu", torch.float64).numpy()
    p = np.asarray(v, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != dim or p.shape[0] < 1 or not np.all(np.isfinite(p)):
        raise ValueError(f"{name} must be a finite array [n_segments, {dim}] (the model's input size); "
                         f"got shape {p.shape}")
    return p


def _walk_many(ops: list[_Affine | Activation], A: np.ndarray, B: np.ndarray, tol: float) -> np.ndarray:
    """``count_regions_1d`` for every segment at once: intervals of all segments are kept in one array,
    sorted by (segment, t), so each layer is a few numpy calls instead of a Python loop."""
    S = A.shape[0]
    seg, lo, hi = np.arange(S), np.zeros(S), np.ones(S)
    alpha, beta = A.copy(), B - A
    patterns = np.zeros((S, 0), dtype=bool)
    for op in ops:
        if isinstance(op, _Affine):
            alpha, beta = alpha @ op.w.T + op.b, beta @ op.w.T
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            tstar = -alpha / beta
        inside = (beta != 0) & (tstar > lo[:, None] + tol) & (tstar < hi[:, None] - tol)
        r, c = np.nonzero(inside)
        cs, ct = seg[r], tstar[r, c]
        order = np.lexsort((ct, cs))
        cs, ct = cs[order], ct[order]
        # crossings closer than tol to the previous one on the same segment are merged (as in 1-D)
        keep = np.ones(cs.size, dtype=bool)
        keep[1:] = (cs[1:] != cs[:-1]) | (np.diff(ct) > tol)
        cs, ct = cs[keep], ct[keep]
        # points of the new partition: old left ends, each segment's right end 1, the new crossings
        ps = np.concatenate([seg, np.arange(S), cs])
        pt = np.concatenate([lo, np.ones(S), ct])
        order = np.lexsort((pt, ps))
        ps, pt = ps[order], pt[order]
        left = np.nonzero(ps[:-1] == ps[1:])[0]          # consecutive points of one segment bound an interval
        new_seg, new_lo, new_hi = ps[left], pt[left], pt[left + 1]
        mids = 0.5 * (new_lo + new_hi)
        # parent interval: the last old interval of the same segment starting at or before the mid
        old_key = np.stack([seg, lo])
        parent = _search_pairs(old_key, new_seg, mids)
        alpha, beta, patterns = alpha[parent], beta[parent], patterns[parent]
        active = alpha + beta * mids[:, None] > 0
        alpha, beta = np.where(active, alpha, 0.0), np.where(active, beta, 0.0)
        patterns = np.hstack([patterns, active])
        seg, lo, hi = new_seg, new_lo, new_hi
    changed = (seg[1:] == seg[:-1]) & np.any(patterns[1:] != patterns[:-1], axis=1)
    return 1 + np.bincount(seg[1:][changed], minlength=S)


def _search_pairs(old_key: np.ndarray, seg: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Index of the last (segment, lo) in the sorted ``old_key`` with segment == seg and lo <= t.

    t and lo lie in [0, 1], so the key 2 * segment + t orders all segments in one sorted array."""
    old_seg, old_lo = old_key
    return np.searchsorted(2.0 * old_seg + old_lo, 2.0 * seg + t, side="right") - 1


def count_regions_segments(model: nn.Module, A, B, *, tol: float = 1e-10) -> SegmentCounts:
    r"""Exact activation-region counts of a ReLU MLP along many segments a_s -> b_s in one pass.

    ``A``, ``B``: arrays [S, n0] of end points. Runs the walk of ``count_regions_1d`` (split each
    interval at the zero crossings t* = -alpha_i / beta_i of the current layer) on all segments
    together; ``counts[s]`` equals ``count_regions_1d(model, A[s], B[s], tol=tol).count``.
    Per unit length: Hanin & Rolnick 2019 ("Complexity of linear regions in deep networks") show
    that the expected number of boundaries crossed per unit length is ~ C x (number of neurons), at
    init, and measure the same in practice.
    """
    ops = _relu_mlp_ops(model)
    dim = _input_dim(ops)
    A, B = _as_points(A, "A", dim), _as_points(B, "B", dim)
    if A.shape != B.shape:
        raise ValueError(f"A and B must have the same shape, got {A.shape} and {B.shape}")
    lengths = np.linalg.norm(B - A, axis=1)
    if np.any(lengths == 0):
        s = int(np.argmin(lengths))
        raise ValueError(f"A[{s}] and B[{s}] must be different points (segment {s} has length 0)")
    tol = in_interval("tol", tol, 0.0, 1e-3, closed="neither")
    counts = _walk_many(ops, A, B, tol).astype(np.int64)
    return SegmentCounts(counts=counts, lengths=lengths, per_length=counts / lengths,
                         crossings_per_length=(counts - 1) / lengths)


# ----------------------------------------------------------------------------- 2-D maps ready to plot

@dataclass(frozen=True, eq=False)
class Plane:
    """The affine plane x(u, v) = origin + u e1 + v e2 in input space (``plane_through``)."""

    origin: np.ndarray
    e1: np.ndarray
    e2: np.ndarray

    def __call__(self, uv) -> np.ndarray:
        """Input-space points [N, n0] of plane coordinates ``uv`` [N, 2] (or one pair)."""
        uv = np.asarray(uv, dtype=np.float64)
        if uv.shape[-1:] != (2,):
            raise ValueError(f"uv must have 2 coordinates in its last axis, got shape {uv.shape}")
        return self.origin + uv[..., :1] * self.e1 + uv[..., 1:] * self.e2

    def coords(self, x) -> np.ndarray:
        """Least-squares plane coordinates (u, v) [N, 2] of input points ``x`` [N, n0] (their projection)."""
        if isinstance(x, torch.Tensor):
            x = x.detach().to("cpu", torch.float64).numpy()
        x = np.atleast_2d(np.asarray(x, dtype=np.float64))
        if x.shape[1:] != self.origin.shape:
            raise ValueError(f"x must have {self.origin.shape[0]} coordinates per point, got shape {x.shape}")
        basis = np.stack([self.e1, self.e2], axis=1)
        return np.linalg.lstsq(basis, (x - self.origin).T, rcond=None)[0].T


def plane_through(p0, p1, p2) -> Plane:
    """The plane through three points: x(u, v) = p0 + u (p1 - p0) + v (p2 - p0), so p0, p1, p2 sit at
    (u, v) = (0, 0), (1, 0), (0, 1) (the convention of ``count_regions_2d``; Hanin & Rolnick 2019
    draw regions on such planes through three MNIST images)."""
    p0 = _as_point(p0, "p0", np.asarray(p0).size, "all three points in one space")
    p1, p2 = (_as_point(p, n, p0.size, "as many as p0") for p, n in ((p1, "p1"), (p2, "p2")))
    if p0.size < 2 or np.linalg.matrix_rank(np.stack([p1 - p0, p2 - p0])) < 2:
        raise ValueError("p0, p1, p2 must not be collinear (they must span a plane)")
    return Plane(p0, p1 - p0, p2 - p0)


@dataclass(frozen=True, eq=False)
class RegionMap:
    """Activation regions on a ``resolution`` x ``resolution`` grid of a 2-D box, checked row by row.

    ``labels[i, j]``: region id (0..count-1) of the grid point (us[j], vs[i]) (plotly heatmap layout);
    ``count``: regions met by the grid (a LOWER bound on the regions in the box); ``min_pixels``:
    pixels of the smallest region seen; ``spacing``: (du, dv), the distance between grid points in
    plane coordinates (resolution = grid points per side, so du = (umax - umin) / (resolution - 1)).
    The check: along every grid row v = vs[i], ``row_counts_grid[i]`` is the number of runs of equal
    labels and ``row_counts_exact[i]`` the exact count of the 1-D walk (``count_regions_segments``)
    from (umin, vs[i]) to (umax, vs[i]). A region meets a row in one interval (regions are convex),
    so grid <= exact always; ``mismatched_rows`` lists the rows where the grid missed a region
    thinner than a pixel, and ``resolved`` is True when there are none.
    """

    labels: np.ndarray
    us: np.ndarray
    vs: np.ndarray
    count: int
    min_pixels: int
    spacing: tuple[float, float]
    plane: Plane
    row_counts_grid: np.ndarray
    row_counts_exact: np.ndarray
    mismatched_rows: np.ndarray
    resolved: bool

    @property
    def rows_agree(self) -> float:
        """Fraction of grid rows whose grid count equals the exact 1-D count."""
        return 1.0 - self.mismatched_rows.size / self.row_counts_grid.size


def region_map(model: nn.Module, box: Sequence[float] = (-1.0, 1.0, -1.0, 1.0), resolution: int = 256, *,
               plane: Plane | Sequence | None = None) -> RegionMap:
    r"""Label every point of a grid over ``box = (umin, umax, vmin, vmax)`` of a 2-D slice by its
    activation region (``count_regions_2d``) and check the map against the exact 1-D walk along
    every grid row (see ``RegionMap``). ``plane``: None (a 2-input model), a ``Plane`` or three
    points (p0, p1, p2).
    """
    ops = _relu_mlp_ops(model)
    dim = _input_dim(ops)
    umin, umax, vmin, vmax = _check_box(box)
    resolution = integer("resolution", resolution, lo=2, hi=4096)
    origin, e1, e2 = _plane_basis(plane, dim)
    pl = Plane(origin, e1, e2)
    grid = count_regions_2d(model, (umin, umax, vmin, vmax), resolution, plane=pl)
    labels = grid.region_ids
    row_grid = 1 + np.count_nonzero(labels[:, 1:] != labels[:, :-1], axis=1)
    starts = pl(np.stack([np.full(resolution, umin), grid.vs], axis=1))
    ends = pl(np.stack([np.full(resolution, umax), grid.vs], axis=1))
    row_exact = _walk_many(ops, starts, ends, 1e-10).astype(np.int64)
    bad = np.nonzero(row_grid != row_exact)[0]
    spacing = ((umax - umin) / (resolution - 1), (vmax - vmin) / (resolution - 1))
    return RegionMap(labels=labels, us=grid.us, vs=grid.vs, count=grid.count, min_pixels=grid.min_pixels,
                     spacing=spacing, plane=pl, row_counts_grid=row_grid, row_counts_exact=row_exact,
                     mismatched_rows=bad, resolved=bad.size == 0)


def region_figure(rmap: RegionMap, points=None, *, point_labels=None, title: str = "", seed: int = 0):
    """A plotly heatmap of ``rmap``'s regions (ids shuffled so that neighbours likely differ in colour),
    with optional ``points`` [N, 2] in plane coordinates overlaid (``point_labels`` as their text).
    Show it with ``plots.show``."""
    import plotly.graph_objects as go

    from .plots import TEMPLATE

    if not isinstance(rmap, RegionMap):
        raise ValueError(f"rmap must be a RegionMap (from region_map), got {type(rmap).__name__}")
    # 256 shuffled colours (uint8: plotly ships typed arrays, so a page holds 1 byte per pixel); two
    # neighbours share a colour with probability ~1/256
    colour = (np.random.default_rng(seed).permutation(rmap.count)[rmap.labels] % 256).astype(np.uint8)
    fig = go.Figure(go.Heatmap(x=rmap.us, y=rmap.vs, z=colour, colorscale="Turbo", showscale=False,
                               hovertemplate="u=%{x:.3f}<br>v=%{y:.3f}<extra></extra>"))
    if points is not None:
        pts = np.asarray(points, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 2:
            raise ValueError(f"points must be an array [N, 2] of plane coordinates, got shape {pts.shape}")
        text = None if point_labels is None else [str(t) for t in point_labels]
        fig.add_trace(go.Scatter(x=pts[:, 0], y=pts[:, 1], mode="markers+text" if text else "markers",
                                 text=text, textposition="top center", name="data",
                                 marker={"color": "white", "size": 10, "line": {"color": "black", "width": 2}},
                                 textfont={"color": "black", "size": 14}))
    fig.update_layout(template=TEMPLATE, title=title or f"{rmap.count} regions on the grid",
                      xaxis_title="u", yaxis_title="v", height=460, width=520,
                      margin={"l": 60, "r": 20, "t": 60, "b": 50})
    fig.update_yaxes(scaleanchor="x", scaleratio=1)
    return fig
