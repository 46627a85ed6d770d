"""K models' parameters and data, stacked along a new leading axis for ``fit_ensemble``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from itertools import repeat
from typing import Iterator, Sequence

import torch
from torch import nn

from ..data import Data
from .checks import as_data
from .config import minibatch_indices


class StackedParams:
    """The parameters of K same-shaped models, theta^(k) stacked along a new leading axis.

    The trainable ones live in one flat tensor ``flat`` [K, P] (one optimizer update per step for
    everything); ``unflatten`` gives per-layer views [K, *shape] in the order of ``names``. Frozen
    parameters and buffers are stacked per name in ``rest`` (the torch.func engine passes them on).
    """

    def __init__(self, models: Sequence[nn.Module]) -> None:
        ref = models[0]
        self.names = [n for n, p in ref.named_parameters() if p.requires_grad]
        if not self.names:
            raise ValueError("model has no trainable parameters")
        self.shapes = [tuple(ref.get_parameter(n).shape) for n in self.names]
        dtypes = {ref.get_parameter(n).dtype for n in self.names}
        if len(dtypes) > 1:
            raise ValueError(f"the trainable parameters mix dtypes {sorted(map(str, dtypes))}; "
                             "fit_ensemble needs one dtype")
        self.offsets = [0]
        for shp in self.shapes:
            self.offsets.append(self.offsets[-1] + math.prod(shp))
        self.flat = torch.stack([torch.cat([m.get_parameter(n).detach().reshape(-1) for n in self.names])
                                 for m in models])
        self.rest = {n: torch.stack([m.get_parameter(n).detach() for m in models])
                     for n, p in ref.named_parameters() if not p.requires_grad}
        self.rest.update({n: torch.stack([m.get_buffer(n).detach() for m in models]) for n, _ in ref.named_buffers()})

    @property
    def widest(self) -> int:
        """The largest output width of a weight matrix (sizes the activation arrays)."""
        return max([shp[0] for shp in self.shapes if len(shp) > 1] or [1])

    def unflatten(self, f: torch.Tensor) -> list[torch.Tensor]:
        """Per-parameter views [..., *shape] of flat rows f [..., P]."""
        lead = f.shape[:-1]
        return [f[..., a:b].view(*lead, *shp) for a, b, shp in zip(self.offsets[:-1], self.offsets[1:], self.shapes)]

    def rest_rows(self, rows: slice) -> dict[str, torch.Tensor]:
        return {name: t[rows] for name, t in self.rest.items()}

    def as_dict(self) -> dict[str, torch.Tensor]:
        """Name -> stacked parameter [K, *shape] (detached views: read-only for callers)."""
        return dict(zip(self.names, self.unflatten(self.flat.detach())))

    @torch.no_grad()
    def write_back(self, models: Sequence[nn.Module]) -> None:
        """Copy the trained parameters into the models, in place."""
        for j, m in enumerate(models):
            for name, p in zip(self.names, self.unflatten(self.flat.detach()[j])):
                m.get_parameter(name).copy_(p)


@dataclass
class Split:
    """One split (train or test) of K models' data: shared tensors [n, ...] or stacked [K, n, ...]."""

    x: torch.Tensor
    y: torch.Tensor
    x_shared: bool
    y_shared: bool

    def __len__(self) -> int:
        return self.x.shape[0 if self.x_shared else 1]

    def rows(self, models: slice) -> Split:
        """The data of the models ``models`` (shared tensors are everyone's)."""
        return Split(self.x if self.x_shared else self.x[models], self.y if self.y_shared else self.y[models],
                     self.x_shared, self.y_shared)

    def samples(self, a: int, b: int) -> Split:
        """Samples a..b-1 of every model."""
        return Split(self.x[a:b] if self.x_shared else self.x[:, a:b], self.y[a:b] if self.y_shared else self.y[:, a:b],
                     self.x_shared, self.y_shared)


def _same_tensor(ts: Sequence[torch.Tensor]) -> bool:
    t0 = ts[0]
    return all(t is t0 or (t.shape == t0.shape and t.dtype == t0.dtype and t.device == t0.device
                           and t.stride() == t0.stride() and t.data_ptr() == t0.data_ptr()) for t in ts)


def ensemble_data(data: Data | tuple | Sequence[Data], k: int, dev: torch.device) -> tuple[Split, Split, list[Data]]:
    """The train and test ``Split`` of K models on ``dev`` (a tensor all models share is kept once), and
    the per-model ``Data``."""
    if isinstance(data, (Data, tuple)):
        d = as_data(data)
        items = [d] * k
    else:
        items = [as_data(d) for d in data]
        if len(items) != k:
            raise ValueError(f"data holds {len(items)} datasets but there are {k} models; give one Data "
                             "(shared) or one per model")
    ref = items[0]
    for j, d in enumerate(items[1:], start=1):
        for f in ("x_train", "y_train", "x_test", "y_test"):
            a, b = getattr(ref, f), getattr(d, f)
            if a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(f"data[{j}].{f} has shape {tuple(b.shape)} ({b.dtype}) but data[0].{f} has "
                                 f"{tuple(a.shape)} ({a.dtype}); ensemble members need same-shaped data")
    splits = []
    for s in ("train", "test"):
        xs = [getattr(d, f"x_{s}") for d in items]
        ys = [getattr(d, f"y_{s}") for d in items]
        xsh, ysh = _same_tensor(xs), _same_tensor(ys)
        x = xs[0].to(dev) if xsh else torch.stack(xs).to(dev)
        y = ys[0].to(dev) if ysh else torch.stack(ys).to(dev)
        splits.append(Split(x, y, xsh, ysh))
    return splits[0], splits[1], items


def ensemble_batches(train: Split, batch_size: int | None, seeds: Sequence[int]) -> Iterator[Split]:
    """The training data of each step: the whole split, or minibatches, model k's order drawn with
    ``seeds[k]`` (one stream, and shared minibatches, when all seeds agree)."""
    if batch_size is None:
        return repeat(train)
    dev, n = train.x.device, len(train)
    one_stream = len(set(seeds)) == 1
    gens = [torch.Generator(device=dev).manual_seed(s) for s in (seeds[:1] if one_stream else seeds)]

    def permutations() -> torch.Tensor:  # [S, n], S = 1 or K
        return torch.stack([torch.randperm(n, generator=g, device=dev) for g in gens])

    return (_minibatch(train, idx, one_stream) for idx in minibatch_indices(n, batch_size, permutations))


def _minibatch(train: Split, idx: torch.Tensor, one_stream: bool) -> Split:
    x, x_shared = _take(train.x, train.x_shared, idx, one_stream)
    y, y_shared = _take(train.y, train.y_shared, idx, one_stream)
    return Split(x, y, x_shared, y_shared)


def _take(t: torch.Tensor, shared: bool, idx: torch.Tensor, one_stream: bool) -> tuple[torch.Tensor, bool]:
    """Rows ``idx`` ([S, B] index rows, S = 1 or K) of shared [n, ...] or stacked [K, n, ...] data."""
    if shared and one_stream:
        return t[idx[0]], True
    if shared:
        return t[idx], False
    rows = torch.arange(t.shape[0], device=t.device).unsqueeze(1)
    return t[rows, idx.expand(t.shape[0], -1) if one_stream else idx], False
