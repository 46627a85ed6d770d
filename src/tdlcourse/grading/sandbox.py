"""Isolation of the kernels that run student code while grading.

A kernel that grades a submission runs in a scratch directory that holds a copy of that student's
files only (never the notebook's path in the course). On top of that, when the grader runs as root
(as in CI), the kernel is started through this module's launcher, which before ``exec``-ing the
kernel

1. enters a private mount namespace and covers with empty ``tmpfs`` mounts the course root, the
   exchange, the gradebook's directory, the Jupyter runtime directory (other kernels' connection
   keys), ``/home``, ``/root`` and the grader's ``$HOME``; ``/tmp``, ``/var/tmp`` and ``/dev/shm``
   become private and empty. The kernel's own scratch directory and the Python installation stay
   visible (bind mounts made with ``open_tree``/``move_mount``, Linux >= 5.2);
2. sets resource limits (no core files, bounded file size and process count, optional memory cap);
3. drops to an unprivileged user of its own (one uid per worker slot, with no name and no groups,
   so two kernels never share a uid and the grader can kill every leftover process of a slot), and
   sets ``no_new_privs`` so that no set-uid program can give privileges back.

What is available is probed once per grading run (``probe``); the strongest working mode is used,
and every weaker one is reported with a warning (``SandboxPlan.warnings``). Modes, strongest first:
``user+namespace``, ``user`` (no mount namespace: the course's private directories must not be
readable by others, which ``tdl grade`` enforces) and ``none`` (a scratch copy only: the kernel can
read whatever the grader's user can read). The residual risks are listed in
``assignments/README.md``.

When the grader is not root (an instructor's server on a class hub), the same launcher runs as root
through a sudo rule for one fixed, root-owned helper program (mode ``sudo``, see
``sandbox_helper``): the helper holds the uids, makes the scratch directories and builds every
kernel's command line itself; the grader only asks for them.

The namespace and mount calls are Linux system calls made through ``ctypes`` (no new dependency).
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import json
import os
import pwd
import signal
import site
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path

# Linux constants (uapi headers).
CLONE_NEWNS = 0x00020000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
MNT_DETACH = 2
AT_FDCWD = -100
OPEN_TREE_CLONE, OPEN_TREE_CLOEXEC, AT_RECURSIVE = 1, 0o2000000, 0x8000
MOVE_MOUNT_F_EMPTY_PATH = 0x4
SYS_OPEN_TREE, SYS_MOVE_MOUNT = 428, 429  # same number on every architecture since Linux 5.1
PR_SET_NO_NEW_PRIVS = 38

MODES = ("user+namespace", "user", "none")
SUDO_MODE = "sudo"  # user+namespace, set up by the root-owned helper through sudo (sandbox_helper)
# Per-slot uids live far above the ranges used for people, system users, systemd's dynamic users
# and the usual subordinate-uid ranges of containers; a uid with a passwd entry is never used.
DEFAULT_UID_BASE = 2_000_000_000
PROBE_EXIT = 0
LAUNCH_FAILED_EXIT = 97


@dataclass(frozen=True)
class SandboxPlan:
    """How kernels are isolated in one grading run (the result of ``probe``).

    ``mode`` is one of ``MODES``. ``uid_base`` is the uid of slot 0 (slot ``k`` runs as
    ``uid_base + k``; ``None`` keeps the grader's user). ``hide`` are directories covered read-only
    in the kernel's mount namespace, ``private`` are directories replaced by an empty writable
    ``tmpfs``, ``keep`` are paths inside those that stay visible (the Python installation).
    ``limits`` maps ``resource`` names (``RLIMIT_FSIZE``...) to soft=hard limits.
    ``warnings`` says, in words, what is weaker than the strongest mode and why.
    """

    mode: str
    uid_base: int | None = None
    hide: tuple[str, ...] = ()
    private: tuple[str, ...] = ()
    keep: tuple[str, ...] = ()
    limits: tuple[tuple[str, int], ...] = ()
    warnings: tuple[str, ...] = field(default=(), compare=False)
    reference_hidden: bool = False  # the probe must find tdlcourse neither importable nor readable
    helper: str | None = None  # mode "sudo": the root-owned helper run through sudo (sandbox_helper)
    memory_mb: int | None = None  # mode "sudo": the helper sets RLIMIT_AS itself from this

    @property
    def namespace(self) -> bool:
        return "namespace" in self.mode

    def uid(self, slot: int) -> int | None:
        return None if self.uid_base is None else self.uid_base + slot

    def describe(self) -> str:
        if self.mode == "none":
            return "none (scratch copy only; the kernel runs as the grader's user)"
        if self.mode == SUDO_MODE:
            return (f"through sudo {self.helper}: unprivileged uid per slot, "
                    "private mount namespace (course, exchange, gradebook, homes hidden)")
        parts = []
        if self.uid_base is not None:
            parts.append(f"unprivileged uid {self.uid_base}+slot")
        if self.namespace:
            parts.append("private mount namespace (course, exchange, gradebook, homes hidden)")
        return ", ".join(parts)


# ---------------------------------------------------------------------------------------------
# The plan: which paths to hide and keep, and a probe of what works on this machine.


def _existing(paths) -> list[str]:
    out = []
    for p in paths:
        if p and os.path.isdir(p):
            rp = os.path.realpath(p)
            if rp != "/" and rp not in out:
                out.append(rp)
    return out


def _minimal(paths: list[str]) -> list[str]:
    """Drop the paths that lie inside another path of the list."""
    paths = sorted(set(paths), key=len)
    out: list[str] = []
    for p in paths:
        if not any(_inside(p, q) for q in out):
            out.append(p)
    return out


def _inside(path: str, parent: str) -> bool:
    return path == parent or path.startswith(parent.rstrip("/") + "/")


def python_paths(from_env: bool = True) -> list[str]:
    """Directories a kernel needs to start: the interpreter's prefixes, site-packages and the
    directory that holds ``tdlcheck`` (an editable install points outside site-packages);
    ``from_env``: add ``TDL_SANDBOX_KEEP`` (never in the sudo helper: its caller is not trusted)."""
    import tdlcheck

    paths = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix,
             os.path.dirname(os.path.realpath(sys.executable)),
             os.path.dirname(os.path.dirname(os.path.realpath(tdlcheck.__file__)))]
    try:
        paths += site.getsitepackages()
    except AttributeError:  # pragma: no cover - virtualenv's old site module
        pass
    if from_env:
        paths += [p for p in os.environ.get("TDL_SANDBOX_KEEP", "").split(os.pathsep) if p]
    return _existing(paths) + [os.path.realpath(p) for p in paths if p and os.path.isdir(p)]


def reference_paths() -> list[str]:
    """The reference library: ``tdlcourse``'s package folder. A grading kernel must neither import
    it nor read it, so that a hidden test's reference is computed only by the grader."""
    import tdlcourse

    return _existing([os.path.dirname(os.path.realpath(tdlcourse.__file__))])


def _reference_files() -> list[str]:
    return [os.path.join(d, f) for d in reference_paths() for f in ("__init__.py", "capacity.py")]


def default_plan(course_paths: list[str], scratch_root: str, *, uid_base: int | None = DEFAULT_UID_BASE,
                 memory_mb: int | None = None, hide_reference: bool = True) -> SandboxPlan:
    """The strongest plan for this process (before probing): namespace and uid drop when root;
    the course, the homes and the reference library (``reference_paths``) hidden."""
    from jupyter_core.paths import jupyter_runtime_dir

    hide = _existing(list(course_paths) + (reference_paths() if hide_reference else [])
                     + [jupyter_runtime_dir(), os.path.expanduser("~"), "/home", "/root", "/run/user"])
    private = _existing([tempfile.gettempdir(), "/tmp", "/var/tmp", "/dev/shm", scratch_root])
    keep = _minimal(python_paths())
    # A path inside a private folder is hidden by it, unless a kept tree brings it back (a checkout
    # under /tmp: its src/ is kept, and the reference library inside it must stay covered).
    hide = [h for h in _minimal(hide)
            if not any(_inside(h, p) for p in private) or any(_inside(h, k) for k in keep)]
    private = _minimal(private)
    limits = [("RLIMIT_CORE", 0), ("RLIMIT_FSIZE", 256 * 2**20), ("RLIMIT_NOFILE", 1024)]
    if memory_mb:
        limits.append(("RLIMIT_AS", int(memory_mb) * 2**20))
    root = os.geteuid() == 0
    mode = "user+namespace" if root else "none"
    return SandboxPlan(mode=mode, uid_base=uid_base if root else None, hide=tuple(hide),
                       private=tuple(private), keep=tuple(keep), limits=tuple(limits),
                       reference_hidden=hide_reference)


def _weaken(plan: SandboxPlan, mode: str) -> SandboxPlan:
    if mode == "user+namespace":
        return replace(plan, mode=mode)
    if mode == "user":
        return replace(plan, mode=mode, hide=(), private=(), keep=())
    return replace(plan, mode=mode, uid_base=None, hide=(), private=(), keep=(), limits=())


def probe(plan: SandboxPlan, scratch_root: str, secret_paths: list[str], *, require: bool = False) -> SandboxPlan:
    """Try ``plan`` and weaker modes with a probe process that must import ``ipykernel``, numpy and
    ``tdlcheck`` and must NOT be able to import ``tdlcourse`` (in the namespace mode) or open any
    of ``secret_paths``. Returns the first mode
    that passes, with warnings for what was given up. ``require=True`` raises ``RuntimeError``
    instead of falling back to ``none``.
    """
    warnings: list[str] = []
    if os.geteuid() != 0:
        warnings.append(
            "tdl grade is not running as root, so the grading kernels run as "
            f"{pwd.getpwuid(os.geteuid()).pw_name} in a scratch copy only: student code can read any file "
            "that user can read (the gradebook, source/). Run `tdl grade` as root, or install the sandbox "
            "helper with a sudo rule for this user (deploy/sandbox/install.sh; assignments/README.md, "
            "'Isolation') for an unprivileged user and hidden course directories.")
    for mode in MODES[MODES.index(plan.mode):]:
        if mode == "none":
            break
        candidate = _weaken(plan, mode)
        ok, why = _probe_once(candidate, scratch_root, secret_paths)
        if ok:
            if not candidate.namespace:
                warnings.append("without a mount namespace the reference library (tdlcourse) is importable by "
                                "student code: verdicts are still the grader's, but an answer could call it")
            return replace(candidate, warnings=tuple(warnings))
        warnings.append(f"sandbox mode {mode!r} is not available here: {why}")
    if require:
        raise RuntimeError("the grading sandbox is required (--sandbox require) but not available:\n  "
                           + "\n  ".join(warnings))
    if os.geteuid() == 0:
        warnings.append("grading kernels run WITHOUT isolation (scratch copy only); see the reasons above")
    return replace(_weaken(plan, "none"), warnings=tuple(warnings))


_PROBE_CODE = """
import json, os, sys
import ipykernel, numpy, tdlcheck
readable = []
reference = json.loads(sys.argv[2])  # the reference library's files, when it must be hidden
if reference:
    try:
        import tdlcourse.capacity
        readable.append("tdlcourse.capacity (importable)")
    except ImportError:
        pass
    for p in reference:
        try:
            open(p, "rb").close()
            readable.append(p)
        except OSError:
            pass
for p in json.loads(sys.argv[1]):
    try:
        if os.path.isdir(p):
            os.listdir(p)
            readable.append(p) if os.listdir(p) else None
        else:
            open(p, 'rb').close(); readable.append(p)
    except OSError:
        pass
print(json.dumps({'uid': os.getuid(), 'readable': readable}))
"""


def _probe_once(plan: SandboxPlan, scratch_root: str, secret_paths: list[str]) -> tuple[bool, str]:
    scratch = make_scratch(scratch_root, plan.uid(0))
    try:
        cmd = launcher_command(plan, slot=0, scratch=scratch,
                               argv=[sys.executable, "-c", _PROBE_CODE, json.dumps(secret_paths),
                                     json.dumps(_reference_files() if plan.namespace and plan.reference_hidden else [])])
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=kernel_env(scratch, {}),
                           start_new_session=True)
    except (OSError, subprocess.TimeoutExpired) as e:
        return False, str(e)
    finally:
        sweep(plan, 0)
        remove_scratch(scratch)
    return probe_verdict(r)


def probe_verdict(r: subprocess.CompletedProcess) -> tuple[bool, str]:
    """Whether a finished probe process (``_PROBE_CODE``) found the sandbox tight, and why not."""
    if r.returncode != 0:
        return False, (r.stderr.strip().splitlines() or ["exit status %d" % r.returncode])[-1]
    try:
        info = json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return False, "unexpected probe output: " + r.stdout[-200:]
    if info["readable"]:
        return False, "the kernel could still read " + ", ".join(info["readable"])
    return True, ""


# ---------------------------------------------------------------------------------------------
# Scratch directories, the kernel's environment, leftovers.


def make_scratch(scratch_root: str, uid: int | None) -> str:
    """A fresh scratch directory (mode 0700) owned by ``uid`` under ``scratch_root``."""
    path = tempfile.mkdtemp(prefix="k-", dir=scratch_root)
    if uid is not None:
        os.chown(path, uid, uid)
    return path


def remove_scratch(path: str) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)


def kernel_env(scratch: str, extra: dict[str, str]) -> dict[str, str]:
    """A minimal environment for a grading kernel: no variable of the grader's environment leaks
    (a gradebook URL with a password, tokens), only what Python and the course need."""
    bindir = os.path.dirname(sys.executable)
    env = {
        "PATH": os.pathsep.join([bindir, "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": scratch, "USER": "tdl-grader", "LOGNAME": "tdl-grader",
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONNOUSERSITE": "1", "PYTHONDONTWRITEBYTECODE": "1",
        "MPLBACKEND": "Agg", "MPLCONFIGDIR": os.path.join(scratch, ".config", "matplotlib"),
        "IPYTHONDIR": os.path.join(scratch, ".ipython"), "JUPYTER_CONFIG_DIR": os.path.join(scratch, ".jupyter"),
        "JUPYTER_DATA_DIR": os.path.join(scratch, ".local", "share", "jupyter"),
        "JUPYTER_RUNTIME_DIR": os.path.join(scratch, ".runtime"), "TMPDIR": "/tmp",
        "JUPYTER_PLATFORM_DIRS": "1",
    }
    for name in ("TDL_SCALE", "TDL_DEVICE", "CUDA_VISIBLE_DEVICES", "TDL_TERM_SECRET"):
        if name in os.environ:
            env[name] = os.environ[name]
    env.update(extra)
    return env


def sweep(plan: SandboxPlan, slot: int) -> None:
    """Kill every process left behind by a kernel of ``slot`` (a daemon it forked, say).

    Only with a per-slot uid: a process of that uid calls ``kill(-1, SIGKILL)``, which reaches
    exactly the processes of that uid. Without a private uid there is nothing safe to sweep.
    """
    uid = plan.uid(slot)
    if uid is None or os.geteuid() != 0:
        return
    signal_uid(uid, signal.SIGKILL)


def signal_uid(uid: int, signum: int) -> None:
    """Send ``signum`` to every process of ``uid`` (as root: a child of that uid calls ``kill(-1)``,
    which reaches exactly the processes of its own uid)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        try:
            os.setgroups([])
            os.setresgid(uid, uid, uid)
            os.setresuid(uid, uid, uid)
            os.kill(-1, signum)
        except OSError:
            pass
        os._exit(0)
    os.waitpid(pid, 0)


def launcher_command(plan: SandboxPlan, slot: int, scratch: str, argv: list[str]) -> list[str]:
    """The command that starts ``argv`` (a kernel) inside the sandbox of ``plan``."""
    if plan.mode == "none":
        return list(argv)
    spec = {"mode": plan.mode, "uid": plan.uid(slot), "hide": plan.hide, "private": plan.private,
            "keep": plan.keep, "limits": plan.limits, "scratch": scratch}
    return [sys.executable, "-m", "tdlcourse.grading.sandbox", json.dumps(spec), "--", *argv]


@contextlib.contextmanager
def reserve_uids(slots: int, base: int | None = None):
    """Reserve a block of ``slots`` sandbox uids for one grading run (yields its first uid, or
    ``None`` when not root). Blocks are locked (``flock``) so that two runs on one machine, say
    two courses graded at once, never share a uid: each run may kill every process of its uids."""
    import fcntl

    if os.geteuid() != 0:
        yield None
        return
    # in /run (root's), not /tmp: anyone could create /tmp/tdl-sandbox-uids first and stop every run
    lockdir = Path("/run" if os.path.isdir("/run") else tempfile.gettempdir()) / "tdl-sandbox-uids"
    lockdir.mkdir(mode=0o700, exist_ok=True)
    st = os.lstat(lockdir)
    if not os.path.isdir(lockdir) or os.path.islink(lockdir) or st.st_uid != 0 or st.st_mode & 0o077:
        raise RuntimeError(f"{lockdir} must be a directory owned by root with mode 0700")
    block = max(64, slots)
    for b in ([base] if base is not None else [DEFAULT_UID_BASE + k * block for k in range(4096)]):
        fd = os.open(lockdir / f"{b}.lock", os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            if base is not None:
                raise RuntimeError(f"sandbox uids from {base} are in use by another grading run") from None
            continue
        try:
            yield b
        finally:
            os.close(fd)
        return
    raise RuntimeError("no free block of sandbox uids")


def check_uids(plan: SandboxPlan, slots: int) -> None:
    """Refuse per-slot uids that belong to a named user (they must be private to the grader)."""
    if plan.uid_base is None:
        return
    for k in range(slots):
        try:
            name = pwd.getpwuid(plan.uid_base + k).pw_name
        except KeyError:
            continue
        raise ValueError(f"sandbox uid {plan.uid_base + k} belongs to user {name!r}; "
                         "choose another TDL_SANDBOX_UID_BASE")


# ---------------------------------------------------------------------------------------------
# The launcher: runs as root, sets up the namespace, drops privileges and execs the kernel.

_libc = None


def _lib():
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    return _libc


def _check(ret: int, what: str) -> int:
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return ret


def _mount(src, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else s.encode()  # noqa: E731
    _check(_lib().mount(enc(src), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {target}")


def _open_tree(path: str) -> int:
    return _check(_lib().syscall(SYS_OPEN_TREE, ctypes.c_int(AT_FDCWD), path.encode(),
                                 ctypes.c_uint(OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_RECURSIVE)),
                  f"open_tree {path}")


def _move_mount(fd: int, target: str) -> None:
    _check(_lib().syscall(SYS_MOVE_MOUNT, ctypes.c_int(fd), b"", ctypes.c_int(AT_FDCWD), target.encode(),
                          ctypes.c_uint(MOVE_MOUNT_F_EMPTY_PATH)), f"move_mount {target}")


def _setup_namespace(spec: dict) -> None:
    _check(_lib().unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    # Nothing mounted below may propagate back to the host: make every mount private first.
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    covers = [(p, True) for p in spec["hide"]] + [(p, False) for p in spec["private"]]
    keeps = [k for k in spec["keep"] + [spec["scratch"]] if any(_inside(k, c) for c, _ in covers)]
    keeps = _minimal(keeps)
    clones = [(k, _open_tree(k)) for k in keeps]  # detached copies, taken before anything is covered
    # A hidden path inside a kept tree (the course, or the reference library, inside the kept src/
    # of a checkout under /tmp) is covered after the tree is back, not before: the tree's copy was
    # taken before any cover, and remounting a path that is no mount point fails.
    inner = [(c, r) for c, r in covers if any(_inside(c, k) and c != k for k in keeps)]
    outer = [(c, r) for c, r in covers if (c, r) not in inner]
    for path, readonly in outer:
        mode = "0755" if readonly else "1777"
        _mount("tdl-sandbox", path, "tmpfs", MS_NOSUID | MS_NODEV, f"mode={mode},size={'1m' if readonly else '512m'}")
    for keep, fd in clones:
        os.makedirs(keep, exist_ok=True)
        _move_mount(fd, keep)
        os.close(fd)
    for path, readonly in outer:
        if readonly:
            _mount(None, path, None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)
    for path, _ in inner:
        _mount("tdl-sandbox", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "mode=0755,size=1m")


def _launch(spec: dict, argv: list[str]) -> None:
    scratch = spec["scratch"]
    uid = spec["uid"]
    # The connection file lives in the grader's runtime directory (hidden below): copy it first.
    if "-f" in argv:
        i = argv.index("-f") + 1
        data = Path(argv[i]).read_bytes()
        conn = os.path.join(scratch, ".kernel.json")
        fd = os.open(conn, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if uid is not None:
            os.chown(conn, uid, uid)
        argv = argv[:i] + [conn] + argv[i + 1:]
    enter_and_exec(spec, argv, os.environ)


def enter_and_exec(spec: dict, argv: list[str], env) -> None:
    """As root: the namespace of ``spec``, its limits, its uid, ``no_new_privs``, then ``exec``."""
    import resource

    scratch = spec["scratch"]
    uid = spec["uid"]
    if "namespace" in spec["mode"]:
        _setup_namespace(spec)
    for name, value in spec["limits"]:
        resource.setrlimit(getattr(resource, name), (value, value))
    if uid is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, (512, 512))
        os.setgroups([])
        os.setresgid(uid, uid, uid)
        os.setresuid(uid, uid, uid)
    _check(_lib().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    os.chdir(scratch)
    os.execve(argv[0], argv, env)


def main(args: list[str] | None = None) -> None:  # pragma: no cover - runs as the launcher process
    args = sys.argv[1:] if args is None else args
    if len(args) < 3 or args[1] != "--":
        sys.stderr.write("usage: python -m tdlcourse.grading.sandbox SPEC_JSON -- COMMAND...\n")
        sys.exit(2)
    try:
        _launch(json.loads(args[0]), args[2:])
    except Exception as e:  # noqa: BLE001 - any failure must stop the launch, loudly
        sys.stderr.write(f"tdl sandbox: cannot start the kernel: {e}\n")
        sys.exit(LAUNCH_FAILED_EXIT)


if __name__ == "__main__":
    main()
