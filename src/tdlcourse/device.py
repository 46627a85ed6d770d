"""Device choice, seeding and the scale presets every lab uses.

Device order: ``cuda`` > ``mps`` > ``cpu``; the environment variable ``TDL_DEVICE`` overrides.
Scale: ``ci`` (seconds on 2 CPU cores), ``cpu`` (a laptop, about two minutes a lab), ``gpu``
(paper scale) and ``auto`` (``gpu`` when CUDA is available, else ``cpu``); ``TDL_SCALE`` overrides
``auto`` (an explicit ``ci``/``cpu``/``gpu`` argument wins over the environment).
"""

from __future__ import annotations

import os
import random
from typing import Any, TypeVar

import numpy as np
import torch

DEVICES = ("cuda", "mps", "cpu")
SCALES = ("ci", "cpu", "gpu")
ALLOWED_SCALES = SCALES + ("auto",)

T = TypeVar("T")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps is not None and mps.is_available())


def _available(kind: str) -> bool:
    if kind == "cuda":
        return torch.cuda.is_available()
    if kind == "mps":
        return _mps_available()
    return True


def get_device(name: str | torch.device | None = None) -> torch.device:
    """Return the device to compute on.

    ``name`` may be ``None``/``"auto"`` (``TDL_DEVICE`` if set, else cuda > mps > cpu), or one of
    ``"cuda"``, ``"cuda:N"``, ``"mps"``, ``"cpu"``. An unknown name raises ``ValueError`` listing the
    allowed values; a known but absent device raises ``RuntimeError``.
    """
    if isinstance(name, torch.device):
        return name
    if name is None or name == "auto":
        name = os.environ.get("TDL_DEVICE") or "auto"
        source = "TDL_DEVICE" if name != "auto" else None
    else:
        source = "device"
    if name == "auto":
        for kind in DEVICES:
            if _available(kind):
                return torch.device(kind)
    kind = str(name).split(":", 1)[0]
    if kind not in DEVICES or (":" in str(name) and kind != "cuda"):
        raise ValueError(
            f"{source or 'device'}={name!r} is not a device; allowed: 'auto', 'cuda', 'cuda:N', 'mps', 'cpu'"
        )
    if not _available(kind):
        raise RuntimeError(f"{source or 'device'}={name!r} was asked for but is not available on this machine")
    return torch.device(name)


def resolve_scale(scale: str | None = "auto") -> str:
    """Resolve a lab's ``scale`` parameter to one of ``ci``, ``cpu``, ``gpu``.

    ``auto`` (or ``None``) reads ``TDL_SCALE`` if set, else gives ``gpu`` when CUDA is available and
    ``cpu`` otherwise.
    """
    if scale is None:
        scale = "auto"
    if not isinstance(scale, str) or scale not in ALLOWED_SCALES:
        raise ValueError(f"scale={scale!r} is not a scale; allowed: {', '.join(map(repr, ALLOWED_SCALES))}")
    if scale != "auto":
        return scale
    env = os.environ.get("TDL_SCALE")
    if env:
        if env not in SCALES:
            raise ValueError(f"TDL_SCALE={env!r} is not a scale; allowed: {', '.join(map(repr, SCALES))}")
        return env
    return "gpu" if torch.cuda.is_available() else "cpu"


def by_scale(scale: str | None, *, ci: T, cpu: T, gpu: T) -> T:
    """Pick the value for the resolved ``scale``: ``by_scale(scale, ci=200, cpu=2000, gpu=20000)``."""
    return {"ci": ci, "cpu": cpu, "gpu": gpu}[resolve_scale(scale)]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` seeded alike."""
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ValueError(f"seed={seed!r} must be a non-negative int")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def describe() -> dict[str, Any]:
    """What the course will run on: device, scale, torch version, threads (printed by the labs)."""
    dev = get_device()
    info: dict[str, Any] = {
        "device": str(dev),
        "scale": resolve_scale("auto"),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info
