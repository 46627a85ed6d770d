"""What the tests of the class hub share (tests/test_hub*.py): a throwaway hub from
`deploy/hub/demo.sh` under a reserved account prefix, a cookie-jar client for its pages, and `tdl`
run as a course's grader account. Root only; where the hub cannot run the tests skip with the
reason, and under CI=true (which is root) they fail instead."""

from __future__ import annotations

import contextlib
import http.cookiejar
import json
import os
import pwd
import random
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import ROOT

PREFIX = os.environ.get("TDL_HUB_PREFIX", "/opt/tdl-hub")
DEMO = ROOT / "deploy" / "hub" / "demo.sh"


def cannot(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"the hub tests must run under CI=true: {reason}")
    pytest.skip(reason)


def alive(pid: int) -> bool:
    """Running (a zombie nobody reaped is not running)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


def taken(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def hub_ports() -> int:
    """A base port for demo.sh (it uses base, +1, +81, +1001, +1002), all free, and below the
    kernel's ephemeral range: ports handed out by bind(0) (kernels, browsers, other tests running
    meanwhile) can take one of them between this check and the hub's start (seen in CI: the hub's
    API port was taken)."""
    lo = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0]) \
        if Path("/proc/sys/net/ipv4/ip_local_port_range").exists() else 32768
    rng = random.Random(os.getpid())
    for _ in range(200):
        base = rng.randrange(10000, max(10001, lo - 1100))
        if all(_bindable(base + d) for d in (0, 1, 81, 1001, 1002)):
            return base
    raise RuntimeError("no free ports for the demo hub below the ephemeral range")


@contextlib.contextmanager
def demo_hub(up: str, tag: str, **env_extra):
    """A running demo hub whose accounts are `<up>-*`; stopped and checked clean on exit.

    Yields url, state, logins (user -> password), out (what start printed) and site (the site file)."""
    if os.geteuid() != 0:
        cannot("needs root (real Linux accounts, servers started as them)")
    for tool in ("useradd", "userdel", "chpasswd", "runuser", "npm", "pgrep", "gpasswd"):
        if not shutil.which(tool):
            cannot(f"{tool} is not installed")
    state = Path("/tmp") / f"tdl-hub-{tag}-{os.getpid()}"
    port = hub_ports()
    env = dict(os.environ, TDL_HUB_PREFIX=PREFIX, TDL_HUB_PORT=str(port), TDL_HUB_USER_PREFIX=up, **env_extra)
    subprocess.run([str(DEMO), "stop", str(state)], env=env, capture_output=True, timeout=120)
    r = subprocess.run([str(DEMO), "start", str(state)], env=env, capture_output=True, text=True, timeout=2400)
    try:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
        logins = dict(line.split() for line in (state / "logins.txt").read_text().splitlines())
        yield {"url": f"http://127.0.0.1:{port}", "state": state, "logins": logins, "out": r.stdout,
               "site": json.loads((state / "site.json").read_text()), "env": env}
    finally:
        hub_pid = int((state / "jupyterhub.pid").read_text()) if (state / "jupyterhub.pid").exists() else None
        s = subprocess.run([str(DEMO), "stop", str(state)], env=env, capture_output=True, text=True, timeout=300)
        assert s.returncode == 0, s.stderr
        assert not state.exists()
        left = [u.pw_name for u in pwd.getpwall() if u.pw_name.startswith(up + "-")]
        assert left == [], f"accounts left behind: {left}"
        import grp

        groups = [g.gr_name for g in grp.getgrall() if g.gr_name.startswith(up + "-")]
        assert groups == [], f"groups left behind: {groups}"
        assert not Path(f"/etc/sudoers.d/{up}-sandbox").exists(), "the graders' sudo rule was left behind"
        assert hub_pid is None or not alive(hub_pid), "the hub is still running after demo.sh stop"


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

    def api_token(self, user: str) -> str:
        """A new API token of the logged-in user (as the hub's Token page makes one)."""
        req = urllib.request.Request(f"{self.base}/hub/api/users/{user}/tokens", method="POST",
                                     data=json.dumps({"note": "test", "expires_in": 600}).encode(),
                                     headers={"X-XSRFToken": self.xsrf(), "Content-Type": "application/json"})
        with self.opener.open(req, timeout=60) as r:
            return json.loads(r.read())["token"]

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


def as_grader(hub, course: dict, *args, timeout: float = 900) -> subprocess.CompletedProcess:
    """`tdl` as the course's grader account (what the instructor runs in the Formgrader's terminal)."""
    env = ["env", "-i", f"HOME={course.get('home', course['root'])}", f"PATH={PREFIX}/env/bin:/usr/bin:/bin",
           f"TDL_EXCHANGE={hub['site']['exchange']}", f"TDL_COURSE_ID={course['id']}",
           f"JUPYTERHUB_USER={course['grader']}", f"JUPYTERHUB_API_TOKEN={course['api_token']}",
           f"JUPYTERHUB_API_URL=http://127.0.0.1:{hub['site']['hub_port']}/hub/api",
           f"TDL_SANDBOX_HELPER={PREFIX}/bin/tdl-sandbox"]  # as the hub sets it for its services
    return subprocess.run(["runuser", "-u", course["grader"], "--", *env, f"{PREFIX}/env/bin/tdl",
                           "--course", course["root"], *args], capture_output=True, text=True, timeout=timeout,
                          cwd="/")
