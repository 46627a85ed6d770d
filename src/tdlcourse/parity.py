"""Parities defeat gradient-based learning: the gradient barely depends on the target.

For chapter 11 of the course plan, failures of gradient-based learning (not built yet).

Setting (Shalev-Shwartz, Shamir, Shammah 2017, "Failures of gradient-based deep learning", Sec. 2.1):
x uniform on {-1, +1}^n, targets the 2^n parities chi_S(x) = prod_{i in S} x_i (S subset of [n],
the empty set included), a model f_w(x) with scalar output, and the population loss
F_S(w) = E_x l(f_w(x), chi_S(x)). The parities are orthonormal in L2(x), so by Bessel's inequality

    Var_S(grad F_S(w)) = E_S ||grad F_S(w) - E_S' grad F_S'(w)||^2 <= G(w)^2 / 2^n,
    G(w)^2 = E_x ||d f_w(x) / d w||^2      (squared loss l = (1/2)(f - y)^2, Theorem 1),

so for large n the full-batch gradient carries almost no information on which parity is the target.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from . import validate

__all__ = ["parity_gradient_variance", "ParityGradientVariance", "parity_inputs", "LOSSES", "MAX_N"]

MAX_N = 12
LOSSES = ("squared", "logistic")
# b_max = sup |b(f)| where dl/df (f, y) = a(f) + y b(f) for y in {-1, +1}
_B_MAX = {"squared": 1.0, "logistic": 0.5}


@dataclass(frozen=True)
class ParityGradientVariance:
    """Exact statistics over all 2^n parity targets of the full-batch gradient g_S = grad_w F_S(w).

    ``variance`` = E_S ||g_S - E_S g_S||^2; ``mean_grad_norm`` = ||E_S g_S||; ``mean_sq_grad_norm``
    = E_S ||g_S||^2 (= variance + mean_grad_norm^2); ``g2`` = G^2 = E_x ||d f / d w||^2;
    ``bound`` = b_max^2 G^2 / 2^n, the theorem's bound (b_max = 1 for the squared loss, 1/2 for the
    logistic loss); ``n``; ``n_targets`` = 2^n; ``n_params``; ``loss``.
    """

    variance: float
    mean_grad_norm: float
    mean_sq_grad_norm: float
    g2: float
    bound: float
    n: int
    n_targets: int
    n_params: int
    loss: str


def parity_inputs(n: int, dtype: torch.dtype = torch.float32, device=None) -> torch.Tensor:
    """All 2^n points of {-1, +1}^n as a [2^n, n] tensor; row k has x_i = 1 - 2 * bit_i(k), so row 0
    is the all-ones point."""
    n = validate.nonnegative_int("n", n)
    k = torch.arange(1 << n, device=device)
    bits = (k[:, None] >> torch.arange(n, device=device)) & 1
    return (1 - 2 * bits).to(dtype)


def _loss_parts(f: torch.Tensor, loss: str) -> tuple[torch.Tensor, torch.Tensor]:
    """dl/df (f, y) = a(f) + y b(f) for y = +-1."""
    if loss == "squared":                  # l = (f - y)^2 / 2: dl/df = f - y
        return f, -torch.ones_like(f)
    # l = ln(1 + exp(-y f)): dl/df = -y sigmoid(-y f)
    return 0.5 * (torch.sigmoid(f) - torch.sigmoid(-f)), -0.5 * torch.ones_like(f)


def parity_gradient_variance(model: nn.Module, n: int, loss: str = "squared", *,
                             chunk: int | None = None) -> ParityGradientVariance:
    r"""Exact variance across the 2^n parity targets of the full-batch gradient (Shalev-Shwartz,
    Shamir, Shammah 2017, Thm 1), by enumerating all 2^n inputs.

    With per-input gradients g(x) = d f_w(x) / d w and dl/df (f, y) = a(x) + y b(x) (squared loss
    l = (f - y)^2 / 2: a = f, b = -1; logistic loss l = ln(1 + e^{-y f}): a = (sigma(f) - sigma(-f)) / 2,
    b = -1/2), the gradient for target chi_S is g_S = E_x[a g] + E_x[chi_S(x) b(x) g(x)]. The 2^n
    characters are orthogonal (Walsh-Hadamard) and sum_S chi_S(x) = 2^n [x = 1], so, with N = 2^n and
    v(x) = b(x) g(x), Parseval gives the exact values

    .. math:: \mathrm{Var}_S(g_S) = \frac{1}{N} \mathbb E_x \|v(x)\|^2 - \frac{1}{N^2}\|v(\mathbf 1)\|^2,
              \qquad \mathbb E_S\, g_S = \mathbb E_x[a g] + \frac{1}{N} v(\mathbf 1),

    which never exceed b_max^2 E_x||g||^2 / N. Per-input gradients come from ``torch.func`` on the
    parameters' device and dtype (accumulated in float64), ``chunk`` inputs at a time; the model is
    not modified (parameters and buffers are passed as copies; its train/eval mode is used as is).
    The model must map a [B, n] batch to [B] or [B, 1].
    """
    n = validate.integer("n", n, lo=1, hi=MAX_N)  # all 2^n inputs and targets are enumerated
    loss = validate.one_of("loss", loss, LOSSES)
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters")
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    p0 = next(iter(params.values()))
    n_params = sum(p.numel() for p in params.values())
    N = 1 << n
    if chunk is None:
        chunk = max(1, min(N, (1 << 25) // max(n_params, 1)))  # ~256 MB of float64 gradients
    chunk = validate.positive_int("chunk", chunk)

    def f_single(p, x):
        out = functional_call(model, (p, buffers), (x[None],))
        if out.numel() != 1:
            raise ValueError(f"model must output one number per input ([B] or [B, 1]); got shape {tuple(out.shape)}")
        return out.reshape(())

    per_example = vmap(grad(f_single), in_dims=(None, 0))
    X = parity_inputs(n, p0.dtype, p0.device)
    try:
        with torch.no_grad():
            f_all = functional_call(model, (params, buffers), (X,)).reshape(N, -1)
    except RuntimeError as err:
        raise ValueError(f"model could not be applied to a [{N}, {n}] batch of parity inputs (n={n}): {err}") from err
    if f_all.shape[1] != 1:
        raise ValueError(f"model must output one number per input ([B] or [B, 1]); got {f_all.shape[1]}")
    a_all, b_all = _loss_parts(f_all[:, 0].double(), loss)

    sum_v2 = sum_g2 = 0.0
    sum_ag = torch.zeros(n_params, dtype=torch.float64, device=p0.device)
    v_one = None
    for s in range(0, N, chunk):
        g = per_example(params, X[s:s + chunk])
        g = torch.cat([g[k].reshape(g[k].shape[0], -1) for k in params], dim=1).double()
        a, b = a_all[s:s + chunk], b_all[s:s + chunk]
        g2 = (g * g).sum(dim=1)
        sum_g2 += float(g2.sum())
        sum_v2 += float((b * b * g2).sum())
        sum_ag += (a[:, None] * g).sum(dim=0)
        if v_one is None:
            v_one = b[0] * g[0]            # row 0 is x = (1, ..., 1)
    variance = sum_v2 / N / N - float((v_one * v_one).sum()) / N ** 2
    mean = sum_ag / N + v_one / N
    mean_norm = float(mean.norm())
    g2 = sum_g2 / N
    return ParityGradientVariance(
        variance=max(variance, 0.0), mean_grad_norm=mean_norm, mean_sq_grad_norm=max(variance, 0.0) + mean_norm ** 2,
        g2=g2, bound=_B_MAX[loss] ** 2 * g2 / N, n=n, n_targets=N, n_params=n_params, loss=loss)
