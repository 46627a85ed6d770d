"""randomization.interpolating_relu_net (Zhang et al. 2017, Thm. 1) against independent oracles: the
continuous piecewise-linear function it must be (built segment by segment, no linear solve) and
the same weights run as a torch two-layer ReLU network."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tdlcourse import randomization
from tdlcourse.randomization import interpolating_relu_net


def piecewise_linear_oracle(X, y, a, X_query):
    """f is 0 up to b_1, linear on each [b_j, b_{j+1}] (b_{n+1} = inf) and continuous, and passes
    through (z_(j), y_(j)) on segment j: walk the segments from the left."""
    X, y, a, X_query = (np.asarray(v, dtype=float) for v in (X, y, a, X_query))
    z = X @ a
    order = np.argsort(z)
    z, y = z[order], y[order]
    b = [z[0] - 1.0] + [(z[j - 1] + z[j]) / 2 for j in range(1, len(z))]
    start, slope = [0.0], []  # f(b_j), slope on [b_j, b_{j+1}]
    for j in range(len(z)):
        slope.append((y[j] - start[j]) / (z[j] - b[j]))
        if j + 1 < len(z):
            start.append(start[j] + slope[j] * (b[j + 1] - b[j]))
    out = []
    for t in X_query @ a:
        k = max((j for j in range(len(b)) if b[j] <= t), default=None)
        out.append(0.0 if k is None else start[k] + slope[k] * (t - b[k]))
    return np.array(out)


def torch_net(X, y, a, X_query):
    """The same network as torch modules: Linear(d, n) with every row a and biases -b, ReLU,
    Linear(n, 1) with the weights w; w solved here by forward substitution."""
    X, y, a = (np.asarray(v, dtype=float) for v in (X, y, a))
    z = X @ a
    order = np.argsort(z)
    z, y = z[order], y[order]
    n, d = X.shape
    b = np.concatenate([[z[0] - 1.0], (z[:-1] + z[1:]) / 2])
    w = np.zeros(n)
    for i in range(n):  # A is lower triangular: A_ij = z_i - b_j for j <= i
        w[i] = (y[i] - sum(w[j] * (z[i] - b[j]) for j in range(i))) / (z[i] - b[i])
    hidden = torch.nn.Linear(d, n).double()
    out = torch.nn.Linear(n, 1, bias=False).double()
    with torch.no_grad():
        hidden.weight.copy_(torch.tensor(a).expand(n, d))
        hidden.bias.copy_(torch.tensor(-b))
        out.weight.copy_(torch.tensor(w)[None, :])
        net = torch.nn.Sequential(hidden, torch.nn.ReLU(), out)
        return net(torch.tensor(np.asarray(X_query, dtype=float))).squeeze(1).numpy()


def test_public_example_by_hand():
    # z = 0, 1, 2; b = -1, 0.5, 1.5; w = 1, -6, 14 (forward substitution by hand)
    got = interpolating_relu_net([[0.0], [1.0], [2.0]], [1.0, -1.0, 1.0], [1.0], [[0.0], [1.0], [2.0], [0.5], [3.0]])
    np.testing.assert_allclose(got, [1.0, -1.0, 1.0, 1.5, 10.0], rtol=1e-12)
    assert got.dtype == np.float64 and got.shape == (5,)


@pytest.mark.parametrize("n,d", [(1, 1), (2, 3), (5, 2), (9, 4), (12, 12), (30, 5)])
def test_matches_both_oracles_and_fits_the_targets(n, d):
    rng = np.random.default_rng(n * 100 + d)
    X = rng.normal(size=(n, d))
    y = rng.integers(0, 10, size=n).astype(float)  # random labels
    a = rng.normal(size=d)
    Xq = np.vstack([X, rng.normal(size=(20, d)), 3 * rng.normal(size=(5, d))])
    got = interpolating_relu_net(X, y, a, Xq)
    np.testing.assert_allclose(got, piecewise_linear_oracle(X, y, a, Xq), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got, torch_net(X, y, a, Xq), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(got[:n], y, rtol=0, atol=1e-9)
    # to the left of every threshold every unit is off
    z = X @ a
    assert interpolating_relu_net(X, y, a, [a * (z.min() - 1.5) / (a @ a)])[0] == 0.0


def test_fits_random_labels_of_digits():
    """The lab's setting: 200 digit images, their labels replaced at random, fitted exactly."""
    from sklearn.datasets import load_digits

    X = load_digits().data[:200] / 16.0
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, size=len(X)).astype(float)
    a = rng.normal(size=X.shape[1])
    got = interpolating_relu_net(X, y, a, X)
    np.testing.assert_allclose(got, y, rtol=0, atol=1e-6)
    assert (np.rint(got) == y).all()


def test_row_order_does_not_matter():
    rng = np.random.default_rng(5)
    X, y, a, Xq = rng.normal(size=(7, 3)), rng.normal(size=7), rng.normal(size=3), rng.normal(size=(4, 3))
    p = rng.permutation(7)
    np.testing.assert_allclose(interpolating_relu_net(X[p], y[p], a, Xq), interpolating_relu_net(X, y, a, Xq),
                               rtol=1e-12)


@pytest.mark.parametrize("args,name", [
    (([[0.0], [0.0]], [1.0, 2.0], [1.0], [[0.0]]), "projections"),
    (([[1.0, 0.0], [1.0, 1.0]], [1.0, 2.0], [1.0, 0.0], [[0.0, 0.0]]), "projections"),
    (([0.0, 1.0], [1.0, 2.0], [1.0], [[0.0]]), "X must"),
    ((np.zeros((0, 2)), np.zeros(0), [1.0, 1.0], [[0.0, 0.0]]), "X must"),
    (([[0.0], [1.0]], [1.0], [1.0], [[0.0]]), "y must"),
    (([[0.0], [1.0]], [1.0, np.nan], [1.0], [[0.0]]), r"y\[1\]=nan must be a finite"),
    (([[0.0], [np.inf]], [1.0, 2.0], [1.0], [[0.0]]), r"X\[1, 0\]=inf must be a finite"),
    (([[0.0], [1.0]], [1.0, 2.0], [1.0, 2.0], [[0.0]]), "a must"),
    (([[0.0], [1.0]], [1.0, 2.0], [1.0], [[0.0, 1.0]]), "X_query must"),
    (([[0.0], [1.0]], [1.0, 2.0], [1.0], [0.0]), "X_query must"),
])
def test_input_validation_names_the_parameter(args, name):
    with pytest.raises(ValueError, match=name):
        randomization.interpolating_relu_net(*args)


def test_the_construction_fitted_to_true_labels_predicts_at_chance():
    """What the lab's written question expects: fitted to the true labels of 1000 digit images
    along a random direction, the construction is exact on the training set and near chance (10%)
    on the other 797 images (rounded to the nearest class)."""
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    p = np.random.default_rng(0).permutation(len(X))
    X, y = X[p] / 16.0, y[p].astype(float)
    for seed in range(3):
        a = np.random.default_rng(seed).normal(size=X.shape[1])
        fit = interpolating_relu_net(X[:1000], y[:1000], a, X)
        assert (np.rint(fit[:1000]) == y[:1000]).all()
        test_acc = (np.clip(np.rint(fit[1000:]), 0, 9) == y[1000:]).mean()
        assert test_acc < 0.2, test_acc


def test_lab01_worked_example_numbers_are_the_constructions():
    """Lab 1's Your-turn text works an example by hand (thresholds, weights, two outputs): those
    numbers are read from the text and checked against the construction and the library."""
    import re

    import nbformat

    from conftest import ROOT

    nb = nbformat.read(ROOT / "labs" / "01_generalization_puzzle.ipynb", as_version=4)
    text = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "yourturn-intro")
    m = re.search(r"thresholds are \$(.+?)\$, the weights \$w = \((.+?)\)\$, and\s+\$f\(0\.5\) = (.+?)\$, \$f\(3\) = (.+?)\$",
                  text)
    assert m, "the worked example is not where the test reads it"
    b_text = [float(v) for v in m.group(1).split(",")]
    w_text = [float(v) for v in m.group(2).split(",")]
    z, y = np.array([0.0, 1.0, 2.0]), np.array([1.0, -1.0, 1.0])
    b = np.array([z[0] - 1, (z[0] + z[1]) / 2, (z[1] + z[2]) / 2])
    w = np.linalg.solve(np.maximum(z[:, None] - b[None, :], 0.0), y)
    assert np.allclose(b_text, b) and np.allclose(w_text, w)
    f = randomization.interpolating_relu_net(z[:, None], y, [1.0], [[0.5], [3.0]])
    assert np.allclose(f, [float(m.group(3)), float(m.group(4))])


# --- the CIFAR-10 experiment of Zhang et al. (lab 1 at gpu scale) --------------------------------

def test_random_pixels_permute_each_image_on_its_own():
    from tdlcourse import randomization

    x = torch.arange(5 * 3 * 4 * 4, dtype=torch.float32).reshape(5, 3, 4, 4)
    y = randomization.random_pixels(x, seed=1)
    assert y.shape == x.shape and not torch.equal(y, x)
    pix = lambda t: t.reshape(5, 3, 16).transpose(1, 2)  # noqa: E731 - [n, pixel, channel]
    perms = []
    for i in range(5):
        # every pixel keeps its three channels together and lands somewhere in the same image
        src = {tuple(p.tolist()): j for j, p in enumerate(pix(x)[i])}
        perms.append([src[tuple(p.tolist())] for p in pix(y)[i]])
        assert sorted(perms[-1]) == list(range(16))
    assert len({tuple(p) for p in perms}) == 5, "each image has its own permutation"
    assert torch.equal(randomization.random_pixels(x, seed=1), y)
    v = torch.arange(12.0).reshape(2, 6)
    assert sorted(randomization.random_pixels(v, seed=0)[1].tolist()) == v[1].tolist()
    with pytest.raises(ValueError, match=r"x must be images .* shape \(2, 3, 4\)"):
        randomization.random_pixels(torch.zeros(2, 3, 4))


def test_cnn_runs_on_cifar_format_batches(tmp_path):
    from conftest import cifar_like_tarball
    from tdlcourse import data, models, randomization

    d = data.cifar10(file=cifar_like_tarball(tmp_path / "cifar-10-python.tar.gz"))
    assert d.x_train.shape == (80, 3, 32, 32) and d.x_test.shape == (16, 3, 32, 32)
    small = dict(arch="cnn", channels=(4,), hidden=8, steps=4, lr=0.01, eval_every=2)
    r = randomization.run(d, "random pixels", **small)
    assert r.n_params == models.num_params(models.cnn(3, 10, channels=(4,), hidden=8))
    assert r.history.eval_step[-1] == 4 and 0 <= r.test_acc <= 1
    sweep = randomization.label_noise_sweep(d, [0.0, 1.0], **small)
    assert [s.n_params for s in sweep] == [r.n_params] * 2
    with pytest.raises(ValueError, match="arch='cnn' needs square images"):
        randomization.run(data.digits(), arch="cnn", steps=1)
    with pytest.raises(ValueError, match="arch"):
        randomization.run(d, arch="resnet", steps=1)
    with pytest.raises(ValueError, match="file="):
        data.cifar10(file=tmp_path / "missing.tar.gz")
