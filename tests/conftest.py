"""Shared fixtures: repository paths, the venv's tools, the headless browser."""

from __future__ import annotations

import copy
import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: nbgrader, jupyter-book, papermill
CHROMIUM = os.environ.get("TDL_CHROMIUM", "/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
# Tools call each other by name (nbgrader runs `alembic`, jupyter-book starts kernels): put the
# venv's bin first on PATH even when pytest is run without activating the venv.
os.environ["PATH"] = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        found = shutil.which(name)
        if not found:
            pytest.fail(f"{name} is not installed in {BIN}; run `make test` (it installs the pinned environment)")
        return found
    return str(path)


def require_browser() -> str:
    """The Chromium binary, or skip (fail under CI=true) with the reason."""
    if Path(CHROMIUM).exists():
        return CHROMIUM
    reason = (f"no Chromium at {CHROMIUM}: `make test` installs Debian's chromium when run as root; "
              "otherwise `apt-get install chromium` or set TDL_CHROMIUM")
    if IN_CI:
        pytest.fail(reason + " (a missing browser is a failure under CI=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def root() -> Path:
    return ROOT


def pytest_configure(config):
    # Under `pytest -n 2` each worker gets one core's worth of threads: two workers each spinning
    # two OpenMP threads on two cores is slower than either alone.
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)


def snapshot(model):
    """Everything a library call must leave as it was: parameters and buffers, every module's mode,
    the .grad fields and the global RNG state. Check with ``assert_untouched``."""
    import torch

    return (copy.deepcopy(model.state_dict()), [m.training for m in model.modules()],
            [p.grad for p in model.parameters()], torch.get_rng_state())


def assert_untouched(model, snap):
    import torch

    sd, flags, grads, rng = snap
    for k, v in model.state_dict().items():
        assert torch.equal(v, sd[k]), f"{k} changed"
    assert [m.training for m in model.modules()] == flags
    assert all(p.grad is None for p in model.parameters()) and all(g is None for g in grads)
    assert torch.equal(torch.get_rng_state(), rng), "the global RNG stream was consumed"
