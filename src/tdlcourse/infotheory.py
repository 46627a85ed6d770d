"""Entropy and mutual information of discrete and binned variables; information planes.

For chapter 12, the information bottleneck: known channels (the k-ary symmetric channel, Markov
chains and the data-processing inequality), the binned estimator, information planes of every layer
of a network over training (``record_activations`` then ``information_planes`` under several bin
counts) and the compression after the peak of I(X;T) (``compression_fraction``).

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
    "InformationPlaneResult", "markov_chain_information", "symmetric_channel_information", "channel_check",
    "ChannelCheck", "record_activations", "ActivationTrace", "information_planes", "PlaneSweep",
    "compression_fraction", "Compression", "binned_entropy",
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
        bins = validate.integer("bins", bins, lo=2)  # or an increasing array of edges; one bin carries no information
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


def binned_entropy(t, bins=30) -> float:
    r"""Plug-in entropy in bits of the binned rows of ``t`` ([n] or [n, d]): every coordinate is cut
    into ``bins`` (an integer >= 2) equal bins over [min, max] of ``t`` (all coordinates together),
    each row of bin indices is one symbol, :math:`H(T_{\rm bin}) = -\sum_s \hat p(s) \log_2 \hat p(s)`.

    For a deterministic network on n distinct inputs this is the binned I(X; T): T_bin is a function of
    X, so I(X; T_bin) = H(T_bin) - H(T_bin | X) = H(T_bin) (Saxe et al. 2018, sec. 2).
    """
    bins = validate.integer("bins", bins, lo=2)
    return entropy_discrete(bin_activations(t, bins))


# ----------------------------------------------------------------------------- known channels

def _distribution(name: str, p, ndim: int) -> np.ndarray:
    """``p`` as float64 with entries >= 0 summing to 1 along its last axis (each row, for a channel)."""
    a = np.asarray(_to_numpy(p), dtype=np.float64)
    if a.ndim != ndim or a.size == 0:
        raise ValueError(f"{name} must be a non-empty {ndim}-D array of probabilities; got shape {a.shape}")
    bad = ~(np.isfinite(a) & (a >= 0))
    if bad.any():
        idx = np.unravel_index(int(np.argmax(bad)), a.shape)
        validate.nonnegative(f"{name}[{', '.join(map(str, idx))}]", float(a[idx]))
    sums = a.sum(axis=-1)
    off = np.abs(sums - 1.0) > 1e-9
    if off.any():
        where = "" if ndim == 1 else f" row {int(np.argmax(off))}"
        raise ValueError(f"{name}{where} must sum to 1 (within 1e-9); it sums to {float(sums.reshape(-1)[np.argmax(off)])!r}")
    return a


def markov_chain_information(p_x, w_xy, w_yz) -> tuple[float, float]:
    r"""(I(X;Y), I(X;Z)) in bits for the Markov chain X -> Y -> Z.

    ``p_x`` [k_x]: the input distribution; ``w_xy`` [k_x, k_y]: the channel w_xy[i, j] = P(Y=j | X=i);
    ``w_yz`` [k_y, k_z]: the channel P(Z=l | Y=j) (entries >= 0, each row summing to 1 within 1e-9).
    With :math:`p_{xy} = p_x(i)\, w_{xy}(i, j)` and :math:`p_{xz} = p_{xy} w_{yz}` (Z depends on X only
    through Y), returns ``(mutual_information_joint(p_xy), mutual_information_joint(p_xz))``; the
    data-processing inequality I(X;Z) <= I(X;Y) holds for every chain (Cover & Thomas, Thm 2.8.1).
    """
    px = _distribution("p_x", p_x, 1)
    wxy = _distribution("w_xy", w_xy, 2)
    wyz = _distribution("w_yz", w_yz, 2)
    if wxy.shape[0] != px.shape[0]:
        raise ValueError(f"w_xy has {wxy.shape[0]} rows, expected k_x = {px.shape[0]} (the length of p_x)")
    if wyz.shape[0] != wxy.shape[1]:
        raise ValueError(f"w_yz has {wyz.shape[0]} rows, expected k_y = {wxy.shape[1]} (the columns of w_xy)")
    p_xy = px[:, None] * wxy
    p_xz = p_xy @ wyz
    # renormalize the rounding of the sums (exact up to 1e-9 by the checks above)
    return mutual_information_joint(p_xy / p_xy.sum()), mutual_information_joint(p_xz / p_xz.sum())


def _h2(q: float) -> float:
    return 0.0 if q in (0.0, 1.0) else -(q * np.log2(q) + (1 - q) * np.log2(1 - q))


def symmetric_channel_information(k: int, q: float) -> float:
    r"""Mutual information in bits of the k-ary symmetric channel with a uniform input: the symbol is
    kept with probability 1 - q and otherwise replaced by one of the k - 1 others, uniformly:

    .. math:: I(X;Y) = \log_2 k - H_2(q) - q \log_2 (k - 1)

    (Cover & Thomas, sec. 7.1.5 and 7.2; k = 2 is the binary symmetric channel, 1 - H_2(q), which is
    0.531004 bits at q = 0.1). ``k`` >= 2, ``q`` in [0, 1].
    """
    k = validate.integer("k", k, lo=2)
    q = validate.probability("q", q)
    return float(np.log2(k) - _h2(q) - (q * np.log2(k - 1) if q > 0 else 0.0)) + 0.0


@dataclass(frozen=True)
class ChannelCheck:
    """The plug-in estimate of I(X;Y) from ``n`` sampled uses of a known channel against its exact value.

    ``estimate``: plug-in MI of the samples; ``exact``: the closed form; ``stderr``: the estimate's
    standard error, sqrt(Var[i(X;Y)] / n) with the information density i = log2 p(x,y)/(p(x)p(y))
    (delta method); ``bias``: the first-order plug-in bias (k^2 - 2k + 1) / (2 n ln 2) (Paninski 2003);
    ``z`` = (estimate - exact - bias) / stderr; ``ok``: |z| < 4."""

    k: int
    q: float
    n: int
    estimate: float
    exact: float
    stderr: float
    bias: float
    z: float
    ok: bool


def channel_check(q: float, n: int, *, k: int = 2, seed: int = 0) -> ChannelCheck:
    """Sample n uses of the k-ary symmetric channel with flip probability ``q`` and a uniform input
    (``symmetric_channel_information``), estimate I(X;Y) with ``mutual_information_discrete``, and
    compare with the closed form within its standard error (``ChannelCheck``). ``q`` in (0, 1)."""
    k = validate.integer("k", k, lo=2)
    q = validate.in_interval("q", q, 0.0, 1.0, closed="neither")
    n = validate.integer("n", n, lo=2)
    rng = np.random.default_rng(seed)
    x = rng.integers(0, k, n)
    flip = rng.random(n) < q
    y = np.where(flip, (x + rng.integers(1, k, n)) % k, x)  # a uniform wrong symbol when flipped
    exact = symmetric_channel_information(k, q)
    # information density: log2(k (1 - q)) when kept, log2(k q / (k - 1)) when flipped
    dens = np.array([np.log2(k * (1 - q)), np.log2(k * q / (k - 1))])
    var = (1 - q) * dens[0] ** 2 + q * dens[1] ** 2 - exact ** 2
    stderr = float(np.sqrt(max(var, 0.0) / n))
    bias = (k * k - 2 * k + 1) / (2 * n * np.log(2))
    est = mutual_information_discrete(x, y)
    z = (est - exact - bias) / stderr if stderr > 0 else 0.0
    return ChannelCheck(k=k, q=q, n=n, estimate=est, exact=exact, stderr=stderr, bias=float(bias), z=float(z),
                        ok=bool(abs(z) < 4))


# ----------------------------------------------------------------------------- training traces

@dataclass(frozen=True, eq=False)
class ActivationTrace:
    """Every layer's activations over training, for K models of one MLP architecture.

    ``steps[e]``: the training step of record e (0 = before training); ``layers[l]``: float32 array
    [K, E, n, d_l] of layer l's activations on the n recording inputs; ``names[l]``: e.g. ``"tanh 1"``
    ... and ``"output"`` (softmax probabilities, or logits); ``histories``: the K training histories
    (``fit_ensemble``), whose ``train_acc`` / ``test_acc`` are recorded at every step."""

    steps: np.ndarray
    layers: tuple[np.ndarray, ...]
    names: tuple[str, ...]
    histories: list


def _mlp_plan(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """(``"linear"``, index) / (``"act"``, module) steps of a plain Sequential MLP; ValueError otherwise."""
    if not isinstance(model, torch.nn.Sequential):
        raise ValueError("models must be nn.Sequential MLPs (Linear layers and elementwise activations, as "
                         "tdlcourse.models.mlp builds)")
    plan = []
    for i, m in enumerate(model):
        if isinstance(m, torch.nn.Linear):
            plan.append(("linear", str(i)))
        elif isinstance(m, torch.nn.Flatten) and i == 0:
            continue
        elif len(list(m.parameters())) == 0 and not list(m.children()):
            plan.append(("act", m))
        else:
            raise ValueError(f"module {i} ({type(m).__name__}) is not a Linear layer or an elementwise activation")
    if plan[-1][0] != "linear":
        raise ValueError("the MLP must end with a Linear layer (the logits)")
    return plan


@torch.no_grad()
def _stacked_layers(plan, params: dict[str, torch.Tensor], x: torch.Tensor, output: str) -> list[torch.Tensor]:
    """Activations [K, n, d_l] after every activation module, and the output, for stacked params [K, ...]."""
    k = next(iter(params.values())).shape[0]
    h = x.reshape(x.shape[0], -1).unsqueeze(0).expand(k, -1, -1)
    outs = []
    for kind, what in plan:
        if kind == "linear":
            w, b = params[f"{what}.weight"], params.get(f"{what}.bias")
            h = torch.bmm(h, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
        else:
            h = what(h)
            outs.append(h)
    outs.append(torch.softmax(h, dim=-1) if output == "softmax" else h)
    return outs


def record_activations(models: Sequence[torch.nn.Module], data, x, record_steps: Sequence[int], *,
                       output: str = "softmax", **fit_kwargs) -> ActivationTrace:
    """Train K models of one MLP architecture in one ``fit_ensemble`` run and keep the activations of
    every hidden layer (after its nonlinearity) and of the output on the inputs ``x`` at the training
    steps ``record_steps`` (0 = the initial network; increasing, at most the number of steps).

    The raw material of an information plane (Shwartz-Ziv & Tishby 2017 record every layer over
    training, at log-spaced epochs). ``output``: ``"softmax"`` (probabilities, in [0, 1]) or
    ``"logits"``. ``fit_kwargs`` go to ``fit_ensemble`` (``steps`` or ``epochs``, ``lr``, ``optimizer``,
    ...) except ``eval_every`` and ``callbacks``, which this function sets (evaluation every step, so
    the accuracies are known at every recorded step). The models are trained in place, as by
    ``fit_ensemble``.
    """
    from .train import fit_ensemble  # train imports data; keep infotheory light

    validate.one_of("output", output, ("softmax", "logits"))
    for key in ("eval_every", "callbacks"):
        if key in fit_kwargs:
            raise ValueError(f"{key} is set by record_activations (evaluation at every step); do not pass it")
    models = list(models)
    if not models:
        raise ValueError("models is empty; give at least one nn.Sequential MLP")
    plan = _mlp_plan(models[0])
    steps = [validate.nonnegative_int(f"record_steps[{i}]", s) for i, s in enumerate(record_steps)]
    if not steps or any(b <= a for a, b in zip(steps, steps[1:])):
        raise ValueError(f"record_steps must be a non-empty, strictly increasing list of steps; got {list(record_steps)!r}")
    p0 = next(models[0].parameters())
    xr = torch.as_tensor(x, dtype=p0.dtype, device=p0.device)
    names = [n for n, p in models[0].named_parameters()]
    wanted = set(steps)
    records: dict[int, list[np.ndarray]] = {}

    def keep(step: int, params: dict[str, torch.Tensor]) -> None:
        if step in wanted:
            records[step] = [t.float().cpu().numpy() for t in _stacked_layers(plan, params, xr, output)]

    keep(0, {n: torch.stack([m.get_parameter(n).detach() for m in models]) for n in names})

    def callback(step, params, histories):
        keep(step, params)
        return step >= steps[-1]  # stop once the last record is taken

    res = fit_ensemble(models, data, eval_every=1, callbacks=[callback], **fit_kwargs)
    missing = [s for s in steps if s not in records]
    if missing:
        raise ValueError(f"record_steps {missing} were never reached (the run took "
                         f"{max(len(h.step) for h in res.histories)} steps, or a model diverged)")
    layers = tuple(np.stack([records[s][l] for s in steps], axis=1) for l in range(len(records[steps[0]])))
    acts = [type(what).__name__.lower() for kind, what in plan if kind == "act"]
    labels = tuple(f"{a} {i + 1}" for i, a in enumerate(acts)) + ("output",)
    return ActivationTrace(steps=np.asarray(steps, dtype=np.int64), layers=layers, names=labels,
                           histories=res.histories)


# ----------------------------------------------------------------------------- information planes, compression

@dataclass(frozen=True, eq=False)
class PlaneSweep:
    """Binned information planes of an ``ActivationTrace`` under several bin counts.

    ``i_xt[b, k, e, l] = I(X; T_l)`` and ``i_ty[b, k, e, l] = I(T_l; Y)`` in bits, for bin count
    ``bins[b]``, model k, record e (step ``steps[e]``) and layer l (``names[l]``); ``n_symbols`` the
    distinct binned rows; ``h_x`` = H(X), ``h_y`` = H(Y) (the axes' ceilings)."""

    bins: tuple[int, ...]
    steps: np.ndarray
    names: tuple[str, ...]
    i_xt: np.ndarray
    i_ty: np.ndarray
    n_symbols: np.ndarray
    h_x: float
    h_y: float


def _layer_ranges(value_range, n_layers: int) -> list:
    if value_range is None or isinstance(value_range, str) or (
            len(value_range) == 2 and all(np.ndim(v) == 0 and not isinstance(v, str) for v in value_range)):
        entries = [value_range] * n_layers
    else:
        entries = list(value_range)
        if len(entries) != n_layers:
            raise ValueError(f"value_range holds {len(entries)} entries; expected one per layer ({n_layers})")
    for i, r in enumerate(entries):
        if isinstance(r, str):
            validate.one_of(f"value_range[{i}]", r, ("run", "epoch"))
        elif r is not None and not (len(r) == 2 and float(r[1]) >= float(r[0])):
            raise ValueError(f"value_range[{i}]={r!r} must be 'run', 'epoch', None or (low, high) with low <= high")
    return entries


def _row_codes(binned: np.ndarray, nb: int) -> np.ndarray:
    """One integer per row of bin indices (equal rows <=> equal codes): a mixed-radix code, re-mapped to
    0..m-1 whenever the next digit could overflow int64 (much faster than ``np.unique(axis=0)``)."""
    rows = binned.reshape(binned.shape[0], -1)
    code = np.zeros(rows.shape[0], dtype=np.int64)
    for col in rows.T:
        if int(code.max()) >= (2 ** 62) // nb:
            code = np.unique(code, return_inverse=True)[1].reshape(-1).astype(np.int64)
        code = code * nb + col
    return code


def information_planes(trace: ActivationTrace, x_ids, y, bins: Sequence[int] = (10, 30, 100),
                       value_range="run") -> PlaneSweep:
    r"""I(X; T_l) and I(T_l; Y) of every model, record and layer of ``trace``, for each bin count.

    Every coordinate of T_l is cut into ``bins[b]`` equal bins (``bin_activations``) over a range set
    by ``value_range``: ``"run"`` (default) the [min, max] of that model's layer over all records, so
    one grid serves the whole run (Saxe et al. 2018 bin ReLU layers up to their largest activation
    over training); ``"epoch"`` or None: each record's own [min, max]; a pair (low, high): a fixed
    grid (Shwartz-Ziv & Tishby 2017 use [-1, 1] for tanh); or a list with one such entry per layer.
    Then :math:`I(X;T) = H(X) + H(T) - H(X,T)` and :math:`I(T;Y) = H(T) + H(Y) - H(T,Y)` (plug-in,
    ``information_plane``). ``x_ids``: [n] identity of each recording input; ``y``: its [n] labels.
    Each bin count must be an integer >= 2.
    """
    bins = tuple(validate.integer(f"bins[{i}]", b, lo=2) for i, b in enumerate(np.atleast_1d(bins).tolist()))
    if not bins:
        raise ValueError("bins must hold at least one bin count >= 2")
    n_layers = len(trace.layers)
    ranges = _layer_ranges(value_range, n_layers)
    k, n_rec = trace.layers[0].shape[:2]
    shape = (len(bins), k, n_rec, n_layers)
    i_xt, i_ty, n_sym = np.zeros(shape), np.zeros(shape), np.zeros(shape, dtype=np.int64)
    h_x = h_y = 0.0
    for b, nb in enumerate(bins):
        for j in range(k):
            binned = [[None] * n_layers for _ in range(n_rec)]
            for l, t in enumerate(trace.layers):
                r = ranges[l]
                if r == "run":
                    r = (float(t[j].min()), float(t[j].max()))
                elif r == "epoch":
                    r = None
                for e in range(n_rec):
                    binned[e][l] = _row_codes(bin_activations(t[j, e], nb, r), nb)
            res = _plane(binned, x_ids, y)
            i_xt[b, j], i_ty[b, j], n_sym[b, j] = res.i_xt, res.i_ty, res.n_symbols
            h_x, h_y = res.h_x, res.h_y
    return PlaneSweep(bins=bins, steps=np.asarray(trace.steps), names=tuple(trace.names), i_xt=i_xt, i_ty=i_ty,
                      n_symbols=n_sym, h_x=h_x, h_y=h_y)


@dataclass(frozen=True, eq=False)
class Compression:
    """The compression phase of I(X;T) trajectories (arrays over the leading axes of the input).

    ``peak`` = max over the records, ``peak_index`` its first position, ``initial`` and ``final`` the
    first and last records, ``rise`` = peak - initial (bits), ``fraction`` = (peak - final) / peak
    (0 where peak = 0): the share of the peak lost by the end of training."""

    fraction: np.ndarray
    peak: np.ndarray
    peak_index: np.ndarray
    initial: np.ndarray
    final: np.ndarray
    rise: np.ndarray


def compression_fraction(i_xt) -> Compression:
    r"""Compression after the peak of I(X;T) along the last axis (the records of training):

    .. math:: c = \frac{\max_e I_e - I_{E}}{\max_e I_e},

    with I_e = I(X; T) at record e = 1..E (E the last). c = 0: no compression (the peak is at the end);
    c = 1: all the information is lost. Shwartz-Ziv & Tishby 2017 call the fall after the peak the
    compression phase; Saxe et al. 2018 find it with tanh (double-sided saturation) and not with
    ReLU. ``i_xt``: [..., E] with E >= 1, finite and >= 0 (e.g. ``PlaneSweep.i_xt`` moved so the records
    are last).
    """
    a = np.asarray(_to_numpy(i_xt), dtype=np.float64)
    if a.ndim == 0 or a.shape[-1] == 0 or not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"i_xt must be an array [..., E] (E >= 1) of finite informations >= 0; got shape {a.shape}")
    peak = a.max(axis=-1)
    final = a[..., -1]
    frac = np.divide(peak - final, peak, out=np.zeros_like(peak), where=peak > 0)
    return Compression(fraction=frac, peak=peak, peak_index=a.argmax(axis=-1), initial=a[..., 0], final=final,
                       rise=peak - a[..., 0])
