"""A lab as a graded assignment: `tdl release lab01` from labs/ (one source), students fetch it from
a real exchange and submit, `tdl collect`, `tdl grade --jobs 2` (only the graded cells run, in the
sandbox without tdlcourse), `tdl feedback`; the released lab holds no solution and no hidden test.

Oracles: the honest student scores the autograded points of the Your-turn task, the blank one 0,
the written answer waits for a human, and the experiment cells were not re-run by the grader.
"""

from __future__ import annotations

import subprocess

import nbformat
import pytest

from conftest import BIN, ROOT, student_app, tdl_env

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("labgrading")]
LAB = next((ROOT / "labs").glob("01_*.ipynb"))
STUDENTS = ("honest", "blank")


def _tdl(env, *args):
    r = subprocess.run([str(BIN / "tdl"), *args], env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"tdl {' '.join(args)} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _graded(nb):
    return {c.metadata["nbgrader"]["grade_id"]: c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id")}


@pytest.fixture(scope="module")
def lab_term(course_copy):
    from nbgrader.exchange.default import ExchangeFetchAssignment, ExchangeFetchFeedback, ExchangeSubmit

    course = course_copy("labterm", source=False)
    work = course.parent
    env = tdl_env(TDL_COURSE=str(course), TDL_LABS=str(ROOT / "labs"), TDL_SCALE="ci")
    roster = work / "roster.csv"
    roster.write_text("id,first_name,last_name,email\n" + "".join(f"{s},{s},S,{s}@x.example\n" for s in STUDENTS))
    _tdl(env, "roster", "import", str(roster))
    out = {"course": course, "release": _tdl(env, "release", "lab01")}
    source = nbformat.read(LAB, as_version=4)
    for sid in STUDENTS:
        home = work / "students" / sid
        home.mkdir(parents=True)
        student_app(ExchangeFetchAssignment, course, home, sid, "lab01").start()
        path = home / "tdl" / "lab01" / "lab01.ipynb"
        out[f"fetched_{sid}"] = path.read_text()
        if sid == "honest":
            nb = nbformat.read(path, as_version=4)
            src = _graded(source)
            for gid, c in _graded(nb).items():
                meta = c.metadata["nbgrader"]
                if meta.get("solution"):
                    c.source = src[gid].source
            nbformat.write(nb, path)
        student_app(ExchangeSubmit, course, home, sid, "lab01").start()
    out["collect"] = _tdl(env, "collect", "lab01")
    out["grade"] = _tdl(env, "grade", "lab01", "--jobs", "2", "--no-progress")
    out["feedback"] = _tdl(env, "feedback", "lab01", "--partial")  # the written answer waits for a human
    student_app(ExchangeFetchFeedback, course, work / "students" / "honest", "honest", "lab01").start()
    out["feedback_files"] = list((work / "students" / "honest" / "tdl" / "lab01" / "feedback").rglob("*.html"))
    return out


def test_release_comes_from_labs_and_holds_no_solution(lab_term):
    course = lab_term["course"]
    assert (course / "source" / "lab01" / "lab01.ipynb").read_bytes() == LAB.read_bytes()
    text = lab_term["fetched_blank"]
    assert "Your turn" in text and "YOUR CODE HERE" in text
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "tdlcheck", "against=", "Model answer"):
        assert secret not in text, secret


def test_lab_scores(lab_term):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{lab_term['course'] / 'gradebook.db'}") as gb:
        test = gb.find_grade("yourturn-test", "lab01", "lab01", "honest")
        assert test.score == test.max_score > 0
        assert gb.find_grade("yourturn-test", "lab01", "lab01", "blank").score == 0
        written = gb.find_grade("yourturn-written", "lab01", "lab01", "honest")
        assert written.needs_manual_grade and written.manual_score is None
    assert "FLAGGED" not in lab_term["grade"].stdout, lab_term["grade"].stdout


def test_only_graded_cells_ran(lab_term):
    nb = nbformat.read(lab_term["course"] / "autograded" / "honest" / "lab01" / "lab01.ipynb", as_version=4)
    graded = _graded(nb)
    assert graded["yourturn-imports"].get("execution_count") and graded["yourturn-solution"].get("execution_count")
    assert any("trusted check" in o.get("text", "") for o in graded["yourturn-test"].outputs)
    experiments = [c for c in nb.cells if c.cell_type == "code" and not c.metadata.get("nbgrader")]
    assert experiments and all(not c.outputs and not c.get("execution_count") for c in experiments)


def test_feedback_reaches_the_student(lab_term):
    assert lab_term["feedback_files"], lab_term["feedback"].stdout
    html = lab_term["feedback_files"][0].read_text()
    assert "trusted check" in html
