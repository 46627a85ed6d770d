r"""The empirical NTK of a fully connected net without per-sample Jacobians (the structured path of
``ntk.empirical_ntk``).

For a layer :math:`z_l = c_l W_l h_{l-1} + s_l b_l` (``c_l``, ``s_l`` fixed scales: 1 for ``nn.Linear``,
the NTK parametrization's :math:`\sqrt{s_w/n}` and :math:`\sqrt{s_b}` for ``ntk.NTKMLP``), the
gradient of output j with respect to :math:`W_l` is the outer product :math:`c_l\, g_l^j h_{l-1}^T`,
with :math:`g_l^j = \partial f_j / \partial z_l` the backpropagated signal. So the layer's share of
the kernel factorizes (Jacot et al. 2018, the recursion behind their Theorem 1; Novak et al. 2022,
"Fast finite width neural tangent kernel", the structured-derivatives idea):

.. math::
    \Theta(x, x')_{jj'} = \sum_l \big(g_l^j(x) \cdot g_l^{j'}(x')\big)
        \big(c_l^2\, h_{l-1}(x) \cdot h_{l-1}(x') + s_l^2\big),

each term a product of two Gram matrices. Nothing of size (samples x parameters) exists: memory is
the forward activations (samples x width per layer) plus the n1 x n2 (x k x k) kernel, and the cost
is one forward and one backward pass per input set, plus one Gram product per layer.

The signals start at the identity over the k outputs and go back by :math:`g \leftarrow (g W_l) c_l`
through a layer and :math:`g \leftarrow g \odot \phi'(z)` through an activation, with
:math:`\phi'` from autograd on the elementwise activation (so any function of the activation table,
or ``NTKMLP``'s callable, works unchanged).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

import torch
from torch import nn

from . import layers


@dataclass(frozen=True)
class _Affine:
    """z = w_scale * h W^T + b_scale * b; ``train_w`` / ``train_b``: the parameter is in the kernel."""

    weight: torch.Tensor
    bias: torch.Tensor | None
    w_scale: float
    b_scale: float
    train_w: bool
    train_b: bool


@dataclass(frozen=True)
class _Elementwise:
    fn: Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class _Flatten:
    start_dim: int
    end_dim: int


_Op = Union[_Affine, _Elementwise, _Flatten]
Affine, Elementwise = _Affine, _Elementwise  # for ntk.NTKMLP, which describes itself


class NotStructured(ValueError):
    """The model (or this input) is not a fully connected net the layer-wise formula covers."""


def plan(model: nn.Module) -> tuple[list[_Op] | None, str]:
    """An ``nn.Sequential`` MLP as a list of ops, or (None, why not). (``ntk.NTKMLP`` builds its own.)"""
    try:
        parsed = layers.parse_mlp(model, dropout=True)
    except layers.UnsupportedLayer as e:
        return None, str(e)
    if any(isinstance(m, nn.Dropout) and m.training and m.p > 0 for m in model.modules()):
        return None, "a Dropout layer is in training mode (its mask is random per sample)"
    seen: set[int] = set()
    ops = []
    for layer in parsed:
        if isinstance(layer, layers.Linear):
            if id(layer.weight) in seen:
                # A module used twice shares its parameters: its gradient is a sum over both uses.
                return None, f"the Linear layer {layer.name!r} is used more than once"
            seen.add(id(layer.weight))
            b = layer.bias
            ops.append(_Affine(layer.weight, b, 1.0, 1.0, layer.weight.requires_grad,
                               b is not None and b.requires_grad))
        elif isinstance(layer, layers.Activation):
            ops.append(_Elementwise(layer.fn))
        else:
            ops.append(_Flatten(layer.start_dim, layer.end_dim))
    return ops, ""


ELEMENTWISE = frozenset(a.fn for a in layers.ACTIVATIONS.values())


def _forward(ops: Sequence[_Op], x: torch.Tensor):
    """Per affine op: its input h and, for each later activation, phi'(z); and the output width."""
    saved: list[torch.Tensor | None] = []  # for each op: h (affine) or phi'(z) (elementwise)
    h = x
    for op in ops:
        if isinstance(op, _Flatten):
            h = h.flatten(op.start_dim, op.end_dim)
            saved.append(None)
        elif isinstance(op, _Affine):
            if h.dim() != 2:
                raise NotStructured(f"a Linear layer receives a {h.dim()}-D input; the layer-wise formula needs [batch, features]")
            saved.append(h)
            h = op.w_scale * (h @ op.weight.detach().T)
            if op.bias is not None:
                h = h + op.b_scale * op.bias.detach()
        else:
            with torch.enable_grad():
                z = h.detach().requires_grad_(True)
                a = op.fn(z)
                (d,) = torch.autograd.grad(a.sum(), z)
            saved.append(d)
            h = a.detach()
    return saved, h


def empirical_ntk(ops: Sequence[_Op], x1: torch.Tensor, x2: torch.Tensor | None, reduce: str) -> torch.Tensor:
    """The kernel of ``ntk.empirical_ntk`` (same ``reduce`` conventions) by the layer-wise formula."""
    with torch.no_grad():
        s1, out1 = _forward(ops, x1)
        s2, out2 = (s1, out1) if x2 is None else _forward(ops, x2)
        if out1.dim() > 2:
            raise NotStructured(f"the model's output has shape {tuple(out1.shape)}; expected [batch] or [batch, k]")
        k = 1 if out1.dim() == 1 else out1.shape[1]
        n1, n2 = out1.shape[0], out2.shape[0]
        # Signals as [n * k, width] (sample-major), so that going back through a layer is one GEMM.
        eye = torch.eye(k, dtype=out1.dtype, device=out1.device)
        g1 = eye.repeat(n1, 1)
        g2 = g1 if x2 is None else eye.repeat(n2, 1)
        full = reduce == "full"
        theta = out1.new_zeros((n1, n2, k, k) if full else (n1, n2))
        for i in range(len(ops) - 1, -1, -1):
            op = ops[i]
            if isinstance(op, _Elementwise):
                g1 = (g1.view(n1, k, -1) * s1[i].unsqueeze(1)).view(n1 * k, -1)
                g2 = g1 if x2 is None else (g2.view(n2, k, -1) * s2[i].unsqueeze(1)).view(n2 * k, -1)
                continue
            if isinstance(op, _Flatten):
                continue
            if op.train_w or op.train_b:
                if full:
                    gg = (g1 @ g2.T).view(n1, k, n2, k).permute(0, 2, 1, 3)
                else:  # the sum over outputs j of g^j(x) . g^j(x')
                    gg = g1.view(n1, -1) @ g2.view(n2, -1).T
                scale = gg.new_zeros(n1, n2)
                if op.train_w:
                    scale = scale + op.w_scale ** 2 * (s1[i] @ s2[i].T)
                if op.train_b:
                    scale = scale + op.b_scale ** 2
                theta = theta + (gg * scale[:, :, None, None] if full else gg * scale)
            if any(isinstance(o, _Affine) for o in ops[:i]):  # signals are needed further back
                w = op.weight.detach()
                g1 = op.w_scale * (g1 @ w)
                g2 = g1 if x2 is None else op.w_scale * (g2 @ w)
        return theta / k if reduce == "mean" else theta
