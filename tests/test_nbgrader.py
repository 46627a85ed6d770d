"""nbgrader round trip in a temporary copy of the course, for every assignment in source/:
generate_assignment; the release has no solution and no hidden test; the source submitted as a
student scores full marks on the autograded cells; the untouched release scores 0; export writes a
CSV with both students."""

from __future__ import annotations

import csv
import shutil
import subprocess

import nbformat
import pytest

from conftest import ROOT, tool

ASSIGNMENTS = sorted(p.name for p in (ROOT / "assignments" / "source").iterdir() if p.is_dir())
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("nbgrader")]


def nbgrader(course, *args):
    r = subprocess.run([tool("nbgrader"), *args], cwd=course, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"nbgrader {' '.join(args)} failed:\n{r.stdout}\n{r.stderr}"
    return r


@pytest.fixture(scope="module")
def graded_course(course_copy):
    course = course_copy("nbgrader")
    for student in ("good_student", "blank_student"):
        nbgrader(course, "db", "student", "add", student)
    for a in ASSIGNMENTS:
        nbgrader(course, "db", "assignment", "add", a)
        nbgrader(course, "generate_assignment", a, "--force")
        for nb in (course / "source" / a).glob("*.ipynb"):
            for student, src in (("good_student", nb), ("blank_student", course / "release" / a / nb.name)):
                dest = course / "submitted" / student / a
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(src, dest / nb.name)
                (dest / "timestamp.txt").write_text("2026-11-22 12:00:00.000000 UTC")
        nbgrader(course, "autograde", a, "--force")
    nbgrader(course, "export", "--to", str(course / "grades.csv"))
    return course


def _autograded_points(nb_path):
    nb = nbformat.read(nb_path, as_version=4)
    return sum(c.metadata["nbgrader"].get("points", 0) for c in nb.cells
               if c.metadata.get("nbgrader", {}).get("grade") and c.cell_type == "code")


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_has_no_solution_or_hidden_tests(graded_course, assignment):
    released = list((graded_course / "release" / assignment).glob("*.ipynb"))
    assert released, f"no released notebook for {assignment}"
    for nb_path in released:
        text = nb_path.read_text()
        for marker in ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS", "from tdlcourse"):
            assert marker not in text, f"{nb_path.name} released with {marker!r}"
        # the solution bodies themselves are gone, not only the markers
        source = nbformat.read(graded_course / "source" / assignment / nb_path.name, as_version=4)
        for cell in source.cells:
            meta = cell.metadata.get("nbgrader", {})
            if meta.get("solution") and "### BEGIN SOLUTION" in cell.source:
                body = cell.source.split("### BEGIN SOLUTION")[1].split("### END SOLUTION")[0].strip()
                assert body not in text, f"{nb_path.name}: solution of {meta['grade_id']} leaked"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_scores(graded_course, assignment):
    from nbgrader.api import Gradebook

    for nb_path in (graded_course / "source" / assignment).glob("*.ipynb"):
        total = _autograded_points(nb_path)
        assert total > 0, f"{nb_path.name} has no autograded points"
        with Gradebook(f"sqlite:///{graded_course / 'gradebook.db'}") as gb:
            for student, want in (("good_student", total), ("blank_student", 0.0)):
                sub = gb.find_submission_notebook(nb_path.stem, assignment, student)
                auto = sum(g.score for g in sub.grades if g.auto_score is not None and g.cell.cell_type == "code")
                assert auto == pytest.approx(want), f"{student} scored {auto} of {total} on {assignment}/{nb_path.name}"


def test_export_has_both_students(graded_course):
    rows = list(csv.DictReader(open(graded_course / "grades.csv")))
    students = {r["student_id"] for r in rows}
    assert {"good_student", "blank_student"} <= students
    assert {r["assignment"] for r in rows} == set(ASSIGNMENTS)
    scores = {r["student_id"]: float(r["raw_score"]) for r in rows}
    assert scores["good_student"] > scores["blank_student"] == 0.0
