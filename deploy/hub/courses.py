"""Pre-create what each course of the site file needs, with the right owners and modes (as root):

    PREFIX/env/bin/python deploy/hub/courses.py SITE.json

- the exchange root, owned by root, 1777 (what nbgrader requires: its release chmods the root to
  0777 otherwise, and fails if it cannot). Anyone may create a folder in it, so every course of the
  site is created here first: a student cannot take over a course id that already exists (sticky
  bit: nor delete or rename it);
- per course, a Unix group (site key "unix_group", default nbgrader-<id>) with the grader in it,
  and, owned by its grader account: exchange/<id> 0750 in that group (only members get past it:
  this is where enrollment is enforced; the hub adds each user to the groups of their courses
  before it starts their server), exchange/<id>/outbound 0755 (released assignments),
  inbound 2733 (submissions: students write, cannot list), feedback 0711 (students read only the
  file whose hashed name they know); and the course root (nbgrader's CourseDirectory.root) 0700:
  it holds the sources (solutions, hidden tests), every submission and the gradebook, and only the
  grader account (the course's Formgrader service runs as it) may read it; seeded with the
  project's nbgrader_config.py and source/ when it is empty;
- the hub's state folder, root only;
- the sudo rule (site key "sudoers", default /etc/sudoers.d/tdl-sandbox) that lets every grader
  account run `tdl grade`'s sandbox helper PREFIX/bin/tdl-sandbox as root, and nothing else
  (deploy/sandbox/install.sh; setup.sh installs the helper).

Idempotent: re-running fixes owners and modes and leaves contents alone. A grader account that does
not exist is an error naming it (create it with `useradd --create-home <name>` first).
"""

from __future__ import annotations

import json
import os
import pwd
import grp
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _dir(path: Path, uid: int, gid: int, mode: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, uid, gid)
    os.chmod(path, mode)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("courses.py: run it as root (it sets owners)", file=sys.stderr)
        return 1
    site = json.loads(Path(argv[0]).read_text())
    exchange = Path(site.get("exchange", "/srv/nbgrader/exchange"))
    _dir(exchange, 0, 0, 0o1777)
    _dir(Path(site.get("state_dir", "/var/lib/tdl-hub")), 0, 0, 0o700)
    for course in site.get("courses", []):
        try:
            pw = pwd.getpwnam(course["grader"])
        except KeyError:
            print(f"courses.py: the grader account {course['grader']!r} of course {course['id']!r} does not "
                  "exist (useradd --create-home it first)", file=sys.stderr)
            return 1
        uid, gid = pw.pw_uid, pw.pw_gid
        group = course.get("unix_group", f"nbgrader-{course['id']}")
        try:
            cgid = grp.getgrnam(group).gr_gid
        except KeyError:
            r = subprocess.run(["groupadd", group], capture_output=True, text=True)
            if r.returncode != 0:
                print(f"courses.py: cannot create the Unix group {group!r} of course {course['id']!r} "
                      f"(site key unix_group): {r.stderr.strip()}", file=sys.stderr)
                return 1
            cgid = grp.getgrnam(group).gr_gid
        if course["grader"] not in grp.getgrgid(cgid).gr_mem:
            subprocess.run(["gpasswd", "-a", course["grader"], group], check=True, capture_output=True)
        base = exchange / course["id"]
        _dir(base, uid, cgid, 0o750)
        _dir(base / "outbound", uid, gid, 0o755)
        _dir(base / "inbound", uid, gid, 0o2733)
        _dir(base / "feedback", uid, gid, 0o711)
        root = Path(course["root"])
        _dir(root, uid, gid, 0o700)
        if not (root / "nbgrader_config.py").exists():
            shutil.copy(REPO / "assignments" / "nbgrader_config.py", root / "nbgrader_config.py")
            if not (root / "source").exists():
                shutil.copytree(REPO / "assignments" / "source", root / "source")
            for p in [root / "nbgrader_config.py", root / "source", *(root / "source").rglob("*")]:
                os.chown(p, uid, gid)
        print(f"course {course['id']}: exchange {base} (group {group}), root {root}, grader {course['grader']}")
    # the graders may run tdl grade's sandbox helper as root, and nothing else (a sudo rule)
    graders = sorted({course["grader"] for course in site.get("courses", [])})
    prefix = site.get("prefix", "/opt/tdl-hub")
    if graders:
        env = dict(os.environ, HELPER=f"{prefix}/bin/tdl-sandbox",
                   SUDOERS=site.get("sudoers", "/etc/sudoers.d/tdl-sandbox"))
        r = subprocess.run([str(REPO / "deploy" / "sandbox" / "install.sh"), prefix, *graders], env=env,
                           capture_output=True, text=True)
        if r.returncode != 0:
            print(f"courses.py: the graders' sandbox rule was not written: {r.stderr.strip()}", file=sys.stderr)
            return 1
        print(r.stdout.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
