"""Shared helpers for functional calls on a user's model without touching it.

Conventions used by ``curvature`` and ``landscape`` (stated once, here):

* **Parameters.** theta is the vector of the model's trainable parameters (``requires_grad=True``)
  concatenated in ``model.named_parameters()`` order, each flattened row-major. ``ParamSpec``
  converts between this flat vector and a ``{name: tensor}`` dict. Frozen parameters and buffers
  are not part of theta; they are used as they are.
* **Data.** ``loss_fn(outputs, targets)`` returns a scalar. A batch is a pair ``(inputs, targets)``
  of tensors; data is one batch, a list/tuple of batches, or a re-iterable loader (e.g. a
  ``DataLoader``). The loss of several batches is the sample-weighted mean
  L(theta) = sum_b (n_b / N) L_b(theta), which is the full-data mean when ``loss_fn`` averages over
  its batch (the PyTorch default ``reduction="mean"``).
* **Modes.** ``mode="train"`` or ``"eval"`` says how BatchNorm and dropout behave. In train mode
  BatchNorm normalises with batch statistics and updates no running statistics, and dropout masks
  are drawn from a fixed seed, so that the loss is a deterministic function of theta. The modules'
  ``training`` flags are set only for the duration of a forward pass and restored exactly
  afterwards (also on error). ``mode=None`` uses the model as it is and is allowed only when the
  model has no BatchNorm or dropout layer, whose behaviour would silently depend on the mode the
  model was left in.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Mapping

import torch
from torch import nn
from torch.func import functional_call

from .validate import one_of

MODES = ("train", "eval")
_MODE_DEPENDENT = (nn.modules.batchnorm._BatchNorm, nn.modules.dropout._DropoutNd,
                   nn.modules.instancenorm._InstanceNorm)


@dataclass(frozen=True)
class ParamSpec:
    """Names, shapes, device and dtype of a model's trainable parameters (the layout of theta)."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]
    device: torch.device
    dtype: torch.dtype

    @property
    def numels(self) -> tuple[int, ...]:
        return tuple(math.prod(s) for s in self.shapes)

    @property
    def n(self) -> int:
        """Number of trainable parameters (the length of theta)."""
        return sum(self.numels)

    def unflatten(self, vec: torch.Tensor) -> dict[str, torch.Tensor]:
        """Split a flat ``(n,)`` vector (or a ``(b, n)`` stack) into ``{name: tensor}`` views."""
        if vec.shape[-1] != self.n:
            raise ValueError(f"vector has length {vec.shape[-1]}, the model has {self.n} trainable parameters")
        lead = vec.shape[:-1]
        parts = torch.split(vec, list(self.numels), dim=-1)
        return {name: p.reshape(tuple(lead) + tuple(shape)) for name, p, shape in zip(self.names, parts, self.shapes)}

    def flatten(self, tensors: Mapping[str, torch.Tensor] | Iterable[torch.Tensor]) -> torch.Tensor:
        """Concatenate per-parameter tensors (a dict keyed by name, or a sequence in order) to theta."""
        if isinstance(tensors, Mapping):
            tensors = [tensors[name] for name in self.names]
        return torch.cat([t.reshape(-1) for t in tensors])

    def zeros(self, *lead: int) -> torch.Tensor:
        return torch.zeros(*lead, self.n, device=self.device, dtype=self.dtype)


def param_spec(model: nn.Module) -> ParamSpec:
    """The ``ParamSpec`` of ``model``'s trainable parameters; all must share one device and dtype."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if not named:
        raise ValueError("model has no trainable parameters (none with requires_grad=True)")
    devices = {p.device for _, p in named}
    dtypes = {p.dtype for _, p in named}
    if len(devices) > 1 or len(dtypes) > 1:
        raise ValueError(f"model parameters must share one device and dtype; got devices {devices}, dtypes {dtypes}")
    if not named[0][1].is_floating_point():
        raise ValueError(f"model parameters must be floating point, got {named[0][1].dtype}")
    return ParamSpec(tuple(n for n, _ in named), tuple(p.shape for _, p in named),
                     named[0][1].device, named[0][1].dtype)


def flat_params(model: nn.Module) -> torch.Tensor:
    """theta: a detached copy of the model's trainable parameters as one flat vector."""
    spec = param_spec(model)
    with torch.no_grad():
        return spec.flatten({n: p for n, p in model.named_parameters() if p.requires_grad}).clone()


# ----------------------------------------------------------------------------------------- data

def _is_batch(x: Any) -> bool:
    return isinstance(x, (tuple, list)) and len(x) == 2 and all(isinstance(t, torch.Tensor) for t in x)


class Batches:
    """The data argument normalised: iterate to get ``(inputs, targets)`` pairs on ``device``.

    ``fixed`` is True for one batch or a list of batches (they can be cached), False for a loader
    (re-iterated on every pass).
    """

    def __init__(self, data: Any, device: torch.device, name: str = "batch"):
        self.device = device
        if _is_batch(data):
            self._items: list | None = [self._move(data)]
        elif isinstance(data, (tuple, list)):
            if len(data) == 0 or not all(_is_batch(b) for b in data):
                raise ValueError(f"{name} must be a pair (inputs, targets) of tensors, a non-empty list of such "
                                 "pairs, or a re-iterable loader yielding them")
            self._items = [self._move(b) for b in data]
        elif isinstance(data, Iterable) and not isinstance(data, (torch.Tensor, str, bytes, Mapping)):
            if iter(data) is data:
                raise ValueError(f"{name} is a one-shot iterator; pass a list of batches or a re-iterable loader")
            self._items = None
            self._loader = data
        else:
            raise ValueError(f"{name} must be a pair (inputs, targets) of tensors, a list of such pairs, "
                             f"or a loader; got {type(data).__name__}")

    def _move(self, b: Any) -> tuple[torch.Tensor, torch.Tensor]:
        if not _is_batch(b):
            raise ValueError(f"every batch must be a pair (inputs, targets) of tensors, got {type(b).__name__}")
        x, y = b
        if x.ndim == 0 or x.shape[0] == 0:
            raise ValueError(f"inputs must have a non-empty batch dimension, got shape {tuple(x.shape)}")
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    @property
    def fixed(self) -> bool:
        return self._items is not None

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        if self._items is not None:
            yield from self._items
        else:
            for b in self._loader:
                yield self._move(b)

    def __len__(self) -> int:
        if self._items is None:
            raise TypeError("the number of batches of a loader is known only after a pass")
        return len(self._items)


def batch_size(batch: tuple[torch.Tensor, torch.Tensor]) -> int:
    return int(batch[0].shape[0])


# ---------------------------------------------------------------------------------------- modes

def check_mode(model: nn.Module, mode: str | None) -> None:
    """Validate ``mode``; ``None`` is refused when the model has BatchNorm/dropout layers."""
    one_of("mode", mode, MODES + (None,))
    if mode is None:
        dep = [n or type(m).__name__ for n, m in model.named_modules() if isinstance(m, _MODE_DEPENDENT)]
        if dep:
            raise ValueError(
                f"the model has BatchNorm/dropout layers ({', '.join(dep[:4])}{', ...' if len(dep) > 4 else ''}) "
                "whose behaviour depends on the mode: pass mode='train' or mode='eval' explicitly")


@contextlib.contextmanager
def use_mode(model: nn.Module, mode: str | None, seed: int = 0):
    """Set every module's ``training`` flag for the block and restore each one exactly afterwards.

    In train mode the global RNG is forked and seeded so that dropout masks are the same on every
    call and the caller's RNG stream is left untouched.
    """
    if mode is None:
        yield
        return
    saved = [(m, m.training) for m in model.modules()]
    dev = next((p.device for p in model.parameters()), torch.device("cpu"))
    rng = (torch.random.fork_rng(devices=[dev] if dev.type == "cuda" else [])
           if mode == "train" else contextlib.nullcontext())
    try:
        with rng:
            if mode == "train":
                torch.manual_seed(seed)
            model.train(mode == "train")
            yield
    finally:
        for m, flag in saved:
            m.training = flag


def mode_buffers(model: nn.Module, mode: str | None) -> dict[str, torch.Tensor | None]:
    """Buffer overrides for ``functional_call``: in train mode BatchNorm gets no running stats.

    With ``running_mean = running_var = None`` BatchNorm normalises with batch statistics and writes
    nothing, so the user's buffers are never updated and the call stays a pure function of theta.
    """
    if mode != "train":
        return {}
    out: dict[str, torch.Tensor | None] = {}
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            for b in ("running_mean", "running_var", "num_batches_tracked"):
                if getattr(m, b, None) is not None:
                    out[f"{name}.{b}" if name else b] = None
    return out


# ----------------------------------------------------------------------------------------- loss

def check_loss(loss: Any, where: str = "", finite: bool = True) -> torch.Tensor:
    """Raise a clear ``ValueError`` for a non-tensor or non-scalar loss, and (``finite``) a NaN/inf one."""
    at = f" {where}" if where else ""
    if not isinstance(loss, torch.Tensor):
        raise ValueError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}")
    if loss.numel() != 1:
        raise ValueError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}"
                         " (use reduction='mean' or 'sum')")
    if finite and not torch.isfinite(loss.detach()).all():
        raise ValueError(f"the loss is {loss.item()}{at}: NaN/inf losses have no curvature or landscape")
    return loss.reshape(())


def tensor_aliases(model: nn.Module) -> dict[str, tuple[str, ...]] | None:
    """For a model that shares modules or tensors: each state name -> the names ``call`` must set.

    ``None`` when nothing is shared (the common case, where ``functional_call`` is exact). A module
    registered under several names is set once, under its first name; a tensor owned by several
    distinct modules (weight tying) is set in each of them. Any registered name maps to this list.
    """
    mods = list(model.named_modules(remove_duplicate=False))
    tensors = [t for _, m in mods for t in (*m._parameters.values(), *m._buffers.values()) if t is not None]
    if len(mods) == len({id(m) for _, m in mods}) and len(tensors) == len({id(t) for t in tensors}):
        return None
    owners: dict[int, list[str]] = {}  # tensor id -> its name in each distinct owning module
    names: dict[str, int] = {}  # every registered name -> tensor id
    seen: set[int] = set()
    for prefix, m in mods:
        first = id(m) not in seen
        seen.add(id(m))
        for local, t in (*m._parameters.items(), *m._buffers.items()):
            if t is None:
                continue
            name = f"{prefix}.{local}" if prefix else local
            names[name] = id(t)
            if first:
                owners.setdefault(id(t), []).append(name)
    return {name: tuple(owners[tid]) for name, tid in names.items()}


def call(model: nn.Module, tensors: Mapping[str, torch.Tensor] | tuple, args: tuple, *,
         strict: bool = False, aliases: dict[str, tuple[str, ...]] | None | str = "auto"):
    """``torch.func.functional_call`` that leaves a model with shared modules as it was.

    torch 2.13's ``functional_call`` swaps a tensor in once per name: a module registered twice
    (``nn.Sequential(lin, act, lin)``) is swapped twice and "restored" to the swapped tensor, so the
    user's model is left holding plain tensors instead of its Parameters. Setting each owning
    module once (``tensor_aliases``) with ``tie_weights=False`` is exact and restores everything.
    ``tensors`` is a dict or a tuple of dicts (parameters, buffers), as for ``functional_call``.
    """
    if isinstance(tensors, tuple):
        merged: dict[str, torch.Tensor] = {}
        for d in tensors:
            merged.update(d)
        tensors = merged
    if aliases == "auto":
        aliases = tensor_aliases(model)
    if aliases is None:
        return functional_call(model, dict(tensors), args, strict=strict)
    expanded = {a: v for k, v in tensors.items() for a in aliases.get(k, (k,))}
    return functional_call(model, expanded, args, strict=strict, tie_weights=False)


def functional_loss(model: nn.Module, loss_fn: Callable, mode: str | None) -> Callable[..., torch.Tensor]:
    """``f(params, batch, buffers=None) = loss_fn(model(inputs), targets)`` at ``params``, functionally.

    ``params`` maps trainable parameter names to tensors; ``buffers`` optionally overrides buffers
    (e.g. interpolated or recalibrated BatchNorm statistics; ignored for BatchNorm in train mode,
    which uses batch statistics). The call must run inside ``use_mode``; ``model`` is not touched.
    """
    mode_bufs = mode_buffers(model, mode)
    aliases = tensor_aliases(model)

    def f(params: Mapping[str, torch.Tensor], batch: tuple[torch.Tensor, torch.Tensor],
          buffers: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        x, y = batch
        bufs = {**buffers, **mode_bufs} if buffers else mode_bufs
        out = call(model, (dict(bufs), dict(params)) if bufs else dict(params), (x,), aliases=aliases)
        return loss_fn(out, y)

    return f


def evaluate_loss(model: nn.Module, loss_fn: Callable, batches: Batches, mode: str | None,
                  params: Mapping[str, torch.Tensor], seed: int = 0) -> float:
    """Sample-weighted mean loss over ``batches`` at ``params`` (no autograd graph)."""
    f = functional_loss(model, loss_fn, mode)
    total, count = 0.0, 0
    with torch.no_grad():
        for i, b in enumerate(batches):
            with use_mode(model, mode, seed + i):
                loss = check_loss(f(params, b))
            n = batch_size(b)
            total += float(loss) * n
            count += n
    if count == 0:
        raise ValueError("the data yielded no batches")
    return total / count
