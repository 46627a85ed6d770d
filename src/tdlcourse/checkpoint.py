"""Checkpoints: a model's state dict with its training history and a JSON config, in one file.

The file is written by ``torch.save`` but holds only tensors and plain Python data (dicts, lists,
strings, numbers, booleans, None): no pickled classes. It is read back with
``torch.load(weights_only=True)``, whose unpickler refuses anything else, so loading a checkpoint
never runs code from the file. Writes are atomic (temporary file in the same folder, then rename):
an interrupted save leaves the previous checkpoint intact, never half a file.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from ._atomic import atomic_write_bytes
from .train.history import History

__all__ = ["FORMAT", "VERSION", "Checkpoint", "save", "load", "atomic_write_bytes"]

FORMAT = "tdlcourse.checkpoint"
VERSION = 1


@dataclass(frozen=True)
class Checkpoint:
    """What ``load`` returns: the state dict (CPU tensors unless ``map_location``), history, config."""

    state_dict: dict[str, torch.Tensor]
    history: History | None = None
    config: dict[str, Any] = field(default_factory=dict)

    def load_into(self, model: nn.Module, strict: bool = True) -> nn.Module:
        """Copy the saved parameters and buffers into ``model`` (``load_state_dict``); returns it."""
        model.load_state_dict(self.state_dict, strict=strict)
        return model


def save(path: str | Path, model: nn.Module | Mapping[str, torch.Tensor], *, history: History | None = None,
         config: Mapping[str, Any] | None = None) -> Path:
    """Save ``model``'s state dict (or a state dict), ``history`` and a JSON-serializable ``config``.

    The model itself is not touched: its tensors are detached and copied to the CPU for writing.
    ``config`` is what rebuilds the model (e.g. the arguments of ``models.mlp``) plus anything else
    worth keeping; it must survive ``json.dumps``.
    """
    if isinstance(model, nn.Module):
        sd = model.state_dict()
    elif isinstance(model, Mapping):
        sd = dict(model)
    else:
        raise TypeError(f"model must be an nn.Module or a state dict, got {type(model).__name__}")
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise ValueError(f"state dict entry {bad[0]!r} is not a tensor; checkpoints hold tensors only")
    if history is not None and not isinstance(history, History):
        raise TypeError(f"history must be a tdlcourse.train.History or None, got {type(history).__name__}")
    config = dict(config or {})
    try:
        config = json.loads(json.dumps(config))
    except (TypeError, ValueError) as e:
        raise ValueError(f"config must be JSON-serializable (plain dicts, lists, strings, numbers): {e}") from None
    payload = {
        "format": FORMAT,
        "version": VERSION,
        "state_dict": {k: v.detach().to("cpu", copy=True) for k, v in sd.items()},
        "history": None if history is None else json.loads(json.dumps(history.to_dict())),
        "config": config,
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load(path: str | Path, *, map_location: str | torch.device = "cpu") -> Checkpoint:
    """Read a checkpoint written by ``save`` (safe unpickler: tensors and plain data only)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    payload = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a tdlcourse checkpoint (no format tag {FORMAT!r})")
    if payload.get("version", 0) > VERSION:
        raise ValueError(f"{path} has checkpoint version {payload['version']}; this tdlcourse reads up to {VERSION}")
    hist = payload.get("history")
    return Checkpoint(state_dict=dict(payload["state_dict"]),
                      history=None if hist is None else History.from_dict(hist),
                      config=dict(payload.get("config") or {}))
