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
