"""A whole term with the `tdl` command on a temporary copy of the course, with a real exchange
directory and real nbgrader: roster, release, students fetch and submit (nbgrader's exchange API),
collect, grade (twice), feedback with solutions, students fetch feedback, export, report.

The class: three honest students (one with a wrong answer) and one hostile or broken submission
of every kind the grader must survive. Oracles: every score is known in advance from the answers
(hw01's autograded cells are worth 2, 1 and 3 points); the gradebook passes SQLite's and
nbgrader's integrity checks; a second `tdl grade` changes no byte of the gradebook's grades or of
the graded notebooks.
"""

from __future__ import annotations

import csv
import functools
import json
import os
import shutil
import subprocess
import sys

import nbformat
import pytest

from conftest import BIN, IN_CI, ROOT, fill_solutions, student_app, tdl_env

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]



@functools.lru_cache(maxsize=None)
def sandboxed() -> bool:
    """Whether `tdl grade` will isolate kernels here (root, mount namespaces, a reachable Python)."""
    import tempfile

    from tdlcourse.grading import sandbox as sb

    if os.geteuid() != 0:
        return False
    root = tempfile.mkdtemp(prefix="tdl-probe-")
    os.chmod(root, 0o711)
    try:
        with sb.reserve_uids(1) as base:
            return sb.probe(sb.default_plan(["/nonexistent"], root, uid_base=base), root, []).mode != "none"
    finally:
        shutil.rmtree(root, ignore_errors=True)

HONEST = {"good1": 6.0, "good2": 3.0, "good3": 6.0}
# student -> expected autograded cell scores (q1, q2, q3)
EXPECTED = {
    "good1": (2, 1, 3), "good2": (2, 1, 0), "good3": (2, 1, 3),
    "loop": (0, 1, 3),      # infinite loop in q1 only: that cell times out, the rest is graded
    "crash": (2, 1, 0),     # os._exit while q3's test runs: q3 scores 0, q1 and q2 keep their points
    "spam": (2, 1, 3),      # 100 MB of prints: stopped early (else d_vacuous = -1 and q2 fails)
    "deleted": (2, 1, 3),   # q3's test cell deleted: re-added from the gradebook and graded
    "edited": (0, 1, 3),    # q1's test replaced by `pass` with a wrong vc_gap: restored, caught
    "snoop": (2, 1, 3),     # tries to read source/, the gradebook, others' work: finds nothing
    "renamed": (0, 0, 0),   # submitted hw01-Copy1.ipynb: no hw01.ipynb, scored 0
    "intruder": (0, 0, 0),  # corrupted JSON, and not on the roster
}
ROSTER = [s for s in EXPECTED if s != "intruder"]


def _cell(nb, gid):
    return next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == gid)


def _edit(student, nb, course):
    if student == "good2":
        _cell(nb, "q3-solution").source = "def rademacher_linear(X):\n    return 0.0\n"
    elif student == "loop":
        c = _cell(nb, "q1-solution")
        c.source = c.source.replace("    ### BEGIN SOLUTION",
                                    "    if d == 100 and m == 1797:\n        while True:\n            pass\n"
                                    "    ### BEGIN SOLUTION")
    elif student == "crash":
        c = _cell(nb, "q3-solution")
        c.source = c.source.replace("    X = np.asarray", "    import os\n    os._exit(1)\n    X = np.asarray")
    elif student == "spam":
        # ~100 MB if it ran to the end (10**7 lines); the cap must stop it long before.
        _cell(nb, "q2-solution").source += "\nfor _i in range(10**7):\n    print(f'{_i:09d}')\nd_vacuous = -1\n"
    elif student == "deleted":
        nb.cells.remove(_cell(nb, "q3-test"))
    elif student == "edited":
        c = _cell(nb, "q1-solution")
        c.source = c.source.replace("    ### BEGIN SOLUTION",
                                    "    if (d, m) == (100, 1797):\n        return 0.0\n    ### BEGIN SOLUTION")
        _cell(nb, "q1-test").source = "pass"
        _cell(nb, "q3-test").metadata["nbgrader"]["points"] = 100
        _cell(nb, "intro").source = "# I wrote this assignment"
    elif student == "snoop":
        targets = {"abs": [str(course / "source" / "hw01" / "hw01.ipynb"), str(course / "gradebook.db"),
                           str(course / "submitted" / "good1" / "hw01" / "hw01.ipynb"),
                           str(course / "autograded" / "good1" / "hw01" / "hw01.ipynb"),
                           str(course / "nbgrader_config.py")],
                   "rel": ["../../../source/hw01/hw01.ipynb", "../../../gradebook.db",
                           "../../good1/hw01/hw01.ipynb", "../../../../source/hw01/hw01.ipynb",
                           "../../../../gradebook.db"]}
        # Writing into the gradebook is only attempted where the sandbox must stop it.
        write = [str(course / "gradebook.db")] if sandboxed() else []
        _cell(nb, "q2-solution").source = (
            "import json\n"
            f"_targets = {json.dumps(targets)}\n"
            "_found = {}\n"
            "for _kind, _paths in _targets.items():\n"
            "    for _p in _paths:\n"
            "        try:\n"
            "            with open(_p, 'rb') as _fh:\n"
            "                _fh.read(64)\n"
            "            _found.setdefault(_kind, []).append(_p)\n"
            "        except OSError:\n"
            "            pass\n"
            f"for _p in {json.dumps(write)}:\n"
            "    try:\n"
            "        with open(_p, 'r+b') as _fh:\n"
            "            _fh.write(b'corrupted by a student')\n"
            "        _found.setdefault('written', []).append(_p)\n"
            "    except OSError:\n"
            "        pass\n"
            "print('FOUND=' + json.dumps(_found, sort_keys=True))\n"
            "d_vacuous = next(d for d in range(1, 1259) if vc_gap(d, 1258, 0.05) >= 1) if not _found else -1\n"
        )
    return nb


def _tdl(env, *args, check=True):
    r = subprocess.run([str(BIN / "tdl"), *args], env=env, capture_output=True, text=True, timeout=600)
    if check:
        assert r.returncode == 0, f"tdl {' '.join(args)} -> {r.returncode}\n{r.stdout}\n{r.stderr}"
    return r


def _gradebook_snapshot(course):
    from nbgrader.api import Gradebook

    rows = []
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        for a in gb.assignments:
            for sub in a.submissions:
                for nb in sub.notebooks:
                    for g in nb.grades:
                        rows.append((sub.student.id, nb.notebook.name, g.cell.name, g.auto_score, g.manual_score,
                                     g.needs_manual_grade))
                rows.append((sub.student.id, "timestamp", str(sub.timestamp)))
    return sorted(rows, key=str)


def _files_snapshot(directory):
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


# The term in stages, one module-scoped fixture each: a failing stage errors only the tests that
# need it (a broken feedback step leaves the grading tests standing).


@pytest.fixture(scope="module")
def released(course_copy):
    """Roster imported twice, hw01 released (with its ci-scale check)."""
    course = course_copy("term")
    work = course.parent
    env = tdl_env(TDL_COURSE=str(course))
    roster = work / "roster.csv"
    roster.write_text("id,First Name,Last Name,Email\n" + "".join(f"{s},{s.title()},Student,{s}@uni.example\n"
                                                              for s in ROSTER))
    out = {"course": course, "env": env, "work": work}
    out["roster1"] = _tdl(env, "roster", "import", str(roster))
    out["roster2"] = _tdl(env, "roster", "import", str(roster))
    out["release"] = _tdl(env, "release", "hw01", "--due", "2026-01-15 17:00")
    return out


@pytest.fixture(scope="module")
def collected(released):
    """Every student fetched, edited and submitted through the exchange; tdl collect."""
    from nbgrader.exchange.default import ExchangeFetchAssignment, ExchangeSubmit

    course, work, out = released["course"], released["work"], dict(released)
    source = nbformat.read(course / "source" / "hw01" / "hw01.ipynb", as_version=4)
    for sid in EXPECTED:
        home = work / "students" / sid
        home.mkdir(parents=True)
        student_app(ExchangeFetchAssignment, course, home, sid, "hw01").start()
        path = home / "tdl" / "hw01" / "hw01.ipynb"
        if sid == "good1":
            out["fetched"] = path.read_text()
        nb = _edit(sid, fill_solutions(nbformat.read(path, as_version=4), source), course)
        nbformat.write(nb, path)
        if sid == "renamed":
            path.rename(path.with_name("hw01-Copy1.ipynb"))
        if sid == "intruder":
            path.write_text(path.read_text()[:5000])  # truncated JSON
        student_app(ExchangeSubmit, course, home, sid, "hw01").start()
    out["collect"] = _tdl(released["env"], "collect", "hw01")
    return out


@pytest.fixture(scope="module")
def term(collected):
    """Graded twice (snapshots of the gradebook and the graded files after each run)."""
    out, env, course = dict(collected), collected["env"], collected["course"]
    out["grade1"] = _tdl(env, "grade", "hw01", "--jobs", "2", "--cell-timeout", "5", "--timeout", "120",
                         "--no-progress", check=False)
    out["db1"] = _gradebook_snapshot(course)
    out["files1"] = _files_snapshot(course / "autograded")
    out["grade2"] = _tdl(env, "grade", "hw01", "--jobs", "2", "--no-progress", check=False)
    out["db2"] = _gradebook_snapshot(course)
    out["files2"] = _files_snapshot(course / "autograded")
    return out


@pytest.fixture(scope="module")
def fed_back(term):
    """Feedback with solutions released; two students fetch it; export and report."""
    from nbgrader.exchange.default import ExchangeFetchFeedback

    out, env, course, work = dict(term), term["env"], term["course"], term["work"]
    out["feedback"] = _tdl(env, "feedback", "hw01", "--with-solutions")
    for sid in ("good1", "loop"):
        student_app(ExchangeFetchFeedback, course, work / "students" / sid, sid, "hw01").start()
    out["export"] = _tdl(env, "export", str(work / "grades.csv"))
    out["report"] = _tdl(env, "report", "hw01")
    return out


def _scores(course, student):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        return tuple(gb.find_grade(c, "hw01", "hw01", student).score for c in ("q1-test", "q2-test", "q3-test"))


def test_roster_import_is_idempotent(released):
    assert f"{len(ROSTER)} added, 0 updated, 0 unchanged" in released["roster1"].stdout
    assert "nothing changed" in released["roster2"].stdout and f"{len(ROSTER)} unchanged" in released["roster2"].stdout


def test_release_reaches_students_without_solutions(collected):
    text = collected["fetched"]
    assert "rademacher_linear" in text and "BEGIN SOLUTION" not in text and "HIDDEN TESTS" not in text
    assert "itertools.product" not in text  # the solution body itself


def test_collect_reports_late_and_unknown(collected):
    out = collected["collect"].stdout
    assert f"{len(EXPECTED)} submission(s)" in out
    assert "not on the roster (collected anyway): intruder" in out
    assert "late:" in out  # the due date was in January


def test_grade_run_succeeded_and_is_isolated(term):
    r = term["grade1"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{len(EXPECTED)} graded, 0 unchanged" in r.stdout
    assert "gradebook integrity: ok" in r.stdout
    if sandboxed():
        assert "sandbox: unprivileged uid" in r.stdout and "private mount namespace" in r.stdout, r.stdout + r.stderr
    else:
        assert "warning:" in r.stderr and ("not running as root" in r.stderr or "not available" in r.stderr)


@pytest.mark.parametrize("student", sorted(EXPECTED))
def test_every_submission_gets_its_expected_score(term, student):
    if student == "snoop" and not sandboxed():
        _no_sandbox()
    assert _scores(term["course"], student) == EXPECTED[student]


def test_broken_submissions_are_explained(term):
    out = term["grade1"].stdout
    lines = {s: [ln for ln in out.splitlines() if ln.strip().startswith(f"{s}:")] for s in EXPECTED}
    assert any("q1-test: timeout" in ln for ln in lines["loop"])
    assert any("q3-test: kernel died" in ln for ln in lines["crash"])
    assert any("q2-solution: output limit" in ln for ln in lines["spam"])
    assert any("Missing grade cell q3-test" in ln for ln in lines["deleted"])
    assert any("locked cell q1-test was edited" in ln for ln in lines["edited"])
    assert any("'points' for cell q3-test" in ln for ln in lines["edited"])
    assert any("hw01.ipynb was not submitted" in ln and "hw01-Copy1.ipynb" in ln for ln in lines["renamed"])
    assert any("not a valid notebook" in ln for ln in lines["intruder"])
    assert any("not on the roster" in ln for ln in lines["intruder"])
    for s in HONEST:  # honest work raises no flag (test cells differ from the release only by hidden tests)
        assert lines[s] == [], lines[s]


def test_runaway_output_is_capped(term):
    path = term["course"] / "autograded" / "spam" / "hw01" / "hw01.ipynb"
    assert path.stat().st_size < 300_000  # 1 MB per cell at most during execution, then nbgrader's 1000 lines
    nb = nbformat.read(path, as_version=4)
    outputs = _cell(nb, "q2-solution").outputs
    assert any(o.get("ename") == "OutputLimitExceeded" for o in outputs)


def _no_sandbox():
    if IN_CI and os.geteuid() == 0:
        pytest.fail("CI runs as root: the grading sandbox must be available (see `tdl grade` warnings)")
    pytest.skip("no grading sandbox here (needs root and mount namespaces): a kernel can read absolute paths")


def test_snoop_found_nothing(term):
    if not sandboxed():
        _no_sandbox()
    nb = nbformat.read(term["course"] / "autograded" / "snoop" / "hw01" / "hw01.ipynb", as_version=4)
    text = "".join(o.get("text", "") for o in _cell(nb, "q2-solution").outputs)
    assert "FOUND={}" in text, text


def test_gradebook_integrity(term):
    sys.path.insert(0, str(ROOT / "src"))
    from tdlcourse.grading.autograde import check_gradebook
    from tdlcourse.grading.course import load_course

    report = check_gradebook(load_course(term["course"]), "hw01")
    assert report.ok, report.problems


def test_grading_twice_changes_nothing(term):
    r = term["grade2"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"0 graded, {len(EXPECTED)} unchanged" in r.stdout
    assert term["db1"] == term["db2"]
    assert term["files1"] == term["files2"]
    first, second = _table(term["grade1"].stdout), _table(r.stdout)
    assert {s: row[:-1] for s, row in first.items()} == {s: row[:-1] for s, row in second.items()}
    assert {row[-1] for row in second.values()} == {"skipped"}


def _table(stdout):
    """The summary table of `tdl grade`: student -> [cell scores..., total, status]."""
    lines = stdout.split("\n\n")[0].splitlines()[2:]
    return {ln.split()[0]: ln.split()[1:] for ln in lines}


def test_feedback_with_solutions_reaches_students(fed_back):
    assert f"released to {len(EXPECTED) - 2} student(s) with the model solution" in fed_back["feedback"].stdout
    for sid in ("good1", "loop"):
        pages = list((fed_back["work"] / "students" / sid / "tdl" / "hw01" / "feedback").rglob("hw01.html"))
        assert len(pages) == 1, pages
        html = pages[0].read_text()
        assert "tdl-model-solution" in html and "Model answer" in html  # q4's model answer, never released before
        assert ("Score: 4.0 / 9.0" if sid == "loop" else "Score: 6.0 / 9.0") in html


def test_solutions_refused_before_due_date(term):
    import datetime as dt

    from tdlcourse.grading.course import CourseError, load_course
    from tdlcourse.grading.release import feedback

    with pytest.raises(CourseError, match="only after the due date"):
        feedback(load_course(term["course"]), "hw01", with_solutions=True, now=dt.datetime(2026, 1, 1))


def test_export(fed_back):
    rows = list(csv.DictReader(open(fed_back["work"] / "grades.csv")))
    by_id = {r["student_id"]: r for r in rows}
    assert set(by_id) == set(EXPECTED)
    for sid, cells in EXPECTED.items():
        if sid == "snoop" and not sandboxed():
            continue
        assert float(by_id[sid]["raw_score"]) == pytest.approx(sum(cells)), sid
        assert float(by_id[sid]["max_score"]) == 9.0


def test_report(fed_back):
    html = (fed_back["course"] / "reports" / "hw01.html").read_text()
    for cell in ("q1-test", "q2-test", "q3-test", "autograded total"):
        assert cell in html
    assert html.count('class="plotly-graph-div"') == 4
    import re

    assert not re.search(r"""<(script|link)[^>]+(src|href)=["']?(https?:)?//""", html)  # offline: plotly.js inlined
    assert "Plotly.newPlot" in html
    assert "OutputLimitExceeded" not in html and "output limit" in html  # the problems table


def test_a_grader_failure_keeps_previous_grades_and_files(term, tmp_path, monkeypatch):
    # A kernel that cannot start (here: a broken `python3` kernelspec found first on JUPYTER_PATH)
    # is the grader's failure, not the student's: nothing of the earlier grading may be lost.
    from tdlcourse.grading.autograde import format_run, grade
    from tdlcourse.grading.course import load_course

    spec = tmp_path / "kernels" / "python3"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({"argv": ["/nonexistent/python", "-f", "{connection_file}"],
                                                  "display_name": "broken", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path))
    course = term["course"]
    before_db, before_files = _gradebook_snapshot(course), _files_snapshot(course / "autograded")
    run = grade(load_course(course), "hw01", students=["good1"], force=True, progress=False)
    assert run.errors == ("good1",) and not run.ok
    assert "NOT GRADED: kernel did not start" in format_run(run)
    assert _gradebook_snapshot(course) == before_db
    assert _files_snapshot(course / "autograded") == before_files
    assert _scores(course, "good1") == EXPECTED["good1"]
