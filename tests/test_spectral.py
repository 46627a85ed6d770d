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
    np.testing.assert_array_equal(h.first_below(0.3), [20, 10])  # 0.25 < 0.3 at step 10, only 0 for k = 1
    early = sp.FrequencyErrorHistory(h.steps[:2], h.freqs, h.errors[:2], False)
    assert np.isnan(early.first_below(0.3)[0]) and early.first_below(0.3)[1] == 10
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


# ---- Fourier features, grid eigenvalues, predicted decay, rate fits, the trained net (issue 14)

def test_fourier_features_are_unit_vectors_with_the_stated_dot_product():
    theta = sp.circle_points(12).theta
    g = sp.fourier_features(theta, (1, 2, 5), dtype=torch.float64)
    assert g.shape == (12, 6)
    np.testing.assert_allclose(g.norm(dim=1).numpy(), 1.0, atol=1e-15)
    d = theta[:, None] - theta[None, :]
    want = (np.cos(d) + np.cos(2 * d) + np.cos(5 * d)) / 3
    np.testing.assert_allclose((g @ g.T).numpy(), want, atol=1e-14)
    plain = sp.fourier_features(theta, (1,), dtype=torch.float64) * math.sqrt(1)
    np.testing.assert_allclose(plain.numpy(), sp.circle_points(12, dtype=torch.float64).x.numpy(), atol=1e-15)


@pytest.mark.parametrize("kw", [dict(), dict(bias=True, sigma_b2=0.1), dict(bias=True, sigma_b2=0.3, features=(1, 2, 3)),
                                dict(depth=2, kernel="nngp", bias=True, sigma_b2=0.2, features=(1, 4))])
def test_grid_eigenvalues_equal_the_dense_gram_spectrum(kw):
    n = 48
    lam = sp.grid_eigenvalues(n, **kw)
    theta = sp.circle_points(n).theta
    x = (sp.circle_points(n, dtype=torch.float64).x if "features" not in kw
         else sp.fourier_features(theta, kw["features"], dtype=torch.float64)).numpy()
    fn = ntk.analytic_nngp if kw.get("kernel") == "nngp" else ntk.analytic_ntk
    K = fn(x, depth=kw.get("depth", 1), sigma_b2=kw.get("sigma_b2", 0.0)) / n
    dense = np.sort(np.linalg.eigvalsh(K))
    mult = np.concatenate([lam[:1], np.repeat(lam[1:n // 2], 2), lam[n // 2:]])  # k = n/2 once
    np.testing.assert_allclose(np.sort(mult), dense, atol=1e-13 * dense.max())
    # and each Fourier mode is an eigenvector with its eigenvalue
    for k in (0, 3, 7):
        v = np.cos(k * theta)
        np.testing.assert_allclose(K @ v, lam[k] * v, atol=1e-13 * dense.max())


def test_grid_eigenvalues_are_aliased_sums_of_mu_k():
    n, J = 16, 10
    mu = sp.ntk_eigenvalues_circle(J * n, bias=True, sigma_b2=0.1, n_quad=512).mu
    lam = sp.grid_eigenvalues(n, bias=True, sigma_b2=0.1)
    C = mu[J * n] * (J * n) ** 2  # mu_k ~ C / k^2 far out
    tail = 2 * C / n ** 2 / (J - 0.5)  # sum over j >= J of mu_{jn+k} + mu_{jn-k}
    for k in (0, 1, 4, 8):
        alias = mu[k] + sum(mu[j * n + k] + mu[j * n - k] for j in range(1, J))
        assert 0.5 * tail < lam[k] - alias < 1.5 * tail
    assert abs(sp.grid_eigenvalues(512, bias=True, sigma_b2=0.1)[8] - mu[8]) < 2e-3 * mu[8]


def test_feature_eigenvalues_equal_large_grid_and_flatten_the_spectrum():
    r = sp.ntk_eigenvalues_circle(12, bias=True, sigma_b2=0.1, features=range(1, 9), n_quad=512)
    assert r.converged
    lam = sp.grid_eigenvalues(1024, bias=True, sigma_b2=0.1, features=range(1, 9))
    np.testing.assert_allclose(lam[:13], r.mu, rtol=1e-3, atol=1e-9)
    raw = sp.ntk_eigenvalues_circle(12, bias=True, sigma_b2=0.1).mu
    assert r.mu[8] > 20 * raw[8]  # the high frequency's eigenvalue grows by more than an order of magnitude


def test_predicted_mode_error_matches_dense_gradient_descent_and_flow():
    from scipy.linalg import expm

    n, eta, T = 32, 2.0, 30
    theta = sp.circle_points(n).theta
    x = sp.circle_points(n, dtype=torch.float64).x.numpy()
    G = ntk.analytic_ntk(x, sigma_b2=0.1) / n
    lam = sp.grid_eigenvalues(n, bias=True, sigma_b2=0.1)
    freqs = [1, 2, 5, 8]
    y = sp.frequency_target(theta, freqs, [1.0] * 4)
    e, snaps = -y, []
    for _ in range(T + 1):
        snaps.append(e + y)
        e = e - eta * G @ e
    h = sp.frequency_error_history(snaps, y, freqs=freqs, relative=True)
    np.testing.assert_allclose(h.errors, sp.predicted_mode_error(lam[freqs], eta, np.arange(T + 1)), rtol=1e-10, atol=1e-13)
    flow = [expm(-eta * G * t) @ y for t in (0.0, 3.5, 10.0)]  # gradient flow, e(t) = exp(-eta G t) e(0)
    hf = sp.frequency_error_history([y - f for f in flow], y, freqs=freqs, relative=True)
    np.testing.assert_allclose(hf.errors, sp.predicted_mode_error(lam[freqs], eta, [0.0, 3.5, 10.0], discrete=False),
                               rtol=1e-9, atol=1e-13)
    # efold_time: the error is 1/e after that time; mu = 0 is never learned; eta mu > 2 diverges
    tau = sp.efold_time(lam[freqs], eta, discrete=False)
    np.testing.assert_allclose(np.diag(sp.predicted_mode_error(lam[freqs], eta, tau, discrete=False)), np.exp(-1), rtol=1e-12)
    np.testing.assert_allclose(sp.efold_time([0.1], 1.0), [-1 / math.log(0.9)], rtol=1e-14)
    assert sp.efold_time([0.0], 1.0)[0] == math.inf and sp.mode_decay_rate([3.0], 1.0)[0] < 0
    np.testing.assert_array_equal(sp.predicted_mode_error([1.0, 0.0], 1.0, [0, 1, 2]), [[1, 1], [0, 1], [0, 1]])
    assert sp.mode_decay_rate([0.01], 0.5, discrete=False)[0] == pytest.approx(0.005, rel=1e-15)


def test_fit_decay_rates_recovers_exact_exponentials_and_stops_at_the_floor():
    steps = np.arange(200)
    rates = np.array([0.5, 0.05, 0.005])
    err = np.exp(-np.outer(steps, rates)) * np.array([1.0, 2.0, 0.5])
    err[:, 0] = np.maximum(err[:, 0], 1e-9)  # a floor, as rounding gives
    h = sp.FrequencyErrorHistory(steps, np.array([1, 2, 3]), err, False)
    f = sp.fit_decay_rates(h, floor=1e-3)
    np.testing.assert_allclose(f.rate, rates, rtol=1e-10)
    assert np.all(f.stderr < 1e-10) and f.ok.all()
    assert f.n_points[0] == 14 and f.window[0, 1] == 13  # exp(-0.5 t) >= 1e-3 up to t = 13
    assert f.n_points[1] == 139  # relative to the first value: 2 exp(-0.05 t) > 2e-3 up to t = 138
    np.testing.assert_allclose(f.intercept, np.log([1.0, 2.0, 0.5]), atol=1e-9)
    assert sp.fit_decay_rates(h, max_step=50).n_points[2] == 51


def test_fit_decay_rates_standard_error_is_calibrated_monte_carlo():
    rng = np.random.default_rng(0)
    steps, r, s, reps = np.arange(20), 0.03, 0.02, 1000
    fits = []
    for _ in range(reps):
        e = np.exp(-r * steps + s * rng.normal(size=steps.size))
        fits.append(sp.fit_decay_rates(sp.FrequencyErrorHistory(steps, np.array([4]), e[:, None], True), floor=1e-6))
    est = np.array([f.rate[0] for f in fits])
    se = np.array([f.stderr[0] for f in fits])
    sd_theory = s / math.sqrt(((steps - steps.mean()) ** 2).sum())
    assert abs(est.mean() - r) < 4 * est.std() / math.sqrt(reps)  # unbiased
    assert abs(est.std(ddof=1) / sd_theory - 1) < 4 / math.sqrt(2 * (reps - 1))  # the OLS formula is the true sd
    # se^2 (n - 2) / sd^2 is chi^2 with n - 2 degrees of freedom: mean 1, variance 2 / (n - 2) per fit
    assert abs(np.mean(se ** 2) / sd_theory ** 2 - 1) < 4 * math.sqrt(2 / (steps.size - 2) / reps)


def test_fit_decay_rates_flags_too_few_points():
    h = sp.FrequencyErrorHistory(np.arange(5), np.array([1, 2]), np.array([[1, 1], [1e-4, 0.5], [1e-8, 0.25],
                                                                           [1e-9, 0.12], [1e-9, 0.06]]), True)
    with pytest.warns(RuntimeWarning, match=r"frequencies \[1\]"):
        f = sp.fit_decay_rates(h)
    assert not f.ok[0] and math.isnan(f.rate[0]) and f.ok[1]
    assert f.rate[1] == pytest.approx(math.log(2), rel=0.05)


def test_train_circle_first_step_is_the_empirical_ntk_step_and_gradients_match_autograd():
    # g_1 = eta (K_emp / n) y + O(eta^2): checks the hand-written gradient and kernel together
    n, m, eta = 16, 64, 1e-6
    theta = sp.circle_points(n).theta
    y = sp.frequency_target(theta, [1, 3], [1.0, 0.5])
    for sw, sb, feats in ((1.0, 0.3, None), (2.0, 0.0, None), (1.5, 0.2, (1, 2))):
        x = (sp.circle_points(n, dtype=torch.float64).x if feats is None
             else sp.fourier_features(theta, feats, dtype=torch.float64))
        net = ntk.NTKMLP(x.shape[1], m, 1, sigma_w2=sw, sigma_b2=sb, dtype=torch.float64,
                         generator=torch.Generator().manual_seed(3))
        K = ntk.empirical_ntk(net, x).numpy()
        run = sp.train_circle(y, [1, 3], width=m, eta=eta, steps=1, sigma_w2=sw, sigma_b2=sb, features=feats, seed=3)
        assert np.all(run.outputs[0] == 0) and run.displacement[0] == 0
        np.testing.assert_allclose(run.outputs[1] / eta, K @ y / n, rtol=1e-4, atol=1e-6 * np.abs(K @ y / n).max())
        np.testing.assert_allclose(sp._two_layer_ntk(x, net.weights[0], None if sb == 0 else net.biases[0], net.weights[1],
                                                     None if sb == 0 else net.biases[1], sw, sb).detach().numpy(), K,
                                   rtol=1e-12, atol=1e-12)
        # one large step equals autograd on NTKMLP with the centred squared loss
        big = sp.train_circle(y, [1, 3], width=m, eta=0.7, steps=1, sigma_w2=sw, sigma_b2=sb, features=feats, seed=3)
        f0 = net(x)[:, 0].detach()
        loss = 0.5 * ((net(x)[:, 0] - f0 - torch.as_tensor(y)) ** 2).mean()
        grads = torch.autograd.grad(loss, list(net.parameters()))
        with torch.no_grad():
            for p, g in zip(net.parameters(), grads):
                p -= 0.7 * g
        np.testing.assert_allclose(big.outputs[1], (net(x)[:, 0] - f0).detach().numpy(), rtol=1e-11, atol=1e-13)


def test_train_circle_bias_free_net_never_learns_odd_harmonics():
    # relu(w.x) on the circle is |w| relu(cos(theta - phi)), whose odd harmonics k >= 3 vanish: for any weights
    theta = sp.circle_points(32).theta
    y = sp.frequency_target(theta, [1, 2, 3, 5], [0.3] * 4)
    run = sp.train_circle(y, [1, 2, 3, 5], width=256, eta=2.0, steps=200, seed=0)
    np.testing.assert_allclose(run.history.errors[:, 2:], 1.0, atol=1e-12)
    assert run.history.errors[-1, 0] < 1e-3 and run.history.errors[-1, 1] < 1e-2
    with_bias = sp.train_circle(y, [1, 2, 3, 5], width=256, eta=2.0, steps=200, sigma_b2=0.5, seed=0)
    assert with_bias.history.errors[-1, 2] < 0.5


def test_train_circle_wide_small_amplitude_follows_the_kernel_prediction():
    n, eta, freqs = 16, 2.0, [1, 2, 4]
    theta = sp.circle_points(n).theta
    y = sp.frequency_target(theta, freqs, [0.05] * 3)
    run = sp.train_circle(y, freqs, width=8192, eta=eta, steps=120, sigma_b2=0.1, seed=1)
    pred = sp.mode_decay_rate(sp.grid_eigenvalues(n, bias=True, sigma_b2=0.1)[freqs], eta)
    fit = sp.fit_decay_rates(run.history, floor=0.05)
    assert fit.ok.all()
    np.testing.assert_allclose(fit.rate, pred, rtol=0.1)
    assert run.kernel_change < 0.01 and run.finite


def test_new_functions_bad_input():
    with pytest.raises(ValueError, match="features"):
        sp.fourier_features(np.zeros(3), (2, 4))
    with pytest.raises(ValueError, match=r"features\[0\]=0"):
        sp.fourier_features(np.zeros(3), (0, 1))
    with pytest.raises(ValueError, match="n=1"):
        sp.grid_eigenvalues(1)
    with pytest.raises(ValueError, match="eta"):
        sp.mode_decay_rate([0.1], 0.0)
    with pytest.raises(ValueError, match="mu"):
        sp.predicted_mode_error([-0.1], 1.0, [0, 1])
    with pytest.raises(ValueError, match="steps"):
        sp.predicted_mode_error([0.1], 1.0, [-1])
    with pytest.raises(ValueError, match="floor"):
        sp.fit_decay_rates(sp.FrequencyErrorHistory(np.arange(3), np.array([1]), np.ones((3, 1)), True), floor=0)
    with pytest.raises(ValueError, match="history"):
        sp.fit_decay_rates(np.ones((3, 1)))
    with pytest.raises(ValueError, match="width"):
        sp.train_circle(np.zeros(8), [1], width=0, eta=1.0, steps=1)
    with pytest.raises(ValueError, match="freqs"):
        sp.train_circle(np.ones(8), [1.5], width=4, eta=1.0, steps=1)
    with pytest.raises(ValueError, match="target"):
        sp.train_circle(np.full(8, np.nan), [1], width=4, eta=1.0, steps=1)
    with pytest.raises(ValueError, match="bias"):
        sp.grid_eigenvalues(8, bias="yes")


def test_circle_spectrum_value_is_its_eigenvalues():
    import tdlcheck

    r = sp.ntk_eigenvalues_circle(6, depth=1, bias=True)
    assert r.value is r.mu
    assert np.array_equal(tdlcheck._plain(r), r.mu)
