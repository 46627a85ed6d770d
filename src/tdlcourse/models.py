"""Model builders with explicit initialization: ``mlp``, ``cnn``, ``resmlp``.

With ``sigma_w2`` given, weights are drawn as W_ij ~ N(0, sigma_w2 / fan_in) and biases as
b_i ~ N(0, sigma_b2), the mean-field convention of Poole et al. 2016 (chapter 6, signal propagation); fan_in is the
number of inputs of a unit (in_features, or in_channels * kernel area for a convolution).
``init="orthogonal"`` draws each weight matrix (a convolution's reshaped to out x fan_in) as
sqrt(sigma_w2) times a Haar orthogonal matrix (Saxe et al. 2014; Pennington et al. 2017); it needs
square layers and raises a ``ValueError`` naming ``init`` for any other. ``init="semi_orthogonal"``
says how to treat the others: orthonormal rows (fan_out < fan_in) or columns (fan_out > fan_in),
i.e. the first min(fan_out, fan_in) rows or columns of a Haar orthogonal matrix, and is the same as
``"orthogonal"`` on square layers.
Without ``sigma_w2`` PyTorch's default initialization is kept. ``seed`` makes a draw reproducible
without touching the global random state.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .layers import activation as _activation
from .validate import boolean, int_sequence, nonnegative, nonnegative_int, number, one_of, positive_int

INITS = ("default", "gaussian", "orthogonal", "semi_orthogonal")
BRANCH_SCALINGS = ("1/sqrt(depth)",)


def _check_init(activation: str, sigma_w2: float | None, sigma_b2: float,
                init: str | None) -> tuple[Callable[[], nn.Module], str]:
    """The activation's module class (a name of ``layers.ACTIVATIONS`` with a torch module) and the
    init, after checking the variances."""
    make_act = _activation(activation, need_module=True).module
    init = one_of("init", init or ("gaussian" if sigma_w2 is not None else "default"), INITS)
    if init != "default" and sigma_w2 is None:
        raise ValueError(f"init={init!r} needs sigma_w2 (e.g. 2.0 for ReLU, 1.0 for tanh)")
    if sigma_w2 is not None:
        nonnegative("sigma_w2", sigma_w2)
    nonnegative("sigma_b2", sigma_b2)
    return make_act, init


def _build(make: Callable[[], list[nn.Module]], init: str, sigma_w2: float | None, sigma_b2: float,
           seed: int | None, device: torch.device | str | None) -> list[nn.Module]:
    """Create the layers (PyTorch's init from a forked, seeded RNG) and redraw weights if asked."""
    g = torch.Generator().manual_seed(seed) if seed is not None else None
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)  # PyTorch's default init draws from the global RNG
        layers = make()
        if init != "default":
            for m in layers:
                for sub in m.modules():
                    if isinstance(sub, (nn.Linear, nn.Conv2d)):
                        _init_layer(sub, init, float(sigma_w2), sigma_b2, g)  # type: ignore[arg-type]
    return [m.to(device) for m in layers] if device is not None else layers


def mlp(d_in: int, widths: tuple[int, ...] | list[int], d_out: int, *, activation: str = "relu",
        bias: bool = True, sigma_w2: float | None = None, sigma_b2: float = 0.0,
        init: str | None = None, seed: int | None = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None,
        flatten: bool = False) -> nn.Sequential:
    """Fully connected network d_in -> widths... -> d_out with ``activation`` after each hidden layer.

    h^0 = x, h^l = phi(W^l h^{l-1} + b^l) for l = 1..L-1, f(x) = W^L h^{L-1} + b^L.
    ``activation`` is a name of ``tdlcourse.layers.ACTIVATIONS`` with a torch module ("relu", "tanh",
    "sigmoid", "gelu", "leaky_relu", "silu", "linear").
    ``init`` is ``"default"`` (PyTorch's), ``"gaussian"``, ``"orthogonal"`` (square layers only) or
    ``"semi_orthogonal"`` (any shape; see the module docstring); it defaults to
    ``"gaussian"`` when ``sigma_w2`` is given and ``"default"`` otherwise. ``seed`` makes the draw
    reproducible without touching the global RNG. ``flatten`` prepends ``nn.Flatten`` (image inputs).
    """
    d_in, d_out = positive_int("d_in", d_in), positive_int("d_out", d_out)
    widths = int_sequence("widths", widths, min_len=0)
    act, init = _check_init(activation, sigma_w2, sigma_b2, init)
    dims = [d_in, *widths, d_out]

    def make() -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Flatten()] if flatten else []
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            layers.append(nn.Linear(a, b, bias=bias, dtype=dtype))
            if i < len(dims) - 2:
                layers.append(act())
        return layers

    return nn.Sequential(*_build(make, init, sigma_w2, sigma_b2, seed, device))


def cnn(in_channels: int, num_classes: int, *, channels: tuple[int, ...] | list[int] = (32, 64),
        image_size: int = 32, hidden: int = 128, activation: str = "relu", bias: bool = True,
        sigma_w2: float | None = None, sigma_b2: float = 0.0, init: str | None = None, seed: int | None = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> nn.Sequential:
    """A small CNN: per entry of ``channels`` a 3x3 convolution (padding 1), ``activation`` and 2x2
    max-pooling, then a hidden fully connected layer of ``hidden`` units and a linear read-out.

    For MNIST use ``cnn(1, 10, image_size=28)``, for CIFAR-10 ``cnn(3, 10)``. Initialization as in
    ``mlp`` (fan_in of a convolution = in_channels * 9).
    """
    in_channels, num_classes = positive_int("in_channels", in_channels), positive_int("num_classes", num_classes)
    image_size, hidden = positive_int("image_size", image_size), positive_int("hidden", hidden)
    channels = int_sequence("channels", channels)
    if image_size >> len(channels) < 1:
        raise ValueError(f"image_size={image_size} is too small for {len(channels)} 2x2 poolings")
    act, init = _check_init(activation, sigma_w2, sigma_b2, init)
    side = image_size >> len(channels)

    def make() -> list[nn.Module]:
        layers: list[nn.Module] = []
        c_in = in_channels
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 3, padding=1, bias=bias, dtype=dtype), act(),
                       nn.MaxPool2d(2)]
            c_in = c
        layers += [nn.Flatten(), nn.Linear(c_in * side * side, hidden, bias=bias, dtype=dtype),
                   act(), nn.Linear(hidden, num_classes, bias=bias, dtype=dtype)]
        return layers

    return nn.Sequential(*_build(make, init, sigma_w2, sigma_b2, seed, device))


class Residual(nn.Module):
    """h -> h + alpha * g(h): a residual (skip) connection around ``block`` (He et al. 2016)."""

    def __init__(self, block: nn.Module, alpha: float = 1.0) -> None:
        super().__init__()
        self.block = block
        self.alpha = number("alpha", alpha)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h + self.alpha * self.block(h)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def resmlp(d_in: int, width: int, depth: int, d_out: int, *, activation: str = "relu", bias: bool = True,
           alpha: float | str = 1.0, skip: bool = True, sigma_w2: float | None = None, sigma_b2: float = 0.0,
           init: str | None = None, seed: int | None = None, dtype: torch.dtype = torch.float32,
           device: torch.device | str | None = None) -> nn.Sequential:
    """Residual MLP: h^0 = W^in x, then ``depth`` blocks h^l = h^{l-1} + alpha W^l phi(h^{l-1}) (pre-activation,
    He et al. 2016), and a linear read-out. ``skip=False`` drops the identity path (h^l = alpha W^l phi(h^{l-1})),
    the plain network of the same parameter count used to compare loss landscapes (Li et al. 2018).
    ``alpha="1/sqrt(depth)"`` scales every branch by 1/sqrt(L), L = ``depth`` (1 for depth 0): the
    log-norm of h^L then has variance bounded in depth at He init, where alpha = 1 lets it grow like
    L (Hanin & Rolnick 2018, "How to start training", Thm 5; Hayou et al. 2021, "Stable ResNet").
    """
    d_in, width, d_out = positive_int("d_in", d_in), positive_int("width", width), positive_int("d_out", d_out)
    depth = nonnegative_int("depth", depth)
    if isinstance(alpha, str):
        if alpha not in BRANCH_SCALINGS:
            raise ValueError(f"alpha={alpha!r} must be a number or one of {', '.join(map(repr, BRANCH_SCALINGS))}")
        alpha = 1.0 / math.sqrt(max(depth, 1))
    alpha = number("alpha", alpha)
    act, init = _check_init(activation, sigma_w2, sigma_b2, init)

    def make() -> list[nn.Module]:
        layers: list[nn.Module] = [nn.Linear(d_in, width, bias=bias, dtype=dtype)]
        for _ in range(depth):
            block = nn.Sequential(act(), nn.Linear(width, width, bias=bias, dtype=dtype))
            layers.append(Residual(block, alpha) if skip else _Scaled(block, alpha))
        layers.append(nn.Linear(width, d_out, bias=bias, dtype=dtype))
        return layers

    return nn.Sequential(*_build(make, init, sigma_w2, sigma_b2, seed, device))


class _Scaled(nn.Module):
    """h -> alpha * g(h) (the residual block without its skip path)."""

    def __init__(self, block: nn.Module, alpha: float = 1.0) -> None:
        super().__init__()
        self.block = block
        self.alpha = float(alpha)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.block(h)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"


def orthogonal_matrix(rows: int, cols: int, *, semi_orthogonal: bool = False,
                      generator: torch.Generator | None = None, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    r"""A Haar-distributed orthogonal ``rows`` x ``cols`` matrix Q (:math:`Q^TQ = QQ^T = I`), from the QR
    decomposition of a Gaussian matrix with the signs of R's diagonal moved into Q (Mezzadri 2007,
    "How to generate random matrices from the classical compact groups"; the init of Saxe et al.
    2014 and Pennington et al. 2017). A non-square shape needs ``semi_orthogonal=True``: then Q has
    orthonormal rows (rows < cols, :math:`QQ^T = I`) or columns (rows > cols, :math:`Q^TQ = I`),
    the leading rows or columns of a Haar orthogonal matrix.
    """
    rows, cols = positive_int("rows", rows), positive_int("cols", cols)
    if rows != cols and not boolean("semi_orthogonal", semi_orthogonal):
        raise ValueError(f"semi_orthogonal=False needs a square matrix, got rows={rows}, cols={cols}; "
                         "pass semi_orthogonal=True for orthonormal rows (rows < cols) or columns (rows > cols)")
    a = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(a)
    q = q * torch.sign(torch.diagonal(r))
    return (q if rows >= cols else q.T).to(dtype)


@torch.no_grad()
def _init_layer(layer: nn.Linear | nn.Conv2d, init: str, sigma_w2: float, sigma_b2: float,
                g: torch.Generator | None) -> None:
    fan_out = layer.weight.shape[0]
    fan_in = layer.weight[0].numel()
    if init == "gaussian":
        w = torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64) * math.sqrt(sigma_w2 / fan_in)
    else:
        if init == "orthogonal" and fan_out != fan_in:
            raise ValueError(f"init='orthogonal' needs square layers, got a {type(layer).__name__} with fan_out="
                             f"{fan_out}, fan_in={fan_in}; use init='semi_orthogonal' for orthonormal rows "
                             "(fan_out < fan_in) or columns (fan_out > fan_in)")
        w = orthogonal_matrix(fan_out, fan_in, semi_orthogonal=True, generator=g) * math.sqrt(sigma_w2)
    layer.weight.copy_(w.reshape(layer.weight.shape).to(layer.weight.dtype))
    if layer.bias is not None:
        b = torch.randn(fan_out, generator=g, dtype=torch.float64) * math.sqrt(sigma_b2)
        layer.bias.copy_(b.to(layer.bias.dtype))


def num_params(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
