"""Checks of the data and the models that ``fit`` and ``fit_ensemble`` run before training."""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from ..data import Data


def as_data(data: Data | tuple) -> Data:
    """``data`` as a ``Data``: an ``(inputs, targets)`` pair becomes a training set without a test set."""
    if isinstance(data, Data):
        return data
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        return Data(x, y, x[:0], y[:0])
    raise TypeError("data must be a tdlcourse.data.Data or an (inputs, targets) tuple of tensors")


def check_labels(y: torch.Tensor, num_classes: int | None, d_out: int | None, where: str) -> None:
    """Integer labels must index a class: 0 <= y < num_classes (and < the model's output width)."""
    if torch.is_floating_point(y) or len(y) == 0:
        return
    hi = min(c for c in (num_classes, d_out) if c is not None) if (num_classes or d_out) else None
    lo_v, hi_v = int(y.min()), int(y.max())
    if lo_v < 0 or (hi is not None and hi_v >= hi):
        bad = lo_v if lo_v < 0 else hi_v
        raise ValueError(f"{where} holds the label {bad}; labels must lie in [0, {hi - 1 if hi else 'C-1'}]"
                         + (f" (num_classes={num_classes})" if num_classes else "")
                         + (f" (the model has {d_out} outputs)" if d_out else ""))


def check_cross_entropy_labels(items: Sequence[Data], width: int | None) -> None:
    """``check_labels`` on the train and test labels of each distinct dataset (named ``data[j]`` if several)."""
    first: dict[int, tuple[int, Data]] = {}
    for j, d in enumerate(items):
        first.setdefault(id(d), (j, d))
    unique = list(first.values())
    for j, d in unique:
        where = "" if len(unique) == 1 else f"data[{j}]."
        check_labels(d.y_train, d.num_classes, width, f"{where}y_train")
        check_labels(d.y_test, d.num_classes, None, f"{where}y_test")


@torch.no_grad()
def output_width(model: nn.Module, x: torch.Tensor) -> int | None:
    """Number of outputs of ``model`` (two samples, eval mode, mode restored); None if unknown."""
    was = model.training
    try:
        model.eval()
        out = model(x[:2])
    except Exception:  # noqa: BLE001 - e.g. batch statistics of one sample; the loss will tell
        return None
    finally:
        model.train(was)
    return int(out.shape[-1]) if out.dim() >= 2 else None


# --------------------------------------------------------------------------------------------------
# ensemble members


def signature(model: nn.Module) -> list[tuple[str, str, str]]:
    """What must agree between ensemble members: module types/options, parameter and buffer shapes."""
    sig = [("parameter", name, f"shape {tuple(p.shape)}, {p.dtype}, {p.device}, requires_grad={p.requires_grad}")
           for name, p in model.named_parameters()]
    sig += [("module", name, f"{type(m).__name__}({m.extra_repr()})") for name, m in model.named_modules()]
    sig += [("buffer", name, f"shape {tuple(b.shape)}, {b.dtype}, {b.device}") for name, b in model.named_buffers()]
    return sig


def _first_difference(ref: list[tuple[str, str, str]], sig: list[tuple[str, str, str]], k: int) -> str | None:
    """Describe the first entry (parameters first, then modules, then buffers) where two signatures differ."""
    for kind in ("parameter", "module", "buffer"):
        a = [e for e in ref if e[0] == kind]
        b = [e for e in sig if e[0] == kind]
        for ea, eb in zip(a, b):
            if ea[1] != eb[1]:
                return f"{kind} {eb[1]!r} (models[0] has {ea[1]!r} there)"
            if ea[2] != eb[2]:
                return f"{kind} {eb[1]!r}: {eb[2]} vs {ea[2]}"
        if len(a) != len(b):
            extra, who = (b[len(a)], f"models[{k}]") if len(b) > len(a) else (a[len(b)], "models[0]")
            return f"{kind} {extra[1]!r} ({extra[2]}), which only {who} has"
    return None


def check_members(models: Sequence[nn.Module]) -> list[nn.Module]:
    """The models of an ensemble as a list: at least one, one architecture, no running statistics."""
    models = list(models)
    if not models:
        raise ValueError("models is empty; give at least one nn.Module")
    if not all(isinstance(m, nn.Module) for m in models):
        raise TypeError("models must be a sequence of nn.Module")
    ref = signature(models[0])
    for k, m in enumerate(models[1:], start=1):
        diff = _first_difference(ref, signature(m), k)
        if diff:
            raise ValueError(f"models[{k}] differs from models[0] at {diff}; fit_ensemble needs one architecture "
                             "(fit_sweep groups models by architecture)")
    for name, m in models[0].named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            raise ValueError(
                f"module {name!r} ({type(m).__name__}) keeps running statistics, which fit_ensemble does not "
                "support; build it with track_running_stats=False (batch statistics in both modes), use "
                "LayerNorm, or train these models one at a time with fit")
    return models
