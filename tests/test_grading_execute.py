"""Execution limits and isolation of the grading kernels, on tiny notebooks (no nbgrader course).

Oracles: nbgrader's own ``determine_grade`` on the executed cells (a test cell that was stopped or
not run must score 0, one that ran cleanly full points), wall-clock bounds that an unlimited run
could not meet, and, as root, what a sandboxed kernel can see of the file system and who it runs as.
"""

from __future__ import annotations

import json
from pathlib import Path
import os
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from tdlcourse.grading import execute as gx
from tdlcourse.grading import sandbox as sb

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]
ROOTED = os.geteuid() == 0


def _no_sandbox(plan):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail("CI runs as root: the grading sandbox must be available: " + "; ".join(plan.warnings))
    pytest.skip("no grading sandbox here: " + "; ".join(plan.warnings))


def notebook(*sources, grade=()):
    cells = []
    for i, src in enumerate(sources):
        c = new_code_cell(src)
        if i in grade:
            c.metadata["nbgrader"] = {"grade": True, "solution": False, "locked": True, "points": 1.0,
                                      "grade_id": f"t{i}", "schema_version": 3}
        cells.append(c)
    nb = new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nbformat.writes(nb)


def run(nb, plan=None, **limits):
    t = time.monotonic()
    r = gx.execute(gx.Task(("s", "a", "n"), nb, "", gx.Limits(**limits)), plan)
    assert r.error is None, r.error
    return r, nbformat.reads(r.notebook, as_version=4), time.monotonic() - t


def scores(nb):
    from nbgrader.utils import determine_grade

    return [determine_grade(c)[0] for c in nb.cells if "nbgrader" in c.metadata]


def test_a_test_cell_without_output_gets_full_points():
    # Why every skipped cell must get an error output: nbgrader credits silence.
    from nbgrader.utils import determine_grade

    nb = nbformat.reads(notebook("assert False", grade=(0,)), as_version=4)
    assert determine_grade(nb.cells[0])[0] == 1.0


def test_cell_timeout_costs_one_cell():
    r, nb, seconds = run(notebook("x = 1", "while True:\n    pass", "assert x == 1", grade=(1, 2)), cell_timeout=2)
    assert [e.kind for e in r.events] == ["timeout"] and r.events[0].index == 1
    assert scores(nb) == [0, 1.0]
    assert seconds < 30


def test_notebook_timeout_stops_everything_after():
    r, nb, seconds = run(notebook("import time\ntime.sleep(60)", "y = 2", "assert True", grade=(2,)),
                         notebook_timeout=3, cell_timeout=60)
    assert [e.kind for e in r.events] == ["notebook_timeout", "not_run", "not_run"]
    assert scores(nb) == [0]
    assert nb.cells[2].outputs[0].ename == "NotRun"
    assert seconds < 30


def test_kernel_that_ignores_interrupts_is_killed():
    r, nb, seconds = run(notebook("import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True:\n    pass",
                                  "assert True", grade=(1,)), cell_timeout=2, interrupt_grace=2)
    assert [e.kind for e in r.events] == ["unresponsive", "not_run"]
    assert scores(nb) == [0]
    assert seconds < 30


def test_kernel_crash():
    r, nb, _ = run(notebook("a = 1", "import os\nos._exit(3)", "assert a == 1", grade=(0, 2)))
    assert [e.kind for e in r.events] == ["kernel_died", "not_run"]
    assert scores(nb) == [1.0, 0]


def test_output_cap_stops_the_cell_early_and_the_next_cells_run():
    # 10**7 lines (100 MB) would take minutes to print and ship; the cap stops it within seconds.
    r, nb, seconds = run(notebook("for i in range(10**7):\n    print(f'{i:09d}')\ndone = True",
                                  "assert 'done' not in dir()", "print('small')", grade=(1, 2)),
                         max_output_bytes=100_000)
    assert [(e.index, e.kind) for e in r.events] == [(0, "output_limit")]
    assert len(r.notebook) < 600_000
    assert scores(nb) == [1.0, 1.0]  # `done` never set: the loop was interrupted
    assert nb.cells[2].outputs[0].text == "small\n"
    assert seconds < 60


def test_limits_validation():
    for bad in ({"notebook_timeout": 0}, {"cell_timeout": -1}, {"cell_timeout": float("inf")},
                {"max_output_bytes": 0}, {"interrupt_grace": "5"}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            gx.Limits(**bad)


def test_worker_pool_survives_a_killed_worker(tmp_path):
    from tdlcourse.grading.pool import WorkerPool

    # Without a sandbox the kernel may kill its parent, the worker; the pool replaces it.
    killer = gx.Task(("evil", "a", "n"), notebook("import os, signal\nos.kill(os.getppid(), signal.SIGKILL)"), "")
    good = gx.Task(("good", "a", "n"), notebook("x = 41 + 1", "assert x == 42", grade=(1,)), "")
    pool = WorkerPool(1, sb.SandboxPlan("none"), str(tmp_path))
    try:
        results = {task.key[0]: r for task, r in pool.run([killer, good])}
    finally:
        pool.close()
    assert "worker died" in results["evil"].error
    assert results["good"].error is None
    assert scores(nbformat.reads(results["good"].notebook, as_version=4)) == [1.0]


def test_scratch_copy_has_the_students_files_only(tmp_path):
    files = tmp_path / "submission"
    (files / "data").mkdir(parents=True)
    (files / "data" / "x.csv").write_text("1,2\n")
    for name in ("hw.ipynb", "timestamp.txt", "submission_secret.txt"):
        (files / name).write_text("secret")
    nb = notebook("import os\nprint(sorted(os.listdir('.')), os.listdir('data'))")
    r = gx.execute(gx.Task(("s", "a", "n"), nb, str(files)), None)
    out = nbformat.reads(r.notebook, as_version=4).cells[0].outputs[0].text
    visible = [n for n in eval(out.split("] ")[0] + "]") if not n.startswith(".")]
    assert visible == ["data"] and "['x.csv']" in out


def test_plan_paths():
    assert sb._minimal(["/a/b", "/a", "/c/d", "/c/d/e", "/cd"]) == ["/a", "/cd", "/c/d"]
    assert sb._inside("/a/b", "/a") and not sb._inside("/ab", "/a")
    plan = sb.default_plan(["/nonexistent/course"], "/tmp")
    assert "/tmp" in plan.private and all(os.path.isdir(p) for p in plan.hide + plan.private + plan.keep)
    # hidden paths inside a private folder only where a kept tree brings them back (a checkout under /tmp)
    assert all(any(sb._inside(h, k) for k in plan.keep) for h in plan.hide if any(sb._inside(h, p) for p in plan.private))


@pytest.mark.skipif(not ROOTED, reason="the sandbox needs root")
def test_sandboxed_kernel_sees_only_its_scratch(tmp_path):
    course = tmp_path / "course"
    (course / "source").mkdir(parents=True)
    (course / "source" / "answer.txt").write_text("42")
    scratch_root = tmp_path / "scratch"
    scratch_root.mkdir(mode=0o711)
    with sb.reserve_uids(1) as base:
        plan = sb.probe(sb.default_plan([str(course)], str(scratch_root), uid_base=base), str(scratch_root),
                        [str(course / "source" / "answer.txt")])
        if plan.mode != "user+namespace":
            _no_sandbox(plan)
        _check_sandboxed_kernel(plan, course)


def _check_sandboxed_kernel(plan, course):
    code = ("import os, json\n"
            "def can(f):\n    try:\n        f()\n        return True\n    except OSError:\n        return False\n"
            f"print(json.dumps([os.getuid(), os.getgroups(), can(lambda: open({str(course / 'source' / 'answer.txt')!r})),"
            " os.listdir('/root'), os.listdir('/tmp'), can(lambda: open('/etc/passwd', 'a')),"
            " can(lambda: open('mine.txt', 'w').write('ok'))]))")
    r, nb, _ = run(notebook(code), plan)

    uid, groups, read_course, root_listing, tmp_listing, write_etc, write_scratch = json.loads(nb.cells[0].outputs[0].text)
    assert uid == plan.uid_base >= sb.DEFAULT_UID_BASE and groups == []
    assert not read_course and not write_etc and write_scratch
    assert set(root_listing) <= {".pyenv", ".local", ".cache"}  # only kept Python paths under /root
    # /tmp holds only this kernel's scratch tree, plus the top folders of kept Python paths when the
    # venv itself lives under /tmp (a clone in mktemp -d, as the README's clean-clone check does)
    kept = {Path(k).relative_to("/tmp").parts[0] for k in plan.keep if Path(k).is_relative_to("/tmp")}
    assert len(set(tmp_listing) - kept) == 1, (tmp_listing, kept)


def _processes_of(uid):
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/status") as fh:
                status = fh.read()
            if f"\nUid:\t{uid}\t" in status and "\nState:\tZ" not in status:  # zombies are dead already
                out.append(int(pid))
        except OSError:
            pass
    return out


@pytest.mark.skipif(not ROOTED, reason="the sandbox needs root")
def test_uid_blocks_are_exclusive_and_leftovers_are_killed(tmp_path):
    scratch_root = tmp_path / "scratch"
    scratch_root.mkdir(mode=0o711)
    with sb.reserve_uids(2) as a, sb.reserve_uids(2) as b:
        assert a is not None and b is not None and abs(a - b) >= 2
        plan = sb.probe(sb.default_plan([str(tmp_path / "course")], str(scratch_root), uid_base=b),
                        str(scratch_root), [])
        if plan.uid_base is None:
            _no_sandbox(plan)
        # A daemon in its own session outlives the kernel's process group; the sweep must get it.
        r, nb, _ = run(notebook("import subprocess\np = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
                                "print(p.pid)"), plan)
        assert nb.cells[0].outputs[0].text.strip().isdigit()
        deadline = time.monotonic() + 10  # SIGKILL is delivered asynchronously
        while _processes_of(plan.uid(0)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _processes_of(plan.uid(0)) == []


def test_a_kernel_that_loses_the_race_for_a_port_is_started_again(monkeypatch):
    """jupyter_client picks free ports by binding and releasing them, so two kernels started at once
    (``tdl grade --jobs 2``) can race for one; the loser dies with "Address already in use". That is
    not the student's doing: the grader starts it again on fresh ports (seen in CI: 13 errors)."""
    import socket

    from jupyter_client.manager import AsyncKernelManager
    from jupyter_client.provisioning.local_provisioner import LocalPortCache

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    find, start, calls, handed = LocalPortCache.find_available_port, AsyncKernelManager.start_kernel, [], []

    def find_a_taken_port_once(self, ip):
        if not handed:  # as if another process had taken the port just after it was found free
            handed.append(taken.getsockname()[1])
            return handed[0]
        return find(self, ip)

    async def counted(self, **kw):
        calls.append(1)
        return await start(self, **kw)

    monkeypatch.setattr(LocalPortCache, "find_available_port", find_a_taken_port_once)
    monkeypatch.setattr(AsyncKernelManager, "start_kernel", counted)
    try:
        _, nb, _ = run(notebook("x = 6 * 7", "assert x == 42", grade=(1,)))  # run() asserts no error
    finally:
        taken.close()
    assert handed and len(calls) == 2  # the first kernel got the taken port and was started again
    assert scores(nb) == [1]
