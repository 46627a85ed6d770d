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
    # two OpenMP threads on two cores is slower than either alone. The environment variables carry
    # the same to what a worker starts (the book build's kernels, nbgrader, papermill).
    if os.environ.get("PYTEST_XDIST_WORKER"):
        import torch

        torch.set_num_threads(1)
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(var, "1")


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


# --- shared fixtures: a course copy, the built book and its server, the browser ----------------

CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
BOOK_SCALE = "cpu"  # the book's scale: its build is the one cpu-scale run of every lab


def tdl_env(**extra) -> dict:
    """The environment `tdl` and nbgrader run in: the venv's bin first on PATH, no course settings
    of the caller's environment (TDL_EXCHANGE, TDL_GRADEBOOK, TDL_COURSE_ID, TDL_TERM_SECRET)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TDL_EXCHANGE", "TDL_GRADEBOOK", "TDL_COURSE_ID", "TDL_TERM_SECRET", "TDL_COURSE")}
    env.update(PATH=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", OMP_NUM_THREADS="1", **extra)
    return env


@pytest.fixture(scope="session")
def course_copy(tmp_path_factory):
    """A factory of fresh copies of the course (``assignments/``: its nbgrader_config.py, and its
    ``source/`` unless ``source=False``); returns the new course root."""
    def make(name: str = "course", *, source: bool = True) -> Path:
        root = tmp_path_factory.mktemp(name) / "course"
        root.mkdir()
        shutil.copy(ROOT / "assignments" / "nbgrader_config.py", root)
        if source:
            shutil.copytree(ROOT / "assignments" / "source", root / "source")
        else:
            (root / "source").mkdir()
        return root
    return make


def hw01_answers(course: Path) -> dict:
    """grade_id -> the reference solution of each solution cell of the course's hw01 source."""
    import nbformat

    source = nbformat.read(course / "source" / "hw01" / "hw01.ipynb", as_version=4)
    return {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def fill_solutions(nb, source):
    """Copy the source's code solutions into a released or fetched notebook (what an honest student
    writes); returns ``nb``."""
    sol = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
           if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in sol:
            c.source = sol[gid]
    return nb


def submit_hw01(course: Path, work: Path, sid: str, answers: dict, written: str) -> Path:
    """Student ``sid`` (home ``work/students/<sid>``) fetches hw01 from the course's local exchange,
    puts ``answers`` into its code cells and ``written`` into its written ones, and submits.
    Returns the student's notebook."""
    import nbformat
    from nbgrader.exchange.default import ExchangeFetchAssignment, ExchangeSubmit

    home = work / "students" / sid
    home.mkdir(parents=True)
    student_app(ExchangeFetchAssignment, course, home, sid, "hw01").start()
    path = home / "tdl" / "hw01" / "hw01.ipynb"
    nb = nbformat.read(path, as_version=4)
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in answers:
            c.source = answers[gid] if c.cell_type == "code" else written
    nbformat.write(nb, path)
    student_app(ExchangeSubmit, course, home, sid, "hw01").start()
    return path


def student_app(cls, course: Path, home: Path, sid: str, assignment: str):
    """An nbgrader exchange app (fetch, submit, fetch feedback) acting as student ``sid`` in
    ``home``, on the local exchange of ``course``."""
    from nbgrader.auth import Authenticator
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config import Config

    c = Config()
    c.Exchange.root = str(course / "exchange")
    c.Exchange.path_includes_course = True
    c.Exchange.cache = str(home / ".nbgrader_cache")
    c.CourseDirectory.course_id = "tdl"
    c.CourseDirectory.root = str(home)
    cd = CourseDirectory(config=c)
    cd.assignment_id, cd.student_id = assignment, sid
    app = cls(coursedir=cd, authenticator=Authenticator(config=c), config=c)
    app.assignment_dir = str(home)
    return app


def build_book(src: Path, out: Path, scale: str = BOOK_SCALE):
    import subprocess

    env = {**os.environ, "TDL_SCALE": scale, "TDL_STATIC": "1"}
    return subprocess.run([tool("jupyter-book"), "build", "--all", "-W", "-n", "--keep-going",
                           "--path-output", str(out), str(src)],
                          cwd=src, env=env, capture_output=True, text=True, timeout=1500)


@pytest.fixture(scope="session")
def book(tmp_path_factory) -> Path:
    """The book built once per test session at the book's scale (``cpu``): the single execution of
    every lab in ``make test``. Returns the build folder (``html/``, ``jupyter_execute/``). Tests
    that use it are in the xdist group ``book`` so that one worker builds it."""
    out = tmp_path_factory.mktemp("book")
    r = build_book(ROOT, out)
    assert r.returncode == 0, f"book build failed:\n{r.stdout[-6000:]}\n{r.stderr[-4000:]}"
    assert (out / "_build" / "html" / "index.html").is_file()
    return out / "_build"


@pytest.fixture(scope="session")
def site(book) -> Path:
    return book / "html"


@pytest.fixture(scope="session")
def server(site):
    """The built site on 127.0.0.1, served by a separate process (as a reader would serve it)."""
    import subprocess
    import time
    import urllib.request

    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1",
                             "--directory", str(site)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(100):
        try:
            urllib.request.urlopen(url + "/index.html", timeout=1)
            break
        except OSError:
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(timeout=10)


class PageLog:
    """Console errors, page errors, failed requests, and every request that leaves 127.0.0.1
    (recorded and aborted; ``data:``/``blob:`` pass, and ``file:`` when ``files`` is true)."""

    def __init__(self, page, files: bool = False):
        from urllib.parse import urlparse

        self.errors, self.foreign, self.failed = [], [], []
        page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("requestfailed", lambda r: self.failed.append(r.url))
        local = ("data:", "blob:", "file:") if files else ("data:", "blob:")

        def is_local(url: str) -> bool:
            return url.startswith(local) or urlparse(url).hostname == "127.0.0.1"

        # recorded from the request event, which sees every request (routing misses the later
        # hops of a redirect); aborted by the route where routing sees it
        page.on("request", lambda r: is_local(r.url) or self.foreign.append(r.url))
        page.route("**/*", lambda r: r.continue_() if is_local(r.request.url) else r.abort())


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """A headless Chromium (Debian's, driven by Playwright) for a test module. Module, not session,
    scope: while Playwright's sync API is open, asyncio.run() fails in that process (the grader's
    tests run on the same pytest worker afterwards)."""
    exe = require_browser()
    from playwright.sync_api import sync_playwright

    profile = tmp_path_factory.mktemp("chromium-profile")
    with sync_playwright() as p:
        ctx = p.chromium.launch_persistent_context(str(profile), executable_path=exe, headless=True,
                                                   viewport={"width": 1400, "height": 1000}, args=CHROMIUM_ARGS)
        yield ctx
        ctx.close()


def cifar_like_tarball(path: Path, n: int = 16, seed: int = 0) -> Path:
    """A ``cifar-10-python.tar.gz`` in the real format (five training batches and a test batch of
    ``n`` random images each, labels 0-9), for the CIFAR-10 code paths without the real file."""
    import io
    import pickle
    import tarfile

    import numpy as np

    rng = np.random.default_rng(seed)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]:
            body = pickle.dumps({b"batch_label": name.encode(), b"labels": rng.integers(0, 10, n).tolist(),
                                 b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8)}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def mnist_like_folder(path: Path, n_train: int = 64, n_test: int = 16, seed: int = 0) -> Path:
    """The four MNIST files in their real format (gzipped IDX) with random 28x28 images and labels 0-9,
    for the MNIST code paths without the real download."""
    import gzip
    import struct

    import numpy as np

    rng = np.random.default_rng(seed)

    def idx(a: np.ndarray) -> bytes:
        return gzip.compress(bytes([0, 0, 0x08, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes())

    path.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("t10k", n_test)):
        (path / f"{split}-images-idx3-ubyte.gz").write_bytes(idx(rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)))
        (path / f"{split}-labels-idx1-ubyte.gz").write_bytes(idx(rng.integers(0, 10, n, dtype=np.uint8)))
    return path
