"""``fit``: one model, one ``torch.optim`` optimizer, the loop written out step by step."""

from __future__ import annotations

import math
import time
from itertools import repeat
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from .. import device as _device
from ..data import Data
from ..validate import positive
from .checks import as_data, check_labels, output_width
from .config import Resolved, TrainConfig, loss_fn, minibatch_indices, stop_reached
from .history import DivergenceError, History


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Callable = "cross_entropy",
             chunk: int = 8192) -> dict[str, float]:
    """Mean loss and, for integer targets, accuracy of ``model`` on ``(x, y)`` in its current mode.

    loss = (1/n) sum_chunks |chunk| * L(chunk) with the module's loss convention; accuracy =
    (1/n) #{i : argmax_c f(x_i)_c = y_i}.
    """
    lf = loss_fn(loss)
    total, correct, n = 0.0, 0, len(x)
    for i in range(0, n, chunk):
        out = model(x[i:i + chunk])
        total += float(lf(out, y[i:i + chunk])) * len(out)
        if not torch.is_floating_point(y):
            correct += int((out.argmax(-1) == y[i:i + chunk]).sum())
    res = {"loss": total / max(n, 1)}
    if not torch.is_floating_point(y):
        res["acc"] = correct / max(n, 1)
    return res


def fit(model: nn.Module, data: Data | tuple, *, steps: int | None = None, lr: float = 0.1,
        optimizer: str = "sgd", momentum: float = 0.0, weight_decay: float = 0.0,
        batch_size: int | None = None, loss: str | Callable = "cross_entropy",
        eval_every: int | None = None, seed: int = 0, progress: bool = True,
        on_divergence: str = "raise", callbacks: Sequence[Callable[[int, nn.Module, History], Any]] = (),
        desc: str = "fit", epochs: int | None = None, schedule: str | Callable[[int, int], float] = "constant",
        warmup: int = 0, nesterov: bool = False, betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8, stop_when: Mapping[str, float] | None = None, precision: str = "auto",
        compile: bool | str = False) -> History:
    """Train ``model`` in place on ``data`` and return its ``History``.

    Minimizes the mean loss L(theta) (module conventions above) with ``optimizer`` for ``steps``
    updates (default 1000) or ``epochs`` passes, learning rate eta_t = lr * s(t) (``schedule``,
    ``warmup``). The data are moved once to the model's device; the model stays where it is.
    Every ``eval_every`` steps (default steps // 50) and at the last step, the train and test loss and
    accuracy are recorded in eval mode; the model's original train/eval mode is restored at the end.
    ``callbacks`` are called as ``cb(step, model, history)`` after each evaluation; one returning
    ``True`` stops training. ``stop_when={"train_acc": 1.0}`` stops at the first evaluation meeting
    every target (losses: <=, accuracies: >=) and sets ``history.stopped_at``.
    ``precision``: ``"auto"`` (TF32 on CUDA, float32 elsewhere), ``"fp32"``, ``"tf32"``, ``"bf16"``
    (autocast); ``compile``: opt-in ``torch.compile`` of the forward pass (see ``device``).
    The progress bar (tqdm.auto: a widget in Jupyter, text elsewhere) shows the live loss;
    ``progress=False`` or the environment variable ``TQDM_DISABLE=1`` silences it.
    A NaN/inf loss raises ``DivergenceError`` naming the step and the last finite loss, or with
    ``on_divergence="record"`` returns the history with ``diverged=True``.
    Every option is checked before training (``TrainConfig``).
    """
    cfg = TrainConfig(steps=steps, epochs=epochs, optimizer=optimizer, lr=positive("lr", lr), momentum=momentum,
                      nesterov=nesterov, weight_decay=weight_decay, betas=betas, eps=eps, schedule=schedule,
                      warmup=warmup, batch_size=batch_size, seed=seed, loss=loss, eval_every=eval_every,
                      stop_when=stop_when, on_divergence=on_divergence, precision=precision, compile=compile,
                      progress=progress, desc=desc)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    dev = params[0].device
    data = as_data(data).to(dev)
    run = cfg.resolve(len(data.x_train), dev)
    if cfg.loss == "cross_entropy":
        check_labels(data.y_train, data.num_classes, output_width(model, data.x_train), "y_train")
        check_labels(data.y_test, data.num_classes, None, "y_test")
    hist = run.history(lr=cfg.lr, seed=cfg.seed)
    was_training = model.training
    t0 = time.perf_counter()
    try:
        _train(model, _make_optimizer(params, cfg), data, run, hist, callbacks)
    finally:
        model.train(was_training)
        hist.seconds = time.perf_counter() - t0
    return hist


def _make_optimizer(params: list[torch.Tensor], c: TrainConfig) -> torch.optim.Optimizer:
    if c.optimizer == "sgd":
        return torch.optim.SGD(params, lr=c.lr, momentum=c.momentum, nesterov=c.nesterov, weight_decay=c.weight_decay)
    cls = torch.optim.Adam if c.optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=c.lr, betas=c.betas, eps=c.eps, weight_decay=c.weight_decay)


def _train(model: nn.Module, opt: torch.optim.Optimizer, data: Data, run: Resolved, hist: History,
           callbacks: Sequence[Callable]) -> None:
    """The loop: a minibatch, one update (unless its loss is NaN/inf), and every ``eval_every`` steps
    an evaluation, the callbacks and the stopping rule."""
    cfg, dev = run.config, data.x_train.device
    fwd = torch.compile(model, backend=run.backend) if run.backend else model
    batches = _batches(data.x_train, data.y_train, cfg.batch_size, cfg.seed)
    last_finite = float("nan")
    bar = run.progress_bar()
    try:
        with _device.matmul_precision(run.precision, dev):
            model.train()
            for step in range(1, run.steps + 1):
                xb, yb = next(batches)
                value = _step(fwd, opt, run, xb, yb, cfg.lr * run.factors[step - 1])
                if not math.isfinite(value):
                    hist.diverged = True
                    hist.message = f"loss became {value} at step {step}; last finite loss {last_finite:.6g}"
                    if cfg.on_divergence == "raise":
                        raise DivergenceError(hist.message)
                    break
                last_finite = value
                hist.step.append(step)
                hist.loss.append(value)
                if run.is_eval(step) and _evaluate_and_decide(model, fwd, data, run, hist, step, callbacks):
                    break
                if step % 10 == 0 or step == run.steps:
                    bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                    bar.update(step - bar.n)
    finally:
        bar.close()


def _batches(x: torch.Tensor, y: torch.Tensor, batch_size: int | None, seed: int) -> Iterator[tuple]:
    """(inputs, targets) of each step: the whole set, or minibatches in a seeded random order."""
    if batch_size is None:
        return repeat((x, y))
    g = torch.Generator(device=x.device).manual_seed(seed)
    n = len(x)
    return ((x[idx], y[idx]) for idx in
            minibatch_indices(n, batch_size, lambda: torch.randperm(n, generator=g, device=x.device)))


def _step(fwd: Callable, opt: torch.optim.Optimizer, run: Resolved, xb: torch.Tensor, yb: torch.Tensor,
          lr: float) -> float:
    """The minibatch loss, and one optimizer update with learning rate ``lr`` unless it is NaN/inf."""
    opt.zero_grad(set_to_none=True)
    with _device.autocast(run.precision, xb.device):
        out = run.loss_fn(fwd(xb), yb)
    value = float(out.detach())
    if math.isfinite(value):
        out.backward()
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
    return value


def _evaluate_and_decide(model: nn.Module, fwd: Callable, data: Data, run: Resolved, hist: History, step: int,
                         callbacks: Sequence[Callable]) -> bool:
    """Record the metrics in eval mode, call the callbacks (still in eval mode); True: stop training."""
    model.eval()
    with _device.autocast(run.precision, data.x_train.device):
        metrics = {f"train_{k}": v for k, v in evaluate(fwd, data.x_train, data.y_train, run.loss_fn).items()}
        if len(data.x_test):
            metrics.update({f"test_{k}": v for k, v in evaluate(fwd, data.x_test, data.y_test, run.loss_fn).items()})
    hist.record_eval(step, metrics)
    stop = [cb(step, model, hist) for cb in callbacks]
    model.train()
    reached = stop_reached(run.config.stop_when, metrics)
    if reached:
        hist.stopped_at = step
        hist.message = f"reached {reached} at step {step}"
    elif any(s is True for s in stop):
        hist.stopped_at = step
        hist.message = f"stopped by a callback at step {step}"
    return hist.stopped_at is not None
