"""The `tdl` command on bad input: an unknown assignment or student id, a roster with missing
columns or duplicate ids, a missing exchange directory, bad options. Each gives one clear message
(naming the bad value and what is allowed), exit status 2, and writes nothing (oracle: the
gradebook, release/ and the exchange are compared before and after). Plus `tdl --help` through
the installed console script, and a roster import that works (its change report is the oracle)."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from conftest import BIN, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]


@pytest.fixture
def course(tmp_path, monkeypatch):
    for name in ("TDL_EXCHANGE", "TDL_GRADEBOOK", "TDL_COURSE", "TDL_COURSE_ID"):
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "assignments" / "source", root / "source")
    return root


def tdl(*args):
    from tdlcourse.grading.cli import main

    return main(list(args))


def students(root):
    from nbgrader.api import Gradebook

    if not (root / "gradebook.db").exists():
        return None
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        return sorted((s.id, s.first_name, s.last_name, s.email) for s in gb.students)


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


def roster(tmp_path, text, name="roster.csv"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def test_help_through_console_script():
    r = subprocess.run([str(BIN / "tdl"), "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    for command in ("roster", "release", "collect", "grade", "feedback", "export", "report"):
        assert command in r.stdout
    r = subprocess.run([str(BIN / "tdl"), "grade", "--help"], capture_output=True, text=True, timeout=60)
    assert "--jobs" in r.stdout and "--timeout" in r.stdout


def test_roster_import_reports_changes(course, tmp_path, capsys):
    path = roster(tmp_path, "ID,First name,Last-Name,E-mail,extra\nada,Ada,Lovelace,ada@x.org,1\nbob,Bob,B,bob@x.org,2\n")
    assert tdl("--course", str(course), "roster", "import", path) == 0
    assert "2 added, 0 updated, 0 unchanged" in capsys.readouterr().out
    assert students(course) == [("ada", "Ada", "Lovelace", "ada@x.org"), ("bob", "Bob", "B", "bob@x.org")]
    path = roster(tmp_path, "id,first_name,last_name,email\nada,Ada,King,ada@x.org\ncyd,Cyd,C,\n")
    assert tdl("--course", str(course), "roster", "import", path) == 0
    out = capsys.readouterr().out
    assert "added     cyd" in out and "updated   ada (last_name)" in out and "kept      bob" in out
    assert students(course) == [("ada", "Ada", "King", "ada@x.org"), ("bob", "Bob", "B", "bob@x.org"),
                                ("cyd", "Cyd", "C", None)]
    assert tdl("--course", str(course), "roster", "import", path) == 0
    assert "nothing changed" in capsys.readouterr().out


@pytest.mark.parametrize("text, message", [
    ("id,first name,email\nada,Ada,ada@x\n", "lacks column(s) last_name"),
    ("id,first name,last name,email\nada,Ada,L,a@x\nbob,Bob,B,b@x\nada,Ada,K,k@x\n",
     "line 4: duplicate id 'ada' (first on line 2)"),
    ("id,first name,last name,email\n,Ada,L,a@x\n", "line 2: empty id"),
    ("id,first name,last name,email\n../etc,Ada,L,a@x\n", "line 2: id '../etc' may only hold"),
    ("", "is empty"),
])
def test_bad_roster_writes_nothing(course, tmp_path, capsys, text, message):
    good = roster(tmp_path, "id,first name,last name,email\nzoe,Zoe,Z,z@x\n", "good.csv")
    assert tdl("--course", str(course), "roster", "import", good) == 0
    before = students(course)
    capsys.readouterr()
    assert tdl("--course", str(course), "roster", "import", roster(tmp_path, text)) == 2
    err = capsys.readouterr().err
    assert message in err, err
    assert students(course) == before


def test_missing_roster_file(course, capsys):
    assert tdl("--course", str(course), "roster", "import", str(course / "nope.csv")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert students(course) is None  # not even an empty gradebook was created


def test_unknown_assignment(course, capsys):
    for command in (["grade", "hw99"], ["collect", "hw99"], ["feedback", "hw99"], ["report", "hw99"],
                    ["release", "hw99"]):
        assert tdl("--course", str(course), *command) == 2, command
        err = capsys.readouterr().err
        assert "assignment='hw99' is not an assignment of this course; known: hw01" in err, err
    assert not (course / "release").exists() and not (course / "exchange").exists()


def test_unreleased_assignment(course, capsys):
    assert tdl("--course", str(course), "grade", "hw01") == 2
    assert "never released" in capsys.readouterr().err


def test_unknown_student(course, tmp_path, capsys):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.add_assignment("hw01")
    assert tdl("--course", str(course), "roster", "import",
               roster(tmp_path, "id,first name,last name,email\nzoe,Zoe,Z,z@x\n")) == 0
    capsys.readouterr()
    before = tree(course)
    assert tdl("--course", str(course), "grade", "hw01", "--student", "ghost", "--student", "zoe") == 2
    err = capsys.readouterr().err
    assert "unknown student id(s): 'ghost'" in err, err
    assert tdl("--course", str(course), "grade", "hw01", "--student", "zoe") == 2
    assert "no collected submission of hw01 for zoe" in capsys.readouterr().err
    assert tree(course) == before


def test_missing_exchange(course, monkeypatch, capsys):
    missing = course.parent / "mnt" / "exchange"
    monkeypatch.setenv("TDL_EXCHANGE", str(missing))
    before = tree(course)
    assert tdl("--course", str(course), "release", "hw01") == 2
    err = capsys.readouterr().err
    assert f"the exchange directory {missing} does not exist" in err and "TDL_EXCHANGE" in err, err
    assert tree(course) == before  # no release/, no gradebook, nothing
    assert not missing.exists()
    # the default exchange (inside the course) would be created; a configured one never is
    monkeypatch.delenv("TDL_EXCHANGE")
    from tdlcourse.grading.course import check_exchange, load_course

    assert check_exchange(load_course(course), create_default=True) == course / "exchange"


def test_bad_values(course, tmp_path, capsys):
    assert tdl("--course", str(course), "release", "hw01", "--due", "next tuesday-ish") == 2
    assert "due='next tuesday-ish' is not a date" in capsys.readouterr().err
    assert tdl("--course", str(tmp_path / "nowhere"), "grade", "hw01") == 2
    assert "is not a course: it has no nbgrader_config.py" in capsys.readouterr().err
    assert tdl("--course", str(course), "export", str(tmp_path / "no" / "dir" / "grades.csv")) == 2
    assert "folder" in capsys.readouterr().err
    assert tdl("--course", str(course), "run", str(tmp_path / "missing.ipynb")) == 2
    assert "does not exist" in capsys.readouterr().err
    assert tdl("--course", str(course), "run", str(course / "source" / "hw01" / "hw01.ipynb"), "--scale", "huge") == 2
    assert "scale='huge' is not a scale; allowed: ci, cpu, gpu" in capsys.readouterr().err
    for bad in (["--jobs", "0"], ["--timeout", "-1"], ["--jobs", "two"], ["--sandbox", "maybe"]):
        with pytest.raises(SystemExit) as e:
            tdl("--course", str(course), "grade", "hw01", *bad)
        assert e.value.code == 2
        assert capsys.readouterr().err


def test_solutions_need_a_due_date(course, capsys):
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        gb.add_assignment("hw01")
    assert tdl("--course", str(course), "feedback", "hw01", "--with-solutions") == 2
    assert "has no due date" in capsys.readouterr().err


def test_course_from_environment(course, monkeypatch, tmp_path):
    from tdlcourse.grading.course import load_course

    monkeypatch.setenv("TDL_COURSE", str(course))
    monkeypatch.setenv("TDL_GRADEBOOK", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    monkeypatch.setenv("TDL_EXCHANGE", str(tmp_path / "ex"))
    c = load_course()
    assert c.root == course.resolve() and c.course_id == "tdl"
    assert c.db_url == f"sqlite:///{tmp_path / 'elsewhere.db'}" and c.exchange_root == tmp_path / "ex"
    monkeypatch.delenv("TDL_COURSE")
    monkeypatch.chdir(course.parent)
    os.rename(course, course.parent / "assignments")
    assert load_course().root == (course.parent / "assignments").resolve()


def test_release_refuses_a_source_that_fails_at_ci_scale(course, capsys):
    import nbformat

    path = course / "source" / "hw01" / "hw01.ipynb"
    nb = nbformat.read(path, as_version=4)
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "q1-solution")
    cell.source = cell.source.replace("    return math.sqrt(", "    return 0 * math.sqrt(")
    nbformat.write(nb, path)
    before = tree(course)
    assert tdl("--course", str(course), "release", "hw01") == 2
    err = capsys.readouterr().err
    assert "hw01.ipynb fails at scale='ci' in cell" in err and "(q1-test): AssertionError" in err, err
    assert tree(course) == before  # no release/, no gradebook, no exchange
