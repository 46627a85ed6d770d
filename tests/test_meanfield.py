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


# ---------------------------------------------------------------- the edge of chaos: closed forms and accuracy


def test_critical_sigma_w2_closed_forms_at_zero_bias():
    # q* = 0 up to the critical point, so chi_1 = s_w phi'(0)^2: erf pi/4, tanh 1 (Brent gave 0.7853981649)
    assert abs(mf.critical_sigma_w2("erf", 0.0) - math.pi / 4) < 1e-15
    assert mf.critical_sigma_w2("tanh", 0.0) == 1.0
    assert mf.critical_sigma_w2("relu", 0.7) == 2.0 and mf.critical_sigma_w2("linear", 0.0) == 1.0
    pd = mf.phase_diagram("erf", [0.5, 1.0], [0.0])
    assert abs(pd.critical_sigma_w2[0] - math.pi / 4) < 1e-15


@pytest.mark.parametrize("q", [1e-3, 0.03, 0.3, 0.57, 2.0])
def test_critical_line_against_its_parametrization_by_qstar(q):
    # on the critical line s_w = 1/E[phi'^2](q*) and s_b = q* - s_w E[phi^2](q*): pick q*, read off (s_w, s_b)
    sw = math.pi * math.sqrt(1 + 4 * q) / 4  # erf (Williams 1997): E[phi'^2] = 4/(pi sqrt(1+4q))
    sb = q - sw * (2 / math.pi) * math.asin(2 * q / (1 + 2 * q))
    assert mf.critical_sigma_w2("erf", sb) == pytest.approx(sw, abs=2e-12)
    assert mf.qstar("erf", sw, sb) == pytest.approx(q, rel=1e-6)
    z, w = np.polynomial.hermite_e.hermegauss(200)  # tanh: E by 200-node Gauss-Hermite at small q (exact here)
    w = w / w.sum()
    if q <= 0.57:
        e_d2 = float(w @ (1 / np.cosh(math.sqrt(q) * z) ** 4))
        sw_t = 1 / e_d2
        sb_t = q - sw_t * float(w @ np.tanh(math.sqrt(q) * z) ** 2)
        assert mf.critical_sigma_w2("tanh", sb_t) == pytest.approx(sw_t, abs=2e-12)


# ---------------------------------------------------------------- iterate_maps, simulate_signal, fit_decay_length


def test_iterate_maps_first_layer_and_recursion():
    sw, sb, q0, c0 = 1.7, 0.1, 0.8, 0.3
    t = mf.iterate_maps("tanh", sw, sb, q0=q0, c0=c0, depth=6)
    assert t.layers.tolist() == [1, 2, 3, 4, 5, 6]
    assert t.q[0] == pytest.approx(sw * q0 + sb, rel=1e-15)
    assert t.c[0] == pytest.approx((sw * q0 * c0 + sb) / (sw * q0 + sb), rel=1e-15)
    for l in range(1, 6):
        assert t.q[l] == pytest.approx(mf.qmap("tanh", t.q[l - 1], sw, sb), rel=1e-14)
        assert t.c[l] == pytest.approx(mf.cmap("tanh", t.q[l - 1], t.c[l - 1], sw, sb), rel=1e-14)
    # linear net without bias: q^l = s_w^l q0, c^l = c0; relu at s_b = 0: the closed-form c-map
    lin = mf.iterate_maps("linear", 0.9, 0.0, q0=2.0, c0=-0.4, depth=5)
    np.testing.assert_allclose(lin.q, 2.0 * 0.9 ** np.arange(1, 6), rtol=1e-14)
    np.testing.assert_allclose(lin.c, -0.4, rtol=1e-14)
    r = mf.iterate_maps("relu", 2.0, 0.0, q0=1.0, c0=0.0, depth=2)
    assert r.c[1] == pytest.approx(1 / math.pi, rel=1e-14)


@pytest.mark.parametrize("act,sw,sb", [("tanh", 1.2, 0.05), ("tanh", 4.0, 0.3), ("relu", 2.0, 0.1), ("erf", 3.0, 0.05)])
def test_simulate_signal_matches_the_maps_within_monte_carlo_error(act, sw, sb):
    N, L = 512, 8
    sim = mf.simulate_signal(act, sw, sb, q0=0.7, c0=0.4, depth=L, width=N, seeds=range(12), pairs=4)
    assert sim.q.shape == sim.c.shape == (12, L) and sim.width == N and sim.seeds == tuple(range(12))
    np.testing.assert_allclose(sim.q_mean, sim.q.mean(0))
    np.testing.assert_allclose(sim.c_se, sim.c.std(0, ddof=1) / math.sqrt(12))
    # Monte Carlo error (4 s.e.) plus the O(1/N) finite-width bias
    assert np.all(np.abs(sim.q_mean - sim.theory.q) < 4 * sim.q_se + 1.0 / N), sim.q_z
    assert np.all(np.abs(sim.c_mean - sim.theory.c) < 4 * sim.c_se + 1.0 / N), sim.c_z
    assert np.ptp(sim.theory.c) > 0.05  # the correlation really moves


def test_simulate_signal_seeds_are_independent_of_the_batch():
    kw = dict(q0=1.0, c0=0.5, depth=3, width=64)
    ab = mf.simulate_signal("tanh", 2.0, 0.1, seeds=(3, 7), **kw)
    ba = mf.simulate_signal("tanh", 2.0, 0.1, seeds=(7, 3, 11), **kw)
    np.testing.assert_allclose(ab.c[0], ba.c[1], rtol=1e-12)
    np.testing.assert_allclose(ab.q[1], ba.q[0], rtol=1e-12)
    # the first layer is linear in x: its per-net q concentrates at s_w q0 + s_b with exact input lengths
    lin = mf.simulate_signal("linear", 1.0, 0.0, q0=1.0, c0=0.5, depth=1, width=2000, seeds=(0, 1))
    assert np.all(np.abs(lin.q[:, 0] - 1.0) < 5 * math.sqrt(2 / 2000))


def _synthetic_decay(xi, S, L, noise, rng):
    l = np.arange(1, L + 1)
    return 0.3 * np.exp(-l / xi) * (1 + noise * rng.standard_normal((S, L))) + 2e-4 * rng.standard_normal((S, L))


def test_fit_decay_length_recovers_a_known_length_with_honest_errors():
    rng = np.random.default_rng(5)
    z = []
    for _ in range(200):
        f = mf.fit_decay_length(_synthetic_decay(6.0, 16, 40, 0.3, rng), start=2)
        assert f.converged and f.layers[0] == 2
        z.append((f.xi - 6.0) / f.xi_se)
    z = np.asarray(z)
    # the jackknife standard error is honest: z-scores of the 200 fits have mean ~ 0 and sd ~ 1
    assert abs(z.mean()) < 0.3 and 0.75 < z.std() < 1.3, (z.mean(), z.std())
    # the window stops at the noise floor (2e-4 / sqrt(16) * 4 = 2e-4, reached near l = 6 ln(1500) = 44 > 40)
    f = mf.fit_decay_length(_synthetic_decay(3.0, 16, 40, 0.0, rng))
    assert f.layers[-1] < 22 and abs(f.xi - 3.0) < 4 * f.xi_se
    assert np.all(np.abs(f.residuals) < 0.3)


def test_fit_decay_length_on_a_simulated_ordered_net():
    sw, sb = 1.2, 0.05
    r = mf.depth_scales("tanh", sw, sb)
    q0 = (r.qstar - sb) / sw  # q^1 = q*: only c moves
    sim = mf.simulate_signal("tanh", sw, sb, q0=q0, c0=0.9, depth=25, width=256, seeds=range(16), pairs=4)
    f = mf.fit_decay_length(sim.c - 1.0)
    assert f.converged and abs(f.xi - r.xi_c) < 4 * f.xi_se + 0.05 * r.xi_c, (f.xi, f.xi_se, r.xi_c)


def test_fit_decay_length_flags_what_it_cannot_fit():
    rng = np.random.default_rng(0)
    with pytest.warns(RuntimeWarning, match="did not converge"):
        f = mf.fit_decay_length(1e-3 * rng.standard_normal((8, 20)))  # pure noise
    assert not f.converged and math.isnan(f.xi)
    with pytest.warns(RuntimeWarning, match="does not decay"):
        f = mf.fit_decay_length(np.exp(0.1 * np.arange(20))[None, :] * (1 + 0.01 * rng.standard_normal((8, 20))))
    assert not f.converged and f.slope > 0


def test_signal_bad_input():
    kw = dict(q0=1.0, c0=0.5, depth=3, width=16, seeds=(0, 1))
    with pytest.raises(ValueError, match="width"):
        mf.simulate_signal("tanh", 1.0, 0.1, **{**kw, "width": 0})
    with pytest.raises(ValueError, match="depth"):
        mf.simulate_signal("tanh", 1.0, 0.1, **{**kw, "depth": 0})
    with pytest.raises(ValueError, match="sigma_w2"):
        mf.simulate_signal("tanh", -1.0, 0.1, **kw)
    with pytest.raises(ValueError, match="seeds"):
        mf.simulate_signal("tanh", 1.0, 0.1, **{**kw, "seeds": (0,)})
    with pytest.raises(ValueError, match="activation"):
        mf.simulate_signal(ERF_CALLABLE, 1.0, 0.1, **kw)
    with pytest.raises(ValueError, match="c0"):
        mf.iterate_maps("tanh", 1.0, 0.1, q0=1.0, c0=1.5, depth=3)
    with pytest.raises(ValueError, match="depth"):
        mf.iterate_maps("tanh", 1.0, 0.1, q0=1.0, c0=0.5, depth=0)
    with pytest.raises(ValueError, match="deviation"):
        mf.fit_decay_length(np.ones(10))
    with pytest.raises(ValueError, match="start"):
        mf.fit_decay_length(np.ones((3, 10)), start=0)


@pytest.mark.parametrize("sw,sb", [(1.2, 0.05), (4.0, 0.05)])
def test_correlation_decay_measures_xi_c_in_both_phases(sw, sb):
    cd = mf.correlation_decay("tanh", sw, sb, depth=25, width=256, seeds=range(16), pairs=8)
    r = mf.depth_scales("tanh", sw, sb)
    assert cd.scales == r and cd.deviation.shape == (16, 25) and cd.fit.converged
    # the design: the first layer sits at q*, and the theory column is the iterated maps' deviation
    t = [mf.iterate_maps("tanh", sw, sb, q0=(r.qstar - sb) / sw, c0=c, depth=25) for c in cd.c0]
    np.testing.assert_allclose(t[0].q, r.qstar, rtol=1e-9)
    want = 1 - t[0].c if r.cstar == 1.0 else 0.5 * (t[0].c - t[1].c)
    np.testing.assert_allclose(cd.theory, want, rtol=1e-12)
    if r.cstar < 1.0:
        assert t[0].c[0] == pytest.approx(r.cstar + 0.5 * (1 - r.cstar), abs=1e-12)
    # Monte Carlo: the fitted length agrees with xi_c within 4 s.e. plus 10% (the c-map's curvature)
    assert abs(cd.fit.xi - r.xi_c) < 4 * cd.fit.xi_se + 0.1 * r.xi_c, (cd.fit.xi, cd.fit.xi_se, r.xi_c)
    assert cd.ratio == pytest.approx(cd.fit.xi / r.xi_c)


def test_correlation_decay_bad_input():
    with pytest.raises(ValueError, match="offset"):
        mf.correlation_decay("tanh", 1.2, 0.05, depth=5, width=16, seeds=(0, 1), offset=1.5)
    with pytest.raises(ValueError, match="q\\* > 0"):
        mf.correlation_decay("tanh", 0.8, 0.0, depth=5, width=16, seeds=(0, 1))


def test_xi_c_alone_matches_closed_forms():
    # ordered tanh: -1/ln chi_1 (syllabus: 15.7909); ReLU without bias, s_w < 2: chi_1 = s_w / 2
    assert mf.xi_c("tanh", 1.5, 0.05) == pytest.approx(15.7909, abs=1e-4)  # 15.790994: the syllabus truncates
    assert mf.xi_c("tanh", 1.5, 0.05) == pytest.approx(-1 / math.log(mf.chi1("tanh", 1.5, 0.05)), rel=1e-12)
    for sw in (0.5, 1.0, 1.9):
        assert mf.xi_c("relu", sw, 0.0) == pytest.approx(-1 / math.log(sw / 2), rel=1e-9)
    assert mf.xi_c("tanh", 3.0, 0.05) == mf.depth_scales("tanh", 3.0, 0.05).xi_c
