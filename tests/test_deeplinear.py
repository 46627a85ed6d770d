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
