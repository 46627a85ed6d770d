"""Entropy and mutual information of discrete and binned variables; information planes.

For chapter 12 of the course plan, the information bottleneck (not built yet).

Conventions: logarithms base 2 (bits); "plug-in" = the entropy / MI of the empirical distribution of
the samples given (exact for that distribution, a biased estimate of the population value: the
plug-in MI overestimates by about (K_xy - K_x - K_y + 1) / (2 n ln 2) bits, Paninski 2003, with K the
number of occupied cells). A continuous activation vector is made discrete by uniform binning of
every coordinate; the row of bin indices is one symbol. For a deterministic network T = f(X) the
binned I(X; T) equals H(T_binned) when every input is a distinct symbol, so its value is set by the
binning, not by the network alone (Saxe et al. 2018).

References: Shwartz-Ziv & Tishby 2017 "Opening the black box of deep neural networks via
information"; Saxe, Bansal, Dapello, Advani, Kolchinsky, Tracey, Cox 2018 "On the information
bottleneck theory of deep learning"; Cover & Thomas, *Elements of Information Theory*, ch. 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from . import validate

__all__ = [
    "entropy_discrete", "mutual_information_discrete", "mutual_information_joint",
    "mutual_information_binned", "bin_activations", "information_plane", "InformationPlane",
    "InformationPlaneResult",
]


def _to_numpy(a) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return np.asarray(a)


def _symbols(a, name: str) -> np.ndarray:
    """Integer codes 0..K-1 for the values of ``a``: [n] labels, or [n, d] rows (one symbol per row)."""
    x = _to_numpy(a)
    if x.ndim == 0 or x.shape[0] == 0:
        raise ValueError(f"{name} must hold at least one sample (shape [n] or [n, d]); got shape {x.shape}")
    if x.ndim == 1:
        _, codes = np.unique(x, return_inverse=True)
    else:
        _, codes = np.unique(x.reshape(x.shape[0], -1), axis=0, return_inverse=True)
    return codes.reshape(-1)


def _entropy_counts(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log2(p)).sum()) + 0.0


def entropy_discrete(labels) -> float:
    r"""Plug-in Shannon entropy in bits, :math:`H(X) = -\sum_x \hat p(x) \log_2 \hat p(x)`, of the
    samples ``labels`` ([n] values, or [n, d] with each row one symbol)."""
    _, counts = np.unique(_symbols(labels, "labels"), return_counts=True)
    return _entropy_counts(counts)


def _joint_codes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return x.astype(np.int64) * (int(y.max()) + 1) + y


def mutual_information_discrete(x_ids, y_ids) -> float:
    r"""Plug-in mutual information in bits of paired samples:
    :math:`I(X;Y) = H(X) + H(Y) - H(X, Y)` (Cover & Thomas, eq. 2.45).

    ``x_ids``, ``y_ids``: [n] integer codes or labels, or [n, d] arrays with each row one symbol.
    """
    x, y = _symbols(x_ids, "x_ids"), _symbols(y_ids, "y_ids")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"x_ids and y_ids must have the same number of samples; got {x.shape[0]} and {y.shape[0]}")
    hx = _entropy_counts(np.bincount(x))
    hy = _entropy_counts(np.bincount(y))
    hxy = _entropy_counts(np.unique(_joint_codes(x, y), return_counts=True)[1])
    return max(hx + hy - hxy, 0.0)  # rounding can give -1e-16 for independent samples


def mutual_information_joint(p_xy) -> float:
    r"""Exact mutual information in bits of a joint distribution table p_xy[i, j] = P(X = i, Y = j):

    .. math:: I(X;Y) = \sum_{i,j} p_{ij} \log_2 \frac{p_{ij}}{p_{i\cdot}\, p_{\cdot j}}.

    Entries must be >= 0 and sum to 1 (within 1e-9). E.g. the binary symmetric channel with flip
    probability 0.1 and a uniform input gives 1 - H_2(0.1) = 0.531004 bits.
    """
    p = np.asarray(_to_numpy(p_xy), dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise ValueError(f"p_xy must be a 2-D table of probabilities >= 0; got shape {p.shape}")
    bad = ~(np.isfinite(p) & (p >= 0))
    if bad.any():
        i, j = np.unravel_index(int(np.argmax(bad)), p.shape)
        validate.nonnegative(f"p_xy[{i}, {j}]", float(p[i, j]))
    if abs(p.sum() - 1.0) > 1e-9:
        raise ValueError(f"p_xy must sum to 1; it sums to {p.sum()!r}")
    px, py = p.sum(axis=1, keepdims=True), p.sum(axis=0, keepdims=True)
    nz = p > 0
    return max(float((p[nz] * np.log2(p[nz] / (px * py)[nz])).sum()), 0.0)


def bin_activations(t, bins=30, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """Uniform binning of every coordinate of ``t`` ([n] or [n, d]) into integer bin indices.

    ``bins``: a number of equal bins over ``value_range`` (default: [min, max] of ``t``, all
    coordinates together, as in Shwartz-Ziv & Tishby 2017), or an increasing array of edges
    e_0 < ... < e_K giving K bins (as ``numpy.histogram``; the last bin is closed). Values outside
    the range go to the first / last bin. Returns an int array of ``t``'s shape with values 0..K-1.
    """
    x = np.asarray(_to_numpy(t), dtype=np.float64)
    if x.size == 0 or not np.all(np.isfinite(x)):
        raise ValueError("t must be a non-empty array of finite activations")
    if np.ndim(bins) == 0:
        bins = validate.positive_int("bins", bins)  # or an increasing array of edges
        lo, hi = (float(x.min()), float(x.max())) if value_range is None else map(float, value_range)
        if not hi >= lo:
            raise ValueError(f"value_range={value_range!r} must satisfy low <= high")
        if hi == lo:
            return np.zeros(x.shape, dtype=np.int64)
        inner = np.linspace(lo, hi, int(bins) + 1)[1:-1]
    else:
        edges = np.asarray(bins, dtype=np.float64).reshape(-1)
        if edges.size < 2 or not np.all(np.isfinite(edges)) or np.any(np.diff(edges) <= 0):
            raise ValueError("bins given as edges must be at least 2 finite, strictly increasing values")
        inner = edges[1:-1]
    return np.digitize(x, inner).astype(np.int64)


def mutual_information_binned(x, y, bins=30, *, y_bins=None,
                              value_range: tuple[float, float] | None = None) -> float:
    r"""Plug-in mutual information in bits between binned continuous ``x`` and ``y``.

    ``x``: [n] or [n, d] activations; each coordinate is binned by ``bin_activations(x, bins,
    value_range)`` and each row of bin indices is one symbol T. ``y``: discrete labels [n] (or rows)
    when ``y_bins`` is None, else continuous values binned with ``y_bins`` over their own range.
    Returns :math:`I(T; Y) = H(T) + H(Y) - H(T, Y)` of the binned samples (module docstring: plug-in
    bias, dependence on the binning).
    """
    tx = bin_activations(x, bins, value_range)
    ty = _to_numpy(y) if y_bins is None else bin_activations(y, y_bins)
    return mutual_information_discrete(tx, ty)


# ----------------------------------------------------------------------------- information plane

@dataclass(frozen=True, eq=False)
class InformationPlaneResult:
    """Binned information-plane coordinates: ``i_xt[e, l] = I(X; T_l)`` and ``i_ty[e, l] = I(T_l; Y)``
    in bits at epoch e for layer l; ``h_x`` = H(X), ``h_y`` = H(Y) (the ceilings of the two axes:
    I(X; T) <= H(X), I(T; Y) <= min(H(T), H(Y))); ``n_symbols[e, l]`` = distinct binned rows of T."""

    i_xt: np.ndarray
    i_ty: np.ndarray
    h_x: float
    h_y: float
    n_symbols: np.ndarray


def information_plane(activations_per_epoch: Sequence[Sequence], x_ids, y, bins=30,
                      value_range: tuple[float, float] | None = None) -> InformationPlaneResult:
    r"""Information-plane trajectory (Shwartz-Ziv & Tishby 2017; Saxe et al. 2018).

    ``activations_per_epoch[e][l]``: the [n, d_l] activations of layer l on the n inputs at epoch e.
    ``x_ids``: [n] identity of each input (e.g. ``arange(n)`` or the integer code of a binary
    input pattern); ``y``: [n] labels. Each T_l is binned with ``bin_activations(T, bins,
    value_range)`` (``value_range=None``: each array's own [min, max]; pass e.g. (-1, 1) for tanh
    to bin on a fixed grid) and
    :math:`I(X;T) = H(X) + H(T) - H(X,T)`, :math:`I(T;Y) = H(T) + H(Y) - H(T,Y)` (plug-in, bits).
    """
    epochs = [list(layers) for layers in activations_per_epoch]
    binned = [[bin_activations(t, bins, value_range) for t in layers] for layers in epochs]
    return _plane(binned, x_ids, y)


def _plane(binned: list[list[np.ndarray]], x_ids, y) -> InformationPlaneResult:
    xs, ys = _symbols(x_ids, "x_ids"), _symbols(y, "y")
    n = xs.shape[0]
    if ys.shape[0] != n:
        raise ValueError(f"x_ids and y must have the same length; got {n} and {ys.shape[0]}")
    if not binned or any(len(layers) != len(binned[0]) or not layers for layers in binned):
        raise ValueError("activations_per_epoch must be a non-empty list of equally long, non-empty lists of layers")
    shape = (len(binned), len(binned[0]))
    i_xt, i_ty, n_sym = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64)
    for e, layers in enumerate(binned):
        for l, tb in enumerate(layers):
            if tb.shape[0] != n:
                raise ValueError(f"activations_per_epoch[{e}][{l}] has {tb.shape[0]} rows; expected {n}")
            ts = _symbols(tb, "t")
            n_sym[e, l] = int(ts.max()) + 1
            i_xt[e, l] = mutual_information_discrete(xs, ts)
            i_ty[e, l] = mutual_information_discrete(ts, ys)
    return InformationPlaneResult(i_xt=i_xt, i_ty=i_ty, h_x=entropy_discrete(xs), h_y=entropy_discrete(ys),
                                  n_symbols=n_sym)


class InformationPlane:
    """Recorder for a training loop: ``ip = InformationPlane(x_ids, y, bins=30)``, then
    ``ip.record([T_1, ..., T_L])`` once per epoch, and ``ip.result()`` for the
    ``InformationPlaneResult`` (same numbers as ``information_plane``). Stores bin indices only."""

    def __init__(self, x_ids, y, bins=30, value_range: tuple[float, float] | None = None):
        self._x, self._y = x_ids, y
        self._bins, self._range = bins, value_range
        self._binned: list[list[np.ndarray]] = []

    def record(self, activations: Sequence) -> None:
        self._binned.append([bin_activations(t, self._bins, self._range) for t in activations])

    def result(self) -> InformationPlaneResult:
        if not self._binned:
            raise ValueError("no epoch recorded yet: call record(activations) first")
        return _plane(self._binned, self._x, self._y)
