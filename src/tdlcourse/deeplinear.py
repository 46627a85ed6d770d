r"""Deep linear networks: the exact learning dynamics of Saxe, McClelland & Ganguli (2014) (chapter 10).

Setting and conventions (Saxe et al. 2014, section 2). A net :math:`f(x) = W_D \cdots W_1 x` is
trained by gradient flow on the population squared loss
:math:`L = \tfrac12 E\|y - W_D\cdots W_1 x\|^2` with whitened inputs, :math:`E[xx^T] = I`, so the
loss depends on the data only through the input-output correlation
:math:`\Sigma_{yx} = E[y x^T] = \sum_k s_k u_k v_k^T` (SVD, :math:`s_1 \ge s_2 \ge \dots`):
:math:`L = \tfrac12\|\Sigma_{yx} - W\|_F^2 + \text{const}`, :math:`W = W_D\cdots W_1`. Gradient
descent with learning rate :math:`\eta` is the Euler discretization of the flow with
:math:`\tau\, dW_l/dt = -\partial L/\partial W_l`, time :math:`t = \eta \times` steps and
:math:`\tau = 1`.

For two layers started balanced and aligned with the modes (:math:`W_1 = \sum_k a_k r_k v_k^T`,
:math:`W_2 = \sum_k a_k u_k r_k^T`, orthonormal :math:`r_k`), the modes decouple and the strength
:math:`u = u_k^T W v_k` of mode k obeys :math:`\tau\,\dot u = 2u(s - u)`, whose solution is

.. math::
    u(t) = \frac{s\, e^{2st/\tau}}{e^{2st/\tau} - 1 + s/u_0}, \qquad
    t(u_0 \to u_f) = \frac{\tau}{2s} \ln\frac{u_f (s - u_0)}{u_0 (s - u_f)}

(Saxe et al. 2014, eqs. 5-7): each mode is learned in a time of order :math:`(\tau/s)\ln(s/u_0)`, the
strongest first, in a sigmoidal jump. From a small *random* init the same holds approximately once a
mode's strength is well above the noise of the init: measure times from a threshold crossing
(:func:`learning_times`), not from t = 0, where a mode's strength can even be negative.

Teacher-student helpers (the nonlinear counterpart, Safran & Shamir 2018): a two-layer ReLU student
:math:`x \mapsto \sum_{i\le n}\mathrm{relu}(w_i\cdot x)` (output weights fixed at 1, no biases) learns a
teacher :math:`\sum_{j\le k}\mathrm{relu}(v_j\cdot x)` from Gaussian inputs :math:`x \sim N(0, I_d)`.
Its population loss has a closed form (:func:`relu_population_loss`); with k = n gradient methods get
stuck at spurious local minima in a fraction of the runs, which over-parametrization (n > k) removes
(:func:`stuck_fraction` counts them with a binomial confidence interval).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .validate import in_interval, int_sequence, nonnegative_int, positive, positive_int

__all__ = ["saxe_time", "saxe_trajectory", "DeepLinearRun", "train_deep_linear", "LearningTimes", "learning_times",
           "product_loss_hessian_eigs", "relu_population_loss", "teacher_student_data", "relu_student", "student_population_losses",
           "StuckFraction", "stuck_fraction"]


def _check_mode(s, u0):
    s = positive("s", s)
    u0 = in_interval("u0", u0, 0.0, s, closed="neither")
    return s, u0


def saxe_time(s: float, u0: float, uf: float, tau: float = 1.0) -> float:
    r"""Time for a two-layer linear net's mode of singular value ``s`` to grow from strength ``u0``
    to ``uf`` (:math:`0 < u_0, u_f < s`) under gradient flow:
    :math:`t = \frac{\tau}{2s}\ln\frac{u_f(s - u_0)}{u_0(s - u_f)}` (Saxe et al. 2014, eq. 7).
    Negative when ``uf < u0`` (the time to get there backwards). Syllabus value: s = 3, u0 = 0.01,
    uf = 2.9, tau = 1 gives 1.511290."""
    s, u0 = _check_mode(s, u0)
    uf = in_interval("uf", uf, 0.0, s, closed="neither")
    tau = positive("tau", tau)
    return tau / (2 * s) * math.log(uf * (s - u0) / (u0 * (s - uf)))


def saxe_trajectory(s: float, u0: float, t, tau: float = 1.0) -> np.ndarray:
    r"""The strength :math:`u(t) = s e^{2st/\tau} / (e^{2st/\tau} - 1 + s/u_0)` of one mode at the times
    ``t`` (an array; ``t >= 0``), from ``u(0) = u0`` (Saxe et al. 2014, eq. 6). Written as
    :math:`s / (1 + (s/u_0 - 1) e^{-2st/\tau})` so that large t does not overflow."""
    s, u0 = _check_mode(s, u0)
    tau = positive("tau", tau)
    t = np.asarray(t, dtype=float)
    if t.size and (not np.all(np.isfinite(t)) or t.min() < 0):
        raise ValueError(f"t must be finite times >= 0; got min {t.min()!r}")
    return s / (1.0 + (s / u0 - 1.0) * np.exp(-2.0 * s * t / tau))


@dataclass(frozen=True)
class DeepLinearRun:
    """Gradient descent on the population loss of a deep linear net (see :func:`train_deep_linear`).

    ``time`` = lr x steps at each record; ``modes[r, k]`` = :math:`u_k^T W v_k` at record r (the
    strength of mode k of the target); ``loss[r]`` = :math:`\\tfrac12\\|\\Sigma_{yx} - W\\|_F^2`;
    ``s`` the target's singular values; ``off_mode`` the largest :math:`|u_j^T W v_k|`, j != k, at
    the end (0 for an aligned start: the modes then stay decoupled); ``lr``, ``depth``, ``widths``."""

    steps: np.ndarray
    time: np.ndarray
    modes: np.ndarray
    loss: np.ndarray
    s: np.ndarray
    off_mode: float
    lr: float
    depth: int
    widths: tuple[int, ...]


def train_deep_linear(sigma_yx, hidden, *, lr: float = 0.01, steps: int = 1000, init: str = "random",
                      scale: float = 1e-3, seed: int = 0, record_every: int = 1) -> DeepLinearRun:
    r"""Gradient descent on :math:`L = \tfrac12\|\Sigma_{yx} - W_D\cdots W_1\|_F^2` (the population loss
    with whitened inputs, module docstring) for a deep linear net with hidden widths ``hidden``
    (``D = len(hidden) + 1`` layers), in float64.

    ``init="random"``: entries i.i.d. :math:`N(0, \text{scale}^2)`; ``"aligned"`` (two layers only):
    the balanced, mode-aligned start of Saxe et al., every mode at strength ``scale`` (needs
    ``hidden[0] >= rank``). Returns the strength of each target mode over training
    (:class:`DeepLinearRun`), to compare with :func:`saxe_trajectory` at time ``lr * step``.
    """
    target = np.asarray(sigma_yx, dtype=float)
    if target.ndim != 2 or min(target.shape) < 1 or not np.all(np.isfinite(target)):
        raise ValueError(f"sigma_yx must be a finite 2-D array [d_out, d_in]; got shape {target.shape}")
    hidden = int_sequence("hidden", hidden)
    lr, scale = positive("lr", lr), positive("scale", scale)
    steps, record_every = nonnegative_int("steps", steps), positive_int("record_every", record_every)
    if init not in ("random", "aligned"):
        raise ValueError(f"init must be 'random' or 'aligned'; got {init!r}")
    d_out, d_in = target.shape
    U, s, Vt = np.linalg.svd(target, full_matrices=False)
    keep = s > 1e-12 * s.max() if s.max() > 0 else np.zeros_like(s, dtype=bool)
    U, s, Vt = U[:, keep], s[keep], Vt[keep]
    sizes = [d_in, *hidden, d_out]
    g = torch.Generator().manual_seed(int(seed))
    if init == "aligned":
        if len(hidden) != 1:
            raise ValueError(f"init='aligned' is the two-layer start of Saxe et al.: hidden must have one width; got {hidden}")
        if hidden[0] < len(s):
            raise ValueError(f"init='aligned' needs hidden[0] >= the target's rank {len(s)}; got {hidden[0]}")
        R = np.linalg.qr(torch.randn(hidden[0], len(s), generator=g, dtype=torch.float64).numpy())[0]
        a = math.sqrt(scale)
        Ws = [torch.tensor(a * R @ Vt), torch.tensor(a * U @ R.T)]
    else:
        Ws = [scale * torch.randn(o, i, generator=g, dtype=torch.float64) for i, o in zip(sizes[:-1], sizes[1:])]
    T = torch.tensor(target)
    Ut, Vtt = torch.tensor(U), torch.tensor(Vt)
    rec_steps, modes, losses = [], [], []

    def product():
        W = Ws[0]
        for M in Ws[1:]:
            W = M @ W
        return W

    def record(step, W):
        rec_steps.append(step)
        modes.append(torch.diagonal(Ut.T @ W @ Vtt.T).numpy().copy())
        losses.append(0.5 * float(((T - W) ** 2).sum()))

    for step in range(steps + 1):
        W = product()
        if step % record_every == 0 or step == steps:
            record(step, W)
        if step == steps:
            break
        E = T - W  # -dL/dW
        # dL/dW_l = -(W_D...W_{l+1})^T E (W_{l-1}...W_1)^T
        left = [torch.eye(d_in, dtype=torch.float64)]
        for M in Ws[:-1]:
            left.append(M @ left[-1])
        right = torch.eye(d_out, dtype=torch.float64)
        grads = [None] * len(Ws)
        for l in range(len(Ws) - 1, -1, -1):
            grads[l] = right.T @ E @ left[l].T
            right = right @ Ws[l]
        Ws = [M + lr * G for M, G in zip(Ws, grads)]
    W = product()
    M = (Ut.T @ W @ Vtt.T).numpy()
    off = float(np.abs(M - np.diag(np.diag(M))).max()) if M.size > 1 else 0.0
    steps_arr = np.array(rec_steps)
    return DeepLinearRun(steps=steps_arr, time=lr * steps_arr, modes=np.array(modes), loss=np.array(losses), s=s,
                         off_mode=off, lr=lr, depth=len(Ws), widths=tuple(sizes))


@dataclass(frozen=True)
class LearningTimes:
    """Per mode: the measured time between the first records at which its strength exceeds ``lo * s``
    and ``hi * s`` (``measured``, NaN when it never does), the two-layer prediction
    ``saxe_time(s, lo s, hi s)`` (``predicted``) and their ratio; ``resolution`` is the time between
    records (the measurement's granularity)."""

    s: np.ndarray
    measured: np.ndarray
    predicted: np.ndarray
    ratio: np.ndarray
    resolution: float


def learning_times(run: DeepLinearRun, lo: float = 0.05, hi: float = 0.9) -> LearningTimes:
    """Each mode's time from strength ``lo * s`` to ``hi * s`` in ``run`` against Saxe et al.'s
    two-layer formula (Saxe et al. 2014, eq. 7); times are interpolated linearly between records."""
    lo = in_interval("lo", lo, 0.0, 1.0, closed="neither")
    hi = in_interval("hi", hi, lo, 1.0, closed="neither")
    measured = np.full(len(run.s), np.nan)
    for k, sk in enumerate(run.s):
        u = run.modes[:, k]
        t = [_crossing(run.time, u, f * sk) for f in (lo, hi)]
        if not any(math.isnan(v) for v in t):
            measured[k] = t[1] - t[0]
    predicted = np.array([saxe_time(sk, lo * sk, hi * sk) for sk in run.s])
    res = float(np.min(np.diff(run.time))) if len(run.time) > 1 else math.nan
    return LearningTimes(s=run.s, measured=measured, predicted=predicted, ratio=measured / predicted, resolution=res)


def _crossing(t: np.ndarray, u: np.ndarray, level: float) -> float:
    above = np.nonzero(u >= level)[0]
    if not len(above):
        return math.nan
    i = int(above[0])
    if i == 0:
        return float(t[0])
    return float(t[i - 1] + (level - u[i - 1]) * (t[i] - t[i - 1]) / (u[i] - u[i - 1]))



def product_loss_hessian_eigs(w, s=1.0) -> np.ndarray:
    r"""Eigenvalues (ascending, float64, shape [D]) of the Hessian of the scalar depth-D linear net's loss
    :math:`L(w) = \tfrac12 (w_1 w_2 \cdots w_D - s)^2` at the point ``w`` (D >= 2). With
    :math:`p = \prod_k w_k`, :math:`r = p - s` and :math:`g_i = \prod_{k \ne i} w_k`,

    .. math::
        H_{ii} = g_i^2, \qquad H_{ij} = g_i g_j + r \prod_{k \ne i, j} w_k \quad (i \ne j).

    At the origin D = 2 gives {-s, s} (a strict saddle) and D >= 3 all zeros (a saddle without
    negative curvature, Kawaguchi 2016); at a global minimum (p = s) H = g g^T. Leave-one-out
    products are taken directly (no division), so ``w`` may contain zeros."""
    v = np.asarray(w, dtype=float)
    if v.ndim != 1 or v.size < 2 or not np.all(np.isfinite(v)):
        raise ValueError(f"w must be a finite 1-D array of D >= 2 weights; got shape {v.shape}"
                         + ("" if not v.size or np.all(np.isfinite(v)) else " with NaN/inf"))
    if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)) or not math.isfinite(s):
        raise ValueError(f"s must be a finite number; got {s!r}")
    D = v.size
    g = np.array([np.prod(np.delete(v, i)) for i in range(D)])
    r = float(np.prod(v)) - float(s)
    H = np.outer(g, g)
    for i in range(D):
        for j in range(i + 1, D):
            H[i, j] += r * np.prod(np.delete(v, [i, j]))
            H[j, i] = H[i, j]
    return np.linalg.eigvalsh(H)


# ------------------------------------------------------------------ teacher-student (chapter 10)

def _weights(name: str, W, d: int | None = None) -> np.ndarray:
    A = np.asarray(W.detach().cpu().numpy() if isinstance(W, torch.Tensor) else W, dtype=float)
    if A.ndim == 1:
        A = A[None]
    if A.ndim != 2 or A.shape[0] < 1 or A.shape[1] < 1 or not np.all(np.isfinite(A)):
        raise ValueError(f"{name} must be a finite 2-D array [units, d]; got shape {A.shape}")
    if d is not None and A.shape[1] != d:
        raise ValueError(f"{name} has input dimension {A.shape[1]}, the other weights {d}")
    return A


def _relu_kernel(A: np.ndarray, B: np.ndarray) -> float:
    # sum_ij E[relu(a_i.x) relu(b_j.x)] = |a||b| (sin t + (pi - t) cos t) / (2 pi) (Cho & Saul 2009, n = 1)
    na, nb = np.linalg.norm(A, axis=1)[:, None], np.linalg.norm(B, axis=1)[None, :]
    norm = na * nb
    c = np.divide(A @ B.T, norm, out=np.ones_like(norm), where=norm > 0).clip(-1.0, 1.0)
    t = np.arccos(c)
    return float((norm * (np.sqrt(1.0 - c ** 2) + (np.pi - t) * c)).sum() / (2 * np.pi))


def relu_population_loss(W, V) -> float:
    r"""Population loss of a two-layer ReLU student against a teacher (Safran & Shamir 2018):

    .. math::
        L(W) = \tfrac12\, E_{x \sim N(0, I_d)}\Big(\sum_{i=1}^n \mathrm{relu}(w_i\cdot x)
               - \sum_{j=1}^k \mathrm{relu}(v_j\cdot x)\Big)^2,

    exactly, through :math:`E[\mathrm{relu}(w\cdot x)\,\mathrm{relu}(v\cdot x)] =
    \frac{\|w\|\|v\|}{2\pi}(\sin\theta + (\pi - \theta)\cos\theta)`, :math:`\theta` the angle between
    w and v (the arc-cosine kernel of degree 1, Cho & Saul 2009). ``W``: student rows w_i (n x d),
    ``V``: teacher rows v_j (k x d), arrays or tensors. 0 exactly when the student equals the teacher
    up to a permutation of its units."""
    V = _weights("V", V)
    W = _weights("W", W, V.shape[1])
    return 0.5 * (_relu_kernel(W, W) - 2 * _relu_kernel(W, V) + _relu_kernel(V, V))


def teacher_student_data(teacher, n_train: int, n_test: int = 0, *, seed: int = 0,
                         dtype: torch.dtype = torch.float32):
    r"""Samples of the teacher :math:`y = \sum_j \mathrm{relu}(v_j\cdot x)`, :math:`x \sim N(0, I_d)`, as a
    regression ``data.Data`` (y of shape [n, 1]; train with ``loss="mse"``, the mean of (f - y)^2, which
    estimates 2 L). ``teacher``: the rows v_j (k x d)."""
    from .data import Data

    V = torch.tensor(_weights("teacher", teacher), dtype=torch.float64)
    n_train, n_test = positive_int("n_train", n_train), nonnegative_int("n_test", n_test)
    g = torch.Generator().manual_seed(int(seed))
    x = torch.randn(n_train + n_test, V.shape[1], generator=g, dtype=torch.float64)
    y = torch.relu(x @ V.T).sum(1, keepdim=True)
    x, y = x.to(dtype), y.to(dtype)
    return Data(x[:n_train], y[:n_train], x[n_train:], y[n_train:], name=f"relu teacher k={V.shape[0]}, d={V.shape[1]}")


def relu_student(d: int, n: int, *, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Sequential:
    r"""The student :math:`x \mapsto \sum_{i\le n}\mathrm{relu}(w_i\cdot x)` of Safran & Shamir (2018): a
    bias-free ``Linear(d, n)`` (PyTorch's default init, seeded), ReLU, and a ``Linear(n, 1)`` whose
    weights are fixed at 1 (``requires_grad=False``), so only the w_i train (``fit_ensemble`` keeps
    frozen parameters as they are). ``model[0].weight`` holds the rows w_i."""
    d, n = positive_int("d", d), positive_int("n", n)
    from .models import mlp

    model = mlp(d, [n], 1, bias=False, seed=seed, dtype=dtype)
    with torch.no_grad():
        model[2].weight.fill_(1.0)
    model[2].weight.requires_grad_(False)
    return model


def student_population_losses(students, teacher) -> np.ndarray:
    """:func:`relu_population_loss` of each student of :func:`relu_student` (its ``[0].weight``) against
    ``teacher``; one float per student."""
    V = _weights("teacher", teacher)
    out = []
    for i, m in enumerate(students):
        if not isinstance(m, nn.Sequential) or len(m) != 3 or not isinstance(m[0], nn.Linear):
            raise ValueError(f"students[{i}] must be a model of relu_student (Linear, ReLU, fixed sum); "
                             f"got {type(m).__name__}")
        if not torch.all(m[2].weight == 1):
            raise ValueError(f"students[{i}]'s output weights must be fixed at 1 (relu_student)")
        out.append(relu_population_loss(m[0].weight.detach(), V))
    return np.array(out)


@dataclass(frozen=True)
class StuckFraction:
    """``count`` of ``n`` runs ended with a loss above ``threshold``: ``fraction`` = count / n and its
    Wilson score interval [``lo``, ``hi``] at level ``confidence`` (Wilson 1927; good coverage even at 0
    or n successes, unlike the normal approximation)."""

    count: int
    n: int
    fraction: float
    lo: float
    hi: float
    threshold: float
    confidence: float


def stuck_fraction(losses, threshold: float, confidence: float = 0.95) -> StuckFraction:
    r"""The fraction of runs whose final loss exceeds ``threshold``, with the Wilson interval
    :math:`\frac{\hat p + z^2/2n \pm z\sqrt{\hat p(1-\hat p)/n + z^2/4n^2}}{1 + z^2/n}`, z the
    (1 + confidence)/2 normal quantile. NaN losses (diverged runs) count as stuck."""
    from statistics import NormalDist

    v = np.asarray(losses, dtype=float).reshape(-1)
    if v.size < 1:
        raise ValueError("losses must hold at least one run's final loss")
    threshold = positive("threshold", threshold)
    confidence = in_interval("confidence", confidence, 0.0, 1.0, closed="neither")
    n = int(v.size)
    count = int(np.sum(~(v <= threshold)))
    p = count / n
    z = NormalDist().inv_cdf((1 + confidence) / 2)
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return StuckFraction(count=count, n=n, fraction=p, lo=max(0.0, centre - half), hi=min(1.0, centre + half),
                         threshold=threshold, confidence=confidence)
