"""Training: ``fit`` for one model, ``fit_ensemble`` for K same-shaped models at once, ``fit_sweep``.

Conventions, stated once for the whole package:

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

Modules, in reading order:

- ``config``: ``TrainConfig``, the options ``fit`` and ``fit_ensemble`` share, checked once and
  resolved against the data (steps, schedule factors, precision, the ``History`` config); losses,
  minibatch order, the stopping rule.
- ``history``: ``History``, ``EnsembleResult``, ``SweepResult``, ``DivergenceError``.
- ``checks``: data, label and ensemble-member checks run before training.
- ``single``: ``fit`` and ``evaluate``.
- ``stacked``: K models' parameters (``StackedParams``, one flat [K, P] tensor) and data (``Split``).
- ``engines``: how K losses and gradients are computed (``FuncEngine``, ``BmmEngine``).
- ``optim``: ``torch.optim``'s update rules on the flat parameters (``StackedOptimizer``).
- ``ensemble``: ``fit_ensemble``: its device state, host records and loop.
- ``sweep``: ``fit_sweep`` (locally, or each group as a task of a ``concurrent.futures.Executor``:
  a process pool, or a Dask cluster through ``cluster_executor``, read from ``TDL_DASK_SCHEDULER``).
"""

from .config import LOSSES, ON_DIVERGENCE, OPTIMIZERS, SCHEDULES, Resolved, TrainConfig, schedule_factors
from .engines import ENGINES
from .ensemble import fit_ensemble
from .history import DivergenceError, EnsembleResult, History, SweepResult
from .single import evaluate, fit
from .sweep import SWEEP_KEYS, cluster_executor, fit_sweep

__all__ = ["fit", "fit_ensemble", "fit_sweep", "evaluate", "schedule_factors", "TrainConfig", "Resolved", "History",
           "EnsembleResult", "SweepResult", "DivergenceError", "LOSSES", "OPTIMIZERS", "ON_DIVERGENCE",
           "SCHEDULES", "ENGINES", "SWEEP_KEYS", "cluster_executor"]
