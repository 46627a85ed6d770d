r"""Neural tangent kernel and NNGP kernel: empirical (torch.func) and analytic (the planned chapter 8).

Convention (NTK parametrization, Jacot et al. 2018): a fully connected net with ``depth`` hidden
layers of width n and all weights and biases :math:`\sim N(0, 1)`,

.. math::
    h^1 = \sqrt{s_w}\, W^1 x + \sqrt{s_b}\, b^1, \qquad
    h^{l+1} = \sqrt{s_w / n}\, W^{l+1} \phi(h^l) + \sqrt{s_b}\, b^{l+1}, \qquad f(x) = h^{L+1},

with ``sigma_w2 = s_w`` and ``sigma_b2 = s_b`` used in every layer, the readout included. The input
layer is not divided by the input dimension: it sees :math:`x \cdot x'` itself (pass
:math:`x/\sqrt{d}` for the fan-in convention of neural-tangents). As :math:`n \to \infty`
(Jacot et al. 2018; Lee et al. 2019; Arora et al. 2019):

.. math::
    \Sigma^1 = s_w\, x\cdot x' + s_b, \qquad \Theta^1 = \Sigma^1, \\
    \Sigma^{l+1} = s_w E[\phi(u)\phi(v)] + s_b, \quad
    \dot\Sigma^{l+1} = s_w E[\phi'(u)\phi'(v)], \quad (u, v) \sim N(0, \Sigma^l|_{x,x'}), \\
    \Theta^{l+1} = \Theta^l \dot\Sigma^{l+1} + \Sigma^{l+1};

the NNGP kernel is :math:`\Sigma^{L+1}` and the NTK :math:`\Theta^{L+1}` (per output; the
:math:`k`-output kernel is :math:`\Theta \otimes I_k`). With ``depth=1``, ``sigma_w2=1``,
``sigma_b2=0`` and relu this is the two-layer net of the course's reference values (NNGP 0.304499, NTK 0.471166 at theta = pi/3)
:math:`f(x) = m^{-1/2}\sum_r a_r \mathrm{relu}(w_r\cdot x)`, :math:`w_r \sim N(0, I)`,
:math:`a_r \sim N(0, 1)`: NNGP :math:`=(\sin t + (\pi - t)\cos t)/(2\pi)` and NTK = NNGP +
:math:`\cos t\,(\pi - t)/(2\pi)` for unit inputs at angle t. Note :math:`E[\mathrm{relu}(u)^2] = q/2`,
so ``sigma_w2=1`` halves the signal per layer; ``sigma_w2=2`` (He) preserves it.

Sum vs mean over outputs: :func:`empirical_ntk` with ``reduce="trace"`` sums
:math:`\Theta_{kk}` over the k outputs (``"mean"`` divides by k; ``"full"`` keeps
:math:`[n_1, n_2, k, k]`).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from . import meanfield
from .layers import activation as _activation
from .validate import nonnegative, nonnegative_int, one_of, positive_int

_REDUCE = ("trace", "mean", "full")


def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                  reduce: str = "trace", chunk_size: int | None = None) -> torch.Tensor:
    r"""Empirical NTK :math:`\Theta(x, x') = \sum_p \partial_p f(x)\, \partial_p f(x')^T` over the
    trainable parameters (``requires_grad``) of ``model`` (Jacot et al. 2018), from per-sample
    Jacobians (``torch.func.vmap(jacrev)`` of ``functional_call`` with detached parameters: the
    model is never modified, its train/eval mode is used as is).

    ``x1``: ``[n1, ...]``, ``x2``: ``[n2, ...]`` (default ``x1``); the model maps a batch to
    ``[batch]`` or ``[batch, k]``. ``reduce="trace"`` returns ``[n1, n2]`` summed over the k
    outputs, ``"mean"`` the same divided by k, ``"full"`` ``[n1, n2, k, k]``. ``chunk_size`` limits
    how many samples vmap processes at once (memory). The model must treat samples independently
    (no batch norm in training mode).
    """
    one_of("reduce", reduce, _REDUCE)
    named = dict(model.named_parameters())
    params = {k: v.detach() for k, v in named.items() if v.requires_grad}
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True): the NTK is zero")
    fixed = {k: v.detach() for k, v in named.items() if not v.requires_grad}
    fixed.update(dict(model.named_buffers()))

    def f(p, x):
        return functional_call(model, {**p, **fixed}, (x.unsqueeze(0),)).reshape(-1)

    def jac(x):
        j = vmap(jacrev(f), in_dims=(None, 0), chunk_size=chunk_size)(params, x)
        return [t.reshape(t.shape[0], t.shape[1], -1) for t in j.values()]  # [n, k, P_i]

    j1 = jac(x1)
    j2 = j1 if x2 is None else jac(x2)
    if reduce == "full":
        return sum(torch.einsum("nkp,mlp->nmkl", a, b) for a, b in zip(j1, j2))
    out = sum(torch.einsum("nkp,mkp->nm", a, b) for a, b in zip(j1, j2))
    return out / j1[0].shape[1] if reduce == "mean" else out


def _as_numpy(x, name):
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().to(torch.float64).numpy()
    a = np.asarray(x, dtype=float)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [n, d]; got shape {a.shape}")
    return a


def _like(a: np.ndarray, ref):
    if isinstance(ref, torch.Tensor):
        dtype = ref.dtype if ref.is_floating_point() else torch.get_default_dtype()
        return torch.as_tensor(a, dtype=dtype, device=ref.device)
    return a


def _kernels(x1, x2, depth, activation, sigma_w2, sigma_b2):
    depth = nonnegative_int("depth", depth)  # the number of hidden layers
    act = meanfield.get_activation(activation)
    sw = float(meanfield._check_var("sigma_w2", sigma_w2))
    sb = float(meanfield._check_var("sigma_b2", sigma_b2))
    a = _as_numpy(x1, "x1")
    b = a if x2 is None else _as_numpy(x2, "x2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x1 and x2 must have the same feature dimension; got {a.shape[1]} and {b.shape[1]}")
    s12 = sw * a @ b.T + sb
    s11 = sw * np.einsum("nd,nd->n", a, a) + sb
    s22 = sw * np.einsum("nd,nd->n", b, b) + sb
    theta = s12.copy()
    for _ in range(depth):
        q1, q2 = s11[:, None], s22[None, :]
        norm = np.sqrt(q1 * q2)
        c = np.clip(np.divide(s12, norm, out=np.zeros_like(s12), where=norm > 0), -1.0, 1.0)
        sig = sw * np.asarray(meanfield.pair_expectation(act, q1, q2, c)) + sb
        dot = sw * np.asarray(meanfield.pair_expectation(act, q1, q2, c, derivative=True))
        theta = theta * dot + sig
        s12 = sig
        s11 = sw * np.asarray(meanfield.pair_expectation(act, s11, s11, np.ones_like(s11))) + sb
        s22 = sw * np.asarray(meanfield.pair_expectation(act, s22, s22, np.ones_like(s22))) + sb
    return s12, theta


def analytic_nngp(x1, x2=None, depth: int = 1, activation="relu", sigma_w2: float = 1.0, sigma_b2: float = 0.0):
    r"""Infinite-width NNGP kernel :math:`\Sigma^{L+1}(x, x')` (Neal 1996; Lee et al. 2018) of the
    net in the module docstring, ``L = depth`` hidden layers: the covariance of :math:`f(x), f(x')`
    over random initializations. ``x1``: ``[n1, d]``, ``x2``: ``[n2, d]`` (default ``x1``); returns
    ``[n1, n2]`` as a torch tensor (dtype/device of ``x1``) if ``x1`` is one, else numpy float64.
    Closed forms for relu (arc-cosine, Cho & Saul 2009) and erf (Williams 1997); tanh and custom
    activations by quadrature (see :mod:`tdlcourse.meanfield`). Two unit inputs at angle
    :math:`\pi/3`, relu, depth 1, ``sigma_w2=1``, ``sigma_b2=0``: 0.304499.
    """
    return _like(_kernels(x1, x2, depth, activation, sigma_w2, sigma_b2)[0], x1)


def analytic_ntk(x1, x2=None, depth: int = 1, activation="relu", sigma_w2: float = 1.0, sigma_b2: float = 0.0):
    r"""Infinite-width NTK :math:`\Theta^{L+1}(x, x')` (Jacot et al. 2018; recursion as in Arora et al.
    2019) of the net in the module docstring with all layers (weights and biases) trained.
    Same arguments and return type as :func:`analytic_nngp`. Two unit inputs at angle
    :math:`\pi/3`, relu, depth 1, ``sigma_w2=1``, ``sigma_b2=0``: 0.471166 = 0.304499 (readout)
    + 0.166667 (hidden layer, :math:`H^\infty` of Du et al. 2019).
    """
    return _like(_kernels(x1, x2, depth, activation, sigma_w2, sigma_b2)[1], x1)


class NTKMLP(nn.Module):
    r"""Fully connected net in the NTK parametrization of the module docstring: parameters are
    :math:`N(0, 1)`; the forward pass multiplies by :math:`\sqrt{s_w}` (input layer),
    :math:`\sqrt{s_w/n}` (later layers) and :math:`\sqrt{s_b}` (biases; no bias parameters when
    ``sigma_b2 == 0``). Its empirical NTK tends to :func:`analytic_ntk` as ``width`` grows.
    ``activation``: a name of ``layers.ACTIVATIONS`` (``"relu"``, ``"tanh"``, ``"erf"``, ``"linear"``...)
    or a torch callable.
    """

    def __init__(self, d_in: int, width: int, depth: int, d_out: int = 1, activation="relu",
                 sigma_w2: float = 1.0, sigma_b2: float = 0.0, *, generator: torch.Generator | None = None,
                 dtype: torch.dtype | None = None, device=None):
        super().__init__()
        d_in, width, d_out = positive_int("d_in", d_in), positive_int("width", width), positive_int("d_out", d_out)
        depth = nonnegative_int("depth", depth)  # the number of hidden layers
        if callable(activation):
            self.phi = activation
        else:
            try:
                self.phi = _activation(activation).fn
            except ValueError as e:
                raise ValueError(f"{e} or a torch callable") from None
        self.sigma_w2 = float(meanfield._check_var("sigma_w2", sigma_w2))
        self.sigma_b2 = float(meanfield._check_var("sigma_b2", sigma_b2))
        sizes = [d_in] + [width] * depth + [d_out]
        kw = dict(generator=generator, dtype=dtype or torch.get_default_dtype(), device=device)
        self.weights = nn.ParameterList(nn.Parameter(torch.randn(o, i, **kw)) for i, o in zip(sizes[:-1], sizes[1:]))
        self.biases = nn.ParameterList(nn.Parameter(torch.randn(o, **kw)) for o in sizes[1:]) if self.sigma_b2 > 0 else None
        self.fan_in = sizes[:-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for l, w in enumerate(self.weights):
            if l > 0:
                h = self.phi(h)
            h = math.sqrt(self.sigma_w2 / (1 if l == 0 else self.fan_in[l])) * (h @ w.T)
            if self.biases is not None:
                h = h + math.sqrt(self.sigma_b2) * self.biases[l]
        return h


@dataclass(frozen=True)
class KernelSolve:
    r"""Solution of :math:`(K_{XX} + \lambda I)\alpha = y` and its conditioning.

    ``alpha``: numpy ``[n]`` or ``[n, k]``; ``condition_number`` of ``k_train + ridge I``
    (``inf`` if singular); ``rank``: eigen-directions kept (``< n`` means the pseudo-inverse, i.e.
    the minimum-norm least-squares solution, was used)."""

    alpha: np.ndarray
    condition_number: float
    ridge: float
    rank: int


def _solve(k_train, y_train, ridge, stacklevel):
    ridge = nonnegative("ridge", ridge)
    K = _as_numpy(k_train, "k_train")
    n = K.shape[0]
    if K.shape != (n, n) or not np.allclose(K, K.T, rtol=1e-8, atol=1e-10 * max(1.0, np.abs(K).max())):
        raise ValueError(f"k_train must be a symmetric square matrix [n, n]; got shape {K.shape}")
    y = y_train.detach().cpu().double().numpy() if isinstance(y_train, torch.Tensor) else np.asarray(y_train, dtype=float)
    if y.shape[:1] != (n,) or y.ndim > 2:
        raise ValueError(f"y_train must have shape [n] or [n, k] with n={n}; got {y.shape}")
    lam, V = np.linalg.eigh(0.5 * (K + K.T) + ridge * np.eye(n))
    tol = n * np.finfo(float).eps * max(abs(lam).max(), 1e-300)
    if lam.min() < -tol * 1e3:
        raise ValueError(f"k_train + ridge*I must be positive semi-definite; smallest eigenvalue {lam.min():.3g}")
    keep = lam > tol
    cond = float(lam.max() / lam.min()) if lam.min() > 0 else float("inf")
    if not keep.all():
        warnings.warn(f"kernel regression: k_train + ridge*I is singular to working precision ({int((~keep).sum())} "
                      "eigenvalues dropped): using the minimum-norm (pseudo-inverse) solution; "
                      "consider ridge > 0", RuntimeWarning, stacklevel=stacklevel)
    elif cond > 1e12:
        warnings.warn(f"kernel regression: condition number {cond:.3g} > 1e12; expect lost digits, consider ridge > 0",
                      RuntimeWarning, stacklevel=stacklevel)
    inv = np.where(keep, 1.0 / np.where(keep, lam, 1.0), 0.0)
    alpha = (V @ (inv[:, None] * (V.T @ y.reshape(n, -1)))).reshape(y.shape)
    return KernelSolve(alpha, cond, ridge, int(keep.sum()))


def kernel_solve(k_train, y_train, ridge: float = 0.0) -> KernelSolve:
    r"""Solve :math:`(K_{XX} + \lambda I)\alpha = y` by a symmetric eigendecomposition and report its
    conditioning. ``k_train``: symmetric PSD ``[n, n]``; ``y_train``: ``[n]`` or ``[n, k]``;
    ``ridge`` :math:`\lambda \ge 0` (also usable as jitter). Eigenvalues below
    :math:`n\,\epsilon\,\lambda_{max}` are dropped (pseudo-inverse, the same minimum-norm solution as
    ``numpy.linalg.lstsq``) with a ``RuntimeWarning``; a condition number above 1e12 also warns.
    """
    return _solve(k_train, y_train, ridge, stacklevel=3)


def kernel_regression(k_train, y_train, k_test_train, ridge: float = 0.0):
    r"""Kernel (ridge) regression predictions :math:`f(x) = K_{xX}(K_{XX} + \lambda I)^{-1} y`: with
    the NTK and :math:`\lambda = 0`, the output of a wide net trained by gradient flow on squared
    loss to :math:`t = \infty` from zero initial output (Jacot et al. 2018; Lee et al. 2019).

    ``k_test_train``: ``[m, n]``; returns ``[m]`` or ``[m, k]`` (torch with ``k_test_train``'s
    dtype/device if it is a tensor, else numpy). The solve is :func:`kernel_solve` (use it to read
    the condition number); singular or ill-conditioned systems warn.
    """
    Kx = _as_numpy(k_test_train, "k_test_train")
    sol = _solve(k_train, y_train, ridge, stacklevel=3)
    n = sol.alpha.shape[0]
    if Kx.shape[1] != n:
        raise ValueError(f"k_test_train must have shape [m, n] with n={n}; got {Kx.shape}")
    return _like(Kx @ sol.alpha, k_test_train)
