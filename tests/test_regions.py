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
        res = regions.count_regions_1d(regions.zigzag_mlp(widths), [0.0], [1.0])
        assert res.count == regions.max_regions_1d(widths) == regions.serra_upper_bound(1, widths)
    assert regions.count_regions_1d(regions.zigzag_mlp((4, 4, 4)), [0.0], [1.0]).count == 125


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


# ----------------------------------------------------------------------------- numpy-array walk

def _arrays(model):
    lins = [m for m in model if isinstance(m, nn.Linear)]
    return ([m.weight.detach().double().numpy() for m in lins], [m.bias.detach().double().numpy() for m in lins])


@pytest.mark.parametrize("n0,widths,seed", [(1, (5, 5), 0), (3, (8, 8, 8), 1), (2, (6,), 2)])
def test_count_1d_arrays_equals_sequential_and_dense_sampling(n0, widths, seed):
    model = _relu_net(n0, widths, seed)
    W, b = _arrays(model)
    a, b_end = -2 * np.ones(n0), 2.5 * np.ones(n0)
    got = regions.count_regions_1d_arrays(W, b, a, b_end)
    assert isinstance(got, int)
    assert got == regions.count_regions_1d(model, a, b_end).count == _dense_count(model, a, b_end)[0]


def test_count_1d_arrays_zigzag_attains_maximum():
    W, b = _arrays(regions.zigzag_mlp((4, 4, 4)))
    assert regions.count_regions_1d_arrays([w.tolist() for w in W], b, [0.0], [1.0]) == 125


def test_count_1d_arrays_bad_input():
    W, b = _arrays(_relu_net(2, (4,), 0))
    with pytest.raises(ValueError, match="biases"):
        regions.count_regions_1d_arrays(W, b[:1], [0, 0], [1, 1])
    with pytest.raises(ValueError, match=r"weights\[1\]"):
        regions.count_regions_1d_arrays([W[0], W[1].T], b, [0, 0], [1, 1])
    with pytest.raises(ValueError, match="length 0"):
        regions.count_regions_1d_arrays(W, b, [1, 1], [1, 1])
    with pytest.raises(ValueError, match="at least 2 layers"):
        regions.count_regions_1d_arrays(W[:1], b[:1], [0, 0], [1, 1])


# ----------------------------------------------------------------------------- many segments

@pytest.mark.parametrize("n0,widths,seed", [(1, (6, 6), 0), (4, (8, 8, 8), 1), (10, (16, 8), 2)])
def test_segments_equal_loop_of_count_1d(n0, widths, seed):
    model = _relu_net(n0, widths, seed)
    rng = np.random.default_rng(seed)
    A, B = 2 * rng.normal(size=(60, n0)), 2 * rng.normal(size=(60, n0))
    res = regions.count_regions_segments(model, A, torch.as_tensor(B))
    loop = np.array([regions.count_regions_1d(model, a, b).count for a, b in zip(A, B)])
    np.testing.assert_array_equal(res.counts, loop)
    assert loop.max() > 3 and len(set(loop)) > 2        # not a trivial agreement
    np.testing.assert_allclose(res.lengths, np.linalg.norm(B - A, axis=1))
    np.testing.assert_allclose(res.per_length, loop / res.lengths)
    np.testing.assert_allclose(res.crossings_per_length, (loop - 1) / res.lengths)


def test_segments_zigzag_and_lines():
    # exact known counts: the zig-zag net on [0, 1] and on [0, 1/2]; n tangent lines crossed by rays
    z = regions.zigzag_mlp((3, 3, 3))
    res = regions.count_regions_segments(z, [[0.0], [0.0], [1.0]], [[1.0], [1e-9], [0.0]])
    assert res.counts[0] == res.counts[2] == 64 and res.counts[1] == 1
    # a long horizontal line through 5 tangents of the unit circle, none parallel to it, meets 6 regions
    res = regions.count_regions_segments(_lines_net(5), [[-100.0, 0.05]], [[100.0, 0.05]])
    assert res.counts.tolist() == [6]


def test_segments_bad_input():
    model = _relu_net(2, (4,), 0)
    with pytest.raises(ValueError, match=r"A\[1\] and B\[1\].*length 0"):
        regions.count_regions_segments(model, [[0, 0], [1, 1]], [[1, 0], [1, 1]])
    with pytest.raises(ValueError, match="A must be"):
        regions.count_regions_segments(model, [0, 0], [[1, 0]])
    with pytest.raises(ValueError, match="same shape"):
        regions.count_regions_segments(model, [[0, 0]], [[1, 0], [2, 0]])


# ----------------------------------------------------------------------------- planes and maps

def test_plane_through_maps_the_three_points_and_back():
    p = np.array([[0.1, -0.2, 0.3, 1.0], [1.0, 0.5, -0.4, 0.0], [-0.6, 1.2, 0.8, 2.0]])
    pl = regions.plane_through(*p)
    np.testing.assert_allclose(pl([[0, 0], [1, 0], [0, 1]]), p)
    uv = np.random.default_rng(0).normal(size=(7, 2))
    np.testing.assert_allclose(pl.coords(pl(uv)), uv, atol=1e-12)
    with pytest.raises(ValueError, match="collinear"):
        regions.plane_through([0, 0], [1, 1], [2, 2])


@pytest.mark.parametrize("n", [3, 7])  # odd n: no two tangents are parallel
def test_region_map_lines_exact_and_resolved(n):
    # n lines in general position: 1 + n + C(n, 2) regions; only rows passing close to a crossing of
    # two lines meet a sliver thinner than a pixel
    rm = regions.region_map(_lines_net(n), (-5, 5, -5, 5), 301)
    assert rm.count == 1 + n + math.comb(n, 2)
    assert np.all(rm.row_counts_grid[rm.mismatched_rows] < rm.row_counts_exact[rm.mismatched_rows])
    # a row at height v meets the wedge of lines s, t crossing at height v* in an interval of width
    # |v - v*| |tan s - tan t|; the grid misses it only if that is below the spacing du
    theta = 2 * np.pi * np.arange(n) / n + 0.3
    wedges = [(np.linalg.solve([[np.cos(s), np.sin(s)], [np.cos(t), np.sin(t)]], [1, 1])[1],
               abs(np.tan(s) - np.tan(t))) for s, t in itertools.combinations(theta, 2)]
    thin = [any(abs(v - vc) * k < rm.spacing[0] * 1.0001 for vc, k in wedges) for v in rm.vs]
    assert all(thin[i] for i in rm.mismatched_rows)
    assert rm.rows_agree == 1 - rm.mismatched_rows.size / 301
    # each row crosses each line once unless it passes above/below the crossing: exact count <= n + 1
    assert rm.row_counts_exact.max() <= n + 1 and rm.row_counts_exact.min() >= 1
    assert rm.spacing == pytest.approx((10 / 300, 10 / 300))


def test_region_map_rows_vs_exact_walk_and_plane():
    model = _relu_net(3, (8, 8), 5)
    pts = np.array([[0.1, -0.2, 0.3], [1.0, 0.5, -0.4], [-0.6, 1.2, 0.8]])
    coarse = regions.region_map(model, (-1, 2, -1, 2), 24, plane=pts)
    fine = regions.region_map(model, (-1, 2, -1, 2), 1200, plane=regions.plane_through(*pts))
    # the grid can only miss regions along a row, never invent them
    assert np.all(coarse.row_counts_grid <= coarse.row_counts_exact)
    assert not coarse.resolved and coarse.mismatched_rows.size > 0
    assert fine.rows_agree > 0.95 and fine.count >= coarse.count
    # the exact row counts are count_regions_1d along the mapped rows
    i = 7
    a = pts[0] + (-1) * (pts[1] - pts[0]) + coarse.vs[i] * (pts[2] - pts[0])
    b = pts[0] + 2 * (pts[1] - pts[0]) + coarse.vs[i] * (pts[2] - pts[0])
    assert coarse.row_counts_exact[i] == regions.count_regions_1d(model, a, b).count
    np.testing.assert_array_equal(coarse.labels, regions.count_regions_2d(model, (-1, 2, -1, 2), 24,
                                                                          plane=pts).region_ids)


def test_region_figure_and_bad_boxes():
    rm = regions.region_map(_lines_net(3), (-3, 3, -3, 3), 50)
    fig = regions.region_figure(rm, [[0, 0], [1, 1]], point_labels=["a", "b"], title="t")
    assert fig.layout.title.text == "t" and len(fig.data) == 2
    z = np.asarray(fig.data[0].z)
    assert sorted(np.unique(z)) == list(range(rm.count))        # fewer than 256 regions: all colours distinct
    np.testing.assert_array_equal(z[:, 1:] != z[:, :-1], rm.labels[:, 1:] != rm.labels[:, :-1])
    for box in [(1, 0, 0, 1), (0, 1, 2, 2), (0, float("inf"), 0, 1)]:
        with pytest.raises(ValueError, match="box"):
            regions.region_map(_lines_net(3), box, 20)
    with pytest.raises(ValueError, match="rmap"):
        regions.region_figure(rm.labels)


# ----------------------------------------------------------------------------- the library's zig-zag

@pytest.mark.parametrize("widths", [(3,), (3, 3), (4, 4, 4), (5, 3, 2), (3, 3, 3, 1)])
def test_zigzag_mlp_attains_the_1d_maximum_by_dense_sampling(widths):
    model = regions.zigzag_mlp(widths)
    dense, _ = _dense_count(model, [0.0], [1.0], 400_001)
    assert regions.count_regions_1d(model, [0.0], [1.0]).count == dense == regions.max_regions_1d(widths)
    np.testing.assert_array_equal(model[0].weight.detach().numpy(), regions.zigzag_mlp(widths)[0].weight.detach().numpy())


def test_zigzag_mlp_bad_widths():
    with pytest.raises(ValueError, match="widths"):
        regions.zigzag_mlp((2, 4))
    with pytest.raises(ValueError, match=r"widths\[0\]"):
        regions.zigzag_mlp((0,))
