"""One reading of a plain MLP: the activation table and the parser of an ``nn.Sequential`` into layer specs.

Every module that works on "an MLP" (linear regions, norm-based capacity, the stacked training
engine, the model builders, the NTK net) reads the network and its activations from here, so a new
activation or layer type is added in one place.

``ACTIVATIONS`` maps a name to an :class:`ActivationKind`: the torch module class that builds it
(``None`` for ``erf``, which has none), the function phi, the module attributes that are keyword
arguments of phi (``approximate`` of GELU...), and the ATen backward kernel that autograd itself
calls, for code that writes the backward pass out (``_mlpstack``).

``parse_mlp(model)`` turns a (possibly nested) ``nn.Sequential`` into a tuple of frozen specs in
forward order:

- :class:`Linear` ``(name, weight, bias)``: z = h W^T + b, W the module's own ``[out, in]`` parameter;
- :class:`Activation` ``(name, kind, kwargs)``: h = phi(z) elementwise, ``kind`` a key of ``ACTIVATIONS``;
- :class:`Flatten` ``(name, start_dim, end_dim)``.

``nn.Identity`` (the ``"linear"`` activation) computes nothing and is left out, as is ``nn.Dropout``
where the caller reads the network at inference (``dropout=True``). ``name`` is the module's
qualified name in ``model`` (``"2"``, ``"block.1"``), so ``f"{name}.weight"`` is its key in
``model.named_parameters()``. Anything else raises :class:`UnsupportedLayer` naming the module, its
place and what the caller supports.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Iterable, Union

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ActivationKind", "ACTIVATIONS", "activation", "Linear", "Activation", "Flatten", "Layer",
           "UnsupportedLayer", "parse_mlp", "linear_layers"]

_aten = torch.ops.aten


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


# ----------------------------------------------------------------------------- the activation table

@dataclass(frozen=True)
class ActivationKind:
    """One row of ``ACTIVATIONS``.

    ``fn(z, **kwargs)`` is phi; ``params`` names the module attributes passed as ``kwargs`` (so that
    ``nn.GELU(approximate="tanh")`` and ``F.gelu(z, approximate="tanh")`` agree); ``inplace`` is an
    in-place phi (None where torch has none or phi takes arguments). ``backward`` is the ATen kernel
    autograd uses, g_z = backward(g_a, saved, **backward_kw, **kwargs), where ``saves`` says what it
    reads: ``"out"`` = phi(z) or ``"in"`` = z. ``module`` is None when torch has no module (erf).
    """

    name: str
    fn: Callable[..., torch.Tensor]
    module: type[nn.Module] | None
    params: tuple[str, ...] = ()
    inplace: Callable[[torch.Tensor], torch.Tensor] | None = None
    backward: object | None = None  # an ATen operator packet, e.g. torch.ops.aten.tanh_backward
    backward_kw: tuple[tuple[str, object], ...] = ()
    saves: str = "out"


ACTIVATIONS: dict[str, ActivationKind] = {a.name: a for a in (
    ActivationKind("relu", torch.relu, nn.ReLU, inplace=torch.relu_,
                   backward=_aten.threshold_backward, backward_kw=(("threshold", 0),)),
    ActivationKind("tanh", torch.tanh, nn.Tanh, inplace=torch.tanh_, backward=_aten.tanh_backward),
    ActivationKind("sigmoid", torch.sigmoid, nn.Sigmoid, inplace=torch.sigmoid_, backward=_aten.sigmoid_backward),
    ActivationKind("gelu", F.gelu, nn.GELU, params=("approximate",), backward=_aten.gelu_backward, saves="in"),
    ActivationKind("leaky_relu", F.leaky_relu, nn.LeakyReLU, params=("negative_slope",),
                   backward=_aten.leaky_relu_backward, backward_kw=(("self_is_result", False),), saves="in"),
    ActivationKind("silu", F.silu, nn.SiLU, backward=_aten.silu_backward, saves="in"),
    ActivationKind("erf", torch.erf, None),
    ActivationKind("linear", _identity, nn.Identity),
)}

# Module class -> row, for parsing. Identity is a pass-through there, not an activation.
_BY_MODULE: dict[type, ActivationKind] = {a.module: a for a in ACTIVATIONS.values()
                                          if a.module is not None and a.module is not nn.Identity}


def activation(name: str, *, need_module: bool = False) -> ActivationKind:
    """The row of ``ACTIVATIONS`` called ``name`` (``need_module``: only rows with a torch module)."""
    allowed = [n for n, a in ACTIVATIONS.items() if a.module is not None or not need_module]
    if not isinstance(name, str) or name not in allowed:
        raise ValueError(f"activation={name!r} is unknown; allowed: {', '.join(map(repr, allowed))}")
    return ACTIVATIONS[name]


# ----------------------------------------------------------------------------- layer specs

@dataclass(frozen=True, eq=False, repr=False)
class Linear:
    """z = h W^T + b. ``weight`` [out, in] and ``bias`` [out] (or None) are the module's parameters
    themselves (not copies: detach before computing with them)."""

    name: str
    weight: torch.Tensor
    bias: torch.Tensor | None

    def __repr__(self) -> str:
        bias = None if self.bias is None else list(self.bias.shape)
        return f"Linear(name={self.name!r}, weight={list(self.weight.shape)}, bias={bias})"

    @property
    def in_features(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.weight.shape[0])

    @property
    def weight_name(self) -> str:
        """Key of the weight in ``model.named_parameters()``."""
        return f"{self.name}.weight"

    @property
    def bias_name(self) -> str | None:
        return None if self.bias is None else f"{self.name}.bias"


@dataclass(frozen=True)
class Activation:
    """h = phi(z) elementwise, phi = ``ACTIVATIONS[kind].fn`` with the module's ``kwargs``."""

    name: str
    kind: str
    kwargs: tuple[tuple[str, object], ...] = ()

    @property
    def info(self) -> ActivationKind:
        return ACTIVATIONS[self.kind]

    @property
    def fn(self) -> Callable[[torch.Tensor], torch.Tensor]:
        return partial(self.info.fn, **dict(self.kwargs)) if self.kwargs else self.info.fn

    @property
    def backward_kwargs(self) -> dict[str, object]:
        """Keyword arguments of ``info.backward`` besides (g_a, saved)."""
        return {**dict(self.info.backward_kw), **dict(self.kwargs)}

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.fn(z)


@dataclass(frozen=True)
class Flatten:
    """``h.flatten(start_dim, end_dim)``, as ``nn.Flatten``."""

    name: str
    start_dim: int
    end_dim: int


Layer = Union[Linear, Activation, Flatten]


class UnsupportedLayer(ValueError):
    """The model is not an MLP the caller can read; the message names the module and its place."""


def _plain(m: nn.Module, cls: type) -> bool:
    """``m`` is a ``cls`` computing what ``cls`` computes (a subclass that overrides forward is not)."""
    return isinstance(m, cls) and type(m).forward is cls.forward


def _kind_of(m: nn.Module) -> ActivationKind | None:
    for cls in type(m).__mro__:
        if cls in _BY_MODULE:
            return _BY_MODULE[cls] if type(m).forward is cls.forward else None
    return None


def parse_mlp(model: nn.Module, *, activations: Iterable[str] | None = None, dropout: bool = False,
              why: str = "") -> tuple[Layer, ...]:
    """The layers of a plain MLP, in forward order (see the module docstring).

    ``model`` must be an ``nn.Sequential`` (nested ones are walked) of ``Linear``, ``Flatten``,
    ``Identity`` and the activations named in ``activations`` (default: every row of ``ACTIVATIONS``
    with a module). ``dropout=True`` reads ``nn.Dropout`` as the identity (the network at inference);
    with False it is refused (e.g. the stacked training engine does not sample masks). Subclasses
    that override ``forward`` are refused. At least one ``Linear`` is required. ``why`` is appended
    to the error messages (say what the caller computes).

    Raises :class:`UnsupportedLayer` (a ``ValueError``), e.g. ``model contains LayerNorm (layer '2');
    supported: Linear, ReLU, Identity, Flatten, Dropout``.
    """
    kinds = list(_BY_MODULE.values()) if activations is None else [activation(n) for n in activations]
    bad = [a.name for a in kinds if a.module is None or a.module is nn.Identity]
    if bad:
        raise ValueError(f"activations={bad!r} have no torch module to find in a model")
    supported = ", ".join(["Linear", *(a.module.__name__ for a in kinds), "Identity", "Flatten"]
                          + (["Dropout"] if dropout else []))
    if not _plain(model, nn.Sequential):
        raise UnsupportedLayer(f"model must be an nn.Sequential of {supported} layers (e.g. "
                               f"tdlcourse.models.mlp); got {type(model).__name__}{why}")
    out: list[Layer] = []

    def walk(seq: nn.Sequential, prefix: str) -> None:
        # _modules, not named_children(): the latter lists a module used twice once, while
        # Sequential.forward runs it twice (one `act = nn.ReLU()` placed after every layer).
        for child, m in seq._modules.items():
            if m is None:
                continue
            name = prefix + child
            if _plain(m, nn.Sequential):
                walk(m, name + ".")
            elif _plain(m, nn.Linear):
                out.append(Linear(name, m.weight, m.bias))
            elif _plain(m, nn.Flatten):
                out.append(Flatten(name, m.start_dim, m.end_dim))
            elif _plain(m, nn.Identity) or (dropout and _plain(m, nn.Dropout)):
                continue
            elif (kind := _kind_of(m)) is not None and kind in kinds:
                out.append(Activation(name, kind.name, tuple((p, getattr(m, p)) for p in kind.params)))
            else:
                raise UnsupportedLayer(f"model contains {type(m).__name__} (layer {name!r}); "
                                       f"supported: {supported}{why}")

    walk(model, "")
    if not any(isinstance(layer, Linear) for layer in out):
        raise UnsupportedLayer(f"model must contain at least one nn.Linear layer{why}")
    return tuple(out)


def linear_layers(layers: Iterable[Layer]) -> list[Linear]:
    """The ``Linear`` specs of ``layers``, in order."""
    return [layer for layer in layers if isinstance(layer, Linear)]
