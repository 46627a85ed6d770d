"""Oracle tests for tdlcourse.approximation (chapter 4)."""

import math

import numpy as np
import pytest
import torch

from tdlcourse import approximation as A
from tdlcourse import models, regions


def sawtooth_closed_form(x, k):
    """Distance of 2^k x to the nearest even integer (Telgarsky's sawtooth), the oracle for f^k."""
    return 1 - np.abs(np.mod(2.0 ** k * x, 2) - 1)


TENT = (np.array([0.0, 0.5, 1.0]), np.array([0.0, 1.0, 0.0]))


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8])
def test_tent_power_matches_the_closed_form_numpy_torch_and_float(k):
    x = np.random.default_rng(k).random(2000)
    assert np.abs(A.tent_power(x, k) - sawtooth_closed_form(x, k)).max() < 1e-12
    xt = torch.tensor(x)
    yt = A.tent_power(xt, k)
    assert isinstance(yt, torch.Tensor) and yt.dtype == torch.float64
    assert torch.allclose(yt, torch.tensor(sawtooth_closed_form(x, k)), atol=1e-12)
    y = A.tent_power(0.3, k)
    assert isinstance(y, float) and abs(y - sawtooth_closed_form(0.3, k)) < 1e-12


@pytest.mark.parametrize("k", range(1, 9))
def test_sawtooth_mlp_is_exact_and_has_2_to_the_k_regions(k):
    m = A.sawtooth_mlp(k)
    x32 = torch.linspace(0, 1, 4097, dtype=torch.float32)[:, None]
    with torch.no_grad():
        y = m(x32).double().numpy().ravel()
    ref = sawtooth_closed_form(x32.double().numpy().ravel(), k)   # f^k at the same float32 inputs
    assert np.abs(y - ref).max() < 1e-6
    r = regions.count_regions_1d(m, [0.0], [1.0])
    assert r.count == 2 ** k and r.n_pieces == 2 ** k
    assert models.num_params(m) == 6 * k + 1 == A.mlp_params((2,) * k)
    assert all(w == 2 for w in [layer.out_features for layer in m if isinstance(layer, torch.nn.Linear)][:-1])


def brute_pieces(g, n=200_001, tol=1e-11):
    """Pieces by the second differences of g on a dense grid (an independent count)."""
    x = np.linspace(g.breakpoints[0], g.breakpoints[-1], n)
    d2 = np.abs(np.diff(g(x), 2))
    kinks = np.flatnonzero(d2 > tol)
    return 1 + (np.count_nonzero(np.diff(kinks) > 1) + 1 if kinks.size else 0)


@pytest.mark.parametrize("k", range(1, 8))
def test_compose_of_tents_has_2_to_the_k_pieces_and_equals_f_k(k):
    g = A.compose([TENT] * k)
    assert g.pieces() == 2 ** k == A.compose_pieces([TENT] * k)
    x = np.random.default_rng(0).random(5000)
    assert np.abs(g(x) - sawtooth_closed_form(x, k)).max() < 1e-12
    t = A.tent_pieces(k)
    assert A.count_pieces(t.breakpoints, t.values) == 2 ** k


def test_compose_random_maps_against_dense_evaluation_and_brute_counts():
    rng = np.random.default_rng(1)
    for trial in range(20):
        maps = []
        for _ in range(rng.integers(1, 4)):
            n = rng.integers(2, 6)
            x = np.concatenate([[0.0], np.sort(rng.random(n - 1)), [1.0]])
            maps.append((x, rng.random(n + 1)))
        g = A.compose(maps)
        xs = np.linspace(0, 1, 200_001)
        dense = xs
        for bx, by in maps:
            dense = np.interp(dense, bx, by)
        assert np.abs(g(xs) - dense).max() < 1e-9
        assert g.pieces() == brute_pieces(g)
    # collinear segments are merged: a line written with 5 breakpoints has 1 piece
    assert A.count_pieces(np.linspace(0, 1, 5), 2 * np.linspace(0, 1, 5) + 1) == 1


def test_compose_refuses_a_range_outside_the_next_domain():
    with pytest.raises(ValueError, match=r"maps\[1\] is defined on"):
        A.compose([TENT, (np.array([0.0, 0.5]), np.array([0.0, 1.0]))])


@pytest.mark.parametrize("k", [1, 2, 3, 6])
def test_best_affine_error_is_one_twelfth_and_matches_least_squares_on_a_grid(k):
    assert abs(A.best_affine_error(k) - 1 / 12) < 1e-12
    x = (np.arange(400_000) + 0.5) / 400_000             # midpoint rule for the mean over uniform x
    y = sawtooth_closed_form(x, k)
    coef = np.polyfit(x, y, 1)
    assert abs(np.mean((y - np.polyval(coef, x)) ** 2) - A.best_affine_error(k)) < 1e-6


def test_squared_error_and_affine_fit_error_of_random_maps_against_quadrature():
    rng = np.random.default_rng(2)
    x = (np.arange(400_000) + 0.5) / 400_000
    for _ in range(10):
        h = (np.concatenate([[0.0], np.sort(rng.random(6)), [1.0]]), rng.normal(size=8))
        g = (np.concatenate([[0.0], np.sort(rng.random(3)), [1.0]]), rng.normal(size=5))
        mc = np.mean((np.interp(x, *h) - np.interp(x, *g)) ** 2)
        assert abs(A.squared_error(*h, *g) - mc) < 1e-8
        yh = np.interp(x, *h)
        fit = np.mean((yh - np.polyval(np.polyfit(x, yh, 1), x)) ** 2)
        assert abs(A.affine_fit_error(*h) - fit) < 1e-8
    # on another interval the error is the mean over that interval
    h = (np.array([2.0, 3.0, 6.0]), np.array([0.0, 3.0, 0.0]))
    xx = 2 + 4 * x
    yy = np.interp(xx, *h)
    assert abs(A.affine_fit_error(*h) - np.mean((yy - np.polyval(np.polyfit(xx, yy, 1), xx)) ** 2)) < 1e-8


def test_max_pieces_bounds_random_relu_nets_and_the_exact_construction():
    for width, depth in [(2, 1), (2, 3), (3, 2), (4, 3)]:
        assert A.max_pieces(width, depth) == (2 * width) ** depth
        for seed in range(5):
            net = models.mlp(1, (width,) * depth, 1, init="gaussian", sigma_w2=2.0, sigma_b2=1.0, seed=seed)
            assert regions.count_regions_1d(net, [-3.0], [3.0]).n_pieces <= A.max_pieces(width, depth)
    assert A.max_pieces(2, 1) >= 2 and A.max_pieces(1, 5) == 32


def l1_and_mse(k, g, n=400_000):
    x = (np.arange(n) + 0.5) / n
    d = sawtooth_closed_form(x, k) - g(x)
    return np.mean(np.abs(d)), np.mean(d ** 2)


@pytest.mark.parametrize("k", [2, 3, 4, 5])
def test_few_pieces_lower_bound_holds_for_random_and_adversarial_fits(k):
    rng = np.random.default_rng(k)
    for t in range(1, 2 ** (k - 1) + 1):
        lo1 = A.few_pieces_error_lower_bound(k, t, norm="l1")
        lo2 = A.few_pieces_error_lower_bound(k, t, norm="mse")
        candidates = []
        for _ in range(5):      # random t-piece functions, and interpolants of f^k at t + 1 points
            bx = np.concatenate([[0.0], np.sort(rng.random(t - 1)), [1.0]])
            candidates += [A.PiecewiseLinear(bx, rng.random(t + 1)),
                           A.PiecewiseLinear(bx, sawtooth_closed_form(bx, k))]
        t_map = A.tent_pieces(k)    # f^k itself, cut down to its first t pieces, then flat
        bx = t_map.breakpoints[: t]
        candidates.append(A.PiecewiseLinear(np.append(bx, 1.0), np.append(t_map.values[: t], 0.5)))
        for g in candidates:
            assert g.pieces() <= t
            l1, mse = l1_and_mse(k, g)
            assert l1 >= lo1 - 1e-9 and mse >= lo2 - 1e-9
    # the bound is not empty: with few pieces it is a positive fraction of the best affine error
    assert A.few_pieces_error_lower_bound(6, 1, norm="mse") > 0.3 * A.best_affine_error(6)
    assert A.few_pieces_error_lower_bound(3, 4) == 0.0
    # the stated constants: N = 2^{k-1} - t = 3 for (k, t) = (3, 1): 2^{-5} * 2 (l1) and 2^{-3}/12 * 2 (mse)
    assert A.few_pieces_error_lower_bound(3, 1, norm="l1") == 1 / 16
    assert A.few_pieces_error_lower_bound(3, 1, norm="mse") == 1 / 48


def test_product_gate_exact_forms_for_exp_and_softplus():
    u, v = np.array([0.3, -1.2, 2.0]), np.array([0.7, 0.4, -0.5])
    for a in (0.5, 0.1, 0.01):
        # exp: [cosh(a(u+v)) - cosh(a(u-v))] / (2a^2) = sinh(au) sinh(av) / a^2
        assert np.allclose(A.product_gate(u, v, a, "exp"), np.sinh(a * u) * np.sinh(a * v) / a ** 2, rtol=1e-9)
        # softplus: s(z) + s(-z) = log(2 + 2 cosh z), s''(0) = 1/4
        ref = np.log((2 + 2 * np.cosh(a * (u + v))) / (2 + 2 * np.cosh(a * (u - v)))) / a ** 2
        assert np.allclose(A.product_gate(u, v, a, "softplus"), ref, rtol=1e-8)
    assert isinstance(A.product_gate(0.3, 0.7, 0.1), float)


@pytest.mark.parametrize("activation", ["softplus", "exp", "gelu", "silu", "swish"])
def test_product_gate_error_is_order_a_squared_with_the_taylor_constant(activation):
    u, v = 0.8, -0.6
    a = np.logspace(-3, -1, 9)
    err = np.array([A.product_gate(u, v, ai, activation) - u * v for ai in a])
    slope = np.polyfit(np.log(a), np.log(np.abs(err)), 1)[0]
    assert abs(slope - 2) < 0.02
    c = A.product_gate_error_coefficient(u, v, activation)
    assert abs(err[4] / a[4] ** 2 - c) < 1e-3 * abs(c)   # a = 1e-2: the a^4 term and rounding are both < 1e-3 C


def test_product_gate_taylor_constants_by_finite_differences():
    h = 1e-2
    for name, (s, s2, s4) in A.GATE_ACTIVATIONS.items():
        z = h * np.arange(-2, 3)
        f = s(z)
        d2 = (-f[4] + 16 * f[3] - 30 * f[2] + 16 * f[1] - f[0]) / (12 * h ** 2)
        d4 = (f[4] - 4 * f[3] + 6 * f[2] - 4 * f[1] + f[0]) / h ** 4
        assert abs(d2 - s2) < 1e-6 and abs(d4 - s4) < 1e-3, name


@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu", "elu", "cube", 3])
def test_product_gate_refuses_activations_without_a_second_derivative(activation):
    with pytest.raises(ValueError, match="activation=.*allowed: 'softplus'"):
        A.product_gate(0.1, 0.2, 0.1, activation)


def test_equal_parameter_widths():
    e = A.equal_parameter_widths(6, 3)
    assert e.deep == (3,) * 6 and e.deep_params == 70 == e.shallow_params and e.shallow == (23,)
    for depth, width in [(2, 5), (4, 8), (6, 4)]:
        e = A.equal_parameter_widths(depth, width)
        assert e.deep_params == models.num_params(models.mlp(1, e.deep, 1))
        assert e.shallow_params == models.num_params(models.mlp(1, e.shallow, 1))
        assert abs(e.shallow_params - e.deep_params) <= 1


def test_fit_sawtooth_reports_exact_errors_of_its_models():
    f = A.fit_sawtooth((8,), (1, 2), seeds=(0, 1), n_train=128, steps=300, lr=1e-2)
    assert f.errors.shape == (2, 2) == f.pieces.shape
    x = (np.arange(100_000) + 0.5) / 100_000
    for i, k in enumerate(f.ks):
        for j in range(2):
            m = f.models[i * 2 + j]
            with torch.no_grad():
                y = m(torch.tensor(x, dtype=torch.float32)[:, None]).double().numpy().ravel()
            assert abs(np.mean((sawtooth_closed_form(x, k) - y) ** 2) - f.errors[i, j]) < 1e-5
            assert f.pieces[i, j] <= 9


@pytest.mark.parametrize("call, param", [
    (lambda: A.tent_power(0.5, 0), "k"), (lambda: A.tent_power(0.5, 1.5), "k"),
    (lambda: A.tent_power(np.array([0.2, 1.5]), 2), "x"), (lambda: A.sawtooth_mlp(0), "k"),
    (lambda: A.max_pieces(0, 2), "width"), (lambda: A.max_pieces(2, 2.0), "depth"),
    (lambda: A.few_pieces_error_lower_bound(0, 3), "k"), (lambda: A.few_pieces_error_lower_bound(3, 0), "pieces"),
    (lambda: A.equal_parameter_widths(3, -1), "width"), (lambda: A.product_gate(1, 2, 0.0), "a"),
    (lambda: A.count_pieces([0, 0, 1], [0, 1, 0]), "breakpoints"), (lambda: A.best_affine_error(0), "k"),
    (lambda: A.mlp_params((2, 0)), "widths"), (lambda: A.fit_sawtooth((2,), (0,)), "ks"),
])
def test_bad_input_names_the_parameter(call, param):
    with pytest.raises(ValueError, match=param):
        call()
