"""Training: ``fit`` for one model, ``fit_ensemble`` for K same-shaped models at once, ``fit_sweep``.

Conventions, stated once for the whole module:

- The training loss is the *mean* over the samples of a batch: cross-entropy
  L(theta) = -(1/B) sum_i log softmax(f_theta(x_i))_{y_i}, or squared error
  L(theta) = (1/B) sum_i ||f_theta(x_i) - y_i||^2 / d_out (``F.mse_loss``). A callable ``loss(out, y)``
  must return that mean itself.
- A *step* is one parameter update; steps are counted from 1. Full batch by default; with
  ``batch_size`` each epoch visits a fresh random permutation of the training set, drawn on the data's
  device with a generator seeded by ``seed`` (no DataLoader), and the last ``n mod batch_size``
  samples of each permutation are skipped, so an epoch is ``n // batch_size`` steps.
- The learning rate of update t = 0, 1, ..., T-1 is eta_t = lr * s(t) with the schedule s
  (``schedule_factors``).
- Optimizers follow ``torch.optim`` exactly: SGD (Robbins & Monro 1951) with heavy-ball momentum
  v <- mu v + g, theta <- theta - eta v (Polyak 1964; Nesterov's variant theta <- theta - eta (g + mu v));
  Adam (Kingma & Ba 2015) and AdamW with decoupled weight decay (Loshchilov & Hutter 2019).
  ``weight_decay`` adds wd * theta to the gradient (SGD, Adam) or multiplies theta by 1 - eta wd (AdamW).
- Divergence guard: a NaN or inf training loss at step s stops that model before its update, so its
  parameters are those that produced the bad loss and its history ends at step s - 1.

``fit_ensemble`` trains K models of one architecture with their parameters stacked along a new
leading axis, so one batched forward and backward pass replaces K small ones (the "model
ensembling" pattern of torch.func, after JAX's vmap; Bradbury et al. 2018). Each model keeps its
own optimizer state, minibatch seed, learning rate, data and divergence guard, and the results equal
K sequential ``fit`` runs up to float rounding.
"""

from __future__ import annotations

import copy
import json
import math
import numbers
import time
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from . import _mlpstack
from . import device as _device
from .data import Data

LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw")
ON_DIVERGENCE = ("raise", "record")
SCHEDULES = ("constant", "cosine", "linear")
ENGINES = ("auto", "func", "bmm")


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class History:
    """What happened during ``fit``: per-step losses and per-evaluation metrics.

    ``eval`` maps a metric name (``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``) to its
    values at the steps in ``eval_step``. ``stopped_at`` is the step where a ``stop_when`` target was
    met (None otherwise). Serializable with ``to_dict``/``save`` (plain JSON).
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval: dict[str, list[float]] = field(default_factory=dict)
    diverged: bool = False
    message: str = ""
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)
    stopped_at: int | None = None

    def final(self, metric: str) -> float:
        """The last recorded value of an evaluation metric (e.g. ``"test_acc"``)."""
        if metric not in self.eval or not self.eval[metric]:
            raise KeyError(f"metric {metric!r} was not recorded; recorded: {sorted(self.eval)}")
        return self.eval[metric][-1]

    def first_step_reaching(self, metric: str, threshold: float) -> int | None:
        """First evaluation step where ``metric >= threshold`` (None if never)."""
        for s, v in zip(self.eval_step, self.eval.get(metric, [])):
            if v >= threshold:
                return s
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "History":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        """Write the history as JSON (atomically: a reader never sees half a file)."""
        from .checkpoint import atomic_write_bytes

        atomic_write_bytes(path, json.dumps(self.to_dict()).encode())

    @classmethod
    def load(cls, path: str | Path) -> "History":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, metrics: tuple[str, ...] = ("train_acc", "test_acc"), title: str = ""):
        """A plotly figure of the chosen evaluation metrics over steps."""
        from . import plots

        return plots.curves({m: (self.eval_step, self.eval[m]) for m in metrics if m in self.eval},
                            title=title, yaxis=", ".join(metrics))


@dataclass(frozen=True)
class EnsembleResult:
    """K trained models (ordinary ``nn.Module``s) and their histories, in input order."""

    models: list[nn.Module]
    histories: list[History]
    seconds: float
    engine: str

    def __len__(self) -> int:
        return len(self.models)


@dataclass(frozen=True)
class SweepResult:
    """``fit_sweep`` output: per configuration (input order) its model and history.

    ``groups`` lists, for each ensemble that was run, the indices of the configurations it trained.
    """

    configs: list[dict[str, Any]]
    models: list[nn.Module]
    histories: list[History]
    groups: list[list[int]]
    seconds: float


# --------------------------------------------------------------------------------------------------
# shared pieces: losses, schedules, validation


def _loss_fn(loss: str | Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return F.cross_entropy
    if loss == "mse":
        return _mse
    raise ValueError(f"loss={loss!r} is unknown; allowed: {', '.join(map(repr, LOSSES))} or a callable")


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out.reshape(y.shape), y)


def _loss_name(loss: str | Callable) -> str:
    return loss if isinstance(loss, str) else getattr(loss, "__name__", "callable")


def schedule_factors(steps: int, schedule: str | Callable[[int, int], float] = "constant",
                     warmup: int = 0) -> list[float]:
    """Learning-rate multipliers s(t) for the updates t = 0, ..., steps - 1 (eta_t = lr * s(t)).

    ``"constant"``: s = 1. ``"cosine"``: s(t) = (1 + cos(pi t / T)) / 2 (Loshchilov & Hutter 2017,
    without restarts). ``"linear"``: s(t) = 1 - t / T. A callable ``schedule(t, T)`` gives s(t)
    directly. ``warmup`` = w > 0 multiplies by min(1, (t + 1) / w) (Goyal et al. 2017).
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup={warmup!r} must be a non-negative integer")
    if callable(schedule):
        base = [float(schedule(t, steps)) for t in range(steps)]
    elif schedule == "constant":
        base = [1.0] * steps
    elif schedule == "cosine":
        base = [0.5 * (1.0 + math.cos(math.pi * t / steps)) for t in range(steps)]
    elif schedule == "linear":
        base = [1.0 - t / steps for t in range(steps)]
    else:
        raise ValueError(f"schedule={schedule!r} is unknown; allowed: {', '.join(map(repr, SCHEDULES))} "
                         "or a callable (t, T) -> factor")
    if warmup:
        base = [b * min(1.0, (t + 1) / warmup) for t, b in enumerate(base)]
    bad = [b for b in base if not (math.isfinite(b) and b >= 0)]
    if bad:
        raise ValueError(f"schedule gave the factor {bad[0]!r}; factors must be finite and >= 0")
    return base


def _as_data(data: Data | tuple) -> Data:
    if isinstance(data, Data):
        return data
    if isinstance(data, tuple) and len(data) == 2 and all(isinstance(t, torch.Tensor) for t in data):
        x, y = data
        return Data(x, y, x[:0], y[:0])
    raise TypeError("data must be a tdlcourse.data.Data or an (inputs, targets) tuple of tensors")


def _check_labels(y: torch.Tensor, num_classes: int | None, d_out: int | None, where: str) -> None:
    """Integer labels must index a class: 0 <= y < num_classes (and < the model's output width)."""
    if torch.is_floating_point(y) or len(y) == 0:
        return
    hi = min(c for c in (num_classes, d_out) if c is not None) if (num_classes or d_out) else None
    lo_v, hi_v = int(y.min()), int(y.max())
    if lo_v < 0 or (hi is not None and hi_v >= hi):
        bad = lo_v if lo_v < 0 else hi_v
        raise ValueError(f"{where} holds the label {bad}; labels must lie in [0, {hi - 1 if hi else 'C-1'}]"
                         + (f" (num_classes={num_classes})" if num_classes else "")
                         + (f" (the model has {d_out} outputs)" if d_out else ""))


def _check_options(*, lr_values: Sequence[float], optimizer: str, momentum: float, weight_decay: float,
                   on_divergence: str, betas: tuple[float, float], eps: float,
                   stop_when: Mapping[str, float] | None) -> None:
    for v in lr_values:
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (v > 0 and math.isfinite(v)):
            raise ValueError(f"lr={v!r} must be a positive finite number")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is unknown; allowed: {', '.join(map(repr, OPTIMIZERS))}")
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"momentum={momentum!r} must lie in [0, 1)")
    if momentum and optimizer != "sgd":
        raise ValueError(f"momentum={momentum!r} applies to optimizer='sgd' only; use betas for Adam")
    if not (weight_decay >= 0 and math.isfinite(weight_decay)):
        raise ValueError(f"weight_decay={weight_decay!r} must be a finite number >= 0")
    if on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"on_divergence={on_divergence!r}; allowed: {', '.join(map(repr, ON_DIVERGENCE))}")
    if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
        raise ValueError(f"betas={betas!r} must be two numbers in [0, 1)")
    if not eps > 0:
        raise ValueError(f"eps={eps!r} must be > 0")
    for k in stop_when or {}:
        if k not in ("train_loss", "train_acc", "test_loss", "test_acc"):
            raise ValueError(f"stop_when key {k!r} is unknown; allowed: 'train_loss', 'train_acc', "
                             "'test_loss', 'test_acc'")


def _resolve_steps(steps: int | None, epochs: int | None, n: int, batch_size: int | None) -> int:
    if steps is not None and epochs is not None:
        raise ValueError(f"give steps={steps!r} or epochs={epochs!r}, not both")
    if epochs is not None:
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ValueError(f"epochs={epochs!r} must be a positive integer")
        return epochs * (1 if batch_size is None else n // batch_size)
    steps = 1000 if steps is None else steps
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    return steps


def _check_batch_size(batch_size: int | None, n: int) -> None:
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, int)
                                   or not 1 <= batch_size <= n):
        raise ValueError(f"batch_size={batch_size!r} must be an integer in [1, {n}] or None (full batch)")


def _stop_reached(stop_when: Mapping[str, float] | None, metrics: Mapping[str, float]) -> str | None:
    """The stop message when every target is met (losses: value <= target; accuracies: >=)."""
    if not stop_when or any(k not in metrics for k in stop_when):
        return None
    ok = all(metrics[k] <= v if k.endswith("loss") else metrics[k] >= v for k, v in stop_when.items())
    return ", ".join(f"{k} {'<=' if k.endswith('loss') else '>='} {v:g}" for k, v in stop_when.items()) if ok else None


# --------------------------------------------------------------------------------------------------
# fit: one model


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Callable = "cross_entropy",
             chunk: int = 8192) -> dict[str, float]:
    """Mean loss and, for integer targets, accuracy of ``model`` on ``(x, y)`` in its current mode.

    loss = (1/n) sum_chunks |chunk| * L(chunk) with the module's loss convention; accuracy =
    (1/n) #{i : argmax_c f(x_i)_c = y_i}.
    """
    lf = _loss_fn(loss)
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


def _make_optimizer(params: list[torch.Tensor], optimizer: str, lr: float, momentum: float,
                    nesterov: bool, weight_decay: float, betas: tuple[float, float], eps: float):
    if optimizer == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    cls = torch.optim.Adam if optimizer == "adam" else torch.optim.AdamW
    return cls(params, lr=lr, betas=betas, eps=eps, weight_decay=weight_decay)


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
    """
    _check_options(lr_values=[lr], optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                   on_divergence=on_divergence, betas=betas, eps=eps, stop_when=stop_when)
    lr = float(lr)
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    dev = params[0].device
    data = _as_data(data).to(dev)
    n = len(data.x_train)
    _check_batch_size(batch_size, n)
    steps = _resolve_steps(steps, epochs, n, batch_size)
    factors = schedule_factors(steps, schedule, warmup)
    backend = _device.compile_backend(compile)
    resolved_precision = _device.resolve_precision(precision, dev)
    lf = _loss_fn(loss)
    if loss == "cross_entropy":
        _check_labels(data.y_train, data.num_classes, _output_width(model, data.x_train), "y_train")
        _check_labels(data.y_test, data.num_classes, None, "y_test")
    eval_every = eval_every or max(1, steps // 50)

    opt = _make_optimizer(params, optimizer, lr, momentum, nesterov, weight_decay, betas, eps)
    fwd = torch.compile(model, backend=backend) if backend else model
    g = torch.Generator(device=dev).manual_seed(seed)
    hist = History(config={"steps": steps, "lr": lr, "optimizer": optimizer, "momentum": momentum,
                           "nesterov": nesterov, "betas": list(betas), "eps": eps,
                           "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed,
                           "loss": _loss_name(loss), "schedule": _loss_name(schedule), "warmup": warmup,
                           "precision": resolved_precision, "compile": backend, "epochs": epochs})
    was_training = model.training
    perm, pos = None, n
    last_finite = float("nan")
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False, mininterval=0.5)
    try:
        with _device.matmul_precision(resolved_precision, dev):
            model.train()
            for step in range(1, steps + 1):
                if batch_size is None:
                    xb, yb = data.x_train, data.y_train
                else:
                    if pos + batch_size > n:
                        perm, pos = torch.randperm(n, generator=g, device=dev), 0
                    idx = perm[pos:pos + batch_size]
                    pos += batch_size
                    xb, yb = data.x_train[idx], data.y_train[idx]
                opt.zero_grad(set_to_none=True)
                with _device.autocast(resolved_precision, dev):
                    out = lf(fwd(xb), yb)
                value = float(out.detach())
                if not math.isfinite(value):
                    hist.diverged = True
                    hist.message = f"loss became {value} at step {step}; last finite loss {last_finite:.6g}"
                    if on_divergence == "raise":
                        raise DivergenceError(hist.message)
                    break
                last_finite = value
                out.backward()
                for group in opt.param_groups:
                    group["lr"] = lr * factors[step - 1]
                opt.step()
                hist.step.append(step)
                hist.loss.append(value)
                if step % eval_every == 0 or step == steps:
                    model.eval()
                    with _device.autocast(resolved_precision, dev):
                        metrics = {f"train_{k}": v for k, v in evaluate(fwd, data.x_train, data.y_train, lf).items()}
                        if len(data.x_test):
                            metrics.update({f"test_{k}": v
                                            for k, v in evaluate(fwd, data.x_test, data.y_test, lf).items()})
                    hist.eval_step.append(step)
                    for k, v in metrics.items():
                        hist.eval.setdefault(k, []).append(v)
                    stop = [cb(step, model, hist) for cb in callbacks]  # still in eval mode
                    model.train()
                    reached = _stop_reached(stop_when, metrics)
                    if reached:
                        hist.stopped_at = step
                        hist.message = f"reached {reached} at step {step}"
                    elif any(s is True for s in stop):
                        hist.stopped_at = step
                        hist.message = f"stopped by a callback at step {step}"
                    if hist.stopped_at is not None:
                        break
                if step % 10 == 0 or step == steps:
                    bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                    bar.update(step - bar.n)
    finally:
        bar.close()
        model.train(was_training)
        hist.seconds = time.perf_counter() - t0
    return hist


@torch.no_grad()
def _output_width(model: nn.Module, x: torch.Tensor) -> int | None:
    """Number of outputs of ``model`` (two samples, eval mode, mode restored); None if unknown."""
    was = model.training
    try:
        model.eval()
        out = model(x[:2])
    except Exception:  # noqa: BLE001 - e.g. batch statistics of one sample; the loss will tell
        return None
    finally:
        model.train(was)
    return int(out.shape[-1]) if out.dim() >= 2 else None


# --------------------------------------------------------------------------------------------------
# fit_ensemble: K same-shaped models at once


def _signature(model: nn.Module) -> list[tuple[str, str, str]]:
    """What must agree between ensemble members: module types/options, parameter and buffer shapes."""
    sig = [("parameter", name, f"shape {tuple(p.shape)}, {p.dtype}, {p.device}, requires_grad={p.requires_grad}")
           for name, p in model.named_parameters()]
    sig += [("module", name, f"{type(m).__name__}({m.extra_repr()})") for name, m in model.named_modules()]
    sig += [("buffer", name, f"shape {tuple(b.shape)}, {b.dtype}, {b.device}") for name, b in model.named_buffers()]
    return sig


def _first_difference(ref: list[tuple[str, str, str]], sig: list[tuple[str, str, str]], k: int) -> str | None:
    """Describe the first entry (parameters first, then modules, then buffers) where two signatures differ."""
    for kind in ("parameter", "module", "buffer"):
        a = [e for e in ref if e[0] == kind]
        b = [e for e in sig if e[0] == kind]
        for ea, eb in zip(a, b):
            if ea[1] != eb[1]:
                return f"{kind} {eb[1]!r} (models[0] has {ea[1]!r} there)"
            if ea[2] != eb[2]:
                return f"{kind} {eb[1]!r}: {eb[2]} vs {ea[2]}"
        if len(a) != len(b):
            extra, who = (b[len(a)], f"models[{k}]") if len(b) > len(a) else (a[len(b)], "models[0]")
            return f"{kind} {extra[1]!r} ({extra[2]}), which only {who} has"
    return None


def _check_same_architecture(models: Sequence[nn.Module]) -> None:
    ref = _signature(models[0])
    for k, m in enumerate(models[1:], start=1):
        diff = _first_difference(ref, _signature(m), k)
        if diff:
            raise ValueError(f"models[{k}] differs from models[0] at {diff}; fit_ensemble needs one architecture "
                             "(fit_sweep groups models by architecture)")


def _refuse_running_stats(model: nn.Module) -> None:
    for name, m in model.named_modules():
        if isinstance(m, nn.modules.batchnorm._NormBase) and m.track_running_stats:
            raise ValueError(
                f"module {name!r} ({type(m).__name__}) keeps running statistics, which fit_ensemble does not "
                "support; build it with track_running_stats=False (batch statistics in both modes), use "
                "LayerNorm, or train these models one at a time with fit")


class _Optimizer:
    """SGD (momentum, Nesterov) / Adam / AdamW on K models' flat parameters [K, P], as in torch.optim.

    ``step`` updates a block of rows (a chunk of models, right after its gradient is computed, while
    it is in cache) with learning rates ``lr`` [rows] and step count ``t``; ``active`` [rows] freezes
    the models whose loss diverged or that reached their target (their update is discarded, NaNs
    included). ``all_active`` (known on the host) skips that masking.
    """

    def __init__(self, kind: str, momentum: float, nesterov: bool, weight_decay: float,
                 betas: tuple[float, float], eps: float, flat: torch.Tensor) -> None:
        self.kind, self.momentum, self.nesterov, self.wd = kind, momentum, nesterov, weight_decay
        self.betas, self.eps = betas, float(eps)
        self.flat = flat
        self.state: list[torch.Tensor] = []
        if kind != "sgd":
            self.state = [torch.zeros_like(flat), torch.zeros_like(flat)]
        elif momentum:
            self.state = [torch.zeros_like(flat)]

    @torch.no_grad()
    def step(self, rows: slice, g: torch.Tensor, lr: torch.Tensor, active: torch.Tensor, t: int,
             all_active: bool) -> None:
        """One update of ``flat[rows]`` with gradient ``g`` (overwritten: it is scratch)."""
        p = self.flat[rows]
        lr = lr.unsqueeze(1)
        if self.kind == "sgd":
            if self.wd:
                g = g.add_(p, alpha=self.wd)
            if self.momentum:
                buf = self.state[0][rows]
                if t == 1:  # torch.optim: the first buffer is the gradient itself
                    buf.copy_(g)
                else:
                    buf.mul_(self.momentum).add_(g)
                g = g.add_(buf, alpha=self.momentum) if self.nesterov else buf
            if all_active:
                p.addcmul_(g, lr, value=-1)  # p - lr g in one pass
                return
            upd, keep = lr * g, None
        else:
            b1, b2 = self.betas
            if self.wd and self.kind == "adam":
                g = g.add_(p, alpha=self.wd)
            m, v = self.state[0][rows], self.state[1][rows]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = lr / (1 - b1 ** t)
            denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(self.eps)
            upd = step_size * (m / denom)
            keep = 1 - lr * self.wd if self.wd and self.kind == "adamw" else None  # decoupled decay
        if all_active:
            (p if keep is None else p.mul_(keep)).sub_(upd)
        else:
            new = (p if keep is None else p * keep) - upd
            p.copy_(torch.where(active.unsqueeze(1), new, p))


@dataclass
class _Split:
    """One split (train or test) of K models' data: shared tensors [n, ...] or stacked [K, n, ...]."""

    x: torch.Tensor
    y: torch.Tensor
    x_shared: bool
    y_shared: bool

    def __len__(self) -> int:
        return self.x.shape[0 if self.x_shared else 1]


def _same_tensor(ts: Sequence[torch.Tensor]) -> bool:
    t0 = ts[0]
    return all(t is t0 or (t.shape == t0.shape and t.dtype == t0.dtype and t.device == t0.device
                           and t.stride() == t0.stride() and t.data_ptr() == t0.data_ptr()) for t in ts)


def _ensemble_data(data: Data | tuple | Sequence[Data], k: int, dev: torch.device) -> tuple[_Split, _Split, list[Data]]:
    if isinstance(data, (Data, tuple)):
        d = _as_data(data)
        items = [d] * k
    else:
        items = [_as_data(d) for d in data]
        if len(items) != k:
            raise ValueError(f"data holds {len(items)} datasets but there are {k} models; give one Data "
                             "(shared) or one per model")
    ref = items[0]
    for j, d in enumerate(items[1:], start=1):
        for f in ("x_train", "y_train", "x_test", "y_test"):
            a, b = getattr(ref, f), getattr(d, f)
            if a.shape != b.shape or a.dtype != b.dtype:
                raise ValueError(f"data[{j}].{f} has shape {tuple(b.shape)} ({b.dtype}) but data[0].{f} has "
                                 f"{tuple(a.shape)} ({a.dtype}); ensemble members need same-shaped data")
    splits = []
    for s in ("train", "test"):
        xs = [getattr(d, f"x_{s}") for d in items]
        ys = [getattr(d, f"y_{s}") for d in items]
        xsh, ysh = _same_tensor(xs), _same_tensor(ys)
        x = xs[0].to(dev) if xsh else torch.stack(xs).to(dev)
        y = ys[0].to(dev) if ysh else torch.stack(ys).to(dev)
        splits.append(_Split(x, y, xsh, ysh))
    return splits[0], splits[1], items


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
    wall time.
    """
    t0 = time.perf_counter()
    models = list(models)
    if not models:
        raise ValueError("models is empty; give at least one nn.Module")
    if not all(isinstance(m, nn.Module) for m in models):
        raise TypeError("models must be a sequence of nn.Module")
    k = len(models)
    _check_same_architecture(models)
    _refuse_running_stats(models[0])
    lrs = [lr] * k if isinstance(lr, numbers.Real) else list(lr)
    if len(lrs) != k:
        raise ValueError(f"lr holds {len(lrs)} values but there are {k} models")
    _check_options(lr_values=lrs, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                   on_divergence=on_divergence, betas=betas, eps=eps, stop_when=stop_when)
    lrs = [float(v) for v in lrs]
    seeds = [seed] * k if seeds is None else list(seeds)
    if len(seeds) != k or any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
        raise ValueError(f"seeds={seeds!r} must hold {k} integers (one per model)")
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is unknown; allowed: {', '.join(map(repr, ENGINES))}")
    names = [n for n, p in models[0].named_parameters() if p.requires_grad]
    if not names:
        raise ValueError("model has no trainable parameters")
    dev = next(p for p in models[0].parameters()).device
    train, test, items = _ensemble_data(data, k, dev)
    n = len(train)
    _check_batch_size(batch_size, n)
    steps = _resolve_steps(steps, epochs, n, batch_size)
    factors = schedule_factors(steps, schedule, warmup)
    backend = _device.compile_backend(compile)
    resolved_precision = _device.resolve_precision(precision, dev)
    lf = _loss_fn(loss)
    if loss == "cross_entropy":
        width = _output_width(models[0], train.x if train.x_shared else train.x[0])
        first: dict[int, tuple[int, Data]] = {}
        for j, d in enumerate(items):
            first.setdefault(id(d), (j, d))
        unique = list(first.values())
        for j, d in unique:
            where = "" if len(unique) == 1 else f"data[{j}]."
            _check_labels(d.y_train, d.num_classes, width, f"{where}y_train")
            _check_labels(d.y_test, d.num_classes, None, f"{where}y_test")
    eval_every = eval_every or max(1, steps // 50)

    # The trainable parameters of all K models live in one flat tensor [K, P] (one optimizer update per
    # step for everything); per-layer tensors are views of it. The models are written back at the end.
    template = copy.deepcopy(models[0])
    shapes = [tuple(models[0].get_parameter(n_).shape) for n_ in names]
    dtypes = {models[0].get_parameter(n_).dtype for n_ in names}
    if len(dtypes) > 1:
        raise ValueError(f"the trainable parameters mix dtypes {sorted(map(str, dtypes))}; fit_ensemble needs one dtype")
    offsets = [0]
    for shp in shapes:
        offsets.append(offsets[-1] + math.prod(shp))
    flat = torch.stack([torch.cat([m.get_parameter(n_).detach().reshape(-1) for n_ in names]) for m in models])

    def unflatten(f: torch.Tensor) -> list[torch.Tensor]:
        lead = f.shape[:-1]
        return [f[..., a:b].view(*lead, *shp) for a, b, shp in zip(offsets[:-1], offsets[1:], shapes)]

    widest = max([shp[0] for shp in shapes if len(shp) > 1] or [1])
    rest = {n_: torch.stack([m.get_parameter(n_).detach() for m in models])
            for n_, p in models[0].named_parameters() if not p.requires_grad}
    rest.update({n_: torch.stack([m.get_buffer(n_).detach() for m in models]) for n_, _ in models[0].named_buffers()})
    plan = _mlpstack.plan(template, names, train.x.dim() - (0 if train.x_shared else 1)) if engine != "func" else None
    if engine == "bmm" and plan is None:
        raise ValueError("engine='bmm' needs a plain MLP (nn.Sequential of Linear, elementwise activations and an "
                         "optional leading Flatten, all parameters trainable, 2-D inputs); use engine='func'")
    used_engine = "bmm" if plan is not None else "func"

    def func_loss(f: torch.Tensor, r: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor):
        with _device.autocast(resolved_precision, dev):
            return lf(torch.func.functional_call(template, (dict(zip(names, unflatten(f))), r), (x,)), y)

    if used_engine == "bmm":
        def bmm_losses(p_list, x, y, x_shared, y_shared):
            with _device.autocast(resolved_precision, dev):
                return _mlpstack.batched_loss(loss, lf, _mlpstack.forward(plan, p_list, x, x_shared), y, y_shared)

        loss_fn = torch.compile(bmm_losses, backend=backend, dynamic=False) if backend else bmm_losses

        leaf_cache: dict[tuple[int, int], list[torch.Tensor]] = {}

        workspace = _mlpstack.Workspace()

        def manual_grads_and_losses(f, r, x, y, x_shared, y_shared, out=None):
            losses, grads = _mlpstack.forward_backward(plan, unflatten(f), x, x_shared, loss, lf, y, y_shared,
                                                       workspace)
            return torch.cat([g.reshape(f.shape[0], -1) for g in grads], 1, out=out), losses

        def grads_and_losses(f, r, x, y, x_shared, y_shared, out=None):
            # Leaves per layer, views of the flat parameters made once per chunk (the optimizer updates
            # them in place): autograd then skips scattering into a zero-filled [K, P] every step.
            key = (f.data_ptr(), f.shape[0])
            if key not in leaf_cache:
                leaf_cache[key] = [v.detach().requires_grad_(True) for v in unflatten(f)]
            leaves = leaf_cache[key]
            with torch.enable_grad():
                losses = loss_fn(leaves, x, y, x_shared, y_shared)
                grads = torch.autograd.grad(losses.sum(), leaves)
            return torch.cat([g.reshape(f.shape[0], -1) for g in grads], 1, out=out), losses.detach()

        if not backend and resolved_precision in ("fp32", "tf32"):
            # Backpropagation written out (about 2x faster on CPUs); autocast and compile keep autograd.
            grads_and_losses = manual_grads_and_losses  # noqa: F811

        eval_ws = _mlpstack.Workspace() if grads_and_losses is manual_grads_and_losses else None

        def outputs(f, r, x, x_shared):
            return _mlpstack.forward(plan, unflatten(f), x, x_shared, eval_ws)
    else:
        gv = torch.func.grad_and_value(func_loss)
        mapped: dict[tuple[bool, bool], Callable] = {}

        def grads_and_losses(f, r, x, y, x_shared, y_shared, out=None):
            key = (x_shared, y_shared)
            if key not in mapped:
                fn = torch.vmap(gv, in_dims=(0, 0, None if x_shared else 0, None if y_shared else 0),
                                randomness="different")
                mapped[key] = torch.compile(fn, backend=backend) if backend else fn
            return mapped[key](f, r, x, y)  # a fresh gradient: the optimizer may use it as scratch

        def outputs(f, r, x, x_shared):
            fn = lambda f_, r_, x_: torch.func.functional_call(template, (dict(zip(names, unflatten(f_))), r_), (x_,))  # noqa: E731
            return torch.vmap(fn, in_dims=(0, 0, None if x_shared else 0), randomness="different")(f, r, x)

    host_style = dev.type == "cpu" and not _ACCELERATOR_STYLE_ON_CPU
    # Model chunks: on CPUs, groups of models whose activations stay in cache run faster than all K
    # at once (memory-bound elementwise work), unless that would narrow the shared first-layer GEMM
    # (compute-bound work); GPUs take the whole ensemble in one pass.
    if model_chunk is None:
        per_model = max(1, (batch_size or n)) * max(widest, 1) * flat.element_size()
        model_chunk = max(1, _mlpstack.CPU_CHUNK_BYTES // per_model)
        if plan is not None and train.x_shared and shapes[_mlpstack.first_linear(plan)][1] >= _mlpstack.WIDE_MIN_FAN_IN:
            columns = _mlpstack.WIDE_COLUMNS_PER_THREAD * torch.get_num_threads()
            model_chunk = max(model_chunk, -(-columns // shapes[_mlpstack.first_linear(plan)][0]))
        model_chunk = min(k, model_chunk) if host_style else k
    elif isinstance(model_chunk, bool) or not isinstance(model_chunk, int) or model_chunk < 1:
        raise ValueError(f"model_chunk={model_chunk!r} must be a positive integer or None (automatic)")
    chunks = [slice(a, min(a + model_chunk, k)) for a in range(0, k, model_chunk)]
    # One chunk's gradients, reused (the func engine returns fresh ones and needs no buffer).
    grad_buf = torch.empty(model_chunk, flat.shape[1], dtype=flat.dtype, device=dev) if used_engine == "bmm" else None

    def pick(t: torch.Tensor, shared: bool, sl: slice) -> torch.Tensor:
        return t if shared else t[sl]

    def step_all(step: int, x, y, x_shared, y_shared, lr_now: torch.Tensor) -> None:
        """Gradients, divergence guard and optimizer update of every model, one chunk at a time."""
        for sl in chunks:
            g, losses = grads_and_losses(flat[sl], {a: b[sl] for a, b in rest.items()}, pick(x, x_shared, sl),
                                         pick(y, y_shared, sl), x_shared, y_shared,
                                         out=None if grad_buf is None else grad_buf[:sl.stop - sl.start])
            loss_buf[(step - 1) % rows, sl] = losses
            # On CPUs, while every model is alive and finite, the update needs no mask (checking is
            # free there); GPUs always take the masked update, which needs no host sync.
            if fast_path[0] and bool(torch.isfinite(losses).all()):
                opt.step(sl, g, lr_now[sl], active[sl], step, True)
                continue
            fast_path[0] = False
            finite = torch.isfinite(losses)
            end_step[sl] = torch.where(active[sl] & ~finite, step, end_step[sl])
            active[sl] &= finite
            opt.step(sl, g, lr_now[sl], active[sl], step, False)

    opt = _Optimizer(optimizer, momentum, nesterov, weight_decay, betas, eps, flat)
    lr_vec = torch.tensor(lrs, dtype=flat.dtype, device=dev)
    active = torch.ones(k, dtype=torch.bool, device=dev)
    fast_path = [host_style]  # no model frozen yet (host-side knowledge)
    end_step = torch.full((k,), steps + 1, dtype=torch.long, device=dev)  # first step not taken
    sync_every_step = host_style  # syncing is free on CPU; on GPUs only at evaluations
    rows = 1 if sync_every_step else eval_every  # ring buffer of losses not yet copied to the host
    loss_buf = torch.empty(rows, k, dtype=flat.dtype, device=dev)

    histories = [History(config={"steps": steps, "lr": lrs[j], "optimizer": optimizer, "momentum": momentum,
                                 "nesterov": nesterov, "betas": list(betas), "eps": eps,
                                 "weight_decay": weight_decay, "batch_size": batch_size, "seed": seeds[j],
                                 "loss": _loss_name(loss), "schedule": _loss_name(schedule), "warmup": warmup,
                                 "precision": resolved_precision, "compile": backend, "epochs": epochs,
                                 "engine": used_engine, "ensemble_index": j, "ensemble_size": k})
                 for j in range(k)]
    last_finite = [float("nan")] * k
    frozen_at: list[int | None] = [None] * k  # step of divergence/stop, once known on the host
    synced = 0

    one_stream = len(set(seeds)) == 1
    gens = [torch.Generator(device=dev).manual_seed(s) for s in (seeds[:1] if one_stream else seeds)]
    perm, pos = None, n
    eval_chunk = eval_chunk or max(1, min(8192, 2 ** 24 // (k * widest)))

    def sync(upto: int) -> None:
        """Copy the losses of steps synced+1..upto to the histories and note new divergences."""
        nonlocal synced
        if upto <= synced:
            return
        ends = end_step.tolist()
        vals = loss_buf[torch.arange(synced, upto, device=dev) % rows].tolist()
        for j in range(k):
            h = histories[j]
            for s, row in zip(range(synced + 1, upto + 1), vals):
                v = row[j]
                if s >= ends[j]:
                    if frozen_at[j] is None and not math.isfinite(v) and s == ends[j]:
                        frozen_at[j] = s
                        h.diverged = True
                        h.message = f"loss became {v} at step {s}; last finite loss {last_finite[j]:.6g}"
                    break
                h.step.append(s)
                h.loss.append(v)
                last_finite[j] = v
        synced = upto

    def first_divergence() -> str | None:
        for j, h in enumerate(histories):
            if h.diverged:
                return f"model {j}: {h.message}"
        return None

    @torch.no_grad()
    def evaluate_all() -> list[dict[str, float]]:
        template.eval()
        res: list[dict[str, float]] = [{} for _ in range(k)]
        try:
            for name, split in (("train", train), ("test", test)):
                m = len(split)
                if m == 0:
                    continue
                tot = torch.zeros(k, dtype=torch.float64, device=dev)
                hit = torch.zeros(k, dtype=torch.float64, device=dev)
                for i in range(0, m, eval_chunk):
                    xb = split.x[i:i + eval_chunk] if split.x_shared else split.x[:, i:i + eval_chunk]
                    yb = split.y[i:i + eval_chunk] if split.y_shared else split.y[:, i:i + eval_chunk]
                    nb = xb.shape[0 if split.x_shared else 1]
                    for sl in chunks:  # chunk by chunk: the outputs may live in a reused buffer
                        ysl = pick(yb, split.y_shared, sl)
                        with _device.autocast(resolved_precision, dev):
                            out = outputs(flat[sl], {a: b[sl] for a, b in rest.items()},
                                          pick(xb, split.x_shared, sl), split.x_shared)
                            tot[sl] += _mlpstack.batched_loss(loss, lf, out, ysl, split.y_shared).double() * nb
                        if not torch.is_floating_point(yb):
                            hit[sl] += (out.argmax(-1) == ysl).sum(-1).double()
                tot_l = (tot / m).tolist()
                for j in range(k):
                    res[j][f"{name}_loss"] = tot_l[j]
                if not torch.is_floating_point(split.y):
                    for j, a in enumerate((hit / m).tolist()):
                        res[j][f"{name}_acc"] = a
        finally:
            template.train()
        return res

    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False, mininterval=0.5)
    last_bar = time.perf_counter()
    stopped_all = False
    try:
        with _device.matmul_precision(resolved_precision, dev):
            template.train()
            for step in range(1, steps + 1):
                if batch_size is None:
                    xb, yb, xsh, ysh = train.x, train.y, train.x_shared, train.y_shared
                else:
                    if pos + batch_size > n:
                        perm, pos = torch.stack([torch.randperm(n, generator=g, device=dev) for g in gens]), 0
                    idx = perm[:, pos:pos + batch_size]
                    pos += batch_size
                    xb, xsh = _take(train.x, train.x_shared, idx, one_stream)
                    yb, ysh = _take(train.y, train.y_shared, idx, one_stream)
                step_all(step, xb, yb, xsh, ysh, lr_vec * factors[step - 1])
                is_eval = step % eval_every == 0 or step == steps
                if sync_every_step or is_eval:
                    sync(step)
                    msg = first_divergence()
                    if msg and on_divergence == "raise":
                        raise DivergenceError(msg)
                if is_eval:
                    metrics = evaluate_all()
                    for j in range(k):
                        if frozen_at[j] is not None:
                            continue
                        h = histories[j]
                        h.eval_step.append(step)
                        for key, v in metrics[j].items():
                            h.eval.setdefault(key, []).append(v)
                        reached = _stop_reached(stop_when, metrics[j])
                        if reached:
                            frozen_at[j] = h.stopped_at = step
                            h.message = f"reached {reached} at step {step}"
                            active[j] = False
                            fast_path[0] = False
                            end_step[j] = step + 1
                    stop = [cb(step, dict(zip(names, unflatten(flat.detach()))), histories) for cb in callbacks]
                    if any(s is True for s in stop):
                        for j, h in enumerate(histories):
                            if frozen_at[j] is None:
                                frozen_at[j] = h.stopped_at = step
                                h.message = f"stopped by a callback at step {step}"
                        stopped_all = True
                    if all(f is not None for f in frozen_at):
                        stopped_all = True
                now = time.perf_counter()
                if progress and (now - last_bar > 0.5 or step == steps):
                    alive = [v for v in loss_buf[(step - 1) % rows].tolist() if math.isfinite(v)]
                    bar.set_postfix(loss=f"{sorted(alive)[len(alive) // 2]:.4g}" if alive else "nan",
                                    alive=f"{len(alive)}/{k}", refresh=False)
                    bar.update(step - bar.n)
                    last_bar = now
                if stopped_all:
                    break
            sync(step)
    finally:
        bar.close()
        with torch.no_grad():
            for j, m in enumerate(models):
                for n_, p in zip(names, unflatten(flat.detach()[j])):
                    m.get_parameter(n_).copy_(p)
        seconds = time.perf_counter() - t0
        for h in histories:
            h.seconds = seconds / k  # its share of the ensemble's wall time
    return EnsembleResult(models=models, histories=histories, seconds=seconds, engine=used_engine)


def _take(t: torch.Tensor, shared: bool, idx: torch.Tensor, one_stream: bool) -> tuple[torch.Tensor, bool]:
    """Rows ``idx`` ([S, B] index rows, S = 1 or K) of shared [n, ...] or stacked [K, n, ...] data."""
    if shared and one_stream:
        return t[idx[0]], True
    if shared:
        return t[idx], False
    rows = torch.arange(t.shape[0], device=t.device).unsqueeze(1)
    return t[rows, idx.expand(t.shape[0], -1) if one_stream else idx], False


# --------------------------------------------------------------------------------------------------
# fit_sweep: many configurations, grouped by shape

SWEEP_KEYS = ("lr", "train_seed", "data")


def fit_sweep(make_model: Callable[..., nn.Module], configs: Sequence[Mapping[str, Any]],
              data: Data | tuple, *, max_group: int | None = None, **fit_kwargs: Any) -> SweepResult:
    """Train one model per configuration, running each group of same-shaped models as one ensemble.

    Each configuration is a dict of keyword arguments for ``make_model`` (e.g. ``models.mlp``'s
    ``widths``, ``activation``, ``seed``) plus optional training keys: ``lr`` (its own learning rate),
    ``train_seed`` (its minibatch seed; default ``fit_kwargs["seed"]`` or 0) and ``data`` (its own
    ``Data``, e.g. with shuffled labels). Models whose architectures agree (same module types and
    parameter shapes, see ``fit_ensemble``) are trained together, at most ``max_group`` at a time;
    ``fit_kwargs`` go to ``fit_ensemble``. Results come back in configuration order and equal one
    ``fit`` per configuration up to float rounding.
    """
    configs = [dict(c) for c in configs]
    if not configs:
        raise ValueError("configs is empty")
    if max_group is not None and (isinstance(max_group, bool) or not isinstance(max_group, int) or max_group < 1):
        raise ValueError(f"max_group={max_group!r} must be a positive integer or None")
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
        groups.setdefault(repr(_signature(m)), []).append(i)
    histories: list[History | None] = [None] * len(configs)
    chunks: list[list[int]] = []
    for idx in groups.values():
        size = max_group or len(idx)
        chunks += [idx[a:a + size] for a in range(0, len(idx), size)]
    for chunk in chunks:
        res = fit_ensemble([built[i] for i in chunk], [configs[i].get("data", data) for i in chunk],
                           lr=[configs[i].get("lr", base_lr) for i in chunk],
                           seeds=[configs[i].get("train_seed", base_seed) for i in chunk], **fit_kwargs)
        for i, h in zip(chunk, res.histories):
            histories[i] = h
    return SweepResult(configs=configs, models=built, histories=histories,  # type: ignore[arg-type]
                       groups=chunks, seconds=time.perf_counter() - t0)
