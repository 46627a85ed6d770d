"""Atomic file writes: the one helper every stage of the grader uses, so that a crash or a full
disk never leaves a half-written record, report, export or notebook behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = 0o644) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder, then rename it over
    ``path`` (``os.replace`` is atomic on one file system): readers see the old file or the new one,
    never a part. ``mode``: the file's permissions (``None`` keeps mkstemp's 0600)."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str, *, mode: int | None = 0o644,
                      encoding: str = "utf-8") -> Path:
    """``atomic_write_bytes`` for text."""
    return atomic_write_bytes(path, text.encode(encoding), mode=mode)
