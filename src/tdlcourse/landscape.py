"""Loss landscapes: random and filter-normalised directions, 1-D/2-D loss surfaces, straight-line
interpolation, mode connectivity along Bezier curves and trajectory PCA.

Notation (of chapter 10, loss landscapes): theta in R^P is the trained point (layout and data convention in
``tdlcourse._functional``), L the loss of the data. A 2-D surface is
L(alpha, beta) = L(theta + alpha d_1 + beta d_2) on an odd-sized grid centred so that
(alpha, beta) = (0, 0) is exactly theta (Li, Xu, Taylor, Studer & Goldstein 2018).

Every function works through ``torch.func.functional_call`` on given parameter vectors, so any
architecture works and the user's model is never modified (``mode`` as in ``curvature``).

References: Goodfellow, Vinyals & Saxe (2015) linear interpolation; Li et al. (2018) filter
normalisation and trajectory PCA; Garipov, Izmailov, Podoprikhin, Vetrov & Wilson (2018) and
Draxler et al. (2018) mode connectivity.
"""

from __future__ import annotations

import copy
import warnings
from dataclasses import dataclass
from typing import Callable, Sequence

import torch
from torch import nn
from torch.func import vmap

from .curvature import hessian_eigs
from ._functional import (call, Batches, ParamSpec, batch_size, check_loss, check_mode, flat_params,
                          functional_loss, param_spec, use_mode)
from .validate import in_interval, integer, nonnegative, number, one_of, positive, positive_int

NORMALIZATIONS = ("filter", "layer", "none")
IGNORABLE = ("bias", "bn")
_NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm,
                nn.modules.instancenorm._InstanceNorm)

__all__ = ["random_directions", "Surface1D", "Surface2D", "surface_1d", "surface_2d", "interpolate",
           "BezierCurve", "train_bezier", "evaluate_curve", "TrajectoryPCA", "trajectory_pca", "path_barrier",
           "ConvexityMap", "convexity_map"]


@dataclass(frozen=True)
class Surface1D:
    """Losses along a path: ``losses[i] = L(path(alphas[i]))`` (float64 CPU tensors)."""

    alphas: torch.Tensor
    losses: torch.Tensor


@dataclass(frozen=True)
class Surface2D:
    """``losses[i, j] = L(theta + alphas[i] d_1 + betas[j] d_2)`` (float64 CPU tensors, "ij" indexing).

    The grid is odd-sized and symmetric, ``alphas[c] = betas[c'] = 0`` exactly at the centre.
    """

    alphas: torch.Tensor
    betas: torch.Tensor
    losses: torch.Tensor

    @property
    def center(self) -> tuple[int, int]:
        return len(self.alphas) // 2, len(self.betas) // 2


# ---------------------------------------------------------------------------------- directions

def random_directions(model: nn.Module, n: int = 2, *, normalization: str = "filter",
                      ignore: Sequence[str] = ("bias", "bn"), seed: int = 0) -> torch.Tensor:
    """``n`` random Gaussian directions in parameter space, shape ``(n, P)`` (theta layout).

    ``normalization="filter"`` (Li et al. 2018, eq. in Sec. 4): every filter d_{i,j} (slice j along
    dim 0 of parameter tensor i: an output channel of a conv, an output row of a linear layer, an
    entry of a 1-D tensor) is rescaled to the norm of the same filter of theta,
    d_{i,j} <- d_{i,j} ||theta_{i,j}|| / ||d_{i,j}||. ``"layer"`` rescales each parameter tensor as a
    whole; ``"none"`` keeps the raw N(0, 1) entries. ``ignore`` zeroes biases (``"bias"``: parameters
    named ``*bias``) and normalisation-layer parameters (``"bn"``: BatchNorm, LayerNorm, GroupNorm,
    InstanceNorm), as Li et al. do with ``ignore='biasbn'``. Directions are drawn on the CPU from
    ``seed`` (the same on every device) and returned on the parameters' device and dtype.
    """
    n, normalization = positive_int("n", n), one_of("normalization", normalization, NORMALIZATIONS)
    ignore = (ignore,) if isinstance(ignore, str) else tuple(ignore)
    for j, entry in enumerate(ignore):
        one_of(f"ignore[{j}]", entry, IGNORABLE)
    spec = param_spec(model)
    params = dict(model.named_parameters())
    norm_params = {f"{mn}.{pn}" if mn else pn for mn, m in model.named_modules() if isinstance(m, _NORM_LAYERS)
                   for pn, _ in m.named_parameters(recurse=False)}
    gen = torch.Generator().manual_seed(seed)
    out = torch.randn(n, spec.n, generator=gen, dtype=torch.float64)
    parts = spec.unflatten(out)
    for name in spec.names:
        d = parts[name]  # (n, *shape) view into out
        w = params[name].detach().to("cpu", torch.float64)
        if ("bias" in ignore and name.split(".")[-1] == "bias") or ("bn" in ignore and name in norm_params):
            d.zero_()
        elif normalization == "filter":
            wf = w.reshape(w.shape[0], -1) if w.ndim else w.reshape(1, 1)
            df = d.reshape(n, *wf.shape)
            df.mul_(wf.norm(dim=1)[None, :, None] / df.norm(dim=2, keepdim=True).clamp_min(1e-300))
        elif normalization == "layer":
            d.mul_(w.norm() / d.reshape(n, -1).norm(dim=1).clamp_min(1e-300).reshape(n, *[1] * w.ndim))
    return out.to(spec.device, spec.dtype)


def _check_directions(directions: torch.Tensor, spec: ParamSpec, count: int) -> torch.Tensor:
    if not isinstance(directions, torch.Tensor):
        raise ValueError(f"directions must be a tensor of shape ({count}, {spec.n}), got {type(directions).__name__}")
    d = directions.detach()
    if count == 1 and d.ndim == 1:
        d = d[None]
    if d.shape != (count, spec.n):
        raise ValueError(f"directions must have shape ({count}, {spec.n}) for this model "
                         f"(P = {spec.n} trainable parameters); got {tuple(directions.shape)}")
    if not torch.isfinite(d).all():
        raise ValueError("directions contain NaN or inf")
    return d.to(spec.device, spec.dtype)


# ------------------------------------------------------------------------------ grid evaluation

def _grid(span: float, steps: int, name: str) -> torch.Tensor:
    steps = integer(f"{name}steps", steps, lo=3)
    if steps % 2 == 0:
        raise ValueError(f"{name}steps={steps} must be odd, so that the grid has the trained point (0) at its centre")
    span = positive(f"{name}span", span)
    c = steps // 2
    # (i - c) * h: exactly 0 at the centre and exactly antisymmetric.
    return torch.arange(-c, c + 1, dtype=torch.float64) * (float(span) / c)


def _grid_2d(span, steps) -> tuple[torch.Tensor, torch.Tensor]:
    """The two axes of a 2-D grid: ``span`` and ``steps`` are one value or a pair (x, y)."""
    for name, val in (("span", span), ("steps", steps)):
        if isinstance(val, (tuple, list)) and len(val) != 2:
            raise ValueError(f"{name}={val!r} must be one value or a pair (x, y)")
    sx, sy = (span, span) if not isinstance(span, (tuple, list)) else tuple(span)
    nx, ny = (steps, steps) if not isinstance(steps, (tuple, list)) else tuple(steps)
    return _grid(sx, nx, "x-"), _grid(sy, ny, "y-")


def _default_chunk(device: torch.device) -> int:
    # Measured on CPU (benchmarks/README.md): a plain loop beats vmap over grid points (1.6 s vs
    # 2.4 s for a 21x21 grid of an MLP 784-256-256-10 on 2048 samples). On GPU small forwards are
    # launch-bound, so points are batched there (not measured yet: no GPU was available).
    return 16 if device.type == "cuda" else 1


_AFFINE_FIRST = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _affine_head(model: nn.Module, spec: ParamSpec):
    """``(first, n_head, rest)`` when ``model`` is a plain ``nn.Sequential`` whose first layer is a
    Linear/Conv with trainable weight and bias (its output is linear in them jointly), else None.

    Every point evaluated is a combination sum_k c_k theta_k of a few vectors (theta, d_1, d_2 for
    a surface; theta_a, theta_b for a line), so the first layer's output at the point is
    sum_k c_k first(x; theta_k): computed once per batch instead of once per point, which removes
    most of the work for MLPs and CNNs whose first layer dominates.
    """
    from torch.nn.modules import module as _m

    if type(model) is not nn.Sequential or len(model) < 2 or type(model[0]) not in _AFFINE_FIRST:
        return None
    first = model[0]
    hooks = [model._forward_hooks, model._forward_pre_hooks, first._forward_hooks, first._forward_pre_hooks,
             _m._global_forward_hooks, _m._global_forward_pre_hooks]
    if any(len(h) for h in hooks) or first.bias is None:
        return None
    if spec.names[:2] != ("0.weight", "0.bias"):  # both trainable and first in theta
        return None
    n_head = sum(spec.numels[:2])
    return first, n_head, model[1:]


def _combine(coefs: torch.Tensor, basis: torch.Tensor | list, out: torch.Tensor | None = None) -> torch.Tensor:
    # sum_k c_k b_k written so that c = (1, 0, ...) gives b_0 exactly (x + 0 * y == x).
    out = torch.mul(basis[0], float(coefs[0]), out=out)
    for c, b in zip(coefs[1:].tolist(), basis[1:]):
        out.add_(b, alpha=c)
    return out


def _evaluate(model: nn.Module, loss_fn: Callable, batch, mode: str | None, spec: ParamSpec, basis: torch.Tensor,
              coefs: torch.Tensor, chunk: int | None, buffers_at: Callable[[int], dict] | None = None,
              recalibrate=None, seed: int = 0) -> torch.Tensor:
    """Sample-weighted mean loss at the points theta_i = sum_k coefs[i, k] basis[k].

    Batches form the outer loop (one pass over a loader), points the inner one. Per-point buffers
    (``buffers_at``) and BatchNorm recalibration take the plain path; otherwise a first affine layer
    is shared (``_affine_head``, checked against the plain path on the first point) and ``chunk`` > 1
    evaluates that many points at once with ``vmap``.
    """
    check_mode(model, mode)
    chunk = _default_chunk(spec.device) if chunk is None else chunk
    try:
        chunk = positive_int("chunk", chunk)
    except ValueError as e:
        raise ValueError(f"{e} or None (the device's default)") from None
    batches = Batches(batch, spec.device)
    f = functional_loss(model, loss_fn, mode)
    n_points = coefs.shape[0]
    special = buffers_at is not None or recalibrate is not None
    head = None if special else _affine_head(model, spec)
    total = torch.zeros(n_points, dtype=torch.float64)
    count = 0
    buf = spec.zeros(min(chunk, n_points))
    with torch.no_grad():
        for bi, b in enumerate(batches):
            x, y = b
            nb = batch_size(b)
            if head is not None:
                first, n_head, rest = head
                rest_spec = ParamSpec(spec.names[2:], spec.shapes[2:], spec.device, spec.dtype)
                f_rest = functional_loss(rest, loss_fn, mode)
                head_params = [spec.unflatten(th) for th in basis]
                with use_mode(model, mode, seed + bi):
                    Z = torch.stack([torch.func.functional_call(
                        first, {"weight": p["0.weight"], "bias": p["0.bias"]}, (x,)) for p in head_params])
                rest_basis = basis[:, n_head:]
                rbuf = rest_spec.zeros(min(chunk, n_points))

                def head_loss(c, flat_rest, y=y, Z=Z):
                    return f_rest(rest_spec.unflatten(flat_rest), (_combine(c, Z), y))

                def head_loss_v(c, flat_rest, y=y, Z=Z):  # under vmap: c is a batched tensor
                    return f_rest(rest_spec.unflatten(flat_rest), (torch.tensordot(c, Z, dims=1), y))
            for s in range(0, n_points, chunk):
                e = min(s + chunk, n_points)
                with use_mode(model, mode, seed + bi):
                    if head is not None:
                        for i in range(s, e):
                            _combine(coefs[i], rest_basis, out=rbuf[i - s])
                        if e - s == 1:
                            vals = check_loss(head_loss(coefs[s], rbuf[0]), finite=False).reshape(1)
                        else:
                            vals = vmap(head_loss_v, randomness="same")(coefs[s:e].to(spec.device, spec.dtype),
                                                                        rbuf[:e - s])
                    else:
                        for i in range(s, e):
                            _combine(coefs[i], basis, out=buf[i - s])
                        if special:
                            vals = torch.empty(e - s, device=spec.device)
                            for i in range(s, e):
                                bufs = dict(buffers_at(i)) if buffers_at is not None else {}
                                if recalibrate is not None:
                                    bufs.update(_recalibrated_buffers(model, spec, buf[i - s], recalibrate))
                                vals[i - s] = check_loss(f(spec.unflatten(buf[i - s]), b, bufs), finite=False)
                        elif e - s == 1:
                            vals = check_loss(f(spec.unflatten(buf[0]), b), finite=False).reshape(1)
                        else:
                            vals = vmap(lambda p: f(p, b), randomness="same")(spec.unflatten(buf[:e - s]))
                    if vals.shape != (e - s,):
                        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(vals.shape[1:])}")
                total[s:e] += nb * vals.double().cpu()
                if head is not None and bi == 0 and s == 0:
                    # The shared first layer must reproduce the plain forward (else fall back).
                    with use_mode(model, mode, seed + bi):
                        plain = float(f(spec.unflatten(_combine(coefs[0], basis)), b))
                    fast = float(vals[0])
                    if not (abs(plain - fast) <= 1e-4 * max(1.0, abs(plain)) or (plain != plain and fast != fast)):
                        return _evaluate(model, loss_fn, batch, mode, spec, basis, coefs, chunk,
                                         buffers_at=lambda i: {}, seed=seed)
            count += nb
    if count == 0:
        raise ValueError("the data yielded no batches")
    return total / count


def _finish(losses: torch.Tensor, center: int | None) -> torch.Tensor:
    flat = losses.reshape(-1)
    if center is not None and not torch.isfinite(flat[center]):
        raise ValueError(f"the loss at the trained point is {float(flat[center])}")
    bad = int((~torch.isfinite(flat)).sum())
    if bad:
        warnings.warn(f"{bad} of {flat.numel()} grid points have a NaN/inf loss (kept as is)",
                      RuntimeWarning, stacklevel=3)
    return losses


def surface_1d(model: nn.Module, loss_fn: Callable, batch, direction: torch.Tensor, *, span: float = 1.0,
               steps: int = 51, mode: str | None = None, chunk: int | None = None) -> Surface1D:
    """L(alpha) = L(theta + alpha d) for alpha on an odd grid over [-span, span] centred at 0.

    ``direction`` has shape ``(P,)`` or ``(1, P)`` (e.g. ``random_directions(model, 1)``). The centre
    value is the loss of the model itself, exactly.
    """
    spec = param_spec(model)
    d = _check_directions(direction, spec, 1)
    alphas = _grid(span, steps, "")
    coefs = torch.stack([torch.ones_like(alphas), alphas], 1)
    basis = torch.cat([flat_params(model)[None], d])
    losses = _evaluate(model, loss_fn, batch, mode, spec, basis, coefs, chunk)
    return Surface1D(alphas=alphas, losses=_finish(losses, steps // 2))


def surface_2d(model: nn.Module, loss_fn: Callable, batch, directions: torch.Tensor, *,
               span: float | tuple[float, float] = 1.0, steps: int | tuple[int, int] = 21,
               mode: str | None = None, chunk: int | None = None) -> Surface2D:
    """L(alpha, beta) = L(theta + alpha d_1 + beta d_2) on a grid centred at theta (Li et al. 2018).

    ``directions`` has shape ``(2, P)``; ``span`` and ``steps`` are one value or one per axis; steps
    must be odd so that ``losses[center]`` is exactly the loss of the model (unlike a grid that
    starts at a corner and never contains the trained point). The grid is evaluated point by point
    with ``functional_call`` (``chunk`` > 1 evaluates that many points at once with ``vmap``;
    default 1 on CPU, where it measured faster, 16 on GPU). For a plain ``nn.Sequential`` starting
    with a Linear/Conv layer, that layer's output is computed once per batch for theta, d_1 and d_2
    and combined linearly at each point (``_affine_head``; 2.4x faster for an MLP on MNIST).
    """
    spec = param_spec(model)
    d = _check_directions(directions, spec, 2)
    alphas, betas = _grid_2d(span, steps)
    nx, ny = len(alphas), len(betas)
    A, B = torch.meshgrid(alphas, betas, indexing="ij")
    coefs = torch.stack([torch.ones(nx * ny, dtype=torch.float64), A.reshape(-1), B.reshape(-1)], 1)
    basis = torch.cat([flat_params(model)[None], d])
    losses = _evaluate(model, loss_fn, batch, mode, spec, basis, coefs, chunk).reshape(nx, ny)
    return Surface2D(alphas=alphas, betas=betas, losses=_finish(losses, (nx // 2) * ny + ny // 2))


# --------------------------------------------------------------------------- two-model paths

def _same_architecture(model_a: nn.Module, model_b: nn.Module) -> ParamSpec:
    sa, sb = param_spec(model_a), param_spec(model_b)
    if sa.names != sb.names or sa.shapes != sb.shapes:
        raise ValueError("model_a and model_b must have the same architecture (trainable parameter names and shapes)")
    return sa


def _bn_modules(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


def _recalibrated_buffers(model: nn.Module, spec: ParamSpec, flat: torch.Tensor, data) -> dict[str, torch.Tensor]:
    """BatchNorm running statistics recomputed at ``flat`` on ``data`` (Garipov et al. 2018).

    Each batch is passed in train mode starting from fresh statistics (mean 0, var 1), from which
    that batch's mean and unbiased variance are read back whatever the momentum; the result is their
    sample-weighted average over the data, as ``torch.optim.swa_utils.update_bn`` computes it.
    """
    bns = _bn_modules(model)
    if not bns:
        return {}
    params = spec.unflatten(flat)
    sums: dict[str, torch.Tensor] = {}
    count = 0
    with torch.no_grad():
        for i, (x, _) in enumerate(Batches(data, spec.device, name="recalibrate")):
            bufs = {}
            for name, m in bns:
                p = f"{name}." if name else ""
                bufs[p + "running_mean"] = torch.zeros_like(m.running_mean)
                bufs[p + "running_var"] = torch.ones_like(m.running_var)
                if m.num_batches_tracked is not None:
                    bufs[p + "num_batches_tracked"] = torch.zeros_like(m.num_batches_tracked)
            with use_mode(model, "train", i):
                call(model, (dict(params), bufs), (x,))
            nb = int(x.shape[0])
            for name, m in bns:
                p = f"{name}." if name else ""
                mom = 1.0 if m.momentum is None else float(m.momentum)
                mean = bufs[p + "running_mean"] / mom
                var = (bufs[p + "running_var"] - (1 - mom)) / mom
                sums[p + "running_mean"] = sums.get(p + "running_mean", 0) + nb * mean
                sums[p + "running_var"] = sums.get(p + "running_var", 0) + nb * var
            count += nb
    return {k: v / count for k, v in sums.items()}


def _interpolated_buffers(model_a: nn.Module, model_b: nn.Module, ts: torch.Tensor) -> Callable[[int], dict] | None:
    ba, bb = dict(model_a.named_buffers()), dict(model_b.named_buffers())
    if not any(v.is_floating_point() for v in ba.values()):
        return None

    def at(i: int) -> dict:
        t = float(ts[i])
        return {k: ((1 - t) * v + t * bb[k]) if v.is_floating_point() else v for k, v in ba.items() if k in bb}

    return at


def _ts(steps: int, lo: float, hi: float) -> torch.Tensor:
    steps, lo, hi = integer("steps", steps, lo=2), number("lo", lo), number("hi", hi)
    if not lo < hi:
        raise ValueError(f"the range (lo, hi) = ({lo!r}, {hi!r}) must have lo < hi")
    ts = torch.linspace(lo, hi, steps, dtype=torch.float64)
    for exact in (0.0, 1.0):  # the two end models lie on the grid exactly whenever they are in range
        ts[(ts - exact).abs() < 1e-9 * max(1.0, hi - lo)] = exact
    return ts


def interpolate(model_a: nn.Module, model_b: nn.Module, loss_fn: Callable, batch, *, steps: int = 21,
                lo: float = 0.0, hi: float = 1.0, mode: str | None = None, recalibrate=None) -> Surface1D:
    """L((1 - alpha) theta_a + alpha theta_b) along the straight line (Goodfellow et al. 2015).

    ``alpha`` runs over ``steps`` points of [lo, hi] (extrapolate with lo < 0 or hi > 1); alpha = 0 and
    1 give theta_a and theta_b exactly. Floating-point buffers (BatchNorm statistics) are interpolated
    the same way, unless ``recalibrate`` (data) is given: then they are recomputed at every point
    (Garipov et al. 2018), which is what a BatchNorm network needs in eval mode.
    """
    spec = _same_architecture(model_a, model_b)
    check_mode(model_b, mode)
    ts = _ts(steps, lo, hi)
    basis = torch.stack([flat_params(model_a), flat_params(model_b).to(spec.device)])
    coefs = torch.stack([1 - ts, ts], 1)
    losses = _evaluate(model_a, loss_fn, batch, mode, spec, basis, coefs, None,
                       buffers_at=_interpolated_buffers(model_a, model_b, ts), recalibrate=recalibrate)
    return Surface1D(alphas=ts, losses=_finish(losses, None))


# --------------------------------------------------------------------------- mode connectivity

@dataclass(frozen=True)
class BezierCurve:
    """Quadratic Bezier curve phi(t) = (1-t)^2 theta_a + 2t(1-t) theta_c + t^2 theta_b, t in [0, 1].

    ``train_losses`` is the training objective L(phi(t_s)) at each step's random t_s.
    """

    theta_a: torch.Tensor
    theta_c: torch.Tensor
    theta_b: torch.Tensor
    train_losses: torch.Tensor

    def point(self, t: float) -> torch.Tensor:
        """phi(t) as a flat vector; t = 0 and t = 1 give theta_a and theta_b exactly."""
        t = float(t)
        return (1 - t) ** 2 * self.theta_a + (2 * t * (1 - t)) * self.theta_c + t ** 2 * self.theta_b


def train_bezier(model_a: nn.Module, model_b: nn.Module, loss_fn: Callable, data, *, steps: int = 500,
                 lr: float = 0.05, momentum: float = 0.9, weight_decay: float = 0.0, mode: str | None = None,
                 seed: int = 0) -> BezierCurve:
    """Find a low-loss path between two solutions (Garipov et al. 2018, Sec. 3).

    Minimises E_{t ~ U(0,1)} L(phi_theta_c(t)) over the bend theta_c by SGD with momentum, one
    t ~ U(0, 1) and one batch (cycling through ``data``) per step, starting from the midpoint
    theta_c = (theta_a + theta_b)/2 (the straight line). Works for any architecture through
    functional calls; with BatchNorm train in ``mode="train"`` and evaluate with
    ``evaluate_curve(..., recalibrate=data)``.
    """
    spec = _same_architecture(model_a, model_b)
    check_mode(model_a, mode)
    steps, lr = positive_int("steps", steps), positive("lr", lr)
    momentum = in_interval("momentum", momentum, 0.0, 1.0, closed="left")
    weight_decay = nonnegative("weight_decay", weight_decay)
    ta, tb = flat_params(model_a), flat_params(model_b).to(spec.device)
    tc = ((ta + tb) / 2).requires_grad_()
    opt = torch.optim.SGD([tc], lr=lr, momentum=momentum, weight_decay=weight_decay)
    batches = Batches(data, spec.device, name="data")
    f = functional_loss(model_a, loss_fn, mode)
    gen = torch.Generator().manual_seed(seed)
    history = torch.empty(steps, dtype=torch.float64)
    it, s = iter(batches), 0
    while s < steps:
        try:
            b = next(it)
        except StopIteration:
            it = iter(batches)
            continue
        t = float(torch.rand((), generator=gen))
        with torch.enable_grad(), use_mode(model_a, mode, seed + s):
            phi = (1 - t) ** 2 * ta + (2 * t * (1 - t)) * tc + t ** 2 * tb
            loss = check_loss(f(spec.unflatten(phi), b), f"on the curve at t={t:.3f}, step {s}")
            opt.zero_grad()
            loss.backward()
        opt.step()
        history[s] = float(loss.detach())
        s += 1
    return BezierCurve(theta_a=ta, theta_c=tc.detach(), theta_b=tb, train_losses=history)


def evaluate_curve(model: nn.Module, curve: BezierCurve, loss_fn: Callable, batch, *, steps: int = 21,
                   mode: str | None = None, recalibrate=None) -> Surface1D:
    """L(phi(t)) at ``steps`` evenly spaced t in [0, 1]; ``model`` supplies the architecture only.

    ``recalibrate`` (data): recompute BatchNorm statistics at every t (Garipov et al. 2018); without
    it the model's own buffers are used.
    """
    spec = param_spec(model)
    if curve.theta_a.shape != (spec.n,):
        raise ValueError(f"the curve has {curve.theta_a.numel()} parameters, the model {spec.n}")
    ts = _ts(steps, 0.0, 1.0)
    basis = torch.stack([curve.theta_a, curve.theta_c, curve.theta_b]).to(spec.device, spec.dtype)
    coefs = torch.stack([(1 - ts) ** 2, 2 * ts * (1 - ts), ts ** 2], 1)
    losses = _evaluate(model, loss_fn, batch, mode, spec, basis, coefs, None, recalibrate=recalibrate)
    return Surface1D(alphas=ts, losses=_finish(losses, None))


# ----------------------------------------------------------------------------------- trajectory

@dataclass(frozen=True)
class TrajectoryPCA:
    """PCA of an optimisation trajectory (Li et al. 2018, Sec. 7).

    ``directions`` (k, P): orthonormal principal directions of the displacements theta_i - theta_T;
    ``explained_variance_ratio`` (k,); ``coordinates`` (T, k): (theta_i - theta_T) . d_k, so the final
    checkpoint ``center`` = theta_T sits at the origin of ``surface_2d(final_model, ..., directions)``.
    """

    directions: torch.Tensor
    explained_variance_ratio: torch.Tensor
    coordinates: torch.Tensor
    center: torch.Tensor


def trajectory_pca(checkpoints: Sequence[nn.Module | torch.Tensor], n_components: int = 2) -> TrajectoryPCA:
    """Principal directions of the displacements M = [theta_i - theta_T]_{i<T} from the final point.

    As in Li et al. (2018) the rows of M are centred (their mean removed) before the SVD
    M_c = U S V^T; the directions are the top rows of V^T and the explained variance ratio is
    S_k^2 / sum S^2. ``checkpoints`` are models of one architecture or flat parameter vectors.
    """
    if not isinstance(checkpoints, (list, tuple)) or len(checkpoints) < 3:
        raise ValueError("checkpoints must be a list of at least 3 models or flat parameter vectors")
    vecs = []
    for i, c in enumerate(checkpoints):
        if isinstance(c, nn.Module):
            vecs.append(flat_params(c))
        elif isinstance(c, torch.Tensor) and c.ndim == 1:
            vecs.append(c.detach())
        else:
            raise ValueError(f"checkpoints[{i}] must be an nn.Module or a 1-D tensor, got {type(c).__name__}")
    if len({v.shape for v in vecs}) != 1:
        raise ValueError("all checkpoints must have the same number of parameters")
    try:
        n_components = integer("n_components", n_components, lo=1, hi=len(vecs) - 2)
    except ValueError as e:
        raise ValueError(f"{e} for {len(vecs)} checkpoints") from None
    center = vecs[-1]
    M = torch.stack([v.to(center) - center for v in vecs[:-1]]).double()
    _, S, Vh = torch.linalg.svd(M - M.mean(0), full_matrices=False)
    dirs = Vh[:n_components]
    ratio = S[:n_components] ** 2 / (S ** 2).sum()
    coords = torch.cat([M, torch.zeros(1, M.shape[1], dtype=M.dtype, device=M.device)]) @ dirs.T
    return TrajectoryPCA(directions=dirs.to(center.dtype), explained_variance_ratio=ratio.cpu(),
                         coordinates=coords.cpu(), center=center.clone())


# --------------------------------------------------------------------- barriers and convexity (chapter 10)

def path_barrier(losses) -> float:
    """The loss barrier of a path: max_t L(t) - max(L(0), L(1)), from its profile ``losses`` (a
    ``Surface1D`` from ``interpolate``/``evaluate_curve``, or a 1-D sequence whose first and last
    entries are the two end points). 0 when the path never rises above its higher end (Garipov et al.
    2018; Draxler et al. 2018 measure the same "saddle" height)."""
    vals = losses.losses if isinstance(losses, Surface1D) else losses
    vals = vals.detach().cpu() if isinstance(vals, torch.Tensor) else vals
    v = torch.as_tensor(vals, dtype=torch.float64).reshape(-1)
    if v.numel() < 2 or not torch.isfinite(v).all():
        raise ValueError(f"losses must be a finite profile of at least 2 values; got {v.numel()} values"
                         + ("" if torch.isfinite(v).all() else " with NaN/inf"))
    return float(v.max() - torch.maximum(v[0], v[-1]))


@dataclass(frozen=True)
class ConvexityMap:
    """Li et al.'s (2018, Sec. 6) convexity measure on a 2-D grid: at theta + alphas[i] d_1 + betas[j] d_2
    the Hessian's extreme eigenvalues ``lambda_max[i, j]``, ``lambda_min[i, j]`` and
    ``ratio[i, j]`` = |lambda_min / lambda_max| (0: no negative curvature to speak of; near 1 or above:
    as curved downwards as upwards). ``ratio_error`` bounds the error of each ratio from the Lanczos
    error bounds (first order); ``converged[i, j]`` is Lanczos' flag. Float64 CPU tensors, "ij" indexing.
    """

    alphas: torch.Tensor
    betas: torch.Tensor
    lambda_max: torch.Tensor
    lambda_min: torch.Tensor
    ratio: torch.Tensor
    ratio_error: torch.Tensor
    converged: torch.Tensor

    @property
    def mean_ratio(self) -> float:
        """The ratio averaged over the grid (one number to compare two landscapes)."""
        return float(self.ratio.mean())


def convexity_map(model: nn.Module, loss_fn: Callable, batch, directions: torch.Tensor, *,
                  span: float | tuple[float, float] = 1.0, steps: int | tuple[int, int] = 9, tol: float = 1e-2,
                  mode: str | None = None, seed: int = 0, max_steps: int | None = None,
                  block_size: int = 2) -> ConvexityMap:
    """|lambda_min / lambda_max| of H = nabla^2 L at every point of the grid of ``surface_2d`` (same
    ``directions``, ``span``, odd ``steps``), the map Li et al. (2018, Sec. 6) draw to show where a
    filter-normalized surface is convex (ratio near 0) and where it only looks so in 2-D.

    Each point's two extreme eigenvalues come from one block Lanczos run (``curvature.hessian_eigs``
    with ``which="both"``, tolerance ``tol`` relative to max |Ritz value|) on a private copy of
    ``model`` (the user's is never modified). The block of ``block_size`` = 2 start vectors is there
    because a single vector can stop on a converged Ritz value that is not the extreme one (seen in
    the tests: lambda_min -0.175 instead of -0.183 on a 51-parameter MLP; blocks of 2 found the dense
    Hessian's extremes at every point). With bounds e_max, e_min on the two eigenvalues the ratio's error
    is at most (e_min + ratio * e_max) / (|lambda_max| - e_max) to first order (``ratio_error``).
    Points where Lanczos did not converge are flagged in ``converged`` and reported in one
    ``RuntimeWarning``. Cost: one Lanczos run per grid point, so keep grids small (9 x 9).
    """
    spec = param_spec(model)
    d = _check_directions(directions, spec, 2)
    alphas, betas = _grid_2d(span, steps)
    nx, ny = len(alphas), len(betas)
    tol = in_interval("tol", tol, 0.0, 1.0, closed="neither")
    check_mode(model, mode)
    theta = flat_params(model)
    work = copy.deepcopy(model)
    lam_max = torch.empty(nx, ny, dtype=torch.float64)
    lam_min, err = torch.empty_like(lam_max), torch.empty_like(lam_max)
    conv = torch.empty(nx, ny, dtype=torch.bool)
    for i, a in enumerate(alphas.tolist()):
        for j, b in enumerate(betas.tolist()):
            with torch.no_grad():
                point = theta + a * d[0] + b * d[1]
                for name, v in spec.unflatten(point).items():
                    work.get_parameter(name).copy_(v)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # summarised below
                res = hessian_eigs(work, loss_fn, batch, k=1, which="both", tol=tol, mode=mode, seed=seed,
                                   max_steps=max_steps, block_size=block_size)
            hi, lo = (float(x) for x in res.eigenvalues)
            e_hi, e_lo = (float(x) for x in res.error_bounds)
            lam_max[i, j], lam_min[i, j], conv[i, j] = hi, lo, bool(res.converged)
            r = abs(lo / hi) if hi != 0 else float("inf")
            err[i, j] = (e_lo + r * e_hi) / max(abs(hi) - e_hi, 1e-300)
    bad = int((~conv).sum())
    if bad:
        warnings.warn(f"convexity_map: Lanczos did not converge at {bad} of {conv.numel()} grid points "
                      "(flagged in .converged); raise max_steps or tol", RuntimeWarning, stacklevel=2)
    ratio = (lam_min / lam_max).abs()
    return ConvexityMap(alphas=alphas, betas=betas, lambda_max=lam_max, lambda_min=lam_min, ratio=ratio,
                        ratio_error=err, converged=conv)
