"""Lottery tickets: magnitude pruning, iterative pruning with rewinding, and subnetworks of random nets.

For chapter 11 (failures of gradient-based learning). Notation: a network f(x; theta), its prunable
weights W^l (the weight matrices of its ``nn.Linear`` layers; biases are never pruned), and a mask
m = (m^l) with m^l in {0, 1}^{shape W^l}. The pruned network is f(x; m (.) theta), (.) the entrywise
product; the *sparsity* of a mask is the fraction of its entries that are 0.

- Magnitude pruning (Han et al. 2015; Frankle & Carbin 2019): keep the weights of largest |W_ij|,
  per layer (``scope="layer"``) or over all layers together (``scope="global"``).
- Iterative magnitude pruning, IMP (Frankle & Carbin 2019, Algorithm "iterative pruning"): train,
  prune a fraction p_l of the surviving weights of each layer, rewind the survivors, repeat; after r
  rounds layer l has sparsity 1 - (1 - p_l)^r. Frankle & Carbin rewind to the initialization theta_0
  and use p = 20% for the hidden layers of fully connected nets and 10% for the output layer;
  Frankle, Dziugaite, Roy & Carbin 2020 ("Linear mode connectivity and the lottery ticket
  hypothesis") rewind to an early iterate theta_k instead, which keeps tickets alive at higher
  sparsity and in larger nets. The control is the same mask on a fresh random initialization: the
  lottery-ticket claim is that the ticket beats it.
- Score-based search on a frozen random net, edge-popup (Ramanujan, Wortsman, Kembhavi, Farhadi &
  Rastegari 2020): the weights never change; each weight has a score s_ij, the forward pass uses
  W (.) h(|s|) with h the indicator of the top (1 - sparsity) fraction of each layer, and the
  backward pass treats h as the identity (straight-through), so dL/ds = dL/dW_eff (.) W (.) sign(s).

Masks are dicts ``{parameter name: bool tensor of the weight's shape}``, e.g. ``{"0.weight": ...}``
for ``models.mlp``. ``apply_masks`` builds a model whose masks survive ``train.fit`` and
``train.fit_ensemble`` (any architecture, any optimizer). ``train_masked``, ``iterative_magnitude_
pruning`` and ``edge_popup`` train K plain MLPs at once with the batched hand-written backward pass
of ``train.fit_ensemble``'s bmm engine (``tdlcourse._mlpstack``), the masks applied to the gradients.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from . import _mlpstack
from .data import Data
from .train import TrainConfig
from .train.checks import check_members
from .train.history import DivergenceError
from .train.optim import StackedOptimizer
from .train.stacked import Split, StackedParams, ensemble_batches, ensemble_data
from .validate import in_interval, integer, one_of, positive_int

__all__ = ["SCOPES", "prunable", "frankle_carbin_rates", "magnitude_masks", "random_masks", "sparsity",
           "layer_sparsity", "MaskedLinear", "apply_masks", "masks_of", "remove_masks", "rewind", "reinit",
           "MaskedTraining", "train_masked", "IMPResult", "iterative_magnitude_pruning", "SubnetworkResult",
           "edge_popup"]

SCOPES = ("layer", "global")
Masks = dict[str, torch.Tensor]


# --------------------------------------------------------------------------------------------------
# masks


def prunable(model: nn.Module) -> tuple[str, ...]:
    """Names of the prunable weights of ``model``: the ``weight`` of each ``nn.Linear`` (or ``MaskedLinear``),
    in the order of ``model.named_parameters()``."""
    names = {f"{n}.weight" if n else "weight" for n, m in model.named_modules()
             if isinstance(m, (nn.Linear, MaskedLinear))}
    return tuple(n for n, _ in model.named_parameters() if n in names)


def _weights(model: nn.Module) -> dict[str, torch.Tensor]:
    names = prunable(model)
    if not names:
        raise ValueError("model has no nn.Linear layer to prune")
    return {n: model.get_parameter(n).detach() for n in names}


def frankle_carbin_rates(model: nn.Module, hidden: float = 0.2, output: float = 0.1) -> dict[str, float]:
    """Per-layer pruning rates of Frankle & Carbin 2019 for fully connected nets: a fraction ``hidden``
    of the surviving weights of every layer but the last, ``output`` of the last (20% and 10% for
    LeNet-300-100), per round."""
    hidden = in_interval("hidden", hidden, 0.0, 1.0, closed="left")
    output = in_interval("output", output, 0.0, 1.0, closed="left")
    names = prunable(model)
    if not names:
        raise ValueError("model has no nn.Linear layer to prune")
    return {n: (output if n == names[-1] else hidden) for n in names}


def check_masks(model: nn.Module, masks: Mapping[str, torch.Tensor], name: str = "masks") -> Masks:
    """``masks`` as bool tensors on the weights' device, checked against ``model``'s prunable weights:
    known names, the weight's shape, entries 0/1. Layers without a mask get all ones."""
    weights = _weights(model)
    if not isinstance(masks, Mapping):
        raise ValueError(f"{name} must be a dict parameter name -> 0/1 tensor, got {type(masks).__name__}")
    out = {}
    for key, m in masks.items():
        if key not in weights:
            raise ValueError(f"{name}[{key!r}]: {key!r} is not a prunable weight; allowed: "
                             f"{', '.join(map(repr, weights))}")
        m = torch.as_tensor(m)
        w = weights[key]
        if tuple(m.shape) != tuple(w.shape):
            raise ValueError(f"{name}[{key!r}] has shape {tuple(m.shape)}; it must have the weight's shape "
                             f"{tuple(w.shape)}")
        if m.dtype != torch.bool:
            if not bool(((m == 0) | (m == 1)).all()):
                raise ValueError(f"{name}[{key!r}] must hold only 0 and 1 (or be a bool tensor)")
            m = m != 0
        out[key] = m.to(w.device)
    return {k: out.get(k, torch.ones_like(w, dtype=torch.bool)) for k, w in weights.items()}


def _sparsities(model_names: Sequence[str], sparsity, scope: str, what: str = "sparsity") -> dict[str, float] | float:
    """One fraction in [0, 1), or (scope "layer") a dict prunable name -> fraction; ``what`` names it."""
    if isinstance(sparsity, Mapping):
        if scope == "global":
            raise ValueError(f"{what} must be one number with scope='global' (per-layer values need scope='layer')")
        bad = [k for k in sparsity if k not in model_names]
        if bad:
            raise ValueError(f"{what}[{bad[0]!r}]: {bad[0]!r} is not a prunable weight; allowed: "
                             f"{', '.join(map(repr, model_names))}")
        return {k: in_interval(f"{what}[{k!r}]", v, 0.0, 1.0, closed="left") for k, v in sparsity.items()}
    return in_interval(what, sparsity, 0.0, 1.0, closed="left")


def _prune_smallest(scores: torch.Tensor, alive: torch.Tensor, n_zero: int, what: str) -> torch.Tensor:
    """Keep-mask (flat) with exactly ``n_zero`` zeros: the dead entries first, then the smallest scores
    (ties broken by position)."""
    dead = int((~alive).sum())
    if n_zero < dead:
        raise ValueError(f"{what} asks for {n_zero} pruned weights but the given mask already prunes {dead}; "
                         "pruned weights stay pruned (ask for a sparsity >= the mask's)")
    s = torch.where(alive, scores.abs().double(), torch.tensor(-1.0, dtype=torch.float64, device=scores.device))
    order = torch.argsort(s, stable=True)
    keep = torch.ones_like(alive)
    keep[order[:n_zero]] = False
    return keep


def magnitude_masks(model: nn.Module, sparsity: float | Mapping[str, float], *, scope: str = "layer",
                    masks: Mapping[str, torch.Tensor] | None = None) -> Masks:
    """Masks keeping the weights of largest magnitude |W_ij|, with exactly the requested sparsity.

    ``scope="layer"``: each layer l loses round(s_l n_l) of its n_l weights (``sparsity`` one number
    s for all layers, or a dict name -> s_l; layers not named keep their mask). ``scope="global"``:
    round(s n) of all n prunable weights, ranked together (Frankle & Carbin 2019 use it for deep conv
    nets). With ``masks`` the weights pruned there stay pruned and count towards the sparsity (the
    next round of iterative pruning). Ties are broken by position. ``sparsity`` lies in [0, 1).
    """
    one_of("scope", scope, SCOPES)
    weights = _weights(model)
    target = _sparsities(list(weights), sparsity, scope)
    current = check_masks(model, masks or {})
    if scope == "global":
        flat_w = torch.cat([w.reshape(-1) for w in weights.values()])
        alive = torch.cat([m.reshape(-1) for m in current.values()])
        keep = _prune_smallest(flat_w, alive, round(target * flat_w.numel()), f"sparsity={target:g}")
        out, a = {}, 0
        for k, w in weights.items():
            out[k] = keep[a:a + w.numel()].view(w.shape)
            a += w.numel()
        return out
    out = {}
    for k, w in weights.items():
        s = target.get(k) if isinstance(target, dict) else target
        if s is None:
            out[k] = current[k].clone()
            continue
        out[k] = _prune_smallest(w.reshape(-1), current[k].reshape(-1), round(s * w.numel()),
                                 f"sparsity[{k!r}]={s:g}").view(w.shape)
    return out


def random_masks(model: nn.Module, sparsity: float | Mapping[str, float], *, seed: int = 0) -> Masks:
    """Masks pruning round(s_l n_l) weights of each layer chosen uniformly at random (the random-pruning
    control of Frankle & Carbin 2019)."""
    seed = integer("seed", seed)
    weights = _weights(model)
    target = _sparsities(list(weights), sparsity, "layer")
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, w in weights.items():
        s = target.get(k, 0.0) if isinstance(target, dict) else target
        n = w.numel()
        keep = torch.ones(n, dtype=torch.bool)
        keep[torch.randperm(n, generator=g)[:round(s * n)]] = False
        out[k] = keep.view(w.shape).to(w.device)
    return out


def _mask_values(masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    if not isinstance(masks, Mapping) or not masks:
        raise ValueError(f"masks={masks!r} must be a non-empty dict parameter name -> 0/1 tensor")
    for k, m in masks.items():
        if not isinstance(m, torch.Tensor):
            raise ValueError(f"masks[{k!r}]={m!r} must be a 0/1 (or bool) tensor")
    return {k: m.bool() for k, m in masks.items()}


def sparsity(masks: Mapping[str, torch.Tensor]) -> float:
    """Fraction of all masked entries that are pruned (0)."""
    masks = _mask_values(masks)
    total = sum(m.numel() for m in masks.values())
    return float(sum(int((~m).sum()) for m in masks.values()) / total)


def layer_sparsity(masks: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """Per layer: the fraction of its entries that are pruned."""
    return {k: float((~m).sum()) / m.numel() for k, m in _mask_values(masks).items()}


# --------------------------------------------------------------------------------------------------
# masked models


class MaskedLinear(nn.Module):
    """A linear layer z = h (m (.) W)^T + b with a fixed 0/1 mask m (a buffer).

    dL/dW = m (.) dL/dW_eff, so the pruned entries get zero gradient; they start at 0 and stay 0
    under SGD (with momentum, weight decay), Adam and AdamW, whose updates vanish where the gradient
    has always been 0 and the weight is 0. The mask is a buffer, so ``fit_ensemble`` stacks one per
    model (its torch.func engine) and ``state_dict`` saves it.
    """

    def __init__(self, linear: nn.Linear, mask: torch.Tensor) -> None:
        super().__init__()
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"linear must be an nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        if not isinstance(mask, torch.Tensor) or tuple(mask.shape) != tuple(w.shape):
            got = tuple(mask.shape) if isinstance(mask, torch.Tensor) else type(mask).__name__
            raise ValueError(f"mask has shape {got}; it must have the weight's shape {tuple(w.shape)}")
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.register_buffer("mask", mask.to(device=w.device, dtype=w.dtype).clone())
        self.weight = nn.Parameter(w * self.mask, requires_grad=linear.weight.requires_grad)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().clone(),
                                                                  requires_grad=linear.bias.requires_grad)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return F.linear(h, self.weight * self.mask, self.bias)

    def extra_repr(self) -> str:  # no mask statistics: fit_ensemble compares reprs of ensemble members
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


def _replace(model: nn.Module, module_name: str, new: nn.Module) -> None:
    parent, _, child = module_name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are ``MaskedLinear`` with ``masks`` (missing layers:
    all ones); pruned weights are set to 0 and stay 0 through ``fit`` and ``fit_ensemble``.
    ``model`` itself is not changed."""
    full = check_masks(model, masks)
    out = copy.deepcopy(model)
    for name, m in full.items():
        mod_name = name[:-len(".weight")] if name.endswith(".weight") else ""
        layer = out.get_submodule(mod_name)
        if isinstance(layer, MaskedLinear):  # a new mask replaces the old one (masks are checked as given)
            layer = _as_linear(layer)
        new = MaskedLinear(layer, m)
        new.train(layer.training)
        if not mod_name:  # the model is a single linear layer
            return new
        _replace(out, mod_name, new)
    return out


def masks_of(model: nn.Module) -> Masks:
    """The masks of the ``MaskedLinear`` layers of ``model`` (bool), keyed by weight name."""
    return {(f"{n}.weight" if n else "weight"): m.mask != 0 for n, m in model.named_modules()
            if isinstance(m, MaskedLinear)}


def _as_linear(layer: MaskedLinear) -> nn.Linear:
    w = layer.weight.detach()
    lin = nn.Linear(layer.in_features, layer.out_features, bias=layer.bias is not None, dtype=w.dtype,
                    device=w.device)
    with torch.no_grad():
        lin.weight.copy_(w * layer.mask)
        if layer.bias is not None:
            lin.bias.copy_(layer.bias.detach())
    lin.weight.requires_grad_(layer.weight.requires_grad)
    lin.train(layer.training)
    return lin


def remove_masks(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``MaskedLinear`` turned back into an ``nn.Linear`` of weight m (.) W
    (pruned entries exactly 0), e.g. to train it with the fast engines or to count its weights."""
    out = copy.deepcopy(model)
    if isinstance(out, MaskedLinear):
        return _as_linear(out)
    for name, m in list(out.named_modules()):
        if isinstance(m, MaskedLinear):
            _replace(out, name, _as_linear(m))
    return out


def rewind(snapshot: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """The rewound ticket: a plain copy of ``snapshot`` (theta_0, or the early iterate theta_k) with the
    pruned weights set to 0: m (.) theta_k on the weights, theta_k's biases."""
    return remove_masks(apply_masks(snapshot, masks))


def reinit(model: nn.Module, seed: int = 0) -> nn.Module:
    """A random re-initialization of ``model`` from its own initial distribution: the entries of each
    parameter tensor permuted uniformly at random (seeded).

    For an i.i.d. initialization (PyTorch's default, ``models.mlp``'s Gaussian) this is a fresh draw
    from the same per-layer distribution whatever init the model used, so the control of Frankle &
    Carbin 2019 ("randomly reinitialized", same mask) needs no knowledge of how ``model`` was built.
    """
    seed = integer("seed", seed)
    g = torch.Generator().manual_seed(seed)
    out = copy.deepcopy(model)
    with torch.no_grad():
        for p in out.parameters():
            perm = torch.randperm(p.numel(), generator=g).to(p.device)
            p.copy_(p.reshape(-1)[perm].view(p.shape))
    return out


# --------------------------------------------------------------------------------------------------
# K plain MLPs trained at once with masked gradients


class _Stack:
    """K plain MLPs stacked for ``_mlpstack``: the plan, the flat parameters [K, P] and the data splits."""

    def __init__(self, models: Sequence[nn.Module], data: Data | tuple, what: str = "models") -> None:
        if isinstance(models, nn.Module) or not all(isinstance(m, nn.Module) for m in models):
            raise ValueError(f"{what} must be a sequence of nn.Module (a list, even for one model)")
        models = check_members(models)  # one architecture
        if any(not p.requires_grad for p in models[0].parameters()):
            raise ValueError(f"{what} have frozen parameters (requires_grad=False); the masked trainer trains every "
                             "parameter: use apply_masks with train.fit_ensemble")
        template = copy.deepcopy(models[0])
        self.params = StackedParams(models)  # copies the parameters
        self.k = len(models)
        self.train, self.test, _ = ensemble_data(data, self.k, self.params.flat.device)
        self.plan = _mlpstack.plan(template, self.params.names,
                                   self.train.x.dim() - (0 if self.train.x_shared else 1))
        if self.plan is None:
            raise ValueError(f"{what} must be plain MLPs (nn.Sequential of nn.Linear and elementwise activations, "
                             "e.g. models.mlp) of one architecture; for other models use apply_masks with "
                             "train.fit or train.fit_ensemble")
        self.models = models

    def flat_masks(self, masks: Sequence[Mapping[str, torch.Tensor]]) -> torch.Tensor:
        """0/1 [K, P] in the order of the flat parameters (1 for biases and unmasked layers)."""
        rows = []
        for j, (model, m) in enumerate(zip(self.models, masks)):
            full = check_masks(model, m, "masks" if len(masks) == 1 else f"masks[{j}]")
            rows.append(torch.cat([full[n].reshape(-1) if n in full else
                                   torch.ones(int(np.prod(shp)), dtype=torch.bool, device=self.params.flat.device)
                                   for n, shp in zip(self.params.names, self.params.shapes)]))
        return torch.stack(rows).to(self.params.flat.dtype)

    def to_models(self, flat: torch.Tensor) -> tuple[nn.Module, ...]:
        """Fresh copies of the input models holding the parameters ``flat`` [K, P]."""
        out = []
        for j, m in enumerate(self.models):
            c = copy.deepcopy(m)
            with torch.no_grad():
                for name, p in zip(self.params.names, self.params.unflatten(flat[j])):
                    c.get_parameter(name).copy_(p)
            out.append(c)
        return tuple(out)

    @torch.no_grad()
    def metrics(self, plist: Sequence[torch.Tensor], split: Split, loss) -> tuple[np.ndarray, np.ndarray]:
        """Mean loss [K] and accuracy [K] of the K models with parameters ``plist`` on ``split``."""
        if len(split) == 0:
            return np.full(self.k, np.nan), np.full(self.k, np.nan)
        tot = torch.zeros(self.k, dtype=torch.float64)
        hit = torch.zeros(self.k, dtype=torch.float64)
        for a in range(0, len(split), 4096):
            part = split.samples(a, a + 4096)
            out = _mlpstack.forward(self.plan, plist, part.x, part.x_shared)
            tot += _mlpstack.batched_loss(loss, None, out, part.y, part.y_shared).double().cpu() * len(part)
            if not torch.is_floating_point(part.y):
                hit += (out.argmax(-1) == part.y).sum(-1).double().cpu()
        return (tot / len(split)).numpy(), (hit / len(split)).numpy()


def _config(steps: int, lr: float, optimizer: str, momentum: float, weight_decay: float, batch_size: int | None,
            seed: int, schedule: str, warmup: int) -> TrainConfig:
    steps = positive_int("steps", steps)
    return TrainConfig(steps=steps, lr=lr, optimizer=optimizer, momentum=momentum, weight_decay=weight_decay,
                       batch_size=batch_size, seed=seed, schedule=schedule, warmup=warmup, progress=False)


def _seeds(seeds: Sequence[int] | None, seed: int, k: int) -> list[int]:
    if seeds is None:
        return [seed] * k
    seeds = [integer(f"seeds[{i}]", s) for i, s in enumerate(seeds)]
    if len(seeds) != k:
        raise ValueError(f"seeds={seeds!r} must hold {k} integers (one per model)")
    return seeds


def _loop(stack: _Stack, flat: torch.Tensor, grad_mask: torch.Tensor | None, cfg: TrainConfig, seeds: list[int],
          first: int = 0, snapshot_at: int | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Steps first+1..cfg.steps of K stacked MLPs from ``flat`` [K, P] (not changed), gradients times
    ``grad_mask``; fresh optimizer state; the learning rate of step t is lr * s(t - 1) of the full
    schedule. Returns the final parameters and those after step ``snapshot_at`` (if asked)."""
    run = cfg.resolve(len(stack.train), flat.device)
    flat = flat.clone()
    if grad_mask is not None:
        flat.mul_(grad_mask)
    opt = StackedOptimizer(cfg, flat)
    ws = _mlpstack.Workspace()
    active = torch.ones(stack.k, dtype=torch.bool, device=flat.device)
    lr = torch.full((stack.k,), float(cfg.lr), dtype=flat.dtype, device=flat.device)
    batches = ensemble_batches(stack.train, cfg.batch_size, seeds)
    snap = flat.clone() if snapshot_at == first else None
    for t, step in enumerate(range(first + 1, run.steps + 1), start=1):
        b = next(batches)
        losses, grads = _mlpstack.forward_backward(stack.plan, stack.params.unflatten(flat), b.x, b.x_shared,
                                                   cfg.loss, run.loss_fn, b.y, b.y_shared, ws)
        if not bool(torch.isfinite(losses).all()):
            j = int((~torch.isfinite(losses)).nonzero()[0])
            raise DivergenceError(f"model {j}: loss became {float(losses[j])} at step {step}; lower lr")
        g = torch.cat([gr.reshape(stack.k, -1) for gr in grads], 1)
        if grad_mask is not None:
            g.mul_(grad_mask)
        opt.step(slice(None), g, lr * run.factors[step - 1], active, t, True)
        if step == snapshot_at:
            snap = flat.clone()
    return flat, snap


@dataclass(frozen=True)
class MaskedTraining:
    """``train_masked``'s result: K trained plain models (pruned weights exactly 0), their masks, and per
    model the final ``train_loss``, ``train_acc``, ``test_loss``, ``test_acc`` (arrays [K]; NaN without a
    test set), ``seconds`` of wall time."""

    models: tuple[nn.Module, ...]
    masks: tuple[Masks, ...]
    train_loss: np.ndarray
    train_acc: np.ndarray
    test_loss: np.ndarray
    test_acc: np.ndarray
    seconds: float


def train_masked(models: Sequence[nn.Module], masks: Mapping[str, torch.Tensor] | Sequence[Mapping[str, torch.Tensor]],
                 data: Data | tuple, *, steps: int, lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.0,
                 weight_decay: float = 0.0, batch_size: int | None = None, seed: int = 0,
                 seeds: Sequence[int] | None = None, schedule: str = "constant", warmup: int = 0) -> MaskedTraining:
    """Train K plain MLPs of one architecture at once, model k restricted to its mask m_k.

    Each step computes the gradients of the K mean losses L_k(m_k (.) theta_k) in one batched pass
    (``_mlpstack``, the bmm engine of ``train.fit_ensemble``), multiplies them by m_k and applies K
    independent ``torch.optim``-style updates; the pruned weights start at 0 and stay exactly 0, so it
    equals ``fit_ensemble`` on ``apply_masks(model_k, m_k)`` up to float rounding (tested). ``masks``:
    one dict for all models or one per model; options as in ``fit_ensemble`` (full batch by default,
    minibatch order of model k from ``seeds[k]``, default ``seed``). Loss: cross-entropy (integer
    labels). ``models`` are not changed.
    """
    t0 = time.perf_counter()
    stack = _Stack(models, data)
    masks = [masks] * stack.k if isinstance(masks, Mapping) else list(masks)
    if len(masks) != stack.k:
        raise ValueError(f"masks holds {len(masks)} dicts but there are {stack.k} models; "
                         "give one dict or one per model")
    cfg = _config(steps, lr, optimizer, momentum, weight_decay, batch_size, seed, schedule, warmup)
    seeds = _seeds(seeds, cfg.seed, stack.k)
    gm = stack.flat_masks(masks)
    flat, _ = _loop(stack, stack.params.flat, gm, cfg, seeds)
    plist = stack.params.unflatten(flat)
    trl, tra = stack.metrics(plist, stack.train, cfg.loss)
    tel, tea = stack.metrics(plist, stack.test, cfg.loss)
    trained = stack.to_models(flat)
    return MaskedTraining(trained, tuple({k: v.clone() for k, v in check_masks(m, mk).items()}
                                         for m, mk in zip(models, masks)),
                          trl, tra, tel, tea, time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# iterative magnitude pruning


@dataclass(frozen=True)
class IMPResult:
    """Iterative magnitude pruning of K models (seeds), rounds r = 0..R (r = 0: the dense net).

    ``sparsity`` [R+1]: fraction of prunable weights pruned in round r (the same for every model);
    ``layer_sparsity``: per round, per layer; ``masks[r][k]``: model k's mask in round r;
    ``test_acc``, ``train_acc`` [R+1, K]: the ticket's final accuracies (trained from the rewind point);
    ``control_acc``, ``control_train_acc`` [R+1, K]: the same mask on a random re-initialization
    (``reinit``) trained for all ``steps`` (NaN where not run); ``rewind_step`` k (0: the init);
    ``rewind_point``: the K snapshots theta_k (plain models); ``rates`` per layer and round; ``scope``;
    ``steps``; ``seconds``.
    """

    sparsity: np.ndarray
    layer_sparsity: tuple[dict[str, float], ...]
    masks: tuple[tuple[Masks, ...], ...]
    test_acc: np.ndarray
    train_acc: np.ndarray
    control_acc: np.ndarray
    control_train_acc: np.ndarray
    rewind_step: int
    rewind_point: tuple[nn.Module, ...]
    rates: dict[str, float] | float
    scope: str
    steps: int
    seconds: float

    @property
    def gap(self) -> np.ndarray:
        """test_acc - control_acc [R+1, K]: how much the ticket beats the re-initialized mask."""
        return self.test_acc - self.control_acc

    @property
    def remaining(self) -> np.ndarray:
        """1 - sparsity: the fraction of prunable weights left [R+1]."""
        return 1.0 - self.sparsity


def _imp_sparsity(rates: dict[str, float] | float, r: int) -> dict[str, float] | float:
    """Sparsity after r rounds of pruning a fraction p of the survivors: 1 - (1 - p)^r."""
    if isinstance(rates, dict):
        return {k: 1.0 - (1.0 - p) ** r for k, p in rates.items()}
    return 1.0 - (1.0 - rates) ** r


def iterative_magnitude_pruning(models: Sequence[nn.Module], data: Data | tuple, *, rounds: int, steps: int,
                                rates: float | Mapping[str, float] | None = None, scope: str = "layer",
                                rewind_step: int = 0, control: bool | Sequence[int] = True, lr: float = 0.1,
                                optimizer: str = "sgd", momentum: float = 0.0, weight_decay: float = 0.0,
                                batch_size: int | None = None, seed: int = 0, seeds: Sequence[int] | None = None,
                                schedule: str = "constant", warmup: int = 0, control_seed: int = 1000,
                                progress: bool = False) -> IMPResult:
    """Iterative magnitude pruning with rewinding (Frankle & Carbin 2019; Frankle et al. 2020), K seeds at once.

    Round 0 trains the dense nets theta_0 for ``steps`` steps, keeping theta_k after step
    k = ``rewind_step`` (0: theta_0 itself). Round r = 1..R prunes by magnitude the trained weights
    of round r - 1 to the sparsity 1 - (1 - p_l)^r per layer (``rates`` p_l: default
    ``frankle_carbin_rates``, 20% hidden / 10% output; one number with ``scope="global"``), rewinds
    the survivors to theta_k (``rewind``) and trains steps k+1..``steps`` (fresh optimizer state,
    the learning-rate schedule continued from step k). The control (``control``: True for every
    round, or the rounds to run) trains the same mask from ``reinit(theta_0, control_seed + 1000 r
    + j)`` for all ``steps`` steps, every round's controls in one batched run. Models must be plain
    MLPs (``train_masked``); they are not changed. ``progress`` shows a bar over the rounds.
    """
    t0 = time.perf_counter()
    rounds = positive_int("rounds", rounds)
    one_of("scope", scope, SCOPES)
    stack = _Stack(models, data)
    cfg = _config(steps, lr, optimizer, momentum, weight_decay, batch_size, seed, schedule, warmup)
    rewind_step = integer("rewind_step", rewind_step, lo=0, hi=cfg.steps - 1)
    seeds = _seeds(seeds, cfg.seed, stack.k)
    control_seed = integer("control_seed", control_seed)
    if rates is None:
        rates = (frankle_carbin_rates(stack.models[0]) if scope == "layer" else 0.2)
    names = prunable(stack.models[0])
    rates = _sparsities(names, rates, scope, "rates")  # each in [0, 1)
    if isinstance(rates, dict):
        rates = {k: rates.get(k, 0.0) for k in names}
    if control is True:
        ctrl_rounds = list(range(rounds + 1))
    elif control is False:
        ctrl_rounds = []
    else:
        ctrl_rounds = sorted({integer("control round", r, lo=0, hi=rounds) for r in control})

    from tqdm.auto import tqdm

    bar = tqdm(total=rounds + 1, desc="IMP rounds", disable=not progress, leave=False)
    trained, snap = _loop(stack, stack.params.flat, None, cfg, seeds, snapshot_at=rewind_step)
    bar.update(1)
    all_masks = [tuple({n: torch.ones_like(stack.models[0].get_parameter(n), dtype=torch.bool) for n in names}
                       for _ in range(stack.k))]
    finals = [trained]
    for r in range(1, rounds + 1):
        target = _imp_sparsity(rates, r)
        prev = stack.to_models(trained)
        masks = tuple(magnitude_masks(prev[j], target, scope=scope, masks=all_masks[-1][j]) for j in range(stack.k))
        gm = stack.flat_masks(masks)
        trained, _ = _loop(stack, snap, gm, cfg, seeds, first=rewind_step)
        all_masks.append(masks)
        finals.append(trained)
        bar.update(1)
    bar.close()

    test_acc = np.stack([stack.metrics(stack.params.unflatten(f), stack.test, cfg.loss)[1] for f in finals])
    train_acc = np.stack([stack.metrics(stack.params.unflatten(f), stack.train, cfg.loss)[1] for f in finals])
    ctrl = np.full_like(test_acc, np.nan)
    ctrl_train = np.full_like(test_acc, np.nan)
    if ctrl_rounds:
        fresh = [reinit(stack.models[j], control_seed + 1000 * r + j) for r in ctrl_rounds for j in range(stack.k)]
        cmasks = [all_masks[r][j] for r in ctrl_rounds for j in range(stack.k)]
        res = train_masked(fresh, cmasks, data, steps=cfg.steps, lr=float(cfg.lr), optimizer=cfg.optimizer,
                           momentum=cfg.momentum, weight_decay=cfg.weight_decay, batch_size=cfg.batch_size,
                           seeds=[seeds[j] for _ in ctrl_rounds for j in range(stack.k)],
                           schedule=cfg.schedule, warmup=cfg.warmup)
        for i, r in enumerate(ctrl_rounds):
            ctrl[r] = res.test_acc[i * stack.k:(i + 1) * stack.k]
            ctrl_train[r] = res.train_acc[i * stack.k:(i + 1) * stack.k]
    sp = np.array([sparsity(m[0]) for m in all_masks])
    return IMPResult(sparsity=sp, layer_sparsity=tuple(layer_sparsity(m[0]) for m in all_masks),
                     masks=tuple(all_masks), test_acc=test_acc, train_acc=train_acc, control_acc=ctrl,
                     control_train_acc=ctrl_train, rewind_step=rewind_step, rewind_point=stack.to_models(snap),
                     rates=rates, scope=scope, steps=cfg.steps, seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------------------------------
# edge-popup: a subnetwork of a frozen random net


@dataclass(frozen=True)
class SubnetworkResult:
    """``edge_popup``'s result for K frozen random nets: ``masks[k]`` (each layer with exactly the asked
    ``sparsity``), ``models[k]`` the subnetworks as plain models (weights m (.) W, the random weights
    themselves where kept), ``test_acc``, ``train_acc``, ``train_loss`` [K] of the final subnetworks,
    ``sparsity``, ``seconds``."""

    masks: tuple[Masks, ...]
    models: tuple[nn.Module, ...]
    test_acc: np.ndarray
    train_acc: np.ndarray
    train_loss: np.ndarray
    sparsity: float
    seconds: float


def _top_mask(a: torch.Tensor, n_keep: int) -> torch.Tensor:
    """0/1 [K, *shape]: 1 on the n_keep largest entries of each model's a [K, *shape]."""
    flat = a.reshape(a.shape[0], -1)
    m = torch.zeros_like(flat)
    m.scatter_(1, torch.topk(flat, n_keep, dim=1, sorted=False).indices, 1.0)
    return m.view(a.shape)


def edge_popup(models: Sequence[nn.Module], data: Data | tuple, *, sparsity: float = 0.5, steps: int,
               lr: float = 0.1, optimizer: str = "sgd", momentum: float = 0.9, weight_decay: float = 0.0,
               batch_size: int | None = None, seed: int = 0, seeds: Sequence[int] | None = None,
               schedule: str = "cosine", warmup: int = 0, score_seed: int = 0) -> SubnetworkResult:
    """Find a subnetwork of each frozen random net by training scores only (edge-popup; Ramanujan et al. 2020).

    Every prunable weight W_ij gets a score s_ij (init as PyTorch's Linear weights, Kaiming uniform
    with bound 1/sqrt(fan_in), seeded by ``score_seed`` + k). The forward pass of layer l uses
    W^l (.) h(|s^l|), h keeping the round((1 - ``sparsity``) n_l) largest scores of the layer; the
    backward pass is straight-through, dL/ds = dL/dW_eff (.) W (.) sign(s), and only the scores are
    updated (SGD with momentum and a cosine schedule by default, as in the paper). The weights and
    biases never change. Loss: cross-entropy.

    Why this can work: Malach, Yehudai, Shalev-Shwartz & Shamir 2020 ("Proving the lottery ticket
    hypothesis: pruning is all you need", their main theorem, Sec. 2) prove that for every target ReLU
    net F of depth l and width n with bounded weights, and every eps, delta > 0, a random ReLU net G
    of depth 2l whose width is polynomial in (d, n, l, 1/eps, log 1/delta) (weights uniform on
    [-1, 1]) contains with probability >= 1 - delta a weight-subnetwork G~ (G with some weights set
    to 0, none changed) with sup_{||x|| <= 1} |G~(x) - F(x)| <= eps: each target weight is
    approximated by a pruned pair of random layers. Removing whole neurons instead is no stronger than
    random features (their Sec. 3; cf. Yehudai & Shamir 2019). Edge-popup is a heuristic search for
    such a subnetwork: the theorem says one exists (and, under hardness assumptions, that no efficient
    algorithm finds it for every target), not that gradient steps on scores find it.
    ``models``: K plain MLPs of one architecture, not changed. The weights' scale matters: on digits,
    ``models.mlp(64, (256, 256), 10, bias=False, sigma_w2=2.0)`` (Kaiming normal, as in the paper)
    reached 95-96% test accuracy with 300 steps, PyTorch's default (smaller) init about 85%.
    """
    t0 = time.perf_counter()
    sp = in_interval("sparsity", sparsity, 0.0, 1.0, closed="left")
    score_seed = integer("score_seed", score_seed)
    stack = _Stack(models, data)
    cfg = _config(steps, lr, optimizer, momentum, weight_decay, batch_size, seed, schedule, warmup)
    seeds = _seeds(seeds, cfg.seed, stack.k)
    run = cfg.resolve(len(stack.train), stack.params.flat.device)
    names = set(prunable(stack.models[0]))
    fixed = [p.clone() for p in stack.params.unflatten(stack.params.flat)]
    wi = [i for i, n in enumerate(stack.params.names) if n in names]
    n_keep = [fixed[i][0].numel() - round(sp * fixed[i][0].numel()) for i in wi]
    scores = []
    for j in range(stack.k):
        g = torch.Generator().manual_seed(score_seed + j)
        scores.append(torch.cat([(torch.rand(fixed[i][0].shape, generator=g, dtype=fixed[i].dtype) * 2 - 1)
                                 .mul_(fixed[i][0].shape[1] ** -0.5).reshape(-1) for i in wi]))
    s_flat = torch.stack(scores).to(stack.params.flat.device)
    offs = np.cumsum([0] + [fixed[i][0].numel() for i in wi])
    s_views = [s_flat[:, a:b].view(fixed[i].shape) for a, b, i in zip(offs[:-1], offs[1:], wi)]
    opt = StackedOptimizer(cfg, s_flat)
    ws = _mlpstack.Workspace()
    active = torch.ones(stack.k, dtype=torch.bool, device=s_flat.device)
    lrv = torch.full((stack.k,), float(cfg.lr), dtype=s_flat.dtype, device=s_flat.device)
    batches = ensemble_batches(stack.train, cfg.batch_size, seeds)

    def effective() -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        plist, ms = list(fixed), []
        for i, s, nk in zip(wi, s_views, n_keep):
            m = _top_mask(s.abs(), nk)
            plist[i] = fixed[i] * m
            ms.append(m)
        return plist, ms

    for step in range(1, run.steps + 1):
        b = next(batches)
        plist, _ = effective()
        losses, grads = _mlpstack.forward_backward(stack.plan, plist, b.x, b.x_shared, cfg.loss, run.loss_fn,
                                                   b.y, b.y_shared, ws)
        if not bool(torch.isfinite(losses).all()):
            raise DivergenceError(f"edge_popup: loss became non-finite at step {step}; lower lr")
        g = torch.cat([(grads[i] * fixed[i] * s.sign()).reshape(stack.k, -1) for i, s in zip(wi, s_views)], 1)
        opt.step(slice(None), g, lrv * run.factors[step - 1], active, step, True)
    plist, ms = effective()
    trl, tra = stack.metrics(plist, stack.train, cfg.loss)
    _, tea = stack.metrics(plist, stack.test, cfg.loss)
    masks = tuple({stack.params.names[i]: m[j] != 0 for i, m in zip(wi, ms)} for j in range(stack.k))
    flat = torch.cat([p.reshape(stack.k, -1) for p in plist], 1)
    return SubnetworkResult(masks=masks, models=stack.to_models(flat), test_acc=tea, train_acc=tra, train_loss=trl,
                            sparsity=sp, seconds=time.perf_counter() - t0)
