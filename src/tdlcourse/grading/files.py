"""Atomic file writes for every stage of the grader, so that a crash or a full disk never leaves a
half-written record, report, export or notebook behind: the library's one helper
(``tdlcourse._atomic``), with the permissions a course file gets."""

from __future__ import annotations

import os

from .._atomic import atomic_write_bytes as _write


def atomic_write_bytes(path: str | os.PathLike, data: bytes, *, mode: int | None = 0o644):
    """Write ``data`` to ``path`` atomically (readers see the old file or the new one, never a
    part); ``mode``: the file's permissions (``None`` keeps 0600)."""
    return _write(path, data, mode=mode)


def atomic_write_text(path: str | os.PathLike, text: str, *, mode: int | None = 0o644, encoding: str = "utf-8"):
    """``atomic_write_bytes`` for text."""
    return atomic_write_bytes(path, text.encode(encoding), mode=mode)
