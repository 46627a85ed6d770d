"""Benchmark: a loop of ``train.fit`` against one ``train.fit_ensemble`` call.

Cases (full-batch SGD, lr 0.05, all numbers measured in this one run):

- small: K = 64 MLPs 2-32-32-1 (tanh, ReLU) on 256 samples, squared loss, 500 steps, evaluation every
  10 steps (the default) in both. This is the theory-lab regime: tiny matrices, so the loop is bound
  by per-operation overhead and the ensemble by memory traffic.
- medium: K = 32 MLPs 784-64-64-10 on 2048 samples, cross-entropy, 50 steps, one evaluation at the
  end. Here the time goes into matrix products; the table gives the achieved GFLOP/s beside the
  machine's float32 matmul rate measured in the same run.

Each row reports the median over ``--repeats`` runs (loop and ensemble alternate, so both see the
same machine load), the median of the per-repeat ratios, process CPU time and the peak memory
growth (resident set on CPUs, allocator peak on GPUs). Run from the repository root:

    .venv/bin/python benchmarks/train_ensemble.py [--threads 1,2] [--repeats 3] [--device auto] [--quick]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from tdlcourse import device as tdl_device
from tdlcourse import models, train


# ---------------------------------------------------------------------------------- measurements

def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def measure(fn, dev: torch.device) -> dict[str, float]:
    """Wall time, process CPU time and peak memory growth (MB) of one call of ``fn``."""
    tdl_device.synchronize(dev)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
        base = torch.cuda.memory_allocated(dev)
    else:
        try:  # reset the resident-set high-water mark (Linux), so VmHWM is this call's peak
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass
        base = _status_kb("VmRSS") * 1024
    w, c = time.perf_counter(), time.process_time()
    fn()
    tdl_device.synchronize(dev)
    wall, cpu = time.perf_counter() - w, time.process_time() - c
    peak = (torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else _status_kb("VmHWM") * 1024) - base
    return {"wall": wall, "cpu": cpu, "peak_mb": max(peak, 0) / 2**20}


def matmul_gflops(dev: torch.device, m: int, k: int, n: int, reps: int = 7) -> float:
    a = torch.randn(m, k, device=dev)
    b = torch.randn(k, n, device=dev)
    for _ in range(2):
        a @ b
    times = []
    for _ in range(reps):
        tdl_device.synchronize(dev)
        t = time.perf_counter()
        a @ b
        tdl_device.synchronize(dev)
        times.append(time.perf_counter() - t)
    return 2 * m * k * n / statistics.median(times) / 1e9


def copy_gbps(dev: torch.device, mb: int = 64, reps: int = 7) -> float:
    a = torch.empty(mb * 2**20 // 4, device=dev)
    b = torch.empty_like(a)
    times = []
    for _ in range(reps):
        tdl_device.synchronize(dev)
        t = time.perf_counter()
        b.copy_(a)
        tdl_device.synchronize(dev)
        times.append(time.perf_counter() - t)
    return 2 * a.numel() * 4 / statistics.median(times) / 1e9  # read + write


def mlp_flops(dims: list[int], n: int) -> tuple[int, int]:
    """(training step, forward) FLOPs of one MLP on n samples: forward 2 n a b per layer; backward the
    weight gradient (2 n a b) and the input gradient (2 n a b, not for the first layer)."""
    fwd = sum(2 * n * a * b for a, b in zip(dims[:-1], dims[1:]))
    bwd = 2 * fwd - 2 * n * dims[0] * dims[1]
    return fwd + bwd, fwd


# ---------------------------------------------------------------------------------------- cases

def run_case(name, make, data, *, k, steps, loss, dev, repeats, eval_every=None, loop_models=None):
    """Alternate loop and ensemble ``repeats`` times; return the per-repeat measurements."""
    rows = {"loop": [], "ensemble": []}
    kw = dict(steps=steps, lr=0.05, loss=loss, progress=False, eval_every=eval_every, precision="fp32")
    loop_k = loop_models or k
    # Warm up both paths once (lazy imports, allocator, first-call dispatch).
    train.fit(make(0), data, **(kw | {"steps": 3, "eval_every": None}))
    train.fit_ensemble([make(s) for s in range(min(k, 4))], data, **(kw | {"steps": 3, "eval_every": None}))
    for r in range(repeats):
        loop_nets = [make(s) for s in range(loop_k)]
        m = measure(lambda: [train.fit(net, data, **kw) for net in loop_nets], dev)
        scale = k / loop_k  # the loop is K independent runs: time scales linearly with K
        rows["loop"].append({key: v * scale if key in ("wall", "cpu") else v for key, v in m.items()})
        nets = [make(s) for s in range(k)]
        res = {}
        m = measure(lambda: res.setdefault("r", train.fit_ensemble(nets, data, **kw)), dev)
        m["engine"] = res["r"].engine
        rows["ensemble"].append(m)
        print(f"  {name} repeat {r + 1}/{repeats}: loop {rows['loop'][-1]['wall']:.2f} s, "
              f"ensemble {m['wall']:.2f} s", flush=True)
    return rows


def summarize(rows):
    med = lambda key, xs: statistics.median(x[key] for x in xs)  # noqa: E731
    ratios = [lo["wall"] / en["wall"] for lo, en in zip(rows["loop"], rows["ensemble"])]
    cpu_ratios = [lo["cpu"] / en["cpu"] for lo, en in zip(rows["loop"], rows["ensemble"])]
    return {
        "loop_wall": med("wall", rows["loop"]), "ens_wall": med("wall", rows["ensemble"]),
        "loop_cpu": med("cpu", rows["loop"]), "ens_cpu": med("cpu", rows["ensemble"]),
        "loop_peak_mb": med("peak_mb", rows["loop"]), "ens_peak_mb": med("peak_mb", rows["ensemble"]),
        "ratio": statistics.median(ratios), "ratio_min": min(ratios), "ratio_max": max(ratios),
        "cpu_ratio": statistics.median(cpu_ratios), "engine": rows["ensemble"][0]["engine"],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default=None,
                    help="comma-separated torch thread counts, each a full run (default: 1 and all cores)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--quick", action="store_true", help="fewer steps and models (a smoke run)")
    ap.add_argument("--json", type=Path, help="also write the numbers to this file")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    dev = tdl_device.get_device(args.device)
    default = sorted({1, cores}) if dev.type == "cpu" else [cores]
    threads = [int(t) for t in args.threads.split(",")] if args.threads else default
    out = {}
    for nt in threads:
        out[nt] = run_all(nt, dev, args)
        print()
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


def run_all(threads: int, dev: torch.device, args) -> dict:
    torch.set_num_threads(threads)
    q = args.quick
    print(f"# fit loop vs fit_ensemble, {_dt.datetime.now():%Y-%m-%d %H:%M}, torch {torch.__version__}, "
          f"device {dev}{' (' + torch.cuda.get_device_name(dev) + ')' if dev.type == 'cuda' else ''}, "
          f"{platform.processor() or platform.machine()}, threads {torch.get_num_threads()}, repeats {args.repeats}")

    gen = torch.Generator().manual_seed(0)
    ceiling = matmul_gflops(dev, 2048, 2048, 2048)
    skinny = matmul_gflops(dev, 2048, 784, 64)
    bandwidth = copy_gbps(dev)
    print(f"machine: float32 matmul {ceiling:.1f} GFLOP/s (2048^3), {skinny:.1f} GFLOP/s (2048x784 @ 784x64), "
          f"copy bandwidth {bandwidth:.1f} GB/s")

    results = {}
    # --- small: theory-lab size
    n_small, steps_small, k_small = 256, (100 if q else 500), (16 if q else 64)
    xs = torch.randn(n_small, 2, generator=gen)
    ys = torch.sin(3 * xs[:, 0]) * xs[:, 1]
    small = (xs.to(dev), ys.to(dev))
    for act in ("tanh", "relu"):
        make = lambda s, a=act: models.mlp(2, [32, 32], 1, activation=a, seed=s, device=dev)  # noqa: E731
        rows = run_case(f"small-{act}", make, small, k=k_small, steps=steps_small, loss="mse", dev=dev,
                        repeats=args.repeats)
        results[f"small-{act}"] = summarize(rows)
    # Fixed cost per step: the same ensemble with K = 1 (no batching to amortize it).
    make = lambda s: models.mlp(2, [32, 32], 1, activation="tanh", seed=s, device=dev)  # noqa: E731
    one = statistics.median(measure(lambda: train.fit_ensemble([make(0)], small, steps=steps_small, lr=0.05,
                                                               loss="mse", progress=False), dev)["wall"]
                            for _ in range(args.repeats))
    loop_one = results["small-tanh"]["loop_wall"] / k_small

    # --- medium: matrix products dominate
    n_med, steps_med, k_med = 2048, (10 if q else 50), (8 if q else 32)
    xm = torch.randn(n_med, 784, generator=gen)
    ym = torch.randint(0, 10, (n_med,), generator=gen)
    medium = (xm.to(dev), ym.to(dev))
    make = lambda s: models.mlp(784, [64, 64], 10, seed=s, device=dev)  # noqa: E731
    rows = run_case("medium", make, medium, k=k_med, steps=steps_med, loss="cross_entropy", dev=dev,
                    repeats=args.repeats, eval_every=steps_med)
    results["medium"] = summarize(rows)
    step_flops, fwd_flops = mlp_flops([784, 64, 64, 10], n_med)
    total_flops = k_med * (steps_med * step_flops + fwd_flops)  # training + the one evaluation
    results["medium"]["loop_gflops"] = total_flops / results["medium"]["loop_wall"] / 1e9
    results["medium"]["ens_gflops"] = total_flops / results["medium"]["ens_wall"] / 1e9

    # --- table
    print()
    print("| case | K | steps | loop s | ensemble s | ratio (min-max) | CPU-time ratio | peak MB loop / ens | engine |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, k, steps in (("small-tanh", k_small, steps_small), ("small-relu", k_small, steps_small),
                           ("medium", k_med, steps_med)):
        r = results[name]
        print(f"| {name} | {k} | {steps} | {r['loop_wall']:.2f} | {r['ens_wall']:.2f} | {r['ratio']:.2f}x "
              f"({r['ratio_min']:.2f}-{r['ratio_max']:.2f}) | {r['cpu_ratio']:.2f}x | "
              f"{r['loop_peak_mb']:.0f} / {r['ens_peak_mb']:.0f} | {r['engine']} |")
    m = results["medium"]
    print()
    print(f"medium: loop {m['loop_gflops']:.1f} GFLOP/s, ensemble {m['ens_gflops']:.1f} GFLOP/s; "
          f"matmul ceiling {ceiling:.1f} GFLOP/s (2048^3) -> ensemble at {100 * m['ens_gflops'] / ceiling:.0f}% "
          f"({100 * m['ens_gflops'] / max(ceiling, skinny):.0f}% of the best GEMM rate measured, {max(ceiling, skinny):.1f})")
    per_step_ens = results["small-tanh"]["ens_wall"] / steps_small
    marginal = (results["small-tanh"]["ens_wall"] - one) / (k_small - 1) / steps_small
    print(f"small (tanh): loop {1e3 * loop_one / steps_small:.3f} ms per model-step; ensemble "
          f"{1e3 * per_step_ens:.2f} ms per step for all {k_small} models: {1e3 * one / steps_small:.2f} ms "
          f"fixed cost per step (the ensemble with K = 1) plus {1e3 * marginal:.3f} ms per extra model-step "
          f"(K x 256 x 32 activations; copy bandwidth measured above {bandwidth:.1f} GB/s)")
    return {"ceiling_gflops": ceiling, "skinny_gflops": skinny, "copy_gbps": bandwidth, "k1_wall": one,
            "results": results, "threads": threads, "device": str(dev)}


if __name__ == "__main__":
    main()
