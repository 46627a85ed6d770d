"""Training: ``fit`` for one model, with a recorded ``History``.

The data are moved once to the model's device and minibatches are drawn by index permutation on
that device (no DataLoader per step). A NaN or inf loss stops training with a message naming the
step and the last finite loss, or, with ``on_divergence="record"``, returns the history marked
``diverged``.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn
from torch.nn import functional as F

from .data import Data

LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam")
ON_DIVERGENCE = ("raise", "record")


class DivergenceError(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class History:
    """What happened during ``fit``: per-step losses and per-evaluation metrics.

    ``eval`` maps a metric name (``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``) to its
    values at the steps in ``eval_step``. Serializable with ``to_dict``/``save``.
    """

    step: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)
    eval_step: list[int] = field(default_factory=list)
    eval: dict[str, list[float]] = field(default_factory=dict)
    diverged: bool = False
    message: str = ""
    seconds: float = 0.0
    config: dict[str, Any] = field(default_factory=dict)

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
    def from_dict(cls, d: dict[str, Any]) -> "History":
        return cls(**d)

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict()))

    @classmethod
    def load(cls, path: str | Path) -> "History":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, metrics: tuple[str, ...] = ("train_acc", "test_acc"), title: str = ""):
        """A plotly figure of the chosen evaluation metrics over steps."""
        from . import plots

        return plots.curves({m: (self.eval_step, self.eval[m]) for m in metrics if m in self.eval},
                            title=title, yaxis=", ".join(metrics))


def _loss_fn(loss: str | Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return F.cross_entropy
    if loss == "mse":
        return lambda out, y: F.mse_loss(out.reshape(y.shape), y)
    raise ValueError(f"loss={loss!r} is unknown; allowed: {', '.join(map(repr, LOSSES))} or a callable")


def _as_data(data: Data | tuple) -> Data:
    if isinstance(data, Data):
        return data
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        return Data(x, y, x[:0], y[:0])
    raise TypeError("data must be a tdlcourse.data.Data or an (inputs, targets) tuple of tensors")


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss: str | Callable = "cross_entropy",
             chunk: int = 8192) -> dict[str, float]:
    """Mean loss and, for integer targets, accuracy of ``model`` on ``(x, y)`` in its current mode."""
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


def fit(model: nn.Module, data: Data | tuple, *, steps: int = 1000, lr: float = 0.1,
        optimizer: str = "sgd", momentum: float = 0.0, weight_decay: float = 0.0,
        batch_size: int | None = None, loss: str | Callable = "cross_entropy",
        eval_every: int | None = None, seed: int = 0, progress: bool = True,
        on_divergence: str = "raise", callbacks: tuple[Callable[[int, nn.Module, History], None], ...] = (),
        desc: str = "fit") -> History:
    """Train ``model`` in place on ``data`` and return its ``History``.

    Full batch by default; with ``batch_size`` each epoch visits a fresh random permutation of the
    training set. Every ``eval_every`` steps (and at the last step) the train and test loss and
    accuracy are recorded in eval mode; the model's original train/eval mode is restored at the end.
    ``callbacks`` are called as ``cb(step, model, history)`` after each evaluation.
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps={steps!r} must be a positive integer")
    if not (lr > 0 and math.isfinite(lr)):
        raise ValueError(f"lr={lr!r} must be a positive finite number")
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer={optimizer!r} is unknown; allowed: {', '.join(map(repr, OPTIMIZERS))}")
    if on_divergence not in ON_DIVERGENCE:
        raise ValueError(f"on_divergence={on_divergence!r}; allowed: {', '.join(map(repr, ON_DIVERGENCE))}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters")
    data = _as_data(data).to(params[0].device)
    n = len(data.x_train)
    if batch_size is not None and not (isinstance(batch_size, int) and 1 <= batch_size <= n):
        raise ValueError(f"batch_size={batch_size!r} must be an integer in [1, {n}] or None (full batch)")
    if data.num_classes is not None and not torch.is_floating_point(data.y_train):
        if int(data.y_train.min()) < 0 or int(data.y_train.max()) >= data.num_classes:
            raise ValueError(f"labels must lie in [0, {data.num_classes - 1}]")
    lf = _loss_fn(loss)
    eval_every = eval_every or max(1, steps // 50)

    opt = (torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
           if optimizer == "sgd" else torch.optim.Adam(params, lr=lr, weight_decay=weight_decay))
    g = torch.Generator(device=data.x_train.device).manual_seed(seed)
    hist = History(config={"steps": steps, "lr": lr, "optimizer": optimizer, "momentum": momentum,
                           "weight_decay": weight_decay, "batch_size": batch_size, "seed": seed,
                           "loss": loss if isinstance(loss, str) else getattr(loss, "__name__", "callable")})
    was_training = model.training
    perm, pos = None, n
    last_finite = float("nan")
    t0 = time.perf_counter()
    from tqdm.auto import tqdm

    bar = tqdm(total=steps, desc=desc, disable=not progress, leave=False, mininterval=0.5)
    try:
        for step in range(1, steps + 1):
            model.train()
            if batch_size is None:
                xb, yb = data.x_train, data.y_train
            else:
                if pos + batch_size > n:
                    perm, pos = torch.randperm(n, generator=g, device=data.x_train.device), 0
                idx = perm[pos:pos + batch_size]
                pos += batch_size
                xb, yb = data.x_train[idx], data.y_train[idx]
            opt.zero_grad(set_to_none=True)
            out = lf(model(xb), yb)
            value = float(out.detach())
            if not math.isfinite(value):
                hist.diverged = True
                hist.message = f"loss became {value} at step {step}; last finite loss {last_finite:.6g}"
                if on_divergence == "raise":
                    raise DivergenceError(hist.message)
                break
            last_finite = value
            out.backward()
            opt.step()
            hist.step.append(step)
            hist.loss.append(value)
            if step % eval_every == 0 or step == steps:
                model.eval()
                metrics = {f"train_{k}": v for k, v in evaluate(model, data.x_train, data.y_train, lf).items()}
                if len(data.x_test):
                    metrics.update({f"test_{k}": v for k, v in evaluate(model, data.x_test, data.y_test, lf).items()})
                hist.eval_step.append(step)
                for k, v in metrics.items():
                    hist.eval.setdefault(k, []).append(v)
                for cb in callbacks:
                    cb(step, model, hist)
            if step % 10 == 0 or step == steps:
                bar.set_postfix(loss=f"{value:.4g}", refresh=False)
                bar.update(step - bar.n)
    finally:
        bar.close()
        model.train(was_training)
        hist.seconds = time.perf_counter() - t0
    return hist
