"""Datasets for the labs: bundled digits, label corruption, Gaussian inputs, synthetic tasks.

Everything here is offline: scikit-learn ships the 8x8 digits (1797 images, 10 classes) with the
package. Random choices take an explicit ``seed`` so a lab gives the same numbers twice.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch


@dataclass(frozen=True)
class Data:
    """A train/test split of a classification or regression task, as tensors."""

    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int | None = None
    name: str = ""

    def __post_init__(self) -> None:
        for split in ("train", "test"):
            x, y = getattr(self, f"x_{split}"), getattr(self, f"y_{split}")
            if len(x) != len(y):
                raise ValueError(f"x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if len(self.x_train) == 0:
            raise ValueError("x_train is empty")

    @property
    def d_in(self) -> int:
        return int(np.prod(self.x_train.shape[1:]))

    def to(self, device: torch.device | str) -> "Data":
        return replace(self, x_train=self.x_train.to(device), y_train=self.y_train.to(device),
                       x_test=self.x_test.to(device), y_test=self.y_test.to(device))

    def with_train(self, x_train: torch.Tensor | None = None, y_train: torch.Tensor | None = None,
                   name: str | None = None) -> "Data":
        """A copy with the training inputs and/or labels replaced (the test split is kept)."""
        return replace(self, x_train=self.x_train if x_train is None else x_train,
                       y_train=self.y_train if y_train is None else y_train,
                       name=self.name if name is None else name)


def digits(test_fraction: float = 0.3, seed: int = 0, standardize: bool = True,
           dtype: torch.dtype = torch.float32) -> Data:
    """scikit-learn's bundled 8x8 digits (1797 samples, 64 features, 10 classes), split at random.

    With ``standardize`` each feature is centred and scaled by the training split's statistics
    (constant pixels keep scale 1).
    """
    from sklearn.datasets import load_digits

    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction={test_fraction!r} must lie in (0, 1)")
    bunch = load_digits()
    x = bunch.data.astype(np.float64)
    y = bunch.target.astype(np.int64)
    rng = np.random.default_rng(seed)
    perm = rng.permutation(len(x))
    n_test = int(round(test_fraction * len(x)))
    test, train = perm[:n_test], perm[n_test:]
    if standardize:
        mu, sd = x[train].mean(0), x[train].std(0)
        sd[sd == 0] = 1.0
        x = (x - mu) / sd
    t = lambda a, dt: torch.as_tensor(a, dtype=dt)  # noqa: E731
    return Data(t(x[train], dtype), t(y[train], torch.long), t(x[test], dtype), t(y[test], torch.long),
                num_classes=10, name="digits")


def corrupt_labels(y: torch.Tensor, fraction: float, num_classes: int, seed: int = 0) -> torch.Tensor:
    """Replace the labels of a random ``fraction`` of the samples by uniformly random classes.

    Exactly ``round(fraction * n)`` samples are drawn (without replacement) and given a class drawn
    uniformly from ``range(num_classes)`` (so about 1/num_classes of them keep their label by chance),
    as in the partially corrupted labels of Zhang et al. 2017. ``fraction=1`` gives fully random labels.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction={fraction!r} must lie in [0, 1]")
    if num_classes < 2:
        raise ValueError(f"num_classes={num_classes!r} must be >= 2")
    g = torch.Generator().manual_seed(seed)
    n = len(y)
    k = int(round(fraction * n))
    idx = torch.randperm(n, generator=g)[:k]
    out = y.clone()
    out[idx.to(y.device)] = torch.randint(0, num_classes, (k,), generator=g).to(y.device, y.dtype)
    return out


def shuffle_labels(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random permutation of the labels: same class counts, no relation to the inputs."""
    g = torch.Generator().manual_seed(seed)
    return y[torch.randperm(len(y), generator=g).to(y.device)]


def gaussian_like(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Gaussian inputs with the per-feature mean and variance of ``x`` (Zhang et al. 2017)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    return x.mean(0, keepdim=True) + x.std(0, keepdim=True) * z
