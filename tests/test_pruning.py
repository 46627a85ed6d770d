"""Oracle tests of ``tdlcourse.pruning``: exact mask counts, masks that survive training, exact rewinding,
frozen weights in edge-popup, inputs never mutated, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from tdlcourse import data, models, pruning, train


@pytest.fixture(scope="module")
def small_data():
    d = data.digits(seed=0)
    # a small subset keeps every run in this file fast
    return data.Data(d.x_train[:300], d.y_train[:300], d.x_test[:200], d.y_test[:200], num_classes=10, name="digits")


def _net(seed=0, widths=(16, 12), bias=True):
    return models.mlp(64, widths, 10, seed=seed, bias=bias)


def _state(m):
    return {k: v.detach().clone() for k, v in m.state_dict().items()}


def _same_state(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# --------------------------------------------------------------------------------------------------
# masks


def test_prunable_and_frankle_carbin_rates():
    m = _net()
    assert pruning.prunable(m) == ("0.weight", "2.weight", "4.weight")
    assert pruning.frankle_carbin_rates(m) == {"0.weight": 0.2, "2.weight": 0.2, "4.weight": 0.1}


@pytest.mark.parametrize("s", [0.0, 0.13, 0.5, 0.97, 0.999])
def test_layer_masks_have_exact_sparsity_and_keep_the_largest(s):
    m = _net(widths=(40, 30))
    masks = pruning.magnitude_masks(m, s)
    for name, mask in masks.items():
        w = m.get_parameter(name).detach()
        assert mask.dtype == torch.bool and mask.shape == w.shape
        assert int((~mask).sum()) == round(s * w.numel())
        if 0 < int((~mask).sum()) < w.numel():  # every kept weight at least as large as every pruned one
            assert w[mask].abs().min() >= w[~mask].abs().max()


def test_global_masks_exact_count_and_brute_force_threshold():
    m = _net(widths=(40, 30))
    masks = pruning.magnitude_masks(m, 0.8, scope="global")
    ws = torch.cat([m.get_parameter(n).detach().reshape(-1) for n in masks])
    ks = torch.cat([masks[n].reshape(-1) for n in masks])
    assert int((~ks).sum()) == round(0.8 * ws.numel())
    # brute force: the kept set is exactly the top 20% by |w| (no ties in a continuous init)
    order = torch.argsort(ws.abs(), descending=True)
    expect = torch.zeros_like(ks)
    expect[order[:ws.numel() - round(0.8 * ws.numel())]] = True
    assert torch.equal(ks, expect)
    assert pruning.sparsity(masks) == pytest.approx(round(0.8 * ws.numel()) / ws.numel(), abs=0)
    # global ranking differs from per-layer ranking: the layers' sparsities are not all 0.8
    assert len({round(v, 3) for v in pruning.layer_sparsity(masks).values()}) > 1


def test_per_layer_dict_and_pruned_weights_stay_pruned():
    m = _net(widths=(40, 30))
    first = pruning.magnitude_masks(m, {"0.weight": 0.5})
    assert pruning.layer_sparsity(first)["2.weight"] == 0.0
    # prune the *trained-looking* weights of another net: previously pruned entries stay pruned
    other = _net(seed=5, widths=(40, 30))
    second = pruning.magnitude_masks(other, {"0.weight": 0.75, "2.weight": 0.2}, masks=first)
    assert not bool((second["0.weight"] & ~first["0.weight"]).any())
    assert int((~second["0.weight"]).sum()) == round(0.75 * 64 * 40)
    assert int((~second["2.weight"]).sum()) == round(0.2 * 40 * 30)
    with pytest.raises(ValueError, match="already prunes"):
        pruning.magnitude_masks(other, {"0.weight": 0.3}, masks=first)


def test_random_masks_exact_count_and_seeded():
    m = _net(widths=(40, 30))
    a = pruning.random_masks(m, 0.9, seed=3)
    b = pruning.random_masks(m, 0.9, seed=3)
    assert all(torch.equal(a[k], b[k]) for k in a)
    for k, mask in a.items():
        assert int((~mask).sum()) == round(0.9 * mask.numel())


def test_magnitude_masks_do_not_mutate_the_model():
    m = _net()
    before = _state(m)
    pruning.magnitude_masks(m, 0.5, scope="global")
    assert _same_state(before, _state(m))


# --------------------------------------------------------------------------------------------------
# masks survive training


def _assert_pruned_zero(model, masks):
    for name, mask in masks.items():
        w = model.get_parameter(name).detach()
        assert torch.count_nonzero(w[~mask]) == 0, name


@pytest.mark.parametrize("opt", [dict(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-3),
                                 dict(optimizer="adam", lr=1e-2), dict(optimizer="adamw", lr=1e-2, weight_decay=0.1)])
def test_masks_survive_fit(small_data, opt):
    m = _net()
    masks = pruning.magnitude_masks(m, 0.7)
    mm = pruning.apply_masks(m, masks)
    before = _state(m)
    train.fit(mm, small_data, steps=40, batch_size=32, progress=False, **opt)
    assert _same_state(before, _state(m))  # the input model is untouched
    assert all(torch.equal(pruning.masks_of(mm)[k], masks[k]) for k in masks)
    _assert_pruned_zero(mm, masks)
    plain = pruning.remove_masks(mm)
    assert all(isinstance(x, nn.Linear) for x in plain if not isinstance(x, nn.ReLU))
    _assert_pruned_zero(plain, masks)
    # it trained: some surviving weight moved
    assert any(not torch.equal(mm.get_parameter(k).detach()[masks[k]], m.get_parameter(k).detach()[masks[k]])
               for k in masks)


def test_masks_survive_fit_ensemble_with_one_mask_per_model(small_data):
    nets = [_net(seed=s) for s in range(3)]
    masks = [pruning.magnitude_masks(n, 0.6 + 0.1 * s) for s, n in enumerate(nets)]
    mms = [pruning.apply_masks(n, mk) for n, mk in zip(nets, masks)]
    res = train.fit_ensemble(mms, small_data, steps=30, lr=0.05, momentum=0.9, progress=False)
    for mm, mk in zip(res.models, masks):
        _assert_pruned_zero(mm, mk)


def test_train_masked_matches_fit_on_masked_model(small_data):
    """The fast masked trainer equals ``fit`` of the MaskedLinear model (autograd), up to float rounding."""
    nets = [_net(seed=s) for s in range(2)]
    masks = [pruning.magnitude_masks(n, 0.8) for n in nets]
    kw = dict(steps=25, lr=0.05, optimizer="sgd", momentum=0.9, batch_size=50)
    before = [_state(n) for n in nets]
    fast = pruning.train_masked(nets, masks, small_data, seeds=[0, 7], **kw)
    assert all(_same_state(b, _state(n)) for b, n in zip(before, nets))
    for j, (n, mk) in enumerate(zip(nets, masks)):
        ref = pruning.apply_masks(n, mk)
        h = train.fit(ref, small_data, seed=[0, 7][j], progress=False, **kw)
        ref = pruning.remove_masks(ref)
        for name, p in ref.named_parameters():
            torch.testing.assert_close(fast.models[j].get_parameter(name).detach(), p.detach(), rtol=1e-4, atol=1e-5)
        _assert_pruned_zero(fast.models[j], mk)
        assert fast.test_acc[j] == pytest.approx(h.final("test_acc"), abs=1.5 / len(small_data.y_test))
        assert fast.train_acc[j] == pytest.approx(h.final("train_acc"), abs=1.5 / len(small_data.y_train))


def test_train_masked_refuses_non_mlp(small_data):
    net = nn.Sequential(nn.Linear(64, 8), nn.LayerNorm(8), nn.Linear(8, 10))
    with pytest.raises(ValueError, match="plain MLPs"):
        pruning.train_masked([net], {}, small_data, steps=2)
    frozen = _net()
    frozen[0].bias.requires_grad_(False)
    with pytest.raises(ValueError, match="frozen parameters"):
        pruning.train_masked([frozen], {}, small_data, steps=2)


# --------------------------------------------------------------------------------------------------
# rewinding, reinit, IMP


def test_rewind_restores_snapshot_on_survivors():
    snap = _net(seed=4)
    before = _state(snap)
    masks = pruning.random_masks(snap, 0.9, seed=1)
    r = pruning.rewind(snap, masks)
    assert _same_state(before, _state(snap))
    for name, p in snap.named_parameters():
        q = r.get_parameter(name).detach()
        if name in masks:
            assert torch.equal(q[masks[name]], p.detach()[masks[name]])
            assert torch.count_nonzero(q[~masks[name]]) == 0
        else:
            assert torch.equal(q, p.detach())


def test_reinit_is_a_permutation_of_each_parameter():
    m = _net(seed=2)
    before = _state(m)
    r = pruning.reinit(m, seed=9)
    assert _same_state(before, _state(m))
    for (name, p), q in zip(m.named_parameters(), r.parameters()):
        assert torch.equal(torch.sort(p.detach().reshape(-1)).values, torch.sort(q.detach().reshape(-1)).values)
        if p.numel() > 20:
            assert not torch.equal(p, q)


def test_imp_sparsity_schedule_rewind_and_control(small_data, monkeypatch):
    """IMP end to end: exact Frankle & Carbin sparsities, each round restarts from m (.) theta_k exactly,
    controls start from a re-initialization, and the inputs are untouched."""
    nets = [_net(seed=s, widths=(20, 16)) for s in range(2)]
    before = [_state(n) for n in nets]
    starts = []
    real = pruning._loop

    def spy(stack, flat, grad_mask, cfg, seeds, first=0, snapshot_at=None):
        starts.append((flat.clone(), None if grad_mask is None else grad_mask.clone(), first))
        return real(stack, flat, grad_mask, cfg, seeds, first=first, snapshot_at=snapshot_at)

    monkeypatch.setattr(pruning, "_loop", spy)
    res = pruning.iterative_magnitude_pruning(nets, small_data, rounds=3, steps=30, rewind_step=5, lr=0.05,
                                              momentum=0.9, batch_size=50, seeds=[0, 1])
    assert all(_same_state(b, _state(n)) for b, n in zip(before, nets))
    # exact per-layer sparsity: round(n (1 - (1 - p)^r)) zeros
    for r in range(4):
        for name, s in res.layer_sparsity[r].items():
            p = 0.1 if name == "4.weight" else 0.2
            n = nets[0].get_parameter(name).numel()
            assert s == round(n * (1 - (1 - p) ** r)) / n
        for j in range(2):
            assert pruning.layer_sparsity(res.masks[r][j]) == res.layer_sparsity[r]
    # masks are nested: pruned weights stay pruned
    for r in range(1, 4):
        for j in range(2):
            for k in res.masks[r][j]:
                assert not bool((res.masks[r][j][k] & ~res.masks[r - 1][j][k]).any())
    # round 0 from theta_0, rounds 1..3 from the snapshot theta_5 masked (3 IMP rounds, then 1 control run)
    theta0 = torch.stack([torch.cat([p.detach().reshape(-1) for p in n.parameters()]) for n in nets])
    assert torch.equal(starts[0][0], theta0) and starts[0][1] is None
    theta5 = torch.stack([torch.cat([p.detach().reshape(-1) for p in m.parameters()]) for m in res.rewind_point])
    assert not torch.equal(theta5, theta0)
    for flat, gm, first in starts[1:4]:
        assert first == 5
        torch.testing.assert_close(flat * gm, theta5 * gm, rtol=0, atol=0)  # exactly theta_k on survivors
    # the snapshot is the iterate after step 5 of the dense run: replay 5 steps with train_masked
    replay = pruning.train_masked(nets, {}, small_data, steps=5, lr=0.05, momentum=0.9, batch_size=50, seeds=[0, 1])
    for a, b in zip(replay.models, res.rewind_point):
        for pa, pb in zip(a.parameters(), b.parameters()):
            torch.testing.assert_close(pa, pb, rtol=0, atol=0)
    # the control run: K * 4 re-initialized models, trained from step 0
    assert starts[4][2] == 0 and starts[4][0].shape[0] == 8
    assert res.test_acc.shape == res.control_acc.shape == (4, 2)
    assert np.all((0 <= res.test_acc) & (res.test_acc <= 1)) and not np.isnan(res.control_acc).any()
    np.testing.assert_array_equal(res.gap, res.test_acc - res.control_acc)


def test_imp_global_scope_and_partial_control(small_data):
    nets = [_net(seed=0, widths=(20, 16))]
    res = pruning.iterative_magnitude_pruning(nets, small_data, rounds=2, steps=10, scope="global", rates=0.5,
                                              control=[2], lr=0.05)
    n = sum(nets[0].get_parameter(k).numel() for k in pruning.prunable(nets[0]))
    assert res.sparsity[1] == round(0.5 * n) / n and res.sparsity[2] == round(0.75 * n) / n
    assert np.isnan(res.control_acc[:2]).all() and not np.isnan(res.control_acc[2]).any()


def test_imp_ticket_beats_reinit_at_high_sparsity(small_data):
    """The lottery-ticket effect itself on a digits subset (a test that fails if rewinding is broken:
    the ticket would then be no better than the control)."""
    d = data.digits(seed=0)
    nets = [models.mlp(64, (64, 32), 10, seed=s) for s in range(2)]
    res = pruning.iterative_magnitude_pruning(nets, d, rounds=14, steps=150, rewind_step=10, optimizer="adam",
                                              lr=3e-3, batch_size=64, seeds=[0, 1], control=[14],
                                              rates={"0.weight": 0.25, "2.weight": 0.25, "4.weight": 0.1})
    assert res.sparsity[14] > 0.93
    assert res.gap[14].mean() > 0.03


# --------------------------------------------------------------------------------------------------
# edge-popup


def test_edge_popup_weights_never_change_and_masks_exact(small_data):
    nets = [_net(seed=s, widths=(32, 32)) for s in range(2)]
    before = [_state(n) for n in nets]
    res = pruning.edge_popup(nets, small_data, sparsity=0.6, steps=60, lr=1.0, batch_size=50, seeds=[0, 1])
    assert all(_same_state(b, _state(n)) for b, n in zip(before, nets))
    for n, sub, mk in zip(nets, res.models, res.masks):
        for name, p in n.named_parameters():
            q = sub.get_parameter(name).detach()
            if name in mk:
                assert int((~mk[name]).sum()) == round(0.6 * p.numel())
                assert torch.equal(q[mk[name]], p.detach()[mk[name]])  # kept weights: the random ones
                assert torch.count_nonzero(q[~mk[name]]) == 0
            else:
                assert torch.equal(q, p.detach())  # biases frozen
    # the reported accuracies are those of the returned subnetworks
    for j, sub in enumerate(res.models):
        with torch.no_grad():
            acc = (sub(small_data.x_test).argmax(1) == small_data.y_test).double().mean().item()
        assert res.test_acc[j] == pytest.approx(acc, abs=1e-9)


def test_edge_popup_learns_far_above_chance():
    d = data.digits(seed=0)
    nets = [models.mlp(64, (128, 128), 10, seed=s, bias=False) for s in range(2)]
    res = pruning.edge_popup(nets, d, sparsity=0.5, steps=200, lr=1.0, batch_size=64, seeds=[0, 1])
    assert res.test_acc.min() > 0.5  # chance is 0.1
    # the same random nets unpruned and untrained are near chance
    with torch.no_grad():
        raw = [(n(d.x_test).argmax(1) == d.y_test).double().mean().item() for n in nets]
    assert max(raw) < 0.3


def test_straight_through_gradient_matches_autograd():
    """The scores' gradient dL/ds = dL/dW_eff (.) W (.) sign(s), checked against autograd on a
    straight-through module (h(|s|) + |s| - |s|.detach())."""
    torch.manual_seed(0)
    x, y = torch.randn(20, 5), torch.randint(0, 3, (20,))
    w = torch.randn(3, 5)
    s = torch.randn(3, 5, requires_grad=True)
    a = s.abs()
    m = pruning._top_mask(a.detach().unsqueeze(0), 7)[0]
    loss = nn.functional.cross_entropy(x @ (w * (m + a - a.detach())).t(), y)
    (g_auto,) = torch.autograd.grad(loss, s)
    weff = (w * m).requires_grad_(True)
    (g_w,) = torch.autograd.grad(nn.functional.cross_entropy(x @ weff.t(), y), weff)
    torch.testing.assert_close(g_auto, g_w * w * s.detach().sign())
    assert int(m.sum()) == 7 and bool((a.detach()[m.bool()].min() >= a.detach()[~m.bool()].max()))


# --------------------------------------------------------------------------------------------------
# bad input


@pytest.mark.parametrize("s", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_outside_unit_interval(s):
    with pytest.raises(ValueError, match=r"sparsity=.* must (lie in \[0, 1\)|be a finite real number)"):
        pruning.magnitude_masks(_net(), s)
    with pytest.raises(ValueError, match="sparsity"):
        pruning.random_masks(_net(), s)
    with pytest.raises(ValueError, match="sparsity"):
        pruning.edge_popup([_net()], data.digits(), sparsity=s, steps=1)


def test_bad_masks_name_the_parameter():
    m = _net()
    with pytest.raises(ValueError, match=r"masks\['0.weight'\] has shape \(3, 3\).*\(16, 64\)"):
        pruning.apply_masks(m, {"0.weight": torch.ones(3, 3, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"masks\['0.bias'\].*not a prunable weight"):
        pruning.apply_masks(m, {"0.bias": torch.ones(16, dtype=torch.bool)})
    with pytest.raises(ValueError, match="only 0 and 1"):
        pruning.apply_masks(m, {"0.weight": torch.full((16, 64), 0.5)})
    with pytest.raises(ValueError, match=r"masks\[1\]\['2.weight'\] has shape"):
        pruning.train_masked([m, _net(1)], [{}, {"2.weight": torch.ones(2, 2)}], data.digits(), steps=1)
    with pytest.raises(ValueError, match="masks holds 1 dicts but there are 2 models"):
        pruning.train_masked([m, _net(1)], [{}], data.digits(), steps=1)


def test_other_bad_input():
    m = _net()
    with pytest.raises(ValueError, match="scope='x' is not allowed"):
        pruning.magnitude_masks(m, 0.5, scope="x")
    with pytest.raises(ValueError, match="sparsity must be one number with scope='global'"):
        pruning.magnitude_masks(m, {"0.weight": 0.5}, scope="global")
    with pytest.raises(ValueError, match=r"sparsity\['9.weight'\]"):
        pruning.magnitude_masks(m, {"9.weight": 0.5})
    with pytest.raises(ValueError, match="hidden=1 must lie in"):
        pruning.frankle_carbin_rates(m, hidden=1.0)
    with pytest.raises(ValueError, match="rounds=0 must be an integer >= 1"):
        pruning.iterative_magnitude_pruning([m], data.digits(), rounds=0, steps=5)
    with pytest.raises(ValueError, match=r"rewind_step=5 must be an integer in \[0, 4\]"):
        pruning.iterative_magnitude_pruning([m], data.digits(), rounds=1, steps=5, rewind_step=5)
    with pytest.raises(ValueError, match=r"rates\['0.weight'\]=1 must lie in"):
        pruning.iterative_magnitude_pruning([m], data.digits(), rounds=1, steps=5, rates={"0.weight": 1.0})
    with pytest.raises(ValueError, match="no nn.Linear layer"):
        pruning.magnitude_masks(nn.Sequential(nn.ReLU()), 0.5)
    with pytest.raises(ValueError, match="masks={} must be a non-empty dict"):
        pruning.sparsity({})
    with pytest.raises(ValueError, match=r"masks\['a'\]=3 must be a 0/1"):
        pruning.layer_sparsity({"a": 3})
    with pytest.raises(ValueError, match=r"mask has shape \(2, 2\); it must have the weight's shape \(3, 4\)"):
        pruning.MaskedLinear(nn.Linear(4, 3), torch.ones(2, 2))
