"""How ``fit_ensemble`` computes K models' losses and gradients: one class per engine, same methods.

An engine holds the stacked parameters (``StackedParams``) and answers, for a chunk of models
``rows`` (a slice of the K):

- ``grads_and_losses(rows, batch, out)``: the gradients [rows, P] of the mean losses L_k and the
  losses [rows] on ``batch`` (a ``Split``); ``out`` [rows, P] receives the gradients when the engine
  fills a buffer (``fills_out``), and the optimizer may overwrite what it returns;
- ``outputs(rows, x, x_shared)``: the model outputs [rows, B, ...] (under ``torch.no_grad``);
- ``set_training(flag)``: train or eval mode for layers that care (dropout, batch statistics).

``name`` is what ``EnsembleResult.engine`` reports; ``plan`` is the ``_mlpstack.Plan`` (None for
the general engine).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .. import _mlpstack
from .. import device as _device
from .config import Resolved
from .stacked import Split, StackedParams

ENGINES = ("auto", "func", "bmm")


def make_engine(choice: str, template: nn.Module, params: StackedParams, train: Split,
                run: Resolved) -> FuncEngine | BmmEngine:
    """The engine for ``engine=choice``: ``"bmm"`` for plain MLPs (asked for, or ``"auto"``), else ``"func"``.

    The hand-written backward pass follows float32 (and TF32) only: under bf16 autocast or
    ``torch.compile`` the bmm engine keeps autograd (``BmmAutogradEngine``).
    """
    plan = None
    if choice != "func":
        plan = _mlpstack.plan(template, params.names, train.x.dim() - (0 if train.x_shared else 1))
    if choice == "bmm" and plan is None:
        raise ValueError("engine='bmm' needs a plain MLP (nn.Sequential of Linear, elementwise activations and an "
                         "optional leading Flatten, all parameters trainable, 2-D inputs); use engine='func'")
    if plan is None:
        return FuncEngine(template, params, run)
    if run.backend or run.precision not in ("fp32", "tf32"):
        return BmmAutogradEngine(plan, params, run)
    return BmmEngine(plan, params, run)


class FuncEngine:
    """Any architecture: ``torch.func.grad_and_value`` of the functional model, mapped over the K models
    with ``torch.func.vmap`` (``randomness="different"``: each model draws its own dropout masks)."""

    name = "func"
    plan = None
    fills_out = False  # returns fresh gradients

    def __init__(self, template: nn.Module, params: StackedParams, run: Resolved) -> None:
        self.template, self.params, self.run = template, params, run
        self.device = params.flat.device
        self._grad_and_value = torch.func.grad_and_value(self._loss)
        self._mapped: dict[tuple[bool, bool], Callable] = {}  # per (x shared, y shared)

    def _call(self, f: torch.Tensor, rest: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """One model's outputs with flat parameters f [P] (inside vmap)."""
        return torch.func.functional_call(self.template, (dict(zip(self.params.names, self.params.unflatten(f))), rest),
                                          (x,))

    def _loss(self, f: torch.Tensor, rest: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with _device.autocast(self.run.precision, self.device):
            return self.run.loss_fn(self._call(f, rest, x), y)

    def grads_and_losses(self, rows: slice, batch: Split, out: torch.Tensor | None = None):
        key = (batch.x_shared, batch.y_shared)
        if key not in self._mapped:
            fn = torch.vmap(self._grad_and_value, in_dims=(0, 0, None if key[0] else 0, None if key[1] else 0),
                            randomness="different")
            self._mapped[key] = torch.compile(fn, backend=self.run.backend) if self.run.backend else fn
        b = batch.rows(rows)
        return self._mapped[key](self.params.flat[rows], self.params.rest_rows(rows), b.x, b.y)

    def outputs(self, rows: slice, x: torch.Tensor, x_shared: bool) -> torch.Tensor:
        mapped = torch.vmap(self._call, in_dims=(0, 0, None if x_shared else 0), randomness="different")
        return mapped(self.params.flat[rows], self.params.rest_rows(rows), x)

    def set_training(self, flag: bool) -> None:
        self.template.train(flag)


class BmmEngine:
    """Plain MLPs: batched matrix products with the backward pass written out (``_mlpstack``).

    Closed-form loss gradients, ATen's activation-backward kernels and buffers reused from step to step
    (``_mlpstack.Workspace``); about 2x faster than autograd on CPUs.
    """

    name = "bmm"
    fills_out = True

    def __init__(self, plan: _mlpstack.Plan, params: StackedParams, run: Resolved) -> None:
        self.plan, self.params, self.run = plan, params, run
        self._workspace = _mlpstack.Workspace()
        self._eval_workspace: _mlpstack.Workspace | None = _mlpstack.Workspace()

    def grads_and_losses(self, rows: slice, batch: Split, out: torch.Tensor | None = None):
        f, b = self.params.flat[rows], batch.rows(rows)
        losses, grads = _mlpstack.forward_backward(self.plan, self.params.unflatten(f), b.x, b.x_shared,
                                                   self.run.config.loss, self.run.loss_fn, b.y, b.y_shared,
                                                   self._workspace)
        return torch.cat([g.reshape(f.shape[0], -1) for g in grads], 1, out=out), losses

    def outputs(self, rows: slice, x: torch.Tensor, x_shared: bool) -> torch.Tensor:
        return _mlpstack.forward(self.plan, self.params.unflatten(self.params.flat[rows]), x, x_shared,
                                 self._eval_workspace)

    def set_training(self, flag: bool) -> None:
        pass  # a plain MLP computes the same in both modes


class BmmAutogradEngine(BmmEngine):
    """The bmm engine's batched forward pass with autograd's backward (bf16 autocast, ``torch.compile``)."""

    def __init__(self, plan: _mlpstack.Plan, params: StackedParams, run: Resolved) -> None:
        super().__init__(plan, params, run)
        self._eval_workspace = None  # outputs through autograd-safe (out-of-place) ops
        # Leaves per layer, views of the flat parameters made once per chunk (the optimizer updates them
        # in place): autograd then skips scattering into a zero-filled [K, P] every step.
        self._leaves: dict[tuple[int, int], list[torch.Tensor]] = {}
        self._losses = (torch.compile(self._batched_losses, backend=run.backend, dynamic=False) if run.backend
                        else self._batched_losses)

    def _batched_losses(self, p_list: list[torch.Tensor], x: torch.Tensor, y: torch.Tensor, x_shared: bool,
                        y_shared: bool) -> torch.Tensor:
        with _device.autocast(self.run.precision, self.params.flat.device):
            out = _mlpstack.forward(self.plan, p_list, x, x_shared)
            return _mlpstack.batched_loss(self.run.config.loss, self.run.loss_fn, out, y, y_shared)

    def grads_and_losses(self, rows: slice, batch: Split, out: torch.Tensor | None = None):
        key = (rows.start, rows.stop)
        if key not in self._leaves:
            self._leaves[key] = [v.detach().requires_grad_(True) for v in self.params.unflatten(self.params.flat[rows])]
        leaves, b = self._leaves[key], batch.rows(rows)
        with torch.enable_grad():
            losses = self._losses(leaves, b.x, b.y, b.x_shared, b.y_shared)
            grads = torch.autograd.grad(losses.sum(), leaves)
        return torch.cat([g.reshape(len(losses), -1) for g in grads], 1, out=out), losses.detach()
