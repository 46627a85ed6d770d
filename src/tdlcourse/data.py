"""Datasets for the labs: bundled digits, label corruption, Gaussian inputs, MNIST and CIFAR-10.

The digits need no network: scikit-learn ships the 8x8 digits (1797 images, 10 classes) with the
package. MNIST and CIFAR-10 (for the ``gpu`` scale) are downloaded once from their canonical
sources into a cache folder (``$TDL_DATA`` or ``~/.cache/tdlcourse``), verified by sha256 and read
without torchvision; offline, the error says which files to put where. Random choices take an
explicit ``seed`` so a lab gives the same numbers twice.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import pickle
import struct
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import validate


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
        if self.num_classes is not None:
            object.__setattr__(self, "num_classes", validate.positive_int("num_classes", self.num_classes))
            for split in ("train", "test"):
                y = getattr(self, f"y_{split}")
                if len(y) and not torch.is_floating_point(y):
                    lo, hi = int(y.min()), int(y.max())
                    if lo < 0 or hi >= self.num_classes:
                        raise ValueError(f"y_{split} holds the label {lo if lo < 0 else hi}; labels must lie in "
                                         f"[0, {self.num_classes - 1}] (num_classes={self.num_classes})")

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

    test_fraction = validate.in_interval("test_fraction", test_fraction, 0.0, 1.0, closed="neither")
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
    fraction = validate.probability("fraction", fraction)
    num_classes = validate.integer("num_classes", num_classes, lo=2)
    g = torch.Generator().manual_seed(validate.integer("seed", seed))
    n = len(y)
    k = int(round(fraction * n))
    idx = torch.randperm(n, generator=g)[:k]
    out = y.clone()
    out[idx.to(y.device)] = torch.randint(0, num_classes, (k,), generator=g).to(y.device, y.dtype)
    return out


def shuffle_labels(y: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """A random permutation of the labels: same class counts, no relation to the inputs."""
    g = torch.Generator().manual_seed(validate.integer("seed", seed))
    return y[torch.randperm(len(y), generator=g).to(y.device)]


def gaussian_like(x: torch.Tensor, seed: int = 0) -> torch.Tensor:
    """Gaussian inputs with the per-feature mean and variance of ``x`` (Zhang et al. 2017)."""
    g = torch.Generator().manual_seed(validate.integer("seed", seed))
    z = torch.randn(x.shape, generator=g, dtype=x.dtype).to(x.device)
    return x.mean(0, keepdim=True) + x.std(0, keepdim=True) * z


# --------------------------------------------------------------------------------------------------
# MNIST and CIFAR-10: download once into a cache folder, verify sha256, read without torchvision.

DATA_ENV = "TDL_DATA"


class DataUnavailableError(RuntimeError):
    """A dataset is not in the cache folder and could not be downloaded (e.g. offline)."""


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset: its name in the cache folder and the sha256 of its canonical bytes."""

    name: str
    sha256: str


@dataclass(frozen=True)
class Source:
    """Where a dataset's files come from: base URLs tried in order (the first is the canonical one)."""

    name: str
    files: tuple[RemoteFile, ...]
    urls: tuple[str, ...]
    homepage: str


# Checksums of the canonical files (the same bytes on every mirror listed).
SOURCES: dict[str, Source] = {
    "mnist": Source(
        name="mnist",
        files=(
            RemoteFile("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            RemoteFile("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            RemoteFile("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            RemoteFile("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ),
        urls=("http://yann.lecun.com/exdb/mnist/", "https://ossci-datasets.s3.amazonaws.com/mnist/",
              "https://storage.googleapis.com/cvdf-datasets/mnist/"),
        homepage="http://yann.lecun.com/exdb/mnist/",
    ),
    "cifar10": Source(
        name="cifar10",
        files=(RemoteFile("cifar-10-python.tar.gz", "6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce"),),
        urls=("https://www.cs.toronto.edu/~kriz/",),
        homepage="https://www.cs.toronto.edu/~kriz/cifar.html",
    ),
}


def cache_dir(root: str | os.PathLike | None = None) -> Path:
    """The dataset cache folder: ``root`` if given, else ``$TDL_DATA``, else ``~/.cache/tdlcourse``."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(DATA_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "tdlcourse"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 digest of a file, read in chunks."""
    chunk = validate.positive_int("chunk", chunk)  # read(0) would stop at once: the digest of b""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _urlopen(url: str, timeout: float):
    """Open ``url`` for reading (the single network entry point; tests replace it)."""
    import urllib.request

    req = urllib.request.Request(url, headers={"User-Agent": "tdlcourse (+https://pypi.org/project/tdlcourse)"})
    return urllib.request.urlopen(req, timeout=timeout)


def _download(url: str, dest: Path, sha256: str, timeout: float = 60.0) -> None:
    """Stream ``url`` into ``dest`` atomically: a temporary file in the same folder, verified, renamed.

    On any failure (network, checksum, interrupt) the temporary file is removed and ``dest`` is not
    created, so the cache never holds half a file.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as f, _urlopen(url, timeout) as r:
            while block := r.read(1 << 20):
                h.update(block)
                f.write(block)
            f.flush()
            os.fsync(f.fileno())
        if h.hexdigest() != sha256:
            raise ValueError(f"{url} gave bytes with sha256 {h.hexdigest()}, expected {sha256}")
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def fetch(name: str, root: str | os.PathLike | None = None, download: bool = True) -> dict[str, Path]:
    """Make sure the files of dataset ``name`` are in ``cache_dir(root)/name``, verified; return their paths.

    Files already there are checked against their sha256 (a mismatch raises ``ValueError`` and leaves
    the file alone); missing ones are downloaded from the URLs of ``SOURCES[name]`` in order. Without
    network (or with ``download=False``) a ``DataUnavailableError`` says which files to put where.
    """
    name = validate.one_of("name", name, SOURCES)
    src = SOURCES[name]
    folder = cache_dir(root) / src.name
    paths: dict[str, Path] = {}
    for rf in src.files:
        path = folder / rf.name
        if path.exists():
            got = sha256_file(path)
            if got != rf.sha256:
                raise ValueError(f"{path} has sha256 {got} but the canonical file has {rf.sha256}; "
                                 "delete it (it will be downloaded again) or replace it by the canonical file")
            paths[rf.name] = path
            continue
        errors = []
        if download:
            for base in src.urls:
                try:
                    _download(base + rf.name, path, rf.sha256)
                    break
                except Exception as e:  # noqa: BLE001 - any failure: try the next mirror, report all
                    errors.append(f"{base + rf.name}: {type(e).__name__}: {e}")
        if not path.exists():
            raise DataUnavailableError(_unavailable_message(src, folder, errors, download))
        paths[rf.name] = path
    return paths


def _unavailable_message(src: Source, folder: Path, errors: list[str], download: bool) -> str:
    lines = [f"The {src.name} files are not in {folder} and "
             + ("could not be downloaded:" if download else "download=False was given.")]
    lines += [f"  {e}" for e in errors]
    lines += [f"Put these files in {folder} by hand (from {src.homepage} or any mirror; they are checked by sha256),",
              f"or point the environment variable {DATA_ENV} to a folder that holds {src.name}/ with them:"]
    lines += [f"  {rf.name}  sha256 {rf.sha256}  ({src.urls[0] + rf.name})" for rf in src.files]
    return "\n".join(lines)


_IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (LeCun's MNIST format; gzip-compressed if the name ends in ``.gz``).

    Layout: two zero bytes, a type code (0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32,
    0x0E float64), the number of dimensions d, then d big-endian uint32 sizes and the data in C order.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise ValueError(f"{path} is not an IDX file (bad magic number {raw[:4].hex()})")
    ndim = raw[3]
    shape = struct.unpack(f">{ndim}I", raw[4:4 + 4 * ndim])
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    count = int(np.prod(shape)) if ndim else 1
    body = raw[4 + 4 * ndim:]
    if len(body) != count * dtype.itemsize:
        raise ValueError(f"{path} holds {len(body)} data bytes; its header {shape} needs {count * dtype.itemsize}")
    return np.frombuffer(body, dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles only dicts, lists, strings, numbers and NumPy arrays (the CIFAR batch contents)."""

    _ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
                ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
                ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}  # protocol 2 spells bytes so

    def find_class(self, module: str, name: str):
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a CIFAR batch")
        if module.startswith("numpy.core") and hasattr(np, "_core"):
            module = "numpy._core" + module[len("numpy.core"):]  # NumPy 2 moved it; the file says numpy.core
        return super().find_class(module, name)


def read_cifar_batch(f) -> tuple[np.ndarray, np.ndarray]:
    """Images [N, 3, 32, 32] uint8 and labels [N] int64 of one CIFAR-10 python batch (a binary file).

    Each batch is a pickled dict with ``b"data"`` (N x 3072 uint8: 1024 red, 1024 green, 1024 blue
    values, rows of 32) and ``b"labels"`` (N ints in 0..9); only plain data is unpickled.
    """
    d = _ArrayUnpickler(f, encoding="bytes").load()
    if not isinstance(d, dict) or b"data" not in d or b"labels" not in d:
        raise ValueError("not a CIFAR-10 python batch (no b'data' / b'labels')")
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32)
    y = np.asarray(d[b"labels"], dtype=np.int64)
    if len(x) != len(y):
        raise ValueError(f"CIFAR batch holds {len(x)} images but {len(y)} labels")
    return x, y


def read_cifar10(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Train and test images and labels from ``cifar-10-python.tar.gz`` (data_batch_1..5, test_batch)."""
    with tarfile.open(path, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
        need = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
        missing = [m for m in need if m not in members]
        if missing:
            raise ValueError(f"{path} lacks the CIFAR-10 batches {missing}")
        parts = {m: read_cifar_batch(tar.extractfile(members[m])) for m in need}
    xtr = np.concatenate([parts[m][0] for m in need[:5]])
    ytr = np.concatenate([parts[m][1] for m in need[:5]])
    return xtr, ytr, parts["test_batch"][0], parts["test_batch"][1]


def _image_data(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, *, name: str,
                flatten: bool, standardize: bool, n_train: int | None, n_test: int | None, seed: int,
                dtype: torch.dtype) -> Data:
    rng = np.random.default_rng(seed)
    for label, n, total in (("n_train", n_train, len(xtr)), ("n_test", n_test, len(xte))):
        if n is not None:  # None: all
            validate.integer(label, n, lo=1, hi=total)
    if n_train is not None:
        keep = np.sort(rng.choice(len(xtr), n_train, replace=False))
        xtr, ytr = xtr[keep], ytr[keep]
    if n_test is not None:
        keep = np.sort(rng.choice(len(xte), n_test, replace=False))
        xte, yte = xte[keep], yte[keep]
    xtr = xtr.astype(np.float32) / 255.0
    xte = xte.astype(np.float32) / 255.0
    if standardize:
        # Per channel, with the training split's statistics.
        axes = (0, 2, 3)
        mu = xtr.mean(axis=axes, keepdims=True, dtype=np.float64)
        sd = xtr.std(axis=axes, keepdims=True, dtype=np.float64)
        sd[sd < 1e-6] = 1.0  # a constant channel: rounding leaves a tiny nonzero sd, not 0
        xtr = ((xtr - mu) / sd).astype(np.float32)
        xte = ((xte - mu) / sd).astype(np.float32)
    if flatten:
        xtr, xte = xtr.reshape(len(xtr), -1), xte.reshape(len(xte), -1)
    t = lambda a, dt: torch.as_tensor(np.ascontiguousarray(a), dtype=dt)  # noqa: E731
    return Data(t(xtr, dtype), t(ytr, torch.long), t(xte, dtype), t(yte, torch.long), num_classes=10, name=name)


def _check_subset_sizes(n_train, n_test) -> None:
    for label, n in (("n_train", n_train), ("n_test", n_test)):
        if n is not None:  # None: all; the upper bound (the split's size) is checked once it is read
            validate.positive_int(label, n)


def mnist(root: str | os.PathLike | None = None, *, download: bool = True, flatten: bool = False,
          standardize: bool = True, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
          dtype: torch.dtype = torch.float32, folder: str | os.PathLike | None = None) -> Data:
    """MNIST (LeCun et al. 1998): 60000 train and 10000 test images [1, 28, 28], 10 classes.

    Pixels are scaled to [0, 1] and, with ``standardize``, centred and scaled by the training split's
    mean and standard deviation. ``flatten`` gives vectors of 784. ``n_train``/``n_test`` keep a random
    subset (drawn with ``seed``, in the original order). Files: ``fetch("mnist", root, download)``, or
    the four IDX files in ``folder`` read as they are (not checked against the canonical checksums,
    which guard the cache: for a private mirror or for files a test generates).
    """
    _check_subset_sizes(n_train, n_test)  # before any download
    if folder is not None:
        names = [rf.name for rf in SOURCES["mnist"].files]
        p = {n: Path(folder).expanduser() / n for n in names}
        missing = [n for n, f in p.items() if not f.is_file()]
        if missing:
            raise ValueError(f"folder={str(folder)!r} lacks the MNIST files {missing} (or pass folder=None for the cache)")
    else:
        p = fetch("mnist", root, download)
    xtr = read_idx(p["train-images-idx3-ubyte.gz"])[:, None]
    ytr = read_idx(p["train-labels-idx1-ubyte.gz"]).astype(np.int64)
    xte = read_idx(p["t10k-images-idx3-ubyte.gz"])[:, None]
    yte = read_idx(p["t10k-labels-idx1-ubyte.gz"]).astype(np.int64)
    return _image_data(xtr, ytr, xte, yte, name="mnist", flatten=flatten, standardize=standardize,
                       n_train=n_train, n_test=n_test, seed=seed, dtype=dtype)


def cifar10(root: str | os.PathLike | None = None, *, download: bool = True, flatten: bool = False,
            standardize: bool = True, n_train: int | None = None, n_test: int | None = None, seed: int = 0,
            dtype: torch.dtype = torch.float32, file: str | os.PathLike | None = None) -> Data:
    """CIFAR-10 (Krizhevsky 2009): 50000 train and 10000 test colour images [3, 32, 32], 10 classes.

    Same options as ``mnist`` (standardization per colour channel). Reads the python pickle batches
    from ``cifar-10-python.tar.gz`` with an unpickler that accepts plain arrays only. ``file`` names a
    tarball in that format to read instead of the cache's (not checked against the canonical
    checksum, which guards the cache: for a private mirror or for batches a test generates).
    """
    _check_subset_sizes(n_train, n_test)  # before any download
    if file is not None:
        path = Path(file).expanduser()
        if not path.is_file():
            raise ValueError(f"file={str(file)!r} is not a file (a cifar-10-python.tar.gz, or None for the cache)")
    else:
        path = fetch("cifar10", root, download)["cifar-10-python.tar.gz"]
    xtr, ytr, xte, yte = read_cifar10(path)
    return _image_data(xtr, ytr, xte, yte, name="cifar10", flatten=flatten, standardize=standardize,
                       n_train=n_train, n_test=n_test, seed=seed, dtype=dtype)


# --- Chapter 11 tasks (k-pattern, single ReLU neuron) -------------------------------------------


def _pm1(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """rows points uniform on {-1, +1}^n."""
    return 1.0 - 2.0 * rng.integers(0, 2, size=(rows, n))


def k_pattern(n: int, k: int, *, n_train: int, n_test: int, location: int | None = None, seed: int = 0,
              dtype: torch.dtype = torch.float32) -> Data:
    """The k-pattern task of Malach & Shalev-Shwartz 2020 ("Computational separation between
    convolutional and fully-connected networks", ICLR 2021, Sec. 3): the label depends only on the
    k consecutive bits at one unknown location j,

        x uniform on {-1, +1}^n,   y = g(x_j, ..., x_{j+k-1}),   g = the k-bit parity prod_i x_{j+i},

    returned as class 1 where the parity is -1 and class 0 where it is +1 (two balanced classes).
    A convolution of width k with a per-position read-out contains the target; a fully connected
    net trained by gradient descent is invariant to permuting the inputs, so it must in effect find
    a k-parity among all C(n, k) subsets (their Thm 3: exponential in k for such nets, polynomial in
    n and 2^k for the CNN). ``location`` j in [0, n - k] is drawn with ``seed`` when None; the
    name records it. Train and test points are drawn independently.
    """
    n = validate.positive_int("n", n)
    k = validate.integer("k", k, lo=1, hi=n)
    n_train, n_test = validate.positive_int("n_train", n_train), validate.positive_int("n_test", n_test)
    rng = np.random.default_rng([validate.integer("seed", seed, lo=0), 11])
    j = int(rng.integers(0, n - k + 1)) if location is None else validate.integer("location", location, lo=0, hi=n - k)
    x = _pm1(rng, n_train + n_test, n)
    y = (np.prod(x[:, j:j + k], axis=1) < 0).astype(np.int64)
    xt, yt = torch.as_tensor(x, dtype=dtype), torch.as_tensor(y)
    return Data(xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:], num_classes=2,
                name=f"{k}-pattern of n={n} bits at location {j}")


def single_relu(d: int, *, n_train: int, n_test: int, noise: float = 0.0, seed: int = 0,
                dtype: torch.dtype = torch.float32) -> Data:
    """One ReLU neuron as a regression target (Yehudai & Shamir 2019, "On the power and limitations
    of random features for understanding neural networks", NeurIPS, Thm 4.2):

        x ~ N(0, I_d),   y = max(0, <w*, x>) + noise * N(0, 1),   w* uniform on the unit sphere,

    so E[y] = 1/sqrt(2 pi), Var(relu part) = 1/2 - 1/(2 pi). Their theorem: a random-features model
    sum_i u_i sigma(<w_i, x>) with the w_i drawn from a fixed distribution needs exp(Omega(d))
    features, or exponentially large read-out weights, to reach error below a constant, while
    gradient descent on the neuron itself learns it. Float targets of shape [n]; ``w*`` is drawn
    from (seed, 12), the inputs and noise from (seed, 13), so one seed gives one w* for every n.
    """
    d = validate.positive_int("d", d)
    n_train, n_test = validate.positive_int("n_train", n_train), validate.positive_int("n_test", n_test)
    noise = validate.nonnegative("noise", noise)
    seed = validate.integer("seed", seed, lo=0)
    w = np.random.default_rng([seed, 12]).standard_normal(d)
    w /= np.linalg.norm(w)
    rng = np.random.default_rng([seed, 13])
    x = rng.standard_normal((n_train + n_test, d))
    y = np.maximum(x @ w, 0.0) + noise * rng.standard_normal(n_train + n_test)
    xt, yt = torch.as_tensor(x, dtype=dtype), torch.as_tensor(y, dtype=dtype)
    return Data(xt[:n_train], yt[:n_train], xt[n_train:], yt[n_train:], name=f"relu(w*.x), d={d}")



# --- Chapter 12 task (the 12-bit information-bottleneck task) -----------------------------------
#
# Shwartz-Ziv & Tishby 2017 train small nets on 12 binary inputs "that represent 12 uniformly
# distributed points on a 2D sphere", labelled by Theta(f(x) - theta) with f spherically symmetric;
# the paper does not give f, so this is our own rotation-invariant choice (documented in ib12_labels).

IB12_GAMMA = 0.5       # weight of the squared dipole moment in f
IB12_THRESHOLD = 4.525  # theta: y = 1 iff f(x) > theta; 1996 of the 4096 patterns (48.73%) get y = 1
# (192 patterns have f = 9/2 exactly and the nearest other value of f is 4.5528: theta = 4.525 keeps every
# |f - theta| >= 0.025, so float rounding cannot flip a label)


def ib12_points() -> np.ndarray:
    """The 12 vertices of a regular icosahedron, (0, +-1, +-phi) and its cyclic shifts with
    phi = (1 + sqrt 5) / 2, scaled to the unit sphere: the 12 most uniformly spread points of S^2.
    Returns a float64 array [12, 3]; any two distinct vertices have p_i . p_j in {+-1/sqrt 5, -1}."""
    phi = (1.0 + 5.0 ** 0.5) / 2.0
    pts = []
    for a in (-1.0, 1.0):
        for b in (-1.0, 1.0):
            pts += [(0.0, a, b * phi), (a, b * phi, 0.0), (b * phi, 0.0, a)]
    p = np.array(pts)
    return p / np.linalg.norm(p, axis=1, keepdims=True)


def ib12_patterns() -> np.ndarray:
    """All 4096 binary patterns of 12 bits, [4096, 12] int64: row c holds the bits of the integer c,
    bit i = (c >> i) & 1 (so the row index is the pattern's identity X, as the information plane needs)."""
    codes = np.arange(4096)
    return (codes[:, None] >> np.arange(12)) & 1


def ib12_labels() -> np.ndarray:
    r"""Labels [4096] (int64, 0/1) of the 12-bit task, in the row order of ``ib12_patterns``.

    Bit x_i = 1 marks the icosahedron vertex p_i (``ib12_points``). With the count
    :math:`n(x) = \sum_i x_i` and the squared dipole moment :math:`d(x) = \|\sum_i x_i p_i\|^2`,

    .. math:: f(x) = n(x) - \gamma\, d(x), \qquad y = \mathbb 1[f(x) > \theta],\quad \gamma = 1/2,\ \theta = 4.525.

    Since p_i . p_j is 1, +-1/sqrt 5 or -1, f(x) = n/2 + a(x) - (b_+(x) - b_-(x)) / sqrt 5, with a the
    number of marked antipodal pairs and b_+- the marked pairs at dot product +-1/sqrt 5. Its values
    nearest the threshold are 4.5 (192 patterns, labelled 0) and 4.5528: no |f - theta| is below 0.025.

    f depends on x only through quantities unchanged by a rotation (or reflection) of the sphere that
    maps the vertices onto themselves, so the labelling is spherically symmetric in the sense of
    Shwartz-Ziv & Tishby 2017: patterns with more marked points get y = 1, and among patterns of 5 to 8
    marked points the more evenly spread ones (small dipole) get y = 1. 1996 patterns (48.73%) have y = 1.
    """
    bits = ib12_patterns()
    f = bits.sum(axis=1) - IB12_GAMMA * ((bits @ ib12_points()) ** 2).sum(axis=1)
    return (f > IB12_THRESHOLD).astype(np.int64)


def ib12(train_fraction: float = 0.85, *, seed: int = 0, dtype: torch.dtype = torch.float32,
         device: torch.device | str | None = None) -> Data:
    """The 12-bit information-bottleneck task as a ``Data`` split (Shwartz-Ziv & Tishby 2017 train on
    85% of the 4096 patterns): inputs 2 x - 1 in {-1, +1}^12 (``ib12_patterns``), labels ``ib12_labels``,
    2 classes. A random ``train_fraction`` in (0, 1] of the patterns (permutation drawn with ``seed``)
    is the training set, the rest the test set (empty when ``train_fraction`` = 1)."""
    train_fraction = validate.in_interval("train_fraction", train_fraction, 0.0, 1.0, closed="right")
    x, y = 2 * ib12_patterns() - 1, ib12_labels()
    perm = np.random.default_rng(seed).permutation(4096)
    n_train = max(1, int(round(train_fraction * 4096)))
    tr, te = perm[:n_train], perm[n_train:]
    t = lambda a, dt: torch.as_tensor(a, dtype=dt, device=device)  # noqa: E731
    return Data(t(x[tr], dtype), t(y[tr], torch.long), t(x[te], dtype), t(y[te], torch.long), num_classes=2,
                name="ib12")
