"""Oracle tests for tdlcourse.spectral: known sums of sinusoids, closed-form eigenvalues of the
two-layer ReLU NTK, dense Gram matrices on the circle and exact kernel gradient descent."""

import math

import numpy as np
import pytest
import torch

from tdlcourse import ntk, spectral as sp


def test_circle_points():
    theta, x = sp.circle_points(8)
    assert x.shape == (8, 2) and x.dtype == torch.get_default_dtype()
    np.testing.assert_allclose(theta, 2 * np.pi * np.arange(8) / 8)
    torch.testing.assert_close(x.norm(dim=1).double(), torch.ones(8, dtype=torch.float64))
    assert sp.circle_points(4, dtype=torch.float64).x.dtype == torch.float64


def test_frequency_target_numpy_and_torch():
    theta = sp.circle_points(16).theta
    y = sp.frequency_target(theta, [1, 3], [0.5, 2.0], [0.0, 0.3])
    np.testing.assert_allclose(y, 0.5 * np.sin(theta) + 2.0 * np.sin(3 * theta + 0.3), atol=1e-15)
    yt = sp.frequency_target(torch.as_tensor(theta), [1, 3], [0.5, 2.0], [0.0, 0.3])
    assert isinstance(yt, torch.Tensor)
    np.testing.assert_allclose(yt.numpy(), y, atol=1e-15)


def test_per_frequency_error_of_a_known_sum_of_sinusoids():
    n = 64
    theta = sp.circle_points(n).theta
    y = sp.frequency_target(theta, [2, 5], [1.0, 1.0])
    err = 0.7 + 0.3 * np.sin(theta + 1.0) - 1.25 * np.cos(5 * theta) + 0.2 * np.cos(32 * theta)
    amp = sp.per_frequency_error(y + err, y)
    want = np.zeros(n // 2 + 1)
    want[[0, 1, 5, 32]] = [0.7, 0.3, 1.25, 0.2]  # k = 32 is the Nyquist mode
    assert amp.shape == (33,)
    np.testing.assert_allclose(amp, want, atol=1e-13)
    # torch inputs, network outputs of shape [n, 1], leading batch axes
    ft = torch.as_tensor(y + err)[:, None]
    np.testing.assert_allclose(sp.per_frequency_error(ft, torch.as_tensor(y)), want, atol=1e-13)
    both = sp.per_frequency_error(np.stack([y + err, y]), y)
    np.testing.assert_allclose(both, np.stack([want, np.zeros(33)]), atol=1e-13)


def test_frequency_error_history_and_relative():
    theta = sp.circle_points(32).theta
    y = sp.frequency_target(theta, [1, 4], [2.0, 0.5])
    snaps = [c * y for c in (0.0, 0.5, 1.0)]
    h = sp.frequency_error_history(snaps, y, freqs=[1, 4], steps=[0, 10, 20])
    assert h.errors.shape == (3, 2) and h.steps.tolist() == [0, 10, 20]
    np.testing.assert_allclose(h.errors, [[2.0, 0.5], [1.0, 0.25], [0.0, 0.0]], atol=1e-13)
    r = sp.frequency_error_history(snaps, y, freqs=[1, 4], relative=True)
    np.testing.assert_allclose(r.errors, [[1, 1], [0.5, 0.5], [0, 0]], atol=1e-13)
    assert sp.frequency_error_history(snaps, y).errors.shape == (3, 17)
    with pytest.raises(ValueError, match="relative"):
        sp.frequency_error_history(snaps, y, freqs=[2], relative=True)
    with pytest.raises(ValueError, match="freqs"):
        sp.frequency_error_history(snaps, y, freqs=[40])


def test_two_layer_relu_eigenvalues_closed_forms_and_zero_odd_modes():
    r = sp.ntk_eigenvalues_circle(30)
    assert r.converged and r.abs_error.max() < 1e-12
    # mu_0 = (1/pi) int_0^pi K = 3/pi^2 and mu_1 = 1/4 by direct integration of the two-layer ReLU NTK
    assert r.mu[0] == pytest.approx(3 / math.pi**2, rel=1e-12)
    assert r.mu[1] == pytest.approx(0.25, rel=1e-12)
    odd = r.mu[3::2]
    even = r.mu[0::2]
    assert np.all(np.abs(odd) < 1e-13)
    assert np.all(even > 1e-6) and r.mu[1] > 0
    assert np.all(np.diff(even) < 0)  # spectral bias: decreasing in k


def test_bias_makes_odd_eigenvalues_positive():
    r = sp.ntk_eigenvalues_circle(30, bias=True, sigma_b2=0.5)
    assert r.converged and np.all(r.mu > 1e-6)
    nngp = sp.ntk_eigenvalues_circle(10, bias=True, kernel="nngp")
    assert np.all(nngp.mu[:8] > 0)


@pytest.mark.parametrize("kw", [dict(), dict(bias=True, sigma_b2=0.5),
                                dict(depth=2, activation="tanh", bias=True, sigma_b2=0.3, sigma_w2=1.5)])
def test_eigenvalues_equal_dense_gram_eigenvalues_over_n(kw):
    r = sp.ntk_eigenvalues_circle(40, **kw)
    mu = np.sort(np.concatenate([r.mu[:1], np.repeat(r.mu[1:], 2)]))[::-1][:11]  # k >= 1 twice
    akw = dict(depth=kw.get("depth", 1), activation=kw.get("activation", "relu"),
               sigma_w2=kw.get("sigma_w2", 1.0), sigma_b2=kw.get("sigma_b2", 0.0))
    errs = []
    for n in (128, 256):
        x = sp.circle_points(n, dtype=torch.float64).x.numpy()
        ev = np.sort(np.linalg.eigvalsh(ntk.analytic_ntk(x, **akw)))[::-1][:11] / n
        errs.append(np.abs(ev - mu).max())
    assert errs[1] < 3e-5 * r.mu[0]
    assert errs[1] < errs[0] / 3 or errs[1] < 1e-8  # O(1/n^2) discretization error


def test_kernel_gradient_descent_learns_mode_k_at_rate_mu_k():
    # NTK-regime dynamics on the grid: e <- e - eta (G/n) e, so the error amplitude at k is a (1 - eta mu_k)^t
    n, eta, steps = 128, 1.0, 40
    x = sp.circle_points(n, dtype=torch.float64).x.numpy()
    theta = sp.circle_points(n).theta
    G = ntk.analytic_ntk(x, depth=1, sigma_b2=0.5) / n
    y = sp.frequency_target(theta, [1, 2, 3, 5], [1.0, 1.0, 1.0, 1.0])
    f, snaps = np.zeros(n), []
    for _ in range(steps + 1):
        snaps.append(f.copy())
        f = f - eta * G @ (f - y)
    h = sp.frequency_error_history(snaps, y, freqs=[1, 2, 3, 5], relative=True)
    lam = np.array([np.cos(k * theta) @ G @ np.cos(k * theta) / (np.cos(k * theta) @ np.cos(k * theta)) for k in (1, 2, 3, 5)])
    np.testing.assert_allclose(h.errors, (1 - eta * lam)[None, :] ** np.arange(steps + 1)[:, None], rtol=1e-9, atol=1e-10)
    mu = sp.ntk_eigenvalues_circle(5, bias=True, sigma_b2=0.5).mu[[1, 2, 3, 5]]
    np.testing.assert_allclose(lam, mu, rtol=0, atol=2e-5)  # O(1/n^2) aliasing at n = 128
    assert np.all(np.diff(h.errors[-1]) > 0)  # low frequencies learned first


def test_bad_input():
    with pytest.raises(ValueError, match="kmax"):
        sp.ntk_eigenvalues_circle(-1)
    with pytest.raises(ValueError, match="sigma_b2"):
        sp.ntk_eigenvalues_circle(4, bias=False, sigma_b2=0.5)
    with pytest.raises(ValueError, match="kernel='cntk'"):
        sp.ntk_eigenvalues_circle(4, kernel="cntk")
    with pytest.raises(ValueError, match="freqs"):
        sp.frequency_target(np.zeros(3), [1.5], [1.0])
    with pytest.raises(ValueError, match="amps"):
        sp.frequency_target(np.zeros(3), [1, 2], [1.0])
    with pytest.raises(ValueError, match="n="):
        sp.circle_points(0)
    with pytest.raises(ValueError, match=r"freqs\[1\]=-2 must be an integer >= 0"):
        sp.frequency_target(np.zeros(3), [1, -2], [1.0, 1.0])
    np.testing.assert_allclose(sp.frequency_target(np.ones(3), [1.0, 2.0], [1.0, 1.0]),
                               sp.frequency_target(np.ones(3), [1, 2], [1.0, 1.0]))  # 2.0 is frequency 2
