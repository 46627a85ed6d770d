"""Tests for the chapter 11 tasks of tdlcourse.data: the k-pattern task (Malach & Shalev-Shwartz 2020)
and the single ReLU neuron target (Yehudai & Shamir 2019), against their definitions and the
Gaussian moments E[relu(z)] = 1/sqrt(2 pi), E[relu(z)^2] = 1/2 (Monte Carlo within 4 standard errors)."""

import math

import numpy as np
import pytest
import torch

from tdlcourse import data


def test_k_pattern_label_is_the_window_parity():
    d = data.k_pattern(20, 4, n_train=500, n_test=300, seed=3)
    j = int(d.name.split("location ")[1])
    for x, y in ((d.x_train, d.y_train), (d.x_test, d.y_test)):
        assert torch.all(x.abs() == 1)
        assert torch.equal(y, (x[:, j:j + 4].prod(1) < 0).long())
    assert d.num_classes == 2 and d.x_train.shape == (500, 20) and d.x_test.shape == (300, 20)


def test_k_pattern_only_its_window_explains_the_labels():
    # Every other window of 4 consecutive bits (and every single bit) is uncorrelated with the label.
    d = data.k_pattern(16, 4, n_train=4000, n_test=10, location=7, seed=0)
    chi = 1 - 2 * d.y_train.double()
    corr = [float((chi * d.x_train[:, i:i + 4].double().prod(1)).mean()) for i in range(13)]
    assert corr[7] == 1.0
    se = 1 / math.sqrt(4000)
    assert all(abs(c) < 4 * se for i, c in enumerate(corr) if i != 7)
    assert abs(float(chi.mean())) < 4 * se             # balanced classes
    assert all(abs(float((chi * d.x_train[:, i].double()).mean())) < 4 * se for i in range(16))


def test_k_pattern_seeds_and_location():
    a, b = data.k_pattern(12, 3, n_train=50, n_test=5, seed=1), data.k_pattern(12, 3, n_train=50, n_test=5, seed=1)
    assert torch.equal(a.x_train, b.x_train) and a.name == b.name
    locs = {data.k_pattern(12, 3, n_train=5, n_test=5, seed=s).name for s in range(30)}
    assert len(locs) > 3                                # the location is drawn, not fixed
    assert "location 9" in data.k_pattern(12, 3, n_train=5, n_test=5, location=9).name


def test_single_relu_moments_and_target():
    d = data.single_relu(7, n_train=20000, n_test=10, seed=2, dtype=torch.float64)
    y = d.y_train.numpy()
    mean, second = 1 / math.sqrt(2 * math.pi), 0.5
    assert abs(y.mean() - mean) < 4 * y.std() / math.sqrt(len(y))
    assert abs((y ** 2).mean() - second) < 4 * (y ** 2).std() / math.sqrt(len(y))
    # y is exactly relu(x . w*) for one unit vector w*: recover it by least squares on the active side
    x = d.x_train.numpy()
    on = y > 0
    w, *_ = np.linalg.lstsq(x[on], y[on], rcond=None)
    assert abs(np.linalg.norm(w) - 1) < 1e-10
    assert np.allclose(np.maximum(x @ w, 0), y, atol=1e-10)
    x_sd = x.std(0)
    assert np.all(np.abs(x_sd - 1) < 4 * math.sqrt(0.5 / len(x)))


def test_single_relu_same_w_for_every_n_and_noise():
    a = data.single_relu(5, n_train=100, n_test=10, seed=4, dtype=torch.float64)
    b = data.single_relu(5, n_train=300, n_test=10, seed=4, noise=0.5, dtype=torch.float64)
    x, y = b.x_train.numpy(), b.y_train.numpy()
    on = a.y_train.numpy() > 0
    w, *_ = np.linalg.lstsq(a.x_train.numpy()[on], a.y_train.numpy()[on], rcond=None)
    resid = y - np.maximum(x @ w, 0)
    assert abs(resid.std() - 0.5) < 4 * 0.5 / math.sqrt(2 * 300)
    assert data.single_relu(5, n_train=10, n_test=10).y_train.dtype == torch.float32


def test_bad_input():
    with pytest.raises(ValueError, match="k"):
        data.k_pattern(5, 6, n_train=10, n_test=10)
    with pytest.raises(ValueError, match="location"):
        data.k_pattern(8, 3, n_train=10, n_test=10, location=6)
    with pytest.raises(ValueError, match="n_train"):
        data.k_pattern(8, 3, n_train=0, n_test=10)
    with pytest.raises(ValueError, match="noise"):
        data.single_relu(3, n_train=10, n_test=10, noise=-1)
    with pytest.raises(ValueError, match="d"):
        data.single_relu(0, n_train=10, n_test=10)
