"""Oracle tests for tdlcourse.meanfield: the course's public reference values, closed forms vs quadrature,
fixed-point identities, finite differences and a Monte Carlo simulation of a wide tanh net."""

import math
import warnings

import numpy as np
import pytest
import torch
from scipy import integrate, special

from tdlcourse import meanfield as mf

ERF_CALLABLE = (special.erf, lambda x: 2.0 / math.sqrt(math.pi) * np.exp(-x * x))
RELU_CALLABLE = (lambda x: np.maximum(x, 0.0), lambda x: (x > 0).astype(float))


# ---------------------------------------------------------------- the course's public reference values


def test_reference_tanh_ordered_phase():
    assert mf.qstar("tanh", 1.5, 0.05) == pytest.approx(0.418037, abs=5e-7)
    assert mf.chi1("tanh", 1.5, 0.05) == pytest.approx(0.938636, abs=5e-7)
    assert mf.cstar("tanh", 1.5, 0.05) == 1.0


def test_reference_tanh_edge_of_chaos():
    sw = mf.critical_sigma_w2("tanh", 0.05)
    assert sw == pytest.approx(1.760955, abs=5e-7)
    assert mf.qstar("tanh", sw, 0.05) == pytest.approx(0.570048, abs=5e-7)
    assert mf.chi1("tanh", sw, 0.05) == pytest.approx(1.0, abs=1e-10)


def test_reference_relu_cmap_from_zero():
    assert mf.cmap("relu", 1.0, 0.0, 2.0, 0.0) == pytest.approx(0.318310, abs=5e-7)
    # the closed form at every c, and independent of q and s_w when s_b = 0
    c = np.linspace(-1, 1, 41)
    want = (np.sqrt(1 - c**2) + (np.pi - np.arccos(c)) * c) / np.pi
    for q, sw in [(1.0, 2.0), (0.3, 1.0), (7.0, 3.5)]:
        np.testing.assert_allclose(mf.cmap("relu", q, c, sw, 0.0), want, atol=1e-14)


# ---------------------------------------------------------------- quadrature vs closed forms


@pytest.mark.parametrize("c", [-1.0, -0.7, 0.0, 0.45, 0.999, 1.0])
def test_quadrature_matches_erf_closed_form(c):
    q1 = np.array([0.01, 0.5, 2.0, 5.0, 30.0])
    q2 = np.array([0.2, 0.5, 1.0, 8.0, 50.0])
    for d in (False, True):
        quad = mf.pair_expectation(ERF_CALLABLE, q1, q2, c, derivative=d)
        closed = mf.pair_expectation("erf", q1, q2, c, derivative=d)
        np.testing.assert_allclose(quad, closed, rtol=0, atol=1e-12)


def test_quadrature_linear_and_relu_closed_forms():
    q1, q2, c = np.array([0.5, 2.0]), np.array([1.5, 0.7]), np.array([[-0.3], [0.8]])
    lin = mf.pair_expectation((lambda x: x, np.ones_like), q1, q2, c)
    np.testing.assert_allclose(lin, c * np.sqrt(q1 * q2), atol=1e-12)
    # a relu without closed form converges only algebraically (kink): a loose check
    quad = mf.pair_expectation(RELU_CALLABLE, q1, q2, c)
    np.testing.assert_allclose(quad, mf.pair_expectation("relu", q1, q2, c), atol=3e-3)


@pytest.mark.parametrize("q", [0.05, 0.8, 4.0, 60.0, 400.0])
def test_tanh_qmap_against_adaptive_quadrature(q):
    sw, sb = 1.7, 0.1
    ref = integrate.quad(lambda z: np.tanh(math.sqrt(q) * z) ** 2 * np.exp(-z * z / 2) / math.sqrt(2 * math.pi),
                         -12, 12, epsabs=1e-14, epsrel=1e-12, limit=1000, points=[0.0])[0]
    assert mf.qmap("tanh", q, sw, sb) == pytest.approx(sw * ref + sb, abs=1e-12)


def test_tanh_pair_against_scipy_dblquad():
    q1, q2, c = 1.3, 0.6, 0.4
    cov = np.array([[q1, c * math.sqrt(q1 * q2)], [c * math.sqrt(q1 * q2), q2]])
    inv, det = np.linalg.inv(cov), np.linalg.det(cov)

    def dens(v, u):
        x = np.array([u, v])
        return np.tanh(u) * np.tanh(v) * math.exp(-0.5 * x @ inv @ x) / (2 * math.pi * math.sqrt(det))

    ref = integrate.dblquad(dens, -12, 12, -12, 12, epsabs=1e-12, epsrel=1e-12)[0]
    assert mf.pair_expectation("tanh", q1, q2, c) == pytest.approx(ref, abs=1e-10)


# ---------------------------------------------------------------- fixed points and slopes


@pytest.mark.parametrize("act,sw,sb", [("tanh", 1.5, 0.05), ("tanh", 3.0, 0.3), ("erf", 2.0, 0.1),
                                       ("relu", 1.4, 0.2), ("linear", 0.6, 0.1), (ERF_CALLABLE, 1.2, 0.0)])
def test_qstar_is_a_fixed_point_reached_by_iteration(act, sw, sb):
    q = mf.qstar(act, sw, sb)
    assert mf.qmap(act, q, sw, sb) == pytest.approx(q, rel=1e-12)
    it = 1.0
    for _ in range(400):
        it = mf.qmap(act, it, sw, sb)
    assert it == pytest.approx(q, rel=1e-9)


def test_qstar_closed_forms():
    assert mf.qstar("relu", 1.4, 0.2) == pytest.approx(0.2 / (1 - 0.7), rel=1e-12)
    assert mf.qstar("linear", 0.6, 0.1) == pytest.approx(0.1 / 0.4, rel=1e-12)
    assert mf.qstar("tanh", 0.8, 0.0) == 0.0  # ordered, no bias: signal dies


def test_chi1_is_the_slope_of_the_cmap_at_one():
    for act, sw, sb in [("tanh", 1.5, 0.05), ("tanh", 2.5, 0.2), ("erf", 1.3, 0.02)]:
        q = mf.qstar(act, sw, sb)
        eps = 1e-5
        fd = (1.0 - mf.cmap(act, q, 1.0 - eps, sw, sb)) / eps
        assert mf.chi1(act, sw, sb) == pytest.approx(fd, rel=1e-4)
    assert mf.chi1("relu", 1.2, 0.3) == pytest.approx(0.6, rel=1e-14)
    assert mf.chi1("linear", 0.7, 0.3) == pytest.approx(0.7, rel=1e-14)


def test_cstar_chaotic_phase():
    sw, sb = 2.5, 0.1
    q, c = mf.qstar("tanh", sw, sb), mf.cstar("tanh", sw, sb)
    assert 0 < c < 1
    assert mf.cmap("tanh", q, c, sw, sb) == pytest.approx(c, abs=1e-12)
    it = 0.5
    for _ in range(300):
        it = mf.cmap("tanh", q, it, sw, sb)
    assert it == pytest.approx(c, abs=1e-9)
    assert mf.cstar("tanh", 2.0, 0.0) == pytest.approx(0.0, abs=1e-12)  # odd phi, no bias


def test_critical_line_closed_forms():
    assert mf.critical_sigma_w2("relu", 0.1) == pytest.approx(2.0, rel=1e-10)
    assert mf.critical_sigma_w2("linear", 0.3) == pytest.approx(1.0, rel=1e-10)
    assert mf.critical_sigma_w2("tanh", 0.0) == pytest.approx(1.0, rel=1e-10)
    # the edge of chaos moves right as s_b grows
    sws = [mf.critical_sigma_w2("tanh", b) for b in (0.01, 0.05, 0.2)]
    assert sws[0] < sws[1] < sws[2]


def test_depth_scales_against_finite_differences():
    for sw, sb in [(1.5, 0.05), (2.5, 0.1)]:
        r = mf.depth_scales("tanh", sw, sb)
        assert r.converged
        eps = 1e-6
        slope = (mf.qmap("tanh", r.qstar + eps, sw, sb) - mf.qmap("tanh", r.qstar - eps, sw, sb)) / (2 * eps)
        assert r.q_slope == pytest.approx(slope, rel=1e-6)
        assert r.xi_q == pytest.approx(-1 / math.log(slope), rel=1e-5)
        # chi_c(c*) is the slope of the c-map at its fixed point
        c, h = r.cstar, 1e-6
        lo = c - h
        hi = min(c + h, 1.0)
        fd = (mf.cmap("tanh", r.qstar, hi, sw, sb) - mf.cmap("tanh", r.qstar, lo, sw, sb)) / (hi - lo)
        assert r.chi_c == pytest.approx(fd, rel=1e-4)
        assert r.xi_c == pytest.approx(-1 / math.log(r.chi_c), rel=1e-12)
    r = mf.depth_scales("relu", 1.5, 0.05)
    assert r.xi_q == pytest.approx(-1 / math.log(0.75), rel=1e-12)


def test_xi_c_diverges_at_the_edge_of_chaos():
    crit = mf.critical_sigma_w2("tanh", 0.05)
    xs = [mf.depth_scales("tanh", crit + d, 0.05).xi_c for d in (-0.5, -0.1, -0.01, 0.01, 0.1, 0.5)]
    assert xs[0] < xs[1] < xs[2] and xs[3] > xs[4] > xs[5]
    assert min(xs[2], xs[3]) > 100


# ---------------------------------------------------------------- vectorization, phase diagram


def test_maps_broadcast_over_grids():
    sw = np.linspace(0.5, 3.0, 4)[None, :]
    sb = np.array([0.0, 0.05, 0.2])[:, None]
    Q = mf.qmap("tanh", 0.7, sw, sb)
    C = mf.cmap("tanh", 0.7, 0.3, sw, sb)
    assert Q.shape == C.shape == (3, 4)
    for i in range(3):
        for j in range(4):
            assert Q[i, j] == pytest.approx(mf.qmap("tanh", 0.7, sw[0, j], sb[i, 0]), abs=1e-15)
            assert C[i, j] == pytest.approx(mf.cmap("tanh", 0.7, 0.3, sw[0, j], sb[i, 0]), abs=1e-15)
    assert isinstance(mf.qmap("tanh", 0.7, 1.0, 0.1), float)


def test_phase_diagram():
    sw, sb = np.linspace(0.8, 3.2, 7), np.array([0.0, 0.05, 0.2])
    pd = mf.phase_diagram("tanh", sw, sb)
    assert pd.qstar.shape == pd.chi1.shape == pd.xi_c.shape == pd.converged.shape == (3, 7)
    assert pd.converged.all()
    assert pd.critical_sigma_w2[1] == pytest.approx(mf.critical_sigma_w2("tanh", 0.05), abs=1e-12)
    assert pd.chi1[2, 4] == pytest.approx(mf.chi1("tanh", sw[4], sb[2]), abs=1e-12)
    assert pd.cstar[1, 6] == pytest.approx(mf.cstar("tanh", sw[6], sb[1]), abs=1e-12)
    # chi_1 < 1 left of the critical line and > 1 right of it
    left = sw[None, :] < pd.critical_sigma_w2[:, None]
    assert np.all((pd.chi1 < 1) == left)
    assert np.all(pd.cstar[left] == 1.0) and np.all(pd.cstar[~left] < 1.0)


# ---------------------------------------------------------------- bad input, non-convergence


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="sigma_w2"):
        mf.qstar("tanh", -1.0, 0.1)
    with pytest.raises(ValueError, match="sigma_b2"):
        mf.qmap("tanh", 1.0, 1.0, -0.1)
    with pytest.raises(ValueError, match=r"activation='sigmoid'.*'tanh'"):
        mf.chi1("sigmoid", 1.0, 0.1)
    with pytest.raises(ValueError, match="c="):
        mf.cmap("tanh", 1.0, 1.5, 1.0, 0.1)
    with pytest.raises(ValueError, match=r"q\[1\]=-2 must lie in \[0, inf\)"):  # the bad entry of an array
        mf.qmap("tanh", [1.0, -2.0], 1.0, 0.1)
    with pytest.raises(ValueError, match=r"c\[0, 1\]=nan"):
        mf.pair_expectation("erf", 1.0, 1.0, [[0.5, math.nan]])
    with pytest.raises(ValueError, match="sigma_w2=True must be a finite real number"):
        mf.qmap("tanh", 1.0, True, 0.1)
    with pytest.raises(ValueError, match="q0=0 must lie in"):
        mf.qstar("tanh", 1.5, 0.05, q0=0.0)


def test_divergence_warns_and_flags():
    with pytest.warns(RuntimeWarning, match="diverges"):
        assert mf.qstar("relu", 3.0, 0.1) == math.inf
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = mf.depth_scales("relu", 3.0, 0.1)
    assert not r.converged and r.chi1 == pytest.approx(1.5)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        pd = mf.phase_diagram("relu", [1.0, 3.0], [0.1])
    assert pd.converged.tolist() == [[True, False]]


# ---------------------------------------------------------------- Monte Carlo: a wide deep tanh net


@pytest.mark.parametrize("sw,sb,c0", [(1.5, 0.05, 0.6), (2.5, 0.1, 0.95)])
def test_monte_carlo_wide_tanh_net_follows_the_maps(sw, sb, c0):
    N, L, S, q0 = 1000, 10, 8, 1.0
    g = torch.Generator().manual_seed(1234)
    # two inputs with |x|^2/N = q0 and correlation c0
    u, v = torch.randn(2, N, generator=g, dtype=torch.float64)
    v = v - (u @ v) / (u @ u) * u
    u, v = u / u.norm(), v / v.norm()
    x = math.sqrt(q0 * N) * torch.stack([u, c0 * u + math.sqrt(1 - c0**2) * v])
    qs, cs = np.empty((S, L)), np.empty((S, L))
    for s in range(S):
        h = x
        for l in range(L):
            inp = h if l == 0 else torch.tanh(h)
            # float32 draws: 4x faster, and far below the Monte Carlo error
            W = torch.randn(N, N, generator=g).double() * math.sqrt(sw / N)
            b = torch.randn(N, generator=g).double() * math.sqrt(sb)
            h = inp @ W.T + b
            q11, q22, q12 = (h[0] ** 2).mean(), (h[1] ** 2).mean(), (h[0] * h[1]).mean()
            qs[s, l] = 0.5 * (q11 + q22).item()
            cs[s, l] = (q12 / torch.sqrt(q11 * q22)).item()
    # theory: the first layer is linear in x, then the q- and c-maps
    q_th, c_th = [sw * q0 + sb], [(sw * q0 * c0 + sb) / (sw * q0 + sb)]
    for _ in range(L - 1):
        q_th.append(mf.qmap("tanh", q_th[-1], sw, sb))
        c_th.append(mf.cmap("tanh", q_th[-2], c_th[-1], sw, sb))
    for est, th in ((qs, np.array(q_th)), (cs, np.array(c_th))):
        mean, se = est.mean(0), est.std(0, ddof=1) / math.sqrt(S)
        # Monte Carlo error (5 standard errors) plus the O(1/N) finite-width bias
        assert np.all(np.abs(mean - th) < 5 * se + 2.0 / N), (mean, th, se)
    # and the maps are not trivially satisfied: q and c really change over the layers
    assert abs(q_th[-1] - q_th[0]) > 0.1 and abs(c_th[-1] - c_th[0]) > 0.05
