"""Datasets: Data validation, digits, label corruption, and the MNIST/CIFAR-10 readers and cache.

The readers are exercised on small IDX files and CIFAR pickle batches written here; the network is
never used (the single download entry point, ``data._urlopen``, is replaced).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from tdlcourse import data


# ----------------------------------------------------------------------------------------- Data

def test_data_validation_before_any_training():
    x, y = torch.randn(5, 3), torch.tensor([0, 1, 2, 1, 0])
    with pytest.raises(ValueError, match="x_train has 5 rows but y_train has 4"):
        data.Data(x, y[:4], x, y)
    with pytest.raises(ValueError, match="x_test has 2 rows but y_test has 5"):
        data.Data(x, y, x[:2], y)
    with pytest.raises(ValueError, match="x_train is empty"):
        data.Data(x[:0], y[:0], x, y)
    with pytest.raises(ValueError, match=r"y_train holds the label 2; labels must lie in \[0, 1\]"):
        data.Data(x, y, x, y, num_classes=2)
    with pytest.raises(ValueError, match="y_test holds the label -1"):
        data.Data(x, y, x, torch.tensor([0, -1, 0, 0, 0]), num_classes=3)
    with pytest.raises(ValueError, match="num_classes=True must be an integer >= 1"):
        data.Data(x, y, x, y, num_classes=True)
    assert type(data.Data(x, y, x, y, num_classes=np.int64(3)).num_classes) is int
    d = data.Data(x, y, x[:2], y[:2], num_classes=3, name="toy")
    assert d.d_in == 3 and d.to("cpu").x_train.device.type == "cpu"
    d2 = d.with_train(y_train=torch.zeros(5, dtype=torch.long), name="zeros")
    assert d2.name == "zeros" and torch.equal(d2.x_test, d.x_test) and int(d2.y_train.sum()) == 0
    with pytest.raises(ValueError, match="labels must lie"):
        d.with_train(y_train=torch.full((5,), 3))


def test_digits_split_and_standardization():
    d = data.digits(test_fraction=0.3, seed=0)
    assert (len(d.x_train), len(d.x_test)) == (1797 - 539, 539) and d.d_in == 64 and d.num_classes == 10
    mu, sd = d.x_train.mean(0), d.x_train.std(0, unbiased=False)
    varying = sd > 0
    assert torch.allclose(mu, torch.zeros(64), atol=1e-5)
    assert torch.allclose(sd[varying], torch.ones(int(varying.sum())), atol=1e-4)
    assert set(d.y_train.tolist()) == set(range(10))
    assert torch.equal(data.digits(seed=0).x_train, d.x_train) and not torch.equal(data.digits(seed=1).y_train, d.y_train)
    with pytest.raises(ValueError, match="test_fraction"):
        data.digits(test_fraction=1.0)


def test_corrupt_labels_counts_and_chance_agreement():
    y = torch.arange(20000) % 10
    out = data.corrupt_labels(y, 0.3, 10, seed=0)
    assert torch.equal(data.corrupt_labels(y, 0.3, 10, seed=0), out)
    changed = int((out != y).sum())
    # Exactly 6000 redrawn; each keeps its label with probability 1/10: 5400 changed, s.d. 23.
    assert abs(changed - 5400) < 5 * 23
    assert torch.equal(data.corrupt_labels(y, 0.0, 10), y)
    agree = float((data.corrupt_labels(y, 1.0, 10, seed=1) == y).float().mean())
    assert abs(agree - 0.1) < 5 * (0.1 * 0.9 / 20000) ** 0.5
    with pytest.raises(ValueError, match="fraction"):
        data.corrupt_labels(y, 1.5, 10)
    with pytest.raises(ValueError, match="num_classes"):
        data.corrupt_labels(y, 0.5, 1)


def test_shuffle_labels_keeps_counts_and_gaussian_like_keeps_moments():
    y = torch.arange(1000) % 7
    s = data.shuffle_labels(y, seed=3)
    assert torch.equal(torch.bincount(s), torch.bincount(y)) and not torch.equal(s, y)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(20000, 3, generator=g) * torch.tensor([1.0, 2.0, 0.5]) + torch.tensor([0.0, 3.0, -1.0])
    z = data.gaussian_like(x, seed=0)
    # Monte Carlo: the sample mean has s.e. sd/sqrt(20000).
    assert torch.all((z.mean(0) - x.mean(0)).abs() < 5 * x.std(0) / 20000 ** 0.5)
    assert torch.allclose(z.std(0), x.std(0), rtol=0.03)


# ------------------------------------------------------------------------------------ IDX files

def idx_bytes(a: np.ndarray) -> bytes:
    code = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(">i2"): 0x0B,
            np.dtype(">i4"): 0x0C, np.dtype(">f4"): 0x0D, np.dtype(">f8"): 0x0E}[a.dtype]
    return bytes([0, 0, code, a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape) + a.tobytes()


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, ">i2", ">i4", ">f4", ">f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_read_idx_round_trip(tmp_path, dtype, gz):
    a = (np.arange(2 * 3 * 4) - 5).reshape(2, 3, 4).astype(dtype)
    path = tmp_path / ("a.idx.gz" if gz else "a.idx")
    path.write_bytes(gzip.compress(idx_bytes(a)) if gz else idx_bytes(a))
    out = data.read_idx(path)
    assert out.shape == (2, 3, 4) and np.array_equal(out, a) and out.dtype.isnative


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "bad").write_bytes(b"\x01\x02\x08\x01\x00\x00\x00\x02ab")
    with pytest.raises(ValueError, match="not an IDX file"):
        data.read_idx(tmp_path / "bad")
    (tmp_path / "short").write_bytes(idx_bytes(np.zeros((3, 2), np.uint8))[:-1])
    with pytest.raises(ValueError, match="needs 6"):
        data.read_idx(tmp_path / "short")


# ------------------------------------------------------------------------------ MNIST and cache

def fake_mnist(n_train: int = 40, n_test: int = 12) -> dict[str, bytes]:
    rng = np.random.default_rng(0)
    imgs = lambda n: rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)  # noqa: E731
    labs = lambda n: (np.arange(n) % 10).astype(np.uint8)  # noqa: E731
    return {"train-images-idx3-ubyte.gz": gzip.compress(idx_bytes(imgs(n_train))),
            "train-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labs(n_train))),
            "t10k-images-idx3-ubyte.gz": gzip.compress(idx_bytes(imgs(n_test))),
            "t10k-labels-idx1-ubyte.gz": gzip.compress(idx_bytes(labs(n_test)))}


@pytest.fixture
def mnist_files(monkeypatch):
    """Generated MNIST files, registered in SOURCES with their own checksums and two fake mirrors."""
    files = fake_mnist()
    src = data.Source("mnist", tuple(data.RemoteFile(n, hashlib.sha256(b).hexdigest()) for n, b in files.items()),
                      ("https://mirror-a.invalid/mnist/", "https://mirror-b.invalid/mnist/"), "https://example.invalid")
    monkeypatch.setitem(data.SOURCES, "mnist", src)
    monkeypatch.delenv("TDL_DATA", raising=False)
    return files


def offline(url, timeout):
    raise urllib.error.URLError("offline (test)")


def serve(files: dict[str, bytes], good_prefix: str = "", corrupt: bool = False, calls: list | None = None):
    def urlopen(url, timeout):
        if calls is not None:
            calls.append(url)
        if not url.startswith(good_prefix):
            raise urllib.error.URLError("mirror down (test)")
        body = files[url.rsplit("/", 1)[1]]
        return io.BytesIO(body[:-1] + bytes([body[-1] ^ 1]) if corrupt else body)
    return urlopen


def test_mnist_reader_on_generated_files(tmp_path, monkeypatch, mnist_files):
    folder = tmp_path / "mnist"
    folder.mkdir()
    for name, body in mnist_files.items():
        (folder / name).write_bytes(body)
    monkeypatch.setattr(data, "_urlopen", offline)  # files are there: no download may happen
    monkeypatch.setenv("TDL_DATA", str(tmp_path))
    raw = data.mnist(standardize=False)
    assert raw.x_train.shape == (40, 1, 28, 28) and raw.x_test.shape == (12, 1, 28, 28)
    expected = data.read_idx(folder / "train-images-idx3-ubyte.gz")[:, None] / 255.0
    assert np.allclose(raw.x_train.numpy(), expected) and raw.y_train.tolist() == [i % 10 for i in range(40)]
    std = data.mnist(flatten=True)
    assert std.x_train.shape == (40, 784) and abs(float(std.x_train.mean())) < 1e-5
    assert float(std.x_train.std(unbiased=False)) == pytest.approx(1.0, abs=1e-4)
    sub = data.mnist(root=tmp_path, n_train=10, n_test=5, seed=1)
    assert len(sub.x_train) == 10 and len(sub.x_test) == 5 and sub.num_classes == 10
    with pytest.raises(ValueError, match="n_train=41"):
        data.mnist(root=tmp_path, n_train=41)


def test_offline_error_says_where_to_put_the_files(tmp_path, monkeypatch, mnist_files):
    monkeypatch.setattr(data, "_urlopen", offline)
    with pytest.raises(data.DataUnavailableError) as err:
        data.mnist(root=tmp_path)
    msg = str(err.value)
    assert str(tmp_path / "mnist") in msg and "TDL_DATA" in msg and "offline (test)" in msg
    for rf in data.SOURCES["mnist"].files:
        assert rf.name in msg and rf.sha256 in msg
    assert not any((tmp_path / "mnist").iterdir())  # nothing half-written left behind
    with pytest.raises(data.DataUnavailableError, match="download=False"):
        data.fetch("mnist", tmp_path, download=False)


def test_download_tries_mirrors_verifies_and_caches(tmp_path, monkeypatch, mnist_files):
    calls: list[str] = []
    monkeypatch.setattr(data, "_urlopen", serve(mnist_files, "https://mirror-b.invalid/", calls=calls))
    paths = data.fetch("mnist", tmp_path)
    assert [p.name for p in paths.values()] == list(mnist_files)
    assert all(p.read_bytes() == mnist_files[p.name] for p in paths.values())
    assert len(calls) == 8 and calls[0].startswith("https://mirror-a.invalid/")  # canonical first, then mirror
    assert sorted(os.listdir(tmp_path / "mnist")) == sorted(mnist_files)  # no temporary files
    monkeypatch.setattr(data, "_urlopen", offline)
    assert data.fetch("mnist", tmp_path) == paths  # cached: no network needed


def test_corrupt_download_leaves_nothing_behind(tmp_path, monkeypatch, mnist_files):
    monkeypatch.setattr(data, "_urlopen", serve(mnist_files, corrupt=True))
    with pytest.raises(data.DataUnavailableError, match="sha256"):
        data.fetch("mnist", tmp_path)
    assert os.listdir(tmp_path / "mnist") == []


def test_interrupted_download_leaves_nothing_behind(tmp_path, monkeypatch, mnist_files):
    class Broken(io.BytesIO):
        def read(self, n=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection dropped (test)")
            return super().read(10)

    monkeypatch.setattr(data, "_urlopen", lambda url, timeout: Broken(b"x" * 100))
    with pytest.raises(data.DataUnavailableError, match="connection dropped"):
        data.fetch("mnist", tmp_path)
    assert os.listdir(tmp_path / "mnist") == []


def test_a_wrong_file_in_the_cache_is_reported_not_deleted(tmp_path, mnist_files):
    folder = tmp_path / "mnist"
    folder.mkdir()
    name = next(iter(mnist_files))
    (folder / name).write_bytes(b"not mnist")
    with pytest.raises(ValueError, match=f"{name} has sha256 {hashlib.sha256(b'not mnist').hexdigest()}"):
        data.fetch("mnist", tmp_path)
    assert (folder / name).read_bytes() == b"not mnist"
    with pytest.raises(ValueError, match=r"name='svhn'.*'mnist', 'cifar10'"):
        data.fetch("svhn", tmp_path)


def test_cache_dir_order(tmp_path, monkeypatch):
    monkeypatch.setenv("TDL_DATA", str(tmp_path / "env"))
    assert data.cache_dir() == tmp_path / "env"
    assert data.cache_dir(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("TDL_DATA")
    assert data.cache_dir() == Path.home() / ".cache" / "tdlcourse"


def test_canonical_checksums_are_the_published_ones():
    # sha256 of the canonical files, as published alongside them by many independent projects.
    sums = {rf.name: rf.sha256 for s in ("mnist", "cifar10") for rf in data.SOURCES[s].files}
    assert sums["train-images-idx3-ubyte.gz"].startswith("440fcabf73cc546fa21475e81ea37026")
    assert sums["cifar-10-python.tar.gz"].startswith("6d958be074577803d12ecdefd02955f3")
    assert all(len(v) == 64 and int(v, 16) >= 0 for v in sums.values())


# -------------------------------------------------------------------------------------- CIFAR-10

def cifar_batch(n: int, offset: int, numpy_core: bool = True) -> bytes:
    """A CIFAR-style batch: image i has red = offset + i, green = 100, blue = 200 (mod 256)."""
    x = np.zeros((n, 3, 32, 32), np.uint8)
    x[:, 0] = ((offset + np.arange(n)) % 256)[:, None, None]
    x[:, 1], x[:, 2] = 100, 200
    body = pickle.dumps({b"batch_label": b"test", b"labels": [(offset + i) % 10 for i in range(n)],
                         b"data": x.reshape(n, 3072)}, protocol=2)
    if numpy_core:  # the real files were pickled by NumPy 1.x, which names numpy.core
        body = body.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    return body


def cifar_tarball(path: Path, n: int = 4) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for i, name in enumerate([f"data_batch_{j}" for j in range(1, 6)] + ["test_batch"]):
            body = cifar_batch(n, 10 * i, numpy_core=i % 2 == 0)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))


def test_cifar10_reader_on_a_generated_tarball(tmp_path, monkeypatch):
    folder = tmp_path / "cifar10"
    folder.mkdir()
    cifar_tarball(folder / "cifar-10-python.tar.gz")
    digest = data.sha256_file(folder / "cifar-10-python.tar.gz")
    monkeypatch.setitem(data.SOURCES, "cifar10", data.Source(
        "cifar10", (data.RemoteFile("cifar-10-python.tar.gz", digest),), ("https://x.invalid/",), "h"))
    monkeypatch.setattr(data, "_urlopen", offline)
    d = data.cifar10(root=tmp_path, standardize=False)
    assert d.x_train.shape == (20, 3, 32, 32) and d.x_test.shape == (4, 3, 32, 32)
    # Channel planes: red first, then green, then blue; batches concatenated in order 1..5.
    assert d.x_train[:, 0, 5, 7].mul(255).round().long().tolist() == [10 * b + i for b in range(5) for i in range(4)]
    assert torch.allclose(d.x_train[:, 1], torch.full((20, 32, 32), 100 / 255))
    assert torch.allclose(d.x_test[:, 2], torch.full((4, 32, 32), 200 / 255))
    assert d.y_test.tolist() == [(50 + i) % 10 for i in range(4)]
    s = data.cifar10(root=tmp_path, flatten=True)
    assert s.x_train.shape == (20, 3072)
    assert torch.allclose(s.x_train.view(20, 3, -1).mean((0, 2)), torch.zeros(3), atol=1e-5)


def test_cifar_unpickler_refuses_code():
    evil = pickle.dumps(os.system, protocol=2)  # would resolve posix.system
    with pytest.raises(pickle.UnpicklingError, match="refusing"):
        data.read_cifar_batch(io.BytesIO(evil))
    with pytest.raises(ValueError, match="not a CIFAR-10 python batch"):
        data.read_cifar_batch(io.BytesIO(pickle.dumps({b"x": 1}, protocol=2)))


def test_mnist_and_cifar10_read_an_explicit_local_copy(tmp_path):
    """``folder=`` / ``file=`` read a local copy as it is, without the cache and its checksums."""
    from conftest import cifar_like_tarball, mnist_like_folder

    d = data.mnist(folder=mnist_like_folder(tmp_path / "m", n_train=30, n_test=10), flatten=True)
    assert d.x_train.shape == (30, 784) and d.x_test.shape == (10, 784) and d.num_classes == 10
    c = data.cifar10(file=cifar_like_tarball(tmp_path / "c.tar.gz", n=4), n_train=7)
    assert c.x_train.shape == (7, 3, 32, 32) and c.x_test.shape == (4, 3, 32, 32)
    (tmp_path / "m" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(ValueError, match=r"folder=.* lacks the MNIST files \['t10k-labels-idx1-ubyte.gz'\]"):
        data.mnist(folder=tmp_path / "m")
