"""What training returns: ``History`` (one model), ``EnsembleResult``, ``SweepResult``."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Mapping

from torch import nn

from .._atomic import atomic_write_bytes


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

    def record_eval(self, step: int, metrics: Mapping[str, float]) -> None:
        """Append one evaluation: ``metrics[name]`` at ``step``."""
        self.eval_step.append(step)
        for key, v in metrics.items():
            self.eval.setdefault(key, []).append(v)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "History":
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{k: v for k, v in d.items() if k in known})

    def save(self, path: str | Path) -> None:
        """Write the history as JSON (atomically: a reader never sees half a file)."""
        atomic_write_bytes(path, json.dumps(self.to_dict()).encode())

    @classmethod
    def load(cls, path: str | Path) -> "History":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def plot(self, metrics: tuple[str, ...] = ("train_acc", "test_acc"), title: str = ""):
        """A plotly figure of the chosen evaluation metrics over steps."""
        from .. import plots  # plotly is heavy: imported when a figure is asked for

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
