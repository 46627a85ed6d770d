"""Oracle tests for tdlcourse.randmat: Marchenko-Pastur by quadrature and Monte Carlo, Jacobian
singular values against products of weight matrices and dense autograd, Fuss-Catalan moments."""

import math

import numpy as np
import pytest
import torch
from scipy import integrate

from tdlcourse import randmat as rm


def test_reference_marchenko_pastur_edges():
    lo, hi = rm.marchenko_pastur_edges(0.25)
    assert lo == pytest.approx(0.25, abs=1e-15) and hi == pytest.approx(2.25, abs=1e-15)
    e = rm.marchenko_pastur_edges(0.25, sigma2=2.0)
    assert (e.lower, e.upper) == pytest.approx((0.5, 4.5))


@pytest.mark.parametrize("gamma", [0.1, 0.25, 0.5, 1.0, 2.0])
def test_marchenko_pastur_density_mass_and_moments(gamma):
    s2 = 1.3
    lo, hi = rm.marchenko_pastur_edges(gamma, s2)
    kw = dict(epsabs=1e-12, limit=200)

    def mom(k):
        return integrate.quad(lambda x: x**k * rm.marchenko_pastur_density(x, gamma, s2), lo, hi, **kw)[0]

    mass = mom(0)
    assert mass == pytest.approx(min(1.0, 1.0 / gamma), abs=1e-8)
    # moments of the full law (the atom at 0 adds nothing): E[x] = s2, E[x^2] = s2^2 (1 + gamma)
    assert mom(1) == pytest.approx(s2, rel=1e-8)
    assert mom(2) == pytest.approx(s2**2 * (1 + gamma), rel=1e-8)
    assert rm.marchenko_pastur_density(hi + 0.1, gamma, s2) == 0.0
    assert rm.marchenko_pastur_density(np.array([lo - 1e-3, 0.5 * (lo + hi)]), gamma, s2)[0] == 0.0


def test_marchenko_pastur_matches_eigenvalue_histogram():
    p, n = 400, 1600  # gamma = 0.25
    g = torch.Generator().manual_seed(0)
    W = torch.randn(p, n, generator=g, dtype=torch.float64)
    ev = np.sort(torch.linalg.eigvalsh(W @ W.T / n).numpy())
    lo, hi = rm.marchenko_pastur_edges(0.25)
    assert lo - 0.05 < ev[0] and ev[-1] < hi + 0.1
    # Kolmogorov-Smirnov distance to the law's CDF (finite-p fluctuations are O(1/p))
    cdf = np.array([integrate.quad(rm.marchenko_pastur_density, lo, x, args=(0.25,))[0] for x in ev])
    emp = np.arange(1, p + 1) / p
    assert np.max(np.abs(cdf - emp)) < 0.02
    # and a histogram against the integrated density per bin
    edges = np.linspace(lo, hi, 11)
    counts = np.histogram(ev, edges)[0] / p
    want = np.array([integrate.quad(rm.marchenko_pastur_density, a, b, args=(0.25,))[0] for a, b in zip(edges[:-1], edges[1:])])
    np.testing.assert_allclose(counts, want, atol=0.02)


def test_jacobian_singular_values_of_deep_linear_net():
    torch.manual_seed(0)
    layers = [torch.nn.Linear(6, 8, bias=False), torch.nn.Linear(8, 8, bias=False), torch.nn.Linear(8, 5, bias=False)]
    net = torch.nn.Sequential(*layers).double()
    before = [p.clone() for p in net.parameters()]
    x = torch.randn(4, 6, dtype=torch.float64)
    s = rm.jacobian_singular_values(net, x)
    P = layers[2].weight @ layers[1].weight @ layers[0].weight
    want = torch.linalg.svdvals(P).detach()
    assert s.shape == (4, 5)
    torch.testing.assert_close(s, want.expand(4, 5), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(rm.jacobian_singular_values(net, x[0]), want)
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(p.grad is None for p in net.parameters()) and net.training


def test_jacobian_singular_values_nonlinear_against_autograd():
    torch.manual_seed(1)
    net = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.Tanh(), torch.nn.Linear(7, 3)).double()
    x = torch.randn(3, 5, dtype=torch.float64)
    s = rm.jacobian_singular_values(net, x)
    for i in range(3):
        J = torch.autograd.functional.jacobian(lambda v: net(v[None])[0], x[i])
        torch.testing.assert_close(s[i], torch.linalg.svdvals(J), rtol=1e-12, atol=1e-12)


def test_orthogonal_linear_net_is_isometric():
    # dynamical isometry (Pennington et al. 2017): orthogonal linear layers have all singular values 1
    net = torch.nn.Sequential(*[torch.nn.Linear(10, 10, bias=False) for _ in range(6)]).double()
    g = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for layer in net:
            layer.weight.copy_(torch.linalg.qr(torch.randn(10, 10, generator=g, dtype=torch.float64))[0])
    s = rm.jacobian_singular_values(net, torch.randn(2, 10, dtype=torch.float64))
    torch.testing.assert_close(s, torch.ones(2, 10, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_fuss_catalan():
    assert [rm.fuss_catalan(1, k) for k in range(5)] == [1, 1, 2, 5, 14]  # Catalan numbers
    assert [rm.fuss_catalan(L, 2) for L in (1, 2, 5)] == [2, 3, 6]  # L + 1
    assert rm.fuss_catalan(2, 3) == 12  # binom(9, 3) / 7


@pytest.mark.parametrize("depth", [1, 3, 5])
def test_product_moments_monte_carlo(depth):
    n = 100
    r = rm.product_moments(n, depth, kmax=2, n_samples=24, seed=depth)
    assert r.limit.tolist() == [1.0, depth + 1.0]
    # m_1 = 1 exactly in expectation at every n
    assert abs(r.moments[0] - 1.0) < 5 * r.stderr[0]
    # m_2 -> L + 1 with an O(L^2 / n) finite-n correction (2 + 1/n for L = 1)
    assert abs(r.moments[1] - (depth + 1)) < 5 * r.stderr[1] + depth**2 / n
    if depth == 1:
        assert abs(r.moments[1] - (2 + 1 / n)) < 5 * r.stderr[1]


def test_bad_input():
    with pytest.raises(ValueError, match="gamma"):
        rm.marchenko_pastur_edges(-0.5)
    with pytest.raises(ValueError, match="sigma2"):
        rm.marchenko_pastur_density(1.0, 0.5, sigma2=0.0)
    with pytest.raises(ValueError, match="depth"):
        rm.fuss_catalan(0, 2)
    with pytest.raises(ValueError, match="n_samples"):
        rm.product_moments(10, 2, n_samples=1)
    with pytest.raises(ValueError, match="x must"):
        rm.jacobian_singular_values(torch.nn.Linear(2, 2), np.zeros(2))
    assert math.isfinite(rm.marchenko_pastur_density(1.0, 0.25))


# ---------------------------------------------------------------- chapter 7: log-norms, Jacobian spectra


def test_reference_relu_log_norm_moments():
    r = rm.relu_log_norm_moments([50] * 21)  # syllabus reference: n = 50, L = 20
    assert r.mean == pytest.approx(-1.034776, abs=5e-7) and r.var == pytest.approx(2.163363, abs=5e-7)
    assert r.rule_of_thumb == pytest.approx(2.0) and r.layer_vars.shape == (20,)
    assert r.mean == pytest.approx(r.layer_means.sum()) and r.widths == (50,) * 21
    assert r.value == (r.mean, r.var)  # what tdlcheck compares with a student's (mean, var)


def test_relu_log_norm_variance_approaches_five_over_width():
    # Var[log((2/n) chi2_K)] = 5/n + O(1/n^2) (Hanin 2018): relative gap shrinks like 1/n
    gaps = [abs(rm.relu_log_norm_moments([n] * 4).var / (3 * 5 / n) - 1) for n in (100, 1000, 10000)]
    assert gaps[1] < gaps[0] / 5 and gaps[2] < 2e-3


def _numpy_relu_nets(widths, S, seed):
    """Independent oracle: S He-initialized bias-free ReLU nets, numpy's generator, one input each."""
    g = np.random.default_rng(seed)
    x = g.standard_normal((S, widths[0]))
    r0 = np.log((x**2).sum(1))
    for a, b in zip(widths[:-1], widths[1:]):
        W = g.standard_normal((S, b, a)) * np.sqrt(2.0 / a)
        x = np.maximum(np.matmul(W, x[:, :, None])[:, :, 0], 0.0)
    alive = (x**2).sum(1) > 0
    return np.log((x[alive] ** 2).sum(1)) - r0[alive], alive.mean()


@pytest.mark.parametrize("widths", [(5, 3, 4, 2, 6), (12, 20, 8, 30), (40,) * 7])
def test_relu_log_norm_moments_against_monte_carlo(widths):
    ex = rm.relu_log_norm_moments(widths)
    v, alive = _numpy_relu_nets(widths, 10000, seed=len(widths))
    # conditioning on no dead layer: P(alive) = prod(1 - 2^-n_l), within 4 s.e.
    p = np.prod([1 - 2.0 ** -n for n in widths[1:]])
    assert abs(alive - p) < 4 * math.sqrt(p * (1 - p) / 10000) + 1e-12
    S = v.size
    assert abs(v.mean() - ex.mean) < 4 * v.std() / math.sqrt(S)
    se_var = math.sqrt((np.mean((v - v.mean()) ** 4) - v.var() ** 2) / S)
    assert abs(v.var(ddof=1) - ex.var) < 4 * se_var


def test_log_norm_mc_matches_exact_moments_at_every_depth():
    widths = (6, 9, 4, 7, 12)
    r = rm.log_norm_mc(widths, 6000, seed=1)
    assert r.depths.tolist() == [1, 2, 3, 4] and r.alpha is None
    for L in r.depths:
        ex = rm.relu_log_norm_moments(widths[: L + 1])
        assert abs(r.mean[L - 1] - ex.mean) < 4 * r.stderr_mean[L - 1]
        assert abs(r.var[L - 1] - ex.var) < 4 * r.stderr_var[L - 1]
    assert np.all(r.n_samples <= 6000) and r.n_samples[-1] < 6000  # width-4 layer kills 1/16 of nets


def test_log_norm_mc_residual_matches_resmlp_networks():
    from tdlcourse import models

    n, L, S = 8, 4, 1500
    r = rm.log_norm_mc([n] * (L + 1), S, alpha=0.5, seed=0)
    vals = []
    with torch.no_grad():
        for s in range(S // 3):  # independent oracle: models.resmlp's blocks (bias-free, He init)
            net = models.resmlp(n, n, L, 1, bias=False, sigma_w2=2.0, alpha="1/sqrt(depth)", seed=s,
                                dtype=torch.float64)
            x0 = torch.randn(n, generator=torch.Generator().manual_seed(10**6 + s), dtype=torch.float64)
            h = x0
            for block in net[1:-1]:
                h = block(h)
            vals.append(math.log(h.square().sum() / x0.square().sum()))
    v = np.array(vals)
    se = math.hypot(v.std() / math.sqrt(v.size), r.stderr_mean[-1])
    assert abs(v.mean() - r.mean[-1]) < 4 * se
    se_v = math.hypot(math.sqrt((np.mean((v - v.mean()) ** 4) - v.var() ** 2) / v.size), r.stderr_var[-1])
    assert abs(v.var(ddof=1) - r.var[-1]) < 4 * se_v
    zero = rm.log_norm_mc([n] * 3, 8, alpha=0.0)
    assert np.allclose(zero.mean, 0.0, atol=1e-14) and np.allclose(zero.var, 0.0, atol=1e-14)


def test_spread_closed_form():
    assert rm.spread([2.0, 2.0, 2.0]) == 0.0
    assert rm.spread([0.0, 2.0]) == pytest.approx(1.0)  # m1 = 1, var = 1
    assert rm.spread(np.array([[0.0, 0.0, 3.0]])) == pytest.approx(2.0)  # m1 = 1, m2 = 3


def test_gaussian_product_m2_closed_forms_and_monte_carlo():
    assert rm.gaussian_product_m2(1, 4) == pytest.approx(3.0**4)  # n = 1: E[z^4]^L
    assert rm.gaussian_product_m2(100, 1) == pytest.approx(2.01)  # Marchenko-Pastur at finite n
    assert rm.gaussian_product_m2(10**9, 7) == pytest.approx(8.0, rel=1e-6)  # Fuss-Catalan L + 1
    r = rm.product_moments(12, 4, n_samples=3000, seed=3)
    assert abs(r.moments[1] - rm.gaussian_product_m2(12, 4)) < 4 * r.stderr[1]


def _dense_jacobian(Ws, bs, x, act):
    net = []
    for W, b in zip(Ws, bs):
        lin = torch.nn.Linear(W.shape[1], W.shape[0]).double()
        with torch.no_grad():
            lin.weight.copy_(W), lin.bias.copy_(b)
        net += [lin, {"tanh": torch.nn.Tanh(), "relu": torch.nn.ReLU(), "linear": torch.nn.Identity()}[act]]
    return rm.jacobian_singular_values(torch.nn.Sequential(*net), x) ** 2


@pytest.mark.parametrize("act", ["tanh", "relu", "linear"])
@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
def test_jacobian_spectra_equals_autograd_on_the_same_weights(act, weights, monkeypatch):
    # record the weights and biases jacobian_spectra draws, rebuild the net, differentiate it densely
    drawn = []
    real_weight, real_randn = rm._weight, torch.randn

    def weight(*a):
        drawn.append(["W", real_weight(*a)])
        return drawn[-1][1]

    monkeypatch.setattr(rm, "_weight", weight)
    r = rm.jacobian_spectra(6, [1, 3], weights=weights, activation=act, sigma_w2=1.5, sigma_b2=0.3, n_samples=2)
    monkeypatch.undo()
    # replay the same generator to get the inputs and biases
    g = torch.Generator().manual_seed(0)
    x = real_randn(2, 6, 1, generator=g, dtype=torch.float64)
    x = x * torch.sqrt((r.q0 - 0.3) / 1.5 * 6 / (x**2).sum(1, keepdim=True))
    Ws, bs = [], []
    for _, W in drawn:
        real_weight(weights, 6, 1.5, g, 2)  # advance the generator past the weight draw
        Ws.append(W)
        bs.append(real_randn(2, 6, 1, generator=g, dtype=torch.float64) * math.sqrt(0.3))
    for s in range(2):
        for i, L in enumerate([1, 3]):
            want = _dense_jacobian([W[s] for W in Ws[:L]], [b[s, :, 0] for b in bs[:L]], x[s, :, 0], act)
            np.testing.assert_allclose(np.sort(r.sq_singular[i][s])[::-1], want.numpy(), rtol=1e-10, atol=1e-12)


def test_jacobian_spectra_orthogonal_linear_is_an_isometry():
    r = rm.jacobian_spectra(32, [1, 10, 40], weights="orthogonal", activation="linear", n_samples=2)
    for lam in r.sq_singular:
        np.testing.assert_allclose(lam, 1.0, atol=1e-10)
    assert np.all(r.spread < 1e-20) and np.all(r.spread_limit == 0.0)


def test_jacobian_spectra_gaussian_linear_moments_against_exact_finite_width():
    r = rm.jacobian_spectra(64, [1, 3, 6], weights="gaussian", activation="linear", n_samples=60, seed=2)
    for i, L in enumerate(r.depths):
        assert abs(r.m1[i] - 1.0) < 4 * r.m1_stderr[i]
        assert abs(r.m2[i] - rm.gaussian_product_m2(64, int(L))) < 4 * r.m2_stderr[i]


@pytest.mark.parametrize("weights", ["gaussian", "orthogonal"])
@pytest.mark.parametrize("act, sw, sb", [("relu", 2.0, 0.0), ("tanh", 1.2, 0.01), ("linear", 1.0, 0.0)])
def test_jacobian_spectra_spread_near_free_probability_limit(weights, act, sw, sb):
    # wide nets at shallow depth: finite-width corrections are O(L^2/n); allow 10% (+0.01 absolute)
    r = rm.jacobian_spectra(256, [2], weights=weights, activation=act, sigma_w2=sw, sigma_b2=sb, n_samples=2)
    assert abs(r.spread[0] - r.spread_limit[0]) < 0.1 * r.spread_limit[0] + 0.01


def test_jacobian_spread_limit_closed_forms_and_quadrature():
    assert rm.jacobian_spread_limit("linear", 1.0, 7) == 7.0
    assert rm.jacobian_spread_limit("linear", 1.0, 7, weights="orthogonal") == 0.0
    assert rm.jacobian_spread_limit("relu", 3.0, 5) == 10.0
    assert rm.jacobian_spread_limit("relu", 3.0, 5, weights="orthogonal") == 5.0
    z, w = np.polynomial.hermite_e.hermegauss(200)  # independent: Gauss-Hermite, fine at small q
    w = w / w.sum()
    q = 0.05
    mu1, mu2 = (w @ np.cosh(np.sqrt(q) * z) ** -4, w @ np.cosh(np.sqrt(q) * z) ** -8)
    assert rm.jacobian_spread_limit("tanh", q, 3, weights="orthogonal") == pytest.approx(3 * (mu2 / mu1**2 - 1), rel=1e-9)
    assert rm.jacobian_spread_limit("tanh", q, 3) == pytest.approx(3 * mu2 / mu1**2, rel=1e-9)


def test_chapter7_bad_input():
    with pytest.raises(ValueError, match=r"widths\[1\]=0"):
        rm.relu_log_norm_moments([5, 0, 3])
    with pytest.raises(ValueError, match="widths"):
        rm.relu_log_norm_moments([5])
    with pytest.raises(ValueError, match="n_samples"):
        rm.log_norm_mc([4, 4], 2)
    with pytest.raises(ValueError, match="must all be equal"):
        rm.log_norm_mc([4, 5], 10, alpha=0.5)
    with pytest.raises(ValueError, match="sigma_w2"):
        rm.log_norm_mc([4, 4], 10, sigma_w2=-1.0)
    with pytest.raises(ValueError, match="sq_singular_values"):
        rm.spread([1.0, -1.0])
    with pytest.raises(ValueError, match="activation='gelu'"):
        rm.jacobian_spectra(4, [1], activation="gelu")
    with pytest.raises(ValueError, match="weights='haar'"):
        rm.jacobian_spread_limit("tanh", 0.1, 2, weights="haar")
    with pytest.raises(ValueError, match="depths"):
        rm.jacobian_spectra(4, [0])
    with pytest.raises(ValueError, match="depth=0"):
        rm.jacobian_spread_limit("relu", 1.0, 0)
    with pytest.raises(ValueError, match="n=0"):
        rm.gaussian_product_m2(0, 3)
