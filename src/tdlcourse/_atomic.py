"""Atomic file writes: a reader sees the old file or the new one, never half a file.

The one helper for every file written atomically: ``checkpoint`` (model files), ``train.History.save``
(JSON histories) and the grader (``grading.files``: records, reports, exports, graded notebooks).
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write_bytes(path: str | Path, payload: bytes, *, mode: int | None = None) -> Path:
    """Write ``payload`` to ``path`` via a temporary file in the same folder and ``os.replace``;
    ``mode``: the file's permissions (``None`` keeps mkstemp's 0600)."""
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload={str(payload)[:40]!r} must be bytes, got {type(payload).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
