"""neural-tangents' empirical NTK of the benchmark MLP, for ``benchmarks/ntk.py`` (run in the JAX environment).

Not a project module: it runs under ``.venv-bench-nt/bin/python`` (neural-tangents 0.6.5 needs an old
JAX and TensorFlow, pinned in ``benchmarks/requirements-nt.txt``), one measurement per process, so
that the peak resident set is this measurement's own:

    python benchmarks/baselines/nt_ntk.py WEIGHTS.npz X.npz IMPLEMENTATION REPEATS OUT.npz

``WEIGHTS.npz`` holds ``w0, b0, w1, b1, ...`` in torch's ``nn.Linear`` layout (W is [out, in]) and the
activation name; the net is ``relu`` between layers, as ``models.mlp``. Writes the kernel, the median
wall time of ``REPEATS`` calls after one compiling call, and the peak RSS growth of the process.
"""

from __future__ import annotations

import resource
import sys
import time

import numpy as np


def _status_kb(field: str) -> int:
    for line in open("/proc/self/status"):
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def _rss_kb() -> int:
    return _status_kb("VmRSS")


def _hwm_kb() -> int:
    return _status_kb("VmHWM") or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def main() -> None:
    weights_path, x_path, impl_name, repeats, out_path = sys.argv[1:6]
    import jax
    import jax.numpy as jnp
    import neural_tangents as nt

    wz = np.load(weights_path)
    n_layers = int(wz["n_layers"])
    params = [(jnp.asarray(wz[f"w{i}"]), jnp.asarray(wz[f"b{i}"])) for i in range(n_layers)]
    x = jnp.asarray(np.load(x_path)["x"])

    def f(p, x):
        h = x
        for i, (w, b) in enumerate(p):
            h = h @ w.T + b
            if i < len(p) - 1:
                h = jax.nn.relu(h)
        return h

    impl = getattr(nt.NtkImplementation, impl_name)
    kernel_fn = jax.jit(nt.empirical_ntk_fn(f, trace_axes=(-1,), vmap_axes=0, implementation=impl))
    out = kernel_fn(x, None, params).block_until_ready()  # compiles
    try:  # reset the resident-set high-water mark (Linux): the peak below excludes compilation
        open("/proc/self/clear_refs", "w").write("5")
    except OSError:
        pass
    base = _rss_kb()
    times = []
    for _ in range(int(repeats)):
        t = time.perf_counter()
        out = kernel_fn(x, None, params).block_until_ready()
        times.append(time.perf_counter() - t)
    peak_kb = _hwm_kb()
    np.savez(out_path, kernel=np.asarray(out), time=float(np.median(times)),
             peak_mb=max(0.0, (peak_kb - base) / 1024), jax=jax.__version__, nt=nt.__version__)


if __name__ == "__main__":
    main()
