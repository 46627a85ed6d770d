"""Deep linear nets: Saxe et al.'s closed forms against an ODE solver, and the trainer against autograd
and the closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

from tdlcourse import deeplinear as dl


def test_saxe_time_reference_value_and_inverse():
    assert dl.saxe_time(3.0, 0.01, 2.9) == pytest.approx(1.511290, abs=5e-7)  # syllabus
    assert dl.saxe_time(3.0, 0.01, 2.9, tau=2.0) == pytest.approx(2 * 1.511290, abs=1e-6)
    for s, u0, uf in ((3.0, 0.01, 2.9), (0.5, 1e-4, 0.25), (2.0, 1.5, 0.1)):
        t = dl.saxe_time(s, u0, uf)
        if t >= 0:
            assert dl.saxe_trajectory(s, u0, [t])[0] == pytest.approx(uf, rel=1e-12)
        else:  # going down: the forward trajectory from uf reaches u0 after -t
            assert dl.saxe_trajectory(s, uf, [-t])[0] == pytest.approx(u0, rel=1e-12)


@pytest.mark.parametrize("s,u0,tau", [(3.0, 0.01, 1.0), (1.0, 1e-3, 0.5), (0.2, 0.15, 2.0)])
def test_saxe_trajectory_solves_the_mode_ode(s, u0, tau):
    ts = np.linspace(0, 10 * tau / s, 50)
    sol = solve_ivp(lambda t, u: 2 * u * (s - u) / tau, (0, ts[-1]), [u0], t_eval=ts, rtol=1e-11, atol=1e-14)
    np.testing.assert_allclose(dl.saxe_trajectory(s, u0, ts, tau), sol.y[0], rtol=1e-7)
    assert dl.saxe_trajectory(s, u0, [1e6])[0] == pytest.approx(s)  # no overflow


def _target(seed=0, s=(3.0, 2.0, 1.0), shape=(5, 4)):
    rng = np.random.default_rng(seed)
    U = np.linalg.qr(rng.normal(size=(shape[0], len(s))))[0]
    V = np.linalg.qr(rng.normal(size=(shape[1], len(s))))[0]
    return U @ np.diag(s) @ V.T


@pytest.mark.parametrize("hidden", [(6,), (6, 7)])
def test_one_step_is_autograd_gradient_descent(hidden):
    T = _target()
    r0 = dl.train_deep_linear(T, hidden, lr=0.1, steps=0, scale=0.3, seed=4)
    r1 = dl.train_deep_linear(T, hidden, lr=0.1, steps=1, scale=0.3, seed=4)
    # rebuild the same init and take one autograd step
    g = torch.Generator().manual_seed(4)
    sizes = [4, *hidden, 5]
    Ws = [(0.3 * torch.randn(o, i, generator=g, dtype=torch.float64)).requires_grad_() for i, o in zip(sizes[:-1], sizes[1:])]
    W = Ws[0]
    for M in Ws[1:]:
        W = M @ W
    loss = 0.5 * ((torch.tensor(T) - W) ** 2).sum()
    assert float(loss.detach()) == pytest.approx(r0.loss[0], rel=1e-12)
    grads = torch.autograd.grad(loss, Ws)
    W = (Ws[0] - 0.1 * grads[0]).detach()
    for M, G in zip(Ws[1:], grads[1:]):
        W = (M - 0.1 * G).detach() @ W
    assert 0.5 * float(((torch.tensor(T) - W) ** 2).sum()) == pytest.approx(r1.loss[-1], rel=1e-12)


def test_aligned_start_follows_the_closed_form_mode_by_mode():
    T = _target()
    run = dl.train_deep_linear(T, (5,), init="aligned", lr=1e-3, steps=7000, scale=1e-3, record_every=20)
    assert run.off_mode < 1e-12  # the modes stay decoupled
    for k, sk in enumerate(run.s):
        pred = dl.saxe_trajectory(sk, 1e-3, run.time)
        # Euler steps of size lr: the error of the discretization is O(lr s) relative
        np.testing.assert_allclose(run.modes[:, k], pred, rtol=0.02, atol=1e-6)
    lt = dl.learning_times(run)
    np.testing.assert_allclose(lt.ratio, 1.0, atol=0.02)


def test_small_random_init_learns_modes_in_order_at_the_predicted_times():
    # Issue 15, lab claim 1: from a small random init each mode's time from its first crossing of a
    # small threshold to 0.9 s is within 10% of saxe_time, and modes come in the order of s.
    T = _target(seed=1)
    run = dl.train_deep_linear(T, (20,), lr=2e-3, steps=6000, scale=1e-3, seed=2, record_every=5)
    lt = dl.learning_times(run, lo=0.05, hi=0.9)
    assert np.all(np.isfinite(lt.measured))
    np.testing.assert_allclose(lt.ratio, 1.0, atol=0.10)
    first = [dl._crossing(run.time, run.modes[:, k], 0.5 * sk) for k, sk in enumerate(run.s)]
    assert first == sorted(first)  # the strongest mode first


def test_deeper_nets_learn_too_and_the_loss_falls():
    T = _target(seed=3)
    run = dl.train_deep_linear(T, (8, 8), lr=5e-3, steps=4000, scale=0.2, seed=0, record_every=100)
    assert run.depth == 3 and run.loss[-1] < 1e-3 * run.loss[0]
    np.testing.assert_allclose(run.modes[-1], run.s, rtol=1e-2)


def test_bad_input_names_the_parameter():
    with pytest.raises(ValueError, match="uf"):
        dl.saxe_time(3.0, 0.01, 3.5)
    with pytest.raises(ValueError, match="t must be"):
        dl.saxe_trajectory(3.0, 0.01, [-1.0])
    with pytest.raises(ValueError, match="init='aligned' needs hidden"):
        dl.train_deep_linear(_target(), (2,), init="aligned")
    with pytest.raises(ValueError, match="sigma_yx"):
        dl.train_deep_linear(np.ones(3), (2,))
    assert math.isnan(dl.learning_times(dl.train_deep_linear(_target(), (4,), steps=2)).measured[0])


# ------------------------------------------------ chapter 10: the scalar product loss and teacher-student

def test_product_loss_hessian_against_autograd_and_special_points():
    np.testing.assert_allclose(dl.product_loss_hessian_eigs(np.array([2.0, 0.5]), 1.0), [0.0, 4.25], atol=1e-12)  # syllabus
    rng = np.random.default_rng(0)
    for D in (2, 3, 4, 5):
        for _ in range(3):
            w, s = rng.normal(size=D), float(rng.normal())
            H = torch.autograd.functional.hessian(lambda t: 0.5 * (torch.prod(t) - s) ** 2, torch.tensor(w))
            np.testing.assert_allclose(dl.product_loss_hessian_eigs(w, s), np.linalg.eigvalsh(H.numpy()), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dl.product_loss_hessian_eigs(np.zeros(2), 1.5), [-1.5, 1.5])  # strict saddle
    np.testing.assert_allclose(dl.product_loss_hessian_eigs(np.zeros(4), 1.5), np.zeros(4))  # degenerate saddle
    w = np.array([0.5, 2.0, 3.0])  # p = s = 3: a global minimum, H = g g^T
    g = np.array([6.0, 1.5, 1.0])
    np.testing.assert_allclose(dl.product_loss_hessian_eigs(w, 3.0), [0.0, 0.0, g @ g], atol=1e-12)
    with pytest.raises(ValueError, match="w must"):
        dl.product_loss_hessian_eigs(np.ones(1), 1.0)
    with pytest.raises(ValueError, match="s must"):
        dl.product_loss_hessian_eigs(np.ones(2), float("nan"))


def test_relu_population_loss_against_monte_carlo():
    rng = np.random.default_rng(1)
    V, W = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    x = rng.normal(size=(400_000, 4))
    r = np.maximum(x @ W.T, 0).sum(1) - np.maximum(x @ V.T, 0).sum(1)
    samples = 0.5 * r ** 2
    se = samples.std(ddof=1) / math.sqrt(len(samples))
    assert abs(dl.relu_population_loss(W, V) - samples.mean()) < 4 * se
    assert dl.relu_population_loss(V[[2, 0, 1]], V) == pytest.approx(0.0, abs=1e-12)  # a permuted teacher
    # W = 0: L = (1/2) E (sum relu)^2 = (1/2)(k/2 + k(k-1)/(2 pi)) for an orthonormal teacher
    k = 4
    assert dl.relu_population_loss(np.zeros((2, k)), np.eye(k)) == pytest.approx(0.5 * (k / 2 + k * (k - 1) / (2 * math.pi)))
    with pytest.raises(ValueError, match="W has input dimension"):
        dl.relu_population_loss(np.ones((2, 3)), V)


def test_teacher_student_data_and_student_train_together():
    V = np.eye(3)
    data = dl.teacher_student_data(V, 256, 64, seed=0, dtype=torch.float64)
    assert data.x_train.shape == (256, 3) and data.y_train.shape == (256, 1) and len(data.x_test) == 64
    torch.testing.assert_close(data.y_train, torch.relu(data.x_train).sum(1, keepdim=True))
    students = [dl.relu_student(3, 6, seed=s, dtype=torch.float64) for s in range(3)]
    before = dl.student_population_losses(students, V)
    out_before = [m[2].weight.clone() for m in students]
    from tdlcourse.train import fit_ensemble

    fit_ensemble(students, data, steps=300, lr=0.05, optimizer="adam", loss="mse", progress=False)
    after = dl.student_population_losses(students, V)
    assert np.all(after < 0.05 * before)  # the over-parametrized student fits the teacher
    assert all(torch.equal(m[2].weight, w) for m, w in zip(students, out_before))  # output weights stay fixed
    # the sample loss of mse estimates 2 L
    m = students[0]
    with torch.no_grad():
        big = dl.teacher_student_data(V, 200_000, seed=5, dtype=torch.float64)
        sq = ((m(big.x_train) - big.y_train) ** 2).reshape(-1).numpy()
    assert abs(sq.mean() / 2 - after[0]) < 4 * sq.std() / 2 / math.sqrt(len(sq))
    with pytest.raises(ValueError, match="students\\[0\\]"):
        dl.student_population_losses([torch.nn.Linear(3, 1)], V)


def test_stuck_fraction_wilson_interval_matches_scipy():
    from scipy.stats import binomtest

    for count, n in ((0, 50), (3, 10), (37, 100), (50, 50)):
        losses = np.r_[np.full(count, 1.0), np.full(n - count, 1e-5)]
        sf = dl.stuck_fraction(losses, 1e-2, confidence=0.9)
        ci = binomtest(count, n).proportion_ci(confidence_level=0.9, method="wilson")
        assert (sf.count, sf.n) == (count, n) and sf.fraction == count / n
        assert sf.lo == pytest.approx(ci.low, abs=1e-12) and sf.hi == pytest.approx(ci.high, abs=1e-12)
    assert dl.stuck_fraction([np.nan, 0.0], 0.1).count == 1  # a diverged run counts as stuck
    with pytest.raises(ValueError, match="threshold"):
        dl.stuck_fraction([1.0], 0.0)
