"""`tdl` never fails silently (issue 16, item 4):

- no command creates a gradebook, an exchange or a course folder as a side effect of reading: a
  missing one gets exit status 2 and a message naming the configuration that was read (the
  nbgrader_config.py, the resolved URL or path) and the variable that would change it; the oracle
  is the course's file tree before and after. The commands that start a course (`roster import`,
  `release`) create them and say so;
- `tdl feedback` refuses while manual grading is unfinished (and lists student, notebook, cell),
  releases with `--partial` naming the students concerned; `tdl export` flags them (a column and
  a warning on stderr). Oracle: a real term (release, fetch, submit, collect, `tdl grade`) whose
  written answers are graded by hand through the Formgrader's own API;
- the Formgrader works whatever folder its server starts in (`tdl lab --instructor`), proved by a
  real JupyterLab started from an unrelated folder; plain `jupyter lab` from that folder, the old
  way, shows that the check can fail.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import time
import urllib.error
import urllib.request

import pytest

from conftest import BIN, ROOT, free_port, hw01_answers, submit_hw01, tdl_env

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

COURSE_VARS = ("TDL_EXCHANGE", "TDL_GRADEBOOK", "TDL_COURSE", "TDL_COURSE_ID", "TDL_TERM_SECRET")


def tdl(*args):
    from tdlcourse.grading.cli import main

    return main(list(args))


def tree(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def course(tmp_path, monkeypatch):
    for name in COURSE_VARS:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "assignments" / "source", root / "source")
    monkeypatch.chdir(tmp_path)
    return root


def roster(tmp_path, ids=("ada", "bob")):
    path = tmp_path / "roster.csv"
    path.write_text("id,first name,last name,email\n" + "".join(f"{s},{s.title()},S,{s}@x.org\n" for s in ids))
    return str(path)


# --- nothing created by reading ------------------------------------------------------------------


def test_reading_commands_create_no_gradebook(course, tmp_path, capsys):
    (tmp_path / "exam.csv").write_text("id,score\nada,90\n")
    config = course / "nbgrader_config.py"
    before = tree(course)
    for command in (["export", str(tmp_path / "g.csv")], ["export", str(tmp_path / "f.csv"), "--final"],
                    ["collect", "hw01"], ["grade", "hw01"], ["feedback", "hw01"], ["report", "hw01"],
                    ["exam", "import", str(tmp_path / "exam.csv")], ["lab", "--instructor", "--dry-run"]):
        assert tdl("--course", str(course), *command) == 2, command
        err = capsys.readouterr().err
        assert f"no gradebook at sqlite:///{course / 'gradebook.db'}" in err, (command, err)
        assert f"read from {config}" in err and "TDL_GRADEBOOK is not set" in err, (command, err)
        assert "tdl roster import" in err and "Nothing was created" in err, (command, err)
        assert tree(course) == before, command  # no gradebook.db, no .tdl, no exchange
    assert not (tmp_path / "g.csv").exists() and not (tmp_path / "f.csv").exists()
    assert not (tmp_path / "gradebook.db").exists()


def test_a_configured_gradebook_that_is_missing_is_named(course, tmp_path, monkeypatch, capsys):
    elsewhere = tmp_path / "srv" / "grades.db"
    monkeypatch.setenv("TDL_GRADEBOOK", f"sqlite:///{elsewhere}")
    assert tdl("--course", str(course), "collect", "hw01") == 2
    err = capsys.readouterr().err
    assert "was never released with this configuration" in err  # what `tdl collect` used to say, now with why
    assert f"no gradebook at sqlite:///{elsewhere}" in err and f"TDL_GRADEBOOK='sqlite:///{elsewhere}'" in err, err
    assert not elsewhere.parent.exists()
    # a database server that cannot be reached: named, its password hidden, nothing created
    monkeypatch.setenv("TDL_GRADEBOOK", "postgresql://grader:s3cret@127.0.0.1:9/tdl")
    assert tdl("--course", str(course), "export", str(tmp_path / "g.csv")) == 2
    err = capsys.readouterr().err
    assert "cannot open the gradebook postgresql://grader:***@127.0.0.1:9/tdl" in err, err
    assert "s3cret" not in err and not (tmp_path / "g.csv").exists()


@pytest.mark.parametrize("content, message", [(b"", "is an empty file, not a database"),
                                              (b"id,score\n", "is not an SQLite database")])
def test_a_gradebook_that_is_not_one_is_left_alone(course, tmp_path, capsys, content, message):
    db = course / "gradebook.db"
    db.write_bytes(content)
    for command in (["export", str(tmp_path / "g.csv")], ["grade", "hw01"], ["roster", "import", roster(tmp_path)]):
        code = tdl("--course", str(course), *command)  # roster import too: it creates, never overwrites
        err = capsys.readouterr().err
        assert code == 2 and f"the gradebook {db} {message}" in err and "TDL_GRADEBOOK" in err, (command, err)
        assert db.read_bytes() == content, command


def test_a_missing_exchange_names_the_configuration(course, tmp_path, monkeypatch, capsys):
    from nbgrader.api import Gradebook

    assert tdl("--course", str(course), "roster", "import", roster(tmp_path)) == 0
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", "tdl") as gb:
        gb.add_assignment("hw01")
    missing = tmp_path / "mnt" / "exchange"
    monkeypatch.setenv("TDL_EXCHANGE", str(missing))
    capsys.readouterr()
    before = tree(course)
    for command in (["collect", "hw01"], ["release", "hw01", "--no-check"]):
        assert tdl("--course", str(course), *command) == 2, command
        err = capsys.readouterr().err
        assert f"the exchange directory {missing} does not exist" in err, err
        assert f"read from {course / 'nbgrader_config.py'}" in err and f"TDL_EXCHANGE='{missing}'" in err, err
        assert not missing.exists() and tree(course) == before
    # the default exchange (inside the course): collect names it and says who creates it
    monkeypatch.delenv("TDL_EXCHANGE")
    assert tdl("--course", str(course), "collect", "hw01") == 2
    err = capsys.readouterr().err
    assert f"the exchange directory {course / 'exchange'} does not exist" in err and "`tdl release` creates" in err, err
    assert tree(course) == before


def test_a_missing_course_folder_is_named(course, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("TDL_COURSE", str(tmp_path / "nowhere"))
    assert tdl("export", str(tmp_path / "g.csv")) == 2
    err = capsys.readouterr().err
    assert "came from $TDL_COURSE; that folder does not exist" in err, err
    assert not (tmp_path / "nowhere").exists()
    monkeypatch.delenv("TDL_COURSE")
    config = course / "nbgrader_config.py"
    moved = tmp_path / "srv" / "course"
    config.write_text(config.read_text() + f"\nc.CourseDirectory.root = {str(moved)!r}\n")
    for command in (["roster", "import", roster(tmp_path)], ["export", str(tmp_path / "g.csv")]):
        assert tdl("--course", str(course), *command) == 2, command
        err = capsys.readouterr().err
        assert f"the course folder {moved} does not exist (CourseDirectory.root, read from {config})" in err, err
        assert not moved.parent.exists()


def test_commands_that_start_a_course_create_and_say_so(course, tmp_path, capsys):
    assert tdl("--course", str(course), "roster", "import", roster(tmp_path)) == 0
    out = capsys.readouterr().out
    assert f"created the gradebook sqlite:///{course / 'gradebook.db'} (a new course)" in out, out
    assert (course / "gradebook.db").is_file()
    assert tdl("--course", str(course), "roster", "import", roster(tmp_path)) == 0
    assert "created" not in capsys.readouterr().out  # only the first time
    assert tdl("--course", str(course), "release", "hw01", "--no-check") == 0
    out = capsys.readouterr().out
    assert f"created the exchange {course / 'exchange'} (a new course)" in out and "gradebook" not in out, out


# --- feedback only when grading is done ------------------------------------------------------------


def _put_manual_score(url, token, course_root, student, cell, score):
    """Score a written answer the way an instructor does: through the Formgrader's REST API."""
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course_root / 'gradebook.db'}", "tdl") as gb:
        gid = gb.find_grade(cell, "hw01", "hw01", student).id
    req = urllib.request.Request(f"{url}/formgrader/api/grade/{gid}", method="PUT",
                                 data=json.dumps({"manual_score": score, "extra_credit": None}).encode(),
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
        return json.loads(r.read())


def _runner(course):
    """`tdl --course COURSE ...` in this process: (exit status, stdout, stderr)."""
    import contextlib
    import io
    import types

    def run(*args):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = tdl("--course", str(course), *args)
        return types.SimpleNamespace(returncode=code, stdout=out.getvalue(), stderr=err.getvalue())
    return run


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    """hw01 released to ada and bob, both submit every answer (written one included), collected and
    graded by `tdl grade`: q4-answer (3 points, written) now needs manual grading for both."""

    work = tmp_path_factory.mktemp("safety")
    course = work / "course"
    course.mkdir()
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "assignments" / "source", course / "source")
    with pytest.MonkeyPatch.context() as mp:
        for name in COURSE_VARS:
            mp.delenv(name, raising=False)
        yield from _graded(work, course)


def _graded(work, course):
    env = tdl_env(TDL_COURSE=str(course))
    run = _runner(course)
    r = run("roster", "import", roster(work))
    assert r.returncode == 0, r.stderr
    r = run("release", "hw01", "--no-check")
    assert r.returncode == 0, r.stderr
    answers = hw01_answers(course)
    for sid in ("ada", "bob"):
        submit_hw01(course, work, sid, answers, f"{sid}'s own answer: the bound is vacuous.")
    for args in (("collect", "hw01"), ("grade", "hw01", "--jobs", "1", "--sandbox", "off", "--no-progress")):
        r = run(*args)
        assert r.returncode == 0, r.stdout + r.stderr
    yield {"course": course, "work": work, "env": env, "run": run}


@pytest.fixture(scope="module")
def formgrader(graded, tmp_path_factory):
    """`tdl lab --instructor` on the graded course, started from an unrelated folder."""
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    yield from _server(graded["env"], elsewhere, ["lab", "--instructor", "--"], graded["course"])


def _server(env, cwd, args, course, program=None):
    port, token = free_port(), "tdl-safety"
    env = dict(env, JUPYTER_CONFIG_DIR=str(cwd / ".jupyter"), JUPYTER_RUNTIME_DIR=str(cwd / ".runtime"))
    argv = [*(program or [str(BIN / "tdl")]), *args, "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
            f"--ServerApp.token={token}", "--LabApp.news_url="]
    if program and os.geteuid() == 0:
        argv.append("--allow-root")
    log = open(cwd / "server.log", "w")
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            if proc.poll() is not None:
                break
            try:
                urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail("JupyterLab did not start: " + (cwd / "server.log").read_text()[-3000:])
        assert proc.poll() is None, (cwd / "server.log").read_text()[-3000:]
        yield {"url": url, "token": token, "cwd": cwd, "course": course}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        log.close()


def _get(server, path):
    req = urllib.request.Request(server["url"] + path, headers={"Authorization": f"token {server['token']}"})
    try:
        with urllib.request.urlopen(req, timeout=60) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode(errors="replace")


def test_formgrader_works_from_any_folder(formgrader):
    status, body = _get(formgrader, "/formgrader/api/assignments")
    assert status == 200, body[:2000]
    names = [a["name"] for a in json.loads(body)]
    assert "hw01" in names, body[:2000]
    hw01 = next(a for a in json.loads(body) if a["name"] == "hw01")
    assert hw01["num_submissions"] == 2, hw01
    status, page = _get(formgrader, "/formgrader")
    assert status == 200 and "is not a subdirectory of the notebook server root" not in page
    assert not (formgrader["cwd"] / "gradebook.db").exists()  # nothing created where the server started


def test_plain_jupyter_lab_from_another_folder_misses_the_course(graded, tmp_path):
    """The old way (the bug `tdl lab` fixes): the server started elsewhere reads no nbgrader_config.py."""
    env = {k: v for k, v in graded["env"].items() if k != "TDL_COURSE"}
    for server in _server(env, tmp_path, ["lab", f"--ServerApp.root_dir={graded['course']}"], graded["course"],
                          program=[str(BIN / "jupyter")]):
        status, body = _get(server, "/formgrader/api/assignments")
        try:
            names = [a.get("name") for a in json.loads(body)]
        except ValueError:  # nbgrader's error page, served with status 200
            names = []
        assert status != 200 or "hw01" not in names, body[:2000]
    assert "No nbgrader_config.py file found" in (tmp_path / "server.log").read_text()


def test_feedback_waits_for_manual_grading(graded, request):
    course, run = graded["course"], graded["run"]
    feedback_dir = course / "feedback"
    r = run("feedback", "hw01")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "manual grading of hw01 is unfinished: 2 cell(s) of 2 student(s)" in r.stderr, r.stderr
    for sid in ("ada", "bob"):
        assert f"{sid}: hw01/hw01.ipynb, cell q4-answer (needs manual grading)" in r.stderr, r.stderr
    assert "--partial" in r.stderr and not feedback_dir.exists()
    assert not (course / "exchange" / "tdl" / "feedback").exists() or not any((course / "exchange" / "tdl" / "feedback").iterdir())

    # the export flags both: a column and one warning line on stderr
    r = run("export", str(graded["work"] / "grades.csv"))
    assert r.returncode == 0, r.stderr
    rows = {row["student_id"]: row for row in csv.DictReader(open(graded["work"] / "grades.csv"))}
    assert rows["ada"]["needs_manual_grading"] == rows["bob"]["needs_manual_grading"] == "hw01/q4-answer"
    warn = [ln for ln in r.stderr.splitlines() if "warning: manual grading unfinished" in ln]
    assert len(warn) == 1 and "2 student(s): ada (hw01), bob (hw01)" in warn[0], r.stderr

    # ada's written answer graded in the Formgrader: only bob is missing now
    formgrader = request.getfixturevalue("formgrader")  # (after the checks above, which need no server)
    grade = _put_manual_score(formgrader["url"], formgrader["token"], course, "ada", "q4-answer", 2.0)
    assert grade["manual_score"] == 2.0 and grade["needs_manual_grade"] is False
    r = run("feedback", "hw01")
    assert r.returncode == 2 and "1 cell(s) of 1 student(s)" in r.stderr and "ada:" not in r.stderr, r.stderr
    r = run("export", str(graded["work"] / "final.csv"), "--weights", "labs=0,assignments=1,exam=0")
    assert r.returncode == 0, r.stderr
    final = {row["student_id"]: row for row in csv.DictReader(open(graded["work"] / "final.csv"))}
    assert final["ada"]["needs_manual_grading"] == "" and final["bob"]["needs_manual_grading"] == "hw01: hw01/q4-answer"
    assert "for 1 student(s): bob (hw01: hw01/q4-answer)" in r.stderr, r.stderr

    # --partial releases and says whose feedback is partial
    r = run("feedback", "hw01", "--partial")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "released to 2 student(s)" in r.stdout and "partial feedback (manual grading unfinished, 1 cell(s)): bob" in r.stdout
    assert len(list(feedback_dir.glob("*/hw01/hw01.html"))) == 2

    # bob graded too: feedback is released with no flag
    _put_manual_score(formgrader["url"], formgrader["token"], course, "bob", "q4-answer", 3.0)
    r = run("feedback", "hw01")
    assert r.returncode == 0 and "partial" not in r.stdout, r.stdout + r.stderr
    html = (feedback_dir / "bob" / "hw01" / "hw01.html").read_text()
    assert "Score: 9.0 / 9.0" in html or "9.0 / 9.0" in html, html[:3000]
    r = run("export", str(graded["work"] / "grades.csv"))
    assert r.returncode == 0 and "warning" not in r.stderr, r.stderr
