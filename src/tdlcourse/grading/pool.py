"""The pool of warm grading workers: ``jobs`` processes, spawned once with their imports done, each
running one notebook at a time in a fresh kernel (``execute``). The workers never open the
gradebook."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections import deque
from dataclasses import dataclass

from . import execute as gx
from . import sandbox



def _worker_main(conn, slot: int, scratch_root: str) -> None:  # pragma: no cover - child process
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process decides when to stop
    gx.warm_up()
    while True:
        try:
            item = conn.recv()
        except EOFError:
            return
        if item is None:
            return
        task, plan = item
        try:
            result = gx.execute(task, plan, slot, scratch_root)
        except Exception as e:  # noqa: BLE001 - reported to the main process, never lost
            result = gx.Result(task.key, task.notebook, error=f"grader error: {type(e).__name__}: {e}")
        conn.send(result)


@dataclass
class _Worker:
    slot: int
    process: object
    conn: object
    task: object = None
    started: float = 0.0


class WorkerPool:
    """``jobs`` warm worker processes (spawned once, imports done), each running one notebook at a
    time in a fresh kernel. A worker that dies or overruns its watchdog is replaced and its task
    reported as failed; the others go on."""

    def __init__(self, jobs: int, plan, scratch_root: str):
        self.ctx = mp.get_context("spawn")
        self.plan, self.scratch_root = plan, scratch_root  # the plan may be set later, before run()
        self.workers = [self._start(slot) for slot in range(jobs)]

    def _start(self, slot: int) -> _Worker:
        parent, child = self.ctx.Pipe()
        p = self.ctx.Process(target=_worker_main, args=(child, slot, self.scratch_root), daemon=True,
                             name=f"tdl-grade-{slot}")
        p.start()
        child.close()
        return _Worker(slot, p, parent)

    def run(self, tasks, lookahead: int | None = None):
        """Yield ``(task, Result)`` as notebooks finish. ``tasks`` may be a lazy iterator: it is
        pulled only to keep ``lookahead`` tasks ready, and a worker that finishes gets its next
        task before the caller sees the result, so preparing and recording (in the caller)
        overlap with execution."""
        from multiprocessing.connection import wait

        it, ready, more = iter(tasks), deque(), [True]
        lookahead = lookahead or len(self.workers)

        def dispatch():
            for w in self.workers:
                if w.task is None and ready:
                    w.task, w.started = ready.popleft(), time.monotonic()
                    w.conn.send((w.task, self.plan))

        def refill():
            while more[0] and len(ready) < lookahead:
                try:
                    ready.append(next(it))
                except StopIteration:
                    more[0] = False
                dispatch()

        while True:
            refill()
            busy = [w for w in self.workers if w.task is not None]
            if not busy:
                if not ready and not more[0]:
                    return
                continue
            wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout=1.0)
            done = []
            for w in busy:
                result = None
                if w.conn.poll():
                    try:
                        result = w.conn.recv()
                    except (EOFError, OSError):
                        result = None
                if result is not None:
                    done.append((w.task, result))
                    w.task = None
                    continue
                lim = w.task.limits
                overdue = time.monotonic() - w.started > lim.notebook_timeout + lim.startup_timeout + 60
                if not w.process.is_alive() or overdue:
                    why = "the grading worker overran its watchdog and was killed" if overdue else \
                        f"the grading worker died (exit code {w.process.exitcode})"
                    task = w.task
                    self._replace(w)
                    done.append((task, gx.Result(task.key, task.notebook, error=why)))
            dispatch()  # freed workers start their next notebook before results are recorded
            yield from done

    def _replace(self, w: _Worker) -> None:
        if w.process.is_alive():
            w.process.kill()
        w.process.join(5)
        if self.plan is not None:
            sandbox.sweep(self.plan, w.slot)
        self.workers[self.workers.index(w)] = self._start(w.slot)

    def close(self) -> None:
        for w in self.workers:
            try:
                w.conn.send(None)
            except (OSError, BrokenPipeError):
                pass
        for w in self.workers:
            w.process.join(10)
            if w.process.is_alive():
                w.process.kill()
                w.process.join(5)
            if self.plan is not None:
                sandbox.sweep(self.plan, w.slot)
