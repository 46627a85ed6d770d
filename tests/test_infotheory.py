"""Oracle tests for tdlcourse.infotheory: binary symmetric channel (exact table, exact empirical
sample, random samples), independence, invertible maps, and information-plane identities."""

import math

import numpy as np
import pytest
import torch

from tdlcourse import infotheory as it

BSC = 1 - (-(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9)))  # 1 - H_2(0.1)


def test_bsc_reference_value_exact_table():
    assert BSC == pytest.approx(0.531004, abs=5e-7)
    p = np.array([[0.45, 0.05], [0.05, 0.45]])
    assert it.mutual_information_joint(p) == pytest.approx(0.531004, abs=5e-7)
    assert it.mutual_information_joint(p) == pytest.approx(BSC, rel=1e-13)


def test_joint_closed_forms():
    assert it.mutual_information_joint(np.outer([0.2, 0.8], [0.1, 0.6, 0.3])) == pytest.approx(0.0, abs=1e-15)
    # Y = X: I = H(X)
    px = np.array([0.5, 0.25, 0.125, 0.125])
    assert it.mutual_information_joint(np.diag(px)) == pytest.approx(1.75, rel=1e-14)


def test_bsc_exact_empirical_sample():
    # 100 samples in exactly the channel's proportions: the plug-in value is the exact MI
    x = np.array([0] * 50 + [1] * 50)
    y = np.array([0] * 45 + [1] * 5 + [0] * 5 + [1] * 45)
    assert it.mutual_information_discrete(x, y) == pytest.approx(BSC, rel=1e-12)


def test_bsc_random_samples_within_tolerance():
    rng = np.random.default_rng(0)
    n = 200_000
    x = rng.integers(0, 2, n)
    y = x ^ (rng.random(n) < 0.1)
    # sd of the plug-in estimate ~ sqrt(Var[log2 p(x,y)/(p(x)p(y))] / n) = 0.0021; allow 5 sd
    assert it.mutual_information_discrete(x, y) == pytest.approx(BSC, abs=0.011)
    # the same through the binned estimator: continuous x in [0, 1), 2 bins <=> the bit
    u = (x + rng.random(n)) / 2
    assert it.mutual_information_binned(u, y, bins=2, value_range=(0, 1)) == pytest.approx(
        it.mutual_information_discrete(x, y), rel=1e-12)


def test_independent_variables():
    # exact product sample: every (x, y) pair once -> exactly 0
    x, y = np.meshgrid(np.arange(5), np.arange(7))
    assert it.mutual_information_discrete(x.ravel(), y.ravel()) == pytest.approx(0.0, abs=1e-12)
    # random independent samples: within the plug-in bias (K_xy - K_x - K_y + 1) / (2 n ln 2) + noise
    rng = np.random.default_rng(1)
    n = 50_000
    a, b = rng.normal(size=(n, 2)), rng.integers(0, 4, n)
    mi = it.mutual_information_binned(a, b, bins=5)
    bias = (25 * 4 - 25 - 4 + 1) / (2 * n * math.log(2))
    assert 0 <= mi < 4 * bias


def test_invertible_map_gives_entropy():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 16, 5000)
    perm = rng.permutation(16)
    hx = it.entropy_discrete(x)
    assert it.mutual_information_discrete(x, perm[x]) == pytest.approx(hx, rel=1e-12)
    # continuous: y = 3 x + 1 binned over its own range puts every point in the same bin index
    t = rng.uniform(-1, 1, size=(3000, 2))
    tb = it.bin_activations(t, 10)
    np.testing.assert_array_equal(it.bin_activations(3 * t + 1, 10), tb)
    mi = it.mutual_information_binned(t, 3 * t + 1, bins=10, y_bins=10)
    assert mi == pytest.approx(it.entropy_discrete(tb), rel=1e-12)


def test_entropy_closed_forms():
    assert it.entropy_discrete(np.arange(8)) == pytest.approx(3.0, rel=1e-15)
    assert it.entropy_discrete([1, 1, 1]) == 0.0
    assert it.entropy_discrete(torch.tensor([0, 0, 1, 2])) == pytest.approx(1.5, rel=1e-15)
    rows = np.array([[0, 1], [0, 1], [1, 0], [1, 1]])  # rows are symbols: 3 of them, p = 1/2, 1/4, 1/4
    assert it.entropy_discrete(rows) == pytest.approx(1.5, rel=1e-15)


def test_bin_activations():
    t = np.array([[-1.0, 0.0], [0.49, 1.0], [0.51, -0.2]])
    # range [-1, 1], 2 bins: inner edge 0 (a value on an edge goes to the upper bin)
    np.testing.assert_array_equal(it.bin_activations(t, 2), [[0, 1], [1, 1], [1, 0]])
    np.testing.assert_array_equal(it.bin_activations(t, [-1.0, 0.5, 1.0]), [[0, 0], [0, 1], [1, 0]])
    # full edges as numpy.histogram: same bins as np.histogram counts
    edges = np.linspace(-1, 1, 7)
    np.testing.assert_array_equal(np.bincount(it.bin_activations(t.ravel(), edges), minlength=6),
                                  np.histogram(t.ravel(), edges)[0])
    np.testing.assert_array_equal(it.bin_activations(t, 4, value_range=(-2, 2)), [[1, 2], [2, 3], [2, 1]])
    np.testing.assert_array_equal(it.bin_activations(np.ones(4), 30), np.zeros(4))


def test_information_plane_identities_and_recorder():
    rng = np.random.default_rng(3)
    n = 256
    x_ids = np.arange(n)
    y = rng.integers(0, 2, n)
    distinct = rng.normal(size=(n, 3))             # all rows distinct at fine binning
    constant = np.zeros((n, 4))
    label_copy = np.stack([y, 1 - y], 1).astype(float)
    epochs = [[distinct, constant, label_copy], [torch.as_tensor(distinct) * 2, constant + 1, label_copy]]
    res = it.information_plane(epochs, x_ids, y, bins=10_000)
    assert res.i_xt.shape == res.i_ty.shape == (2, 3)
    assert res.h_x == pytest.approx(8.0) and res.h_y == pytest.approx(it.entropy_discrete(y))
    # T = identity of X: I(X;T) = H(X), I(T;Y) = H(Y); constant T: 0 and 0; T = copy of Y: H(Y), H(Y)
    np.testing.assert_allclose(res.i_xt[:, 0], 8.0, rtol=1e-12)
    np.testing.assert_allclose(res.i_ty[:, 0], res.h_y, rtol=1e-12)
    np.testing.assert_allclose(res.i_xt[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(res.i_ty[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(res.i_xt[:, 2], res.h_y, rtol=1e-12)
    np.testing.assert_allclose(res.i_ty[:, 2], res.h_y, rtol=1e-12)
    np.testing.assert_array_equal(res.n_symbols[:, 1:], [[1, 2], [1, 2]])
    # data processing: I(T;Y) <= I(X;T) when T is a function of X
    assert np.all(res.i_ty <= res.i_xt + 1e-12)
    rec = it.InformationPlane(x_ids, y, bins=10_000)
    for layers in epochs:
        rec.record(layers)
    r2 = rec.result()
    np.testing.assert_array_equal(r2.i_xt, res.i_xt)
    np.testing.assert_array_equal(r2.i_ty, res.i_ty)


def test_information_plane_coarse_binning_loses_information():
    rng = np.random.default_rng(4)
    n = 512
    t = np.tanh(rng.normal(size=(n, 2)) * 3)
    y = (t[:, 0] > 0).astype(int)
    fine = it.information_plane([[t]], np.arange(n), y, bins=1000, value_range=(-1, 1))
    coarse = it.information_plane([[t]], np.arange(n), y, bins=2, value_range=(-1, 1))
    assert coarse.i_xt[0, 0] <= 2.0 + 1e-12 < fine.i_xt[0, 0] <= math.log2(n) + 1e-12
    assert coarse.i_ty[0, 0] == pytest.approx(it.entropy_discrete(y), rel=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="same number"):
        it.mutual_information_discrete([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="sum to 1"):
        it.mutual_information_joint([[0.5, 0.6], [0.0, 0.0]])
    with pytest.raises(ValueError, match="p_xy"):
        it.mutual_information_joint([[-0.1, 1.1]])
    with pytest.raises(ValueError, match="bins"):
        it.mutual_information_binned(np.ones((3, 2)), [0, 1, 0], bins=0)
    with pytest.raises(ValueError, match="bins"):
        it.bin_activations(np.ones(3), [1.0, 0.5])
    with pytest.raises(ValueError, match="bins"):
        it.bin_activations(np.ones(3), [1.0])
    with pytest.raises(ValueError, match="labels"):
        it.entropy_discrete([])
    with pytest.raises(ValueError, match="rows"):
        it.information_plane([[np.ones((4, 2))]], np.arange(5), np.zeros(5))
    with pytest.raises(ValueError, match="record"):
        it.InformationPlane(np.arange(3), [0, 1, 0]).result()
