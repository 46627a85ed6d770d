"""Benchmark: ``simplicity.function_distribution`` against a plain per-network loop.

Problem (lab 3, Valle-Perez et al. 2019): random ReLU networks 7-40-40-1, W ~ N(0, 1/fan_in),
b ~ N(0, 1), evaluated on all 128 inputs of {0, 1}^7 in float32; each network's output signs form a
128-bit truth table, and the functions are counted.

- ours: ``function_distribution(samples=N, chunk=128, threads=T)``: 128 networks per pass, one
  batched matrix product per layer, parameters drawn in blocks of 64 networks, T worker threads
  (``--threads``), counts merged with a sort.
- loop: one network at a time, the same arithmetic in torch (draw W and b, three matrix products,
  pack the signs, ``collections.Counter``): the plain way to write the experiment. It always runs
  with one torch thread, its fastest setting (tiny products gain nothing from a second thread,
  and a second intra-op thread stalls whenever the other core is busy).

Both are checked against a float64 evaluation of the same parameters, network by network, before
anything is timed. Repeats alternate ours and the loop, so both see the same machine load; the
table gives medians of the per-repeat rates and of the per-repeat ratios. The target (issue 12,
"Speed") is at least 10^6 networks per minute on 2 cores. Run from the repository root:

    .venv/bin/python benchmarks/simplicity.py [--threads 1,2] [--repeats 3] [--samples 200000]
"""

from __future__ import annotations

import argparse
import datetime as _dt
import math
import os
import platform
import statistics
import time
from collections import Counter

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from tdlcourse import simplicity

DIMS = (7, 40, 40, 1)


def loop_baseline(n: int, seed: int, check: int = 0) -> tuple[Counter, int]:
    """Count the functions of n networks drawn and evaluated one at a time; the first ``check``
    networks are also evaluated in float64 (returns how many of them disagree)."""
    g = torch.Generator().manual_seed(seed)
    X = torch.from_numpy(simplicity.boolean_inputs(DIMS[0]))
    counts: Counter = Counter()
    wrong = 0
    for i in range(n):
        h = X
        Ws, bs = [], []
        for l, (fi, fo) in enumerate(zip(DIMS[:-1], DIMS[1:])):
            W = torch.randn(fi, fo, generator=g).mul_(1.0 / math.sqrt(fi))
            b = torch.randn(fo, generator=g)
            h = h @ W + b
            if l < len(DIMS) - 2:
                h = torch.relu(h)
            Ws.append(W)
            bs.append(b)
        bits = (h[:, 0] > 0).numpy()
        counts[np.packbits(bits).tobytes()] += 1
        if i < check:
            ref = simplicity.network_bits([w.numpy() for w in Ws], [b.numpy() for b in bs], DIMS[0])
            wrong += int(not np.array_equal(ref.astype(bool), bits))
    return counts, wrong


def check_ours(n_blocks: int = 4, seed: int = 0) -> tuple[int, int]:
    """(compared, wrong): networks of the batched pass against a float64 run of the same parameters;
    networks with an output within 1e-5 of 0 (float32 may round it to the other side) are skipped."""
    X = simplicity.boolean_inputs(DIMS[0])
    bits = simplicity._pass_bits(X, seed, range(n_blocks), DIMS, 1.0, 1.0)
    compared = wrong = 0
    for blk in range(n_blocks):
        params = simplicity._block_params(seed, blk, DIMS, 1.0, 1.0)
        for i in range(simplicity._BLOCK):
            Ws = [p[0][i].astype(np.float64) for p in params]
            bs = [p[1][i, 0].astype(np.float64) for p in params]
            h = X.astype(np.float64)
            for l, (W, b) in enumerate(zip(Ws, bs)):
                h = h @ W + b
                h = np.maximum(h, 0) if l < len(Ws) - 1 else h
            if np.abs(h).min() < 1e-5:
                continue
            compared += 1
            wrong += int(not np.array_equal(bits[blk * simplicity._BLOCK + i], h[:, 0] > 0))
    return compared, wrong


def run(threads: int, args) -> dict:
    with threadpool_limits(limits=1):  # BLAS: one thread per worker
        load0 = os.getloadavg()
        print(f"# function_distribution vs per-network loop, {_dt.datetime.now():%Y-%m-%d %H:%M}, torch "
              f"{torch.__version__}, numpy {np.__version__}, {platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} logical cores, threads {threads} (ours; the loop: 1), repeats {args.repeats}, "
              f"load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f}")
        torch.set_num_threads(1)
        compared, wrong = check_ours()
        _, loop_wrong = loop_baseline(64, seed=1, check=64)
        print(f"check: ours {wrong} of {compared} networks differ from float64; loop {loop_wrong} of 64")
        for _ in range(2):  # warm-up (torch import, allocator, thread start)
            simplicity.function_distribution(samples=20_000, chunk=128, threads=threads)
            loop_baseline(1000, seed=2)
        ours_t, loop_t, ratios = [], [], []
        for r in range(args.repeats):
            t = time.perf_counter()
            fd = simplicity.function_distribution(samples=args.samples, chunk=128, seed=r, threads=threads)
            ours_t.append(time.perf_counter() - t)
            assert fd.counts.sum() == args.samples
            t = time.perf_counter()
            counts, _ = loop_baseline(args.loop_samples, seed=r)
            loop_t.append(time.perf_counter() - t)
            assert sum(counts.values()) == args.loop_samples
            ours_rate, loop_rate = args.samples / ours_t[-1] * 60, args.loop_samples / loop_t[-1] * 60
            ratios.append(ours_rate / loop_rate)
            print(f"  repeat {r + 1}/{args.repeats}: ours {ours_rate / 1e6:.2f} M/min ({ours_t[-1]:.2f} s for "
                  f"{args.samples}), loop {loop_rate / 1e6:.3f} M/min ({loop_t[-1]:.2f} s for {args.loop_samples}), "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    load1 = os.getloadavg()
    ours_rate = statistics.median(args.samples / t * 60 for t in ours_t)
    loop_rate = statistics.median(args.loop_samples / t * 60 for t in loop_t)
    print()
    print("| method | networks per repeat | median time (s) | networks per minute | ratio (min-max) |")
    print("|---|---:|---:|---:|---|")
    print(f"| **`function_distribution(chunk=128, threads={threads})`** | {args.samples:,} | "
          f"{statistics.median(ours_t):.2f} | **{ours_rate / 1e6:.2f} M** | **{statistics.median(ratios):.1f}x** "
          f"({min(ratios):.1f}-{max(ratios):.1f}) |")
    print(f"| per-network torch loop (1 thread) | {args.loop_samples:,} | {statistics.median(loop_t):.2f} | "
          f"{loop_rate / 1e6:.3f} M | 1.0x |")
    print(f"\ntarget >= 1.00 M networks per minute: {'met' if ours_rate >= 1e6 else 'NOT met'} "
          f"({ours_rate / 1e6:.2f} M); load average before {load0[0]:.2f}, after {load1[0]:.2f}")
    return {"threads": threads, "ours_rate": ours_rate, "loop_rate": loop_rate, "ratio": statistics.median(ratios),
            "load": (load0, load1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--threads", default="1,2", help="comma-separated worker-thread counts for ours, each a full run")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--samples", type=int, default=200_000, help="networks per repeat for ours")
    ap.add_argument("--loop-samples", type=int, default=10_000, help="networks per repeat for the loop")
    ap.add_argument("--quick", action="store_true", help="a smoke run: 1 repeat, 20k / 2k networks")
    args = ap.parse_args()
    if args.quick:
        args.repeats, args.samples, args.loop_samples = 1, 20_000, 2_000
    for nt in (int(t) for t in args.threads.split(",")):
        run(nt, args)
        print()


if __name__ == "__main__":
    main()
