"""`tdl grade --sandbox sudo`: the grading sandbox for a grader that is not root, through a sudo rule
for the root-owned helper (src/tdlcourse/grading/sandbox_helper.py, deploy/sandbox/install.sh).

Root only (CI is root): Debian's sudo is installed with apt-get when missing; a grader account and a
second account under a per-run prefix (``tdls<pid>-``), a per-run root-owned environment (Debian's
python3.11 reading this checkout's venv), the helper installed there by deploy/sandbox/install.sh
and a per-run /etc/sudoers.d/ file (visudo -cf) are made, and all of it is removed afterwards, even
on failure. As the grader (runuser), `tdl grade --sandbox sudo` grades a throwaway course: a
correct submission and hostile ones (snooping the course, the gradebook, /etc/shadow, the helper's
state and other scratch directories, writing outside scratch, a fork bomb, a loop, a loop that
ignores SIGINT, sudo and the helper from the kernel). Then the grader abuses the helper directly.
Skipped with the reason where this cannot run; under CI=true that is a failure.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sysconfig
import tempfile
from pathlib import Path

import nbformat
import pytest

from conftest import BIN, IN_CI, ROOT, fill_solutions, tdl_env

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("sandbox_sudo")]

PREFIX = f"tdls{os.getpid() % 100000}"
GRADER, OTHER = f"{PREFIX}-grader", f"{PREFIX}-other"
TEAM, MATE = f"{PREFIX}-team", f"{PREFIX}-mate"  # MATE's primary group is TEAM's
OPT = Path(f"/opt/{PREFIX}-sandbox")
HELPER = OPT / "bin" / "tdl-sandbox"
VIEW = OPT / "checkout"  # the checkout, mounted read-only where every user may enter
SUDOERS = Path(f"/etc/sudoers.d/{PREFIX}-sandbox")  # no dot in the name: sudo skips such files
PYTHON = "/usr/bin/python3.11"  # Debian's, readable by every user (root's pyenv is under /root)
UID_LO, UID_HI = 2_000_000_000, 2_000_000_000 + 64 * 4096  # sandbox.reserve_uids' range
CELL_TIMEOUT = 6
SCRATCH = "/var/lib/tdl-sandbox"  # sandbox_helper.SCRATCH_ROOT

PROBE = r'''
import json, os, subprocess
out = {"uid": os.getuid(), "gid": os.getgid(), "groups": os.getgroups(), "cwd": os.getcwd(),
       "siblings": os.listdir(os.path.dirname(os.getcwd()))}
read = {}
for p in __PATHS__:
    try:
        if os.path.isdir(p):
            read[p] = os.listdir(p)
        else:
            with open(p, "rb") as fh:
                read[p] = len(fh.read())
    except OSError as e:
        read[p] = "blocked: " + type(e).__name__
out["read"] = read
wrote = {}
for p in __WRITES__:
    try:
        with open(p, "w") as fh:
            fh.write("x")
        wrote[p] = "wrote"
    except OSError as e:
        wrote[p] = "blocked: " + type(e).__name__
out["wrote"] = wrote
runs = {}
for name, argv in __RUNS__.items():
    try:
        r = subprocess.run(argv, capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        runs[name] = [r.returncode, (r.stdout + r.stderr)[-300:]]
    except OSError as e:
        runs[name] = [-1, str(e)]
out["runs"] = runs
print("PROBE " + json.dumps(out))
'''

# Forked from a small process (a kernel's fork costs ~15 ms, the limit would not be reached within a
# cell's time): every child stays behind as a daemon, only the slot's sweep gets rid of them.
FORK_BOMB = r'''
import subprocess, sys
bomb = """
import os, time
children = 0
try:
    for _ in range(5000):
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            time.sleep(600)
            os._exit(0)
        children += 1
    print("FORKS UNBOUNDED", children)
except OSError as e:
    print("FORK LIMIT", children, type(e).__name__)
"""
print(subprocess.run([sys.executable, "-c", bomb], capture_output=True, text=True, timeout=60).stdout)
import os
print("FORK UID", os.getuid())
'''

LOOP = "while True:\n    pass\n"
STUBBORN = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass\n"


def _unavailable(reason: str):
    if IN_CI:
        pytest.fail(f"the sudo sandbox test cannot run under CI=true: {reason}")
    pytest.skip(reason)


def _run(argv, check=True, **kw):
    r = subprocess.run(argv, capture_output=True, text=True, timeout=kw.pop("timeout", 600), **kw)
    assert r.returncode == 0 or not check, f"{argv} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _as(user, argv, **kw):
    return _run(["runuser", "-u", user, "--", *argv], **kw)


def _ensure_sudo():
    if shutil.which("sudo") and shutil.which("visudo"):
        return
    if not shutil.which("apt-get"):
        _unavailable("sudo is not installed and there is no apt-get to install it")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    argv = ["apt-get", "install", "-y", "--no-install-recommends", "sudo"]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    if r.returncode != 0:
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=600, env=env)
        r = subprocess.run(argv, capture_output=True, text=True, timeout=600, env=env)
    if not shutil.which("sudo"):
        _unavailable(f"apt-get install sudo failed: {(r.stdout + r.stderr)[-1500:]}")


def _kill_user_processes(user: str) -> None:
    try:
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass


def _processes_of(uid: int) -> list[str]:
    out = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if os.stat(f"/proc/{pid}").st_uid == uid:
                    out.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:100])
            except OSError:
                pass
    return out


@pytest.fixture(scope="module")
def rig():
    if os.geteuid() != 0:
        _unavailable("needs root (it creates accounts, a sudo rule and installs the helper)")
    if not shutil.which("useradd") or not os.access(PYTHON, os.X_OK):
        _unavailable(f"needs useradd and {PYTHON} (Debian: apt-get install passwd python3.11)")
    _ensure_sudo()
    made, mounted = [], []
    try:
        for user in (GRADER, OTHER, TEAM, MATE):
            _run(["useradd", "-m", "-s", "/bin/sh", *(["-g", TEAM] if user == MATE else ["-U"]), user])
            made.append(user)
        # A root-owned environment every user can run: Debian's python3.11 (same ABI as the venv's)
        # with this checkout's venv as a site directory (the hub's is deploy/hub/setup.sh's env).
        env_dir = OPT / "env"
        _run([PYTHON, "-m", "venv", "--without-pip", str(env_dir)])
        site = Path(sysconfig.get_paths()["purelib"])
        src = ROOT / "src"
        pth = env_dir / "lib" / "python3.11" / "site-packages" / "zz-tdl-checkout.pth"
        pth.write_text(f"import site; site.addsitedir({str(site)!r})\n")
        _run(["chmod", "-R", "go-w", str(env_dir)])
        os.chmod(OPT, 0o755)
        probe = [str(env_dir / "bin" / "python"), "-c", "import tdlcourse.grading.sandbox_helper"]
        if _as(GRADER, probe, check=False).returncode != 0 and site.is_relative_to(ROOT):
            # A clean clone may sit below a folder only root can enter (mktemp -d is 0700): the
            # grader then reaches the checkout through a read-only bind mount in OPT. Plain paths,
            # not addsitedir: the venv's editable-install .pth names the checkout's own path.
            VIEW.mkdir(parents=True)
            _run(["mount", "--bind", str(ROOT), str(VIEW)])
            mounted.append(VIEW)
            _run(["mount", "-o", "remount,bind,ro", str(VIEW)])
            site, src = VIEW / site.relative_to(ROOT), VIEW / "src"
            pth.write_text(f"{src}\n{site}\n")
        r = _as(GRADER, [str(env_dir / "bin" / "python"), "-c", "import tdlcourse.grading.sandbox_helper"], check=False)
        if r.returncode != 0:
            _unavailable(f"this checkout ({ROOT}) and its venv are not readable by other users: {r.stderr[-500:]}")
        r = _run([str(ROOT / "deploy" / "sandbox" / "install.sh"), str(OPT), GRADER, OTHER, TEAM], check=False,
                 env=dict(os.environ, HELPER=str(HELPER), SUDOERS=str(SUDOERS)))
        if r.returncode != 0 and "not root's or is writable" in r.stderr + r.stdout:
            _unavailable(f"the checkout cannot host a root-trusted helper: {r.stderr.strip()}")
        assert r.returncode == 0, r.stdout + r.stderr
        yield {"env": env_dir, "python": str(env_dir / "bin" / "python"), "src": src}
    finally:
        for user in made:
            _kill_user_processes(user)
        SUDOERS.unlink(missing_ok=True)
        for view in mounted:  # never remove OPT while the checkout is mounted in it
            subprocess.run(["umount", str(view)], capture_output=True)
        if not any(os.path.ismount(v) for v in mounted):
            shutil.rmtree(OPT, ignore_errors=True)
        for user in reversed(made):  # MATE before TEAM, whose group is MATE's primary group
            subprocess.run(["userdel", "-r", user], capture_output=True)
        assert not [u for u in made if _exists(u)], "the test's accounts were not removed"


def _exists(user):
    try:
        pwd.getpwnam(user)
        return True
    except KeyError:
        return False


def test_install_wrote_a_root_owned_helper_and_a_checked_sudo_rule(rig):
    st = HELPER.stat()
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (0, 0, 0o755)
    text = HELPER.read_text()
    assert f"exec {rig['python']} -I -m tdlcourse.grading.sandbox_helper" in text
    st = SUDOERS.stat()
    assert (st.st_uid, st.st_mode & 0o7777) == (0, 0o440)
    assert f"{GRADER} ALL=(root) NOPASSWD: {HELPER}\n" in SUDOERS.read_text()
    assert _run(["visudo", "-cf", str(SUDOERS)]).returncode == 0
    # the rule is for this one program: anything else through sudo is refused
    assert _as(GRADER, ["sudo", "-n", "-l", str(HELPER)]).stdout.strip() == str(HELPER)
    assert _as(GRADER, ["sudo", "-n", "/bin/sh", "-c", "id"], check=False).returncode != 0


# --- grading as the grader -----------------------------------------------------------------

def _answers(nb, source, extra_cell=None):
    fill_solutions(nb, source)
    if extra_cell:
        first = next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")
        nb.cells.insert(first + 1, nbformat.v4.new_code_cell(extra_cell))
    return nb


@pytest.fixture(scope="module")
def graded(rig):
    # Not under /tmp or /home, which every kernel gets empty anyway: the course must be hidden
    # because tdl grade asks the helper to hide it.
    os.makedirs("/srv", exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-course-", dir="/srv"))
    try:
        os.chmod(base, 0o755)
        course = base / "course"
        course.mkdir()
        shutil.copy(ROOT / "assignments" / "nbgrader_config.py", course)
        shutil.copytree(ROOT / "assignments" / "source" / "hw01", course / "source" / "hw01")
        home = Path(pwd.getpwnam(GRADER).pw_dir)
        (home / "grader-secret.txt").write_text("the grader's own file")
        tmp_marker = f"/tmp/{PREFIX}-written-by-kernel"
        snoop = PROBE.replace("__PATHS__", repr(
            [str(course), str(course / "gradebook.db"), str(course / "source" / "hw01" / "hw01.ipynb"),
             str(home / "grader-secret.txt"), "/etc/shadow", "/run/tdl-sandbox",
             str(ROOT / "src" / "tdlcourse" / "capacity.py"), str(rig["src"] / "tdlcourse" / "capacity.py"),
             "/var/lib/tdl-sandbox"])).replace("__WRITES__", repr(
            [str(course / "planted.txt"), str(home / "planted.txt"), tmp_marker])).replace("__RUNS__", repr(
            {"sudo": ["sudo", "-n", "true"], "sudo_helper": ["sudo", "-n", str(HELPER), "session", "--slots", "1"],
             "helper": [str(HELPER), "session", "--slots", "1"]}))
        students = {"good": None, "snoop": snoop, "forkbomb": FORK_BOMB, "loop": LOOP, "stubborn": STUBBORN}
        env = tdl_env(TDL_SCALE="ci")
        roster = base / "roster.csv"
        roster.write_text("id,first_name,last_name,email\n" + "".join(f"{s},{s},X,{s}@x.example\n" for s in students))
        tdl = str(BIN / "tdl")
        _run([tdl, "--course", str(course), "roster", "import", str(roster)], cwd=course, env=env)
        _run([tdl, "--course", str(course), "release", "hw01", "--no-check"], cwd=course, env=env)
        source = nbformat.read(course / "source" / "hw01" / "hw01.ipynb", as_version=4)
        for s, cell in students.items():
            nb = _answers(nbformat.read(course / "release" / "hw01" / "hw01.ipynb", as_version=4), source, cell)
            dest = course / "submitted" / s / "hw01"
            dest.mkdir(parents=True)
            nbformat.write(nb, dest / "hw01.ipynb")
            (dest / "timestamp.txt").write_text("2026-11-30 12:00:00.000000 UTC")
        _run(["chown", "-R", f"{GRADER}:{GRADER}", str(course)])
        os.chmod(course, 0o755)  # a careless instructor's: the course root's listing is readable by all
        genv = {"PATH": f"{rig['env']}/bin:/usr/bin:/bin", "HOME": str(home), "TDL_SCALE": "ci",
                "TDL_SANDBOX_HELPER": str(HELPER), "OMP_NUM_THREADS": "1", "LANG": "C.UTF-8"}
        r = _run(["runuser", "-u", GRADER, "--", "env", "-i", *(f"{k}={v}" for k, v in genv.items()),
                  rig["python"], "-m", "tdlcourse.grading.cli", "--course", str(course), "grade", "hw01",
                  "--sandbox", "sudo", "--jobs", "2", "--no-progress", "--cell-timeout", str(CELL_TIMEOUT),
                  "--timeout", "120"], check=False, cwd=course)
        outputs = {}
        for s in students:
            path = course / "autograded" / s / "hw01" / "hw01.ipynb"
            assert path.exists(), f"{s} was not graded:\n{r.stdout[-4000:]}\n{r.stderr[-4000:]}"
            nb = nbformat.read(path, as_version=4)
            outputs[s] = "\n".join(o.get("text", "") + o.get("evalue", "") + o.get("ename", "")
                                   for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []))
        m = re.search(r"FORK UID (\d+)", outputs["forkbomb"])
        leftovers = _processes_of(int(m.group(1))) if m else ["the fork bomb printed no uid"]
        from nbgrader.api import Gradebook

        with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:  # the autograded cells
            cells = ("q1-test", "q2-test", "q3-test")
            scores = {s: sum(float(gb.find_grade(c, "hw01", "hw01", s).score) for c in cells) for s in students}
            max_score = sum(float(gb.find_grade(c, "hw01", "hw01", "good").max_score) for c in cells)
        yield {"run": r, "course": course, "leftovers": leftovers, "outputs": outputs, "scores": scores,
               "max": max_score,
               "home": home, "tmp_marker": tmp_marker,
               "scratch_left": sorted(os.listdir(SCRATCH)) if os.path.isdir(SCRATCH) else []}
    finally:
        shutil.rmtree(base, ignore_errors=True)
        for p in (f"/tmp/{PREFIX}-written-by-kernel",):
            Path(p).unlink(missing_ok=True)


def test_grade_ran_through_sudo_and_the_correct_submission_gets_full_marks(graded):
    r = graded["run"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert "through sudo" in r.stdout and str(HELPER) in r.stdout, r.stdout + r.stderr
    assert graded["scores"]["good"] == graded["max"] > 0, graded["scores"]


def test_the_kernel_ran_as_a_slot_uid_and_read_nothing_of_the_grader(graded):
    line = next(ln for ln in graded["outputs"]["snoop"].splitlines() if ln.startswith("PROBE "))
    probe = json.loads(line[len("PROBE "):])
    grader = pwd.getpwnam(GRADER)
    assert UID_LO <= probe["uid"] < UID_HI and probe["uid"] not in (0, grader.pw_uid), probe
    assert probe["gid"] == probe["uid"] and probe["groups"] == [], probe
    # its scratch directory, alone in its session's folder, in a scratch root that shows nothing else
    session_dir = os.path.dirname(probe["cwd"])
    assert probe["siblings"] == [os.path.basename(probe["cwd"])], probe
    assert probe["read"].pop("/var/lib/tdl-sandbox") == [os.path.basename(session_dir)], probe
    for path, what in probe["read"].items():
        # hidden folders are empty read-only mounts; files in them do not exist for the kernel
        assert what == [] or str(what).startswith("blocked"), (path, what)
    for path, what in probe["wrote"].items():
        if path.startswith("/tmp/"):
            assert not Path(path).exists(), "the kernel's /tmp is the host's"
        else:
            assert what.startswith("blocked"), (path, what)
    assert not (graded["course"] / "planted.txt").exists() and not (graded["home"] / "planted.txt").exists()
    for name, (rc, out) in probe["runs"].items():
        assert rc != 0, (name, out)
    assert graded["scores"]["snoop"] == graded["max"]  # spying costs no points; it gains nothing


def test_a_fork_bomb_is_bounded_and_its_daemons_are_swept(graded):
    out = graded["outputs"]["forkbomb"]
    m = re.search(r"FORK LIMIT (\d+)", out)
    assert m and int(m.group(1)) < 512, out[-500:]
    assert UID_LO <= int(re.search(r"FORK UID (\d+)", out).group(1)) < UID_HI
    assert graded["leftovers"] == [], graded["leftovers"]
    assert graded["scratch_left"] == [], graded["scratch_left"]


def test_loops_are_stopped_by_the_timeout_an_ignored_interrupt_by_a_kill(graded):
    assert "CellTimeoutError" in graded["outputs"]["loop"]
    assert graded["scores"]["loop"] == graded["max"]  # interrupted; the later cells ran
    assert "CellTimeoutError" in graded["outputs"]["stubborn"]
    assert "NotRun" in graded["outputs"]["stubborn"]  # killed: nothing after it ran
    assert graded["scores"]["stubborn"] == 0.0
    assert "stubborn" in graded["run"].stdout and "did not stop when interrupted" in graded["run"].stdout


# --- the grader abusing the helper directly ------------------------------------------------

DRIVER = r'''
import json, os, subprocess, sys
from tdlcourse.grading import sandbox_helper as h

helper, mode = sys.argv[1], sys.argv[2]
conn = {"shell_port": 1, "iopub_port": 2, "stdin_port": 3, "control_port": 4, "hb_port": 5,
        "transport": "tcp", "ip": "127.0.0.1", "key": "k", "signature_scheme": "hmac-sha256"}

def attempt(argv):
    r = subprocess.run(["sudo", "-n", helper, *argv], capture_output=True, text=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    return [r.returncode, r.stderr.strip()]

def refused(fn):
    try:
        fn()
        return "accepted"
    except h.HelperError as e:
        return str(e)

if mode == "hold":  # a session with one kernel token; until stdin closes
    s = h.Session(helper, 1)
    sc = s.scratch(0)
    with open(os.path.join(sc, "kernel.json"), "w") as fh:
        json.dump(conn, fh)
    print(json.dumps({"token": s.token(sc, "kernel"), "scratch": sc}), flush=True)
    sys.stdin.read()
    s.close()
elif mode == "kill":  # a kernel through sudo, killed the way jupyter_client kills it
    import asyncio
    from tdlcourse.grading import execute as gx, sandbox

    def slot_processes(uid):
        n = 0
        for pid in os.listdir("/proc"):
            try:
                n += pid.isdigit() and os.stat("/proc/" + pid).st_uid == uid
            except OSError:
                pass
        return n

    s = h.Session(helper, 1)
    sc, uid = s.scratch(0), s.info["uid_base"]

    async def go():
        km = gx._client_class()[0](kernel_name="python3")
        km.sandbox_plan = sandbox.SandboxPlan(sandbox.SUDO_MODE, helper=helper)
        km.sandbox_scratch, km.sandbox_session = sc, s
        km.connection_file = os.path.join(sc, "kernel.json")
        await km.start_kernel(cwd=sc, env={"PATH": "/usr/bin:/bin"})
        kc = km.client()
        kc.start_channels()
        await kc.wait_for_ready(timeout=60)
        before = slot_processes(uid)
        kc.stop_channels()
        await km.shutdown_kernel(now=True)
        return before, slot_processes(uid)

    before, after = asyncio.run(go())
    s.release(sc)
    s.close()
    print(json.dumps({"before": before, "after": after}))
elif mode == "try":
    print(json.dumps(attempt(["launch", sys.argv[3]])))
elif mode == "abuse":
    s = h.Session(helper, 1)
    sc = s.scratch(0)
    out = {}
    out["forged"] = attempt(["launch", s.info["session"] + "." + "0" * 32])
    out["malformed"] = attempt(["launch", "../../etc/shadow"])
    tok = s.token(sc, "kernel")
    out["injection"] = attempt(["launch", tok, "-f", "/etc/shadow"])
    out["no_token"] = attempt(["launch"])
    os.symlink("/etc/shadow", os.path.join(sc, "kernel.json"))
    out["symlink_conn"] = attempt(["launch", tok])
    out["reuse"] = attempt(["launch", tok])
    out["probe_with_kernel_token"] = attempt(["probe", s.token(sc, "kernel")])
    out["verb_shell"] = attempt(["shell"])
    out["verb_none"] = attempt([])
    out["slots"] = attempt(["session", "--slots", "100000"])
    r = subprocess.run([helper, "session", "--slots", "1"], capture_output=True, text=True, timeout=60)
    out["without_sudo"] = [r.returncode, r.stderr.strip()]
    out["scratch_outside"] = refused(lambda: s.token("/etc", "kernel"))
    out["scratch_dotdot"] = refused(lambda: s.token(sc + "/../../../../etc", "kernel"))
    out["env_injection"] = refused(lambda: s.token(sc, "kernel", env={"LD_PRELOAD": "/tmp/x.so"}))
    out["hide_root"] = refused(lambda: s.token(sc, "kernel", hide=["/"]))
    out["hide_unseen"] = refused(lambda: s.token(sc, "kernel", hide=["/root/.cache"]))  # root sees it
    out["memory"] = refused(lambda: s.token(sc, "kernel", memory_mb=2**40))
    out["signal_other"] = refused(lambda: s.call(op="signal", scratch=sc, signal="STOP"))
    out["unknown_op"] = refused(lambda: s.call(op="exec", argv=["/bin/sh"]))
    out["slot"] = refused(lambda: s.scratch(5))
    s.release(sc)
    s.close()
    print(json.dumps(out))
'''


@pytest.fixture(scope="module")
def driver(rig):
    path = OPT / "driver.py"
    path.write_text(DRIVER)
    os.chmod(path, 0o644)

    def run(user, *args, **kw):
        return _as(user, [rig["python"], str(path), str(HELPER), *args], **kw)
    return run


def test_the_helper_refuses_every_abuse_with_a_clear_message(driver):
    out = json.loads(driver(GRADER, "abuse").stdout.strip().splitlines()[-1])
    expect = {
        "forged": "unknown or already used token", "malformed": "malformed token",
        "injection": "exactly one argument", "no_token": "exactly one argument",
        "symlink_conn": "not a link", "reuse": "unknown or already used token",
        "probe_with_kernel_token": "issued for kernel, not probe",
        "verb_shell": "unknown verb 'shell'", "verb_none": "unknown verb ''",
        "slots": "usage: session --slots N", "without_sudo": "runs as root through sudo",
    }
    for name, needle in expect.items():
        rc, err = out[name]
        assert rc != 0 and "tdl-sandbox: refused: " in err and needle in err, (name, rc, err)
    refusals = {
        "scratch_outside": "'/etc' is not a scratch directory of this session",
        "scratch_dotdot": "is not a scratch directory of this session",
        "env_injection": "'LD_PRELOAD' may not be set", "hide_root": "'/' is not a directory",
        "hide_unseen": "'/root/.cache' is not a directory (that the caller can see)",
        "memory": "memory_mb=", "signal_other": "signal='STOP'", "unknown_op": "unknown request 'exec'",
        "slot": "slot=5",
    }
    for name, needle in refusals.items():
        assert needle in out[name], (name, out[name])


def test_killing_a_kernel_kills_the_kernel_not_only_sudo(driver):
    # SIGKILL to the sudo process (what jupyter_client sends) leaves the kernel running: the kill
    # goes through the session, before the slot is swept at release
    out = json.loads(driver(GRADER, "kill").stdout.strip().splitlines()[-1])
    assert out["before"] >= 1 and out["after"] == 0, out


def _hold(driver_path, user):
    p = subprocess.Popen(["runuser", "-u", user, "--", *driver_path, "hold"], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, text=True)
    return p, json.loads(p.stdout.readline())


def test_a_token_of_another_user_or_of_a_dead_session_is_refused(rig, driver):
    argv = [rig["python"], str(OPT / "driver.py"), str(HELPER)]
    p, held = _hold(argv, OTHER)
    try:
        rc, err = json.loads(driver(GRADER, "try", held["token"]).stdout)
        assert rc != 0 and "the token belongs to another user" in err, err
    finally:
        p.stdin.close()
        p.wait(60)
    p, held = _hold(argv, GRADER)
    try:
        sid = held["token"].split(".")[0]
        session = json.loads(Path(f"/run/tdl-sandbox/{sid}/session.json").read_text())
        os.kill(session["pid"], signal.SIGKILL)  # only root can: the session is root's
        rc, err = json.loads(driver(GRADER, "try", held["token"]).stdout)
        assert rc != 0 and "the session that issued the token is gone" in err, err
    finally:
        p.stdin.close()
        p.wait(60)
        shutil.rmtree(f"/run/tdl-sandbox/{sid}", ignore_errors=True)
        shutil.rmtree(f"/var/lib/tdl-sandbox/{sid}", ignore_errors=True)


def test_the_helper_refuses_to_run_from_an_installation_others_can_write(rig):
    site = rig["env"] / "lib" / "python3.11" / "site-packages"
    os.chmod(site, 0o777)
    try:
        r = _as(GRADER, ["sudo", "-n", str(HELPER), "check"], check=False)
    finally:
        os.chmod(site, 0o755)
    assert r.returncode != 0 and f"{site} is writable by others" in r.stderr, r.stderr
    assert _as(GRADER, ["sudo", "-n", str(HELPER), "check"]).returncode == 0


def test_a_grader_whose_primary_group_is_shared_is_refused(rig):
    # the scratch folders are writable by the grader's primary group: MATE could enter TEAM's
    r = _as(TEAM, ["sudo", "-n", str(HELPER), "session", "--slots", "1"], check=False, stdin=subprocess.DEVNULL)
    assert r.returncode != 0 and f"of {TEAM} is shared with {MATE}" in r.stderr, r.stderr


def test_without_a_sudo_rule_require_names_the_line_to_add(rig):
    code = ("from tdlcourse.grading import autograde\n"
            "try:\n    autograde._sudo_plan(None, 'require', None)\n"
            "except RuntimeError as e:\n    print(e)\n")
    r = _as("nobody", ["env", f"TDL_SANDBOX_HELPER={HELPER}", rig["python"], "-c", code], cwd="/")
    assert "no sudo rule lets this user run" in r.stdout, r.stdout + r.stderr
    assert f"nobody ALL=(root) NOPASSWD: {HELPER}" in r.stdout


def test_a_bad_sandbox_value_names_the_allowed_ones():
    r = _run([str(BIN / "tdl"), "grade", "hw01", "--sandbox", "root"], check=False, env=tdl_env())
    assert r.returncode == 2 and "--sandbox" in r.stderr and "'auto', 'require', 'sudo', 'off'" in r.stderr
