"""The class hub of deploy/hub on 127.0.0.1, with real Linux accounts (root only; CI is root).

`deploy/hub/demo.sh start` (what `make hub-demo` runs) builds the world-readable environment
(setup.sh), creates throwaway accounts under a reserved prefix, pre-creates the course and starts
JupyterHub; `demo.sh stop` removes all of it. Through the hub's own login form (PAM, real
passwords) and its proxy:
- a student's server runs as that student, sees the course's assignments tab but not the
  instructor tools (the Formgrader is off for students), with a 20 s autosave;
- another student's cookie gets 403 on that server; a student gets 403 on the course's Formgrader;
- the instructor's server has the Formgrader, and the course's Formgrader service answers the
  instructor (it runs as the grader account, in the course root);
- the course folders exist before any student, owned by the grader: a student cannot take them over;
  the course root (solutions, submissions, gradebook) is the grader's alone;
- a student fetches, fills in, validates and submits through the Assignment List's API; a student of
  the other course sees nothing and cannot fetch, not even with `ls`/`cp` (exchange/<id> is open to
  the course's Unix group only, which the hub syncs from its groups before each spawn); the grader collects, grades, and releases feedback
  (refused until the written answer is graded, then with --partial); the student fetches it.
Skipped, with the reason, where this cannot run (not root, no useradd); under CI=true that fails.
"""

from __future__ import annotations

import grp
import json
import os
import pwd
import re
import shutil
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT
from hubkit import PREFIX, Browser, as_grader, demo_hub

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hub")]
# reserved account prefix of this test, unique per run: two checkouts testing at once must not
# delete each other's accounts
UP = f"tdlt{os.getpid() % 100000}"


@pytest.fixture(scope="module")
def hub():
    with demo_hub(UP, "test") as h:
        yield h


def test_the_demo_prints_the_url_the_logins_and_how_to_stop(hub):
    out = hub["out"]
    assert hub["url"] + "/" in out and "demo.sh stop" in out
    for user in hub["logins"]:
        assert user in out


def test_course_folders_are_pre_created_and_owned_by_the_grader(hub):
    exchange = Path(hub["site"]["exchange"])
    course = hub["site"]["courses"][0]
    st = exchange.stat()
    assert st.st_uid == 0 and oct(st.st_mode & 0o7777) == "0o1777"
    grader = pwd.getpwnam(course["grader"]).pw_uid
    # exchange/<id>: only the course's Unix group gets past it (enrollment; the grader is a member)
    st = (exchange / course["id"]).stat()
    group = grp.getgrgid(st.st_gid)
    assert st.st_uid == grader and oct(st.st_mode & 0o7777) == "0o750", oct(st.st_mode)
    assert group.gr_name == course["unix_group"] and course["grader"] in group.gr_mem
    modes = {"outbound": "0o755", "inbound": "0o2733", "feedback": "0o711"}
    for name, mode in modes.items():
        st = (exchange / course["id"] / name).stat()
        assert st.st_uid == grader and oct(st.st_mode & 0o7777) == mode, name
    student = f"{UP}-student1"
    # the course's folders exist before any student: they cannot be taken over, written or removed
    for argv in (["mkdir", str(exchange / course["id"] / "outbound" / "hw99")],
                 ["mv", str(exchange / course["id"]), str(exchange / "taken")],
                 ["rm", "-rf", str(exchange / course["id"] / "outbound")]):
        r = subprocess.run(["runuser", "-u", student, "--", *argv], capture_output=True)
        assert r.returncode != 0, argv
    assert (exchange / course["id"] / "outbound").is_dir() and not (exchange / "taken").exists()
    # the course root holds solutions, hidden tests, submissions and the gradebook: the grader's only
    root = Path(course["root"])
    assert root.stat().st_uid == grader and oct(root.stat().st_mode & 0o7777) == "0o700"
    r = subprocess.run(["runuser", "-u", student, "--", "cat", str(root / "source" / "hw01" / "hw01.ipynb")],
                       capture_output=True)
    assert r.returncode != 0 and b"Permission denied" in r.stderr


def test_a_student_gets_a_server_of_their_own_without_instructor_tools(hub):
    s1 = Browser(hub["url"])
    s1.login(f"{UP}-student1", hub["logins"][f"{UP}-student1"])
    s1.spawn(f"{UP}-student1")
    status, _, body = s1.get(f"/user/{UP}-student1/api/contents")
    assert status == 200
    status, _, page = s1.get(f"/user/{UP}-student1/lab")
    assert status == 200
    cfg = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                               page, re.S).group(1))
    disabled = cfg.get("disabledExtensions", [])
    assert "@jupyter/nbgrader:formgrader" in disabled and "@jupyter/nbgrader:create-assignment" in disabled, disabled
    assert "@jupyter/nbgrader:assignment-list" not in disabled
    status, _, _ = s1.get(f"/user/{UP}-student1/formgrader")
    assert status == 404  # the server extension is off for students
    status, _, body = s1.get(f"/user/{UP}-student1/lab/api/settings/@jupyterlab/docmanager-extension:plugin")
    assert status == 200
    # overrides.json changes the schema's default, which applies wherever the student set nothing
    assert json.loads(body)["schema"]["properties"]["autosaveInterval"]["default"] == 20

    s2 = Browser(hub["url"])
    s2.login(f"{UP}-student2", hub["logins"][f"{UP}-student2"])
    status, _, _ = s2.get(f"/user/{UP}-student1/api/contents")
    assert status == 403, status
    course = hub["site"]["courses"][0]["id"]
    status, _, _ = s2.get(f"/services/{course}/formgrader")
    assert status == 403, status
    # nor with a token: the one student1 makes opens student1's server and nothing of student2's
    token = s1.api_token(f"{UP}-student1")
    s2.spawn(f"{UP}-student2")
    for owner, want in ((f"{UP}-student1", 200), (f"{UP}-student2", 403)):
        req = urllib.request.Request(f"{hub['url']}/user/{owner}/api/contents",
                                     headers={"Authorization": f"token {token}"})
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                status = r.status
        except urllib.error.HTTPError as e:
            status = e.code
        assert status == want, (owner, status)


def test_the_instructor_has_the_formgrader_and_the_course_service(hub):
    inst = Browser(hub["url"])
    user = f"{UP}-instructor"
    inst.login(user, hub["logins"][user])
    inst.spawn(user)
    status, _, page = inst.get(f"/user/{user}/lab")
    cfg = json.loads(re.search(r'<script id="jupyter-config-data" type="application/json">(.*?)</script>',
                               page, re.S).group(1))
    assert "@jupyter/nbgrader:formgrader" not in cfg.get("disabledExtensions", [])
    course = hub["site"]["courses"][0]["id"]
    status, url, body = inst.get(f"/services/{course}/formgrader/api/assignments")
    assert status == 200, (status, url, body[:500])
    assert "hw01" in [a["name"] for a in json.loads(body)]


def test_demo_refuses_a_taken_port_and_starts_nothing(hub, tmp_path):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        state = tmp_path / "demo"
        env = dict(os.environ, TDL_HUB_PREFIX=PREFIX, TDL_HUB_PORT=str(port), TDL_HUB_USER_PREFIX=UP + "q")
        r = subprocess.run([str(ROOT / "deploy" / "hub" / "demo.sh"), "start", str(state)], env=env,
                           capture_output=True, text=True, timeout=120)
    assert r.returncode != 0 and f"port {port} on 127.0.0.1 is taken" in r.stderr, r.stderr
    assert not state.exists()
    assert [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith(UP + "q-")] == []


def test_demo_without_root_says_so(hub):
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="tdl-demo-nonroot-"))  # readable by 'nobody' (pytest's are not)
    try:
        os.chmod(folder, 0o755)
        script = folder / "demo.sh"
        shutil.copy(ROOT / "deploy" / "hub" / "demo.sh", script)
        os.chmod(script, 0o755)
        r = subprocess.run(["runuser", "-u", "nobody", "--", "bash", str(script), "start", str(folder / "state")],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode != 0 and "needs root" in r.stderr, r.stderr
        assert not (folder / "state").exists()
    finally:
        shutil.rmtree(folder)


def test_the_nbgrader_round_trip_through_the_hub(hub):
    import sys

    sys.path.insert(0, str(ROOT / "deploy" / "hub"))
    from client import HubError, Student, fill_in  # noqa: E402  (deploy/hub/client.py)

    import nbformat

    course = hub["site"]["courses"][0]
    cid = course["id"]
    user = f"{UP}-student2"
    s = Student(hub["url"], user, hub["logins"][user])
    s.login()
    s.spawn()
    listed = s.assignments("")  # every course: the authenticator keeps only this student's
    assert {(a["course_id"], a["assignment_id"], a["status"]) for a in listed} == {(cid, "hw01", "released")}
    path = f"{cid}/hw01/hw01.ipynb"
    assert not s.exists(path)
    s.action("fetch", cid, "hw01")
    assert s.exists(path)
    source = nbformat.read(ROOT / "assignments" / "source" / "hw01" / "hw01.ipynb", as_version=4)
    answers = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
               if c.metadata.get("nbgrader", {}).get("solution")}
    s.write_notebook(path, fill_in(s.read_notebook(path), answers, r"The bound is vacuous: $\sqrt{d/m} > 1$."))
    v = s.validate(path)
    assert v["success"] and "failed" not in json.dumps(v["value"]).lower()[:2000], v
    assert s.action("submit", cid, "hw01")["success"]

    other = Student(hub["url"], f"{UP}-other", hub["logins"][f"{UP}-other"])
    other.login()
    other.spawn()
    assert other.assignments("") == []  # enrolled in the other course only, where nothing is released

    # the grader is not root: the sandbox comes from the helper the site's sudo rule allows
    for args in (("collect", "hw01"), ("grade", "hw01", "--jobs", "1", "--sandbox", "sudo", "--no-progress")):
        r = as_grader(hub, course, *args)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert "sandbox: through sudo" in r.stdout + r.stderr, r.stdout[-2000:] + r.stderr[-2000:]
    r = as_grader(hub, course, "feedback", "hw01")
    assert r.returncode != 0 and user in r.stdout + r.stderr  # the written answer is not graded yet
    r = as_grader(hub, course, "feedback", "hw01", "--partial")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert s.action("fetch_feedback", cid, "hw01")["success"]
    home = Path(pwd.getpwnam(user).pw_dir)
    pages = list((home / cid / "hw01" / "feedback").glob("*/hw01.html"))
    assert len(pages) == 1 and "hw01" in pages[0].read_text()
    with pytest.raises(HubError):
        Student(hub["url"], user, "not-the-password").login()


def test_a_student_of_another_course_cannot_fetch(hub):
    """Enrollment is the file system's: exchange/<id> is open to the course's Unix group only, which
    the hub keeps in step with its group nbgrader-<id> before each spawn. Neither nbgrader's fetch
    (whose own check runs in the student's server) nor a plain `cp` from a terminal gets through."""
    import sys

    sys.path.insert(0, str(ROOT / "deploy" / "hub"))
    from client import Student  # noqa: E402

    course = hub["site"]["courses"][0]
    outbound = Path(hub["site"]["exchange"]) / course["id"] / "outbound" / "hw01"
    other = Student(hub["url"], f"{UP}-other", hub["logins"][f"{UP}-other"])
    other.login()
    other.spawn()
    other.action("fetch", course["id"], "hw01")
    assert not other.exists(f"{course['id']}/hw01/hw01.ipynb")
    for user, readable in ((f"{UP}-other", False), (f"{UP}-student3", True)):
        if readable:  # a spawn puts an enrolled student into the group
            s = Student(hub["url"], user, hub["logins"][user])
            s.login()
            s.spawn()
        ls = subprocess.run(["runuser", "-u", user, "--", "ls", str(outbound)], capture_output=True, text=True)
        assert (ls.returncode == 0 and "hw01.ipynb" in ls.stdout) == readable, (user, ls.stdout, ls.stderr)
    # the other student is in their own course's group, not in this one's
    assert f"{UP}-other" in grp.getgrnam(hub["site"]["courses"][1]["unix_group"]).gr_mem
    assert f"{UP}-other" not in grp.getgrnam(course["unix_group"]).gr_mem
