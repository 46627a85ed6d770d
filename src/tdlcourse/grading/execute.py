"""Run one student notebook in a fresh, isolated kernel, with time and output limits.

This is the worker side of ``tdl grade``: it never touches the gradebook. It receives a notebook
that nbgrader already sanitized (locked and test cells restored from the gradebook), runs it in a
fresh kernel started in a scratch directory (``sandbox``), and returns the executed
notebook plus what went wrong, cell by cell.

Limits (all per notebook):

- ``cell_timeout``: a cell that runs longer is interrupted (SIGINT); its output gets nbgrader's
  ``CellTimeoutError`` and the next cells still run, so one infinite loop costs one question;
- ``notebook_timeout``: a wall-clock budget for the whole notebook; when it is spent the running
  cell is interrupted and every later code cell is marked as not run;
- ``max_output_bytes`` (per cell): output beyond this is dropped and the cell is interrupted at
  once, so a student's 100 MB of prints stops early and never reaches the disk; the cell gets an
  ``OutputLimitExceeded`` error (a test cell scores 0) and the next cells run;
- a kernel that dies (``os._exit``, a segfault, the memory limit) or ignores the interrupt is
  killed; the cell gets ``DeadKernelError`` and every later code cell is marked as not run.

A code cell that did not run gets an ``error`` output, because nbgrader gives full points to a
test cell without an error (``nbgrader.utils.determine_grade``): a skipped test must score 0.
"""

from __future__ import annotations

import asyncio
import math
import os
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field

from . import sandbox

SKIP_FILES = {"timestamp.txt", "submission_secret.txt"}


@dataclass(frozen=True)
class Limits:
    """Per-notebook execution limits (seconds and bytes); see the module docstring."""

    notebook_timeout: float = 600.0
    cell_timeout: float = 120.0
    max_output_bytes: int = 1_000_000
    startup_timeout: float = 60.0
    interrupt_grace: float = 10.0  # also how long a finished cell may take to flush its output

    def __post_init__(self):
        for name in ("notebook_timeout", "cell_timeout", "startup_timeout", "interrupt_grace"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name}={value!r} must be a positive number of seconds")
        if not (isinstance(self.max_output_bytes, int) and self.max_output_bytes > 0):
            raise ValueError(f"max_output_bytes={self.max_output_bytes!r} must be a positive integer")


@dataclass(frozen=True)
class CellEvent:
    """Something that went wrong in cell ``index``: ``kind`` is one of ``timeout``, ``unresponsive``,
    ``kernel_died``, ``output_limit``, ``notebook_timeout``, ``not_run``."""

    index: int
    kind: str
    detail: str = ""


@dataclass(frozen=True)
class Task:
    """One notebook to execute: sanitized notebook JSON and the directory whose files (other than
    notebooks and nbgrader's bookkeeping files) are copied into the scratch directory."""

    key: tuple[str, str, str]  # (student, assignment, notebook)
    notebook: str
    files_dir: str
    limits: Limits = field(default_factory=Limits)
    cwd: str | None = None  # trusted notebooks only: run here, not in a scratch copy
    env: tuple[tuple[str, str], ...] | None = None  # trusted notebooks only: the kernel's whole environment
    probe: str | None = None  # code run before the first and after the last cell (trusted.PROBE_CODE)
    only: tuple[int, ...] | None = None  # run only these cells (a lab's graded cells); None: all
    check_mode: str | None = "emit"  # TDL_CHECK_MODE of the kernel: "emit" (trusted checks) or None (in-kernel)


@dataclass(frozen=True)
class Result:
    """The executed notebook (JSON) and the events; ``error`` is set when the notebook could not be
    executed at all (the kernel did not start), in which case ``notebook`` is the input."""

    key: tuple[str, str, str]
    notebook: str
    events: tuple[CellEvent, ...] = ()
    error: str | None = None
    kernel_start_s: float = 0.0
    run_s: float = 0.0
    probe: tuple = (None, None)  # the probe cell's outputs before the first and after the last cell


def _error_output(ename: str, evalue: str):
    from nbformat import NotebookNode

    return NotebookNode(output_type="error", ename=ename, evalue=evalue,
                        traceback=[f"\x1b[0;31m{ename}\x1b[0m: {evalue}"])


def _client_class():
    from jupyter_client.manager import AsyncKernelManager
    from nbclient import NotebookClient

    class SandboxKernelManager(AsyncKernelManager):
        """Starts the kernel through the sandbox launcher. Through sudo (mode ``sudo``) the helper
        builds the command itself from a one-time token, and every signal goes through the
        worker's session: the Popen process is sudo's (root), which does not pass SIGKILL on."""

        sandbox_plan = None
        sandbox_slot = 0
        sandbox_scratch = ""
        sandbox_session = None  # mode "sudo": sandbox_helper.Session
        sandbox_env: dict = {}

        def format_kernel_cmd(self, extra_arguments=None):
            cmd = super().format_kernel_cmd(extra_arguments)
            if self.sandbox_plan is None:
                return cmd
            if self.sandbox_session is not None:
                from . import sandbox_helper

                token = self.sandbox_session.token(self.sandbox_scratch, "kernel", hide=self.sandbox_plan.hide,
                                                   env=self.sandbox_env, memory_mb=self.sandbox_plan.memory_mb)
                return sandbox_helper.kernel_command(self.sandbox_plan, token)
            return sandbox.launcher_command(self.sandbox_plan, self.sandbox_slot, self.sandbox_scratch, cmd)

        async def _async_signal_kernel(self, signum):
            if self.sandbox_session is None:
                return await super()._async_signal_kernel(signum)
            if self.has_kernel:
                self.sandbox_session.signal(self.sandbox_scratch, signum)

        async def _async_send_kernel_sigterm(self, restart=False):
            if self.sandbox_session is None:
                return await super()._async_send_kernel_sigterm(restart)
            if self.has_kernel:
                self.sandbox_session.signal(self.sandbox_scratch, signal.SIGTERM)

        async def _async_kill_kernel(self, restart=False):
            if self.sandbox_session is not None and self.has_kernel:
                try:  # the kernel first: sudo then reaps it and exits (killed, it would leave it running)
                    self.sandbox_session.signal(self.sandbox_scratch, signal.SIGKILL)
                    await asyncio.wait_for(self._async_wait(), timeout=5.0)
                except Exception:  # noqa: BLE001 - a dead session swept the slot already; sudo is killed below
                    pass
            await super()._async_kill_kernel(restart)

    class LimitedClient(NotebookClient):
        """nbclient with an output cap and a record of timeouts."""

        def __init__(self, nb, km, max_output_bytes, **kw):
            super().__init__(nb, km=km, **kw)
            self.max_output_bytes = max_output_bytes
            self.start_cell()

        def start_cell(self):
            self.cell_bytes = 0
            self.capped = False

        def output(self, outs, msg, display_id, cell_index):
            if self.capped:
                return None
            content = msg.get("content", {})
            self.cell_bytes += len(content.get("text", "")) + sum(len(str(v)) for v in content.get("data", {}).values())
            if self.cell_bytes > self.max_output_bytes:
                # Stop the producer now instead of draining megabytes we would throw away.
                self.capped = True
                asyncio.ensure_future(_maybe(self.km.interrupt_kernel()))
                return None
            return super().output(outs, msg, display_id, cell_index)

    return SandboxKernelManager, LimitedClient


def _on_cell_executed(cell, cell_index, execute_reply, **_):
    # As nbgrader's Execute preprocessor: an error reply without an error output (a timeout) is
    # appended, so that nbgrader scores the cell 0.
    content = execute_reply.get("content", {}) if execute_reply else {}
    if content.get("status") == "error":
        if not any(o.get("output_type") == "error" and o.get("ename") == content.get("ename") for o in cell.outputs):
            cell.outputs.append(_error_output(content.get("ename", "Error"), content.get("evalue", "")))
            if content.get("traceback"):
                cell.outputs[-1]["traceback"] = content["traceback"]


def copy_files(files_dir: str, scratch: str, uid: int | None, shared: bool = False) -> None:
    """Copy a submission's extra files (never notebooks, timestamps or secrets) into scratch.
    ``shared``: the scratch directory is the sudo helper's (the slot uid's, 0770, the grader's
    group); the copies are made readable and writable by the kernel (only those two can enter)."""
    if not files_dir or not os.path.isdir(files_dir):
        return
    for dirpath, dirnames, filenames in os.walk(files_dir):
        rel = os.path.relpath(dirpath, files_dir)
        dest_dir = os.path.normpath(os.path.join(scratch, rel))
        os.makedirs(dest_dir, exist_ok=True)
        if uid is not None:
            os.chown(dest_dir, uid, uid)
        if shared and rel != ".":
            os.chmod(dest_dir, 0o777)
        for name in filenames:
            src = os.path.join(dirpath, name)
            if name.endswith(".ipynb") or (rel == "." and name in SKIP_FILES) or os.path.islink(src):
                continue
            dest = os.path.join(dest_dir, name)
            shutil.copyfile(src, dest)
            if uid is not None:
                os.chown(dest, uid, uid)
            if shared:
                os.chmod(dest, 0o666)


_START_ATTEMPTS = 3


def _lost_port_race(log) -> bool:
    """The kernel died at start because one of its ports was taken meanwhile: jupyter_client picks
    free ports by binding and releasing them, so kernels started at the same moment (``--jobs 2``,
    or any other process on the machine) can race for one. The machine's doing, not the student's."""
    log.seek(0)
    return b"Address already in use" in log.read()


async def _discard_kernel(km, client, log) -> None:
    """Stop what is left of a kernel that died at start (a fresh manager picks fresh ports)."""
    try:
        client.kc.stop_channels()
    except Exception:  # noqa: BLE001 - best effort on a dead kernel
        pass
    try:
        await km.shutdown_kernel(now=True)
    except Exception:  # noqa: BLE001 - it is already dead; only its resources are left
        pass
    log.seek(0)
    log.truncate()


async def _run(task: Task, plan, slot: int, scratch: str, session=None) -> Result:
    import nbformat
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    limits = task.limits
    km_class, client_class = _client_class()
    nb = nbformat.reads(task.notebook, as_version=4)
    kernel_name = nb.metadata.get("kernelspec", {}).get("name") or "python3"

    env = dict(task.env) if task.env is not None else \
        sandbox.kernel_env(scratch, {"NBGRADER_EXECUTION": "autograde",
                                     **({"TDL_CHECK_MODE": task.check_mode} if task.check_mode else {})})

    def new_manager():
        m = km_class(kernel_name=kernel_name)
        m.sandbox_plan = None if plan is None or plan.mode == "none" else plan
        m.sandbox_slot, m.sandbox_scratch = slot, scratch
        if session is not None:
            from . import sandbox_helper

            # the helper reads the grader's connection file from the scratch directory, and sets the
            # kernel's environment itself: only these variables are the grader's to pass on
            m.sandbox_session = session
            m.connection_file = os.path.join(scratch, "kernel.json")
            m.sandbox_env = {k: v for k, v in env.items() if k in sandbox_helper.ENV_NAMES}
        return m

    km = new_manager()
    client = client_class(
        nb, km, limits.max_output_bytes, timeout=limits.cell_timeout, interrupt_on_timeout=True,
        allow_errors=True, raise_on_iopub_timeout=True, iopub_timeout=limits.interrupt_grace,
        startup_timeout=int(limits.startup_timeout), record_timing=False,
        error_on_timeout={"ename": "CellTimeoutError", "evalue": "",
                          "traceback": ["\x1b[0;31mCellTimeoutError\x1b[0m: No reply from kernel before timeout"]},
        on_cell_executed=_on_cell_executed,
        extra_arguments=["--HistoryManager.hist_file=:memory:"],
    )
    events: list[CellEvent] = []
    t0 = time.monotonic()
    deadline = t0 + limits.notebook_timeout
    log = tempfile.TemporaryFile()
    stop_reason: CellEvent | None = None
    try:
        try:
            for attempt in range(_START_ATTEMPTS):
                await km.start_kernel(cwd=scratch, env=env,
                                      stdout=log, stderr=log, extra_arguments=client.extra_arguments)
                client.kc = km.client()
                client.kc.start_channels()
                try:
                    await client.kc.wait_for_ready(timeout=min(limits.startup_timeout, limits.notebook_timeout))
                    break
                except Exception:  # noqa: BLE001 - retried only for a lost port race, else reported below
                    if attempt + 1 == _START_ATTEMPTS or not _lost_port_race(log):
                        raise
                    await _discard_kernel(km, client, log)
                    km = client.km = new_manager()
            client.kc.allow_stdin = False
            info = await client.async_wait_for_reply(await _maybe(client.kc.kernel_info()))
            if info and "language_info" in info["content"]:
                nb.metadata["language_info"] = info["content"]["language_info"]
        except Exception as e:  # noqa: BLE001 - anything here means "could not start a kernel"
            log.seek(0)
            tail = log.read()[-2000:].decode(errors="replace").strip()
            return Result(task.key, task.notebook, error=f"kernel did not start: {e!s}" + (f"\n{tail}" if tail else ""),
                          kernel_start_s=time.monotonic() - t0)
        t_start = time.monotonic()
        probes = [None, None]
        if task.probe:
            probes[0] = await _probe(client, nb, task.probe, limits)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            if task.only is not None and index not in task.only:
                continue
            if stop_reason is not None:
                cell.outputs = [_error_output("NotRun", stop_reason.detail)]
                events.append(CellEvent(index, "not_run", stop_reason.detail))
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                stop_reason = CellEvent(index, "not_run",
                                        f"not run: the notebook's time limit ({limits.notebook_timeout:g} s) was spent")
                cell.outputs = [_error_output("NotRun", stop_reason.detail)]
                events.append(stop_reason)
                continue
            client.timeout = max(1, math.ceil(min(limits.cell_timeout, remaining)))
            notebook_limited = client.timeout < limits.cell_timeout
            client.start_cell()
            try:
                await client.async_execute_cell(cell, index, execution_count=client.code_cells_executed + 1)
            except DeadKernelError:
                stop_reason = CellEvent(index, "kernel_died", "not run: the kernel died in an earlier cell")
                cell.outputs.append(_error_output("DeadKernelError", "the kernel died while running this cell"))
                events.append(CellEvent(index, "kernel_died", "the kernel died while running this cell"))
                continue
            except CellTimeoutError:
                stop_reason = CellEvent(index, "unresponsive",
                                        "not run: the kernel ignored an interrupt in an earlier cell and was killed")
                cell.outputs.append(_error_output("CellTimeoutError",
                                                  "the cell did not stop when interrupted; the kernel was killed"))
                events.append(CellEvent(index, "unresponsive", "did not stop when interrupted; kernel killed"))
                continue
            if any(o.get("output_type") == "error" and o.get("ename") == "CellTimeoutError" for o in cell.outputs):
                if notebook_limited:
                    events.append(CellEvent(index, "notebook_timeout",
                                            f"interrupted: the notebook's time limit ({limits.notebook_timeout:g} s) was spent"))
                else:
                    events.append(CellEvent(index, "timeout", f"interrupted after {client.timeout} s"))
            if client.capped:
                detail = f"more than {limits.max_output_bytes} bytes of output: the rest was dropped and the cell interrupted"
                cell.outputs.append(_error_output("OutputLimitExceeded", detail))
                events.append(CellEvent(index, "output_limit", detail))
        if task.probe and (stop_reason is None or stop_reason.kind == "not_run"):
            probes[1] = await _probe(client, nb, task.probe, limits)
        run_s = time.monotonic() - t_start
    finally:
        try:
            await km.shutdown_kernel(now=True)
        except Exception:  # noqa: BLE001 - already dead is fine
            pass
        if client.kc is not None:
            client.kc.stop_channels()
        log.close()
    return Result(task.key, nbformat.writes(nb), tuple(events), None, t_start - t0, run_s, tuple(probes))


async def _probe(client, nb, code: str, limits: Limits):
    """Run ``code`` as an extra cell at the end of ``nb`` (nbclient writes a cell back at its
    index) and take it out again; its outputs, or None when it failed or overran."""
    import nbformat

    cell = nbformat.v4.new_code_cell(code)
    nb.cells.append(cell)
    try:
        client.timeout = max(1, math.ceil(min(limits.cell_timeout, 60)))
        client.start_cell()
        await client.async_execute_cell(cell, len(nb.cells) - 1, store_history=False)
        return [dict(o) for o in nb.cells[-1].outputs] if not client.capped else None
    except Exception:  # noqa: BLE001 - a probe that cannot run reports nothing; the grader says so
        return None
    finally:
        nb.cells.pop()


async def _maybe(x):
    return await x if asyncio.iscoroutine(x) else x


def execute(task: Task, plan=None, slot: int = 0, scratch_root: str | None = None) -> Result:
    """Execute ``task`` in a fresh kernel in a fresh scratch directory (removed afterwards).

    ``plan`` is the ``sandbox.SandboxPlan`` of the run (``None``: no sandbox), ``slot``
    the worker's index (its sandbox uid).
    """
    if task.cwd is not None:
        return asyncio.run(_run(task, None, slot, task.cwd))
    if plan is not None and plan.mode == sandbox.SUDO_MODE:
        from . import sandbox_helper

        session = sandbox_helper.worker_session(plan)
        scratch = session.scratch(0)
        try:
            copy_files(task.files_dir, scratch, None, shared=True)
            return asyncio.run(_run(task, plan, slot, scratch, session))
        finally:
            session.release(scratch)  # kills whatever the kernel left, removes the scratch directory
    root = scratch_root or tempfile.gettempdir()
    uid = None if plan is None else plan.uid(slot)
    scratch = sandbox.make_scratch(root, uid)
    try:
        copy_files(task.files_dir, scratch, uid)
        return asyncio.run(_run(task, plan, slot, scratch))
    finally:
        if plan is not None:
            sandbox.sweep(plan, slot)
        sandbox.remove_scratch(scratch)


def warm_up() -> None:
    """Import what ``execute`` needs, once per worker process (the warm part of the pool)."""
    import importlib

    for name in ("jupyter_client.manager", "nbclient", "nbformat"):
        importlib.import_module(name)
    from jupyter_client.kernelspec import KernelSpecManager

    KernelSpecManager().get_kernel_spec("python3")
