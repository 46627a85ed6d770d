"""The gradebook on a real PostgreSQL server (TDL_GRADEBOOK=postgresql://...), as a class hub runs it.

PostgreSQL comes from Debian's packages (installed with apt-get when missing and we are root), a
throwaway cluster is created and started on 127.0.0.1 under the test's temporary folder, and a term
runs on it through `tdl`: roster, release, three students fetch and submit through the exchange,
collect, `tdl grade`. Then, while `tdl grade` grades a late submission, the instructor scores the
written answers of the others through the Formgrader's REST API, at the same time, on the same
database. Nothing is lost: every score written by either is read back, the integrity check passes,
and the export has one row per student and assignment. Skipped with the reason where PostgreSQL
cannot be had; under CI=true that is a failure.
"""

from __future__ import annotations

import csv
import glob
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import BIN, ROOT, free_port, hw01_answers, submit_hw01, tdl_env

pytestmark = [pytest.mark.slow]

STUDENTS = ("ada", "bob", "cyd")
WRITTEN = "q4-answer"  # hw01's written answer (graded by hand)


def _unavailable(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL gradebook test cannot run under CI=true: {reason}")
    pytest.skip(reason)


def _pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def _ensure_postgres() -> Path:
    bindir = _pg_bin()
    if bindir is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
                           capture_output=True, text=True, timeout=900, env=env)
        if r.returncode != 0:
            subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, env=env)
            r = subprocess.run(["apt-get", "install", "-y", "--no-install-recommends", "postgresql"],
                               capture_output=True, text=True, timeout=900, env=env)
        bindir = _pg_bin()
        if bindir is None:
            _unavailable(f"apt-get install postgresql failed: {(r.stdout + r.stderr)[-1500:]}")
    if bindir is None:
        _unavailable("PostgreSQL is not installed (/usr/lib/postgresql/*/bin) and we are not root to install it")
    try:
        import psycopg  # noqa: F401  (the driver SQLAlchemy 2.1 uses for postgresql:// URLs)
    except ImportError:
        _unavailable("psycopg is not installed (pip install -c constraints.txt -e '.[dev]')")
    return bindir


def _as_owner(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run its programs as the Debian 'postgres' account."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@pytest.fixture(scope="module")
def postgres():
    bindir = _ensure_postgres()
    # not under pytest's temporary folders: they are private to root (0700) and 'postgres' must read it
    base = Path(tempfile.mkdtemp(prefix="tdl-pg-"))
    data, sock = base / "data", base / "sock"
    sock.mkdir()
    pwfile = base / "pw"
    password = "tdl-test-pw"
    pwfile.write_text(password + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres")
        shutil.chown(sock, "postgres")
        shutil.chown(pwfile, "postgres")
        os.chmod(base, 0o755)
    r = subprocess.run(_as_owner([str(bindir / "initdb"), "-D", str(data), "-U", "tdl", "-A", "scram-sha-256",
                                  f"--pwfile={pwfile}", "-E", "UTF8", "--locale=C.UTF-8"]),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    port = free_port()
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=50"
    r = subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-o", opts, "-l", str(base / "log"),
                                  "-w", "-t", "120", "start"]), capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stdout + r.stderr + (base / "log").read_text(errors="replace")[-2000:]
    try:
        env = dict(os.environ, PGPASSWORD=password)
        r = subprocess.run([str(bindir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "tdl", "gradebook"],
                           capture_output=True, text=True, timeout=60, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        yield f"postgresql://tdl:{password}@127.0.0.1:{port}/gradebook"
    finally:
        subprocess.run(_as_owner([str(bindir / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"]),
                       capture_output=True, timeout=120)
        shutil.rmtree(base, ignore_errors=True)


def _tdl(env, *args, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "tdl"), *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=1200)


def _formgrader(env, course: Path, log: Path):
    """A Jupyter server with nbgrader's Formgrader on the course (started in the course root)."""
    port, token = free_port(), "tdl-pg"
    argv = [str(BIN / "jupyter"), "server", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
            f"--ServerApp.token={token}", f"--ServerApp.root_dir={course}"]
    if os.geteuid() == 0:
        argv.append("--allow-root")
    env = dict(env, JUPYTER_CONFIG_DIR=str(log.parent / ".jupyter"), JUPYTER_RUNTIME_DIR=str(log.parent / ".rt"))
    fh = open(log, "w")
    proc = subprocess.Popen(argv, cwd=course, env=env, stdout=fh, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    assert proc.poll() is None, log.read_text()[-3000:]
    return proc, fh, url, token


def _put(url, token, grade_id, score):
    req = urllib.request.Request(f"{url}/formgrader/api/grade/{grade_id}", method="PUT",
                                 data=json.dumps({"manual_score": score, "extra_credit": None}).encode(),
                                 headers={"Authorization": f"token {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as r:
        assert r.status == 200
        return json.loads(r.read())


def test_a_term_on_postgresql_with_the_formgrader_and_tdl_grade_writing_at_once(postgres, tmp_path):
    from nbgrader.api import Gradebook

    work = tmp_path
    course = work / "course"
    course.mkdir()
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "assignments" / "source", course / "source")
    env = tdl_env(TDL_GRADEBOOK=postgres, TDL_COURSE=str(course))
    (work / "roster.csv").write_text("id,first_name,last_name,email\n" +
                                     "".join(f"{s},{s.title()},X,{s}@example.org\n" for s in STUDENTS))

    for args in (("roster", "import", str(work / "roster.csv")), ("release", "hw01", "--no-check")):
        r = _tdl(env, "--course", str(course), *args)
        assert r.returncode == 0, r.stdout + r.stderr
    assert not (course / "gradebook.db").exists(), "the SQLite default was used instead of TDL_GRADEBOOK"

    answers = hw01_answers(course)
    assert WRITTEN in answers
    for sid in ("ada", "bob"):
        submit_hw01(course, work, sid, answers, f"{sid}: the bound is vacuous here.")
    for args in (("collect", "hw01"), ("grade", "hw01", "--jobs", "1", "--sandbox", "off", "--no-progress")):
        r = _tdl(env, "--course", str(course), *args)
        assert r.returncode == 0, r.stdout + r.stderr

    submit_hw01(course, work, "cyd", answers, "cyd: the bound is vacuous here.")  # late: graded while the instructor grades the others by hand
    r = _tdl(env, "--course", str(course), "collect", "hw01")
    assert r.returncode == 0, r.stdout + r.stderr

    with Gradebook(postgres, "tdl") as gb:
        ids = {sid: gb.find_grade(WRITTEN, "hw01", "hw01", sid).id for sid in ("ada", "bob")}
        max_score = gb.find_grade_cell(WRITTEN, "hw01", "hw01").max_score
    proc, fh, url, token = _formgrader(env, course, work / "formgrader.log")
    written: dict[str, float] = {}
    errors: list[str] = []
    overlap = []  # PUTs answered while `tdl grade` was still running

    def hand_grading():
        try:
            for i in range(12):  # the instructor changes their mind a few times
                for sid, gid in ids.items():
                    score = float((i + (sid == "bob")) % (int(max_score) + 1))
                    assert _put(url, token, gid, score)["manual_score"] == score
                    written[sid] = score
                    overlap.append(grader.poll() is None)
        except Exception as e:  # noqa: BLE001  (reported below, with the server's log)
            errors.append(repr(e))

    try:
        grader = subprocess.Popen([str(BIN / "tdl"), "--course", str(course), "grade", "hw01", "--jobs", "1",
                                   "--sandbox", "off", "--no-progress"], env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.STDOUT, text=True)
        t = threading.Thread(target=hand_grading)
        t.start()
        out, _ = grader.communicate(timeout=1200)
        t.join(timeout=600)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        fh.close()
    assert grader.returncode == 0, out
    assert not errors, f"{errors}\n{(work / 'formgrader.log').read_text()[-3000:]}"
    assert any(overlap), "the hand grading did not overlap `tdl grade`: not a concurrency test"

    with Gradebook(postgres, "tdl") as gb:
        for sid, score in written.items():
            assert gb.find_grade(WRITTEN, "hw01", "hw01", sid).manual_score == score
        for sid in STUDENTS:
            sub = gb.find_submission("hw01", sid)
            assert sub.code_score > 0, (sid, sub.code_score)
        assert gb.find_grade(WRITTEN, "hw01", "hw01", "cyd").needs_manual_grade

    export = work / "grades.csv"
    r = _tdl(env, "--course", str(course), "export", str(export))
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [row for row in csv.DictReader(export.open()) if row.get("assignment", "hw01") == "hw01"]
    assert sorted(r["student_id"] for r in rows) == list(STUDENTS), rows
