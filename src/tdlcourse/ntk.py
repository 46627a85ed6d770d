r"""Neural tangent kernel and NNGP kernel: empirical (torch.func) and analytic (chapter 8, infinite width).

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

import copy
import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jacrev, vmap

from . import _ntkmlp, meanfield
from .layers import activation as _activation
from . import validate
from .validate import nonnegative, nonnegative_int, one_of, positive_int

_REDUCE = ("trace", "mean", "full")
_METHODS = ("auto", "structured", "jacobian")


def empirical_ntk(model: nn.Module, x1: torch.Tensor, x2: torch.Tensor | None = None, *,
                  reduce: str = "trace", chunk_size: int | None = None, method: str = "auto") -> torch.Tensor:
    r"""Empirical NTK :math:`\Theta(x, x') = \sum_p \partial_p f(x)\, \partial_p f(x')^T` over the
    trainable parameters (``requires_grad``) of ``model`` (Jacot et al. 2018), from per-sample
    Jacobians (``torch.func.vmap(jacrev)`` of ``functional_call`` with detached parameters: the
    model is never modified, its train/eval mode is used as is).

    ``x1``: ``[n1, ...]``, ``x2``: ``[n2, ...]`` (default ``x1``); the model maps a batch to
    ``[batch]`` or ``[batch, k]``. ``reduce="trace"`` returns ``[n1, n2]`` summed over the k
    outputs, ``"mean"`` the same divided by k, ``"full"`` ``[n1, n2, k, k]``. ``chunk_size`` limits
    how many samples vmap processes at once (memory). The model must treat samples independently
    (no batch norm in training mode).

    ``method``: ``"structured"`` computes the same kernel layer by layer, as the sum over layers of
    (backpropagated-signal Gram) x (input-activation Gram + bias term), with no per-sample Jacobian
    (``tdlcourse._ntkmlp``; memory O(n^2 + n * width) instead of O(n * P)). It covers plain fully
    connected nets: an ``nn.Sequential`` of ``Linear``, ``Flatten``, ``Dropout`` in eval mode and
    the activations of ``layers.ACTIVATIONS``, each ``Linear`` used once, and :class:`NTKMLP` with a
    named activation. ``"jacobian"`` is the per-sample Jacobian path, for any model. ``"auto"``
    (default) takes the structured path where it applies. ``chunk_size`` only affects the Jacobian path.
    """
    one_of("reduce", reduce, _REDUCE)
    one_of("method", method, _METHODS)
    if method != "jacobian":
        ops, why = model._structured_ops() if type(model) is NTKMLP else _ntkmlp.plan(model)
        if ops is None and method == "structured":
            raise ValueError(f"method='structured' needs a plain fully connected net: {why}; use method='jacobian' or 'auto'")
        if ops is not None:
            try:
                return _ntkmlp.empirical_ntk(ops, x1, x2, reduce)
            except _ntkmlp.NotStructured as e:
                if method == "structured":
                    raise ValueError(f"method='structured': {e}; use method='jacobian' or 'auto'") from None
    mods = [m for _, m in model.named_modules(remove_duplicate=False)]
    if len(mods) != len({id(m) for m in mods}):
        # functional_call swaps a module's parameters once per name it is registered under, and does
        # not restore one registered twice (torch 2.13): work on a copy, which keeps the sharing.
        model = copy.deepcopy(model)
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


def _g(t):
    # sin t - t cos t without cancellation at small t: the series sum_k (-1)^(k+1) 2k t^(2k+1) / (2k+1)!
    t = np.asarray(t, dtype=float)
    small = t < 1.0
    ts = np.where(small, t, 0.0)
    term, series = ts**3 / 3.0, np.zeros_like(ts)
    for k in range(1, 12):  # t < 1: the 12th term is below 1e-30
        series += term
        term = -term * ts**2 * (2 * k + 2) / ((2 * k) * (2 * k + 2) * (2 * k + 3))
    return np.where(small, series, np.sin(t) - t * np.cos(t))


def _gram_det(a, b, sw, sb):
    r""":math:`\Sigma^1(x,x)\Sigma^1(y,y) - \Sigma^1(x,y)^2 = s_w^2 |x|^2|y|^2 \sin^2\angle(x,y) + s_w s_b |x-y|^2`,
    with the angle of :func:`_kahan_angles`: exactly 0 for equal rows and accurate for nearly parallel
    ones, where the difference of products loses half the digits."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    angle, dist2 = _kahan_angles(a, b, distances=True)
    return sw**2 * (na**2)[:, None] * (nb**2)[None, :] * np.sin(angle) ** 2 + sw * sb * dist2


def _relu_kernels(a, b, depth, sw, sb):
    # The relu recursion in covariance form with the angle atan2(sqrt(det), s12) and the Gram
    # determinant det = q1 q2 - s12^2 carried exactly from layer to layer (issue 14: arccos of a
    # correlation one rounding step below 1 lost 3e-9 on the diagonal).
    s12 = sw * a @ b.T + sb
    q1 = (sw * np.einsum("nd,nd->n", a, a) + sb)[:, None]
    q2 = (sw * np.einsum("nd,nd->n", b, b) + sb)[None, :]
    det = _gram_det(a, b, sw, sb)
    theta = s12.copy()
    for _ in range(depth):
        r = np.sqrt(q1 * q2)
        t = np.arctan2(np.sqrt(det), s12)
        e = (np.sqrt(det) + (np.pi - t) * s12) / (2.0 * np.pi)  # E[relu(u) relu(v)], Cho & Saul 2009
        sig, dot = sw * e + sb, sw * (np.pi - t) / (2.0 * np.pi)
        theta = theta * dot + sig
        # r - 2E = r (1 - J/pi), J = sin t + (pi - t) cos t, and 1 - J/pi = (2 pi sin^2(t/2) - g(t)) / pi >= 0
        dd = r * np.maximum(2.0 * np.pi * np.sin(t / 2) ** 2 - _g(t), 0.0) / np.pi
        det = sw**2 * (dd / 2) * (r / 2 + e) + sw * sb * ((np.sqrt(q1) - np.sqrt(q2)) ** 2 / 2 + dd)
        q1, q2, s12 = sw * q1 / 2 + sb, sw * q2 / 2 + sb, sig
    return s12, theta


def _kernels(x1, x2, depth, activation, sigma_w2, sigma_b2):
    depth = nonnegative_int("depth", depth)  # the number of hidden layers
    act = meanfield.get_activation(activation)
    sw = float(meanfield._check_var("sigma_w2", sigma_w2))
    sb = float(meanfield._check_var("sigma_b2", sigma_b2))
    a = _as_numpy(x1, "x1")
    b = a if x2 is None else _as_numpy(x2, "x2")
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"x1 and x2 must have the same feature dimension; got {a.shape[1]} and {b.shape[1]}")
    if act is meanfield.ACTIVATIONS["relu"]:
        return _relu_kernels(a, b, depth, sw, sb)
    # smooth activations: the kernels are smooth in the correlation, so its rounding costs nothing
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

    def _structured_ops(self):
        """This net as the ops of ``_ntkmlp`` (for ``empirical_ntk``'s structured path), or (None, why)."""
        if self.phi not in _ntkmlp.ELEMENTWISE:
            return None, "NTKMLP's activation is a custom callable (it may not be elementwise)"
        ops = []
        for l, w in enumerate(self.weights):
            if l > 0:
                ops.append(_ntkmlp.Elementwise(self.phi))
            b = None if self.biases is None else self.biases[l]
            ops.append(_ntkmlp.Affine(w, b, math.sqrt(self.sigma_w2 / (1 if l == 0 else self.fan_in[l])),
                                      math.sqrt(self.sigma_b2), w.requires_grad, b is not None and b.requires_grad))
        return ops, ""

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


# ---------------------------------------------------------------- chapter 8: H^inf, drift, linearized training


def _kahan_angles(a, b, distances=False):
    """Angles between the rows of a and b by Kahan's 2 atan2(|u - v|, |u + v|) of the unit vectors
    (exactly 0 for equal rows; arccos of the cosine loses half the digits near 0), chunked over rows;
    with ``distances`` also the squared distances |a_i - b_j|^2 (exactly 0 for equal rows)."""
    na, nb = np.linalg.norm(a, axis=1), np.linalg.norm(b, axis=1)
    ua, ub = a / np.where(na > 0, na, 1.0)[:, None], b / np.where(nb > 0, nb, 1.0)[:, None]
    out, dist2 = np.empty((len(a), len(b))), np.empty((len(a), len(b)) if distances else 0)
    step = max(1, 2**21 // max(1, len(b) * a.shape[1]))
    for i in range(0, len(a), step):
        out[i : i + step] = 2.0 * np.arctan2(np.linalg.norm(ua[i : i + step, None, :] - ub[None], axis=2),
                                             np.linalg.norm(ua[i : i + step, None, :] + ub[None], axis=2))
        if distances:
            dist2[i : i + step] = ((a[i : i + step, None, :] - b[None]) ** 2).sum(2)
    return (out, dist2) if distances else out


def _finite_inputs(x, name):
    a = _as_numpy(x, name)
    if a.shape[0] < 1 or a.shape[1] < 1 or not np.all(np.isfinite(a)):
        raise ValueError(f"{name} must be a non-empty finite 2-D array [n, d]; got shape {a.shape}"
                         + ("" if np.all(np.isfinite(a)) else " with non-finite entries"))
    return a


def relu_h_inf(x) -> np.ndarray:
    r"""Gram matrix :math:`H^\infty` of Du, Zhai, Poczos & Singh (2019, "Gradient descent provably
    optimizes over-parameterized neural networks", Assumption 3.1) for the two-layer bias-free ReLU
    net :math:`f(x) = m^{-1/2}\sum_r a_r \mathrm{relu}(w_r\cdot x)`, :math:`w_r \sim N(0, I)`:

    .. math::
        H^\infty_{ij} = E_w\big[x_i\cdot x_j\, 1\{w\cdot x_i \ge 0,\ w\cdot x_j \ge 0\}\big]
                      = \frac{x_i\cdot x_j\,(\pi - \theta_{ij})}{2\pi},

    :math:`\theta_{ij}` the angle between :math:`x_i` and :math:`x_j` (computed by Kahan's atan2
    form, exact on the diagonal). It is the hidden layer's part of the NTK: ``analytic_ntk(x) -
    analytic_nngp(x)`` at ``depth=1, sigma_w2=1, sigma_b2=0`` (the syllabus convention); the
    readout's part (the NNGP) is PSD too, so :math:`\lambda_{min}(\Theta) \ge \lambda_0`.
    ``x``: ``[n, d]`` (numpy or torch); returns numpy float64 ``[n, n]``. Unit inputs at angle
    :math:`\pi/3`: 0.166667.
    """
    a = _finite_inputs(x, "x")
    return (a @ a.T) * (np.pi - _kahan_angles(a, a)) / (2.0 * np.pi)


def relu_lambda0(x) -> float:
    r""":math:`\lambda_0 = \lambda_{min}(H^\infty)` (:func:`relu_h_inf`) of Du et al. (2019): positive when
    no two inputs are parallel (their Theorem 3.1), and then gradient flow on
    :math:`\frac12\sum_i (f(x_i) - y_i)^2` with :math:`m = \Omega(n^6/(\lambda_0^4\delta^3))` hidden units
    gives :math:`\|f(X) - y\|^2 \le e^{-\lambda_0 t}\|f_0(X) - y\|^2` (Theorem 3.2; gradient descent with
    step :math:`\eta = O(\lambda_0/n^2)`: the factor :math:`(1 - \eta\lambda_0/2)` per step, Theorem 4.1).
    """
    return float(np.linalg.eigvalsh(relu_h_inf(x))[0])


def kernel_distance(k, k_ref) -> float:
    r"""Relative Frobenius distance :math:`\|K - K_{ref}\|_F / \|K_{ref}\|_F` (numpy or torch, same shape):
    the empirical NTK's error against the analytic one (it falls like :math:`n^{-1/2}` in the width n;
    Jacot et al. 2018, Thm 1; Arora et al. 2019, Thm 3.1), or its drift from the initial NTK during
    training (:math:`O(n^{-1/2})` by Lee et al. 2019, Thm 2.1; :math:`O(n^{-1})` for the expected
    change by Dyer & Gur-Ari 2020)."""
    a = k.detach().cpu().double().numpy() if isinstance(k, torch.Tensor) else np.asarray(k, dtype=float)
    b = k_ref.detach().cpu().double().numpy() if isinstance(k_ref, torch.Tensor) else np.asarray(k_ref, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"k and k_ref must have the same shape; got {a.shape} and {b.shape}")
    ref = float(np.linalg.norm(b))
    if not (np.isfinite(ref) and ref > 0) or not np.all(np.isfinite(a)):
        raise ValueError(f"k_ref must be finite and nonzero (norm {ref:.3g}), k finite")
    return float(np.linalg.norm(a - b)) / ref


@dataclass(frozen=True)
class PowerLawFit:
    r"""Fit :math:`\log v = \text{slope}\cdot\log w + \text{intercept}` over widths w.

    ``slope``/``intercept``: least squares on the mean over seeds of :math:`\log v`;
    ``seed_slopes``: one fit per seed (row); ``spread``: their standard deviation (ddof 1; nan for
    one row); ``stderr``: ``spread / sqrt(seeds)`` with several seeds, else the least-squares
    standard error from the residuals (nan with two widths); ``residual_rms``: RMS residual of the
    mean fit in log units (0 for an exact power law)."""

    slope: float
    intercept: float
    stderr: float
    spread: float
    seed_slopes: np.ndarray
    residual_rms: float


def power_law_fit(widths, values) -> PowerLawFit:
    r"""Slope of :math:`\log(\text{values})` against :math:`\log(\text{widths})`, with the seeds' spread.

    ``widths``: ``[W]`` positive, at least two distinct; ``values``: ``[W]`` or ``[seeds, W]``,
    positive and finite (for example relative kernel errors; theory: slope -1/2 for the empirical
    NTK's error, Jacot et al. 2018). See :class:`PowerLawFit`.
    """
    w = np.asarray(widths, dtype=float)
    if w.ndim != 1 or len(w) < 2 or not np.all(np.isfinite(w) & (w > 0)) or len(np.unique(w)) < 2:
        raise ValueError(f"widths must be a 1-D sequence of at least two distinct positive numbers; got {widths!r}")
    v = np.asarray(values, dtype=float)
    v = v[None, :] if v.ndim == 1 else v
    if v.ndim != 2 or v.shape[1] != len(w) or not np.all(np.isfinite(v) & (v > 0)):
        raise ValueError(f"values must be positive and finite, shape [{len(w)}] or [seeds, {len(w)}]; got shape "
                         f"{np.shape(values)}")
    lw, lv = np.log(w), np.log(v)
    seed_slopes = np.array([np.polyfit(lw, row, 1)[0] for row in lv])
    slope, intercept = np.polyfit(lw, lv.mean(0), 1)
    res = lv.mean(0) - (slope * lw + intercept)
    spread = float(np.std(seed_slopes, ddof=1)) if len(v) > 1 else float("nan")
    if len(v) > 1:
        stderr = spread / math.sqrt(len(v))
    elif len(w) > 2:
        stderr = float(np.sqrt((res**2).sum() / (len(w) - 2) / ((lw - lw.mean()) ** 2).sum()))
    else:
        stderr = float("nan")
    return PowerLawFit(float(slope), float(intercept), float(stderr), spread, seed_slopes,
                       float(np.sqrt(np.mean(res**2))))


@dataclass(frozen=True)
class LinearDynamics:
    r"""Gradient-descent trajectory of a linearized model (:func:`linear_dynamics`).

    ``steps``: ``[T]`` (``inf`` allowed); ``train_pred``: ``[T, n]``; ``test_pred``: ``[T, m]`` or
    None; ``train_loss``: ``[T]``, :math:`\frac12\|f_t(X) - y\|^2`; ``eigenvalues`` of ``k_train``
    (ascending); ``stable``: ``lr * max eigenvalue < 2`` (otherwise the trajectory diverges along
    the top eigenvector)."""

    steps: np.ndarray
    train_pred: np.ndarray
    test_pred: np.ndarray | None
    train_loss: np.ndarray
    eigenvalues: np.ndarray
    lr: float
    stable: bool


def _vec(y, name, n=None):
    v = y.detach().cpu().double().numpy() if isinstance(y, torch.Tensor) else np.asarray(y, dtype=float)
    v = v.reshape(-1) if v.ndim == 2 and v.shape[1] == 1 else v
    if v.ndim != 1 or (n is not None and len(v) != n) or not np.all(np.isfinite(v)):
        raise ValueError(f"{name} must be a finite vector" + (f" of length {n}" if n is not None else "")
                         + f"; got shape {v.shape}")
    return v


def _steps(steps):
    s = np.atleast_1d(np.asarray(steps, dtype=float))
    if s.ndim != 1 or len(s) == 0 or np.any(np.isnan(s)) or np.any(s < 0) or np.any((s != np.floor(s)) & np.isfinite(s)):
        raise ValueError(f"steps must be a nonnegative integer (or inf) or a sequence of them; got {steps!r}")
    return s


def linear_dynamics(k_train, y_train, k_test_train=None, f0_train=None, f0_test=None, *, lr: float,
                    steps) -> LinearDynamics:
    r"""Closed-form gradient descent on :math:`L = \frac12\sum_i (f(x_i) - y_i)^2` for a model linear in
    its parameters with kernel :math:`K = J J^T` (the linearized network of Lee et al. 2019, Sec. 2.2,
    eqs. (8)-(9), in discrete time): with step ``lr`` :math:`=\eta`,

    .. math::
        f_t(X) = y + (I - \eta K)^t (f_0(X) - y), \qquad
        f_t(x^*) = f_0(x^*) - \eta K_{*X} \sum_{s<t} (I - \eta K)^s (f_0(X) - y),

    evaluated in the eigenbasis of :math:`K`: the sum is :math:`K^{-1}(I - (I - \eta K)^t)/\eta`, and
    at :math:`t = \infty` with :math:`f_0 = 0` this is kernel regression :math:`K_{*X}K^{-1}y`
    (directions with eigenvalue below :math:`n\epsilon\lambda_{max}` are dropped there, the
    minimum-norm solution of :func:`kernel_solve`).

    ``k_train``: ``[n, n]`` symmetric PSD; ``y_train``, ``f0_train`` (default 0): ``[n]``;
    ``k_test_train``: ``[m, n]`` with ``f0_test`` (default 0) ``[m]``; ``steps``: an integer, ``inf``
    or a sequence of them. Raises if ``lr * max eigenvalue >= 2`` and ``inf`` is asked for; warns
    (``RuntimeWarning``) for finite steps (the trajectory then diverges). See :class:`LinearDynamics`.
    """
    lr = validate.positive("lr", lr)
    s = _steps(steps)
    K = _as_numpy(k_train, "k_train")
    n = K.shape[0]
    if K.shape != (n, n) or not np.allclose(K, K.T, rtol=1e-8, atol=1e-10 * max(1.0, np.abs(K).max())):
        raise ValueError(f"k_train must be a symmetric square matrix [n, n]; got shape {K.shape}")
    y = _vec(y_train, "y_train", n)
    f0 = np.zeros(n) if f0_train is None else _vec(f0_train, "f0_train", n)
    lam, V = np.linalg.eigh(0.5 * (K + K.T))
    tol = n * np.finfo(float).eps * max(abs(lam).max(), 1e-300)
    if lam.min() < -tol * 1e3:
        raise ValueError(f"k_train must be positive semi-definite; smallest eigenvalue {lam.min():.3g}")
    keep = lam > tol
    stable = bool(lr * lam.max() < 2.0)
    if not stable:
        msg = f"lr={lr} is unstable: lr * max eigenvalue = {lr * lam.max():.3g} >= 2, the trajectory diverges"
        if np.any(np.isinf(s)):
            raise ValueError(msg + "; steps=inf needs lr < 2 / max eigenvalue")
        warnings.warn(msg, RuntimeWarning, stacklevel=2)
    r0 = V.T @ (f0 - y)  # initial residual in the eigenbasis
    x = lr * np.where(keep, lam, 0.0)
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        fin = np.where(np.isfinite(s), s, 0.0)[:, None]
        # (1 - lr lam)^t, [T, n]: through log1p where 1 - lr lam > 0 (no rounding of 1 - x at small x)
        decay = np.where(x[None, :] < 1, np.exp(fin * np.log1p(-x)[None, :]), np.power(1.0 - x[None, :], fin))
        decay = np.where(np.isinf(s)[:, None], np.where(keep, 0.0, 1.0)[None, :], decay)
        # phi_t = sum_{s<t} (1 - lr lam)^s = (1 - decay) / (lr lam); t for lam = 0, dropped at t = inf
        phi = np.where(keep[None, :], (1.0 - decay) / np.where(keep, x, 1.0)[None, :],
                       np.where(np.isinf(s)[:, None], 0.0, fin))
    train_pred = y[None, :] + (decay * r0[None, :]) @ V.T
    train_loss = 0.5 * ((decay * r0[None, :]) ** 2).sum(1)
    test_pred = None
    if k_test_train is not None:
        Kx = _as_numpy(k_test_train, "k_test_train")
        if Kx.shape[1] != n:
            raise ValueError(f"k_test_train must have shape [m, n] with n={n}; got {Kx.shape}")
        g0 = np.zeros(len(Kx)) if f0_test is None else _vec(f0_test, "f0_test", len(Kx))
        test_pred = g0[None, :] - lr * ((phi * r0[None, :]) @ V.T) @ Kx.T
    return LinearDynamics(s, train_pred, test_pred, train_loss, lam, lr, stable)



def linear_loss(k_train, residual, lr: float, steps) -> np.ndarray:
    r"""Predicted training loss of the linearized model under gradient descent with step ``lr``
    :math:`=\eta` on :math:`\frac12\sum_i (f(x_i) - y_i)^2` (Lee et al. 2019; Du et al. 2019, Sec. 4):

    .. math::
        L_t = \tfrac12 \|(I - \eta K)^t r_0\|^2 = \tfrac12 \sum_k (1 - \eta\lambda_k)^{2t} (v_k\cdot r_0)^2,

    :math:`r_0 = f_0(X) - y` the initial residual (``residual``, ``[n]``), :math:`(\lambda_k, v_k)` the
    eigenpairs of ``k_train``. If :math:`\eta\lambda_{max} \le 1`, :math:`L_t \le e^{-2\eta\lambda_{min} t} L_0`.
    ``steps``: an integer, ``inf`` or a sequence; returns ``[T]``. Same checks as :func:`linear_dynamics`.
    """
    return linear_dynamics(k_train, -_vec(residual, "residual"), lr=lr, steps=steps).train_loss


@dataclass(frozen=True)
class LinearizedTraining:
    r"""A network trained by full-batch gradient descent beside its linearization
    (:func:`train_with_linearization`); numpy float64 throughout.

    ``steps``: ``[T]`` recorded steps (0 first, the last step last); ``loss_net``, ``loss_lin``:
    ``[T]``, :math:`\frac12\sum_i (f(x_i) - y_i)^2`; ``train_net``/``train_lin``: ``[T, n]``
    predictions on the training inputs; ``test_net``/``test_lin``: ``[T, m]`` (None without
    ``x_test``); ``ntk_init``/``ntk_final``: empirical NTK on ``[x_train; x_test]`` at init and after
    training; ``kernel_drift``: :func:`kernel_distance` of the two on the training block;
    ``param_change``: :math:`\|\theta_T - \theta_0\| / \|\theta_0\|`; ``model``: the trained copy."""

    steps: np.ndarray
    loss_net: np.ndarray
    loss_lin: np.ndarray
    train_net: np.ndarray
    train_lin: np.ndarray
    test_net: np.ndarray | None
    test_lin: np.ndarray | None
    ntk_init: np.ndarray
    ntk_final: np.ndarray
    kernel_drift: float
    param_change: float
    lr: float
    model: nn.Module


def train_with_linearization(model: nn.Module, x_train, y_train, x_test=None, *, lr: float, steps: int,
                             record_every: int = 1) -> LinearizedTraining:
    r"""Train a copy of the scalar-output ``model`` by full-batch gradient descent,
    :math:`\theta_{t+1} = \theta_t - \eta\nabla_\theta \frac12\sum_i (f(x_i;\theta_t) - y_i)^2`, and beside
    it its linearization at init (Lee et al. 2019, "Wide neural networks of any depth evolve as
    linear models under gradient descent", eq. (5)):

    .. math::
        f^{lin}(x;\theta) = f(x;\theta_0) + J(x)(\theta - \theta_0), \qquad J = \partial_\theta f(\cdot;\theta_0).

    Gradient descent on :math:`f^{lin}` moves its outputs exactly as :func:`linear_dynamics` with the
    empirical NTK at init :math:`\Theta_0 = J J^T` (:func:`empirical_ntk`), which is how it is
    computed (the linearized model is never built in parameter space). The user's model is not modified (a deep copy
    is trained; its train/eval mode is kept). ``x_train``: ``[n, ...]``, ``y_train``: ``[n]``;
    ``x_test``: ``[m, ...]`` or None; the model maps a batch to ``[batch]`` or ``[batch, 1]``.
    ``record_every``: record every that many steps (and the last). Raises ``RuntimeError`` if the
    loss becomes non-finite (lower ``lr``: stability needs ``lr * max eigenvalue(ntk_init) < 2``).
    See :class:`LinearizedTraining`.
    """
    lr = validate.positive("lr", lr)
    steps = nonnegative_int("steps", steps)
    record_every = positive_int("record_every", record_every)
    net = copy.deepcopy(model)
    params = [p for p in net.parameters() if p.requires_grad]
    if not params:
        raise ValueError("model has no trainable parameters (requires_grad=True)")
    ref = params[0]
    x = torch.as_tensor(x_train, dtype=ref.dtype, device=ref.device)
    n = x.shape[0]
    y = torch.as_tensor(_vec(y_train, "y_train", n), dtype=ref.dtype, device=ref.device)
    xt = None if x_test is None else torch.as_tensor(x_test, dtype=ref.dtype, device=ref.device)
    xa = x if xt is None else torch.cat([x, xt])

    def out(inp):
        o = net(inp)
        if o.dim() > 2 or (o.dim() == 2 and o.shape[1] != 1) or o.shape[0] != inp.shape[0]:
            raise ValueError(f"model must have one output per sample ([batch] or [batch, 1]); got shape {tuple(o.shape)}")
        return o.reshape(-1)

    with torch.no_grad():
        f_all0 = out(xa).double().cpu().numpy()
    theta0 = torch.cat([p.detach().reshape(-1) for p in params]).clone()
    k0 = empirical_ntk(net, xa).double().cpu().numpy()
    rec = sorted(set(range(0, steps + 1, record_every)) | {steps})
    lin = linear_dynamics(k0[:n, :n], y.double().cpu().numpy(), None if xt is None else k0[n:, :n],
                          f_all0[:n], None if xt is None else f_all0[n:], lr=lr, steps=rec)
    losses, train_p, test_p = [], [], []
    for t in range(steps + 1):
        f = out(x)
        loss = 0.5 * ((f - y) ** 2).sum()
        if not torch.isfinite(loss):
            raise RuntimeError(f"training diverged at step {t} (loss {loss.item():.3g}); lower lr "
                               f"(lr * max eigenvalue of the NTK at init = {lr * lin.eigenvalues.max():.3g}, must be < 2)")
        if t in rec:
            losses.append(loss.item())
            train_p.append(f.detach().double().cpu().numpy())
            if xt is not None:
                with torch.no_grad():
                    test_p.append(out(xt).double().cpu().numpy())
        if t == steps:
            break
        grads = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.sub_(lr * g)
    k1 = empirical_ntk(net, xa).double().cpu().numpy()
    theta1 = torch.cat([p.detach().reshape(-1) for p in params])
    change = (torch.linalg.norm(theta1 - theta0) / torch.linalg.norm(theta0)).item()
    return LinearizedTraining(
        np.array(rec), np.array(losses), lin.train_loss, np.array(train_p), lin.train_pred,
        np.array(test_p) if xt is not None else None, lin.test_pred, k0, k1,
        kernel_distance(k1[:n, :n], k0[:n, :n]), float(change), lr, net)
