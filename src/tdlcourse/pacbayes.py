"""Non-vacuous PAC-Bayes bounds for trained networks (chapter 2), after Dziugaite & Roy 2017,
"Computing nonvacuous generalization bounds for deep (stochastic) neural networks with many more
parameters than training data" (UAI), with the Monte Carlo term of Langford & Caruana 2002
("(Not) bounding the true error", NeurIPS).

The bound is about the stochastic (Gibbs) classifier Q = N(w, diag(s^2)) over all parameters of a
network: each prediction uses a fresh draw theta ~ Q. Its risk e(Q) = E_theta e(theta) and its
empirical risk on the training sample S of m points, e_S(Q), enter the PAC-Bayes-kl bound
(Langford & Seeger 2001; Maurer 2004; ``capacity.pac_bayes_kl_bound``): with probability at least
1 - delta over S, for every Q at once,

    kl(e_S(Q) || e(Q)) <= (KL(Q || P) + ln(2 sqrt(m) / delta)) / m,

for a prior P that does not depend on S. Here P = N(w0, lambda I) is centred at the network's
initialization w0 (drawn before seeing the data), and lambda is chosen on the data from the grid
lambda_j = c exp(-j / b), j = 1, 2, ... (c = 0.1, b = 100 as in Dziugaite & Roy), paid for by a
union bound: the bound at grid point j uses delta_j = 6 delta / (pi^2 j^2), and sum_j delta_j = delta.

Two steps, as in the paper:

1. ``optimize_posterior`` starts at the trained weights and minimizes over (w, s, lambda) a
   differentiable surrogate of the bound: the logistic (cross-entropy) loss divided by ln 2, an
   upper bound on the 0-1 loss, on minibatches with one draw theta ~ Q per step (the
   reparametrization theta = w + s * eps), plus the Pinsker form sqrt(c / 2) of the kl term, with c
   as above at the continuous j(lambda) = b ln(c / lambda).
2. ``final_bound`` estimates e_S(Q) by drawing networks from Q (its confidence interval is the
   sample-convergence bound of Langford & Caruana 2002, kl(e_hat || e_S(Q)) <= ln(2/delta_mc)/n),
   picks the grid point j with the smallest KL(Q || P_j) + 2 ln j, and inverts the kl.

Dziugaite & Roy use ln(m / delta_j) / (m - 1) in place of Maurer's ln(2 sqrt(m) / delta_j) / m; both
are valid (Maurer's for m >= 8), and Maurer's is the smaller. On binary MNIST (m = 55,000, ReLU nets
with one to three hidden layers of 300 to 1200 units) they report bounds of about 0.16-0.22, with
test errors below 0.02.
Conventions: KL in nats; parameters flattened in ``model.named_parameters()`` order; everything on
the model's device, in its dtype (KL and bounds in float64).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn import functional as F

from . import capacity
from .validate import integer, positive, positive_int, probability

__all__ = ["PRIOR_C", "PRIOR_B", "kl_diag_gaussians", "prior_variance", "Posterior", "optimize_posterior",
           "StochasticError", "stochastic_error", "PacBayesBound", "final_bound"]

PRIOR_C = 0.1    # c: the largest prior variance of the grid lambda_j = c exp(-j / b)
PRIOR_B = 100    # b: grid points per factor e of lambda


def _tensor(name: str, x, like: torch.Tensor | None = None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        t = x
    else:
        t = torch.as_tensor(x, dtype=torch.float64 if like is None else like.dtype,
                            device=None if like is None else like.device)
    if not torch.is_floating_point(t):
        t = t.to(torch.float64 if like is None else like.dtype)
    if not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must hold finite numbers only")
    return t


def kl_diag_gaussians(mean_q, std_q, mean_p, std_p) -> torch.Tensor:
    r"""KL divergence between diagonal Gaussians, in nats:

    .. math:: \mathrm{KL}\big(N(\mu_q, \mathrm{diag}(s_q^2)) \,\|\, N(\mu_p, \mathrm{diag}(s_p^2))\big)
              = \sum_i \Big[\ln\frac{s_{p,i}}{s_{q,i}} + \frac{s_{q,i}^2 + (\mu_{q,i} - \mu_{p,i})^2}{2 s_{p,i}^2}
              - \frac12\Big].

    Arguments broadcast against each other (e.g. a scalar ``std_p`` for the isotropic prior
    N(w0, lambda I) has ``std_p = sqrt(lambda)``); standard deviations must be > 0. Returns a 0-dim
    tensor, differentiable in tensor arguments (``optimize_posterior`` uses it as the KL term).
    """
    mq = _tensor("mean_q", mean_q)
    sq, mp, sp = _tensor("std_q", std_q, mq), _tensor("mean_p", mean_p, mq), _tensor("std_p", std_p, mq)
    for name, s in (("std_q", sq), ("std_p", sp)):
        if not bool((s > 0).all()):
            raise ValueError(f"{name} must be > 0 everywhere, got a minimum of {float(s.min()):g}")
    try:
        torch.broadcast_shapes(mq.shape, sq.shape, mp.shape, sp.shape)
    except RuntimeError:
        raise ValueError(f"shapes {tuple(mq.shape)}, {tuple(sq.shape)}, {tuple(mp.shape)}, {tuple(sp.shape)} of "
                         "mean_q, std_q, mean_p, std_p do not broadcast") from None
    vq, vp = sq * sq, sp * sp
    terms = torch.log(sp) - torch.log(sq) + (vq + (mq - mp) ** 2) / (2 * vp) - 0.5
    return terms.expand(torch.broadcast_shapes(mq.shape, sq.shape, mp.shape, sp.shape)).sum()


def prior_variance(j: int) -> float:
    """The grid of prior variances: lambda_j = PRIOR_C exp(-j / PRIOR_B) for j = 1, 2, ...
    (Dziugaite & Roy 2017, Sec. 3), each paid for with delta_j = 6 delta / (pi^2 j^2)."""
    return PRIOR_C * math.exp(-integer("j", j, lo=1) / PRIOR_B)


# ============================================================================ the posterior

def _flat(model: nn.Module, name: str) -> tuple[torch.Tensor, tuple[str, ...], tuple[torch.Size, ...]]:
    if not isinstance(model, nn.Module):
        raise ValueError(f"{name} must be an nn.Module, got {type(model).__name__}")
    named = [(k, p) for k, p in model.named_parameters()]
    if not named:
        raise ValueError(f"{name} has no parameters")
    flat = torch.cat([p.detach().reshape(-1) for _, p in named]).clone()
    return flat, tuple(k for k, _ in named), tuple(p.shape for _, p in named)


def _unflatten(theta: torch.Tensor, names, shapes) -> dict[str, torch.Tensor]:
    out, i = {}, 0
    for k, s in zip(names, shapes):
        n = math.prod(s)
        out[k] = theta[i:i + n].view(s)
        i += n
    return out


@dataclass(frozen=True, eq=False)
class Posterior:
    """A diagonal-Gaussian posterior Q = N(mean, diag(std^2)) over a network's flattened parameters
    and its prior P = N(prior_mean, prior_var I); made by ``optimize_posterior``.

    ``prior_var`` is the continuous lambda the optimization reached (``final_bound`` rounds it to
    the grid). ``objective`` holds the surrogate bound (mean over each logging interval of
    ``log_every`` steps); ``surrogate_loss``, ``kl_history`` and ``prior_var_history`` (lambda)
    the same means of its parts.
    ``template`` is a private copy of the network used to evaluate sampled parameters.
    """

    mean: torch.Tensor
    std: torch.Tensor
    prior_mean: torch.Tensor
    prior_var: float
    m: int
    delta: float
    steps: int
    objective: tuple[float, ...]
    surrogate_loss: tuple[float, ...]
    kl_history: tuple[float, ...]
    prior_var_history: tuple[float, ...]
    names: tuple[str, ...] = field(repr=False)
    shapes: tuple[torch.Size, ...] = field(repr=False)
    template: nn.Module = field(repr=False)

    @property
    def num_params(self) -> int:
        return int(self.mean.numel())

    def kl(self, prior_var: float | None = None) -> float:
        """KL(Q || N(prior_mean, prior_var I)) in nats (float64); ``prior_var`` defaults to the
        optimized lambda."""
        lam = self.prior_var if prior_var is None else positive("prior_var", prior_var)
        cpu = [t.detach().to("cpu", torch.float64) for t in (self.mean, self.std, self.prior_mean)]
        return float(kl_diag_gaussians(*cpu, torch.tensor(math.sqrt(lam), dtype=torch.float64)))

    def outputs(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Network outputs [K, n, d_out] for K flat parameter vectors ``theta`` [K, P] on inputs x."""
        def f(t):
            return functional_call(self.template, _unflatten(t, self.names, self.shapes), (x,))
        return vmap(f)(theta)


def _surrogate(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Logistic / cross-entropy loss divided by ln 2: >= 1 wherever the prediction is wrong."""
    if out.shape[-1] == 1:
        return F.binary_cross_entropy_with_logits(out[..., 0], y.to(out.dtype)) / math.log(2.0)
    return F.cross_entropy(out, y) / math.log(2.0)


def _errors(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of misclassified points per network: out [K, n, d_out] -> [K] (float64)."""
    pred = (out[..., 0] > 0).long() if out.shape[-1] == 1 else out.argmax(-1)
    return (pred != y).sum(-1).double()


def _data(model_param: torch.Tensor, x, y, d_out: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.as_tensor(x).to(model_param.device, model_param.dtype)
    y = torch.as_tensor(y).to(model_param.device).reshape(-1)
    if x.shape[0] != y.shape[0] or x.shape[0] < 1:
        raise ValueError(f"x has {x.shape[0]} rows and y {y.shape[0]} labels; they must agree and be >= 1")
    if torch.is_floating_point(y):
        if not bool(((y == 0) | (y == 1) | (y == -1)).all()):
            raise ValueError("y must hold class labels (integers, or 0/1 and -1/1 for one output)")
        y = y.long()
    if d_out == 1:
        if not bool(((y == 0) | (y == 1) | (y == -1)).all()):
            raise ValueError("with one output, y must hold labels in {0, 1} or {-1, 1}")
        y = (y == 1).long()
    elif int(y.min()) < 0 or int(y.max()) >= d_out:
        raise ValueError(f"y must hold class indices in [0, {d_out - 1}] for a network with {d_out} outputs")
    return x, y


def _union_term(lam: torch.Tensor) -> torch.Tensor:
    """2 ln j + ln(pi^2 / 6) at the continuous j(lambda) = b ln(c / lambda), clamped to j >= 1."""
    j = torch.clamp(PRIOR_B * (math.log(PRIOR_C) - torch.log(lam)), min=1.0)
    return 2.0 * torch.log(j) + math.log(math.pi ** 2 / 6.0)


def optimize_posterior(model: nn.Module, init_model: nn.Module, x, y, *, steps: int = 2000, lr: float = 1e-2,
                       lr_mean: float = 1e-3, batch_size: int | None = 128, delta: float = 0.025,
                       init_std: float = 1e-2, init_prior_var: float = math.exp(-6.0), log_every: int | None = None,
                       seed: int = 0, progress: bool = False) -> Posterior:
    r"""Optimize a Gaussian posterior around a trained network (Dziugaite & Roy 2017, Sec. 3).

    Q = N(w, diag(s^2)) over all parameters of ``model`` (the trained network), prior
    P = N(w0, lambda I) with w0 the parameters of ``init_model`` (the same network at its
    initialization, which must not depend on the data). Starting at w = the trained weights,
    s = ``init_std`` and lambda = ``init_prior_var`` (D&R: e^-6), Adam minimizes over (w, log s,
    log lambda), with learning rate ``lr_mean`` for the mean w (it moves on the scale of the weights)
    and ``lr`` for log s and log lambda (log scale), for ``steps`` steps on minibatches of
    ``batch_size`` (None: full batch) of the m training points (x, y):

    .. math:: \hat L_{\mathrm{surr}}(w + s \odot \varepsilon) + \sqrt{\frac{\mathrm{KL}(Q\|P) + \ln(2\sqrt m/\delta)
              + 2\ln j(\lambda) + \ln(\pi^2/6)}{2m}}, \qquad j(\lambda) = b \ln(c/\lambda) \ge 1,

    with one draw eps ~ N(0, I) per step and the surrogate loss of ``_surrogate`` (logistic loss
    / ln 2, an upper bound on the 0-1 loss). The second term is the Pinsker relaxation
    (kl^{-1}(q, c) <= q + sqrt(c/2)) of the bound ``final_bound`` computes, at a continuous grid
    index. One output: labels in {0, 1} (or {-1, 1}); k outputs: class indices. Neither model is
    changed; everything runs on ``model``'s device. Dziugaite & Roy's code (github.com/gkdziugaite/
    pacbayes-opt) starts at s = 2|w| and runs RMSprop for hundreds of epochs; a constant ``init_std``
    and Adam reach a lower bound within the lab's few thousand steps.
    """
    steps, lr, lr_mean = positive_int("steps", steps), positive("lr", lr), positive("lr_mean", lr_mean)
    delta = probability("delta", delta, open_=True)
    init_std, init_prior_var = positive("init_std", init_std), positive("init_prior_var", init_prior_var)
    seed = integer("seed", seed)
    log_every = positive_int("log_every", log_every) if log_every is not None else max(1, steps // 50)
    w, names, shapes = _flat(model, "model")
    w0, names0, shapes0 = _flat(init_model, "init_model")
    if names0 != names or shapes0 != shapes:
        raise ValueError("init_model must have the parameters of model (same names and shapes)")
    w0 = w0.to(w.device, w.dtype)
    template = copy.deepcopy(model)   # evaluated at sampled parameters; the user's model is never touched
    for p in template.parameters():
        p.requires_grad_(False)
    x, y = _data(w, x, y, _output_width(template, names, shapes, w, x))
    m = int(x.shape[0])
    if batch_size is not None:
        batch_size = integer("batch_size", batch_size, lo=1, hi=m)
    gen = torch.Generator(device=w.device).manual_seed(seed)
    mean = w.clone().requires_grad_(True)
    log_std = torch.full_like(w, math.log(init_std)).requires_grad_(True)
    log_lam = torch.tensor(math.log(init_prior_var), dtype=w.dtype, device=w.device).requires_grad_(True)
    opt = torch.optim.Adam([{"params": [mean], "lr": lr_mean}, {"params": [log_std, log_lam]}], lr=lr)
    const = math.log(2.0 * math.sqrt(m) / delta)
    logs: list[list[float]] = []
    acc = torch.zeros(4, dtype=torch.float64, device=w.device)   # summed on the device: no sync per step
    from tqdm.auto import tqdm
    bar = tqdm(range(steps), desc="PAC-Bayes posterior", disable=not progress, leave=False)
    batches = _minibatches(m, batch_size, gen, w.device)
    for step in bar:
        idx = next(batches)
        xb, yb = (x, y) if idx is None else (x[idx], y[idx])
        eps = torch.randn(w.shape, generator=gen, device=w.device, dtype=w.dtype)
        std, lam = log_std.exp(), log_lam.exp()
        surr = _surrogate(functional_call(template, _unflatten(mean + std * eps, names, shapes), (xb,)), yb)
        kl = kl_diag_gaussians(mean, std, w0, lam.sqrt())
        objective = surr + torch.sqrt(torch.clamp(kl + const + _union_term(lam), min=0.0) / (2 * m))
        opt.zero_grad(set_to_none=True)
        objective.backward()
        opt.step()
        acc += torch.stack([objective.detach(), surr.detach(), kl.detach(), lam.detach()]).double()
        done = (step + 1) % log_every == 0 or step == steps - 1
        if done:
            k = (step % log_every) + 1
            logs.append([float(v) / k for v in acc])
            acc.zero_()
            if not all(math.isfinite(v) for v in logs[-1]):
                raise FloatingPointError(f"the PAC-Bayes objective became {logs[-1][0]} by step {step + 1}; lower lr")
            bar.set_postfix(bound=f"{logs[-1][0]:.3f}")
    obj, surr_log, kl_log, lam_log = (tuple(v) for v in zip(*logs))
    return Posterior(mean=mean.detach().clone(), std=log_std.detach().exp(), prior_mean=w0,
                     prior_var=float(log_lam.detach().exp()), m=m, delta=float(delta), steps=steps, objective=obj,
                     surrogate_loss=surr_log, kl_history=kl_log, prior_var_history=lam_log, names=names,
                     shapes=shapes, template=template)


def _output_width(template: nn.Module, names, shapes, w: torch.Tensor, x) -> int:
    """The network's number of outputs, from one input."""
    x1 = torch.as_tensor(x[:1]).to(w.device, w.dtype)
    with torch.no_grad():
        return int(functional_call(template, _unflatten(w, names, shapes), (x1,)).shape[-1])


def _minibatches(m: int, batch_size: int | None, gen: torch.Generator, dev: torch.device) -> Iterator:
    """Index tensors of minibatches, a fresh permutation per epoch (the last m mod batch_size points
    of each are skipped, as in ``train``); None for full batch."""
    while True:
        if batch_size is None:
            yield None
            continue
        perm = torch.randperm(m, generator=gen, device=dev)
        for a in range(0, m - batch_size + 1, batch_size):
            yield perm[a:a + batch_size]


# ============================================================================ Monte Carlo and the bound

@dataclass(frozen=True)
class StochasticError:
    """Monte Carlo estimate of the error of the stochastic classifier Q on a data set: the mean
    over ``samples`` networks theta ~ Q of their error rates, and its standard error."""

    mean: float
    stderr: float
    samples: int


def _sample_errors(posterior: Posterior, x, y, samples: int, seed: int, chunk: int, data_chunk: int) -> torch.Tensor:
    """Error rate of each of ``samples`` networks drawn from Q on (x, y): [samples] float64."""
    w = posterior.mean
    x, y = _data(w, x, y, _output_width(posterior.template, posterior.names, posterior.shapes, w, x))
    gen = torch.Generator(device=w.device).manual_seed(seed)
    errs = []
    with torch.no_grad():
        for start in range(0, samples, chunk):
            k = min(chunk, samples - start)
            eps = torch.randn((k, w.numel()), generator=gen, device=w.device, dtype=w.dtype)
            theta = w + posterior.std * eps
            wrong = torch.zeros(k, dtype=torch.float64, device=w.device)
            for a in range(0, x.shape[0], data_chunk):
                wrong += _errors(posterior.outputs(theta, x[a:a + data_chunk]), y[a:a + data_chunk])
            errs.append(wrong / x.shape[0])
    return torch.cat(errs)


def stochastic_error(posterior: Posterior, x, y, *, samples: int = 1000, seed: int = 0, chunk: int = 16,
                     data_chunk: int = 4096) -> StochasticError:
    """Error of the stochastic classifier Q on (x, y), estimated from ``samples`` networks drawn
    from Q (``chunk`` networks and ``data_chunk`` points at a time). Its standard error is the
    sample standard deviation of the per-network error rates / sqrt(samples)."""
    samples, seed = integer("samples", samples, lo=2), integer("seed", seed)
    chunk, data_chunk = positive_int("chunk", chunk), positive_int("data_chunk", data_chunk)
    e = _sample_errors(posterior, x, y, samples, seed, chunk, data_chunk)
    return StochasticError(mean=float(e.mean()), stderr=float(e.std() / math.sqrt(samples)), samples=samples)


@dataclass(frozen=True)
class PacBayesBound:
    """Result of ``final_bound``: a bound on the error e(Q) of the stochastic classifier that holds
    with probability at least ``confidence`` = 1 - delta - delta_mc.

    ``emp_risk``: the Monte Carlo estimate of the empirical risk e_S(Q) from ``samples`` networks;
    ``emp_risk_ci``: its 1 - delta_mc interval {p : kl(emp_risk || p) <= ln(2/delta_mc)/samples}
    (Langford & Caruana 2002), whose upper end enters the bound; ``kl``: KL(Q || P_j) at the chosen
    grid prior ``prior_var`` = lambda_j; ``kl_term``: c = (kl + ln(2 sqrt(m)/delta_j)) / m;
    ``pinsker_bound``: the weaker bound e_up + sqrt(c/2) (Pinsker's inequality), McAllester's form.

    The kl bound kl^{-1}(e_up, c) is below 1 whenever e_up < 1, however large c is (kl(q || p) grows
    without bound as p -> 1), so ``non_vacuous`` (bound < 1, the usual definition) is a weak
    statement: compare the bound with the error of a trivial classifier (0.5 for balanced binary
    labels) and with the test error; ``pinsker_bound`` exceeds 1 when c is large.
    """

    bound: float
    pinsker_bound: float
    emp_risk: float
    emp_risk_stderr: float
    emp_risk_ci: tuple[float, float]
    kl: float
    kl_term: float
    prior_var: float
    j: int
    m: int
    delta: float
    delta_mc: float
    samples: int

    @property
    def confidence(self) -> float:
        return 1.0 - self.delta - self.delta_mc

    @property
    def non_vacuous(self) -> bool:
        """True when the bound says something about the 0-1 risk (bound < 1)."""
        return self.bound < 1.0


def _best_grid_point(posterior: Posterior) -> tuple[int, float]:
    """The grid index j >= 1 minimizing KL(Q || P_j) + 2 ln j (the final bound increases in it), and
    that KL. KL(lambda) = (1/2)[(sum s^2 + ||w - w0||^2)/lambda - P + P ln lambda - sum ln s^2]."""
    w, s, w0 = (t.detach().to("cpu", torch.float64) for t in (posterior.mean, posterior.std, posterior.prior_mean))
    s2, d2, logs2 = float((s * s).sum()), float(((w - w0) ** 2).sum()), float(torch.log(s * s).sum())
    P = posterior.num_params
    lam_star = (s2 + d2) / P                       # the unconstrained minimizer of KL(lambda)
    j_star = max(1, int(PRIOR_B * math.log(PRIOR_C / lam_star)))
    js = torch.arange(1, j_star + 10 * PRIOR_B + 1, dtype=torch.float64)
    lam = PRIOR_C * torch.exp(-js / PRIOR_B)
    kl = 0.5 * ((s2 + d2) / lam - P + P * torch.log(lam) - logs2)
    i = int(torch.argmin(kl + 2 * torch.log(js)))
    return int(js[i]), float(kl[i])


def final_bound(posterior: Posterior, x, y, *, delta: float = 0.025, delta_mc: float = 0.01, samples: int = 1000,
                seed: int = 0, chunk: int = 16, data_chunk: int = 4096) -> PacBayesBound:
    r"""The PAC-Bayes bound of Dziugaite & Roy 2017 on the error of the stochastic classifier Q, on
    the training sample (x, y) of m points (the sample the prior must not depend on):

    1. e_hat = mean 0-1 training error of ``samples`` networks drawn from Q (seeded by ``seed``);
       by the sample-convergence bound of Langford & Caruana 2002, with probability >= 1 - delta_mc
       over the draws, kl(e_hat || e_S(Q)) <= ln(2/delta_mc)/samples, so e_S(Q) <= e_up =
       ``capacity.kl_inverse(e_hat, ln(2/delta_mc)/samples)`` (the interval's upper end);
    2. the grid prior P_j = N(w0, lambda_j I), lambda_j = c exp(-j/b), with the smallest
       KL(Q || P_j) + 2 ln j is chosen; with delta_j = 6 delta / (pi^2 j^2) the PAC-Bayes-kl bound
       gives e(Q) <= ``capacity.pac_bayes_kl_bound(e_up, KL(Q || P_j), m, delta_j)``
       = kl^{-1}(e_up, (KL + ln(2 sqrt(m)/delta_j)) / m).

    Confidence: step 2 holds for every Q and every j at once with probability >= 1 - delta over
    the sample (the union bound over the grid: sum_j delta_j = delta), and step 1 with probability
    >= 1 - delta_mc over the network draws, so the bound holds with probability >= 1 - delta - delta_mc
    (0.965 with the defaults, as in the paper, which draws 150,000 networks).
    """
    delta = probability("delta", delta, open_=True)
    delta_mc = probability("delta_mc", delta_mc, open_=True)
    if delta + delta_mc >= 1:
        raise ValueError(f"delta + delta_mc = {delta + delta_mc:g} must be < 1")
    samples, seed = integer("samples", samples, lo=2), integer("seed", seed)
    chunk, data_chunk = positive_int("chunk", chunk), positive_int("data_chunk", data_chunk)
    errs = _sample_errors(posterior, x, y, samples, seed, chunk, data_chunk)
    m = int(torch.as_tensor(y).reshape(-1).shape[0])
    e_hat = float(errs.mean())
    c_mc = math.log(2.0 / delta_mc) / samples
    hi = capacity.kl_inverse(e_hat, c_mc)
    lo = 1.0 - capacity.kl_inverse(1.0 - e_hat, c_mc)   # kl(q||p) = kl(1-q||1-p): the lower end
    j, kl = _best_grid_point(posterior)
    delta_j = 6.0 * delta / (math.pi ** 2 * j * j)
    bound = capacity.pac_bayes_kl_bound(hi, max(kl, 0.0), m, delta_j)
    c = (kl + math.log(2 * math.sqrt(m) / delta_j)) / m
    return PacBayesBound(bound=bound, pinsker_bound=hi + math.sqrt(max(c, 0.0) / 2), emp_risk=e_hat,
                         emp_risk_stderr=float(errs.std() / math.sqrt(samples)), emp_risk_ci=(max(lo, 0.0), hi),
                         kl=kl, kl_term=c, prior_var=prior_variance(j), j=j, m=m, delta=float(delta),
                         delta_mc=float(delta_mc), samples=samples)
