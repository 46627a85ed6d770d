"""Benchmark tdlcourse.landscape's 2-D loss surface against loss-landscapes 3.0.6.

Same model and data as benchmarks/curvature.py (MLP 784-256-256-10, 2048 upsampled digits, briefly
trained). A 21 x 21 filter-normalised random plane is evaluated by both (441 full-data losses);
medians of interleaved repeats, ratios, and checks of the grid: does it contain the trained point,
is it symmetric, is the user's model left as it was?

    pip install --no-deps -r benchmarks/requirements-bench.txt
    python benchmarks/landscape.py [--repeats 3] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import copy
import datetime
import importlib.util
import pathlib
import statistics
import sys
import time

import torch
from torch import nn

from tdlcourse import landscape as LS

_spec = importlib.util.spec_from_file_location("bench_curvature", pathlib.Path(__file__).with_name("curvature.py"))
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
CE = bench.CE


def loss_landscapes_plane(model, batch, steps):
    import loss_landscapes
    import loss_landscapes.metrics

    metric = loss_landscapes.metrics.Loss(CE, *batch)
    # The library's defaults: deepcopy_model=False (it moves the given model's parameters).
    return loss_landscapes.random_plane(model, metric, distance=1, steps=steps, normalization="filter")


def params_of(model):
    return torch.cat([p.detach().reshape(-1) for p in model.parameters()])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--steps", type=int, default=21)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--train-steps", type=int, default=10)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"# tdlcourse.landscape benchmark, {datetime.date.today()}\n\nmachine: {bench.machine()}; "
          f"device: {args.device}; median of {args.repeats} interleaved repeats\n")
    model, batch = bench.problem(args.device, train_steps=args.train_steps)
    X, y = batch
    with torch.no_grad():
        L0 = CE(model(X), y).item()
    n = args.steps

    def ours(chunk=None):
        d = LS.random_directions(model, 2, seed=0)
        return LS.surface_2d(model, CE, batch, d, span=1.0, steps=n, chunk=chunk)

    class _NotPlain(nn.Sequential):  # the same modules; disables the shared-first-layer shortcut
        pass

    plain_model = _NotPlain(*model)

    def ours_plain():
        d = LS.random_directions(plain_model, 2, seed=0)
        return LS.surface_2d(plain_model, CE, batch, d, span=1.0, steps=n)

    cases = {
        f"tdlcourse surface_2d ({n}x{n}, loop)": lambda: ours(),
        f"tdlcourse surface_2d ({n}x{n}, loop, first layer not shared)": ours_plain,
        f"tdlcourse surface_2d ({n}x{n}, vmap chunks of 8)": lambda: ours(chunk=8),
        f"loss-landscapes random_plane ({n}x{n})": None,
    }
    times = {k: [] for k in cases}
    results = {}
    for _ in range(args.repeats):
        for name, fn in cases.items():
            if fn is None:  # the baseline moves its model's parameters: give it a fresh copy (untimed)
                victim = copy.deepcopy(model)
                before = params_of(victim)
                t0 = time.perf_counter()
                res = loss_landscapes_plane(victim, batch, n)
                times[name].append(time.perf_counter() - t0)
                results[name] = (res, float((params_of(victim) - before).norm() / before.norm()))
            else:
                before = params_of(model)
                t0 = time.perf_counter()
                res = fn()
                times[name].append(time.perf_counter() - t0)
                results[name] = (res, float((params_of(model) - before).norm() / before.norm()))
    ours_t = statistics.median(times[f"tdlcourse surface_2d ({n}x{n}, loop)"])
    lines = [f"trained-point loss L0 = {L0:.6f}", "",
             "| method | median time (s) | time / ours | grid has the trained point | centre value - L0 | "
             "model moved afterwards (rel.) |", "|---|---:|---:|---|---:|---:|"]
    for name, ts in times.items():
        res, moved = results[name]
        if name.startswith("tdlcourse"):
            c = res.center
            centre, has = float(res.losses[c]), bool(res.alphas[c[0]] == 0 and res.betas[c[1]] == 0)
            sym = bool(torch.equal(res.alphas, -res.alphas.flip(0)))
            has_s = f"yes, exactly (symmetric: {sym})" if has else "NO"
        else:
            centre = float(res[n // 2][n // 2])
            # Offsets along d1 are i - n/2 for i = 0..n-1 (from the library's loop): never 0 for odd n.
            offs = [i - n / 2 for i in range(n)]
            has_s = f"no (d1 offsets {offs[0]:+.1f} ... {offs[-1]:+.1f} steps)"
        lines.append(f"| {name} | {statistics.median(ts):.3f} | {statistics.median(ts) / ours_t:.2f}x | {has_s} | "
                     f"{centre - L0:+.2e} | {moved:.1e} |")
    print("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
