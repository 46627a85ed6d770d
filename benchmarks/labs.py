"""Time every lab at `ci` and `cpu` scale against its budget (chapter template: `ci` under 30 s,
`cpu` under 2 minutes on 2 cores).

Each lab runs under papermill in a fresh kernel, headless as the book runs it (``TDL_STATIC=1``),
``--repeats`` times per scale (interleaved: lab 1 ci, lab 2 ci, ..., lab 1 cpu, ...; medians). The
baseline measured in the same run is a notebook that only imports the lab's libraries, so the
table separates the fixed cost of a kernel (start, ``import torch, tdlcourse``) from the lab's own
work. Reported per lab: the wall time of the papermill run, the time the lab prints in its last cell
(from its first code cell on), and the ratio wall / budget (below 1.00 is within budget).

    python benchmarks/labs.py [--scales ci,cpu] [--labs 01,02] [--repeats 1] [--threads N] [--out FILE]

Benchmarks are not tests: the test suite runs each lab once at `cpu` scale (inside the book build)
and asserts its claims; this script measures the budgets. The machine is shared: the load
average is printed before and after, and a run under load says so.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
BUDGET_S = {"ci": 30.0, "cpu": 120.0}
LAB_TIME = re.compile(r"scale=(\w+): the lab ran in ([0-9.]+) s")


def papermill(nb: Path, out: Path, scale: str | None, env: dict) -> tuple[float, str]:
    """Run ``nb`` in a fresh kernel; return (wall seconds, all text the cells printed)."""
    cmd = [str(Path(sys.executable).parent / "papermill"), str(nb), str(out), "--cwd", str(nb.parent),
           "--kernel", "python3", "--no-progress-bar"]
    if scale is not None:
        cmd += ["-p", "scale", scale]
    t = time.perf_counter()
    r = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if r.returncode != 0:
        raise SystemExit(f"{nb.name} at scale={scale} failed:\n{r.stderr[-3000:]}")
    done = nbformat.read(out, as_version=4)
    text = "".join(o.get("text", "") for c in done.cells if c.cell_type == "code" for o in c.get("outputs", []))
    return wall, text


def baseline_notebook(path: Path) -> Path:
    """A notebook whose only cell imports what every lab imports (the fixed cost of a lab's kernel)."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import numpy, torch, plotly\n"
                                          "from tdlcourse import data, device, plots, train, widgets")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scales", default="ci,cpu", help="comma-separated scales (ci, cpu)")
    ap.add_argument("--labs", default="", help="comma-separated lab numbers (default: all of labs/)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="OMP/torch threads in the kernels (default: torch's)")
    ap.add_argument("--out", type=Path, default=None, help="also write the table (Markdown) to this file")
    a = ap.parse_args(argv)
    scales = [s for s in a.scales.split(",") if s]
    bad = [s for s in scales if s not in BUDGET_S]
    if bad:
        ap.error(f"--scales {bad} not in {sorted(BUDGET_S)}")
    if a.repeats < 1:
        ap.error(f"--repeats must be >= 1, got {a.repeats}")
    labs = sorted((ROOT / "labs").glob("[0-9][0-9]_*.ipynb"))
    if a.labs:
        want = {n.zfill(2) for n in a.labs.split(",")}
        labs = [p for p in labs if p.name[:2] in want]
    if not labs:
        ap.error("no lab selected")
    env = dict(os.environ, TDL_STATIC="1")
    env.pop("TDL_SCALE", None)
    if a.threads is not None:
        env.update(OMP_NUM_THREADS=str(a.threads), MKL_NUM_THREADS=str(a.threads))

    before = load()
    print(f"load average before: {before}", flush=True)
    walls: dict[tuple[str, str], list[float]] = {}
    printed: dict[tuple[str, str], list[float]] = {}
    base: list[float] = []
    with tempfile.TemporaryDirectory(prefix="tdl-labs-bench-") as tmp:
        tmp = Path(tmp)
        b = baseline_notebook(tmp / "baseline.ipynb")
        for rep in range(a.repeats):
            base.append(papermill(b, tmp / "baseline-out.ipynb", None, env)[0])
            for scale in scales:
                for lab in labs:
                    wall, text = papermill(lab, tmp / f"{lab.stem}-{scale}.ipynb", scale, env)
                    m = [float(t) for s, t in LAB_TIME.findall(text) if s == scale]
                    if not m:
                        raise SystemExit(f"{lab.name} at scale={scale} did not print its running time")
                    walls.setdefault((lab.name, scale), []).append(wall)
                    printed.setdefault((lab.name, scale), []).append(m[-1])
                    print(f"  [{rep + 1}/{a.repeats}] {lab.name} {scale}: {wall:.1f} s wall, {m[-1]:.1f} s in the lab",
                          flush=True)
    after = load()
    med = statistics.median
    lines = [
        f"Measured {datetime.date.today()} on {platform.processor() or platform.machine()} ({os.cpu_count()} logical "
        f"cores), Python {platform.python_version()}, threads {a.threads or 'default'}, repeats {a.repeats} "
        f"(medians); load average before {before}, after {after}.",
        "",
        f"Baseline (fresh kernel, imports only): {med(base):.1f} s.",
        "",
        "| lab | scale | wall (s) | in the lab (s) | wall - baseline (s) | budget (s) | wall / budget | within |",
        "|---|---|---:|---:|---:|---:|---:|---|",
    ]
    total = {s: 0.0 for s in scales}
    for scale in scales:
        for lab in labs:
            w, p = med(walls[(lab.name, scale)]), med(printed[(lab.name, scale)])
            total[scale] += w
            r = w / BUDGET_S[scale]
            lines.append(f"| {lab.name} | {scale} | {w:.1f} | {p:.1f} | {w - med(base):.1f} | {BUDGET_S[scale]:.0f} "
                         f"| {r:.2f} | {'yes' if r <= 1 else '**no**'} |")
    lines.append("")
    lines += [f"All labs at {s}: {total[s]:.1f} s wall ({len(labs)} labs)." for s in scales]
    table = "\n".join(lines)
    print(table)
    if a.out:
        a.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
