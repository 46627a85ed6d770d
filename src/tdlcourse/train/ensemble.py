"""``fit_ensemble``: K models of one architecture trained at once, their parameters stacked.

Reading order: ``fit_ensemble`` checks and builds the parts; ``EnsembleState`` is what changes on the
device (parameters, optimizer state, which models still train, recent losses); ``EnsembleRecords``
is the host's view (the K histories); ``_EnsembleLoop.run_steps`` runs the steps, evaluations and stops.
"""

from __future__ import annotations

import copy
import math
import time
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .. import _mlpstack
from .. import device as _device
from ..data import Data
from ..validate import integer, one_of, positive_int
from .checks import check_cross_entropy_labels, check_members, output_width
from .config import Resolved, TrainConfig, optional, stop_reached
from .engines import ENGINES, BmmEngine, FuncEngine, make_engine
from .history import DivergenceError, EnsembleResult, History
from .optim import StackedOptimizer
from .stacked import Split, StackedParams, ensemble_batches, ensemble_data

Engine = FuncEngine | BmmEngine

# Tests set this to run fit_ensemble's accelerator code path on a CPU: all K models in one pass,
# losses kept on the device between evaluations (ring buffer), masked optimizer updates.
_ACCELERATOR_STYLE_ON_CPU = False


def fit_ensemble(models: Sequence[nn.Module], data: Data | tuple | Sequence[Data], *, steps: int | None = None,
                 lr: float | Sequence[float] = 0.1, optimizer: str = "sgd", momentum: float = 0.0,
                 weight_decay: float = 0.0, batch_size: int | None = None, loss: str | Callable = "cross_entropy",
                 eval_every: int | None = None, seed: int = 0, seeds: Sequence[int] | None = None,
                 progress: bool = True, on_divergence: str = "raise",
                 callbacks: Sequence[Callable[[int, dict[str, torch.Tensor], list[History]], Any]] = (),
                 desc: str = "fit_ensemble", epochs: int | None = None,
                 schedule: str | Callable[[int, int], float] = "constant", warmup: int = 0, nesterov: bool = False,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 stop_when: Mapping[str, float] | None = None, precision: str = "auto",
                 compile: bool | str = False, engine: str = "auto", eval_chunk: int | None = None,
                 model_chunk: int | None = None) -> EnsembleResult:
    """Train K models of one architecture at once; equal to K ``fit`` runs up to float rounding.

    The parameters theta^(k), k = 1..K, are stacked along a new leading axis and every step computes
    all K mean losses L_k(theta^(k)) and gradients in one batched pass, then applies K independent
    optimizer updates (own momentum/Adam state) with learning rates eta_t^(k) = lr_k * s(t).
    Model k draws its minibatches with seed ``seeds[k]`` (default: every model uses ``seed``,
    exactly as ``[fit(m, data, seed=seed) for m in models]``), may have its own ``lr[k]`` and its own
    data (``data`` a list of K ``Data`` of equal shapes: e.g. random labels per model).
    Engines: ``"func"`` maps ``torch.func.grad_and_value`` of the functional model over the stacked
    parameters with ``torch.func.vmap`` (any architecture); ``"bmm"`` handles plain MLPs (Sequential
    of Linear, elementwise activations, optional leading Flatten) with batched matrix products and
    backpropagation written out (``tdlcourse._mlpstack``: ATen's own activation-backward kernels,
    closed-form loss gradients, buffers reused across steps; under ``precision="bf16"`` or
    ``compile`` it uses autograd instead); ``"auto"`` picks ``"bmm"`` when it applies. Divergence
    and ``stop_when`` act per model: the model is frozen and its history ends there;
    ``on_divergence="raise"`` raises at the first divergence. ``callbacks`` are called as ``cb(step,
    params, histories)`` after each evaluation with the stacked parameters (read-only); one
    returning ``True`` stops all models. BatchNorm with running statistics is refused (ValueError);
    dropout is allowed but draws different random masks than sequential ``fit``. The trained
    parameters are written back into ``models`` (in place, like ``fit``), which are returned with
    their histories. On CPUs the models go through each step in chunks of ``model_chunk``
    (automatic: as many as keep one activation array near 512 kB, so the working set stays in a 2 MB
    cache), each chunk updated by the optimizer right after its gradient; GPUs take all K at once.
    Losses reach the host every step on CPUs and at evaluations on GPUs (divergence is still caught
    at its exact step, on the device). Each history's ``seconds`` is its share of the ensemble's
    wall time. The shared options are checked before training (``TrainConfig``).
    """
    t0 = time.perf_counter()
    models = check_members(models)
    k = len(models)
    cfg = TrainConfig(steps=steps, epochs=epochs, optimizer=optimizer, lr=lr, momentum=momentum, nesterov=nesterov,
                      weight_decay=weight_decay, betas=betas, eps=eps, schedule=schedule, warmup=warmup,
                      batch_size=batch_size, seed=seed, loss=loss, eval_every=eval_every, stop_when=stop_when,
                      on_divergence=on_divergence, precision=precision, compile=compile, progress=progress,
                      desc=desc)
    lrs, seeds = _per_model(cfg, seeds, k)
    one_of("engine", engine, ENGINES)
    model_chunk = optional(positive_int, "model_chunk", model_chunk, "automatic")
    eval_chunk = optional(positive_int, "eval_chunk", eval_chunk, "automatic")

    params = StackedParams(models)
    dev = params.flat.device
    train, test, items = ensemble_data(data, k, dev)
    run = cfg.resolve(len(train), dev)
    if cfg.loss == "cross_entropy":
        check_cross_entropy_labels(items, output_width(models[0], train.x if train.x_shared else train.x[0]))
    eng = make_engine(engine, copy.deepcopy(models[0]), params, train, run)
    host_style = dev.type == "cpu" and not _ACCELERATOR_STYLE_ON_CPU
    chunk = model_chunk or _automatic_chunk(k, eng, params, train, cfg.batch_size, host_style)
    state = EnsembleState(params, run, lrs, host_style, min(chunk, k) if eng.fills_out else 0)
    records = EnsembleRecords([run.history(lr=lrs[j], seed=seeds[j], engine=eng.name, ensemble_index=j,
                                           ensemble_size=k) for j in range(k)])
    loop = _EnsembleLoop(eng, state, records, run, train, test, ensemble_batches(train, cfg.batch_size, seeds),
                         chunks=[slice(a, min(a + chunk, k)) for a in range(0, k, chunk)],
                         eval_chunk=eval_chunk or max(1, min(8192, 2 ** 24 // (k * params.widest))),
                         callbacks=callbacks)
    try:
        loop.run_steps()
    finally:
        params.write_back(models)
        seconds = time.perf_counter() - t0
        for h in records.histories:
            h.seconds = seconds / k  # its share of the ensemble's wall time
    return EnsembleResult(models=models, histories=records.histories, seconds=seconds, engine=eng.name)


def _per_model(cfg: TrainConfig, seeds: Sequence[int] | None, k: int) -> tuple[list[float], list[int]]:
    """Each model's learning rate and minibatch seed (one value for all, or one per model)."""
    lrs = list(cfg.lr) if isinstance(cfg.lr, tuple) else [cfg.lr] * k
    if len(lrs) != k:
        raise ValueError(f"lr holds {len(lrs)} values but there are {k} models")
    seeds = [cfg.seed] * k if seeds is None else [integer(f"seeds[{i}]", s) for i, s in enumerate(seeds)]
    if len(seeds) != k:
        raise ValueError(f"seeds={seeds!r} must hold {k} integers (one per model)")
    return lrs, seeds


def _automatic_chunk(k: int, engine: Engine, params: StackedParams, train: Split, batch_size: int | None,
                     host_style: bool) -> int:
    """Models per chunk. On CPUs, groups of models whose activations stay in cache run faster than all
    K at once (memory-bound elementwise work), unless that would narrow the shared first-layer GEMM
    (compute-bound work); GPUs take the whole ensemble in one pass."""
    if not host_style:
        return k
    per_model = max(1, batch_size or len(train)) * max(params.widest, 1) * params.flat.element_size()
    chunk = max(1, _mlpstack.CPU_CHUNK_BYTES // per_model)
    if engine.plan is not None and train.x_shared:
        fan_out, fan_in = params.shapes[engine.plan.first_linear().weight]
        if fan_in >= _mlpstack.WIDE_MIN_FAN_IN:
            columns = _mlpstack.WIDE_COLUMNS_PER_THREAD * torch.get_num_threads()
            chunk = max(chunk, -(-columns // fan_out))
    return min(k, chunk)


class EnsembleState:
    """What changes on the device while K models train.

    ``params`` (the flat parameters [K, P]) and ``opt`` (their optimizer state); ``active`` [K]: the
    models still training; ``end_step`` [K]: the first step each did not take (its divergence or
    target; steps + 1 while it trains); ``losses`` [rows, K]: a ring buffer of the losses not yet on
    the host, one row on CPUs (syncing every step is free there), ``eval_every`` rows on GPUs (synced
    at evaluations, no host round trip per step). ``all_active`` is host-side knowledge that no model
    has been frozen yet (CPU only), which lets the update skip its mask.
    """

    def __init__(self, params: StackedParams, run: Resolved, lrs: Sequence[float], host_style: bool,
                 grad_rows: int) -> None:
        k, dev, dtype = params.flat.shape[0], params.flat.device, params.flat.dtype
        self.params = params
        self.opt = StackedOptimizer(run.config, params.flat)
        self.lr = torch.tensor(lrs, dtype=dtype, device=dev)
        self.active = torch.ones(k, dtype=torch.bool, device=dev)
        self.end_step = torch.full((k,), run.steps + 1, dtype=torch.long, device=dev)
        self.all_active = host_style
        self.sync_every_step = host_style
        self.rows = 1 if host_style else run.eval_every
        self.losses = torch.empty(self.rows, k, dtype=dtype, device=dev)
        # One chunk's gradients, reused (an engine that returns fresh gradients needs none).
        self.grad_buf = torch.empty(grad_rows, params.flat.shape[1], dtype=dtype, device=dev) if grad_rows else None

    def step(self, engine: Engine, chunks: Sequence[slice], step: int, batch: Split, factor: float) -> None:
        """Gradients, divergence guard and optimizer update of every model, one chunk at a time."""
        lr_now = self.lr * factor
        for sl in chunks:
            g, losses = engine.grads_and_losses(sl, batch, None if self.grad_buf is None
                                                else self.grad_buf[:sl.stop - sl.start])
            self.losses[(step - 1) % self.rows, sl] = losses
            # On CPUs, while every model is alive and finite, the update needs no mask (checking is
            # free there); GPUs always take the masked update, which needs no host sync.
            if self.all_active and bool(torch.isfinite(losses).all()):
                self.opt.step(sl, g, lr_now[sl], self.active[sl], step, True)
                continue
            self.all_active = False
            finite = torch.isfinite(losses)
            self.end_step[sl] = torch.where(self.active[sl] & ~finite, step, self.end_step[sl])
            self.active[sl] &= finite
            self.opt.step(sl, g, lr_now[sl], self.active[sl], step, False)

    def freeze(self, j: int, step: int) -> None:
        """Model j reached its target at ``step``: no further updates."""
        self.active[j] = False
        self.all_active = False
        self.end_step[j] = step + 1

    def losses_of(self, first: int, last: int) -> list[list[float]]:
        """The losses of steps first..last (still in the ring buffer), one row of K per step."""
        return self.losses[torch.arange(first - 1, last, device=self.losses.device) % self.rows].tolist()


class EnsembleRecords:
    """The host's view of K models: their histories, each one's last finite loss, the step where each
    was frozen (divergence, target, callback) once known, and ``synced``: the last step copied."""

    def __init__(self, histories: list[History]) -> None:
        self.histories = histories
        self.last_finite = [float("nan")] * len(histories)
        self.frozen_at: list[int | None] = [None] * len(histories)
        self.synced = 0

    def sync(self, upto: int, state: EnsembleState) -> None:
        """Copy the losses of steps synced+1..upto to the histories and note new divergences."""
        if upto <= self.synced:
            return
        ends = state.end_step.tolist()
        vals = state.losses_of(self.synced + 1, upto)
        for j, h in enumerate(self.histories):
            for s, row in zip(range(self.synced + 1, upto + 1), vals):
                v = row[j]
                if s >= ends[j]:
                    if self.frozen_at[j] is None and not math.isfinite(v) and s == ends[j]:
                        self.frozen_at[j] = s
                        h.diverged = True
                        h.message = f"loss became {v} at step {s}; last finite loss {self.last_finite[j]:.6g}"
                    break
                h.step.append(s)
                h.loss.append(v)
                self.last_finite[j] = v
        self.synced = upto

    def first_divergence(self) -> str | None:
        for j, h in enumerate(self.histories):
            if h.diverged:
                return f"model {j}: {h.message}"
        return None

    def record_eval(self, step: int, metrics: list[dict[str, float]], stop_when: Mapping[str, float] | None,
                    state: EnsembleState) -> None:
        """Append each training model's metrics; freeze those that meet every ``stop_when`` target."""
        for j, h in enumerate(self.histories):
            if self.frozen_at[j] is not None:
                continue
            h.record_eval(step, metrics[j])
            reached = stop_reached(stop_when, metrics[j])
            if reached:
                self.frozen_at[j] = h.stopped_at = step
                h.message = f"reached {reached} at step {step}"
                state.freeze(j, step)

    def stop_all(self, step: int) -> None:
        """A callback asked to stop: every model still training ends at ``step``."""
        for j, h in enumerate(self.histories):
            if self.frozen_at[j] is None:
                self.frozen_at[j] = h.stopped_at = step
                h.message = f"stopped by a callback at step {step}"

    def all_frozen(self) -> bool:
        return all(f is not None for f in self.frozen_at)


class _EnsembleLoop:
    """The training loop of ``fit_ensemble`` over its parts (engine, device state, host records)."""

    def __init__(self, engine: Engine, state: EnsembleState, records: EnsembleRecords, run: Resolved, train: Split,
                 test: Split, batches: Iterator[Split], *, chunks: list[slice], eval_chunk: int,
                 callbacks: Sequence[Callable]) -> None:
        self.engine, self.state, self.records, self.run = engine, state, records, run
        self.splits = {"train": train, "test": test}
        self.batches, self.chunks, self.eval_chunk, self.callbacks = batches, chunks, eval_chunk, callbacks
        self.k = len(records.histories)

    def run_steps(self) -> None:
        """Steps 1..steps: update, sync the losses, evaluate; until the end or every model stops."""
        run, cfg, state = self.run, self.run.config, self.state
        bar = run.progress_bar()
        last_bar = time.perf_counter()
        try:
            with _device.matmul_precision(run.precision, state.params.flat.device):
                self.engine.set_training(True)
                for step in range(1, run.steps + 1):
                    state.step(self.engine, self.chunks, step, next(self.batches), run.factors[step - 1])
                    is_eval = run.is_eval(step)
                    if state.sync_every_step or is_eval:
                        self.records.sync(step, state)
                        msg = self.records.first_divergence()
                        if msg and cfg.on_divergence == "raise":
                            raise DivergenceError(msg)
                    stop = is_eval and self._evaluate_and_decide(step)
                    now = time.perf_counter()
                    if cfg.progress and (now - last_bar > 0.5 or step == run.steps):
                        self._show_progress(bar, step)
                        last_bar = now
                    if stop:
                        break
        finally:
            bar.close()

    def _evaluate_and_decide(self, step: int) -> bool:
        """Record the metrics, apply ``stop_when`` and the callbacks; True: every model is done."""
        self.records.record_eval(step, self._metrics(), self.run.config.stop_when, self.state)
        stop = [cb(step, self.state.params.as_dict(), self.records.histories) for cb in self.callbacks]
        if any(s is True for s in stop):
            self.records.stop_all(step)
        return self.records.all_frozen()

    @torch.no_grad()
    def _metrics(self) -> list[dict[str, float]]:
        """Per model: mean loss and (integer labels) accuracy on each non-empty split, in eval mode."""
        res: list[dict[str, float]] = [{} for _ in range(self.k)]
        self.engine.set_training(False)
        try:
            for name, split in self.splits.items():
                if len(split):
                    self._split_metrics(name, split, res)
        finally:
            self.engine.set_training(True)
        return res

    def _split_metrics(self, name: str, split: Split, res: list[dict[str, float]]) -> None:
        m, dev = len(split), self.state.params.flat.device
        classes = not torch.is_floating_point(split.y)
        tot = torch.zeros(self.k, dtype=torch.float64, device=dev)
        hit = torch.zeros(self.k, dtype=torch.float64, device=dev)
        for i in range(0, m, self.eval_chunk):
            part = split.samples(i, i + self.eval_chunk)
            for sl in self.chunks:  # chunk by chunk: the outputs may live in a reused buffer
                b = part.rows(sl)
                with _device.autocast(self.run.precision, dev):
                    out = self.engine.outputs(sl, b.x, b.x_shared)
                    tot[sl] += _mlpstack.batched_loss(self.run.config.loss, self.run.loss_fn, out, b.y,
                                                      b.y_shared).double() * len(part)
                if classes:
                    hit[sl] += (out.argmax(-1) == b.y).sum(-1).double()
        for j, v in enumerate((tot / m).tolist()):
            res[j][f"{name}_loss"] = v
        if classes:
            for j, a in enumerate((hit / m).tolist()):
                res[j][f"{name}_acc"] = a

    def _show_progress(self, bar, step: int) -> None:
        """The median live loss and how many models still train."""
        alive = [v for v in self.state.losses_of(step, step)[0] if math.isfinite(v)]
        bar.set_postfix(loss=f"{sorted(alive)[len(alive) // 2]:.4g}" if alive else "nan",
                        alive=f"{len(alive)}/{self.k}", refresh=False)
        bar.update(step - bar.n)
