"""Every notebook runs once in `make test`: each lab at `cpu` scale, inside the book build (the
session's `book` fixture; its executed notebooks are checked here: every cell ran without error,
every figure has data, the lab's claims hold), each assignment under papermill at `ci` scale."""

from __future__ import annotations

import os

import nbformat
import pytest

from conftest import BOOK_SCALE, ROOT

LABS = sorted(ROOT.glob("labs/*.ipynb"))
ASSIGNMENTS = sorted(ROOT.glob("assignments/source/*/*.ipynb"))
NOTEBOOKS = LABS + ASSIGNMENTS


@pytest.mark.slow
@pytest.mark.parametrize("path", ASSIGNMENTS, ids=[str(p.relative_to(ROOT)) for p in ASSIGNMENTS])
def test_assignment_runs_at_ci_scale(path, tmp_path, monkeypatch):
    import papermill as pm

    monkeypatch.delenv("TDL_SCALE", raising=False)
    params = {"scale": "ci"} if _has_parameters_cell(path) else {}
    try:
        pm.execute_notebook(str(path), str(tmp_path / path.name), parameters=params, cwd=str(path.parent),
                            kernel_name="python3", progress_bar=False, request_save_on_cell_execute=False)
    except pm.PapermillExecutionError as e:
        pytest.fail(f"{path.relative_to(ROOT)}: cell {e.exec_count} (index {e.cell_index}) raised "
                    f"{e.ename}: {e.evalue}", pytrace=False)


def _has_parameters_cell(path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return any("parameters" in c.metadata.get("tags", []) for c in nb.cells)


def _executed(book, path):
    out = book / "jupyter_execute" / path.relative_to(ROOT)
    assert out.is_file(), f"the book build did not execute {path.relative_to(ROOT)} (not in _toc.yml?)"
    return nbformat.read(out, as_version=4)


@pytest.mark.slow
@pytest.mark.xdist_group("book")
@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_lab_ran_at_book_scale_without_error(book, path):
    """Every code cell of the lab ran in the book build (except those the book skips: the graded
    cells of the student version), none raised, and every plotly figure holds data."""
    nb = _executed(book, path)
    skipped = {i for i, c in enumerate(nb.cells) if "skip-execution" in c.metadata.get("tags", [])}
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code" or not c.source.strip() or i in skipped:
            continue
        assert c.get("execution_count"), f"{path.name}: cell {i} did not run"
        errors = [o for o in c.outputs if o.get("output_type") == "error"]
        assert not errors, f"{path.name}: cell {i} raised {errors[0].get('ename')}: {errors[0].get('evalue')}"
        for o in c.outputs:
            fig = o.get("data", {}).get("application/vnd.plotly.v1+json")
            if fig is not None:
                traces = fig.get("data", [])
                assert traces and all(any(len(tr.get(k) or []) for k in ("x", "y", "z", "values")) for tr in traces), \
                    f"{path.name}: cell {i} has a figure without data"
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert f"scale={BOOK_SCALE}" in text.replace("'", "").replace('"', ""), f"{path.name} did not run at {BOOK_SCALE}"


@pytest.mark.slow
@pytest.mark.xdist_group("book")
@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_lab_stated_results_hold_at_cpu_scale(book, path):
    """The lab's text states what happens at `cpu` scale (the scale of the book); its claims cell
    asserts those statements, and the book build is where it runs: every claim printed [ok]."""
    nb = _executed(book, path)
    cells = [c for c in nb.cells if c.cell_type == "code" and "claims = {" in c.source]
    assert len(cells) == 1, f"{path.name}: {len(cells)} claims cells (one expected)"
    printed = "".join(o.get("text", "") for o in cells[0].get("outputs", []))
    verdicts = [line.split("]")[0] + "]" for line in printed.splitlines() if line.startswith("[")]
    assert len(verdicts) >= 3, f"{path.name}: only {len(verdicts)} claims printed:\n{printed}"
    assert set(verdicts) == {"[ok]"}, f"{path.name}: a claim fails at {BOOK_SCALE} scale:\n{printed}"
    expected = {"01_": 4, "02_": 23, "03_": 16, "04_": 16, "05_": 14, "06_": 14, "07_": 17, "08_": 13, "09_": 12, "10_": 13, "11_": 13, "12_": 19}.get(path.name[:3])  # a claim that vanished would go unnoticed
    if expected is not None:
        assert len(verdicts) == expected, f"{path.name}: {len(verdicts)} claims printed, {expected} expected"


def _run_lab_at_ci(name: str, tmp_path, monkeypatch, **params) -> str:
    """Run ``labs/<name>`` headless at ci scale with extra papermill ``params``; all text it printed."""
    import papermill as pm

    monkeypatch.delenv("TDL_SCALE", raising=False)
    monkeypatch.setenv("TDL_STATIC", "1")
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lab = ROOT / "labs" / name
    out = tmp_path / lab.name
    pm.execute_notebook(str(lab), str(out), cwd=str(lab.parent), kernel_name="python3", progress_bar=False,
                        parameters={"scale": "ci", **params})
    nb = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
    assert "scale=ci: the lab ran in" in text
    return text


@pytest.mark.slow
def test_lab01_cifar10_cnn_path_runs_at_ci_scale(tmp_path, monkeypatch):
    """At gpu scale lab 1 trains Zhang et al.'s experiment: a CNN on CIFAR-10 with true labels, random
    labels, Gaussian inputs and random pixels. The same code path runs here at ci sizes on CIFAR-format
    batches generated for the test (the real file is a 170 MB download)."""
    from conftest import cifar_like_tarball

    tarball = cifar_like_tarball(tmp_path / "cifar-10-python.tar.gz", n=32)
    text = _run_lab_at_ci("01_generalization_puzzle.ipynb", tmp_path, monkeypatch, dataset="cifar10",
                          cifar_file=str(tarball))
    assert "cifar10: 160 training and 32 test images of shape (3, 32, 32), 10 classes; network: cnn" in text, text[:2000]


@pytest.mark.slow
def test_lab02_binary_mnist_path_runs_at_ci_scale(tmp_path, monkeypatch):
    """At gpu scale lab 2's PAC-Bayes experiment runs on binary MNIST (m = 55,000, as Dziugaite and
    Roy). The same code path runs here at ci sizes on MNIST-format files generated for the test."""
    from conftest import mnist_like_folder

    folder = mnist_like_folder(tmp_path / "mnist", n_train=256, n_test=40)  # >= the batch of 128
    text = _run_lab_at_ci("02_norms_margins_pacbayes.ipynb", tmp_path, monkeypatch, binary_task="mnist",
                          mnist_folder=str(folder))
    assert "m = 256 training images" in text, text[-3000:]


@pytest.mark.slow
def test_lab06_mnist_path_runs_at_ci_scale(tmp_path, monkeypatch):
    """At gpu scale lab 6's trainability grid runs on MNIST (as Schoenholz et al. 2017). The same code
    path runs here at ci sizes on MNIST-format files generated for the test."""
    from conftest import mnist_like_folder

    folder = mnist_like_folder(tmp_path / "mnist", n_train=256, n_test=40)  # >= the batch of 128
    text = _run_lab_at_ci("06_signal_propagation.ipynb", tmp_path, monkeypatch, dataset="mnist",
                          mnist_folder=str(folder))
    assert "mnist: 256 training and 40 test inputs of dimension 784" in text, text[-3000:]


@pytest.mark.parametrize("path", sorted(ROOT.glob("labs/*.ipynb")), ids=lambda p: p.name)
def test_lab_first_code_cell_is_parameters_with_auto_scale(path):
    nb = nbformat.read(path, as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    assert "parameters" in first.metadata.get("tags", []), f"{path.name}: first code cell is not tagged 'parameters'"
    assert 'scale = "auto"' in first.source, f"{path.name}: the parameters cell must set scale = \"auto\""


@pytest.mark.parametrize("path", NOTEBOOKS + sorted(ROOT.glob("book/*.ipynb")), ids=lambda p: p.name)
def test_notebook_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    dirty = [i for i, c in enumerate(nb.cells) if c.cell_type == "code" and (c.outputs or c.execution_count)]
    assert not dirty, f"{path.name}: cells {dirty} have outputs or execution counts; strip them before committing"


# --- the graded "Your turn" section every lab ends with ---------------------------------------

GRADED_LABS = [p for p in LABS if any(c.metadata.get("nbgrader") for c in nbformat.read(p, as_version=4).cells)]


def _graded_cells(nb):
    """The cells a lab's grader runs: those with nbgrader metadata or the tag ``tdl-graded``."""
    return [c for c in nb.cells if c.cell_type == "code"
            and (c.metadata.get("nbgrader") or "tdl-graded" in c.metadata.get("tags", []))]


@pytest.mark.parametrize("path", LABS, ids=lambda p: p.name)
def test_lab_ends_with_your_turn_and_prints_its_time(path):
    nb = nbformat.read(path, as_version=4)
    meta = {c.metadata["nbgrader"]["grade_id"]: (i, c) for i, c in enumerate(nb.cells) if c.metadata.get("nbgrader")}
    for gid in ("yourturn-intro", "yourturn-imports", "yourturn-solution", "yourturn-test", "yourturn-written"):
        assert gid in meta, f"{path.name}: no cell with grade_id {gid!r}"
        assert meta[gid][1].metadata["nbgrader"].get("schema_version") == 3, f"{path.name}: {gid} is not schema 3"
    order = [meta[g][0] for g in ("yourturn-intro", "yourturn-imports", "yourturn-solution", "yourturn-test",
                                  "yourturn-written")]
    assert order == sorted(order), f"{path.name}: the Your turn cells are out of order"
    assert "Your turn" in meta["yourturn-intro"][1].source
    assert "tdl-graded" in meta["yourturn-imports"][1].metadata.get("tags", [])
    solution, test = meta["yourturn-solution"][1], meta["yourturn-test"][1]
    assert solution.metadata["nbgrader"]["solution"] and "### BEGIN SOLUTION" in solution.source
    t = test.metadata["nbgrader"]
    assert t["grade"] and t["locked"] and t["points"] > 0 and not t["solution"]
    visible, _, hidden = test.source.partition("### BEGIN HIDDEN TESTS")
    assert "assert " in visible and "tdlcourse" not in visible, "the visible test must not name the reference"
    assert "from tdlcheck import check" in hidden and 'against="tdlcourse.' in hidden
    w = meta["yourturn-written"][1]
    assert w.cell_type == "markdown" and w.metadata["nbgrader"]["grade"] and w.metadata["nbgrader"]["solution"]
    assert w.metadata["nbgrader"]["points"] > 0
    last = nb.cells[-1]
    assert last.cell_type == "code" and "time.perf_counter()" in last.source and "print(" in last.source, \
        f"{path.name}: the last cell must print the lab's running time"


@pytest.mark.parametrize("path", GRADED_LABS, ids=lambda p: p.name)
def test_graded_cells_run_without_tdlcourse(path, tmp_path):
    """The grader runs only the graded cells, in a kernel without tdlcourse: the solution and its
    tests (hidden tests emit their outputs as data, TDL_CHECK_MODE=emit) run with tdlcourse blocked."""
    import json
    import subprocess
    import sys

    code = "\n\n".join(c.source for c in _graded_cells(nbformat.read(path, as_version=4)))
    script = tmp_path / "graded.py"
    script.write_text(
        "import sys\nsys.modules['tdlcourse'] = None  # `import tdlcourse` raises\n"
        "import IPython.display\n_records = []\n"
        "IPython.display.display = lambda obj, raw=False: _records.append(obj)\n"
        + code + "\n\nimport json\nprint(json.dumps([r['application/vnd.tdl.check+json'] for r in _records]))\n")
    env = {**os.environ, "TDL_CHECK_MODE": "emit"}
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, f"{path.name}: the graded cells failed without tdlcourse:\n{r.stderr[-3000:]}"
    records = json.loads(r.stdout.strip().splitlines()[-1])
    assert records, f"{path.name}: no hidden check emitted its outputs"
    for rec in records:
        errors = [o["error"] for o in rec["outputs"] if "error" in o]
        assert not errors and rec["n"] == len(rec["outputs"]) > 0, f"{rec['name']}: {errors[:3]}"


@pytest.mark.slow
@pytest.mark.xdist_group("nbgrader")
@pytest.mark.parametrize("path", GRADED_LABS, ids=lambda p: p.name)
def test_lab_round_trips_through_nbgrader(path, tmp_path, monkeypatch):
    """A lab works as an nbgrader assignment (source/labNN/labNN.ipynb): generate_assignment
    succeeds, the release holds no solution or hidden test and is what the book shows (book/_ext
    makes the same student version); at TDL_SCALE=ci the source scores full autograded marks and
    the release scores 0 (~45 s)."""
    import shutil
    import subprocess

    from nbgrader.api import Gradebook

    from conftest import tool

    monkeypatch.syspath_prepend(str(ROOT / "book" / "_ext"))
    from tdl_student import student_version

    name = "lab" + path.name.split("_")[0]
    course = tmp_path / "course"
    (course / "source" / name).mkdir(parents=True)
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", course)
    shutil.copy(path, course / "source" / name / f"{name}.ipynb")
    env = {**os.environ, "TDL_SCALE": "ci", "TDL_STATIC": "1"}

    def nbgrader(*args):
        r = subprocess.run([tool("nbgrader"), *args], cwd=course, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"

    for student in ("good_student", "blank_student"):
        nbgrader("db", "student", "add", student)
    nbgrader("db", "assignment", "add", name)
    nbgrader("generate_assignment", name, "--force")
    released = course / "release" / name / f"{name}.ipynb"
    text = released.read_text()
    for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "tdlcheck"):
        assert marker not in text, f"{name} released with {marker!r}"
    rel = nbformat.read(released, as_version=4)
    book = student_version(nbformat.read(path, as_version=4), skip_tag=None)
    assert [c.source for c in rel.cells] == [c.source for c in book.cells], \
        "the book's student version differs from nbgrader's release"
    for student, src in (("good_student", path), ("blank_student", released)):
        dest = course / "submitted" / student / name
        dest.mkdir(parents=True)
        shutil.copy(src, dest / f"{name}.ipynb")
        (dest / "timestamp.txt").write_text("2026-11-22 12:00:00.000000 UTC")
    nbgrader("autograde", name, "--force")
    total = sum(c.metadata["nbgrader"].get("points", 0) for c in rel.cells
                if c.cell_type == "code" and c.metadata.get("nbgrader", {}).get("grade"))
    assert total > 0
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for student, want in (("good_student", total), ("blank_student", 0.0)):
            sub = gb.find_submission_notebook(name, name, student)
            auto = sum(g.score for g in sub.grades if g.auto_score is not None and g.cell.cell_type == "code")
            assert auto == pytest.approx(want), f"{student} scored {auto} of {total} on {name}"
