"""``fit_sweep``: many configurations, each group of same-shaped models trained as one ensemble.

With ``executor`` (any ``concurrent.futures.Executor``: a ``ProcessPoolExecutor`` on one machine,
``dask.distributed.Client(...).get_executor()`` on a cluster) each group is one task: its models,
data and options are pickled to a worker, trained there by ``fit_ensemble`` and sent back with their
histories. The groups and their seeds are the same as in a local run, so are the results.
"""

from __future__ import annotations

import concurrent.futures as cf
import time
from collections import OrderedDict
from typing import Any, Callable, Mapping, Sequence

from torch import nn

from ..data import Data
from ..validate import nonnegative_int, positive_int
from .checks import signature
from .config import optional
from .ensemble import fit_ensemble
from .history import History, SweepResult

SWEEP_KEYS = ("lr", "train_seed", "data")
SCHEDULER_ENV = "TDL_DASK_SCHEDULER"


def cluster_executor(address: str | None = None) -> cf.Executor | None:
    """The executor of a Dask cluster for ``fit_sweep``, or None (run here).

    ``address`` (default: the environment variable ``TDL_DASK_SCHEDULER``, e.g.
    ``tcp://scheduler:8786``) is a running ``dask.distributed`` scheduler; its workers need this
    project's environment (the same pins). Unset or empty: None, so a lab runs locally. Needs the
    optional ``cluster`` extra (``pip install -c constraints.txt -e ".[cluster]"``).
    """
    import os

    address = os.environ.get(SCHEDULER_ENV, "") if address is None else address
    if not isinstance(address, str):
        raise ValueError(f"address must be a scheduler address string like 'tcp://host:8786'; got {address!r}")
    if not address.strip():
        return None
    try:
        from distributed import Client
    except ImportError:
        raise ImportError(f"{SCHEDULER_ENV}={address!r} asks for a Dask cluster, but dask.distributed is not "
                          "installed: pip install -c constraints.txt -e '.[cluster]'") from None
    return Client(address).get_executor()


def fit_sweep(make_model: Callable[..., nn.Module], configs: Sequence[Mapping[str, Any]],
              data: Data | tuple, *, max_group: int | None = None, executor: cf.Executor | None = None,
              retries: int = 2, **fit_kwargs: Any) -> SweepResult:
    """Train one model per configuration, running each group of same-shaped models as one ensemble.

    Each configuration is a dict of keyword arguments for ``make_model`` (e.g. ``models.mlp``'s
    ``widths``, ``activation``, ``seed``) plus optional training keys: ``lr`` (its own learning rate),
    ``train_seed`` (its minibatch seed; default ``fit_kwargs["seed"]`` or 0) and ``data`` (its own
    ``Data``, e.g. with shuffled labels). Models whose architectures agree (same module types and
    parameter shapes, see ``fit_ensemble``) are trained together, at most ``max_group`` at a time;
    ``fit_kwargs`` go to ``fit_ensemble``. Results come back in configuration order and equal one
    ``fit`` per configuration up to float rounding.

    ``executor``: run each group as one task of this ``concurrent.futures.Executor`` (see the module
    docstring); the trained parameters are loaded back into the returned models, so the result is
    the local run's. A group whose worker is lost (``BrokenExecutor``, Dask's ``KilledWorker``, a
    lost connection) is resubmitted, at most ``retries`` times; the other groups keep their results.
    Dask itself also reruns a task whose worker died, before reporting ``KilledWorker``. Progress
    bars are off in the workers. Without ``executor`` the groups run one after another here.
    """
    configs = [dict(c) for c in configs]
    if not configs:
        raise ValueError("configs is empty")
    max_group = optional(positive_int, "max_group", max_group, "no limit")
    for bad in ("seeds", "models"):
        if bad in fit_kwargs:
            raise ValueError(f"{bad!r} is set per configuration in fit_sweep (keys {SWEEP_KEYS}), not as a keyword")
    base_lr = fit_kwargs.pop("lr", 0.1)
    base_seed = fit_kwargs.pop("seed", 0)
    t0 = time.perf_counter()
    built = [make_model(**{k: v for k, v in c.items() if k not in SWEEP_KEYS}) for c in configs]
    groups: dict[str, list[int]] = OrderedDict()
    for i, m in enumerate(built):
        if not isinstance(m, nn.Module):
            raise TypeError(f"make_model returned {type(m).__name__} for configs[{i}], not an nn.Module")
        groups.setdefault(repr(signature(m)), []).append(i)
    histories: list[History | None] = [None] * len(configs)
    chunks: list[list[int]] = []
    for idx in groups.values():
        size = max_group or len(idx)
        chunks += [idx[a:a + size] for a in range(0, len(idx), size)]
    def task(chunk):
        return ([built[i] for i in chunk], [configs[i].get("data", data) for i in chunk],
                [configs[i].get("lr", base_lr) for i in chunk],
                [configs[i].get("train_seed", base_seed) for i in chunk])

    if executor is None:
        for chunk in chunks:
            for i, h in zip(chunk, _train_group(*task(chunk), fit_kwargs)[1]):
                histories[i] = h
    else:
        if not isinstance(executor, cf.Executor):
            raise ValueError(f"executor must be a concurrent.futures.Executor (e.g. ProcessPoolExecutor, "
                             f"dask.distributed.Client.get_executor()) or None; got {type(executor).__name__}")
        retries = nonnegative_int("retries", retries)
        remote = {**fit_kwargs, "progress": False}
        for chunk, (trained, hs) in zip(chunks, _run_remote(executor, [task(c) for c in chunks], remote, retries)):
            for i, m, h in zip(chunk, trained, hs):
                built[i].load_state_dict(m.state_dict())
                histories[i] = h
    return SweepResult(configs=configs, models=built, histories=histories,  # type: ignore[arg-type]
                       groups=chunks, seconds=time.perf_counter() - t0)


def _train_group(models, datas, lrs, seeds, fit_kwargs):
    """One group, as one ensemble (also the task a worker runs)."""
    res = fit_ensemble(models, datas, lr=lrs, seeds=seeds, **fit_kwargs)
    return res.models, res.histories


def _worker_lost(e: BaseException) -> bool:
    # By name: dask is an optional dependency (KilledWorker; CommClosedError when a worker's
    # connection drops while the scheduler still holds the task).
    return isinstance(e, cf.BrokenExecutor) or type(e).__name__ in ("KilledWorker", "CommClosedError", "FutureCancelledError")


def _run_remote(executor: cf.Executor, tasks: list, fit_kwargs: dict, retries: int) -> list:
    results: list = [None] * len(tasks)
    attempts = [0] * len(tasks)
    pending = {executor.submit(_train_group, *t, fit_kwargs): g for g, t in enumerate(tasks)}
    while pending:
        done, _ = cf.wait(pending, return_when=cf.FIRST_COMPLETED)
        again = []
        for fut in done:
            g = pending.pop(fut)
            try:
                results[g] = fut.result()
            except BaseException as e:  # noqa: BLE001 - re-raised unless it is a lost worker
                if not _worker_lost(e) or attempts[g] >= retries:
                    for other in pending:
                        other.cancel()
                    if _worker_lost(e):
                        raise RuntimeError(f"fit_sweep: group {g} lost its worker {attempts[g] + 1} times "
                                           f"({type(e).__name__}: {e}); retries={retries}") from e
                    raise
                attempts[g] += 1
                again.append(g)
        # Drop the finished futures before going on: Dask keeps (and recomputes, if their worker
        # dies) the results of futures still referenced, and would hand a resubmitted task with the
        # same key its failed result.
        del done, fut
        for g in again:
            try:
                pending[executor.submit(_train_group, *tasks[g], fit_kwargs)] = g
            except cf.BrokenExecutor as broken:
                raise RuntimeError(f"fit_sweep: the executor broke when group {g} lost its worker and cannot "
                                   "take a retry (a ProcessPoolExecutor cannot recover from a killed worker; "
                                   "Dask's executor can)") from broken
    return results
