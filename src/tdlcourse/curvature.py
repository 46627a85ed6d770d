"""Curvature of the training loss: Hessian-vector products, extreme eigenvalues, trace, spectral
density and the dense Hessian of tiny models; ``hutchpp_trace`` is the Hutch++ estimator for any
matrix given by its products.

Notation (of chapter 10, loss landscapes): theta in R^P are the trainable parameters (layout in
``tdlcourse._functional``), L(theta) = sum_b (n_b/N) loss_fn(f_theta(x_b), y_b) the loss of the data
and H = nabla^2 L(theta) its P x P Hessian, with eigenvalues lambda_1 >= ... >= lambda_P.

Calling convention: ``fn(model, loss_fn, batch, ...)`` where ``loss_fn(outputs, targets)`` returns a
scalar and ``batch`` is ``(inputs, targets)``, a list of such pairs, or a re-iterable loader.
``mode="train"|"eval"`` fixes how BatchNorm/dropout behave (required when the model has them); the
model is never modified, moved, or left in another mode.

Every estimator returns a frozen result with its own accuracy (residuals, error bounds or standard
errors) and a ``converged`` flag; an unconverged answer comes with a ``RuntimeWarning``.

References: Lanczos (1950); Paige (1976); Golub & Underwood (1977) block Lanczos; Parlett, *The
Symmetric Eigenvalue Problem* (1998); Pearlmutter (1994) fast Hessian-vector products; Hutchinson
(1989); Meyer, Musco, Musco & Woodruff (2021) Hutch++; Lin, Saad & Yang (2016) and Ghorbani,
Krishnan & Xiao (2019) stochastic Lanczos quadrature; Sagun et al. (2017); Yao et al. (2020)
PyHessian.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import torch
from torch import nn
from torch.func import grad, jvp, vmap

from ._functional import (Batches, ParamSpec, batch_size, check_loss, check_mode, functional_loss,
                          param_spec, use_mode)
from .validate import in_interval, integer, one_of, positive, positive_int

HVP_METHODS = ("double_backward", "forward_over_reverse")
WHICH = ("largest", "smallest", "both")
TRACE_METHODS = ("hutch++", "hutchinson")

__all__ = ["HessianOperator", "GradientGraph", "hvp", "EigResult", "hessian_eigs", "TraceResult", "hessian_trace",
           "hutchpp_trace", "hutchinson_variance", "DensityResult", "hessian_density", "gaussian_smooth", "full_hessian"]


# ------------------------------------------------------------------------------ Hessian operator

class GradientGraph(NamedTuple):
    """g = nabla L(theta) with its autograd graph (``create_graph=True``): each double-backward
    product H v = nabla_theta (g . v) is one more backward pass through it."""

    leaves: list[torch.Tensor]           # theta as leaf tensors, one per parameter (ParamSpec order)
    grads: tuple[torch.Tensor | None, ...]  # dL/d leaf; None where L does not depend on the parameter
    live: list[int]                      # parameters whose gradient has a graph (the others: zero Hessian rows)
    loss: float                          # L(theta), the sample-weighted mean over the batches
    n_samples: int                       # N, the number of samples the graph covers


class HessianOperator:
    """The linear map v -> H v, H = nabla^2_theta L(theta), for one model, loss and data.

    Two exact Hessian-vector products (Pearlmutter 1994):

    * ``"double_backward"`` (default): g = nabla L built once with ``create_graph=True`` and kept;
      each product is one more backward pass, H v = nabla_theta (g . v). For one batch or a list of
      batches the graph is cached (memory: the activations of all batches); for a loader it is
      rebuilt on every product.
    * ``"forward_over_reverse"``: H v = d/de nabla L(theta + e v) at e = 0 with ``torch.func.jvp``
      of ``torch.func.grad``; recomputes forward and backward on every product.

    Measured on CPU (MLP 784-256-256-10, 2048 samples; benchmarks/README.md): cached double
    backward 31 ms per product, forward-over-reverse 106 ms (56 ms per vector under ``vmap``), so
    ``double_backward`` is the default.

    Calling the operator with ``v`` of shape ``(P,)`` returns ``H v``; with ``(b, P)`` it returns the
    ``b`` products (forward-over-reverse vectorises them with ``vmap``; double backward loops on
    CPU, where batching measured no faster, and vectorises the backward pass with
    ``is_grads_batched`` on GPU; ``batched_backward`` overrides). ``n_hvp`` counts products
    (vectors times data passes). ``mode`` and ``seed`` (the dropout masks in train mode) as in
    ``tdlcourse._functional``.

    With the graph cached (``cached``; the loss is then ``loss``), ``quad(z)`` gives z^T H z without
    the flattened product; ``loss_on(batch)`` evaluates the loss on other data at the same theta.
    """

    def __init__(self, model: nn.Module, loss_fn: Callable, batch, *, mode: str | None = None,
                 method: str = "double_backward", seed: int = 0, batched_backward: bool | None = None):
        one_of("method", method, HVP_METHODS)
        check_mode(model, mode)
        self.model, self.loss_fn, self.mode, self.method, self.seed = model, loss_fn, mode, method, seed
        self.batched_backward = batched_backward
        self.spec: ParamSpec = param_spec(model)
        self.batches = Batches(batch, self.spec.device)
        self._f = functional_loss(model, loss_fn, mode)
        self._theta = {n: p.detach() for n, p in model.named_parameters() if p.requires_grad}
        self.n_hvp = 0
        self._graph: GradientGraph | None = None
        self.loss: float | None = None  # L(theta) when the graph is cached
        if method == "double_backward" and self.batches.fixed:
            self._graph = self._build_graph(enumerate(self.batches))
            self.loss = self._graph.loss
        else:
            self._check_first_batch()

    @property
    def dim(self) -> int:
        return self.spec.n

    @property
    def cached(self) -> bool:
        """True when the gradient graph is built once and kept (double backward, data in memory)."""
        return self._graph is not None

    @property
    def gradient(self) -> torch.Tensor | None:
        """nabla L(theta) as a flat vector when the cached graph holds it (else None)."""
        if self._graph is None:
            return None
        return self.spec.flatten([g.detach() if g is not None else torch.zeros(s, device=self.spec.device,
                                  dtype=self.spec.dtype) for g, s in zip(self._graph.grads, self.spec.shapes)])

    def loss_on(self, batch: tuple[torch.Tensor, torch.Tensor], index: int = 0) -> float:
        """L_b(theta) on one (other) batch, without a graph; ``index`` picks the dropout masks
        (seed + index) as for the operator's own ``index``-th batch."""
        with torch.no_grad(), use_mode(self.model, self.mode, self.seed + index):
            return float(self._f(self._theta, batch))

    def quad(self, z: torch.Tensor) -> float:
        """z^T H z for one vector ``z`` (P,) on the cached graph, parameter block by block (no
        flattened H z is built). Counts as one product in ``n_hvp``."""
        if self._graph is None:
            raise ValueError("quad needs the cached gradient graph (method='double_backward', data in memory)")
        leaves, grads, live = self._graph.leaves, self._graph.grads, self._graph.live
        self.n_hvp += 1
        if not live:
            return 0.0
        zs = self.spec.unflatten(z)
        zl = [zs[self.spec.names[i]] for i in live]
        hz = torch.autograd.grad([grads[i] for i in live], leaves, zl, retain_graph=True, allow_unused=True)
        return float(sum(torch.dot(h.reshape(-1), zs[name].reshape(-1))
                         for h, name in zip(hz, self.spec.names) if h is not None))

    # g = nabla L with its graph: built once (cached) or per batch per product (loaders).
    def _build_graph(self, items) -> GradientGraph:
        leaves = [t.detach().requires_grad_() for t in self._theta.values()]
        params = dict(zip(self.spec.names, leaves))
        total, count = 0.0, 0
        for i, b in items:
            with torch.enable_grad(), use_mode(self.model, self.mode, self.seed + i):
                loss = check_loss(self._f(params, b), "at the model's parameters")
            n = batch_size(b)
            total, count = total + loss * n, count + n
        if count == 0:
            raise ValueError("the data yielded no batches")
        total = total / count
        if not total.requires_grad:
            raise ValueError("the loss does not depend on the model's trainable parameters")
        grads = torch.autograd.grad(total, leaves, create_graph=True, allow_unused=True)
        if all(g is None for g in grads):
            raise ValueError("the loss does not depend on the model's trainable parameters")
        # Parameters the gradient is constant in (a loss linear in them) give no graph: zero rows.
        live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
        return GradientGraph(leaves, grads, live, float(total.detach()), count)

    def _check_first_batch(self) -> None:
        leaves = {n: t.detach().requires_grad_() for n, t in self._theta.items()}
        for i, b in enumerate(self.batches):
            with torch.enable_grad(), use_mode(self.model, self.mode, self.seed + i):
                loss = check_loss(self._f(leaves, b), "at the model's parameters")
            if not loss.requires_grad:
                raise ValueError("the loss does not depend on the model's trainable parameters")
            return
        raise ValueError("the data yielded no batches")

    def _db_apply(self, graph: GradientGraph, V: torch.Tensor) -> torch.Tensor:
        leaves, grads, live = graph.leaves, graph.grads, graph.live
        b = V.shape[0]
        if not live:
            return self.spec.zeros(b)
        gl = [grads[i] for i in live]
        vs = self.spec.unflatten(V)
        vl = [vs[self.spec.names[i]] for i in live]

        def flat(hv, lead):
            return torch.cat([(h if h is not None else V.new_zeros(tuple(lead) + tuple(s))).reshape(*lead, -1)
                              for h, s in zip(hv, self.spec.shapes)], dim=-1)

        batched = V.device.type == "cuda" if self.batched_backward is None else self.batched_backward
        if b > 1 and batched:
            try:
                return flat(torch.autograd.grad(gl, leaves, vl, retain_graph=True, allow_unused=True,
                                                is_grads_batched=True), (b,))
            except RuntimeError:
                pass  # an op without a batching rule: fall back to the loop
        return torch.stack([flat(torch.autograd.grad(gl, leaves, [v[r] for v in vl], retain_graph=True,
                                                     allow_unused=True), ()) for r in range(b)])

    def _for_apply(self, V: torch.Tensor) -> torch.Tensor:
        vd = self.spec.unflatten(V)
        out = self.spec.zeros(V.shape[0])
        count = 0
        for i, b in enumerate(self.batches):
            def g(p, b=b):
                return grad(lambda q: self._f(q, b))(p)

            def one(v, g=g):
                return self.spec.flatten(jvp(g, (self._theta,), (v,))[1])

            with use_mode(self.model, self.mode, self.seed + i):
                try:
                    out += batch_size(b) * vmap(one, randomness="same")(vd)
                except RuntimeError as err:
                    if "ZeroTensors are immutable" not in str(err):
                        raise
                    raise ValueError("method='forward_over_reverse': torch's forward-mode derivative of this "
                                     "loss fails (a known torch 2.13 problem with nn.MSELoss); use "
                                     "method='double_backward', or write the loss with tensor operations, "
                                     "e.g. lambda out, y: (out - y).pow(2).mean()") from err
            count += batch_size(b)
        return out / count

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        if not isinstance(v, torch.Tensor) or v.ndim not in (1, 2) or v.shape[-1] != self.dim:
            shape = tuple(v.shape) if isinstance(v, torch.Tensor) else type(v).__name__
            raise ValueError(f"v must have shape ({self.dim},) or (b, {self.dim}); got {shape}")
        V = v.reshape(-1, self.dim).to(device=self.spec.device, dtype=self.spec.dtype)
        if self.method == "forward_over_reverse":
            out = self._for_apply(V)
        elif self._graph is not None:
            out = self._db_apply(self._graph, V)
        else:  # loader: rebuild the gradient graph batch by batch
            out, count = self.spec.zeros(V.shape[0]), 0
            for i, b in enumerate(self.batches):
                graph = self._build_graph([(i, b)])
                out += graph.n_samples * self._db_apply(graph, V)
                count += graph.n_samples
            out /= count
        self.n_hvp += V.shape[0]
        return out.reshape(v.shape)


def hvp(model: nn.Module, loss_fn: Callable, batch, v: torch.Tensor, *, mode: str | None = None,
        method: str = "double_backward") -> torch.Tensor:
    """Hessian-vector product H v (Pearlmutter 1994) for ``v`` of shape ``(P,)`` or ``(b, P)``.

    For many products on the same data build a ``HessianOperator`` once instead.
    """
    return HessianOperator(model, loss_fn, batch, mode=mode, method=method)(v)


# --------------------------------------------------------------------------------------- Lanczos

@dataclass(frozen=True)
class EigResult:
    """Extreme Hessian eigenvalues from Lanczos.

    ``eigenvalues`` are in decreasing order (for ``which="both"``: the k largest, then the k
    smallest); they, ``residuals`` and ``error_bounds`` are float64 CPU tensors.
    ``residuals[i] = ||H y_i - theta_i y_i||`` for the Ritz vector y_i (computed by the Lanczos
    recurrence); ``error_bounds[i] = min(r_i, r_i^2 / gap_i)`` estimates |lambda - theta_i|: some
    eigenvalue lies within r_i of theta_i (rigorous for symmetric H), and within r_i^2 / gap when
    the rest of the spectrum is gap away (Kato-Temple; Parlett 1998, ch. 11), where gap_i is taken
    as the distance to the nearest other Ritz value (an estimate of the true gap, accurate once
    the neighbours have settled). ``converged`` is True when every bound is <= ``tol * scale`` with
    ``scale`` = the largest |Ritz value|. ``eigenvectors`` (k x P, unit rows, theta layout) only when asked for.
    """

    eigenvalues: torch.Tensor
    residuals: torch.Tensor
    error_bounds: torch.Tensor
    converged: bool
    n_hvp: int
    n_steps: int
    tol: float
    eigenvectors: torch.Tensor | None = None


def _orth_rows(W: torch.Tensor, basis: torch.Tensor | None) -> torch.Tensor:
    # Classical Gram-Schmidt twice against the basis ("twice is enough", Giraud et al. 2005).
    if basis is not None and basis.shape[0] > 0:
        for _ in range(2):
            W = W - (W @ basis.T) @ basis
    return W


def _lanczos(op: Callable[[torch.Tensor], torch.Tensor], spec: ParamSpec, *, k: int, which: str,
             tol: float, block_size: int, max_steps: int, seed: int, want_vectors: bool,
             hint: torch.Tensor | None = None) -> EigResult:
    # Row convention: a block Q_j is (p_j, P) with orthonormal rows, op(Q) returns the rows Q_j H.
    # Recurrence: Q_j H = A_j Q_j + B_j Q_{j-1} + B_{j+1}^T Q_{j+1}; T_m has A_j on the diagonal and
    # B_{j+1} (p_{j+1} x p_j) below it.
    n, dev, dt = spec.n, spec.device, spec.dtype
    gen = torch.Generator().manual_seed(seed)
    eps = torch.finfo(dt).eps
    cap = min(n, block_size * max_steps)
    V = torch.empty(min(cap, 4 * block_size + 16), n, device=dev, dtype=dt)  # grown by doubling
    T = torch.zeros(cap, cap, dtype=torch.float64)
    Q0 = torch.randn(n, min(block_size, n), generator=gen, dtype=torch.float64)
    Q0 /= Q0.norm(dim=0)
    if hint is not None and torch.isfinite(hint).all() and float(hint.norm()) > 0:
        # Random plus a hint direction (the gradient, which for trained nets lies mostly in the top
        # eigenspace, Gur-Ari et al. 2018): fewer steps for the largest eigenvalues, while the
        # random part keeps every eigenvector reachable.
        Q0[:, 0] += (hint / hint.norm()).double().cpu()
    Q = torch.linalg.qr(Q0)[0].T.to(dev, dt).contiguous()
    m, steps, n_hvp, scale, restarts = 0, 0, 0, 0.0, 0
    Qprev = Bprev = None
    while True:
        pj = Q.shape[0]
        if m + pj > V.shape[0]:
            V = torch.cat([V[:m], V.new_empty(min(cap, 2 * V.shape[0] + pj) - m, n)])
        V[m:m + pj] = Q
        W = op(Q)
        n_hvp, steps = n_hvp + pj, steps + 1
        A = (Q @ W.T).double().cpu()
        A = (A + A.T) / 2
        T[m:m + pj, m:m + pj] = A
        W = W - A.to(dev, dt) @ Q
        if Qprev is not None:
            W = W - Bprev.to(dev, dt) @ Qprev
        m += pj
        W = _orth_rows(W, V[:m])
        theta, S = torch.linalg.eigh(T[:m, :m])
        scale = max(scale, float(theta.abs().max()))
        room = min(pj, n - m)
        Qn = W.new_zeros(0, n)
        B = torch.zeros(0, pj, dtype=torch.float64)
        if room > 0:
            Qc, R = torch.linalg.qr(W.T)
            Qn, B = Qc.T[:room].contiguous(), R[:room].double().cpu()
        # ||H y - theta y|| = ||B_{m+1} s_last|| for the Ritz vector y = V^T s.
        res = (B @ S[m - pj:m]).norm(dim=0) if room > 0 else torch.zeros(m, dtype=torch.float64)
        order = torch.argsort(theta, descending=True)
        if which == "largest":
            want = order[:k]
        elif which == "smallest":
            want = order[-k:]
        else:
            want = torch.cat([order[:k], order[-k:]]) if m >= 2 * k else order
        gaps = torch.full((m,), math.inf, dtype=torch.float64)
        if m > 1:
            d = (theta[:, None] - theta[None, :]).abs()
            d.fill_diagonal_(math.inf)
            gaps = d.min(dim=1).values
        # The quadratic bound needs a gap: with a single Ritz value only the residual bound holds.
        bounds = torch.where(torch.isfinite(gaps), torch.minimum(res, res ** 2 / gaps), res)
        kk = 2 * k if which == "both" else k
        enough = m >= kk
        # Breakdown (|B_ii| ~ 0): the Krylov space is (nearly) invariant, so its Ritz values are exact
        # but eigenvalues the start block had no component along (further copies of a multiple
        # eigenvalue) are missing. Restart with fresh random directions, and do not stop on a
        # breakdown before kk restarts, each of which can reveal one more copy.
        small = B.diagonal().abs() <= 100 * eps * max(scale, 1e-30) if room > 0 else torch.zeros(0, dtype=torch.bool)
        done = enough and bool((bounds[want] <= tol * scale).all()) and (not small.any() or restarts >= kk)
        if done or room <= 0 or steps >= max_steps:
            break
        if small.any():
            restarts += 1
            keep = ~small.to(dev)
            fresh = torch.randn(int(small.sum()), n, generator=gen, dtype=torch.float64).to(dev, dt)
            fresh = _orth_rows(fresh, torch.cat([V[:m], Qn[keep]]))
            Qn = torch.cat([Qn[keep], torch.linalg.qr(fresh.T)[0].T])
            B = (Qn @ W.T).double().cpu()  # coefficients of W in the new block
        pn = Qn.shape[0]
        T[m:m + pn, m - pj:m] = B
        T[m - pj:m, m:m + pn] = B.T
        Qprev, Bprev, Q = V[m - pj:m], B, Qn
    converged = bool(done) or (m >= n and enough)
    vecs = None
    if want_vectors:
        vecs = S[:, want].T.to(dev, dt) @ V[:m]
        vecs = vecs / vecs.norm(dim=1, keepdim=True)
    return EigResult(eigenvalues=theta[want], residuals=res[want], error_bounds=bounds[want],
                     converged=converged, n_hvp=n_hvp, n_steps=steps, tol=tol, eigenvectors=vecs)


def hessian_eigs(model: nn.Module, loss_fn: Callable, batch, k: int = 1, which: str = "largest", *,
                 tol: float = 1e-4, mode: str | None = None, block_size: int = 1,
                 max_steps: int | None = None, eigenvectors: bool = False, seed: int = 0,
                 method: str = "double_backward") -> EigResult:
    """The k largest and/or smallest eigenvalues of H = nabla^2 L(theta) by Lanczos.

    Block Lanczos (Golub & Underwood 1977; block size 1 is Lanczos 1950) with full
    reorthogonalisation, so no spurious copies ("ghosts", Paige 1976) appear. After each step the
    Ritz values theta_i of the projected matrix T_m = V_m^T H V_m are checked; the run stops as soon
    as every wanted Ritz value has error bound min(r_i, r_i^2/gap_i) <= tol * max|theta|
    (``EigResult``), so the step count adapts to k, tol and the spectrum. ``max_steps`` (default
    ``max(100, 20 k)`` block steps, at most P/block_size) caps the work; reaching it unconverged
    gives a ``RuntimeWarning`` and ``converged=False``. Eigenvalues come in decreasing order.

    The start block is random; when the cached gradient g is at hand (default method, data in
    memory) g/||g|| is added to the first start vector, which saves steps for the largest
    eigenvalues (the gradient of a trained net lies mostly in the top eigenspace, Gur-Ari, Roberts &
    Dyer 2018) and cannot change what is converged to. A single start vector finds each distinct
    eigenvalue once: an eigenvalue of multiplicity m
    shows up once among the k largest unless ``block_size >= m``. ``tol`` below about 1e-6 is not
    reachable in float32 (the product itself is that noisy): use a float64 model.
    """
    spec_n = param_spec(model).n
    k, which = positive_int("k", k), one_of("which", which, WHICH)
    if k > spec_n or (which == "both" and 2 * k > spec_n):
        raise ValueError(f"k={k} is larger than the number of parameters ({spec_n})"
                         + (" for which='both' (needs 2k <= P)" if which == "both" else ""))
    tol = in_interval("tol", tol, 0.0, 1.0, closed="neither")
    block_size = positive_int("block_size", block_size)
    max_steps = positive_int("max_steps", max(100, 20 * k) if max_steps is None else max_steps)
    op = HessianOperator(model, loss_fn, batch, mode=mode, method=method, seed=seed)
    res = _lanczos(op, op.spec, k=k, which=which, tol=tol, block_size=block_size, max_steps=max_steps,
                   seed=seed, want_vectors=eigenvectors, hint=op.gradient if which != "smallest" else None)
    if not res.converged:
        warnings.warn(f"hessian_eigs did not converge in {res.n_steps} steps ({res.n_hvp} Hessian-vector "
                      f"products): largest error bound {float(res.error_bounds.max()):.3g} > tol * scale; "
                      "raise max_steps or tol", RuntimeWarning, stacklevel=2)
    return res


# ----------------------------------------------------------------------------------------- trace

@dataclass(frozen=True)
class TraceResult:
    """A stochastic estimate of tr(H) with its standard error.

    ``value +- stderr`` (one standard error); ``n_probes`` random probes; ``n_hvp`` products on the
    whole data (sketch and full-data probes) and ``n_sub_hvp`` products on one data chunk each
    (subsampled probes, see ``hessian_trace``); ``converged`` when ``stderr <= tol * |value|``.
    """

    value: float
    stderr: float
    n_probes: int
    n_hvp: int
    n_sub_hvp: int
    converged: bool
    method: str
    tol: float


# Row i holds the eight signs (-1)^(1 - bit_j(i)), j = 0..7.
_SIGNS = 2.0 * ((torch.arange(256)[:, None] >> torch.arange(8)) & 1).float() - 1


def _rademacher(b: int, n: int, gen: torch.Generator, dev, dt) -> torch.Tensor:
    # One random byte gives eight signs: n/8 draws and a table lookup (measured ~4x faster on CPU
    # than unpacking the bits arithmetically, and far faster than n draws).
    bits = torch.randint(0, 256, (b * ((n + 7) // 8),), generator=gen)
    return _SIGNS.to(dt).index_select(0, bits).reshape(b, -1)[:, :n].to(dev)


def _deflate(Z: torch.Tensor, Q: torch.Tensor | None) -> torch.Tensor:
    """The rows of Z projected off the rows of Q (orthonormal): z - Q^T Q z for each row z."""
    return Z if Q is None else torch.addmm(Z, Z @ Q.T, Q, alpha=-1)


def _sketch(matvec: Callable[[torch.Tensor], torch.Tensor], k: int, n: int, gen: torch.Generator,
            dev, dt) -> tuple[torch.Tensor, float]:
    """The exact part of Hutch++: Q = orth(A S) for a Rademacher sketch S of k <= n columns, as k
    orthonormal rows, and tr(Q^T A Q). Costs 2k products."""
    Q = torch.linalg.qr(matvec(_rademacher(k, n, gen, dev, dt)).T)[0].T.contiguous()
    return Q, float((Q * matvec(Q)).sum())


def hutchpp_trace(matvec: Callable[[torch.Tensor], torch.Tensor], dim: int, budget: int, *, seed: int = 0,
                  device: torch.device | str | None = None, dtype: torch.dtype = torch.float64) -> float:
    r"""Hutch++ estimate of tr(A) from ``budget`` products (Meyer, Musco, Musco & Woodruff 2021, Alg. 1).

    With k = min(budget // 3, dim) sketch columns S and q = budget - 2k Rademacher probes g_i:

    .. math:: \mathrm{tr}(A) \approx \mathrm{tr}(Q^\top A Q)
              + \frac1q \sum_{i=1}^{q} g_i^\top (I - QQ^\top) A (I - QQ^\top) g_i, \qquad Q = \mathrm{orth}(A S).

    Unbiased for every square A (tr A = tr(P A P) + tr((I-P) A (I-P)) for the projector P = Q Q^T);
    for symmetric PSD A the relative error is O(1/budget) against Hutchinson's O(1/sqrt(budget)),
    because the top of the spectrum is taken exactly. When k = dim, Q spans everything and the
    result is exact (no probes are drawn). One draw, no error estimate, as curvlinops'
    ``hutchpp_trace``: ``hessian_trace`` adds standard errors and a stopping rule on top.

    ``matvec(V)`` maps a block of rows V (b, dim) to the rows of V A^T (for symmetric A the products
    A v_i), the convention of ``HessianOperator``; ``budget >= 3``; ``seed`` fixes S and the g_i;
    the vectors are built on ``device`` in ``dtype``.
    """
    dim, budget = positive_int("dim", dim), integer("budget", budget, lo=3)
    gen = torch.Generator().manual_seed(seed)
    Q, exact = _sketch(matvec, min(budget // 3, dim), dim, gen, device, dtype)
    if Q.shape[0] == dim:
        return exact
    G = _deflate(_rademacher(budget - 2 * Q.shape[0], dim, gen, device, dtype), Q)
    return exact + float((G * matvec(G)).sum(1).mean())


PROBES = ("rademacher", "gaussian")


def hutchinson_variance(A, probe: str = "rademacher") -> float:
    r"""Variance of one Hutchinson probe :math:`z^\top A z` as an estimate of tr(A) (Hutchinson 1990;
    Avron & Toledo 2011, Lemmas 1 and 9): with :math:`S = (A + A^\top)/2`,

    .. math::
        \mathrm{Var}_{\text{gaussian}} = 2\|S\|_F^2, \qquad
        \mathrm{Var}_{\text{rademacher}} = 2\big(\|S\|_F^2 - \textstyle\sum_i S_{ii}^2\big),

    so Rademacher probes are never worse, and exact for a diagonal A. The mean of m probes has
    variance Var / m. ``A``: a square matrix (array or tensor)."""
    one_of("probe", probe, PROBES)
    M = torch.as_tensor(A, dtype=torch.float64)
    if M.dim() != 2 or M.shape[0] != M.shape[1] or M.shape[0] == 0:
        raise ValueError(f"A must be a square matrix; got shape {tuple(M.shape)}")
    if not torch.isfinite(M).all():
        raise ValueError("A must be finite")
    S = (M + M.T) / 2
    fro2 = float((S ** 2).sum())
    return 2.0 * fro2 if probe == "gaussian" else 2.0 * (fro2 - float((torch.diagonal(S) ** 2).sum()))


def _chunks(op: HessianOperator, size: int | None) -> list | None:
    """Split the data into chunks of ``size`` samples if the loss is a per-sample mean, else None.

    The check: the loss of all the data must equal the size-weighted mean of the chunk losses
    (fails for reduction='sum', BatchNorm in train mode, dropout in train mode, coupled losses).
    """
    if size is None or not op.cached:
        return None
    items = [(x[s:s + size], y[s:s + size]) for x, y in op.batches for s in range(0, len(x), size)]
    if len(items) < 4:
        return None
    count = sum(batch_size(b) for b in items)
    total = sum(op.loss_on(b, i) * batch_size(b) for i, b in enumerate(items))
    if abs(total / count - op.loss) > 1e-5 * abs(op.loss) + 1e-12:
        return None
    return items


def hessian_trace(model: nn.Module, loss_fn: Callable, batch, *, tol: float = 0.01,
                  method: str = "hutch++", mode: str | None = None, sketch: int = 10,
                  subsample: int | None = 128, min_probes: int = 10, max_probes: int = 5000,
                  probes_per_pass: int = 1, seed: int = 0, hvp_method: str = "double_backward") -> TraceResult:
    """tr(H) by Hutchinson (1989) or Hutch++ (Meyer et al. 2021), stopping on the standard error.

    Hutchinson: tr(H) = E[z^T H z] for Rademacher z (entries +-1); the estimate is the mean of the
    samples z_i^T H z_i and stderr = std(samples)/sqrt(m).
    Hutch++: Q = orth(H S) for a Rademacher sketch S (``sketch`` columns; 2*sketch products) and
    tr(H) = tr(Q^T H Q) + E[z^T (I-QQ^T) H (I-QQ^T) z]: the top of the spectrum (the outliers of a
    trained net's Hessian, Sagun et al. 2017) is taken exactly and only the rest is sampled. The
    sketch is that of ``hutchpp_trace`` (a fixed budget, no error estimate); here the sampled term
    gets as many probes as the stopping rule below asks for.

    Subsampled probes: when the loss is a per-sample mean, H = sum_k (n_k/N) H_k over data chunks of
    ``subsample`` samples, so z^T H_k z with chunk k drawn with probability n_k/N is also unbiased
    for the sampled term; it has a larger variance but costs about n_k/N of a product.
    ``subsample=None`` always uses the whole data.

    Stopping (two-stage, Stein 1945): ``min_probes`` pilot probes of each kind pick the kind with the
    smaller variance x cost (cost modelled as samples + 128, calibrated on CPU) and estimate the
    number m = s^2 / (tol |value|)^2 of probes needed for stderr <= tol * |value|; m/2 fresh probes
    are drawn, then topped up as their own variance says. The estimate and its stderr use only the
    fresh probes: pilots whose variance decided the stopping would bias a skewed mean. At most
    ``max_probes`` probes in all; stopping there unconverged warns. Whole-data probes are drawn
    ``probes_per_pass`` at a time (one batched product, e.g. ``vmap`` with
    ``hvp_method="forward_over_reverse"``).
    """
    one_of("method", method, TRACE_METHODS)
    tol = in_interval("tol", tol, 0.0, 1.0, closed="neither")
    sketch, probes_per_pass = positive_int("sketch", sketch), positive_int("probes_per_pass", probes_per_pass)
    min_probes, max_probes = integer("min_probes", min_probes, lo=2), integer("max_probes", max_probes, lo=2)
    if subsample is not None:
        try:
            subsample = positive_int("subsample", subsample)
        except ValueError as e:
            raise ValueError(f"{e} (the chunk size) or None") from None
    if max_probes < min_probes:
        raise ValueError(f"max_probes={max_probes} must be >= min_probes={min_probes}")
    op = HessianOperator(model, loss_fn, batch, mode=mode, method=hvp_method, seed=seed)
    n, dev, dt = op.dim, op.spec.device, op.spec.dtype
    gen = torch.Generator().manual_seed(seed)
    exact, Q = 0.0, None
    if method == "hutch++":
        Q, exact = _sketch(op, min(sketch, n), n, gen, dev, dt)
    chunks = _chunks(op, subsample)
    sub_ops: dict[int, HessianOperator] = {}
    if chunks is not None:
        sizes = torch.tensor([batch_size(b) for b in chunks], dtype=torch.float64)
        N = float(sizes.sum())

    def probe(kind: str, b: int) -> list[float]:
        Z = _deflate(_rademacher(b, n, gen, dev, dt), Q)
        if kind == "full":
            return (Z * op(Z)).sum(1).double().cpu().tolist()
        out = []
        for z, k in zip(Z, torch.multinomial(sizes, b, replacement=True, generator=gen).tolist()):
            if k not in sub_ops:
                sub_ops[k] = HessianOperator(model, loss_fn, chunks[k], mode=mode, seed=seed + k)
            out.append(sub_ops[k].quad(z))
        return out

    def draw(kind: str, m: int) -> list[float]:
        out: list[float] = []
        step = probes_per_pass if kind == "full" else 8  # subsampled probes: drawn and projected 8 at a time
        while len(out) < m:
            out += probe(kind, min(step, m - len(out)))
        return out

    # Stage 1 (pilots): min_probes of each kind choose the kind with the smaller variance x cost
    # (cost modelled as samples + 128) and size stage 2. They do not enter the estimate: a mean
    # and a variance estimated from the same skewed samples are correlated, and stopping or
    # weighting on that variance biases the mean (measured: up to -5 standard errors).
    kinds = ["full", "sub"] if chunks is not None else ["full"]
    pilots = {k: torch.tensor(draw(k, min_probes), dtype=torch.float64) for k in kinds}
    n_probes = sum(len(v) for v in pilots.values())
    cost = {"full": N + 128, "sub": float(sizes.mean()) + 128} if chunks is not None else {"full": 1.0}
    kind = min(kinds, key=lambda k: float(pilots[k].var()) * cost[k])

    def needed(t: torch.Tensor, factor: float) -> int:
        target = (tol * abs(exact + float(t.mean()))) ** 2
        want = factor * float(t.var()) / target if target > 0 else math.inf
        return int(min(max(2 * min_probes, math.ceil(want) if math.isfinite(want) else max_probes), max_probes))

    # Stage 2: fresh probes, half the pilot's estimate of the need (a 10-sample variance is rough);
    # then top-ups sized by the stage-2 variance, estimated from hundreds of samples when many are
    # needed, so the small correlation left between the stopping time and the mean is negligible.
    samples = torch.zeros(0, dtype=torch.float64)
    need = needed(pilots[kind], 0.5)
    while True:
        m = min(need - len(samples), max_probes - n_probes)
        if m > 0:
            samples = torch.cat([samples, torch.tensor(draw(kind, m), dtype=torch.float64)])
            n_probes += m
        use = samples if len(samples) > 1 else pilots[kind]  # no budget left after the pilots
        value = exact + float(use.mean())
        stderr = float(use.std() / math.sqrt(len(use)))
        if stderr <= tol * abs(value) or n_probes >= max_probes or m <= 0:
            break
        need = max(needed(samples, 1.05), len(samples) + min_probes)
    converged = stderr <= tol * abs(value)
    if not converged:
        warnings.warn(f"hessian_trace stopped at max_probes={max_probes} with stderr {stderr:.3g} > "
                      f"tol * |value| = {tol * abs(value):.3g}", RuntimeWarning, stacklevel=2)
    return TraceResult(value=value, stderr=stderr, n_probes=n_probes, n_hvp=op.n_hvp,
                       n_sub_hvp=sum(o.n_hvp for o in sub_ops.values()), converged=converged,
                       method=method, tol=tol)


# --------------------------------------------------------------------------------------- density

@dataclass(frozen=True)
class DensityResult:
    """Smoothed spectral density of H by stochastic Lanczos quadrature.

    ``density[i]`` approximates phi(t_i) = (1/P) sum_j g_sigma(t_i - lambda_j) on ``grid`` (it
    integrates to 1), g_sigma the Gaussian of width ``width``; ``stderr`` is its pointwise standard
    error over the ``n_runs`` random start vectors. ``nodes``/``weights`` ((n_runs, steps)) are the
    quadrature rules (Ritz values and squared first components) for re-smoothing.
    """

    grid: torch.Tensor
    density: torch.Tensor
    stderr: torch.Tensor
    width: float
    nodes: torch.Tensor
    weights: torch.Tensor
    n_hvp: int


def gaussian_smooth(nodes: torch.Tensor, weights: torch.Tensor, grid: torch.Tensor, width: float) -> torch.Tensor:
    """Per-run density sum_j w_j g_sigma(t - theta_j) on ``grid``; shape (n_runs, len(grid));
    ``width`` (sigma) > 0."""
    width = positive("width", width)
    z = (grid[None, None, :] - nodes[:, :, None]) / width
    return (weights[:, :, None] * torch.exp(-0.5 * z ** 2)).sum(1) / (width * math.sqrt(2 * math.pi))


def hessian_density(model: nn.Module, loss_fn: Callable, batch, *, steps: int = 80, n_runs: int = 8,
                    width: float | None = None, grid: torch.Tensor | int = 1000, mode: str | None = None,
                    seed: int = 0, method: str = "double_backward") -> DensityResult:
    """Spectral density of H by stochastic Lanczos quadrature (Lin, Saad & Yang 2016; Ghorbani et
    al. 2019).

    For a start vector v (Rademacher, normalised), ``steps`` Lanczos steps give T = S diag(theta) S^T
    and the Gauss quadrature v^T g(H) v ~= sum_j S_{0j}^2 g(theta_j), exact for polynomials of degree
    < 2*steps. With g = g_sigma(t - .) and E[v v^T] = I/P this estimates the smoothed density;
    ``n_runs`` independent runs are averaged (their spread gives ``stderr``). Lanczos uses full
    reorthogonalisation; all runs advance together, one batched product per step. ``width``
    defaults to 1% of the Ritz-value range; ``grid`` is a tensor of points or a point count spanning
    that range +- 5 widths.
    """
    steps, n_runs = positive_int("steps", steps), positive_int("n_runs", n_runs)
    if width is not None:
        try:
            width = positive("width", width)
        except ValueError as e:
            raise ValueError(f"{e} or None (1% of the Ritz-value range)") from None
    if not isinstance(grid, torch.Tensor):
        grid = integer("grid", grid, lo=2)  # a point count; a tensor of points is checked below
    op = HessianOperator(model, loss_fn, batch, mode=mode, method=method, seed=seed)
    n, dev, dt = op.dim, op.spec.device, op.spec.dtype
    steps = min(steps, n)
    gen = torch.Generator().manual_seed(seed)
    v = _rademacher(n_runs, n, gen, dev, dt) / math.sqrt(n)
    Vs = torch.empty(n_runs, steps, n, device=dev, dtype=dt)
    alpha = torch.zeros(n_runs, steps, dtype=torch.float64)
    beta = torch.zeros(n_runs, steps, dtype=torch.float64)
    size = torch.full((n_runs,), steps)  # a run whose Krylov space is exhausted stops early
    eps = torch.finfo(dt).eps
    for j in range(steps):
        Vs[:, j] = v
        w = op(v)
        a = (w * v).sum(1)
        alpha[:, j] = a.double().cpu()
        w = w - a[:, None] * v
        if j > 0:
            w = w - beta[:, j - 1].to(dev, dt)[:, None] * Vs[:, j - 1]
        for _ in range(2):  # full reorthogonalisation within each run
            w = w - torch.einsum("rj,rjn->rn", torch.einsum("rn,rjn->rj", w, Vs[:, :j + 1]), Vs[:, :j + 1])
        b = w.norm(dim=1)
        beta[:, j] = b.double().cpu()
        stop = (beta[:, j] <= 100 * eps * alpha[:, :j + 1].abs().max(dim=1).values.clamp_min(1e-30)) & (size == steps)
        size[stop] = j + 1
        v = w / b.clamp_min(1e-30)[:, None]
    nodes = torch.zeros(n_runs, steps, dtype=torch.float64)
    weights = torch.zeros(n_runs, steps, dtype=torch.float64)
    for r in range(n_runs):
        m = int(size[r])
        Tm = torch.diag(alpha[r, :m]) + torch.diag(beta[r, :m - 1], 1) + torch.diag(beta[r, :m - 1], -1)
        th, S = torch.linalg.eigh(Tm)
        nodes[r, :m], weights[r, :m] = th, S[0] ** 2
        nodes[r, m:] = th[-1]  # zero-weight padding
    lo, hi = float(nodes.min()), float(nodes.max())
    if width is None:
        width = 0.01 * (hi - lo) if hi > lo else max(abs(hi), 1.0) * 1e-3
    if isinstance(grid, int):
        grid = torch.linspace(lo - 5 * width, hi + 5 * width, grid, dtype=torch.float64)
    elif isinstance(grid, torch.Tensor) and grid.ndim == 1 and grid.numel() >= 2:
        grid = grid.detach().double().cpu()
    else:
        raise ValueError("grid must be a point count (int >= 2) or a 1-D tensor of points")
    per_run = gaussian_smooth(nodes, weights, grid, width)
    dens = per_run.mean(0)
    se = per_run.std(0) / math.sqrt(n_runs) if n_runs > 1 else torch.full_like(dens, math.nan)
    return DensityResult(grid=grid, density=dens, stderr=se, width=float(width), nodes=nodes,
                         weights=weights, n_hvp=op.n_hvp)


# --------------------------------------------------------------------------------- dense Hessian

def full_hessian(model: nn.Module, loss_fn: Callable, batch, *, mode: str | None = None,
                 max_params: int = 5000, chunk: int = 256) -> torch.Tensor:
    """The dense P x P Hessian H_ij = d^2 L / d theta_i d theta_j (exact, for tiny models).

    Built column block by column block as H E for identity blocks E with batched double-backward
    products on the cached gradient graph, then symmetrised (H + H^T)/2 (the two halves agree to
    rounding). Refuses models with more than ``max_params`` parameters (memory P^2 and P products).
    (Not forward-over-reverse: torch 2.13's forward-mode derivative of ``nn.MSELoss``'s backward
    fails with "ZeroTensors are immutable".)
    """
    max_params = positive_int("max_params", max_params)
    spec = param_spec(model)
    if spec.n > max_params:
        raise ValueError(f"the model has {spec.n} trainable parameters > max_params={max_params}; "
                         "full_hessian is for tiny models (use hessian_eigs/hessian_trace instead)")
    chunk = positive_int("chunk", chunk)
    op = HessianOperator(model, loss_fn, batch, mode=mode, method="double_backward")
    H = spec.zeros(spec.n)
    eye = torch.eye(spec.n, device=spec.device, dtype=spec.dtype)
    for s in range(0, spec.n, chunk):
        H[s:s + chunk] = op(eye[s:s + chunk])
    return (H + H.T) / 2
