"""Oracle tests for tdlcourse.pacbayes: the Gaussian KL against torch.distributions and a Monte
Carlo estimate, the Monte Carlo empirical risk of a stochastic linear classifier against its exact
value (a normal CDF per point), the final bound against a brute force over the prior grid with
``capacity``'s bounds, and the optimizer's contract (decreasing objective, models untouched)."""

import copy
import math

import numpy as np
import pytest
import torch
from torch import nn

from tdlcourse import capacity, pacbayes


# ----------------------------------------------------------------------------- KL

def test_kl_diag_gaussians_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, mp = (torch.randn(20, generator=g, dtype=torch.float64) for _ in range(2))
    sq, sp = (torch.rand(20, generator=g, dtype=torch.float64) + 0.1 for _ in range(2))
    Normal = torch.distributions.Normal
    want = torch.distributions.kl_divergence(Normal(mq, sq), Normal(mp, sp)).sum()
    assert float(pacbayes.kl_diag_gaussians(mq, sq, mp, sp)) == pytest.approx(float(want), rel=1e-12)
    # a scalar prior std broadcasts (the isotropic prior N(w0, lambda I))
    want_iso = torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq),
                                                 torch.distributions.Normal(mp, torch.full_like(mp, 0.3))).sum()
    assert float(pacbayes.kl_diag_gaussians(mq, sq, mp, 0.3)) == pytest.approx(float(want_iso), rel=1e-12)
    assert float(pacbayes.kl_diag_gaussians(mq, sq, mq, sq)) == pytest.approx(0.0, abs=1e-12)


def test_kl_diag_gaussians_monte_carlo():
    mq, sq = torch.tensor([0.3, -1.0, 2.0], dtype=torch.float64), torch.tensor([0.5, 1.2, 0.2], dtype=torch.float64)
    mp, sp = torch.tensor([0.0, 0.5, 1.5], dtype=torch.float64), torch.tensor([1.0, 0.8, 0.6], dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    z = mq + sq * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    logq = torch.distributions.Normal(mq, sq).log_prob(z).sum(1)
    logp = torch.distributions.Normal(mp, sp).log_prob(z).sum(1)
    r = logq - logp
    exact = float(pacbayes.kl_diag_gaussians(mq, sq, mp, sp))
    assert abs(float(r.mean()) - exact) < 4 * float(r.std()) / math.sqrt(r.numel())


def test_kl_diag_gaussians_is_differentiable_and_checks_stds():
    mq = torch.zeros(3, dtype=torch.float64, requires_grad=True)
    kl = pacbayes.kl_diag_gaussians(mq, torch.ones(3, dtype=torch.float64), torch.ones(3, dtype=torch.float64), 2.0)
    kl.backward()
    np.testing.assert_allclose(mq.grad.numpy(), (0 - 1) / 4.0 * np.ones(3))   # d/dmu (mu - mu_p)^2 / (2 s_p^2)
    with pytest.raises(ValueError, match="std_q must be > 0"):
        pacbayes.kl_diag_gaussians(torch.zeros(2), torch.tensor([1.0, 0.0]), torch.zeros(2), 1.0)
    with pytest.raises(ValueError, match="std_p must be > 0"):
        pacbayes.kl_diag_gaussians(torch.zeros(2), torch.ones(2), torch.zeros(2), -1.0)
    with pytest.raises(ValueError, match="broadcast"):
        pacbayes.kl_diag_gaussians(torch.zeros(2), torch.ones(3), torch.zeros(2), 1.0)


def test_prior_grid_and_union_bound_weights():
    assert pacbayes.prior_variance(1) == pytest.approx(0.1 * math.exp(-0.01))
    assert pacbayes.prior_variance(600) == pytest.approx(0.1 * math.exp(-6.0))
    assert sum(6 / (math.pi ** 2 * j * j) for j in range(1, 200_000)) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match="j=0"):
        pacbayes.prior_variance(0)


# ----------------------------------------------------------------------------- a posterior with known risk

def _linear_problem(m=200, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(m, 1, generator=g)
    y = (x[:, 0] + 0.7 * torch.randn(m, generator=g) > 0).long()
    return x, y


def _posterior(model, init, mean, std, prior_var=0.05, m=200):
    """A Posterior built by hand around a one-output linear model f(x) = w x + b."""
    w, names, shapes = pacbayes._flat(model, "model")
    w0, _, _ = pacbayes._flat(init, "init")
    return pacbayes.Posterior(mean=torch.as_tensor(mean, dtype=w.dtype), std=torch.as_tensor(std, dtype=w.dtype),
                              prior_mean=w0, prior_var=prior_var, m=m, delta=0.025, steps=0, objective=(),
                              surrogate_loss=(), kl_history=(), prior_var_history=(), names=names, shapes=shapes,
                              template=copy.deepcopy(model))


def _exact_gibbs_error(x, y, mean, std):
    """P(theta misclassifies x_i) for f = w x + b, (w, b) ~ N(mean, diag(std^2)): Phi(-s_i mu_i / sd_i)."""
    from scipy.stats import norm
    xs = x[:, 0].double().numpy()
    mu = mean[0] * xs + mean[1]
    sd = np.sqrt(std[0] ** 2 * xs ** 2 + std[1] ** 2)
    s = np.where(y.numpy() == 1, 1.0, -1.0)
    return float(np.mean(norm.cdf(-s * mu / sd)))


def test_stochastic_error_and_its_interval_match_the_exact_gibbs_risk():
    x, y = _linear_problem()
    model = nn.Sequential(nn.Linear(1, 1))
    mean, std = [1.5, 0.2], [0.8, 0.5]
    post = _posterior(model, copy.deepcopy(model), mean, std)
    exact = _exact_gibbs_error(x, y, np.array(mean), np.array(std))
    est = pacbayes.stochastic_error(post, x, y, samples=4000, seed=3)
    assert abs(est.mean - exact) < 4 * est.stderr
    b = pacbayes.final_bound(post, x, y, samples=4000, seed=3)
    assert b.emp_risk == pytest.approx(est.mean) and b.samples == 4000 and b.m == 200
    lo, hi = b.emp_risk_ci
    assert lo < exact < hi
    c = math.log(2 / 0.01) / 4000
    assert capacity.kl_bernoulli(b.emp_risk, hi) == pytest.approx(c, rel=1e-6)     # the interval's ends solve kl = c
    assert capacity.kl_bernoulli(b.emp_risk, lo) == pytest.approx(c, rel=1e-6)


def test_final_bound_is_the_best_grid_point_by_brute_force():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 20, generator=g, dtype=torch.float64)
    y = (x[:, 0] > 0).long()
    model = nn.Sequential(nn.Linear(20, 1, dtype=torch.float64))   # float64: the mean and std below are exact
    init = copy.deepcopy(model)
    mp = torch.cat([init[0].weight.detach().reshape(-1), init[0].bias.detach()])
    mq = mp + 0.05 * torch.randn(21, generator=g, dtype=torch.float64)   # near the prior mean, so the best j >> 1
    sq = 0.02 + 0.02 * torch.rand(21, generator=g, dtype=torch.float64)
    post = _posterior(model, init, mq, sq)
    b = pacbayes.final_bound(post, x, y, samples=500, seed=0, delta=0.05, delta_mc=0.02)
    hi = capacity.kl_inverse(b.emp_risk, math.log(2 / 0.02) / 500)
    best = math.inf
    for j in range(1, 3000):
        lam = 0.1 * math.exp(-j / 100)
        kl = float(torch.distributions.kl_divergence(torch.distributions.Normal(mq, sq),
                                                     torch.distributions.Normal(mp, math.sqrt(lam))).sum())
        val = capacity.pac_bayes_kl_bound(hi, kl, 200, 6 * 0.05 / (math.pi ** 2 * j * j))
        if val < best:
            best, best_j, best_kl = val, j, kl
    assert b.bound == pytest.approx(best, abs=1e-10)
    assert b.j == best_j > 10 and b.kl == pytest.approx(best_kl, rel=1e-9)
    assert b.prior_var == pytest.approx(pacbayes.prior_variance(best_j))
    assert b.confidence == pytest.approx(1 - 0.05 - 0.02)
    assert b.bound >= hi and b.non_vacuous == (b.bound < 1)
    delta_j = 6 * 0.05 / (math.pi ** 2 * best_j ** 2)
    assert b.kl_term == pytest.approx((best_kl + math.log(2 * math.sqrt(200) / delta_j)) / 200, rel=1e-9)
    assert post.kl(b.prior_var) == pytest.approx(best_kl, rel=1e-9)
    assert b.pinsker_bound == pytest.approx(hi + math.sqrt(b.kl_term / 2), rel=1e-12) and b.pinsker_bound >= b.bound


def test_final_bound_bad_input():
    x, y = _linear_problem()
    model = nn.Sequential(nn.Linear(1, 1))
    post = _posterior(model, copy.deepcopy(model), [1.0, 0.0], [0.1, 0.1])
    for kw, name in [({"delta": 1.0}, "delta=1"), ({"delta": 0.0}, "delta=0"), ({"delta_mc": 1.5}, "delta_mc=1.5"),
                     ({"samples": 1}, "samples=1"), ({"delta": 0.6, "delta_mc": 0.5}, "delta \\+ delta_mc")]:
        with pytest.raises(ValueError, match=name):
            pacbayes.final_bound(post, x, y, **kw)
    with pytest.raises(ValueError, match="one output"):
        pacbayes.final_bound(post, x, y + 1)


# ----------------------------------------------------------------------------- optimizing the posterior

def _trained_pair(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 5, generator=g)
    y = (x[:, 0] - x[:, 1] > 0).long()
    torch.manual_seed(seed)
    init = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 2))
    net = copy.deepcopy(init)
    opt = torch.optim.SGD(net.parameters(), lr=0.2)
    for _ in range(200):
        opt.zero_grad()
        nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net, init, x, y


def test_optimize_posterior_decreases_the_objective_and_leaves_models_alone():
    net, init, x, y = _trained_pair()
    before = [p.detach().clone() for p in net.parameters()] + [p.detach().clone() for p in init.parameters()]
    net.train()
    post = pacbayes.optimize_posterior(net, init, x, y, steps=300, lr=1e-2, lr_mean=1e-3, batch_size=64, seed=0)
    after = list(net.parameters()) + list(init.parameters())
    assert all(torch.equal(a, b) for a, b in zip(before, after)) and net.training
    assert post.num_params == sum(p.numel() for p in net.parameters()) and post.m == 300
    assert post.objective[-1] < post.objective[0]
    assert len(post.objective) == len(post.kl_history) == len(post.surrogate_loss) == 50
    assert post.mean.dtype == torch.float32 and post.mean.device == before[0].device
    assert post.kl() == pytest.approx(float(pacbayes.kl_diag_gaussians(
        post.mean.double(), post.std.double(), post.prior_mean.double(), math.sqrt(post.prior_var))), rel=1e-9)
    b = pacbayes.final_bound(post, x, y, samples=200)
    assert b.emp_risk_ci[1] <= b.bound <= b.pinsker_bound
    # the same seed gives the same posterior
    again = pacbayes.optimize_posterior(net, init, x, y, steps=300, lr=1e-2, lr_mean=1e-3, batch_size=64, seed=0)
    assert torch.equal(again.std, post.std)


def test_surrogate_bounds_the_zero_one_loss():
    out = torch.tensor([[2.0, -1.0], [0.0, 0.0], [-3.0, 3.0]])
    y = torch.tensor([1, 0, 0])                                # wrong, tie, wrong
    per_point = [float(pacbayes._surrogate(out[i:i + 1], y[i:i + 1])) for i in range(3)]
    assert all(v >= 1.0 - 1e-12 for v in per_point)
    one = torch.tensor([[-0.5], [2.0]])
    assert float(pacbayes._surrogate(one[:1], torch.tensor([1]))) >= 1.0
    assert float(pacbayes._surrogate(one[1:], torch.tensor([1]))) < 1.0


def test_optimize_posterior_bad_input():
    net, init, x, y = _trained_pair()
    with pytest.raises(ValueError, match="delta=1.5"):
        pacbayes.optimize_posterior(net, init, x, y, steps=2, delta=1.5)
    with pytest.raises(ValueError, match="steps=0"):
        pacbayes.optimize_posterior(net, init, x, y, steps=0)
    with pytest.raises(ValueError, match="init_model must have"):
        pacbayes.optimize_posterior(net, nn.Sequential(nn.Linear(5, 2)), x, y, steps=2)
    with pytest.raises(ValueError, match="class indices"):
        pacbayes.optimize_posterior(net, init, x, y + 5, steps=2)
    with pytest.raises(ValueError, match="batch_size=1000"):
        pacbayes.optimize_posterior(net, init, x, y, steps=2, batch_size=1000)


def test_the_objective_is_the_surrogate_plus_the_bound_term_and_lowers_the_kl():
    net, init, x, y = _trained_pair(seed=1)
    post = pacbayes.optimize_posterior(net, init, x, y, steps=60, batch_size=None, log_every=1, seed=2)
    m, const = 300, math.log(2 * math.sqrt(300) / 0.025)
    for obj, surr, kl, lam in zip(post.objective, post.surrogate_loss, post.kl_history, post.prior_var_history):
        j = max(1.0, 100 * math.log(0.1 / lam))              # the continuous grid index
        want = math.sqrt((kl + const + 2 * math.log(j) + math.log(math.pi ** 2 / 6)) / (2 * m))
        assert obj - surr == pytest.approx(want, rel=1e-4)
    assert post.kl_history[-1] < 0.5 * post.kl_history[0]    # the bound term pulls Q towards the prior


def test_minibatches_are_epochs_of_disjoint_batches():
    gen = torch.Generator().manual_seed(0)
    it = pacbayes._minibatches(10, 3, gen, torch.device("cpu"))
    epoch = [next(it) for _ in range(3)]                     # 10 // 3 batches; the last point is skipped
    seen = torch.cat(epoch)
    assert all(b.numel() == 3 for b in epoch) and seen.unique().numel() == 9
    again = torch.cat([next(it) for _ in range(3)])
    assert not torch.equal(again, seen)                      # a fresh permutation each epoch
    assert next(pacbayes._minibatches(10, None, gen, torch.device("cpu"))) is None
