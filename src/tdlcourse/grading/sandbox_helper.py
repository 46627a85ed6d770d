"""The grading sandbox for a grader that is not root: a root-owned helper run through one sudo rule.

On a class hub the instructor's server and the Formgrader run as the course's grader account, which
cannot set up a mount namespace or switch uids. ``deploy/sandbox/install.sh`` installs a fixed
helper program, ``/usr/local/libexec/tdl-sandbox`` (root:root 0755), that runs a root-owned Python
with ``-I`` (no ``PYTHONPATH``, no user site, no working directory on ``sys.path``) on this module,
and a sudoers rule ``<grader> ALL=(root) NOPASSWD: /usr/local/libexec/tdl-sandbox``. The helper
trusts nothing its caller (semi-trusted: the grader) sends, and less what a kernel (hostile: a
student's code) can touch. It has three verbs:

``session --slots N``
    Run by every grading worker for the whole run (``Session``), talking JSON lines over its
    stdin/stdout. It reserves a block of sandbox uids (``sandbox.reserve_uids``: flock), makes
    scratch directories under the root-owned ``SCRATCH_ROOT`` (owner the slot's uid, group the
    caller's primary group, mode 0770), writes one-time allocation records in the root-only
    ``STATE_DIR`` (naming ``SUDO_UID``, the slot uid, the scratch directory, the caller's extra hidden
    paths, a few named environment variables, a memory cap), signals and sweeps a slot's processes
    (``kill(-1)`` as that uid) and removes a scratch directory. When its stdin closes (the worker
    ended, or died) it kills every process of its uids and removes what it made.
``launch TOKEN``
    The kernel command. It checks that the record exists, belongs to ``SUDO_UID`` and to a live
    session of that user, and is used once; copies the connection file the grader wrote in the
    scratch directory (a regular file of the caller, checked field by field) to one owned by the
    slot uid; builds the command itself (only ``<helper's python> -m ipykernel_launcher -f
    <that file>``); hides the homes, the state directory, the reference library and the caller's
    extra paths (the caller can only add hidden paths), keeps the helper's Python, sets the fixed
    limits, and goes through ``sandbox.enter_and_exec`` (namespace, rlimits, setresuid,
    no_new_privs, exec).
``probe TOKEN``
    The same, for the fixed probe program of ``sandbox`` (which paths the kernel could read).

A kernel started through sudo is a child of the sudo process (root): the grader may signal sudo,
but SIGKILL is not relayed, and sudo relays nothing sent from its own process group. So every
interrupt, terminate and kill of such a kernel goes through the session (``Session.signal``),
which signals every process of the slot's uid; ``tdl grade`` sweeps the slot after each notebook.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import stat
import subprocess
import sys
import tempfile

from . import sandbox

DEFAULT_HELPER = "/usr/local/libexec/tdl-sandbox"
STATE_DIR = "/run/tdl-sandbox"  # root 0700: sessions and one-time allocation records
SCRATCH_ROOT = "/var/lib/tdl-sandbox"  # root 0711: <session>/k-XXXX scratch directories
MAX_SLOTS = 64
MAX_HIDE = 64
# The only variables a caller may set in a kernel's environment (the rest is sandbox.kernel_env's).
ENV_NAMES = ("NBGRADER_EXECUTION", "TDL_CHECK_MODE", "TDL_SCALE", "TDL_DEVICE", "CUDA_VISIBLE_DEVICES",
             "TDL_TERM_SECRET", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
SIGNALS = {"INT": signal.SIGINT, "TERM": signal.SIGTERM, "KILL": signal.SIGKILL}
REFUSED_EXIT = 2
_TOKEN = re.compile(r"([0-9a-f]{16})\.([0-9a-f]{32})")


class Refused(Exception):
    """A request the helper will not carry out; the message says why."""


class HelperError(RuntimeError):
    """The grader's side: the helper could not be run or refused a request."""


# ---------------------------------------------------------------------------------------------
# The grader's side.


def helper_path() -> str:
    """The helper to run through sudo: ``TDL_SANDBOX_HELPER`` (tests install one per run), else
    ``DEFAULT_HELPER``. The variable only chooses which sudo rule is used: sudo runs nothing else."""
    return os.environ.get("TDL_SANDBOX_HELPER") or DEFAULT_HELPER


def sudoers_line(helper: str) -> str:
    import pwd

    return f"{pwd.getpwuid(os.geteuid()).pw_name} ALL=(root) NOPASSWD: {helper}"


def sudo_allowed(helper: str) -> tuple[bool, str]:
    """Whether sudo lets this user run ``helper`` without a password (``sudo -n -l``), and why not."""
    import shutil

    if not shutil.which("sudo"):
        return False, "sudo is not installed"
    try:
        r = subprocess.run(["sudo", "-n", "-l", helper], capture_output=True, text=True, timeout=30,
                           stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, f"`sudo -n -l {helper}` failed: {e}"
    if r.returncode != 0:
        return False, f"no sudo rule lets this user run {helper} without a password"
    return True, ""


class Session:
    """A ``session`` of the helper, run through sudo; one per grading worker (one slot)."""

    def __init__(self, helper: str, slots: int = 1):
        self.helper = helper
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(["sudo", "-n", helper, "session", "--slots", str(slots)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log,
                                     text=True, start_new_session=True)
        line = self.proc.stdout.readline()
        if not line:
            self.proc.wait()
            raise HelperError(f"`sudo -n {helper} session` failed: {self._stderr()}")
        self.info = json.loads(line)

    def _stderr(self) -> str:
        self.log.seek(0)
        return self.log.read().decode(errors="replace").strip()[-2000:] or f"exit status {self.proc.poll()}"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def call(self, **request) -> dict:
        try:
            self.proc.stdin.write(json.dumps(request) + "\n")
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except (OSError, ValueError):
            line = ""
        if not line:
            raise HelperError(f"the sandbox session of {self.helper} ended: {self._stderr()}")
        reply = json.loads(line)
        if not reply.get("ok"):
            raise HelperError(f"the sandbox helper refused {request.get('op')!r}: {reply.get('error')}")
        return reply

    def scratch(self, slot: int = 0) -> str:
        return self.call(op="scratch", slot=slot)["scratch"]

    def token(self, scratch: str, kind: str = "kernel", hide=(), env=None, memory_mb=None, secrets_=()) -> str:
        return self.call(op="token", scratch=scratch, kind=kind, hide=list(hide), env=dict(env or {}),
                         memory_mb=memory_mb, secrets=list(secrets_))["token"]

    def signal(self, scratch: str, signum: int) -> None:
        name = {v: k for k, v in SIGNALS.items()}.get(signum, "KILL")
        self.call(op="signal", scratch=scratch, signal=name)

    def release(self, scratch: str) -> None:
        self.call(op="release", scratch=scratch)

    def close(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()  # sudo only; the session itself sweeps when its stdin is gone
            self.proc.wait()
        self.log.close()


_worker_session: Session | None = None


def worker_session(plan) -> Session:
    """This worker process's session (started on first use, again if it died)."""
    global _worker_session
    if _worker_session is None or not _worker_session.alive():
        _worker_session = Session(plan.helper, 1)
    return _worker_session


def kernel_command(plan, token: str) -> list[str]:
    return ["sudo", "-n", plan.helper, "launch", token]


def probe_plan(helper: str, hide: list[str], secret_paths: list[str], memory_mb: int | None,
               warnings: tuple[str, ...] = ()) -> sandbox.SandboxPlan:
    """The ``sudo`` plan, after a probe through the helper found the course hidden; raises
    ``HelperError`` with the reason otherwise."""
    session = Session(helper, 1)
    try:
        scratch = session.scratch(0)
        token = session.token(scratch, "probe", hide=hide, memory_mb=memory_mb, secrets_=secret_paths)
        try:
            r = subprocess.run(["sudo", "-n", helper, "probe", token], capture_output=True, text=True,
                               timeout=120, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise HelperError(f"the sandbox probe through {helper} failed: {e}") from None
        ok, why = sandbox.probe_verdict(r)
        if not ok:
            raise HelperError(f"the sandbox probe through {helper} failed: {why}")
        session.release(scratch)
    finally:
        session.close()
    return sandbox.SandboxPlan(sandbox.SUDO_MODE, hide=tuple(hide), helper=helper, memory_mb=memory_mb,
                               reference_hidden=True, warnings=warnings)


# ---------------------------------------------------------------------------------------------
# The root side.


def _caller():
    import pwd

    if os.geteuid() != 0:
        raise Refused("the helper runs as root through sudo: sudo -n HELPER VERB ...")
    raw = os.environ.get("SUDO_UID", "")
    if not raw.isdigit():
        raise Refused("SUDO_UID is not set: run the helper through sudo")
    try:
        return pwd.getpwuid(int(raw))
    except KeyError:
        raise Refused(f"SUDO_UID={raw} is no user") from None


def _check_installation() -> None:
    """Refuse to act when any code this process runs could have been written by someone else: the
    interpreter, every directory on ``sys.path``, every imported module and ``.pth`` file, and all
    their parent directories must be root's and writable by nobody else. (The code that ran before
    this check is covered by the same directories; ``install.sh`` checks the whole tree once.)"""
    import site

    import tdlcheck  # noqa: F401 - imported now, so that the check below covers them
    import tdlcourse  # noqa: F401

    paths = {os.path.realpath(sys.executable)}
    for p in sys.path:
        if p and os.path.exists(p):
            paths.add(os.path.realpath(p))
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        if f and os.path.exists(f):
            paths.add(os.path.realpath(f))
    for d in site.getsitepackages():
        if os.path.isdir(d):
            paths.update(os.path.realpath(os.path.join(d, f)) for f in os.listdir(d) if f.endswith(".pth"))
    seen: set[str] = set()
    for p in sorted(paths):
        while p not in seen:
            seen.add(p)
            st = os.lstat(p)
            if st.st_uid != 0 or st.st_mode & 0o022:
                who = (f"owned by uid {st.st_uid}" if st.st_uid != 0
                       else f"writable by others (mode {st.st_mode & 0o7777:o})")
                raise Refused(f"{p} is {who}: the helper only runs from a root-owned installation nobody "
                              "else can write (see deploy/sandbox/install.sh)")
            parent = os.path.dirname(p)
            if parent == p:
                break
            p = parent


def _root_dir(path: str, mode: int) -> None:
    """``path`` exists as a real directory of root with exactly ``mode`` (made if missing)."""
    try:
        os.mkdir(path, mode)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        raise Refused(f"{path} must be a directory owned by root")
    if st.st_mode & 0o7777 != mode:
        os.chmod(path, mode)


def _check_private_group(pw) -> None:
    """The scratch directories are writable by the caller's primary group: it must be the caller's own."""
    import grp
    import pwd

    if pw.pw_uid == 0:
        return
    try:
        g = grp.getgrgid(pw.pw_gid)
    except KeyError:
        return
    others = sorted({*(m for m in g.gr_mem if m != pw.pw_name),
                     *(p.pw_name for p in pwd.getpwall() if p.pw_gid == pw.pw_gid and p.pw_uid != pw.pw_uid)})
    if others:
        raise Refused(f"the primary group {g.gr_name!r} of {pw.pw_name} is shared with {', '.join(others)}; "
                      "scratch directories are writable by that group: give the grader a group of its own")


def _start_time(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _write_new(path: str, data: bytes, uid: int | None = None) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        if uid is not None:
            os.fchown(fd, uid, uid)
        os.write(fd, data)
    finally:
        os.close(fd)


def _as_caller(pw, fn, arg):
    """``fn(arg)`` in a child with the caller's uid, gid and groups: what root could see but the
    caller cannot (is ``/root/.ssh`` a folder?) must not be answered."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.close(r)
            os.setgroups(os.getgrouplist(pw.pw_name, pw.pw_gid))
            os.setresgid(pw.pw_gid, pw.pw_gid, pw.pw_gid)
            os.setresuid(pw.pw_uid, pw.pw_uid, pw.pw_uid)
            os.write(w, json.dumps(fn(arg)).encode())
        finally:
            os._exit(0)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read()
    os.waitpid(pid, 0)
    return json.loads(data) if data else None


def _resolve_dirs(paths):
    return [os.path.realpath(p) if os.path.isdir(p) else None for p in paths]


def _check_hide(value, pw) -> list[str]:
    if not isinstance(value, list) or len(value) > MAX_HIDE:
        raise Refused(f"hide must be a list of at most {MAX_HIDE} absolute paths")
    for p in value:
        if not isinstance(p, str) or not p.startswith("/") or "\0" in p or len(p) > 4096:
            raise Refused(f"hide: {p!r} is not an absolute path")
    resolved = _as_caller(pw, _resolve_dirs, value) or [None] * len(value)
    for p, real in zip(value, resolved):
        if real is None or real == "/":
            raise Refused(f"hide: {p!r} is not a directory (that the caller can see) to hide")
    return resolved


def _check_env(value) -> dict:
    if not isinstance(value, dict):
        raise Refused("env must be an object")
    for k, v in value.items():
        if k not in ENV_NAMES:
            raise Refused(f"env: {k!r} may not be set; allowed: {', '.join(ENV_NAMES)}")
        if not isinstance(v, str) or "\0" in v or len(v) > 4096:
            raise Refused(f"env: the value of {k} must be a short string")
    return dict(value)


def _check_memory(value):
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or not 256 <= value <= 2**20:
        raise Refused(f"memory_mb={value!r} must be an integer in [256, 1048576] or null")
    return value


class _Session:
    def __init__(self, pw, slots: int, base: int):
        self.pw, self.slots, self.base = pw, slots, base
        self.sid = secrets.token_hex(8)
        self.state = os.path.join(STATE_DIR, self.sid)
        self.root = os.path.join(SCRATCH_ROOT, self.sid)
        os.mkdir(self.state, 0o700)
        os.mkdir(self.root, 0o711)
        self.scratch: dict[str, int] = {}  # scratch directory -> slot
        self.tokens: dict[str, list[str]] = {}  # scratch directory -> its records
        _write_new(os.path.join(self.state, "session.json"), json.dumps(
            {"pid": os.getpid(), "start": _start_time(os.getpid()), "uid": pw.pw_uid, "uid_base": base,
             "slots": slots}).encode())

    def _slot_of(self, req) -> tuple[str, int]:
        path = req.get("scratch")
        if not isinstance(path, str) or path not in self.scratch:
            raise Refused(f"{path!r} is not a scratch directory of this session")
        return path, self.scratch[path]

    def handle(self, req: dict) -> dict:
        op = req.get("op") if isinstance(req, dict) else None
        if op == "scratch":
            slot = req.get("slot")
            if not isinstance(slot, int) or isinstance(slot, bool) or not 0 <= slot < self.slots:
                raise Refused(f"slot={slot!r} must be an integer in [0, {self.slots - 1}]")
            # a daemon left by the slot's previous kernel must not see the next submission
            sandbox.signal_uid(self.base + slot, signal.SIGKILL)
            path = tempfile.mkdtemp(prefix="k-", dir=self.root)
            os.chown(path, self.base + slot, self.pw.pw_gid)
            os.chmod(path, 0o770)
            self.scratch[path] = slot
            return {"scratch": path}
        if op == "token":
            path, slot = self._slot_of(req)
            kind = req.get("kind")
            if kind not in ("kernel", "probe"):
                raise Refused(f"kind={kind!r} must be 'kernel' or 'probe'")
            found = req.get("secrets", [])
            if not isinstance(found, list) or len(found) > 256 or not all(
                    isinstance(p, str) and p.startswith("/") and "\0" not in p and len(p) <= 4096 for p in found):
                raise Refused("secrets must be a list of at most 256 absolute paths")
            record = {"uid": self.pw.pw_uid, "slot_uid": self.base + slot, "scratch": path, "kind": kind,
                      "hide": _check_hide(req.get("hide", []), self.pw), "env": _check_env(req.get("env", {})),
                      "memory_mb": _check_memory(req.get("memory_mb")), "secrets": found}
            tok = secrets.token_hex(16)
            _write_new(os.path.join(self.state, tok + ".json"), json.dumps(record).encode())
            self.tokens.setdefault(path, []).append(tok)
            return {"token": f"{self.sid}.{tok}"}
        if op == "signal":
            path, slot = self._slot_of(req)
            name = req.get("signal")
            if name not in SIGNALS:
                raise Refused(f"signal={name!r} must be one of {', '.join(SIGNALS)}")
            sandbox.signal_uid(self.base + slot, SIGNALS[name])
            return {}
        if op == "release":
            path, slot = self._slot_of(req)
            self._release(path, slot)
            return {}
        raise Refused(f"unknown request {op!r}; requests: scratch, token, signal, release")

    def _release(self, path: str, slot: int) -> None:
        import shutil

        sandbox.signal_uid(self.base + slot, signal.SIGKILL)
        for tok in self.tokens.pop(path, []):
            for name in (tok + ".json", tok + ".claimed"):
                try:
                    os.unlink(os.path.join(self.state, name))
                except FileNotFoundError:
                    pass
        shutil.rmtree(path, ignore_errors=True)  # fd-based: never follows a link the caller planted
        del self.scratch[path]

    def close(self) -> None:
        import shutil

        for slot in range(self.slots):
            sandbox.signal_uid(self.base + slot, signal.SIGKILL)
        shutil.rmtree(self.root, ignore_errors=True)
        shutil.rmtree(self.state, ignore_errors=True)


def _stop(signum, frame):
    raise SystemExit(128 + signum)


def _session(args: list[str]) -> None:
    if len(args) != 2 or args[0] != "--slots" or not args[1].isdigit() or not 1 <= int(args[1]) <= MAX_SLOTS:
        raise Refused(f"usage: session --slots N (N in [1, {MAX_SLOTS}])")
    slots = int(args[1])
    pw = _caller()
    _check_installation()
    _check_private_group(pw)
    tempfile.tempdir = "/tmp"  # not the caller's TMPDIR (sudo resets it; the helper relies on nothing)
    _root_dir(STATE_DIR, 0o700)
    _root_dir(SCRATCH_ROOT, 0o711)
    for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
        signal.signal(s, _stop)
    with sandbox.reserve_uids(slots) as base:
        sandbox.check_uids(sandbox.SandboxPlan("user", uid_base=base), slots)
        session = _Session(pw, slots, base)
        try:
            print(json.dumps({"ok": True, "session": session.sid, "uid_base": base, "slots": slots}), flush=True)
            for line in sys.stdin:
                try:
                    reply = {"ok": True, **session.handle(json.loads(line))}
                except (Refused, ValueError) as e:
                    reply = {"ok": False, "error": str(e)}
                except Exception as e:  # noqa: BLE001 - a bad request must not end the session
                    reply = {"ok": False, "error": f"{type(e).__name__}: {e}"}
                print(json.dumps(reply), flush=True)
        finally:
            session.close()


def _read_conn(path: str, caller_uid: int) -> dict:
    """The connection file the caller wrote: its own regular file, checked field by field."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as e:
        raise Refused(f"connection file {path}: {e.strerror} (it must be a regular file, not a link)") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != caller_uid or st.st_nlink != 1 or st.st_size > 65536:
            raise Refused(f"connection file {path} must be a small regular file of the caller with one link")
        data = os.read(fd, 65537)
    finally:
        os.close(fd)
    try:
        info = json.loads(data)
    except ValueError:
        raise Refused(f"connection file {path} is not JSON") from None
    ports = ("shell_port", "iopub_port", "stdin_port", "control_port", "hb_port")
    ok = (isinstance(info, dict) and info.get("transport") == "tcp" and info.get("ip") == "127.0.0.1"
          and all(isinstance(info.get(p), int) and 0 < info[p] < 65536 for p in ports)
          and isinstance(info.get("key"), str) and len(info["key"]) <= 256
          and info.get("signature_scheme") in ("hmac-sha256", "hmac-sha512"))
    if not ok:
        raise Refused(f"connection file {path} is not a kernel connection file on 127.0.0.1")
    return {k: info[k] for k in (*ports, "transport", "ip", "key", "signature_scheme")}


def _claim(token: str, verb: str, pw) -> tuple[dict, str]:
    m = _TOKEN.fullmatch(token)
    if not m:
        raise Refused("malformed token (expected the one a session issued)")
    sid, tok = m.groups()
    state = os.path.join(STATE_DIR, sid)
    record_path = os.path.join(state, tok + ".json")
    try:
        fd = os.open(record_path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise Refused("unknown or already used token") from None
    with os.fdopen(fd) as fh:
        record = json.load(fh)
    if record["uid"] != pw.pw_uid:
        raise Refused("the token belongs to another user")
    try:
        with open(os.path.join(state, "session.json")) as fh:
            session = json.load(fh)
    except (OSError, ValueError):
        session = None
    if (session is None or session["uid"] != pw.pw_uid or session["start"] is None
            or _start_time(session["pid"]) != session["start"]):
        raise Refused("the session that issued the token is gone")
    if record["kind"] != {"launch": "kernel", "probe": "probe"}[verb]:
        raise Refused(f"the token was issued for {record['kind']}, not {verb}")
    try:  # one use: whoever renames it first has it
        os.rename(record_path, os.path.join(state, tok + ".claimed"))
    except FileNotFoundError:
        raise Refused("unknown or already used token") from None
    scratch = record["scratch"]
    st = os.lstat(scratch)
    if (os.path.dirname(scratch) != os.path.join(SCRATCH_ROOT, sid) or not stat.S_ISDIR(st.st_mode)
            or st.st_uid != record["slot_uid"]):
        raise Refused(f"{scratch} is not this session's scratch directory")
    return record, tok


def _spec(record: dict, pw) -> dict:
    """The namespace of a kernel: the helper's own hides and keeps plus the caller's extra hides."""
    hide = sandbox._existing([pw.pw_dir, "/home", "/root", "/run/user", STATE_DIR]
                             + sandbox.reference_paths() + record["hide"])
    private = sandbox._minimal(sandbox._existing(["/tmp", "/var/tmp", "/dev/shm", SCRATCH_ROOT]))
    keep = sandbox._minimal(sandbox.python_paths(from_env=False))
    hide = [h for h in sandbox._minimal(hide)
            if not any(sandbox._inside(h, p) for p in private) or any(sandbox._inside(h, k) for k in keep)]
    limits = [("RLIMIT_CORE", 0), ("RLIMIT_FSIZE", 256 * 2**20), ("RLIMIT_NOFILE", 1024)]
    if record["memory_mb"]:
        limits.append(("RLIMIT_AS", record["memory_mb"] * 2**20))
    return {"mode": "user+namespace", "uid": record["slot_uid"], "hide": hide, "private": private,
            "keep": keep, "limits": limits, "scratch": record["scratch"]}


def _launch(verb: str, args: list[str]) -> None:
    if len(args) != 1:
        raise Refused(f"{verb} takes exactly one argument, a TOKEN issued by a session")
    pw = _caller()
    _check_installation()
    record, tok = _claim(args[0], verb, pw)
    spec = _spec(record, pw)
    scratch = record["scratch"]
    if verb == "launch":
        info = _read_conn(os.path.join(scratch, "kernel.json"), pw.pw_uid)
        conn = os.path.join(scratch, f".kernel-{tok[:12]}.json")
        try:
            _write_new(conn, json.dumps(info).encode(), record["slot_uid"])
        except OSError as e:
            raise Refused(f"{conn}: {e.strerror}") from None
        argv = [sys.executable, "-m", "ipykernel_launcher", "-f", conn, "--HistoryManager.hist_file=:memory:"]
    else:
        argv = [sys.executable, "-c", sandbox._PROBE_CODE, json.dumps(record["secrets"]),
                json.dumps(sandbox._reference_files())]
    sandbox.enter_and_exec(spec, argv, sandbox.kernel_env(scratch, record["env"]))


def main(args: list[str] | None = None) -> None:  # pragma: no cover - runs as root through sudo
    args = sys.argv[1:] if args is None else args
    verb, rest = (args[0], args[1:]) if args else ("", [])
    try:
        if verb == "session":
            _session(rest)
        elif verb == "check" and not rest:  # for install.sh: is this installation one root can trust?
            _check_installation()
            print("tdl-sandbox: the installation is root's and nobody else can write it")
        elif verb in ("launch", "probe"):
            _launch(verb, rest)
        else:
            raise Refused(f"unknown verb {verb!r}; verbs: session --slots N, launch TOKEN, probe TOKEN, check")
    except Refused as e:
        sys.stderr.write(f"tdl-sandbox: refused: {e}\n")
        sys.exit(REFUSED_EXIT)
    except Exception as e:  # noqa: BLE001 - any other failure stops, loudly, with nothing started
        sys.stderr.write(f"tdl-sandbox: cannot start: {type(e).__name__}: {e}\n")
        sys.exit(sandbox.LAUNCH_FAILED_EXIT)


if __name__ == "__main__":
    main()
