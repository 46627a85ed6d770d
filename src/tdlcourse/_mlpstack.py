"""K stacked plain MLPs: forward pass and hand-written backpropagation with batched matrix products.

The ``"bmm"`` engine of ``train.fit_ensemble``. A ``Plan`` lists the layers of an ``nn.Sequential`` of
``Linear`` layers and elementwise activations (an optional leading ``Flatten``), read with
``layers.parse_mlp``; parameters come as stacked tensors, ``W [K, out, in]`` and ``b [K, out]``. For a
layer z = h W^T + b with upstream gradient g = dL/dz (all K models at once, B samples each):

    dL/dW = g^T h,    dL/db = sum_B g,    dL/dh = g W,

and an activation a = phi(z) maps g_a to g_z = g_a * phi'(z) with the same ATen kernels autograd
uses (``tanh_backward``, ``threshold_backward``...), so the gradients equal autograd's up to the
order of floating-point sums. Writing the backward pass out saves autograd's graph, its saved-tensor
copies and the bias broadcasts; on CPUs the small-model regime is bound by per-operation overhead and
memory traffic, and this cut the small benchmark's time by 44% (benchmarks/train_ensemble.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, NamedTuple, Sequence, Union

import torch
from torch import nn
from torch.nn import functional as F

from . import layers

CPU_CHUNK_BYTES = 2 ** 19  # one activation array of a model chunk on CPU: a quarter of a 2 MB L2 cache
WIDE_MIN_FAN_IN = 32  # below this the wide GEMM saves less than its layout copy costs
# Chunk at least this many first-layer columns per thread when the input is shared and wide, so the
# first-layer products have work to split across threads. Measured on the medium benchmark
# (784-64-64-10, 2048 samples): chunks of 1 to 16 models ran within 3% of each other with 1 or 2
# threads, so this is a floor, not a tuned value.
WIDE_COLUMNS_PER_THREAD = 128

# The activations of ``layers.ACTIVATIONS`` that have an ATen backward kernel (and a module to find).
BACKPROP_ACTIVATIONS = tuple(name for name, a in layers.ACTIVATIONS.items()
                             if a.backward is not None and a.module not in (None, nn.Identity))


# --------------------------------------------------------------------------------------------------
# the plan: what to compute, layer by layer


class FlattenOp(NamedTuple):
    """h [B, ...] -> [B, features] (a leading ``nn.Flatten()``)."""


class LinearOp(NamedTuple):
    """z = h W^T + b; ``weight`` and ``bias`` index the parameter list (``bias`` None: no bias)."""

    weight: int
    bias: int | None


class ActivationOp(NamedTuple):
    """a = phi(z) elementwise, and g_z = ``backward(g_a, saved, out)`` with ATen's backward kernel.

    ``forward_`` is phi in place (None where torch has none); ``reads`` says what the backward kernel
    needs saved: ``"out"`` = phi(z) or ``"in"`` = z. ``out`` (may be g_a itself) avoids a new buffer.
    """

    forward: Callable[[torch.Tensor], torch.Tensor]
    forward_: Callable[[torch.Tensor], torch.Tensor] | None
    backward: Callable[..., torch.Tensor]
    reads: str


Op = Union[FlattenOp, LinearOp, ActivationOp]


@dataclass(frozen=True)
class Plan:
    """The ops of a plain MLP in forward order (see ``plan``)."""

    ops: tuple[Op, ...]

    def first_linear(self) -> LinearOp:
        return next(op for op in self.ops if isinstance(op, LinearOp))

    def ends_with_linear(self) -> bool:
        return isinstance(self.ops[-1], LinearOp)


def _backward_kernel(op, kw: dict) -> Callable[..., torch.Tensor]:
    """g_z from g_a with the ATen backward kernel ``op`` (keyword arguments ``kw``)."""
    def backward(g: torch.Tensor, saved: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
        return op.default(g, saved, **kw) if out is None else op.grad_input(g, saved, grad_input=out, **kw)
    return backward


def _activation_op(spec: layers.Activation) -> ActivationOp:
    info = spec.info
    # An in-place phi only where it takes no arguments (relu_, tanh_, sigmoid_).
    return ActivationOp(spec.fn, None if spec.kwargs else info.inplace,
                        _backward_kernel(info.backward, spec.backward_kwargs), info.saves)


def plan(model: nn.Module, names: list[str], x_dim: int) -> Plan | None:
    """The ``Plan`` of a plain MLP, or None when the model is anything else (the torch.func engine).

    Plain: an ``nn.Sequential`` (``layers.parse_mlp``) of ``Linear`` layers, activations with an ATen
    backward kernel (``BACKPROP_ACTIVATIONS``) and an optional leading ``Flatten()``, on 2-D inputs
    (``x_dim`` = 2, or more before the Flatten); every parameter trainable (``names``, the order of
    the parameter list) and no module used twice.
    """
    try:
        specs = layers.parse_mlp(model, activations=BACKPROP_ACTIVATIONS)
    except layers.UnsupportedLayer:
        return None
    index = {n: i for i, n in enumerate(names)}
    if len(index) != sum(1 for _ in model.parameters()):
        return None  # frozen parameters
    if sum(1 for _ in model.modules(remove_duplicate=False)) != sum(1 for _ in model.modules()):
        return None  # a module used twice: the parser lists it once, autograd would sum its gradients
    ops: list[Op] = []
    features = x_dim
    for i, spec in enumerate(specs):
        if isinstance(spec, layers.Flatten):
            if i != 0 or spec.start_dim != 1 or spec.end_dim != -1:
                return None
            ops.append(FlattenOp())
            features = 2
        elif isinstance(spec, layers.Linear):
            if features != 2:
                return None
            ops.append(LinearOp(index[spec.weight_name], None if spec.bias is None else index[spec.bias_name]))
        else:
            ops.append(_activation_op(spec))
    return Plan(tuple(ops))


class Workspace:
    """Buffers reused from step to step, keyed by role and shape.

    Fresh half-megabyte arrays every step cost page faults (glibc returns freed memory to the system):
    measured 300 faults and ~0.5 ms per step of the small benchmark, a sixth of its time. A tensor handed
    out is overwritten by the next pass that uses the same workspace.
    """

    def __init__(self) -> None:
        self._bufs: dict[tuple, torch.Tensor] = {}

    def get(self, role: object, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        key = (role, tuple(shape), like.dtype, like.device)
        t = self._bufs.get(key)
        if t is None:
            t = self._bufs[key] = torch.empty(shape, dtype=like.dtype, device=like.device)
        return t


# --------------------------------------------------------------------------------------------------
# forward pass and losses


def _linear(h: torch.Tensor, shared: bool, w: torch.Tensor, b: torch.Tensor | None,
            ws: Workspace | None = None, role: object = None, classes_first: bool = False) -> torch.Tensor:
    """z = h W^T + b [K, B, out] for K stacked layers; h is [B, in] (shared by all models) or [K, B, in].

    ``classes_first`` returns z^T = W h^T + b, [K, out, B] (the layout the batched cross-entropy
    reduces fastest). With a workspace the result lands in a reused buffer; without one (autograd)
    nothing is done in place.
    """
    k, o, i = w.shape
    n = h.shape[-2]
    if ws is None and shared and i >= WIDE_MIN_FAN_IN and not classes_first:
        # One wide product x W_cat^T for all K first layers, then a model-major copy (elementwise ops
        # and their backward on strided views are much slower). The hand-written pass broadcasts
        # instead (same GEMM rate, measured, and no copies of W or z).
        z = F.linear(h, w.reshape(k * o, i), None if b is None else b.reshape(k * o))
        return z.view(n, k, o).transpose(0, 1).contiguous()
    if shared:  # broadcast the input (stride 0) and use the batched product
        h = h.expand(k, *h.shape)
    if classes_first or o == 1:  # for out = 1 also the fast form: MKL's [B, i] @ [i, 1] is a slow gemv
        z = torch.bmm(w, h.transpose(1, 2), out=None if ws is None else ws.get(role, (k, o, n), w))
        if b is not None:
            z = z + b.unsqueeze(2) if ws is None else z.add_(b.unsqueeze(2))
        return z if classes_first else z.view(k, n, 1)
    if ws is None:
        return torch.bmm(h, w.transpose(1, 2)) if b is None else torch.baddbmm(b.unsqueeze(1), h, w.transpose(1, 2))
    z = torch.bmm(h, w.transpose(1, 2), out=ws.get(role, (k, n, o), w))
    return z if b is None else z.add_(b.unsqueeze(1))


def forward(plan: Plan, params: Sequence[torch.Tensor], x: torch.Tensor, shared: bool,
            ws: Workspace | None = None) -> torch.Tensor:
    """Outputs [K, B, d_out] of K stacked MLPs on inputs x ([B, ...] shared or [K, B, ...]).

    Without a workspace it is autograd-safe; with one (evaluation) it writes into reused buffers
    and applies activations in place, and the output lives until the workspace's next use.
    """
    h, own = x, False
    for j, op in enumerate(plan.ops):
        if isinstance(op, LinearOp):
            h = _linear(h, shared, params[op.weight], None if op.bias is None else params[op.bias], ws, j)
            shared, own = False, ws is not None
        elif isinstance(op, ActivationOp):
            h = op.forward_(h) if own and op.forward_ is not None else op.forward(h)
        else:
            h = h.flatten(1) if shared else h.flatten(2)
    return h


def batched_loss(loss: str | Callable, lf: Callable, out: torch.Tensor, y: torch.Tensor,
                 y_shared: bool) -> torch.Tensor:
    """Per-model mean losses [K] of outputs [K, B, ...] against targets [B, ...] or [K, B, ...]."""
    k = out.shape[0]
    if out.dtype in (torch.float16, torch.bfloat16):
        out = out.float()  # as autocast does for F.cross_entropy / F.mse_loss: losses in float32
    if loss == "cross_entropy" and not torch.is_floating_point(y) and out.dim() == 3 and out.shape[-1] <= 64:
        # -log softmax(o)_y = logsumexp(o) - o_y, with the classes as the leading (slow) axis so that the
        # reductions run vectorized over samples (F.cross_entropy with ten classes is ~5x slower on CPUs).
        yk = (y.expand(k, *y.shape) if y_shared else y).reshape(1, -1)
        o = out.reshape(-1, out.shape[-1]).t().contiguous()
        z = o - o.detach().amax(0)
        per = z.exp().sum(0).log() - z.gather(0, yk).squeeze(0)
        return per.view(k, -1).mean(1)
    if loss == "cross_entropy" and not torch.is_floating_point(y):
        yk = y.expand(k, *y.shape) if y_shared else y
        per = F.cross_entropy(out.reshape(-1, out.shape[-1]), yk.reshape(-1), reduction="none")
        return per.view(k, -1).mean(1)
    if loss == "mse":
        yk = y.expand(k, *y.shape) if y_shared else y
        return (out.reshape(yk.shape) - yk).square().reshape(k, -1).mean(1)
    return torch.vmap(lf, in_dims=(0, None if y_shared else 0))(out, y)


def _uses_classes_first(loss: str | Callable, y: torch.Tensor) -> bool:
    return loss == "cross_entropy" and not torch.is_floating_point(y)


def cross_entropy_classes_first(out_t: torch.Tensor, y: torch.Tensor,
                                y_shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropies [K] and their gradients [K, C, B] from logits in the layout [K, C, B].

    L_k = (1/B) sum_b [logsumexp_c o_cb - o_{y_b b}],  dL_k/do_cb = (softmax(o_b)_c - [c = y_b]) / B.
    ``out_t`` is overwritten (it becomes the gradient).
    """
    k, _, n = out_t.shape
    yk = (y.expand(k, n) if y_shared else y).unsqueeze(1)
    z = out_t.sub_(out_t.amax(1, keepdim=True))
    z_y = z.gather(1, yk)  # z_y, read before z is reused
    e = z.exp_()
    s = e.sum(1, keepdim=True)
    losses = (s.log() - z_y).squeeze(1).mean(1)
    g = e.div_(s).scatter_add_(1, yk, torch.full(yk.shape, -1.0, dtype=e.dtype, device=e.device))
    return losses, g.mul_(1.0 / n)


def loss_and_grad(loss: str | Callable, lf: Callable, out: torch.Tensor, y: torch.Tensor,
                  y_shared: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Losses [K] (as ``batched_loss``) and their gradients dL_k/d out [K, B, ...].

    Closed forms for the built-in losses: squared error 2 (o - y) / (B d_out); cross-entropy with
    integer labels (softmax(o) - onehot(y)) / B. Any other loss goes through autograd.
    """
    k = out.shape[0]
    if loss == "mse":
        yk = y.expand(k, *y.shape) if y_shared else y
        r = out.reshape(yk.shape) - yk
        losses = r.square().reshape(k, -1).mean(1)
        return losses, r.mul_(2.0 / (r.numel() // k)).view(out.shape)
    if loss == "cross_entropy" and not torch.is_floating_point(y) and out.dim() == 3:
        c = out.shape[-1]
        yk = (y.expand(k, *y.shape) if y_shared else y).reshape(1, -1)
        o = out.reshape(-1, c).t().contiguous()  # classes leading, as in batched_loss
        z = o.sub_(o.amax(0))
        e = z.exp()
        s = e.sum(0)
        losses = (s.log() - z.gather(0, yk).squeeze(0)).view(k, -1).mean(1)
        p = e.div_(s).scatter_add_(0, yk, torch.full_like(yk, -1, dtype=e.dtype)).mul_(1.0 / out.shape[1])
        return losses, p.t().contiguous().view(out.shape)
    leaf = out.detach().requires_grad_(True)  # any other loss: autograd on the (small) outputs
    with torch.enable_grad():
        losses = batched_loss(loss, lf, leaf, y, y_shared)
        (g,) = torch.autograd.grad(losses.sum(), leaf)
    return losses.detach(), g


# --------------------------------------------------------------------------------------------------
# hand-written backpropagation


class _SavedLinear(NamedTuple):
    """What the backward pass of a linear layer reads: its input h ([B, in] if shared, else [K, B, in])."""

    op: LinearOp
    h: torch.Tensor
    shared: bool


class _SavedActivation(NamedTuple):
    """What the backward kernel of an activation reads: z or phi(z) (``op.reads``)."""

    op: ActivationOp
    saved: torch.Tensor


@torch.no_grad()
def forward_backward(plan: Plan, params: Sequence[torch.Tensor], x: torch.Tensor, shared: bool,
                     loss: str | Callable, lf: Callable, y: torch.Tensor, y_shared: bool,
                     ws: Workspace) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Per-model losses [K] and their gradients (one tensor per entry of ``params``), backpropagated by hand.

    The loss gradient comes from ``loss_and_grad`` (or, for cross-entropy after a final linear layer,
    from ``cross_entropy_classes_first`` on logits computed directly in the layout [K, C, B]);
    everything before it follows the formulas in the module docstring. Parameters are plain tensors
    (no autograd); the forward pass runs once. The returned tensors live in ``ws`` until its next use.
    """
    classes_first = plan.ends_with_linear() and _uses_classes_first(loss, y)
    out, saved, own = _forward_saving(plan, params, x, shared, ws, classes_first)
    if classes_first:
        losses, g_t = cross_entropy_classes_first(out, y, y_shared)  # g_t = (dL/dz)^T per model
        g = None
    else:
        losses, g = loss_and_grad(loss, lf, out, y, y_shared)
        g_t = None
        own = g.is_contiguous()  # autograd's gradient may be a broadcast view
    return losses, _backward(plan, saved, params, g, g_t, own, ws)


def _forward_saving(plan: Plan, params: Sequence[torch.Tensor], x: torch.Tensor, shared: bool, ws: Workspace,
                    classes_first: bool) -> tuple[torch.Tensor, list, bool]:
    """The forward pass, keeping what the backward pass reads; returns (output, saved, own)."""
    saved: list[_SavedLinear | _SavedActivation] = []
    last = len(plan.ops) - 1
    h, own = x, False  # own: h is a buffer of this pass that nothing saved, so an activation may overwrite it
    for j, op in enumerate(plan.ops):
        if isinstance(op, LinearOp):
            saved.append(_SavedLinear(op, h, shared))
            h = _linear(h, shared, params[op.weight], None if op.bias is None else params[op.bias], ws, j,
                        classes_first and j == last)
            shared, own = False, True
        elif isinstance(op, ActivationOp):
            if op.reads == "in":
                saved.append(_SavedActivation(op, h))
                h, own = op.forward(h), True
            else:  # the output is saved for the backward pass: nothing may overwrite it later
                h, own = op.forward_(h) if own and op.forward_ is not None else op.forward(h), False
                saved.append(_SavedActivation(op, h))
        else:
            h = h.flatten(1) if shared else h.flatten(2)
    return h, saved, own


def _backward(plan: Plan, saved: list, params: Sequence[torch.Tensor], g: torch.Tensor | None,
              g_t: torch.Tensor | None, own: bool, ws: Workspace) -> list[torch.Tensor]:
    """Parameter gradients from the output gradient g [K, B, out] (or its transpose g_t [K, out, B])."""
    grads: list[torch.Tensor | None] = [None] * len(params)
    first = plan.first_linear().weight
    for entry in reversed(saved):
        if isinstance(entry, _SavedActivation):
            g, own = entry.op.backward(g, entry.saved, g if own else None), True
            continue
        wi, bi = entry.op
        h, w = entry.h, params[wi]
        if g_t is None:
            g_t = g.transpose(1, 2)
        # dW = g^T h and db = sum_B g; a shared input is broadcast with stride 0 (per model a
        # full-rate GEMM, measured as fast as one wide product and without its copies).
        k, o, i = w.shape
        hk = h.expand(k, *h.shape) if entry.shared else h
        if i < o:  # narrow fan-in: MKL computes (h^T g)^T about 4x faster than g^T h (fan-in 2, measured)
            dwt = torch.bmm(hk.transpose(1, 2), g_t.transpose(1, 2), out=ws.get(("dWt", wi), (k, i, o), w))
            grads[wi] = dwt.transpose(1, 2)
        else:
            grads[wi] = torch.bmm(g_t, hk, out=ws.get(("dW", wi), w.shape, w))
        if bi is not None:
            grads[bi] = torch.sum(g_t, 2, out=ws.get(("db", bi), params[bi].shape, w))
        if wi == first:
            break
        g, own = torch.bmm(g_t.transpose(1, 2), w, out=ws.get(("dh", wi), (k, h.shape[-2], i), w)), True
        g_t = None
    return grads  # type: ignore[return-value]
