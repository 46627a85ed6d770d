"""Randomization tests (Zhang, Bengio, Hardt, Recht, Vinyals 2017, "Understanding deep learning
requires rethinking generalization").

Train the same network on the true task and on corrupted copies of it: labels replaced at random
(a fraction or all of them), each image's pixels shuffled by its own random permutation ("random
pixels"), or inputs replaced by Gaussian noise with the same per-feature mean and variance. A network that reaches zero training error on all of them has a hypothesis class rich
enough to fit noise, so no bound that depends on the class alone can explain its test accuracy on
the true task.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
from torch import nn

from . import data as _data
from . import models, train, validate

KINDS = ("true labels", "random labels", "gaussian inputs", "random pixels")
ARCHS = ("mlp", "cnn")


def _finite_array(name: str, value, ndim: int) -> np.ndarray:
    a = np.asarray(value, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-D array of numbers, got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        i = np.unravel_index(int(np.argmax(bad)), a.shape)
        validate.number(f"{name}[{', '.join(map(str, i))}]", float(a[i]))  # raises: must be finite
    return a


def interpolating_relu_net(X, y, a, X_query) -> np.ndarray:
    """Outputs at the rows of ``X_query`` of the two-layer ReLU network of Zhang, Bengio, Hardt,
    Recht and Vinyals (2017, Theorem 1) that fits the targets ``y`` at the rows of ``X`` exactly.

    The construction (chapter 1, "The random-label experiment"): project the n points
    ``x_i`` (rows of ``X``, shape [n, d]) on the direction ``a`` (shape [d]),
    ``z_i = <a, x_i>``, which must be distinct, and sort them, ``z_(1) < ... < z_(n)``, with the
    targets ``y_(i)`` in the same order. Take the thresholds ``b_1 = z_(1) - 1`` and
    ``b_j = (z_(j-1) + z_(j)) / 2`` for ``j = 2, ..., n``, so that
    ``b_1 < z_(1) < b_2 < z_(2) < ... < b_n < z_(n)``. The matrix ``A_ij = relu(z_(i) - b_j)`` is
    lower triangular with a positive diagonal, and ``w = A^{-1} y`` gives the network

        f(x) = sum_j w_j relu(<a, x> - b_j)

    with ``d + n`` hidden-layer weights (``a`` shared, one bias per unit) and ``n`` output weights,
    ``2n + d`` in all, and ``f(x_i) = y_i`` for every i. Returns ``f`` at the rows of ``X_query``
    (shape [q, d]) as a float64 array of shape [q].
    """
    X = _finite_array("X", X, 2)
    n, d = X.shape
    if n < 1:
        raise ValueError("X must hold at least one point (one row), got 0 rows")
    y = _finite_array("y", y, 1)
    if y.shape != (n,):
        raise ValueError(f"y must have one target per row of X, shape ({n},), got {y.shape}")
    a = _finite_array("a", a, 1)
    if a.shape != (d,):
        raise ValueError(f"a must be a direction in R^d with d = X.shape[1] = {d}, shape ({d},), got {a.shape}")
    X_query = _finite_array("X_query", X_query, 2)
    if X_query.shape[1] != d:
        raise ValueError(f"X_query must have d = {d} columns like X, got shape {X_query.shape}")
    z = X @ a
    order = np.argsort(z, kind="stable")
    z, y = z[order], y[order]
    if n > 1 and not (np.diff(z) > 0).all():
        i = int(np.flatnonzero(np.diff(z) <= 0)[0])
        raise ValueError(f"a gives equal projections <a, x_i> for rows {int(order[i])} and {int(order[i + 1])} "
                         "of X; the projections must be distinct (almost every direction a works)")
    b = np.concatenate([[z[0] - 1.0], (z[:-1] + z[1:]) / 2])
    A = np.maximum(z[:, None] - b[None, :], 0.0)
    w = np.linalg.solve(A, y)
    return np.maximum((X_query @ a)[:, None] - b[None, :], 0.0) @ w


@dataclass(frozen=True)
class Run:
    """One training run of a randomization test."""

    kind: str
    fraction: float  # fraction of corrupted labels (1.0 for "random labels", 0.0 otherwise)
    history: train.History
    n_params: int
    steps_to_fit: int | None  # first evaluation step with 100% training accuracy (None: never)

    @property
    def train_acc(self) -> float:
        return self.history.final("train_acc")

    @property
    def test_acc(self) -> float:
        return self.history.final("test_acc")

    @property
    def gap(self) -> float:
        """Observed generalization gap of the 0-1 loss: test error minus training error."""
        return self.train_acc - self.test_acc


def variant(d: _data.Data, kind: str, fraction: float = 1.0, seed: int = 0) -> _data.Data:
    """The training set of ``d`` corrupted as ``kind`` (one of ``KINDS``); the test split is kept."""
    kind = validate.one_of("kind", kind, KINDS)
    if kind == "true labels":
        return d
    if kind == "random labels":
        if d.num_classes is None:
            raise ValueError("random labels need a classification task (num_classes is None)")
        y = _data.corrupt_labels(d.y_train, fraction, d.num_classes, seed=seed)
        return d.with_train(y_train=y, name=f"{d.name}, {fraction:.0%} random labels")
    if kind == "random pixels":
        return d.with_train(x_train=random_pixels(d.x_train, seed=seed), name=f"{d.name}, random pixels")
    return d.with_train(x_train=_data.gaussian_like(d.x_train, seed=seed), name=f"{d.name}, gaussian inputs")


def random_pixels(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Each image with its pixels moved by its own random permutation (Zhang et al. 2017, "random
    pixels"). Images ``[n, C, H, W]`` keep a pixel's channels together; vectors ``[n, d]`` permute
    their entries."""
    seed = validate.integer("seed", seed)
    if x.dim() not in (2, 4):
        raise ValueError(f"x must be images [n, C, H, W] or vectors [n, d], got shape {tuple(x.shape)}")
    g = torch.Generator().manual_seed(seed)
    flat = x.reshape(len(x), x.shape[1], -1) if x.dim() == 4 else x[:, None, :]
    perm = torch.argsort(torch.rand(len(x), flat.shape[-1], generator=g), dim=1).to(x.device)
    out = torch.gather(flat, 2, perm[:, None, :].expand_as(flat))
    return out.reshape(x.shape)


def _model(d: _data.Data, arch: str, widths: Sequence[int], channels: Sequence[int], hidden: int,
           activation: str, seed: int) -> nn.Module:
    """A fresh network for ``d``: ``models.mlp`` on flattened inputs, or ``models.cnn`` on images."""
    arch = validate.one_of("arch", arch, ARCHS)
    out, dev = d.num_classes or 1, d.x_train.device  # the network lives where the data are (a GPU too)
    if arch == "mlp":
        return models.mlp(d.d_in, list(widths), out, activation=activation, seed=seed, device=dev)
    if d.x_train.dim() != 4 or d.x_train.shape[2] != d.x_train.shape[3]:
        raise ValueError(f"arch='cnn' needs square images [n, C, H, W], got x_train of shape {tuple(d.x_train.shape)}")
    return models.cnn(d.x_train.shape[1], out, channels=tuple(channels), image_size=d.x_train.shape[2],
                      hidden=hidden, activation=activation, seed=seed, device=dev)


def run(d: _data.Data, kind: str = "true labels", fraction: float = 1.0, *, widths: Sequence[int] = (512, 512),
        activation: str = "relu", seed: int = 0, progress: bool = False, arch: str = "mlp",
        channels: Sequence[int] = (32, 64), hidden: int = 128, **fit_kwargs) -> Run:
    """Train a fresh network (PyTorch's default init, seeded) on ``variant(d, kind, ...)``: an MLP of
    hidden ``widths`` (``arch="mlp"``), or ``models.cnn(..., channels, hidden)`` on images (``"cnn"``,
    the CIFAR-10 experiment of Zhang et al.)."""
    dv = variant(d, kind, fraction, seed=seed)
    model = _model(d, arch, widths, channels, hidden, activation, seed)
    hist = train.fit(model, dv, seed=seed, progress=progress,
                     desc=f"{kind} {fraction:.0%}" if kind == "random labels" else kind, **fit_kwargs)
    frac = fraction if kind == "random labels" else 0.0
    return Run(kind, frac, hist, models.num_params(model), hist.first_step_reaching("train_acc", 1.0))


def label_noise_sweep(d: _data.Data, fractions: Sequence[float], *, widths: Sequence[int] = (512, 512),
                      activation: str = "relu", seed: int = 0, progress: bool = False, arch: str = "mlp",
                      channels: Sequence[int] = (32, 64), hidden: int = 128, **fit_kwargs) -> list[Run]:
    """``run(d, "random labels", f, ...)`` for each f in ``fractions`` (0 = true labels), trained at once.

    The runs differ only in their labels, so they train as one ``train.fit_ensemble`` (same
    initialization, same minibatch order, own labels each): the same computation as separate runs up
    to float rounding, which over hundreds of steps can move ``steps_to_fit`` by an evaluation
    interval. Measured on the lab's cpu scale (six 64-512-512-10 nets, 800 steps, 2 cores): 1.3-1.5x
    faster than six runs.
    """
    fractions = [validate.probability(f"fractions[{i}]", f) for i, f in enumerate(fractions)]
    if not fractions:
        raise ValueError("fractions=[] must hold at least one fraction in [0, 1]")
    variants = [variant(d, "random labels", f, seed=seed) for f in fractions]
    nets = [_model(d, arch, widths, channels, hidden, activation, seed) for _ in fractions]
    res = train.fit_ensemble(nets, variants, seed=seed, progress=progress, desc="label-noise sweep", **fit_kwargs)
    n_params = models.num_params(nets[0])
    return [Run("random labels", f, h, n_params, h.first_step_reaching("train_acc", 1.0))
            for f, h in zip(fractions, res.histories)]
