"""Oracle tests for tdlcourse.infotheory: binary symmetric channel (exact table, exact empirical
sample, random samples), independence, invertible maps, and information-plane identities."""

import math

import numpy as np
import pytest
import torch

from tdlcourse import infotheory as it

BSC = 1 - (-(0.1 * math.log2(0.1) + 0.9 * math.log2(0.9)))  # 1 - H_2(0.1)


def test_bsc_reference_value_exact_table():
    assert BSC == pytest.approx(0.531004, abs=5e-7)
    p = np.array([[0.45, 0.05], [0.05, 0.45]])
    assert it.mutual_information_joint(p) == pytest.approx(0.531004, abs=5e-7)
    assert it.mutual_information_joint(p) == pytest.approx(BSC, rel=1e-13)


def test_joint_closed_forms():
    assert it.mutual_information_joint(np.outer([0.2, 0.8], [0.1, 0.6, 0.3])) == pytest.approx(0.0, abs=1e-15)
    # Y = X: I = H(X)
    px = np.array([0.5, 0.25, 0.125, 0.125])
    assert it.mutual_information_joint(np.diag(px)) == pytest.approx(1.75, rel=1e-14)


def test_bsc_exact_empirical_sample():
    # 100 samples in exactly the channel's proportions: the plug-in value is the exact MI
    x = np.array([0] * 50 + [1] * 50)
    y = np.array([0] * 45 + [1] * 5 + [0] * 5 + [1] * 45)
    assert it.mutual_information_discrete(x, y) == pytest.approx(BSC, rel=1e-12)


def test_bsc_random_samples_within_tolerance():
    rng = np.random.default_rng(0)
    n = 200_000
    x = rng.integers(0, 2, n)
    y = x ^ (rng.random(n) < 0.1)
    # sd of the plug-in estimate ~ sqrt(Var[log2 p(x,y)/(p(x)p(y))] / n) = 0.0021; allow 5 sd
    assert it.mutual_information_discrete(x, y) == pytest.approx(BSC, abs=0.011)
    # the same through the binned estimator: continuous x in [0, 1), 2 bins <=> the bit
    u = (x + rng.random(n)) / 2
    assert it.mutual_information_binned(u, y, bins=2, value_range=(0, 1)) == pytest.approx(
        it.mutual_information_discrete(x, y), rel=1e-12)


def test_independent_variables():
    # exact product sample: every (x, y) pair once -> exactly 0
    x, y = np.meshgrid(np.arange(5), np.arange(7))
    assert it.mutual_information_discrete(x.ravel(), y.ravel()) == pytest.approx(0.0, abs=1e-12)
    # random independent samples: within the plug-in bias (K_xy - K_x - K_y + 1) / (2 n ln 2) + noise
    rng = np.random.default_rng(1)
    n = 50_000
    a, b = rng.normal(size=(n, 2)), rng.integers(0, 4, n)
    mi = it.mutual_information_binned(a, b, bins=5)
    bias = (25 * 4 - 25 - 4 + 1) / (2 * n * math.log(2))
    assert 0 <= mi < 4 * bias


def test_invertible_map_gives_entropy():
    rng = np.random.default_rng(2)
    x = rng.integers(0, 16, 5000)
    perm = rng.permutation(16)
    hx = it.entropy_discrete(x)
    assert it.mutual_information_discrete(x, perm[x]) == pytest.approx(hx, rel=1e-12)
    # continuous: y = 3 x + 1 binned over its own range puts every point in the same bin index
    t = rng.uniform(-1, 1, size=(3000, 2))
    tb = it.bin_activations(t, 10)
    np.testing.assert_array_equal(it.bin_activations(3 * t + 1, 10), tb)
    mi = it.mutual_information_binned(t, 3 * t + 1, bins=10, y_bins=10)
    assert mi == pytest.approx(it.entropy_discrete(tb), rel=1e-12)


def test_entropy_closed_forms():
    assert it.entropy_discrete(np.arange(8)) == pytest.approx(3.0, rel=1e-15)
    assert it.entropy_discrete([1, 1, 1]) == 0.0
    assert it.entropy_discrete(torch.tensor([0, 0, 1, 2])) == pytest.approx(1.5, rel=1e-15)
    rows = np.array([[0, 1], [0, 1], [1, 0], [1, 1]])  # rows are symbols: 3 of them, p = 1/2, 1/4, 1/4
    assert it.entropy_discrete(rows) == pytest.approx(1.5, rel=1e-15)


def test_bin_activations():
    t = np.array([[-1.0, 0.0], [0.49, 1.0], [0.51, -0.2]])
    # range [-1, 1], 2 bins: inner edge 0 (a value on an edge goes to the upper bin)
    np.testing.assert_array_equal(it.bin_activations(t, 2), [[0, 1], [1, 1], [1, 0]])
    np.testing.assert_array_equal(it.bin_activations(t, [-1.0, 0.5, 1.0]), [[0, 0], [0, 1], [1, 0]])
    # full edges as numpy.histogram: same bins as np.histogram counts
    edges = np.linspace(-1, 1, 7)
    np.testing.assert_array_equal(np.bincount(it.bin_activations(t.ravel(), edges), minlength=6),
                                  np.histogram(t.ravel(), edges)[0])
    np.testing.assert_array_equal(it.bin_activations(t, 4, value_range=(-2, 2)), [[1, 2], [2, 3], [2, 1]])
    np.testing.assert_array_equal(it.bin_activations(np.ones(4), 30), np.zeros(4))


def test_information_plane_identities_and_recorder():
    rng = np.random.default_rng(3)
    n = 256
    x_ids = np.arange(n)
    y = rng.integers(0, 2, n)
    distinct = rng.normal(size=(n, 3))             # all rows distinct at fine binning
    constant = np.zeros((n, 4))
    label_copy = np.stack([y, 1 - y], 1).astype(float)
    epochs = [[distinct, constant, label_copy], [torch.as_tensor(distinct) * 2, constant + 1, label_copy]]
    res = it.information_plane(epochs, x_ids, y, bins=10_000)
    assert res.i_xt.shape == res.i_ty.shape == (2, 3)
    assert res.h_x == pytest.approx(8.0) and res.h_y == pytest.approx(it.entropy_discrete(y))
    # T = identity of X: I(X;T) = H(X), I(T;Y) = H(Y); constant T: 0 and 0; T = copy of Y: H(Y), H(Y)
    np.testing.assert_allclose(res.i_xt[:, 0], 8.0, rtol=1e-12)
    np.testing.assert_allclose(res.i_ty[:, 0], res.h_y, rtol=1e-12)
    np.testing.assert_allclose(res.i_xt[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(res.i_ty[:, 1], 0.0, atol=1e-12)
    np.testing.assert_allclose(res.i_xt[:, 2], res.h_y, rtol=1e-12)
    np.testing.assert_allclose(res.i_ty[:, 2], res.h_y, rtol=1e-12)
    np.testing.assert_array_equal(res.n_symbols[:, 1:], [[1, 2], [1, 2]])
    # data processing: I(T;Y) <= I(X;T) when T is a function of X
    assert np.all(res.i_ty <= res.i_xt + 1e-12)
    rec = it.InformationPlane(x_ids, y, bins=10_000)
    for layers in epochs:
        rec.record(layers)
    r2 = rec.result()
    np.testing.assert_array_equal(r2.i_xt, res.i_xt)
    np.testing.assert_array_equal(r2.i_ty, res.i_ty)


def test_information_plane_coarse_binning_loses_information():
    rng = np.random.default_rng(4)
    n = 512
    t = np.tanh(rng.normal(size=(n, 2)) * 3)
    y = (t[:, 0] > 0).astype(int)
    fine = it.information_plane([[t]], np.arange(n), y, bins=1000, value_range=(-1, 1))
    coarse = it.information_plane([[t]], np.arange(n), y, bins=2, value_range=(-1, 1))
    assert coarse.i_xt[0, 0] <= 2.0 + 1e-12 < fine.i_xt[0, 0] <= math.log2(n) + 1e-12
    assert coarse.i_ty[0, 0] == pytest.approx(it.entropy_discrete(y), rel=1e-12)


def test_bad_input():
    with pytest.raises(ValueError, match="same number"):
        it.mutual_information_discrete([0, 1], [0, 1, 1])
    with pytest.raises(ValueError, match="sum to 1"):
        it.mutual_information_joint([[0.5, 0.6], [0.0, 0.0]])
    with pytest.raises(ValueError, match="p_xy"):
        it.mutual_information_joint([[-0.1, 1.1]])
    with pytest.raises(ValueError, match="bins"):
        it.mutual_information_binned(np.ones((3, 2)), [0, 1, 0], bins=0)
    with pytest.raises(ValueError, match="bins"):
        it.bin_activations(np.ones(3), [1.0, 0.5])
    with pytest.raises(ValueError, match="bins"):
        it.bin_activations(np.ones(3), [1.0])
    with pytest.raises(ValueError, match="labels"):
        it.entropy_discrete([])
    with pytest.raises(ValueError, match="rows"):
        it.information_plane([[np.ones((4, 2))]], np.arange(5), np.zeros(5))
    with pytest.raises(ValueError, match="record"):
        it.InformationPlane(np.arange(3), [0, 1, 0]).result()


# ----------------------------------------------------------------------------- chapter 12 additions

def _h2(q):
    return -(q * math.log2(q) + (1 - q) * math.log2(1 - q))


def test_markov_chain_bsc_cascade_closed_form():
    bsc = lambda q: np.array([[1 - q, q], [q, 1 - q]])  # noqa: E731
    ixy, ixz = it.markov_chain_information([0.5, 0.5], bsc(0.1), bsc(0.2))
    assert isinstance(ixy, float) and isinstance(ixz, float)
    assert ixy == pytest.approx(0.531004, abs=5e-7)
    assert ixy == pytest.approx(1 - _h2(0.1), rel=1e-12)
    assert ixz == pytest.approx(1 - _h2(0.1 * 0.8 + 0.9 * 0.2), rel=1e-12)  # the cascade is BSC(0.26)


def test_markov_chain_permutation_and_constant_channels():
    rng = np.random.default_rng(5)
    px = rng.dirichlet(np.ones(4))
    w = rng.dirichlet(np.ones(3), size=4)
    ixy, ixz = it.markov_chain_information(px, w, np.eye(3)[[2, 0, 1]])
    assert ixz == pytest.approx(ixy, rel=1e-12)
    _, ixz0 = it.markov_chain_information(px, w, np.tile([0.2, 0.5, 0.3], (3, 1)))
    assert ixz0 == pytest.approx(0.0, abs=1e-12)


def test_markov_chain_random_chains_brute_force_and_dpi():
    rng = np.random.default_rng(6)
    for _ in range(20):
        kx, ky, kz = rng.integers(2, 7, 3)
        px = rng.dirichlet(np.ones(kx))
        wxy, wyz = rng.dirichlet(np.ones(ky), size=kx), rng.dirichlet(np.ones(kz), size=ky)
        ixy, ixz = it.markov_chain_information(px, wxy, wyz)
        # brute force over the triples (x, y, z): p(x, z) = sum_y p(x) w(y|x) w(z|y)
        pxz = np.zeros((kx, kz))
        for i in range(kx):
            for j in range(ky):
                for l in range(kz):
                    pxz[i, l] += px[i] * wxy[i, j] * wyz[j, l]
        pz = pxz.sum(0)
        want = sum(pxz[i, l] * math.log2(pxz[i, l] / (px[i] * pz[l])) for i in range(kx) for l in range(kz))
        assert ixz == pytest.approx(want, rel=1e-10, abs=1e-13)
        assert ixz <= ixy + 1e-12


def test_symmetric_channel_closed_form_against_table():
    assert it.symmetric_channel_information(2, 0.1) == pytest.approx(0.531004, abs=5e-7)
    rng = np.random.default_rng(7)
    for k in range(2, 7):
        for q in (0.0, rng.uniform(0, 1), (k - 1) / k, 1.0):
            table = np.full((k, k), q / (k - 1) / k)
            np.fill_diagonal(table, (1 - q) / k)
            assert it.symmetric_channel_information(k, q) == pytest.approx(
                it.mutual_information_joint(table), rel=1e-12, abs=1e-12)
    assert it.symmetric_channel_information(4, 0.0) == pytest.approx(2.0)
    assert it.symmetric_channel_information(4, 0.75) == pytest.approx(0.0, abs=1e-12)


def test_channel_check_within_its_standard_error():
    for k, q, n in ((2, 0.1, 100_000), (3, 0.3, 50_000), (6, 0.05, 50_000)):
        c = it.channel_check(q, n, k=k, seed=k)
        assert c.ok and abs(c.z) < 4 and c.exact == pytest.approx(it.symmetric_channel_information(k, q))
    # the reported standard error is the real spread of the estimate: 600 replications (the sd of a
    # sample sd is then 2.9%, so +-12% is 4 sd; E[i^2] in place of Var[i] would read about 0.71)
    est = np.array([it.channel_check(0.02, 4000, k=2, seed=s).estimate for s in range(600)])
    se = it.channel_check(0.02, 4000, k=2).stderr
    assert 0.88 < est.std(ddof=1) / se < 1.12
    # and the bias term: k = 6, n = 1000, the mean of 600 replications sits within 4 of its standard
    # errors of exact + bias, while the bias itself is about 8 of them
    est = np.array([it.channel_check(0.2, 1000, k=6, seed=s).estimate for s in range(600)])
    c = it.channel_check(0.2, 1000, k=6)
    se_mean = c.stderr / np.sqrt(600)
    assert c.bias > 5 * se_mean
    assert abs(est.mean() - c.exact - c.bias) < 4 * se_mean


def test_binned_entropy():
    n = 400
    t = (np.arange(n) + 0.5) / n
    assert it.binned_entropy(t, 4) == pytest.approx(2.0, rel=1e-14)  # 100 points in each of 4 bins
    rng = np.random.default_rng(8)
    u = rng.normal(size=(300, 3))
    assert it.binned_entropy(u, 7) == pytest.approx(it.entropy_discrete(it.bin_activations(u, 7)), rel=1e-14)
    assert it.binned_entropy(u, 7) == pytest.approx(it.mutual_information_binned(u, np.arange(300), 7), rel=1e-12)
    with pytest.raises(ValueError, match="bins"):
        it.binned_entropy(u, 1)


def test_row_codes_match_unique_rows():
    rng = np.random.default_rng(9)
    for d, nb in ((12, 100), (3, 30), (12, 2), (1, 10)):  # (12, 100): the mixed-radix code must re-map
        b = it.bin_activations(rng.normal(size=(2000, d)), nb)
        codes = it._row_codes(b, nb)
        ref = np.unique(b, axis=0, return_inverse=True)[1].reshape(-1)
        np.testing.assert_array_equal(np.unique(codes, return_inverse=True)[1].reshape(-1), ref)


def _tiny(seed, dtype=torch.float64):
    from tdlcourse import models
    return models.mlp(4, [5, 3], 2, activation="tanh", seed=seed, dtype=dtype)


def _forward_layers(model, x):
    outs, h = [], x
    for m in model:
        h = m(h)
        if not isinstance(m, torch.nn.Linear):
            outs.append(h)
    outs.append(torch.softmax(h, dim=-1))
    return [o.detach().float().numpy() for o in outs]


def test_record_activations_against_sequential_fits():
    import copy

    from tdlcourse.train import fit
    rng = np.random.default_rng(10)
    x = torch.as_tensor(rng.choice([-1.0, 1.0], size=(64, 4)))
    y = torch.as_tensor((x.sum(1) > 0).long())
    data = (x, y)
    ms = [_tiny(s) for s in range(3)]
    init = [copy.deepcopy(m) for m in ms]
    tr = it.record_activations(ms, data, x, [0, 1, 4, 6], steps=6, lr=0.1, optimizer="adam", progress=False)
    assert tr.names == ("tanh 1", "tanh 2", "output")
    assert [a.shape for a in tr.layers] == [(3, 4, 64, 5), (3, 4, 64, 3), (3, 4, 64, 2)]
    np.testing.assert_array_equal(tr.steps, [0, 1, 4, 6])
    for k in range(3):
        for l, want in enumerate(_forward_layers(init[k], x)):
            np.testing.assert_allclose(tr.layers[l][k, 0], want, rtol=1e-6, atol=1e-7)
        for e, s in ((1, 1), (2, 4)):  # the same model trained alone for s steps
            alone = copy.deepcopy(init[k])
            fit(alone, data, steps=s, lr=0.1, optimizer="adam", progress=False)
            for l, want in enumerate(_forward_layers(alone, x)):
                np.testing.assert_allclose(tr.layers[l][k, e], want, rtol=1e-5, atol=1e-6)
        for l, want in enumerate(_forward_layers(ms[k], x)):  # the models are trained in place
            np.testing.assert_allclose(tr.layers[l][k, -1], want, rtol=1e-6, atol=1e-7)
    assert len(tr.histories) == 3 and tr.histories[0].eval_step == list(range(1, 7))


def test_record_activations_bad_input():
    x = torch.ones(8, 4, dtype=torch.float64)
    data = (x, torch.zeros(8, dtype=torch.long))
    with pytest.raises(ValueError, match="record_steps"):
        it.record_activations([_tiny(0)], data, x, [0, 3, 3], steps=4, progress=False)
    with pytest.raises(ValueError, match="never reached"):
        it.record_activations([_tiny(0)], data, x, [0, 9], steps=4, progress=False)
    with pytest.raises(ValueError, match="eval_every"):
        it.record_activations([_tiny(0)], data, x, [0, 2], steps=4, eval_every=2, progress=False)
    with pytest.raises(ValueError, match="Sequential"):
        it.record_activations([torch.nn.Linear(4, 2)], data, x, [0], steps=1, progress=False)
    with pytest.raises(ValueError, match="output"):
        it.record_activations([_tiny(0)], data, x, [0], steps=1, output="probs", progress=False)


def _fake_trace(rng, k=2, e=4, n=128):
    layers = (np.tanh(rng.normal(size=(k, e, n, 3)) * np.arange(1, e + 1)[None, :, None, None]),
              np.maximum(rng.normal(size=(k, e, n, 2)), 0) * np.arange(1, e + 1)[None, :, None, None])
    return it.ActivationTrace(steps=np.arange(e), layers=tuple(a.astype(np.float32) for a in layers),
                              names=("tanh 1", "relu 2"), histories=[])


def test_information_planes_match_information_plane():
    rng = np.random.default_rng(11)
    n = 128
    tr = _fake_trace(rng, n=n)
    x_ids, y = np.arange(n), rng.integers(0, 2, n)
    ps = it.information_planes(tr, x_ids, y, bins=(2, 10), value_range=[(-1, 1), "run"])
    assert ps.i_xt.shape == (2, 2, 4, 2) and ps.bins == (2, 10) and ps.h_x == pytest.approx(7.0)
    for b, nb in enumerate((2, 10)):
        for k in range(2):
            run_range = (float(tr.layers[1][k].min()), float(tr.layers[1][k].max()))
            for l, r in ((0, (-1, 1)), (1, run_range)):
                ref = it.information_plane([[tr.layers[l][k, e]] for e in range(4)], x_ids, y, bins=nb, value_range=r)
                np.testing.assert_allclose(ps.i_xt[b, k, :, l], ref.i_xt[:, 0], rtol=1e-12)
                np.testing.assert_allclose(ps.i_ty[b, k, :, l], ref.i_ty[:, 0], rtol=1e-12, atol=1e-12)
                np.testing.assert_array_equal(ps.n_symbols[b, k, :, l], ref.n_symbols[:, 0])
    # "epoch": each record's own range, as information_plane's default; distinct inputs: I(X;T) = H(T_bin)
    pe = it.information_planes(tr, x_ids, y, bins=(10,), value_range="epoch")
    for e in range(4):
        assert pe.i_xt[0, 1, e, 0] == pytest.approx(it.binned_entropy(tr.layers[0][1, e], 10), rel=1e-12)
    # a fixed grid shared by all layers, and I(T;Y) <= I(X;T) for a T that is a function of X
    pf = it.information_planes(tr, x_ids, y, bins=(5,), value_range=(0.0, 1.0))
    assert np.all(pf.i_ty <= pf.i_xt + 1e-12)


def test_information_planes_bad_input():
    rng = np.random.default_rng(12)
    tr = _fake_trace(rng, n=16)
    with pytest.raises(ValueError, match="bins"):
        it.information_planes(tr, np.arange(16), np.zeros(16), bins=(1, 10))
    with pytest.raises(ValueError, match="value_range"):
        it.information_planes(tr, np.arange(16), np.zeros(16), value_range=["run"])
    with pytest.raises(ValueError, match="value_range"):
        it.information_planes(tr, np.arange(16), np.zeros(16), value_range="all")


def test_compression_fraction():
    c = it.compression_fraction([1.0, 3.0, 2.0])
    assert c.fraction == pytest.approx(1 / 3) and c.peak == 3.0 and c.peak_index == 1
    assert c.initial == 1.0 and c.final == 2.0 and c.rise == 2.0
    a = np.array([[[0.0, 1.0, 2.0], [4.0, 1.0, 1.0]], [[0.0, 0.0, 0.0], [2.0, 2.0, 0.5]]])
    c = it.compression_fraction(a)
    np.testing.assert_allclose(c.fraction, [[0.0, 0.75], [0.0, 0.75]])
    np.testing.assert_array_equal(c.peak_index, [[2, 0], [0, 0]])
    with pytest.raises(ValueError, match="i_xt"):
        it.compression_fraction([1.0, -0.5])
    with pytest.raises(ValueError, match="i_xt"):
        it.compression_fraction(np.zeros((2, 0)))


def test_chain_and_channel_bad_input():
    bsc = [[0.9, 0.1], [0.1, 0.9]]
    with pytest.raises(ValueError, match="p_x"):
        it.markov_chain_information([0.5, 0.6], bsc, bsc)
    with pytest.raises(ValueError, match=r"w_xy\[0, 1\]"):
        it.markov_chain_information([0.5, 0.5], [[1.1, -0.1], [0.1, 0.9]], bsc)
    with pytest.raises(ValueError, match="w_xy row 1"):
        it.markov_chain_information([0.5, 0.5], [[0.9, 0.1], [0.2, 0.9]], bsc)
    with pytest.raises(ValueError, match="w_yz has 3 rows, expected k_y = 2"):
        it.markov_chain_information([0.5, 0.5], bsc, np.full((3, 2), 0.5))
    with pytest.raises(ValueError, match="w_xy has 3 rows"):
        it.markov_chain_information([0.5, 0.5], np.full((3, 2), 0.5), bsc)
    with pytest.raises(ValueError, match="k"):
        it.symmetric_channel_information(1, 0.1)
    with pytest.raises(ValueError, match="q"):
        it.symmetric_channel_information(2, 1.5)
    with pytest.raises(ValueError, match="q"):
        it.channel_check(0.0, 100)
    with pytest.raises(ValueError, match="n"):
        it.channel_check(0.1, 1)
