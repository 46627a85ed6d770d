"""Device choice, seeding and the scale presets every lab uses.

Device order: ``cuda`` > ``mps`` > ``cpu``; the environment variable ``TDL_DEVICE`` overrides.
Scale: ``ci`` (seconds on 2 CPU cores), ``cpu`` (a laptop, about two minutes a lab), ``gpu``
(paper scale) and ``auto`` (``gpu`` when CUDA is available, else ``cpu``); ``TDL_SCALE`` overrides
``auto`` (an explicit ``ci``/``cpu``/``gpu`` argument wins over the environment).
Precision: ``auto`` allows TF32 matrix products on CUDA and is plain float32 elsewhere; ``bf16``
autocasts the forward pass to bfloat16 (``resolve_precision``, ``matmul_precision``, ``autocast``).
Compilation with ``torch.compile`` is opt-in (``compile_backend``). Nothing here needs a GPU.
"""

from __future__ import annotations

import contextlib
import os
import random
from contextlib import contextmanager
from typing import Any, Iterator, TypeVar

import numpy as np
import torch

from . import validate

DEVICES = ("cuda", "mps", "cpu")
DEVICE_NAMES = ("auto", "cuda", "cuda:N", "mps", "cpu")  # what get_device accepts (N: a GPU index)
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
        label = "TDL_DEVICE" if name != "auto" else "name"  # where a bad name came from
    else:
        label = "name"
    if name == "auto":
        for kind in DEVICES:
            if _available(kind):
                return torch.device(kind)
    kind, sep, index = str(name).partition(":")
    if kind not in DEVICES or (sep and (kind != "cuda" or not index.isdigit())):
        validate.one_of(label, name, DEVICE_NAMES)  # raises, unless name is the literal 'cuda:N' or 'auto'
        raise ValueError(f"{label}={name!r} is not a device; allowed: {', '.join(map(repr, DEVICE_NAMES))}")
    if not _available(kind):
        raise RuntimeError(f"{label}={name!r} was asked for but is not available on this machine")
    return torch.device(name)


def resolve_scale(scale: str | None = "auto") -> str:
    """Resolve a lab's ``scale`` parameter to one of ``ci``, ``cpu``, ``gpu``.

    ``auto`` (or ``None``) reads ``TDL_SCALE`` if set, else gives ``gpu`` when CUDA is available and
    ``cpu`` otherwise.
    """
    if scale is None:
        scale = "auto"
    scale = validate.one_of("scale", scale, ALLOWED_SCALES)
    if scale != "auto":
        return scale
    env = os.environ.get("TDL_SCALE")
    if env:
        return validate.one_of("TDL_SCALE", env, SCALES)
    return "gpu" if _available("cuda") else "cpu"


def by_scale(scale: str | None, *, ci: T, cpu: T, gpu: T) -> T:
    """Pick the value for the resolved ``scale``: ``by_scale(scale, ci=200, cpu=2000, gpu=20000)``."""
    return {"ci": ci, "cpu": cpu, "gpu": gpu}[resolve_scale(scale)]


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (all devices); return a CPU ``torch.Generator`` seeded alike."""
    seed = validate.nonnegative_int("seed", seed)
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
        "precision": resolve_precision("auto", dev),
    }
    if dev.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(dev)
    return info


# --- numeric precision and compilation policy -------------------------------------------------

PRECISIONS = ("auto", "fp32", "tf32", "bf16")


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """Resolve ``precision`` for ``device`` to ``"fp32"``, ``"tf32"`` or ``"bf16"``.

    ``"auto"`` allows TF32 matrix products on CUDA (about 3 decimal digits per product, the PyTorch
    ``set_float32_matmul_precision("high")`` policy) and means plain float32 elsewhere. ``"tf32"`` on a
    device other than CUDA is plain float32 (no such mode). ``"bf16"`` runs the forward pass under
    ``torch.autocast(dtype=torch.bfloat16)`` (parameters, gradients and optimizer state stay float32).
    """
    precision = validate.one_of("precision", precision, PRECISIONS)
    kind = torch.device(device).type
    if precision == "auto":
        return "tf32" if kind == "cuda" else "fp32"
    if precision == "tf32" and kind != "cuda":
        return "fp32"
    return precision


@contextmanager
def matmul_precision(precision: str, device: torch.device | str) -> Iterator[str]:
    """Context in which float32 matrix products on ``device`` follow ``precision``; yields the resolved name.

    Only TF32 on CUDA changes a global flag (``torch.set_float32_matmul_precision``); the previous value
    is restored on exit, so nothing leaks into the caller's session.
    """
    resolved = resolve_precision(precision, device)
    if resolved != "tf32":
        yield resolved
        return
    previous = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("high")
    try:
        yield resolved
    finally:
        torch.set_float32_matmul_precision(previous)


def autocast(precision: str, device: torch.device | str) -> contextlib.AbstractContextManager:
    """``torch.autocast`` to bfloat16 when ``precision`` resolves to ``"bf16"``, else a no-op context.

    Wrap the forward pass and the loss only; the backward pass follows the recorded dtypes.
    """
    dev = torch.device(device)
    if resolve_precision(precision, dev) == "bf16":
        return torch.autocast(device_type=dev.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def compile_backend(compile: bool | str) -> str | None:
    """The ``torch.compile`` backend asked for by a ``compile=`` argument (None: do not compile).

    ``False`` means no compilation (the default: compiling costs seconds to minutes up front and pays
    off only for long runs), ``True`` means ``"inductor"``, and a string names any backend in
    ``torch.compiler.list_backends(exclude_tags=())`` (``"eager"`` and ``"aot_eager"`` check the
    tracing without generating code, which is how the CPU tests exercise this path).
    """
    if compile is False or compile is None:
        return None
    if compile is True:
        return "inductor"
    if not isinstance(compile, str):
        return "inductor" if validate.boolean("compile", compile) else None  # e.g. numpy's bools
    return validate.one_of("compile", compile, (False, True, *torch.compiler.list_backends(exclude_tags=())))


def synchronize(device: torch.device | str) -> None:
    """Wait for queued work on ``device`` (for honest wall-clock timings); a no-op on CPU."""
    dev = torch.device(device)
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    elif dev.type == "mps":
        torch.mps.synchronize()
