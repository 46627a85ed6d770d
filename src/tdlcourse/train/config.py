"""The options of ``fit`` and ``fit_ensemble`` as one checked ``TrainConfig``, and what both loops share.

``TrainConfig`` holds what a run is asked to do (steps, optimizer, schedule, batches, evaluation,
precision, progress); ``TrainConfig.resolve`` turns it, against the training-set size and the device,
into a ``Resolved`` run: the number of steps, the learning-rate factors s(t), the evaluation interval,
the precision and the ``History`` config. The loss functions, the minibatch order and the stopping rule
live here too, so that ``fit`` and ``fit_ensemble`` cannot drift apart.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from numbers import Real
from typing import Any, Callable, Iterator, Mapping

import torch
from torch.nn import functional as F

from .. import device as _device
from ..validate import (boolean, in_interval, integer, nonnegative, nonnegative_int, number, one_of, positive,
                        positive_int)
from .history import History

LOSSES = ("cross_entropy", "mse")
OPTIMIZERS = ("sgd", "adam", "adamw")
ON_DIVERGENCE = ("raise", "record")
SCHEDULES = ("constant", "cosine", "linear")
METRICS = ("train_loss", "train_acc", "test_loss", "test_acc")
DEFAULT_STEPS = 1000


def _or(alternative: str, check: Callable, name: str, value: Any, *args: Any, **kw: Any) -> Any:
    """``check(name, value, ...)``, its message extended by the ``alternative`` that is also allowed."""
    try:
        return check(name, value, *args, **kw)
    except ValueError as e:
        raise ValueError(f"{e}, or {alternative}") from None


def optional(check: Callable, name: str, value: Any, none_means: str, **kw: Any) -> Any:
    """None, or ``check(name, value, **kw)`` whose message also says what None means."""
    return None if value is None else _or(f"None ({none_means})", check, name, value, **kw)


@dataclass(frozen=True)
class TrainConfig:
    """How to train, shared by ``fit`` and ``fit_ensemble`` (their keyword arguments of the same names).

    Steps: ``steps`` updates (default 1000) or ``epochs`` passes, not both. Optimizer: ``optimizer``
    (``OPTIMIZERS``) with learning rate ``lr`` (one number, or one per model for ``fit_ensemble``),
    SGD's ``momentum`` in [0, 1) and ``nesterov``, Adam's ``betas`` and ``eps``, ``weight_decay`` >= 0.
    Schedule: eta_t = lr * s(t), s from ``schedule`` and ``warmup`` (``schedule_factors``). Batches:
    ``batch_size`` (None: full batch) drawn with ``seed``; ``loss`` (``LOSSES`` or a callable returning
    the batch mean). Evaluation: every ``eval_every`` steps (None: steps // 50) and at the last step;
    ``stop_when`` targets (keys ``METRICS``); ``on_divergence`` (``ON_DIVERGENCE``). Precision:
    ``precision`` and ``compile`` (see ``device``). Progress: ``progress`` and the bar's ``desc``.

    Every field is checked on construction; a bad one raises ValueError naming it, its value and what
    is allowed. Numbers are normalized (``lr`` a float or a tuple of floats, ``betas`` a tuple).
    """

    steps: int | None = None
    epochs: int | None = None
    optimizer: str = "sgd"
    lr: float | tuple[float, ...] = 0.1
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    schedule: str | Callable[[int, int], float] = "constant"
    warmup: int = 0
    batch_size: int | None = None
    seed: int = 0
    loss: str | Callable = "cross_entropy"
    eval_every: int | None = None
    stop_when: Mapping[str, float] | None = None
    on_divergence: str = "raise"
    precision: str = "auto"
    compile: bool | str = False
    progress: bool = True
    desc: str = "fit"

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)  # normalize a field of the frozen dataclass

        if self.steps is not None and self.epochs is not None:
            raise ValueError(f"give steps={self.steps!r} or epochs={self.epochs!r}, not both")
        put("steps", optional(positive_int, "steps", self.steps, f"{DEFAULT_STEPS} steps, or epochs"))
        put("epochs", optional(positive_int, "epochs", self.epochs, "count steps"))
        one_of("optimizer", self.optimizer, OPTIMIZERS)
        put("lr", _learning_rates(self.lr))
        put("momentum", in_interval("momentum", self.momentum, 0.0, 1.0, closed="left"))
        if self.momentum and self.optimizer != "sgd":
            raise ValueError(f"momentum={self.momentum!r} applies to optimizer='sgd' only; use betas for Adam")
        put("nesterov", boolean("nesterov", self.nesterov))
        if self.nesterov and self.optimizer == "sgd" and not self.momentum:
            raise ValueError("nesterov=True needs momentum > 0 (momentum=0.0), as in torch.optim.SGD")
        put("weight_decay", nonnegative("weight_decay", self.weight_decay))
        put("betas", _betas(self.betas))
        put("eps", positive("eps", self.eps))
        if not callable(self.schedule):
            _or("a callable (t, T) -> factor", one_of, "schedule", self.schedule, SCHEDULES)
        put("warmup", nonnegative_int("warmup", self.warmup))
        put("batch_size", optional(positive_int, "batch_size", self.batch_size, "full batch"))
        put("seed", integer("seed", self.seed))
        if not callable(self.loss):
            _or("a callable (out, y) -> mean loss", one_of, "loss", self.loss, LOSSES)
        put("eval_every", optional(positive_int, "eval_every", self.eval_every, "steps // 50"))
        put("stop_when", _targets(self.stop_when))
        one_of("on_divergence", self.on_divergence, ON_DIVERGENCE)
        one_of("precision", self.precision, _device.PRECISIONS)
        _device.compile_backend(self.compile)  # checks the backend's name
        put("progress", boolean("progress", self.progress))

    def resolve(self, n: int, device: torch.device) -> Resolved:
        """This configuration for a training set of ``n`` samples on ``device``."""
        batch_size = optional(integer, "batch_size", self.batch_size, "full batch", lo=1, hi=n)
        if self.epochs is not None:
            steps = self.epochs * (1 if batch_size is None else n // batch_size)
        else:
            steps = self.steps or DEFAULT_STEPS
        return Resolved(config=self, steps=steps, factors=schedule_factors(steps, self.schedule, self.warmup),
                        eval_every=self.eval_every or max(1, steps // 50),
                        precision=_device.resolve_precision(self.precision, device),
                        backend=_device.compile_backend(self.compile), loss_fn=loss_fn(self.loss))


def _learning_rates(lr: Any) -> float | tuple[float, ...]:
    """One positive learning rate, or a sequence of them (one per model)."""
    if isinstance(lr, (Real, str, bytes)) or not hasattr(lr, "__iter__") or getattr(lr, "ndim", 1) == 0:
        return positive("lr", lr)
    return tuple(positive(f"lr[{i}]", v) for i, v in enumerate(lr))


def _targets(stop_when: Any) -> dict[str, float] | None:
    """``stop_when``: None or a mapping metric -> target number."""
    if stop_when is None:
        return None
    if not isinstance(stop_when, Mapping):
        raise ValueError(f"stop_when={stop_when!r} must be a dict metric -> target, e.g. {{'train_acc': 1.0}}")
    return {one_of("stop_when key", k, METRICS): number(f"stop_when[{k!r}]", v) for k, v in stop_when.items()}


def _betas(betas: Any) -> tuple[float, float]:
    """Adam's (beta1, beta2), each in [0, 1)."""
    pair = tuple(betas) if hasattr(betas, "__iter__") and not isinstance(betas, str) else ()
    if len(pair) != 2:
        raise ValueError(f"betas={betas!r} must be two numbers in [0, 1)")
    b1, b2 = (in_interval(f"betas[{i}]", b, 0.0, 1.0, closed="left") for i, b in enumerate(pair))
    return b1, b2


@dataclass(frozen=True)
class Resolved:
    """A ``TrainConfig`` resolved against the data and the device: what the loop runs.

    ``factors[t]`` = s(t), so update t = 0..steps-1 uses eta_t = lr * factors[t]; ``precision`` is
    ``"fp32"``, ``"tf32"`` or ``"bf16"``; ``backend`` the ``torch.compile`` backend (None: eager).
    """

    config: TrainConfig
    steps: int
    factors: list[float]
    eval_every: int
    precision: str
    backend: str | None
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

    def is_eval(self, step: int) -> bool:
        """Evaluate after this step: every ``eval_every`` steps and at the last."""
        return step % self.eval_every == 0 or step == self.steps

    def history(self, lr: float, seed: int, **extra: Any) -> History:
        """An empty ``History`` whose config records this run (``extra``: e.g. the ensemble index)."""
        c = self.config
        return History(config={"steps": self.steps, "lr": lr, "optimizer": c.optimizer, "momentum": c.momentum,
                               "nesterov": c.nesterov, "betas": list(c.betas), "eps": c.eps,
                               "weight_decay": c.weight_decay, "batch_size": c.batch_size, "seed": seed,
                               "loss": _name(c.loss), "schedule": _name(c.schedule), "warmup": c.warmup,
                               "precision": self.precision, "compile": self.backend, "epochs": c.epochs, **extra})

    def progress_bar(self):
        """The tqdm bar (tqdm.auto: a widget in Jupyter, text elsewhere; ``TQDM_DISABLE=1`` silences it)."""
        from tqdm.auto import tqdm  # picks the notebook widget at call time

        return tqdm(total=self.steps, desc=self.config.desc, disable=not self.config.progress, leave=False,
                    mininterval=0.5)


# --------------------------------------------------------------------------------------------------
# losses, schedule, minibatches, stopping


def loss_fn(loss: str | Callable) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The mean-over-the-batch loss ``loss(out, y)`` named by ``loss`` (or ``loss`` itself)."""
    if callable(loss):
        return loss
    if loss == "cross_entropy":
        return F.cross_entropy
    if loss == "mse":
        return _mse
    raise ValueError(f"loss={loss!r} is not allowed; allowed: {', '.join(map(repr, LOSSES))}, or a callable")


def _mse(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(out.reshape(y.shape), y)


def _name(obj: str | Callable) -> str:
    return obj if isinstance(obj, str) else getattr(obj, "__name__", "callable")


def schedule_factors(steps: int, schedule: str | Callable[[int, int], float] = "constant",
                     warmup: int = 0) -> list[float]:
    """Learning-rate multipliers s(t) for the updates t = 0, ..., steps - 1 (eta_t = lr * s(t)).

    ``"constant"``: s = 1. ``"cosine"``: s(t) = (1 + cos(pi t / T)) / 2 (Loshchilov & Hutter 2017,
    without restarts). ``"linear"``: s(t) = 1 - t / T. A callable ``schedule(t, T)`` gives s(t)
    directly. ``warmup`` = w > 0 multiplies by min(1, (t + 1) / w) (Goyal et al. 2017).
    """
    steps = positive_int("steps", steps)
    warmup = nonnegative_int("warmup", warmup)
    if callable(schedule):
        base = [float(schedule(t, steps)) for t in range(steps)]
    elif _or("a callable (t, T) -> factor", one_of, "schedule", schedule, SCHEDULES) == "constant":
        base = [1.0] * steps
    elif schedule == "cosine":
        base = [0.5 * (1.0 + math.cos(math.pi * t / steps)) for t in range(steps)]
    else:  # linear
        base = [1.0 - t / steps for t in range(steps)]
    if warmup:
        base = [b * min(1.0, (t + 1) / warmup) for t, b in enumerate(base)]
    bad = [b for b in base if not (math.isfinite(b) and b >= 0)]
    if bad:
        raise ValueError(f"schedule gave the factor {bad[0]!r}; factors must be finite and >= 0")
    return base


def minibatch_indices(n: int, batch_size: int, permutation: Callable[[], torch.Tensor]) -> Iterator[torch.Tensor]:
    """Indices of successive minibatches: each epoch a fresh ``permutation()`` of range(n) ([n], or
    [S, n] for S streams) cut into n // batch_size batches; the last n mod batch_size are skipped."""
    while True:
        perm = permutation()
        for a in range(0, n - batch_size + 1, batch_size):
            yield perm[..., a:a + batch_size]


def stop_reached(stop_when: Mapping[str, float] | None, metrics: Mapping[str, float]) -> str | None:
    """The stop message when every target is met (losses: value <= target; accuracies: >=)."""
    if not stop_when or any(k not in metrics for k in stop_when):
        return None
    ok = all(metrics[k] <= v if k.endswith("loss") else metrics[k] >= v for k, v in stop_when.items())
    return ", ".join(f"{k} {'<=' if k.endswith('loss') else '>='} {v:g}" for k, v in stop_when.items()) if ok else None
