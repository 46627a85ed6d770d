"""SGD (momentum, Nesterov) / Adam / AdamW on K models' flat parameters [K, P], as in ``torch.optim``."""

from __future__ import annotations

import math

import torch

from .config import TrainConfig


class StackedOptimizer:
    """``torch.optim``'s update rules applied row by row to the flat parameters [K, P] of K models.

    ``step`` updates a block of rows (a chunk of models, right after its gradient is computed, while
    it is in cache) with learning rates ``lr`` [rows] and step count ``t``; ``active`` [rows] freezes
    the models whose loss diverged or that reached their target (their update is discarded, NaNs
    included). ``all_active`` (known on the host) skips that masking.
    """

    def __init__(self, cfg: TrainConfig, flat: torch.Tensor) -> None:
        self.kind, self.momentum, self.nesterov, self.wd = cfg.optimizer, cfg.momentum, cfg.nesterov, cfg.weight_decay
        self.betas, self.eps = cfg.betas, float(cfg.eps)
        self.flat = flat
        self.state: list[torch.Tensor] = []  # momentum buffer, or Adam's first and second moments
        if self.kind != "sgd":
            self.state = [torch.zeros_like(flat), torch.zeros_like(flat)]
        elif self.momentum:
            self.state = [torch.zeros_like(flat)]

    @torch.no_grad()
    def step(self, rows: slice, g: torch.Tensor, lr: torch.Tensor, active: torch.Tensor, t: int,
             all_active: bool) -> None:
        """One update of ``flat[rows]`` with gradient ``g`` (overwritten: it is scratch)."""
        p = self.flat[rows]
        lr = lr.unsqueeze(1)
        if self.kind == "sgd":
            if self.wd:
                g = g.add_(p, alpha=self.wd)
            if self.momentum:
                buf = self.state[0][rows]
                if t == 1:  # torch.optim: the first buffer is the gradient itself
                    buf.copy_(g)
                else:
                    buf.mul_(self.momentum).add_(g)
                g = g.add_(buf, alpha=self.momentum) if self.nesterov else buf
            if all_active:
                p.addcmul_(g, lr, value=-1)  # p - lr g in one pass
                return
            upd, keep = lr * g, None
        else:
            b1, b2 = self.betas
            if self.wd and self.kind == "adam":
                g = g.add_(p, alpha=self.wd)
            m, v = self.state[0][rows], self.state[1][rows]
            m.lerp_(g, 1 - b1)
            v.mul_(b2).addcmul_(g, g, value=1 - b2)
            step_size = lr / (1 - b1 ** t)
            denom = (v.sqrt() / math.sqrt(1 - b2 ** t)).add_(self.eps)
            upd = step_size * (m / denom)
            keep = 1 - lr * self.wd if self.wd and self.kind == "adamw" else None  # decoupled decay
        if all_active:
            (p if keep is None else p.mul_(keep)).sub_(upd)
        else:
            new = (p if keep is None else p * keep) - upd
            p.copy_(torch.where(active.unsqueeze(1), new, p))
