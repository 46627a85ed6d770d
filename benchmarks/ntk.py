"""Benchmark: the empirical NTK of an MLP, layer-wise (structured) vs per-sample Jacobians vs neural-tangents.

Problem: ``models.mlp(10, [w, w], 1)`` (ReLU, PyTorch's default init, seed 0), float32, n inputs
x ~ N(0, I_10); the kernel Theta = sum_p df/dp df/dp^T over all parameters (n x n). Rows: widths
512 to 4096 and n = 256 and 1024 (``--widths``, ``--inputs``). Paths:

- ``structured``: ``ntk.empirical_ntk(..., method="structured")``, the sum over layers of
  (backpropagated-signal Gram) x (input Gram + 1) (``tdlcourse._ntkmlp``);
- ``jacobian``: ``method="jacobian"``, vmap(jacrev) per-sample Jacobians, n x P floats; skipped
  where that would exceed ``--jacobian-cap-gb``;
- neural-tangents 0.6.5 (JAX, jit-compiled; compile time excluded) with its
  ``STRUCTURED_DERIVATIVES`` and ``JACOBIAN_CONTRACTION`` implementations (the second skipped with
  the same memory cap), on the same weights and inputs. On CPU its structured implementation holds
  about 2 x n x P floats (measured: 514 MB at w = 512, n = 256; 8.2 GB at w = 1024, n = 1024), so it
  is skipped where that exceeds ``--nt-cap-gb`` (10 GB: the machine has 24 GB). It needs an old JAX and TensorFlow, so it
  runs in its own environment, ``.venv-bench-nt`` (``make bench-nt-env``; pins in
  ``benchmarks/requirements-nt.txt``); without it the table says so and shows the torch paths only.

Every measurement runs in its own process (median of ``--repeats`` calls after one warm-up call),
so that its peak memory is its own: the growth of the resident set's high-water mark on CPUs, the
allocator's peak on GPUs. Agreement ("err"): the largest |difference| relative to max |Theta| against the Jacobian path
run in float64 on the first ``--check-n`` inputs (the kernel's entries for those inputs do not
depend on the others); the float32 Jacobian path is itself off by up to 1e-4 at these widths (a sum
over P terms), so it is a path to time, not the reference.

Target (issue 14): structured at least as fast as neural-tangents' fastest implementation on every
row, peak memory O(n^2 + n * width), agreement with the Jacobian path to 1e-5. Run from the
repository root:

    .venv/bin/python benchmarks/ntk.py [--widths 512,1024,2048,4096] [--inputs 256,1024] [--repeats 3] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
NT_PYTHON = ROOT / ".venv-bench-nt" / "bin" / "python"


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def build(width: int, n: int, device: str):
    from tdlcourse import models

    model = models.mlp(10, [width, width], 1, seed=0).to(device)
    x = torch.randn(n, 10, generator=torch.Generator().manual_seed(1)).to(device)
    return model, x


def child(method: str, width: int, n: int, repeats: int, device: str, out: str) -> None:
    """One torch measurement in this process: writes kernel, median time and peak memory growth."""
    from tdlcourse import device as tdl_device
    from tdlcourse import ntk

    dev = torch.device(device)
    model, x = build(width, n, device)
    k = ntk.empirical_ntk(model, x, method=method)  # warm-up
    tdl_device.synchronize(dev)
    del k
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        try:
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        base = _status_kb("VmRSS") * 1024
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        k = ntk.empirical_ntk(model, x, method=method)
        tdl_device.synchronize(dev)
        times.append(time.perf_counter() - t)
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else _status_kb("VmHWM") * 1024) - base
    np.savez(out, kernel=k.detach().cpu().numpy(), time=float(np.median(times)), peak_mb=max(0.0, peak / 2 ** 20))


def run_child(args: list[str]) -> dict:
    with tempfile.TemporaryDirectory() as d:
        out = os.path.join(d, "out.npz")
        r = subprocess.run([*args, out], capture_output=True, text=True)
        if r.returncode != 0 or not os.path.exists(out):
            return {"error": (r.stderr or r.stdout).strip().splitlines()[-1:] or ["failed"]}
        z = np.load(out)
        return {"kernel": z["kernel"], "time": float(z["time"]), "peak_mb": float(z["peak_mb"]),
                **({"versions": f"jax {z['jax']}, neural-tangents {z['nt']}"} if "nt" in z else {})}


def torch_row(method, width, n, repeats, device):
    return run_child([sys.executable, __file__, "--child", method, str(width), str(n), str(repeats), device])


def nt_row(impl, width, n, repeats, workdir):
    model, x = build(width, n, "cpu")
    wpath, xpath = os.path.join(workdir, "w.npz"), os.path.join(workdir, "x.npz")
    lin = [m for m in model if isinstance(m, torch.nn.Linear)]
    np.savez(wpath, n_layers=len(lin), **{f"w{i}": m.weight.detach().numpy() for i, m in enumerate(lin)},
             **{f"b{i}": m.bias.detach().numpy() for i, m in enumerate(lin)})
    np.savez(xpath, x=x.numpy())
    return run_child([str(NT_PYTHON), str(ROOT / "benchmarks" / "baselines" / "nt_ntk.py"), wpath, xpath, impl, str(repeats)])


def jacobian_bytes(width: int, n: int) -> int:
    p = 10 * width + width + width * width + width + width + 1
    return 4 * n * p


def rel_err(a: np.ndarray, ref: np.ndarray) -> float:
    m = ref.shape[0]
    return float(np.abs(a[:m, :m] - ref).max() / np.abs(ref).max())


def reference(width, n, check_n, device):
    """The Jacobian path in float64 on the first check_n inputs: the float32 paths are compared with it."""
    from tdlcourse import ntk

    model, x = build(width, n, device)
    return ntk.empirical_ntk(model.double(), x[:check_n].double(), method="jacobian").detach().cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--child", nargs=5, metavar=("METHOD", "WIDTH", "N", "REPEATS", "DEVICE"), help=argparse.SUPPRESS)
    ap.add_argument("--widths", default="512,1024,2048,4096")
    ap.add_argument("--inputs", default="256,1024")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--jacobian-cap-gb", type=float, default=3.0)
    ap.add_argument("--nt-cap-gb", type=float, default=10.0,
                    help="skip neural-tangents where its measured footprint, about 2 x n x P floats, would exceed this")
    ap.add_argument("--check-n", type=int, default=8)
    ap.add_argument("--quick", action="store_true", help="one small row (smoke run)")
    ap.add_argument("--out", default=None, help="also write the table to this Markdown file")
    a, rest = ap.parse_known_args()
    if a.child:
        method, width, n, repeats, device = a.child
        child(method, int(width), int(n), int(repeats), device, rest[0])
        return
    widths = [512] if a.quick else [int(w) for w in a.widths.split(",")]
    inputs = [256] if a.quick else [int(v) for v in a.inputs.split(",")]
    cap = a.jacobian_cap_gb * 2 ** 30
    have_nt = NT_PYTHON.exists()
    lines = [f"# Empirical NTK: MLP 10-w-w-1, float32, {a.device}",
             "",
             f"{_dt.date.today()}, {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
             f"torch {torch.__version__} ({torch.get_num_threads()} threads), load average "
             f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}. Median of {a.repeats} calls per cell, each "
             "cell in its own process; memory = growth of the peak resident set (MB).",
             ""]
    if not have_nt:
        lines += [f"neural-tangents: not measured ({NT_PYTHON} missing: `make bench-nt-env`).", ""]
    lines += ["| width | n | structured s | MB | jacobian s | MB | nt structured s | MB | nt jac-contraction s | MB "
              "| nt best / structured | err structured | err jacobian | err nt |",
              "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    records = []
    with tempfile.TemporaryDirectory() as work:
        for width in widths:
            for n in inputs:
                ref = reference(width, n, a.check_n, a.device)
                fits = jacobian_bytes(width, n) <= cap
                s = torch_row("structured", width, n, a.repeats, a.device)
                j = torch_row("jacobian", width, n, a.repeats, a.device) if fits else {"skip": True}
                nt_fits = 2 * jacobian_bytes(width, n) <= a.nt_cap_gb * 2 ** 30
                ns = (nt_row("STRUCTURED_DERIVATIVES", width, n, a.repeats, work) if have_nt and nt_fits
                      else {"skip": True})
                nj = (nt_row("JACOBIAN_CONTRACTION", width, n, a.repeats, work)
                      if have_nt and fits else {"skip": True})
                nt_times = [r["time"] for r in (ns, nj) if "time" in r]

                def cell(r):
                    if "time" in r:
                        return f"{r['time']:.4f} | {r['peak_mb']:.0f}"
                    return "skipped | - " if "skip" in r else f"error: {r['error'][0][:40]} | -"

                es = rel_err(s["kernel"], ref) if "kernel" in s else float("nan")
                ent = rel_err(ns["kernel"], ref) if "kernel" in ns else float("nan")
                ej = rel_err(j["kernel"], ref) if "kernel" in j else float("nan")
                ratio = f"{min(nt_times) / s['time']:.2f}" if nt_times and "time" in s else "-"
                lines.append(f"| {width} | {n} | {cell(s)} | {cell(j)} | {cell(ns)} | {cell(nj)} | {ratio} "
                             f"| {es:.1e} | {ej:.1e} | {ent:.1e} |")
                records.append({"width": width, "n": n, "err_structured": es,
                                "structured_s": s.get("time"), "nt_best_s": min(nt_times) if nt_times else None,
                                "structured_mb": s.get("peak_mb"),
                                "o_bound_mb": 4 * (n * n + 2 * n * width) / 2 ** 20})
                print(lines[-1], flush=True)
    versions = ns.get("versions") if have_nt else None
    if versions:
        lines += ["", f"Baseline: {versions} (CPU, XLA's default threads)."]
    lines += ["", "Memory check: structured peak / (4 bytes x (n^2 + 2 n w)), the kernel plus two layers' activations:",
              ", ".join(f"w={r['width']} n={r['n']}: {r['structured_mb'] / r['o_bound_mb']:.1f}"
                        for r in records if r["structured_mb"] is not None)]
    bad = [r for r in records if not (r["err_structured"] <= 1e-5)]
    slow = [r for r in records if r["nt_best_s"] is not None and r["structured_s"] > r["nt_best_s"]]
    slow_rows = ", ".join(f"w={r['width']} n={r['n']}" for r in slow)
    lines += ["", "Structured agrees with the float64 Jacobian path to 1e-5: " + ("all rows" if not bad else f"FAILS on {len(bad)} rows") + ".",
              ("At least as fast as neural-tangents' fastest: " + ("on every row where it ran" if not slow else "not on " + slow_rows)
               + (f" (skipped on {sum(r['nt_best_s'] is None for r in records)} rows, where it would need more than "
                  f"--nt-cap-gb {a.nt_cap_gb:g} GB)" if any(r["nt_best_s"] is None for r in records) else "") + "."
               if any(r["nt_best_s"] is not None for r in records)
               else "Speed target against neural-tangents: not measured (no baseline result).")]
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    if bad:
        sys.exit("the structured NTK disagrees with the Jacobian path")


if __name__ == "__main__":
    main()
