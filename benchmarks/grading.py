"""Benchmark `tdl grade --jobs N` against stock `nbgrader autograde` on the same class.

40 submissions of hw01 (a deterministic mix of right and wrong answers, a few blank), graded in
the same run by stock nbgrader (one notebook after another, in one process) and by `tdl grade`
(warm worker processes, a fresh sandboxed kernel per notebook, one gradebook writer), each in its
own identical copy of the course. Both gradebooks must give every student the same score on every
cell; the time ratio is printed. Then the per-notebook start-up overhead: the time to run a
one-cell notebook through nbgrader's Execute preprocessor (what stock pays per notebook) and
through `tdl`'s worker (kernel start in the sandbox, run, kill).

    python benchmarks/grading.py [--students 40] [--jobs 2] [--repeats 1] [--out benchmarks/grading.md]

With ``--repeats R`` the two graders alternate R times on fresh copies and medians are compared
(the load average is printed: on a shared machine other people's work changes the ratio).
Benchmarks are not tests; the target is a ratio of at least 1.7 on 2 cores.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def sh(cmd, cwd, env):
    t = time.perf_counter()
    r = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return time.perf_counter() - t, r


def submission(release, source, i: int):
    """Student i's notebook: right answers copied from the source, with deterministic mistakes."""
    nb = nbformat.from_dict(nbformat.reads(nbformat.writes(release), as_version=4))
    if i % 13 == 12:
        return nb  # blank: the untouched release
    sol = {c.metadata["nbgrader"]["grade_id"]: c.source for c in source.cells
           if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"}
    for c in nb.cells:
        gid = c.metadata.get("nbgrader", {}).get("grade_id")
        if gid in sol:
            c.source = sol[gid]
        if gid == "q1-solution" and i % 5 == 1:
            c.source = c.source.replace("math.sqrt(2 * d", "math.sqrt(d")
        if gid == "q2-solution" and i % 7 == 2:
            c.source = "d_vacuous = 1\n"
        if gid == "q3-solution" and i % 3 == 2:
            c.source = "def rademacher_linear(X):\n    return 0.0\n"
    return nb


def scores(course: Path):
    from nbgrader.api import Gradebook

    out = {}
    with Gradebook(f"sqlite:///{course / 'gradebook.db'}") as gb:
        a = gb.find_assignment("hw01")
        for sub in a.submissions:
            for nb in sub.notebooks:
                for g in nb.grades:
                    out[(sub.student.id, g.cell.name)] = (g.auto_score, g.needs_manual_grade)
    return out


def stock_overhead(n: int, workdir: Path) -> float:
    """Seconds per one-cell notebook through nbgrader's Execute preprocessor (kernel start, run,
    graceful shutdown), as stock autograde does for every notebook."""
    from nbgrader.preprocessors import Execute

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    times = []
    for _ in range(n):
        t = time.perf_counter()
        Execute().preprocess(nbformat.from_dict(nb), {"metadata": {"path": str(workdir)}})
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def tdl_overhead(n: int, workdir: Path) -> tuple[float, str]:
    """Seconds per one-cell notebook through `tdl`'s worker (sandboxed kernel start, run, kill)."""
    from tdlcourse.grading import execute as gx
    from tdlcourse.grading import sandbox as sb

    root = tempfile.mkdtemp(prefix="tdl-bench-")
    os.chmod(root, 0o711)
    try:
        plan = sb.probe(sb.default_plan([str(workdir)], root), root, [])
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("x = 1")])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        task = gx.Task(("s", "a", "n"), nbformat.writes(nb), "")
        gx.execute(task, plan, 0, root)  # warm: imports
        times = []
        for _ in range(n):
            t = time.perf_counter()
            r = gx.execute(task, plan, 0, root)
            assert r.error is None, r.error
            times.append(time.perf_counter() - t)
        return statistics.median(times), plan.mode
    finally:
        shutil.rmtree(root, ignore_errors=True)


def process_startup(env) -> tuple[float, float]:
    """Seconds to start a grader process: `nbgrader --version` (Python + nbgrader's imports, what
    every `nbgrader autograde` invocation pays) and a `tdl` worker's warm-up (paid once per worker
    per run, while the first submissions are prepared)."""
    t_nb = min(sh([BIN / "nbgrader", "--version"], ROOT, env)[0] for _ in range(3))
    t_w = min(sh([sys.executable, "-c", "from tdlcourse.grading.execute import warm_up; warm_up()"], ROOT, env)[0]
              for _ in range(3))
    return t_nb, t_w


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--students", type=int, default=40)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--overhead-runs", type=int, default=5)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=None, help="also write the markdown table here")
    args = p.parse_args()

    env = {k: v for k, v in os.environ.items() if k not in ("TDL_EXCHANGE", "TDL_GRADEBOOK", "TDL_COURSE")}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    os.environ["PATH"] = env["PATH"]
    work = Path(tempfile.mkdtemp(prefix="tdl-grading-bench-"))
    try:
        base = work / "base"
        base.mkdir()
        shutil.copy(ROOT / "assignments" / "nbgrader_config.py", base)
        shutil.copytree(ROOT / "assignments" / "source", base / "source")
        sh([BIN / "nbgrader", "db", "assignment", "add", "hw01"], base, env)
        sh([BIN / "nbgrader", "generate_assignment", "hw01", "--force"], base, env)
        release = nbformat.read(base / "release" / "hw01" / "hw01.ipynb", as_version=4)
        source = nbformat.read(base / "source" / "hw01" / "hw01.ipynb", as_version=4)
        for i in range(args.students):
            sid = f"student{i:02d}"
            d = base / "submitted" / sid / "hw01"
            d.mkdir(parents=True)
            nbformat.write(submission(release, source, i), d / "hw01.ipynb")
            (d / "timestamp.txt").write_text("2026-11-22 12:00:00.000000 UTC")
        t_stock, t_tdl, t_plain, loads = [], [], [], [os.getloadavg()[0]]
        for rep in range(args.repeats):
            stock, ours, plain = work / f"stock{rep}", work / f"tdl{rep}", work / f"plain{rep}"
            shutil.copytree(base, stock)
            shutil.copytree(base, ours)
            shutil.copytree(base, plain)
            # Same-run baseline for trusted checking: tdl grade as it was before it (in-kernel
            # hidden tests, the reference library visible, no probe, no scan).
            print(f"[{rep + 1}/{args.repeats}] tdl grade without trusted checks ...", end=" ", flush=True)
            t_plain.append(sh([sys.executable, "-c", PLAIN_GRADE, str(plain), str(args.jobs)], plain, env)[0])
            print(f"{t_plain[-1]:.1f} s", flush=True)
            print(f"[{rep + 1}/{args.repeats}] stock nbgrader autograde ...", end=" ", flush=True)
            t_stock.append(sh([BIN / "nbgrader", "autograde", "hw01"], stock, env)[0])
            print(f"{t_stock[-1]:.1f} s; tdl grade --jobs {args.jobs} ...", end=" ", flush=True)
            t, r = sh([BIN / "tdl", "--course", str(ours), "grade", "hw01", "--jobs", str(args.jobs), "--no-progress"],
                      ours, env)
            t_tdl.append(t)
            loads.append(os.getloadavg()[0])
            print(f"{t:.1f} s (load average {loads[-1]:.1f})", flush=True)
        sandbox = next((ln.split("sandbox: ", 1)[1] for ln in r.stdout.splitlines() if "sandbox: " in ln), "?")
        ratios = [a / b for a, b in zip(t_stock, t_tdl)]
        costs = [a / b for a, b in zip(t_tdl, t_plain)]
        t_stock, t_tdl, t_plain = statistics.median(t_stock), statistics.median(t_tdl), statistics.median(t_plain)
        same_plain = scores(plain) == scores(ours)

        a, b = scores(stock), scores(ours)
        same = a == b and len(a) == args.students * 4
        diffs = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        totals = sorted({sum(v[0] or 0 for k, v in a.items() if k[0] == s) for s in {k[0] for k in a}})

        print(f"measuring per-notebook start-up overhead ({args.overhead_runs} runs each) ...", flush=True)
        o_stock = stock_overhead(args.overhead_runs, work)
        o_tdl, mode = tdl_overhead(args.overhead_runs, work)
        p_stock, p_tdl = process_startup(env)

        ratio = t_stock / t_tdl
        lines = [
            f"# Grading benchmark ({datetime.date.today()}, {platform.machine()}, {os.cpu_count()} CPUs, "
            f"Python {platform.python_version()})",
            "",
            f"{args.students} submissions of hw01 (distinct totals: {', '.join(f'{x:g}' for x in totals)}), "
            "graded in the same run by each tool in its own copy of the course; "
            f"median of {args.repeats} alternating run(s) (ratios per run: {', '.join(f'{x:.2f}' for x in ratios)}; "
            f"1-minute load average {min(loads):.1f} to {max(loads):.1f} on {os.cpu_count()} CPUs).",
            "",
            "| grader | wall time (s) | per notebook (s) | ratio |",
            "|---|---:|---:|---:|",
            f"| stock `nbgrader autograde hw01` | {t_stock:.1f} | {t_stock / args.students:.2f} | 1.00 |",
            f"| `tdl grade hw01 --jobs {args.jobs}` | {t_tdl:.1f} | {t_tdl / args.students:.2f} | **{ratio:.2f}x** |",
            "",
            "Cost of trusted checking (verdicts outside the kernel, the reference hidden, tampering probe and "
            "scan) against `tdl grade` without it, same run:",
            "",
            "| grader | wall time (s) | ratio to the baseline |",
            "|---|---:|---:|",
            f"| `tdl grade` without trusted checks (in-kernel hidden tests) | {t_plain:.1f} | 1.00 |",
            f"| `tdl grade` with trusted checks | {t_tdl:.1f} | **{t_tdl / t_plain:.3f}** (target <= 1.10; per run: "
            f"{', '.join(f'{c:.3f}' for c in costs)}) |",
            "",
            f"Scores identical with and without trusted checks (honest and wrong answers, no cheating): "
            f"**{'yes' if same_plain else 'NO'}**.",
            "",
            f"Scores identical on every cell of every student: **{'yes' if same else 'NO'}**"
            + ("" if same else f" (first differences: {diffs[:5]})") + ".",
            f"tdl's sandbox in this run: {sandbox}.",
            "",
            "Per-notebook start-up overhead (median of "
            f"{args.overhead_runs} one-cell notebooks: kernel start, run `x = 1`, stop):",
            "",
            "| path | seconds per notebook |",
            "|---|---:|",
            f"| nbgrader's Execute preprocessor (graceful shutdown), as stock pays per notebook | {o_stock:.2f} |",
            f"| tdl worker, sandbox `{mode}` (warm process, fresh kernel, kill) | {o_tdl:.2f} |",
            "",
            "Process start-up, paid once per grader process (best of 3):",
            "",
            "| process | seconds |",
            "|---|---:|",
            f"| `nbgrader --version` (Python + nbgrader imports; every `nbgrader autograde` call) | {p_stock:.2f} |",
            f"| `tdl` worker warm-up (spawned once per job, overlapped with preparing submissions) | {p_tdl:.2f} |",
        ]
        text = "\n".join(lines)
        print()
        print(text)
        if args.out:
            Path(args.out).write_text(text + "\n")
        if not same:
            raise SystemExit("scores differ between stock nbgrader and tdl grade")
    finally:
        shutil.rmtree(work, ignore_errors=True)


PLAIN_GRADE = """
import sys
from tdlcourse.grading.autograde import grade
from tdlcourse.grading.course import load_course
run = grade(load_course(sys.argv[1]), "hw01", jobs=int(sys.argv[2]), progress=False, trusted_checks=False)
sys.exit(0 if run.ok else 1)
"""


if __name__ == "__main__":
    main()
