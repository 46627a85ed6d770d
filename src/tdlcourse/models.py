"""Model builders with explicit initialization.

``mlp`` builds an ``nn.Sequential`` of ``Linear`` and activation layers. With ``sigma_w2`` given,
weights are drawn as W_ij ~ N(0, sigma_w2 / fan_in) and biases as b_i ~ N(0, sigma_b2), the
mean-field convention of Poole et al. 2016 (chapter 6); ``init="orthogonal"`` draws each weight
matrix as sqrt(sigma_w2) times a (semi-)orthogonal matrix (Saxe et al. 2014; Pennington et al. 2017).
Without ``sigma_w2`` PyTorch's default initialization is kept.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "linear": nn.Identity,
    "gelu": nn.GELU,
    "sigmoid": nn.Sigmoid,
}
INITS = ("default", "gaussian", "orthogonal")


def mlp(d_in: int, widths: tuple[int, ...] | list[int], d_out: int, *, activation: str = "relu",
        bias: bool = True, sigma_w2: float | None = None, sigma_b2: float = 0.0,
        init: str | None = None, seed: int | None = None,
        dtype: torch.dtype = torch.float32, device: torch.device | str | None = None) -> nn.Sequential:
    """Fully connected network d_in -> widths... -> d_out with ``activation`` after each hidden layer.

    ``init`` is ``"default"`` (PyTorch's), ``"gaussian"`` or ``"orthogonal"``; it defaults to
    ``"gaussian"`` when ``sigma_w2`` is given and ``"default"`` otherwise. ``seed`` makes the draw
    reproducible without touching the global RNG.
    """
    for name, v in (("d_in", d_in), ("d_out", d_out)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"{name}={v!r} must be a positive integer")
    widths = list(widths)
    if any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ValueError(f"widths={widths!r} must be positive integers")
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is unknown; allowed: {', '.join(map(repr, ACTIVATIONS))}")
    init = init or ("gaussian" if sigma_w2 is not None else "default")
    if init not in INITS:
        raise ValueError(f"init={init!r} is unknown; allowed: {', '.join(map(repr, INITS))}")
    if init != "default" and sigma_w2 is None:
        raise ValueError(f"init={init!r} needs sigma_w2 (e.g. 2.0 for ReLU, 1.0 for tanh)")
    if sigma_w2 is not None and sigma_w2 < 0:
        raise ValueError(f"sigma_w2={sigma_w2!r} must be >= 0")
    if sigma_b2 < 0:
        raise ValueError(f"sigma_b2={sigma_b2!r} must be >= 0")

    g = torch.Generator().manual_seed(seed) if seed is not None else None
    dims = [d_in, *widths, d_out]
    layers: list[nn.Module] = []
    with torch.random.fork_rng(devices=[], enabled=seed is not None):
        if seed is not None:
            torch.manual_seed(seed)  # PyTorch's default init draws from the global RNG
        for i, (a, b) in enumerate(zip(dims[:-1], dims[1:])):
            lin = nn.Linear(a, b, bias=bias, dtype=dtype)
            if init != "default":
                _init_linear(lin, init, float(sigma_w2), sigma_b2, g)
            layers.append(lin)
            if i < len(dims) - 2:
                layers.append(ACTIVATIONS[activation]())
    net = nn.Sequential(*layers)
    return net.to(device) if device is not None else net


@torch.no_grad()
def _init_linear(lin: nn.Linear, init: str, sigma_w2: float, sigma_b2: float,
                 g: torch.Generator | None) -> None:
    fan_out, fan_in = lin.weight.shape
    if init == "gaussian":
        w = torch.randn(fan_out, fan_in, generator=g, dtype=torch.float64) * math.sqrt(sigma_w2 / fan_in)
    else:
        # QR of a Gaussian matrix, sign-corrected, is Haar-distributed (Mezzadri 2007).
        a = torch.randn(max(fan_out, fan_in), min(fan_out, fan_in), generator=g, dtype=torch.float64)
        q, r = torch.linalg.qr(a)
        q = q * torch.sign(torch.diagonal(r))
        w = (q if fan_out >= fan_in else q.T) * math.sqrt(sigma_w2)
    lin.weight.copy_(w.to(lin.weight.dtype))
    if lin.bias is not None:
        b = torch.randn(fan_out, generator=g, dtype=torch.float64) * math.sqrt(sigma_b2)
        lin.bias.copy_(b.to(lin.bias.dtype))


def num_params(model: nn.Module) -> int:
    """Number of trainable scalars in ``model``."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
