"""``fit_sweep``: many configurations, each group of same-shaped models trained as one ensemble."""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from ..data import Data
from ..validate import positive_int
from .checks import signature
from .config import optional
from .ensemble import fit_ensemble
from .history import History, SweepResult

SWEEP_KEYS = ("lr", "train_seed", "data")


def fit_sweep(make_model: Callable[..., nn.Module], configs: Sequence[Mapping[str, Any]],
              data: Data | tuple, *, max_group: int | None = None, **fit_kwargs: Any) -> SweepResult:
    """Train one model per configuration, running each group of same-shaped models as one ensemble.

    Each configuration is a dict of keyword arguments for ``make_model`` (e.g. ``models.mlp``'s
    ``widths``, ``activation``, ``seed``) plus optional training keys: ``lr`` (its own learning rate),
    ``train_seed`` (its minibatch seed; default ``fit_kwargs["seed"]`` or 0) and ``data`` (its own
    ``Data``, e.g. with shuffled labels). Models whose architectures agree (same module types and
    parameter shapes, see ``fit_ensemble``) are trained together, at most ``max_group`` at a time;
    ``fit_kwargs`` go to ``fit_ensemble``. Results come back in configuration order and equal one
    ``fit`` per configuration up to float rounding.
    """
    configs = [dict(c) for c in configs]
    if not configs:
        raise ValueError("configs is empty")
    max_group = optional(positive_int, "max_group", max_group, "no limit")
    for bad in ("seeds", "models"):
        if bad in fit_kwargs:
            raise ValueError(f"{bad!r} is set per configuration in fit_sweep (keys {SWEEP_KEYS}), not as a keyword")
    base_lr = fit_kwargs.pop("lr", 0.1)
    base_seed = fit_kwargs.pop("seed", 0)
    t0 = time.perf_counter()
    built = [make_model(**{k: v for k, v in c.items() if k not in SWEEP_KEYS}) for c in configs]
    groups: dict[str, list[int]] = OrderedDict()
    for i, m in enumerate(built):
        if not isinstance(m, nn.Module):
            raise TypeError(f"make_model returned {type(m).__name__} for configs[{i}], not an nn.Module")
        groups.setdefault(repr(signature(m)), []).append(i)
    histories: list[History | None] = [None] * len(configs)
    chunks: list[list[int]] = []
    for idx in groups.values():
        size = max_group or len(idx)
        chunks += [idx[a:a + size] for a in range(0, len(idx), size)]
    for chunk in chunks:
        res = fit_ensemble([built[i] for i in chunk], [configs[i].get("data", data) for i in chunk],
                           lr=[configs[i].get("lr", base_lr) for i in chunk],
                           seeds=[configs[i].get("train_seed", base_seed) for i in chunk], **fit_kwargs)
        for i, h in zip(chunk, res.histories):
            histories[i] = h
    return SweepResult(configs=configs, models=built, histories=histories,  # type: ignore[arg-type]
                       groups=chunks, seconds=time.perf_counter() - t0)
