"""Oracle tests for tdlcourse.parity: a brute-force loop over all 2^n targets with autograd, and the
bound Var <= b_max^2 G^2 / 2^n of Shalev-Shwartz, Shamir, Shammah 2017 (Thm 1)."""

import itertools

import pytest
import torch
from torch import nn

from tdlcourse import parity


def _mlp(n, width, act, seed, dtype=torch.float64, out_shape_1=True):
    torch.manual_seed(seed)
    layers = [nn.Linear(n, width, dtype=dtype), act(), nn.Linear(width, width, dtype=dtype), act(),
              nn.Linear(width, 1, dtype=dtype)]
    if not out_shape_1:
        layers.append(nn.Flatten(0))
    return nn.Sequential(*layers)


def _bruteforce(model, n, loss):
    """Loop over every subset S: full-batch loss on all 2^n inputs, autograd gradient."""
    X = parity.parity_inputs(n, torch.float64)
    params = [p for p in model.parameters()]
    grads = []
    for r in range(n + 1):
        for S in itertools.combinations(range(n), r):
            y = X[:, list(S)].prod(dim=1) if S else torch.ones(X.shape[0], dtype=torch.float64)
            f = model(X).reshape(-1)
            if loss == "squared":
                L = (0.5 * (f - y) ** 2).mean()
            else:
                L = nn.functional.softplus(-y * f).mean()
            grads.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(L, params)]))
    G = torch.stack(grads)
    mean = G.mean(dim=0)
    var = ((G - mean) ** 2).sum(dim=1).mean()
    # G^2 = E_x ||df(x)/dw||^2 by a per-input loop
    g2 = 0.0
    for x in X:
        g = torch.autograd.grad(model(x[None]).reshape(()), params)
        g2 += sum(float((t ** 2).sum()) for t in g)
    return float(var), float(mean.norm()), float((G ** 2).sum(dim=1).mean()), g2 / X.shape[0], G.shape[0]


@pytest.mark.parametrize("loss", ["squared", "logistic"])
@pytest.mark.parametrize("act,n,seed", [(nn.Tanh, 5, 0), (nn.ReLU, 4, 1), (nn.Tanh, 6, 2)])
def test_matches_bruteforce_loop_over_targets(loss, act, n, seed):
    model = _mlp(n, 6, act, seed)
    res = parity.parity_gradient_variance(model, n, loss=loss, chunk=7)  # odd chunk: exercise chunking
    var, mean_norm, mean_sq, g2, n_targets = _bruteforce(model, n, loss)
    assert res.n_targets == n_targets == 2 ** n and res.n == n and res.loss == loss
    assert res.variance == pytest.approx(var, rel=1e-9)
    assert res.mean_grad_norm == pytest.approx(mean_norm, rel=1e-9)
    assert res.mean_sq_grad_norm == pytest.approx(mean_sq, rel=1e-9)
    assert res.g2 == pytest.approx(g2, rel=1e-9)
    b_max2 = 1.0 if loss == "squared" else 0.25
    assert res.bound == pytest.approx(b_max2 * g2 / 2 ** n, rel=1e-9)
    assert 0 < res.variance <= res.bound
    assert res.n_params == sum(p.numel() for p in model.parameters())


def test_bound_holds_and_variance_shrinks_with_n():
    ratios = []
    for n in (2, 4, 6, 8, 10):
        model = _mlp(n, 16, nn.Tanh, seed=n)
        res = parity.parity_gradient_variance(model, n)
        assert res.variance <= res.bound
        ratios.append(res.variance / res.g2)
    # Var / G^2 <= 2^-n: it falls by about 4x per two extra bits
    assert all(r <= 2.0 ** -n for r, n in zip(ratios, (2, 4, 6, 8, 10)))
    assert ratios[-1] < ratios[0] / 100


def test_float32_model_and_1d_output():
    m64 = _mlp(5, 8, nn.ReLU, 3, out_shape_1=False)
    m32 = _mlp(5, 8, nn.ReLU, 3, dtype=torch.float32, out_shape_1=False)
    with torch.no_grad():
        for p, q in zip(m32.parameters(), m64.parameters()):
            p.copy_(q)
    r64 = parity.parity_gradient_variance(m64, 5)
    r32 = parity.parity_gradient_variance(m32, 5)
    assert r32.variance == pytest.approx(r64.variance, rel=1e-4)
    assert r32.g2 == pytest.approx(r64.g2, rel=1e-5)


def test_model_untouched():
    model = _mlp(4, 5, nn.Tanh, 4)
    model.train()
    before = [p.detach().clone() for p in model.parameters()]
    parity.parity_gradient_variance(model, 4)
    assert model.training
    assert all(torch.equal(p, q) and p.grad is None for p, q in zip(model.parameters(), before))


def test_inputs():
    X = parity.parity_inputs(3)
    assert X.shape == (8, 3) and torch.equal(X[0], torch.ones(3))
    assert len({tuple(r.tolist()) for r in X}) == 8 and set(X.unique().tolist()) == {-1.0, 1.0}


def test_bad_input():
    model = _mlp(4, 5, nn.Tanh, 0)
    with pytest.raises(ValueError, match="n=13"):
        parity.parity_gradient_variance(_mlp(13, 2, nn.Tanh, 0), 13)
    with pytest.raises(ValueError, match="n=0"):
        parity.parity_gradient_variance(model, 0)
    with pytest.raises(ValueError, match="loss"):
        parity.parity_gradient_variance(model, 4, loss="hinge")
    with pytest.raises(ValueError, match="n=5"):
        parity.parity_gradient_variance(model, 5)   # model takes 4 inputs
    with pytest.raises(ValueError, match="one number"):
        parity.parity_gradient_variance(nn.Sequential(nn.Linear(4, 3)), 4)


# ------------------------------------------------------------------ chapter 11 additions (lab 11, hw11)

import math  # noqa: E402

import numpy as np  # noqa: E402


def _tanh_bruteforce(W, b, a):
    """hw11's tiny net in numpy: closed-form per-input gradients, a loop over all 2^n subsets S."""
    W, b, a = (np.asarray(v, float) for v in (W, b, a))
    n = W.shape[1]
    X = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    t = np.tanh(X @ W.T + b)
    s = a * (1 - t ** 2)                                   # df/dz_j
    g = np.concatenate([(s[:, :, None] * X[:, None, :]).reshape(len(X), -1), s, t], axis=1)
    f = t @ a
    grads = []
    for S in range(2 ** n):
        chi = np.prod(X[:, ((S >> np.arange(n)) & 1).astype(bool)], axis=1)
        grads.append(((f - chi)[:, None] * g).mean(axis=0))
    grads = np.array(grads)
    return float(((grads - grads.mean(0)) ** 2).sum(1).mean()), float((g ** 2).sum(1).mean() / 2 ** n)


@pytest.mark.parametrize("n,m,seed", [(1, 2, 0), (2, 3, 1), (3, 2, 2), (5, 4, 3), (7, 3, 4)])
def test_tanh_net_against_numpy_bruteforce(n, m, seed):
    rng = np.random.default_rng(seed)
    W, b, a = rng.normal(size=(m, n)), rng.normal(size=m), rng.normal(size=m)
    var, bound = _tanh_bruteforce(W, b, a)
    assert parity.tanh_net_parity_variance(W, b, a) == pytest.approx(var, rel=1e-10)
    assert parity.tanh_net_parity_bound(W, b, a) == pytest.approx(bound, rel=1e-10)
    assert var <= bound * (1 + 1e-12)
    assert isinstance(parity.tanh_net_parity_variance(W, b, a), float)


def test_tanh_net_closed_form_at_zero_weights():
    # W = 0, b = 0: tanh(0) = 0, so df/dW_jk = a_j x_k, df/db_j = a_j, df/da_j = 0 and ||g(x)||^2 = (n + 1) ||a||^2
    # for every x: the bound is G^2 / 2^n and the variance G^2 / 2^n - ||g(1)||^2 / 4^n.
    n, a = 4, np.array([1.0, 2.0])
    want_bound = (n + 1) * 5 / 2 ** n
    assert parity.tanh_net_parity_bound(np.zeros((2, n)), np.zeros(2), a) == pytest.approx(want_bound, rel=1e-12)
    assert parity.tanh_net_parity_variance(np.zeros((2, n)), np.zeros(2), a) == pytest.approx(
        (n + 1) * 5 * (2 ** n - 1) / 4 ** n, rel=1e-12)


def test_tanh_net_public_example():
    W = [[0.5, -0.3, 0.2], [0.1, 0.4, -0.6]]
    var, bound = _tanh_bruteforce(W, [0.1, -0.2], [0.7, -0.5])
    assert parity.tanh_net_parity_variance(W, [0.1, -0.2], [0.7, -0.5]) == pytest.approx(var, rel=1e-12)
    assert var == pytest.approx(0.2492229843569749, rel=1e-12)
    assert bound == pytest.approx(0.2859128442947205, rel=1e-12)


def test_variance_bound_matches_result_bound():
    for loss in parity.LOSSES:
        r = parity.parity_gradient_variance(_mlp(4, 5, nn.Tanh, 0), 4, loss)
        assert parity.variance_bound(r.g2, 4, loss) == pytest.approx(r.bound, rel=1e-14)
        assert r.variance <= parity.variance_bound(r.g2, 4, loss)
    assert parity.variance_bound(3.0, 2, "logistic") == pytest.approx(3.0 / 16)


def _walsh(n):
    """All 2^n parities on {-1, 1}^n as rows: orthonormal in L2(uniform)."""
    X = 1.0 - 2.0 * ((np.arange(2 ** n)[:, None] >> np.arange(n)) & 1)
    return np.array([np.prod(X[:, ((S >> np.arange(n)) & 1).astype(bool)], axis=1) for S in range(2 ** n)])


@pytest.mark.parametrize("tau", [0.9, 0.5, 0.45, 0.3, 0.26, 0.2])
def test_sq_max_correlated_is_attained_and_never_exceeded(tau):
    F = _walsh(6)                                     # 64 orthonormal functions
    m = parity.sq_max_correlated(tau)
    assert m * tau * tau < 1 <= (m + 1) * tau * tau   # the largest integer below 1/tau^2
    g = F[:m].sum(0) / math.sqrt(m)                   # ||g|| = 1, <g, f_i> = 1/sqrt(m) for i < m
    corr = F @ g / F.shape[1]
    assert np.sum(np.abs(corr) > tau) == m
    rng = np.random.default_rng(0)
    for _ in range(200):                              # no unit-norm g beats m (Bessel)
        h = rng.normal(size=F.shape[1]) * (rng.random(F.shape[1]) < rng.random())
        w = rng.normal(size=(m + 1, 1)) * 5.0
        h = h + (w * F[rng.choice(64, size=m + 1, replace=False)]).sum(0)  # mass on m + 1 parities
        h = h / math.sqrt(np.mean(h * h))
        assert np.sum(np.abs(F @ h / F.shape[1]) > tau) <= m


def test_sq_query_lower_bound_by_adversary_simulation():
    # The adversary's answer is consistent with every target not more than tau-correlated with the
    # query; the best learner's query eliminates m targets, so q queries leave 2^n - q m candidates.
    n, tau = 5, 0.4
    F = _walsh(n)
    m = parity.sq_max_correlated(tau)
    alive, q = set(range(2 ** n)), 0
    while len(alive) > 1:
        pick = sorted(alive)[:m]
        g = F[pick].sum(0) / math.sqrt(len(pick))
        alive -= {i for i in alive if abs(F[i] @ g / 2 ** n) > tau}
        q += 1
    assert q == parity.sq_query_lower_bound(2 ** n, tau) == math.ceil((2 ** n - 1) / m)
    assert parity.sq_query_lower_bound(1, 0.3) == 0
    assert parity.sq_query_lower_bound(2 ** 100, 0.5) == -(-(2 ** 100 - 1) // 3)   # exact integers
    assert isinstance(parity.sq_query_lower_bound(10, 0.5), int)


def test_parity_task_labels_and_padding():
    full = parity.parity_task(3, 6, n_train=200, n_test=50, seed=1)
    x = full.x_train
    assert torch.all(x[:, 3:] == 0) and torch.all(x[:, :3].abs() == 1)
    assert torch.equal(full.y_train, (x[:, :3].prod(1) < 0).long())
    sp = parity.parity_task(3, 6, n_train=400, n_test=50, sparse=True, seed=1)
    assert torch.all(sp.x_train.abs() == 1)
    # exactly one 3-subset of the 6 columns reproduces the labels
    hits = [S for S in itertools.combinations(range(6), 3)
            if torch.equal(sp.y_train, (sp.x_train[:, list(S)].prod(1) < 0).long())]
    assert len(hits) == 1 and str(list(hits[0])) in sp.name
    assert abs(float(sp.y_train.double().mean()) - 0.5) < 4 * 0.5 / math.sqrt(400)


def test_window_cnn_equals_conv1d():
    net = parity.window_cnn(10, 3, 4, seed=2, dtype=torch.float64)
    conv = nn.Conv1d(1, 4, 3, dtype=torch.float64)
    with torch.no_grad():
        conv.weight.copy_(net[1].weight[:, None, :])
        conv.bias.copy_(net[1].bias)
    x = torch.randn(7, 10, dtype=torch.float64)
    h = torch.relu(conv(x[:, None, :]))                 # [B, C, P]
    want = net[4](h.transpose(1, 2).reshape(7, -1))     # position-major, as Flatten of [B, P, C]
    assert torch.allclose(net(x), want, atol=1e-12)
    assert torch.equal(parity.window_cnn(10, 3, 4, seed=2)[1].weight, parity.window_cnn(10, 3, 4, seed=2)[1].weight)
    assert not torch.equal(parity.window_cnn(10, 3, 4, seed=2)[1].weight, parity.window_cnn(10, 3, 4, seed=3)[1].weight)


def test_chapter11_bad_input():
    with pytest.raises(ValueError, match="tau"):
        parity.sq_query_lower_bound(8, 1.0)
    with pytest.raises(ValueError, match="n_functions"):
        parity.sq_query_lower_bound(0, 0.5)
    with pytest.raises(ValueError, match="b must have shape"):
        parity.tanh_net_parity_variance(np.ones((2, 3)), np.ones(3), np.ones(2))
    with pytest.raises(ValueError, match="W must"):
        parity.tanh_net_parity_bound(np.ones(3), np.ones(3), np.ones(3))
    with pytest.raises(ValueError, match="finite"):
        parity.tanh_net_parity_bound(np.full((1, 2), np.nan), np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="W.shape"):
        parity.tanh_net_parity_variance(np.ones((1, 13)), np.ones(1), np.ones(1))
    with pytest.raises(ValueError, match="g2"):
        parity.variance_bound(-1.0, 3)
    with pytest.raises(ValueError, match="d"):
        parity.parity_task(5, 4, n_train=10, n_test=10)
    with pytest.raises(ValueError, match="k"):
        parity.window_cnn(5, 6, 2)
