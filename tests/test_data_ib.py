"""Oracle tests for the 12-bit information-bottleneck task (tdlcourse.data.ib12*): the icosahedron's
geometry, the enumeration of the 4096 patterns, the label balance, the labels recomputed by brute
force from the documented formula, and their invariance under every symmetry of the icosahedron."""

import itertools

import numpy as np
import pytest
import torch

from tdlcourse import data


def _symmetries(p: np.ndarray) -> list[np.ndarray]:
    """Every permutation pi of the 12 vertices that preserves all dot products (p_pi(i) . p_pi(j) =
    p_i . p_j), found by brute force over the images of two adjacent vertices and a third one: these
    are the 120 rotations and reflections of the icosahedron (each is an orthogonal map of R^3)."""
    g = p @ p.T
    nbr = np.isclose(g, 1 / np.sqrt(5))
    a, b = 0, int(np.argmax(nbr[0]))
    c = int(next(j for j in range(12) if nbr[a, j] and nbr[b, j]))
    base = np.stack([p[a], p[b], p[c]])
    perms = []
    for ia, ib, ic in itertools.permutations(range(12), 3):
        if not (np.isclose(g[ia, ib], g[a, b]) and np.isclose(g[ia, ic], g[a, c]) and np.isclose(g[ib, ic], g[b, c])):
            continue
        r = np.linalg.solve(base, np.stack([p[ia], p[ib], p[ic]]))  # base @ r = images: x -> x @ r
        img = p @ r
        pi = [int(np.argmin(np.linalg.norm(p - v, axis=1))) for v in img]
        if np.allclose(p[pi], img, atol=1e-9):
            perms.append(np.array(pi))
    return perms


def test_points_are_a_regular_icosahedron():
    p = data.ib12_points()
    assert p.shape == (12, 3)
    np.testing.assert_allclose(np.linalg.norm(p, axis=1), 1.0, rtol=1e-14)
    g = p @ p.T
    off = g[~np.eye(12, dtype=bool)]
    # each vertex: 5 neighbours at +1/sqrt5, 5 at -1/sqrt5, 1 antipode at -1
    for i in range(12):
        row = np.delete(g[i], i)
        assert np.isclose(row, 1 / np.sqrt(5)).sum() == 5
        assert np.isclose(row, -1 / np.sqrt(5)).sum() == 5
        assert np.isclose(row, -1.0).sum() == 1
    assert np.all(np.isclose(np.abs(off), 1 / np.sqrt(5)) | np.isclose(off, -1.0))
    np.testing.assert_allclose(p.sum(axis=0), 0.0, atol=1e-14)


def test_symmetry_group_has_120_elements():
    perms = _symmetries(data.ib12_points())
    assert len(perms) == 120  # the full icosahedral group I_h = I x {+-1}
    assert len({tuple(pi) for pi in perms}) == 120


def test_patterns_enumerate_all_codes():
    bits = data.ib12_patterns()
    assert bits.shape == (4096, 12) and bits.dtype == np.int64
    assert set(np.unique(bits)) == {0, 1}
    np.testing.assert_array_equal(bits @ (1 << np.arange(12)), np.arange(4096))


def test_labels_brute_force_and_balance():
    y = data.ib12_labels()
    p = data.ib12_points()
    bits = data.ib12_patterns()
    g = p @ p.T
    # the docstring's exact form, f = n/2 + a - (b_+ - b_-)/sqrt5, from integer pair counts
    anti, plus, minus = (np.isclose(g, v).astype(np.int64) for v in (-1.0, 1 / np.sqrt(5), -1 / np.sqrt(5)))
    pairs = lambda m: ((bits @ m) * bits).sum(axis=1) // 2  # noqa: E731 - marked pairs of each kind
    assert np.all(anti.sum(1) == 1) and np.all(plus.sum(1) == 5) and np.all(minus.sum(1) == 5)
    f = bits.sum(axis=1) / 2 + pairs(anti) - (pairs(plus) - pairs(minus)) / np.sqrt(5)
    want = (f > 4.525).astype(np.int64)
    gaps = np.abs(f - 4.525)
    np.testing.assert_array_equal(y, want)
    assert gaps.min() > 0.0249  # no label is decided by rounding
    assert y.dtype == np.int64 and int(y.sum()) == 1996  # the documented balance, 48.73%
    n = bits.sum(axis=1)
    # few marked points: always 0; many: always 1; the dipole decides for 5 to 8 marked points
    assert np.all(y[n <= 4] == 0) and np.all(y[n >= 9] == 1)
    for k in (5, 6, 7, 8):
        assert 0 < y[n == k].mean() < 1


def test_labels_invariant_under_every_symmetry():
    y = data.ib12_labels()
    bits = data.ib12_patterns()
    weights = 1 << np.arange(12)
    perms = _symmetries(data.ib12_points())
    for pi in perms:
        moved = bits[:, pi] @ weights  # the code of the rotated pattern
        np.testing.assert_array_equal(y[moved], y)
    # not a function of the count alone: the geometry matters
    n = bits.sum(axis=1)
    assert any(len(set(y[n == k])) == 2 for k in range(13))


def test_labels_change_under_a_non_symmetry():
    # a transposition of two neighbouring vertices is not a symmetry (it breaks the dot products): the
    # test of invariance above could not pass for an arbitrary permutation
    y = data.ib12_labels()
    bits = data.ib12_patterns()
    j = int(np.argmax(np.isclose(data.ib12_points() @ data.ib12_points()[0], 1 / np.sqrt(5))))
    pi = np.arange(12)
    pi[[0, j]] = [j, 0]
    assert not any(np.array_equal(pi, q) for q in _symmetries(data.ib12_points()))
    assert np.any(y[bits[:, pi] @ (1 << np.arange(12))] != y)


def test_split():
    d = data.ib12(0.85, seed=3)
    assert d.x_train.shape == (3482, 12) and d.x_test.shape == (614, 12)
    assert d.num_classes == 2 and d.name == "ib12"
    assert d.x_train.dtype == torch.float32 and d.y_train.dtype == torch.long
    x = torch.cat([d.x_train, d.x_test])
    assert set(torch.unique(x).tolist()) == {-1.0, 1.0}
    codes = (((x + 1) / 2).long() * (1 << torch.arange(12))).sum(1)
    assert sorted(codes.tolist()) == list(range(4096))  # every pattern exactly once
    y = torch.cat([d.y_train, d.y_test])
    np.testing.assert_array_equal(y.numpy(), data.ib12_labels()[codes.numpy()])
    again = data.ib12(0.85, seed=3)
    assert torch.equal(again.x_train, d.x_train)
    assert not torch.equal(data.ib12(0.85, seed=4).x_train, d.x_train)
    full = data.ib12(1.0, dtype=torch.float64)
    assert full.x_train.shape == (4096, 12) and len(full.x_test) == 0 and full.x_train.dtype == torch.float64


def test_bad_input():
    with pytest.raises(ValueError, match="train_fraction"):
        data.ib12(0.0)
    with pytest.raises(ValueError, match="train_fraction"):
        data.ib12(1.5)
