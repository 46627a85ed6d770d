"""`tdl roster import` keeps the hub group nbgrader-<course> in step with the roster, through
nbgrader's JupyterHubAuthPlugin (issue 16, item 4).

- Without a hub (no token), a course configured with the plugin refuses, having written nothing
  (`--no-hub` imports into the gradebook only and says so); `--hub-create-users` without the plugin
  is refused.
- Against a real JupyterHub (deploy/hub/demo.sh, real Linux accounts, root only; CI is root): run
  with the course's Formgrader service token (read from the service process, as a terminal in the
  service would have it): the students added to the group, group members not on the roster kept
  and listed, roster ids the hub does not know listed with exit 1; --hub-create-users creates the
  hub user of an existing Linux account and reports the hub's refusal for a name with no account;
  the hub's /hub/api/groups/nbgrader-<course> is the oracle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT, free_port
from hubkit import PREFIX, demo_hub

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("hub")]
UP = f"tdlr{os.getpid() % 100000}"  # reserved account prefix, unique per run (test_hub.py has tdlt<pid>)
COURSE = "tdl"
HUB_ENV = ("JUPYTERHUB_API_TOKEN", "JUPYTERHUB_API_URL", "JUPYTERHUB_USER", "JUPYTERHUB_SERVICE_NAME")


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in HUB_ENV and k not in ("TDL_EXCHANGE", "TDL_GRADEBOOK", "TDL_COURSE", "TDL_COURSE_ID")}
    env.update(OMP_NUM_THREADS="1", **extra)
    return env


def tdl(course: Path, *args, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tdlcourse.grading.cli", "--course", str(course), "roster",
                           "import", *args], env=env, capture_output=True, text=True, timeout=300)


def make_course(tmp: Path, plugin: bool = True) -> Path:
    root = tmp / "course"
    root.mkdir()
    text = (ROOT / "assignments" / "nbgrader_config.py").read_text()
    if plugin:
        text += '\nc.Authenticator.plugin_class = "nbgrader.auth.JupyterHubAuthPlugin"\n'
    (root / "nbgrader_config.py").write_text(text)
    return root


def students(root: Path):
    from nbgrader.api import Gradebook

    if not (root / "gradebook.db").exists():
        return None
    with Gradebook(f"sqlite:///{root / 'gradebook.db'}") as gb:
        return sorted(s.id for s in gb.students)


def roster(tmp: Path, ids, name="roster.csv") -> str:
    path = tmp / name
    path.write_text("id,first name,last name,email\n" + "".join(f"{i},F{i},L{i},{i}@x.org\n" for i in ids))
    return str(path)


# --- without a hub ----------------------------------------------------------------------------

def test_hub_plugin_without_a_token_writes_nothing(tmp_path):
    course = make_course(tmp_path)
    path = roster(tmp_path, ["ada", "bob"])
    r = tdl(course, path, env=_env())
    assert r.returncode == 2, r.stdout + r.stderr
    assert "JUPYTERHUB_API_TOKEN is not set" in r.stderr and "nbgrader-tdl" in r.stderr
    assert "JupyterHubAuthPlugin" in r.stderr and str(course / "nbgrader_config.py") in r.stderr
    assert "Nothing was imported" in r.stderr and "--no-hub" in r.stderr
    assert sorted(p.name for p in course.iterdir()) == ["nbgrader_config.py"]  # no gradebook, no .tdl

    r = tdl(course, path, "--no-hub", env=_env())
    assert r.returncode == 0, r.stdout + r.stderr
    assert "hub group nbgrader-tdl not touched (--no-hub)" in r.stdout
    assert students(course) == ["ada", "bob"]


def test_unreachable_hub_writes_nothing(tmp_path):
    course = make_course(tmp_path)
    port = free_port()
    r = tdl(course, roster(tmp_path, ["ada"]),
            env=_env(JUPYTERHUB_API_TOKEN="x", JUPYTERHUB_API_URL=f"http://127.0.0.1:{port}/hub/api"))
    assert r.returncode == 2, r.stdout + r.stderr
    assert f"cannot reach the hub's API at http://127.0.0.1:{port}/hub/api" in r.stderr
    assert students(course) is None


def test_without_the_plugin_nothing_changes(tmp_path):
    course = make_course(tmp_path, plugin=False)
    path = roster(tmp_path, ["ada"])
    r = tdl(course, path, env=_env(JUPYTERHUB_API_TOKEN="x", JUPYTERHUB_API_URL="http://127.0.0.1:9/hub/api"))
    # no word of the hub (the temporary folder's path may contain "hub": only the messages count)
    said = r.stdout.replace(str(tmp_path), "<tmp>")
    assert r.returncode == 0 and "hub" not in said, r.stdout + r.stderr
    r = tdl(course, path, "--hub-create-users", env=_env())
    assert r.returncode == 2 and "--hub-create-users needs the hub groups" in r.stderr, r.stderr


# --- a real hub -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hub():
    with demo_hub(UP, "roster", TDL_HUB_COURSE=COURSE) as h:
        full = _service_env(f"{UP}-grader", COURSE, full=True)
        yield {**h, "service_full_env": full, "service_env": {k: full[k] for k in HUB_ENV if k in full}}


def _service_env(user: str, service: str, timeout: float = 120, full: bool = False) -> dict:
    """The hub's environment of the course's Formgrader service (its token, the API URL), read from
    the service's process, as a terminal opened in that service would have it."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        pids = subprocess.run(["pgrep", "-u", user], capture_output=True, text=True).stdout.split()
        for pid in pids:
            try:
                raw = Path(f"/proc/{pid}/environ").read_bytes()
            except OSError:
                continue
            env = dict(kv.split("=", 1) for kv in raw.decode(errors="replace").split("\0") if "=" in kv)
            if env.get("JUPYTERHUB_SERVICE_NAME") == service and env.get("JUPYTERHUB_API_TOKEN"):
                return env if full else {k: env[k] for k in HUB_ENV if k in env}
        time.sleep(0.5)
    raise AssertionError(f"no process of {user} runs the hub service {service!r}")


def api(env: dict, method: str, path: str, body=None):
    req = urllib.request.Request(env["JUPYTERHUB_API_URL"].rstrip("/") + path, method=method,
                                 data=None if body is None else json.dumps(body).encode(),
                                 headers={"Authorization": f"token {env['JUPYTERHUB_API_TOKEN']}",
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        data = r.read()
        return json.loads(data) if data else None


def group(env: dict) -> set[str]:
    return set(api(env, "GET", f"/groups/nbgrader-{COURSE}")["users"])


def test_roster_import_keeps_the_hub_group_in_step(hub, tmp_path):
    henv = hub["service_env"]
    s1, s2, s3 = (f"{UP}-student{i}" for i in (1, 2, 3))
    # late: a Linux account the hub has no user for yet; ghost: a name with no account at all
    late, ghost = f"{UP}-late", f"{UP}-ghost"
    assert group(henv) == {s1, s2, s3}  # demo.sh's site seeds the group
    # the group out of step: two students left it
    api(henv, "DELETE", f"/groups/nbgrader-{COURSE}/users", {"users": [s2, s3]})
    assert group(henv) == {s1}
    subprocess.run(["useradd", "--no-create-home", late], check=True)
    try:
        course = make_course(tmp_path)
        env = _env(**henv)
        path = roster(tmp_path, [s1, s2, late, ghost])
        r = tdl(course, path, env=env)
        out = r.stdout
        assert r.returncode == 1, out + r.stderr
        assert students(course) == sorted([s1, s2, late, ghost])  # the gradebook has the whole roster
        assert group(henv) == {s1, s2}  # the hub's own answer
        assert f"hub group {s2} (added to nbgrader-{COURSE})" in out
        assert f"not in the hub {late} (no hub user: not added to nbgrader-{COURSE})" in out
        assert f"not in the hub {ghost} (no hub user: not added to nbgrader-{COURSE})" in out
        assert "1 added, 1 already members, 0 not on the roster (kept), 2 unknown to the hub" in out
        assert f"{late}, {ghost}" in r.stderr and "--hub-create-users" in r.stderr
        assert "no user on the hub" in r.stderr

        # --hub-create-users: the hub (PAM) creates a user for the Linux account, refuses the ghost;
        # a member who is not on the roster is kept, and listed
        api(henv, "POST", f"/groups/nbgrader-{COURSE}/users", {"users": [s3]})
        r = tdl(course, path, "--hub-create-users", env=env)
        out = r.stdout
        assert r.returncode == 1, out + r.stderr
        assert f"hub user  {late} (created: --hub-create-users)" in out
        assert f"hub group {late} (added to nbgrader-{COURSE})" in out
        assert f"hub group {s3} (in nbgrader-{COURSE}, not in {path}; kept)" in out
        line = next(x for x in out.splitlines() if x.startswith(f"not in the hub {ghost}"))
        assert "--hub-create-users: the hub did not create it (HTTP 400: Failed to create user" in line, line
        assert "creates hub users only for existing accounts" in line
        assert "1 added, 2 already members, 1 not on the roster (kept), 1 unknown to the hub" in out
        assert group(henv) == {s1, s2, s3, late}
        # what nbgrader's JupyterHubAuthPlugin reads to show a student the course
        assert f"nbgrader-{COURSE}" in api(henv, "GET", f"/users/{late}")["groups"]

        # the ghost off the roster: in step, exit 0; the gradebook keeps the ghost (never deleted)
        path = roster(tmp_path, [s1, s2, late], "roster2.csv")
        r = tdl(course, path, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "0 added, 3 already members, 1 not on the roster (kept), 0 unknown to the hub" in r.stdout
        assert f"kept      {ghost}" in r.stdout and "nothing changed" in r.stdout
        assert group(henv) == {s1, s2, s3, late}
        assert students(course) == sorted([s1, s2, late, ghost])
    finally:
        subprocess.run(["userdel", late], capture_output=True)


def test_a_token_the_hub_refuses_writes_nothing(hub, tmp_path):
    """A token the hub does not accept is refused before the gradebook changes."""
    henv = hub["service_env"]
    course = make_course(tmp_path)
    env = _env(JUPYTERHUB_API_TOKEN="not-a-token", JUPYTERHUB_API_URL=henv["JUPYTERHUB_API_URL"])
    r = tdl(course, roster(tmp_path, [f"{UP}-student1"]), env=env)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "refused the token" in r.stderr and "groups!group=nbgrader-tdl" in r.stderr
    assert students(course) is None


def test_roster_import_in_the_formgrader_service(hub):
    """The instructor's path on the hub: the grader account, in the course's Formgrader service
    (its environment, the hub environment's own `tdl`, the system-wide nbgrader_config.py that
    sets the plugin), on the course root that courses.py made."""
    henv = hub["service_env"]
    course = hub["site"]["courses"][0]
    grader, root = course["grader"], Path(course["root"])
    s1, s2, s3 = (f"{UP}-student{i}" for i in (1, 2, 3))
    api(henv, "DELETE", f"/groups/nbgrader-{COURSE}/users", {"users": [s3]})
    members = group(henv)
    path = root / "roster.csv"
    path.write_text("id,first name,last name,email\n" + "".join(f"{i},F,L,{i}@x.org\n" for i in (s1, s2, s3)))
    shutil.chown(path, grader, grader)
    tdl_bin = Path(PREFIX) / "env" / "bin" / "tdl"
    r = subprocess.run(["runuser", "-u", grader, "--", "env", "-i",
                        *(f"{k}={v}" for k, v in hub["service_full_env"].items()),
                        str(tdl_bin), "--course", str(root), "roster", "import", str(path)],
                       capture_output=True, text=True, timeout=300, cwd="/")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"hub group {s3} (added to nbgrader-{COURSE})" in r.stdout
    assert group(henv) == members | {s3}
    extra = sorted(members - {s1, s2, s3})
    for sid in extra:  # left by the test before, if it ran: kept and listed
        assert f"hub group {sid} (in nbgrader-{COURSE}, not in {path}; kept)" in r.stdout
    assert f"{len(extra)} not on the roster (kept), 0 unknown to the hub" in r.stdout
