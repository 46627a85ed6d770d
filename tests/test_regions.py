"""Oracle tests for tdlcourse.regions: published values, brute-force enumeration of Serra's index set,
dense sampling of activation patterns, a hand-built zig-zag net attaining prod(n_l + 1), and the
1 + n + C(n, 2) regions of n lines in general position."""

import itertools
import math

import numpy as np
import pytest
import torch
from torch import nn

from tdlcourse import regions


# ----------------------------------------------------------------------------- helpers

def _relu_net(n0, widths, seed, d_out=1, bias_std=0.5):
    g = torch.Generator().manual_seed(seed)
    dims = [n0, *widths]
    layers = []
    for a, b in zip(dims[:-1], dims[1:]):
        lin = nn.Linear(a, b, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.randn(b, a, generator=g, dtype=torch.float64) / math.sqrt(a))
            lin.bias.copy_(bias_std * torch.randn(b, generator=g, dtype=torch.float64))
        layers += [lin, nn.ReLU()]
    layers.append(nn.Linear(dims[-1], d_out, dtype=torch.float64))
    return nn.Sequential(*layers)


def _dense_count(model, a, b, n=200_001):
    """Oracle: activation patterns on a fine grid of the segment; count changes between neighbours."""
    t = torch.linspace(0, 1, n, dtype=torch.float64)[:, None]
    x = torch.as_tensor(a, dtype=torch.float64) + t * (torch.as_tensor(b, dtype=torch.float64)
                                                       - torch.as_tensor(a, dtype=torch.float64))
    bits = []
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                bits.append(x > 0)
    p = torch.cat(bits, dim=1)
    changes = torch.any(p[1:] != p[:-1], dim=1)
    return 1 + int(changes.sum()), t[1:][changes].ravel().numpy()


def _zigzag_layer(n):
    """n ReLUs on a scalar g in [0, 1] and weights c, offset beta such that f(g) = beta + sum_i
    c_i relu(d_i (g - t_i)) zig-zags 0 -> 1 -> 0 ... across its n + 1 pieces, each onto [0, 1].

    Slopes s_k = (-1)^k / w_k; kinks c_k = s_k - s_{k-1}; flipping neuron 3 (d_3 = -1) gives slope
    s_0 = -c_3, which holds when 1/w_0 = 1/w_2 + 1/w_3: w_2 = w_3 = 2 w_0, other pieces w_0."""
    assert n >= 3
    w = np.ones(n + 1)
    w[2] = w[3] = 2.0
    w /= w.sum()
    t = np.cumsum(w)[:-1]
    s = np.array([(-1) ** k / w[k] for k in range(n + 1)])
    c = s[1:] - s[:-1]
    d = np.ones(n)
    d[2] = -1.0
    beta = -c[2] * t[2]                    # f(0) = 0: only the flipped neuron is on at g = 0
    return t, d, c, beta


def _zigzag_net(widths):
    """1-input ReLU net whose every neuron crosses zero once on every region of the layer before:
    prod(n_l + 1) regions on [0, 1] (needs n_l >= 3 except for the last layer)."""
    layers, prev = [], None
    for li, n in enumerate(widths):
        last = li == len(widths) - 1
        if last:
            t, d = (np.arange(1, n + 1) - 0.5) / n, np.ones(n)
        else:
            t, d, c_next, beta_next = _zigzag_layer(n)
        if prev is None:
            W, b = d[:, None], -d * t
        else:
            c, beta = prev
            W, b = d[:, None] * c[None, :], d * (beta - t)
        lin = nn.Linear(W.shape[1], n, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.as_tensor(W))
            lin.bias.copy_(torch.as_tensor(b))
        layers += [lin, nn.ReLU()]
        if not last:
            prev = (c_next, beta_next)
    layers.append(nn.Linear(widths[-1], 1, dtype=torch.float64))
    return nn.Sequential(*layers)


# ----------------------------------------------------------------------------- bounds

def test_public_reference_values():
    assert regions.montufar_lower_bound(2, (6, 6, 6)) == 1782
    assert regions.serra_upper_bound(2, (6, 6, 6)) == 10648
    assert regions.max_regions_1d((4, 4, 4)) == 125


def _serra_bruteforce(n0, widths):
    total = 0
    for js in itertools.product(*[range(n + 1) for n in widths]):
        ok, cap = True, n0
        for j, n in zip(js, widths):
            if j > min(cap, n):
                ok = False
                break
            cap = min(cap, n - j)
        if ok:
            total += math.prod(math.comb(n, j) for n, j in zip(widths, js))
    return total


@pytest.mark.parametrize("n0,widths", [(2, (6, 6, 6)), (3, (3, 2, 3)), (1, (1, 4)), (4, (5, 2, 6, 3)),
                                       (2, (1, 1, 3)), (3, (8, 3, 3, 5))])
def test_serra_matches_bruteforce_enumeration_of_J(n0, widths):
    assert regions.serra_upper_bound(n0, widths) == _serra_bruteforce(n0, widths)


def test_montufar2017_closed_form_and_equal_to_serra_when_wide():
    # d_l = min(n0, ..., n_l) = 2: (1 + 6 + 15)^3
    assert regions.montufar2017_upper_bound(2, (6, 6, 6)) == 22 ** 3
    for n0, ws in [(2, (6, 6, 6)), (3, (7, 9, 8)), (1, (4, 4, 4))]:
        assert regions.serra_upper_bound(n0, ws) == regions.montufar2017_upper_bound(n0, ws)


def test_serra_strictly_below_montufar2017_with_a_narrow_layer():
    # 8 * 4 * 7 = 224 for Montufar 2017; Serra knows that width-3 layer spending j_1 = 3 leaves 0 dims.
    assert regions.montufar2017_upper_bound(3, (3, 2, 3)) == 224
    assert regions.serra_upper_bound(3, (3, 2, 3)) < 224
    assert regions.serra_upper_bound(2, (6, 1, 6)) < regions.montufar2017_upper_bound(2, (6, 1, 6))


def test_bounds_ordered():
    for n0, ws in [(2, (6, 6, 6)), (2, (4, 6)), (3, (3, 3, 3)), (1, (5, 2, 3))]:
        assert regions.montufar_lower_bound(n0, ws) <= regions.serra_upper_bound(n0, ws)
        assert regions.serra_upper_bound(n0, ws) <= regions.montufar2017_upper_bound(n0, ws)
    assert regions.serra_upper_bound(1, (1, 4)) == 6 < regions.max_regions_1d((1, 4)) == 10


@pytest.mark.parametrize("bad", [(0,), (), (2, -1), (2.5, 3), "66", (True, 2)])
def test_bad_widths(bad):
    with pytest.raises(ValueError, match="widths"):
        regions.serra_upper_bound(2, bad)
    with pytest.raises(ValueError, match="widths"):
        regions.max_regions_1d(bad)


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_bad_n0(bad):
    for f in (regions.montufar_lower_bound, regions.serra_upper_bound, regions.montufar2017_upper_bound):
        with pytest.raises(ValueError, match="n0"):
            f(bad, (4, 4))


def test_montufar_lower_needs_wide_layers():
    with pytest.raises(ValueError, match="widths"):
        regions.montufar_lower_bound(3, (4, 2, 4))


# ----------------------------------------------------------------------------- 1-D exact count

@pytest.mark.parametrize("n0,widths,seed", [(1, (6, 6), 0), (3, (8, 8), 1), (5, (6, 5, 4), 2), (2, (10,), 3)])
def test_count_1d_matches_dense_sampling(n0, widths, seed):
    model = _relu_net(n0, widths, seed)
    g = torch.Generator().manual_seed(100 + seed)
    a = 3 * torch.randn(n0, generator=g, dtype=torch.float64)
    b = -a + 0.3 * torch.randn(n0, generator=g, dtype=torch.float64)   # passes near the origin
    res = regions.count_regions_1d(model, a, b)
    n_grid = 200_001
    dense, t_changes = _dense_count(model, a, b, n_grid)
    # the grid resolves every region only if no two breakpoints are closer than two grid steps
    assert np.all(np.diff(np.concatenate([[0.0], res.breakpoints, [1.0]])) > 2.0 / (n_grid - 1))
    assert res.count == dense > 3
    assert len(res.breakpoints) == res.count - 1
    np.testing.assert_allclose(res.breakpoints, t_changes, atol=1.0 / (n_grid - 1))
    assert res.patterns.shape == (res.count, sum(widths))
    # a line through a net is a 1-input net with the same widths
    assert res.count <= regions.serra_upper_bound(1, widths)


def test_zigzag_net_attains_the_1d_maximum():
    for widths in [(4, 4, 4), (3, 5, 2), (3, 3, 3, 3)]:
        res = regions.count_regions_1d(_zigzag_net(widths), [0.0], [1.0])
        assert res.count == regions.max_regions_1d(widths) == regions.serra_upper_bound(1, widths)
    assert regions.count_regions_1d(_zigzag_net((4, 4, 4)), [0.0], [1.0]).count == 125


def test_regions_vs_linear_pieces():
    # Two ReLUs with the same kink but one has zero outgoing weight: 3 activation regions, 2 pieces.
    model = nn.Sequential(nn.Linear(1, 2), nn.ReLU(), nn.Linear(2, 1))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0], [1.0]]))
        model[0].bias.copy_(torch.tensor([-0.25, -0.75]))
        model[2].weight.copy_(torch.tensor([[1.0, 0.0]]))
    res = regions.count_regions_1d(model, [0.0], [1.0])
    assert res.count == 3 and res.n_pieces == 2
    np.testing.assert_allclose(res.breakpoints, [0.25, 0.75])


def test_tent_map_pieces():
    # f(x) = 2 relu(x) - 4 relu(x - 1/2) is the tent map on [0, 1]; f^k has 2^k linear pieces.
    layers = []
    for i in range(4):
        lin = nn.Linear(1 if i == 0 else 2, 2)
        with torch.no_grad():
            w = torch.tensor([[1.0], [1.0]]) if i == 0 else torch.tensor([[2.0, -4.0], [2.0, -4.0]])
            lin.weight.copy_(w)
            lin.bias.copy_(torch.tensor([0.0, -0.5]))
        layers += [lin, nn.ReLU()]
    layers.append(nn.Linear(2, 1))
    with torch.no_grad():
        layers[-1].weight.copy_(torch.tensor([[2.0, -4.0]]))
        layers[-1].bias.zero_()
    res = regions.count_regions_1d(nn.Sequential(*layers), [0.0], [1.0])
    assert res.n_pieces == 2 ** 4


def test_count_1d_does_not_touch_model_and_accepts_lists():
    model = _relu_net(2, (5,), 7)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    res = regions.count_regions_1d(model, [-1.0, 0.0], np.array([1.0, 0.5]))
    assert model.training and all(torch.equal(p, q) for p, q in zip(before, model.parameters()))
    assert res.count >= 1


def test_count_1d_bad_input():
    model = _relu_net(2, (5,), 0)
    with pytest.raises(ValueError, match="coordinates"):
        regions.count_regions_1d(model, [0.0, 0.0, 0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="different"):
        regions.count_regions_1d(model, [1.0, 1.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="Tanh"):
        regions.count_regions_1d(nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1)), [0, 0], [1, 1])
    with pytest.raises(ValueError, match="Sequential"):
        regions.count_regions_1d(nn.Linear(2, 1), [0, 0], [1, 1])


# ----------------------------------------------------------------------------- 2-D grid count

def _lines_net(n):
    """n ReLUs whose kinks are the tangents to the unit circle at angles 2 pi k / n + 0.3."""
    theta = 2 * np.pi * np.arange(n) / n + 0.3
    lin = nn.Linear(2, n, dtype=torch.float64)
    with torch.no_grad():
        lin.weight.copy_(torch.as_tensor(np.stack([np.cos(theta), np.sin(theta)], 1)))
        lin.bias.fill_(-1.0)
    return nn.Sequential(lin, nn.ReLU(), nn.Linear(n, 1, dtype=torch.float64))


@pytest.mark.parametrize("n", [3, 5])
def test_count_2d_lines_in_general_position(n):
    # all pairwise intersections lie within 1 / sin(pi / (2 n)) < 3.3 of the origin
    res = regions.count_regions_2d(_lines_net(n), box=(-5, 5, -5, 5), resolution=300)
    assert res.count == 1 + n + math.comb(n, 2)
    assert res.region_ids.shape == (300, 300)
    assert set(np.unique(res.region_ids)) == set(range(res.count))
    assert res.min_pixels > 50


def _pattern(model, x):
    bits = []
    with torch.no_grad():
        for layer in model:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                bits.append(x > 0)
    return torch.cat(bits, dim=1)


def test_count_2d_is_a_lower_bound_that_grows_with_resolution():
    model = _relu_net(2, (8, 8), 4)
    coarse = regions.count_regions_2d(model, (-2, 2, -2, 2), resolution=16)
    fine = regions.count_regions_2d(model, (-2, 2, -2, 2), resolution=400)
    assert coarse.count <= fine.count <= regions.serra_upper_bound(2, (8, 8))
    assert fine.us[0] == -2 and fine.vs[-1] == 2


def test_count_2d_ids_match_patterns_and_orientation():
    # oracle: same id <=> same activation pattern at the point (us[j], vs[i])
    model = _relu_net(2, (6, 6), 8)
    res = regions.count_regions_2d(model, (-2, 1, -1, 3), resolution=60)
    uu, vv = np.meshgrid(res.us, res.vs)
    x = torch.as_tensor(np.stack([uu.ravel(), vv.ravel()], 1))
    p = _pattern(model, x).numpy()
    ids = res.region_ids.ravel()
    rng = np.random.default_rng(0)
    a, b = rng.integers(0, ids.size, 4000), rng.integers(0, ids.size, 4000)
    np.testing.assert_array_equal(ids[a] == ids[b], np.all(p[a] == p[b], axis=1))
    assert len({tuple(r) for r in p}) == res.count


def test_count_2d_plane_through_three_points_equals_composed_net():
    model = _relu_net(3, (6, 6), 5)
    p0, p1, p2 = np.array([0.1, -0.2, 0.3]), np.array([1.0, 0.5, -0.4]), np.array([-0.6, 1.2, 0.8])
    res = regions.count_regions_2d(model, (-1, 2, -1, 2), resolution=120, plane=(p0, p1, p2))
    embed = nn.Linear(2, 3, dtype=torch.float64)
    with torch.no_grad():
        embed.weight.copy_(torch.as_tensor(np.stack([p1 - p0, p2 - p0], 1)))
        embed.bias.copy_(torch.as_tensor(p0))
    # prepend the (u, v) -> x map: a linear layer before the first Linear adds no ReLU
    composed = nn.Sequential(embed, *model)
    ref = regions.count_regions_2d(composed, (-1, 2, -1, 2), resolution=120)
    assert res.count == ref.count > 5
    np.testing.assert_array_equal(res.region_ids, ref.region_ids)


def test_count_2d_bad_input():
    model = _relu_net(3, (4,), 0)
    with pytest.raises(ValueError, match="plane"):
        regions.count_regions_2d(model)
    with pytest.raises(ValueError, match="box"):
        regions.count_regions_2d(_relu_net(2, (4,), 0), box=(1, 0, 0, 1))
    with pytest.raises(ValueError, match="resolution"):
        regions.count_regions_2d(_relu_net(2, (4,), 0), resolution=1)
    with pytest.raises(ValueError, match="collinear"):
        regions.count_regions_2d(model, plane=([0, 0, 0], [1, 1, 1], [2, 2, 2]))
