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
