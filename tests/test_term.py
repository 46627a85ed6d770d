"""The oral exam and the final grades (tdlcourse.grading.term, `tdl exam import`, `tdl export
--final/--weights`). The oracle of the final grades is a hand computation written out as
arithmetic below, on a gradebook built through nbgrader's API with real grade cells, late
penalties and one missing lab and one missing exam score. Bad exam files and bad weights are
refused with a message naming the value (and the lines), leaving exam.json byte for byte as it was."""

from __future__ import annotations

import csv
import shutil

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.xdist_group("term")]

# assignment -> [(cell, max score, cell type)]
CELLS = {"hw01": [("q1", 2, "code"), ("q2", 4, "markdown")], "hw02": [("q1", 4, "code")],
         "lab01": [("t1", 10, "code")], "lab02": [("t1", 5, "code")], "extra01": [("q1", 1, "code")]}
# student -> assignment -> (score per cell, late penalty); an absent assignment: no submission
WORK = {"ada": {"hw01": ((2, 3), 0), "hw02": ((4,), 0), "lab01": ((8,), 0), "lab02": ((5,), 1), "extra01": ((1,), 0)},
        "bob": {"hw01": ((1, 2), 1), "hw02": ((2,), 0), "lab02": ((3,), 0)},
        "cyd": {"hw01": ((2, 4), 0), "hw02": ((1,), 0), "lab01": ((10,), 0), "lab02": ((2,), 3)}}
NAMES = {"ada": ("Lovelace", "Ada", "ada@x.org"), "bob": ("B, Jr.", "Bob", None), "cyd": ("C", "Cyd", "c@x.org")}
EXAM_CSV = "Student_ID,Score,Examiner note\nada,90,\"clear, precise\"\nbob,70,\n"


def build_gradebook(url, assignments=CELLS, work=WORK):
    from nbgrader.api import Gradebook

    with Gradebook(url, "tdl") as gb:
        for a, cells in assignments.items():
            gb.add_assignment(a)
            gb.add_notebook(a, a)
            for name, max_score, kind in cells:
                gb.add_grade_cell(name, a, a, max_score=max_score, cell_type=kind)
        for sid, (last, first, email) in NAMES.items():
            gb.add_student(sid, last_name=last, first_name=first, email=email)
        for sid, subs in work.items():
            for a, (scores, penalty) in subs.items():
                if a not in assignments:
                    continue
                with gb.db.no_autoflush:
                    gb.add_submission(a, sid)
                for (name, _, kind), score in zip(assignments[a], scores):
                    grade = gb.find_grade(name, a, a, sid)
                    setattr(grade, "auto_score" if kind == "code" else "manual_score", score)
                gb.find_submission_notebook(a, a, sid).late_submission_penalty = penalty
        gb.db.commit()


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    root = tmp_path_factory.mktemp("term") / "course"
    root.mkdir()
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", root)
    build_gradebook(f"sqlite:///{root / 'gradebook.db'}")
    return root


@pytest.fixture
def course(template, tmp_path, monkeypatch):
    for name in ("TDL_EXCHANGE", "TDL_GRADEBOOK", "TDL_COURSE", "TDL_COURSE_ID"):
        monkeypatch.delenv(name, raising=False)
    root = shutil.copytree(template, tmp_path / "course")
    return root


def load(root):
    from tdlcourse.grading.course import load_course

    return load_course(root)


def write(tmp_path, text, name="exam.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def read_csv(path):
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        return reader.fieldnames, {r["student_id"]: r for r in reader}


def tdl(*args):
    from tdlcourse.grading.cli import main

    return main(list(args))


def test_config_holds_the_defaults(course):
    from tdlcourse.grading import term

    c = load(course)
    assert term.components(c) == term.DEFAULT_COMPONENTS == {"labs": "lab*", "assignments": "hw*"}
    assert term.course_weights(c) == term.DEFAULT_WEIGHTS == {"labs": 0.2, "assignments": 0.3, "exam": 0.5}
    assert term.exam_max_score(c) == term.DEFAULT_EXAM_MAX == 100


def test_final_grades_match_a_hand_computation(course, tmp_path):
    """A term of 3 students with one missing lab (bob, lab01) and one missing exam score (cyd)."""
    from tdlcourse.grading.term import export_final, import_exam

    c = load(course)
    import_exam(c, write(tmp_path, EXAM_CSV))
    r = export_final(c, tmp_path / "final.csv")
    # by hand: points = max(0, score - penalty); component = mean of points / max; exam = points / 100
    ada = dict(labs=(8 / 10 + (5 - 1) / 5) / 2, assignments=((2 + 3) / 6 + 4 / 4) / 2, exam=90 / 100)
    bob = dict(labs=(0 / 10 + 3 / 5) / 2, assignments=((1 + 2 - 1) / 6 + 2 / 4) / 2, exam=70 / 100)
    cyd = dict(labs=(10 / 10 + max(0, 2 - 3) / 5) / 2, assignments=((2 + 4) / 6 + 1 / 4) / 2, exam=0 / 100)
    assert ada == pytest.approx(dict(labs=0.8, assignments=0.9166667, exam=0.9))
    assert bob == pytest.approx(dict(labs=0.3, assignments=0.4166667, exam=0.7))
    assert cyd == pytest.approx(dict(labs=0.5, assignments=0.625, exam=0.0))
    final = {"ada": 0.2 * 0.8 + 0.3 * (11 / 12) + 0.5 * 0.9,      # 0.885
             "bob": 0.2 * 0.3 + 0.3 * (5 / 12) + 0.5 * 0.7,       # 0.535
             "cyd": 0.2 * 0.5 + 0.3 * 0.625 + 0.5 * 0.0}          # 0.2875
    assert final == pytest.approx({"ada": 0.885, "bob": 0.535, "cyd": 0.2875})

    header, rows = read_csv(tmp_path / "final.csv")
    assert header == ["student_id", "last_name", "first_name", "email", "hw01 (of 6)", "hw02 (of 4)",
                      "lab01 (of 10)", "lab02 (of 5)", "exam (of 100)", "labs", "assignments", "exam",
                      "final", "final_percent", "missing", "needs_manual_grading"]
    assert sorted(rows) == ["ada", "bob", "cyd"]
    for sid, expected in (("ada", ada), ("bob", bob), ("cyd", cyd)):
        row = rows[sid]
        for comp, value in expected.items():
            assert float(row[comp]) == pytest.approx(value, abs=1e-6), (sid, comp)
        assert float(row["final"]) == pytest.approx(final[sid], abs=1e-6), sid
        assert float(row["final_percent"]) == pytest.approx(100 * final[sid], abs=0.005), sid
    assert [rows["ada"][k] for k in ("hw01 (of 6)", "hw02 (of 4)", "lab01 (of 10)", "lab02 (of 5)",
                                     "exam (of 100)")] == ["5", "4", "8", "4", "90"]
    assert rows["bob"]["lab01 (of 10)"] == "" and rows["bob"]["hw01 (of 6)"] == "2"
    assert rows["cyd"]["lab02 (of 5)"] == "0" and rows["cyd"]["exam (of 100)"] == ""
    assert {sid: row["missing"] for sid, row in rows.items()} == {"ada": "", "bob": "lab01", "cyd": "exam"}
    assert (rows["bob"]["last_name"], rows["bob"]["email"]) == ("B, Jr.", "")  # quoted comma, no email
    assert r.missing == (("bob", ("lab01",)), ("cyd", ("exam",)))
    assert r.grades.ignored == ("extra01",)  # matches no component: not counted
    assert [row["student_id"] for row in r.rows] == ["ada", "bob", "cyd"]


def test_other_weights_and_a_component_left_out(course, tmp_path):
    from tdlcourse.grading.course import CourseError
    from tdlcourse.grading.term import final_grades

    c = load(course)
    g = final_grades(c, "labs=0.5,assignments=0.5,exam=0")  # no exam imported: fine with weight 0
    assert {s.student_id: s.final for s in g.students} == pytest.approx(
        {"ada": 0.5 * 0.8 + 0.5 * (11 / 12), "bob": 0.5 * 0.3 + 0.5 * (5 / 12), "cyd": 0.5 * 0.5 + 0.5 * 0.625})
    assert g.missing == (("bob", ("lab01",)),)  # the exam is not missing work when it does not count
    with pytest.raises(CourseError, match=r"the exam has weight 0.5 but no exam score was imported"):
        final_grades(c)


def test_a_component_with_no_assignment(tmp_path, monkeypatch):
    from tdlcourse.grading.course import CourseError
    from tdlcourse.grading.term import final_grades, import_exam

    monkeypatch.delenv("TDL_GRADEBOOK", raising=False)
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", root)
    build_gradebook(f"sqlite:///{root / 'gradebook.db'}", {a: CELLS[a] for a in ("hw01", "hw02")})
    c = load(root)
    import_exam(c, write(tmp_path, EXAM_CSV))
    with pytest.raises(CourseError, match=r"component\(s\) labs have a weight but no assignment in the "
                                          r"gradebook \(patterns labs='lab\*'\)"):
        final_grades(c)
    g = final_grades(c, {"labs": 0, "assignments": 0.5, "exam": 0.5})
    assert {s.student_id: s.final for s in g.students} == pytest.approx(
        {"ada": 0.5 * (11 / 12) + 0.5 * 0.9, "bob": 0.5 * (5 / 12) + 0.5 * 0.7, "cyd": 0.5 * 0.625})
    assert g.missing == (("cyd", ("exam",)),)


@pytest.mark.parametrize("text, message", [
    ("id,score\nada,90\nghost,50\n", "line 3: unknown student 'ghost' (not in the gradebook"),
    ("id,score\nada,90\nbob,70\nada,80\n", "line 4: duplicate id 'ada' (first on line 2)"),
    ("id,score\nada,101\n", "line 2: score='101' is out of range [0, 100]"),
    ("id,score\nada,-1\n", "line 2: score='-1' is out of range [0, 100]"),
    ("id,score,note\nada,ninety,\nbob,,absent\n", "line 2: score='ninety' is not a number\n  line 3: score=''"),
    ("id,score\nada,nan\n", "line 2: score='nan' is not a number"),
    ("id,note\nada,good\n", "lacks column(s) score"),
    ("", "is empty"),
    ("id,score\n\n", "lists no score"),
])
def test_bad_exam_file_writes_nothing(course, tmp_path, text, message):
    from tdlcourse.grading.course import CourseError
    from tdlcourse.grading.term import exam_path, import_exam

    c = load(course)
    import_exam(c, write(tmp_path, "id,score\ncyd,55\n", "good.csv"))
    before = exam_path(c).read_bytes()
    with pytest.raises(CourseError) as e:
        import_exam(c, write(tmp_path, text))
    assert message in str(e.value), str(e.value)
    if "line" in message:
        assert "has errors; nothing was imported" in str(e.value)
    assert exam_path(c).read_bytes() == before


def test_bad_first_exam_file_creates_no_store(course, tmp_path):
    from tdlcourse.grading.course import CourseError
    from tdlcourse.grading.term import exam_path, import_exam

    c = load(course)
    with pytest.raises(CourseError, match="line 2: unknown student 'zed'"):
        import_exam(c, write(tmp_path, "id,score\nzed,1\nada,2\n"))
    with pytest.raises(CourseError, match="does not exist"):
        import_exam(c, tmp_path / "nope.csv")
    assert not exam_path(c).exists()


def test_exam_import_is_idempotent(course, tmp_path):
    import json

    from tdlcourse.grading.term import ExamChange, exam_path, import_exam

    c = load(course)
    path = write(tmp_path, EXAM_CSV)
    assert import_exam(c, path) == ExamChange(added=("ada", "bob"))
    stored = exam_path(c).read_bytes()
    mtime = exam_path(c).stat().st_mtime_ns
    assert json.loads(stored)["scores"] == {"ada": {"score": 90.0, "note": "clear, precise"},
                                            "bob": {"score": 70.0, "note": ""}}
    assert exam_path(c).stat().st_mode & 0o077 == 0  # grades: private to the instructor
    again = import_exam(c, path)
    assert again == ExamChange(unchanged=("ada", "bob")) and not again.changed
    assert exam_path(c).read_bytes() == stored and exam_path(c).stat().st_mtime_ns == mtime
    change = import_exam(c, write(tmp_path, "id,score,comment\nbob,75,retake\ncyd,60,\n", "second.csv"))
    assert change == ExamChange(added=("cyd",), updated=(("bob", ("score", "note")),), not_in_file=("ada",))
    assert json.loads(exam_path(c).read_text())["scores"] == {
        "ada": {"score": 90.0, "note": "clear, precise"}, "bob": {"score": 75.0, "note": "retake"},
        "cyd": {"score": 60.0, "note": ""}}


@pytest.mark.parametrize("text, message", [
    ("labs=0.2,assignments=0.3,exam=0.6", "sum to 1.1, not 1"),
    ("labs=0.2,assignments=0.3,exam=0.4", "sum to 0.9, not 1"),
    ("labs=0.2,assignments=0.3,quiz=0.5", "unknown component(s) 'quiz'; allowed components: labs, assignments, exam"),
    ("labs=-0.2,assignments=0.7,exam=0.5", "weight labs=-0.2 is negative"),
    ("labs=0.5,assignments=0.5", "weights lack component(s) exam"),
    ("labs:0.2,assignments=0.3,exam=0.5", "'labs:0.2' is not NAME=NUMBER"),
    ("labs=a lot,assignments=0.3,exam=0.5", "'labs=a lot' is not NAME=NUMBER"),
    ("labs=0.2,,exam=0.8", "'' is not NAME=NUMBER"),
    ("", "'' is not NAME=NUMBER"),
    ("labs=0.2,labs=0.3,exam=0.5", "give 'labs' twice"),
    ("labs=nan,assignments=0.5,exam=0.5", "weight labs=nan is not a number"),
])
def test_bad_weights(text, message):
    from tdlcourse.grading.course import CourseError
    from tdlcourse.grading.term import parse_weights

    with pytest.raises(CourseError) as e:
        parse_weights(text)
    assert message in str(e.value), str(e.value)


def test_good_weights():
    from tdlcourse.grading.term import check_weights, parse_weights

    assert parse_weights(" labs = 0.1, assignments=0.2 ,exam=0.7") == {"labs": 0.1, "assignments": 0.2, "exam": 0.7}
    assert parse_weights("exam=1,labs=0,assignments=0") == {"labs": 0.0, "assignments": 0.0, "exam": 1.0}
    assert check_weights({"a": 1 / 3, "b": 1 / 3, "exam": 1 / 3}, ("a", "b", "exam")) == pytest.approx(
        {"a": 1 / 3, "b": 1 / 3, "exam": 1 / 3})


def test_cli_end_to_end(course, tmp_path, capsys):
    from tdlcourse.grading.reports import EXPORT_COLUMNS

    root = str(course)
    exam = write(tmp_path, EXAM_CSV)
    assert tdl("--course", root, "exam", "import", str(exam)) == 0
    assert "added     ada" in (out := capsys.readouterr().out) and "2 added, 0 updated, 0 unchanged" in out
    assert tdl("--course", root, "exam", "import", str(exam)) == 0
    assert "0 added, 0 updated, 2 unchanged: nothing changed" in capsys.readouterr().out
    assert tdl("--course", root, "exam", "import", str(write(tmp_path, "id,score\ncyd,40\n", "cyd.csv"))) == 0
    out = capsys.readouterr().out
    assert "added     cyd" in out and "kept      ada" in out and "kept      bob" in out

    assert tdl("--course", root, "export", str(tmp_path / "final.csv"), "--final") == 0
    out = capsys.readouterr().out
    assert "final grades of 3 student(s)" in out and "final = 0.2 labs + 0.3 assignments + 0.5 exam" in out, out
    assert "missing   bob: lab01 (counted 0)" in out and "not counted (no component matches): extra01" in out
    _, rows = read_csv(tmp_path / "final.csv")
    assert float(rows["cyd"]["final"]) == pytest.approx(0.2 * 0.5 + 0.3 * 0.625 + 0.5 * 0.4, abs=1e-6)

    assert tdl("--course", root, "export", str(tmp_path / "w.csv"), "--weights", "labs=0,assignments=0,exam=1") == 0
    _, rows = read_csv(tmp_path / "w.csv")
    assert {sid: float(r["final"]) for sid, r in rows.items()} == {"ada": 0.9, "bob": 0.7, "cyd": 0.4}

    assert tdl("--course", root, "export", str(tmp_path / "long.csv")) == 0  # nbgrader's long format, as before
    header, _ = read_csv(tmp_path / "long.csv")
    assert tuple(header) == EXPORT_COLUMNS
    assert "wrote 15 rows" in capsys.readouterr().out  # 5 assignments x 3 students

    before = sorted(p.name for p in tmp_path.iterdir())
    stored = (course / ".tdl" / "exam.json").read_bytes()
    for args, message in [
        (["export", str(tmp_path / "bad.csv"), "--weights", "labs=0.5,assignments=0.5,exam=0.5"], "sum to 1.5, not 1"),
        (["export", str(tmp_path / "bad.csv"), "--weights", "quiz=1"], "unknown component(s) 'quiz'"),
        (["export", str(tmp_path / "no" / "bad.csv"), "--final"], "folder"),
        (["exam", "import", str(write(tmp_path, "id,score\nada,200\n", "bad.csv"))], "line 2: score='200' is out"),
    ]:
        assert tdl("--course", root, *args) == 2, args
        err = capsys.readouterr().err
        assert err.startswith(f"tdl {args[0]}: error: ") and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(before + ["bad.csv"])  # only the bad input file
    assert (course / ".tdl" / "exam.json").read_bytes() == stored
