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
  the other course sees nothing and cannot fetch; the grader collects, grades, and releases feedback
  (refused until the written answer is graded, then with --partial); the student fetches it.
Skipped, with the reason, where this cannot run (not root, no useradd); under CI=true that fails.
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import pwd
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hub")]
PREFIX = os.environ.get("TDL_HUB_PREFIX", "/opt/tdl-hub")
# reserved account prefix of this test, unique per run: two checkouts testing at once must not
# delete each other's accounts
UP = f"tdlt{os.getpid() % 100000}"


def _cannot(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"the hub test must run under CI=true: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    if os.geteuid() != 0:
        _cannot("needs root (real Linux accounts, servers started as them)")
    for tool in ("useradd", "userdel", "chpasswd", "runuser", "npm"):
        if not shutil.which(tool):
            _cannot(f"{tool} is not installed")
    state = Path("/tmp") / f"tdl-hub-test-{os.getpid()}"
    port = free_port()
    while any(_taken(p) for p in (port + 1, port + 81, port + 1001, port + 1002)):
        port = free_port()
    env = dict(os.environ, TDL_HUB_PREFIX=PREFIX, TDL_HUB_PORT=str(port), TDL_HUB_USER_PREFIX=UP)
    demo = ROOT / "deploy" / "hub" / "demo.sh"
    subprocess.run([str(demo), "stop", str(state)], env=env, capture_output=True, timeout=120)
    r = subprocess.run([str(demo), "start", str(state)], env=env, capture_output=True, text=True, timeout=2400)
    try:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        logins = dict(line.split() for line in (state / "logins.txt").read_text().splitlines())
        yield {"url": f"http://127.0.0.1:{port}", "state": state, "logins": logins, "out": r.stdout,
               "site": json.loads((state / "site.json").read_text())}
    finally:
        hub_pid = int((state / "jupyterhub.pid").read_text()) if (state / "jupyterhub.pid").exists() else None
        s = subprocess.run([str(demo), "stop", str(state)], env=env, capture_output=True, text=True, timeout=300)
        assert s.returncode == 0, s.stderr
        assert not state.exists()
        left = [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith(UP + "-")]
        assert left == [], f"accounts left behind: {left}"
        assert hub_pid is None or not _alive(hub_pid), "the hub is still running after demo.sh stop"


def _alive(pid: int) -> bool:
    """Running (a zombie nobody reaped is not running)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def _taken(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


class Browser:
    """A cookie jar and redirects, as a browser would (no JavaScript needed for these pages)."""

    def __init__(self, base: str):
        self.base, self.jar = base, http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, path: str, timeout: float = 60):
        try:
            with self.opener.open(self.base + path, timeout=timeout) as r:
                return r.status, r.geturl(), r.read().decode(errors="replace")
        except urllib.error.HTTPError as e:
            return e.code, e.geturl(), e.read().decode(errors="replace")

    def xsrf(self) -> str:
        return next(c.value for c in self.jar if c.name == "_xsrf")

    def login(self, user: str, password: str) -> None:
        status, _, page = self.get("/hub/login")
        assert status == 200, page[:500]
        data = urllib.parse.urlencode({"username": user, "password": password, "_xsrf": self.xsrf()}).encode()
        req = urllib.request.Request(self.base + "/hub/login?next=%2Fhub%2Fhome", data=data, method="POST")
        with self.opener.open(req, timeout=60) as r:
            assert r.status == 200 and "/hub/home" in r.geturl(), r.geturl()

    def spawn(self, user: str, timeout: float = 240) -> None:
        """Start the user's server as the home page's button does (GET /hub/spawn), and wait for it."""
        status, url, body = self.get("/hub/spawn", timeout=timeout)
        assert status == 200, (status, url, body[:300])
        t0 = time.monotonic()
        while time.monotonic() - t0 < timeout:
            # a page, not the API: its OAuth redirects through the hub give this browser the server's cookie
            status, url, body = self.get(f"/user/{user}/lab")
            if status == 200 and f"/user/{user}/lab" in url:
                return
            time.sleep(1)
        pytest.fail(f"{user}'s server did not start: {status} {url} {body[:300]}")


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


def _as_grader(hub, course: dict, *args) -> subprocess.CompletedProcess:
    """`tdl` as the course's grader account (what the instructor runs in the Formgrader's terminal)."""
    env = ["env", "-i", f"HOME={course.get('home', course['root'])}", f"PATH={PREFIX}/env/bin:/usr/bin:/bin",
           f"TDL_EXCHANGE={hub['site']['exchange']}", f"TDL_COURSE_ID={course['id']}",
           f"JUPYTERHUB_USER={course['grader']}", f"JUPYTERHUB_API_TOKEN={course['api_token']}",
           f"JUPYTERHUB_API_URL=http://127.0.0.1:{hub['site']['hub_port']}/hub/api"]
    return subprocess.run(["runuser", "-u", course["grader"], "--", *env, f"{PREFIX}/env/bin/tdl",
                           "--course", course["root"], *args], capture_output=True, text=True, timeout=900, cwd="/")


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
    assert s.action("fetch", cid, "hw01")["success"]
    path = f"{cid}/hw01/hw01.ipynb"
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

    for args in (("collect", "hw01"), ("grade", "hw01", "--jobs", "1", "--sandbox", "off", "--no-progress")):
        r = _as_grader(hub, course, *args)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    r = _as_grader(hub, course, "feedback", "hw01")
    assert r.returncode != 0 and user in r.stdout + r.stderr  # the written answer is not graded yet
    r = _as_grader(hub, course, "feedback", "hw01", "--partial")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert s.action("fetch_feedback", cid, "hw01")["success"]
    home = Path(pwd.getpwnam(user).pw_dir)
    pages = list((home / cid / "hw01" / "feedback").glob("*/hw01.html"))
    assert len(pages) == 1 and "hw01" in pages[0].read_text()
    with pytest.raises(HubError):
        Student(hub["url"], user, "not-the-password").login()


@pytest.mark.xfail(strict=True, reason="known gap (issue 16): nbgrader's exchange checks enrollment only when it "
                   "lists assignments; outbound/ is world-readable, so anyone who knows the ids can fetch. "
                   "Closing it needs a Unix group per course kept in step with the roster.")
def test_a_student_of_another_course_cannot_fetch(hub):
    import sys

    sys.path.insert(0, str(ROOT / "deploy" / "hub"))
    from client import Student  # noqa: E402

    other = Student(hub["url"], f"{UP}-other", hub["logins"][f"{UP}-other"])
    other.login()
    other.spawn()
    assert not other.action("fetch", hub["site"]["courses"][0]["id"], "hw01")["success"]
