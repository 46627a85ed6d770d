"""Training engine: fit against closed-form optimizer recurrences, fit_ensemble and fit_sweep against
sequential fit, divergence guard, bad input, History and checkpoints."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from tdlcourse import checkpoint, data, models, train


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # Tiny models: one thread is fastest, and robust on a machine shared with other jobs.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def digits():
    """A 400/200 subset of the bundled digits: big enough to learn, small enough to be fast."""
    d = data.digits(seed=0)
    return data.Data(d.x_train[:400], d.y_train[:400], d.x_test[:200], d.y_test[:200], 10, "digits-subset")


def linear_problem(n=24, d=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)[:d] + 0.3 + 0.1 * torch.randn(n, generator=g,
                                                                                             dtype=torch.float64)
    return x, y


def oracle_linear(x, y, w0, b0, *, steps, lr, optimizer="sgd", momentum=0.0, nesterov=False, wd=0.0,
                  betas=(0.9, 0.999), eps=1e-8, factors=None, batches=None):
    """The documented update rules, written out in NumPy for L = mean((x w + b - y)^2)."""
    x, y = x.numpy(), y.numpy()
    th = np.concatenate([w0, [b0]])
    xa = np.concatenate([x, np.ones((len(x), 1))], 1)
    buf = m = v = None
    losses = []
    for t in range(steps):
        idx = np.arange(len(x)) if batches is None else batches[t]
        r = xa[idx] @ th - y[idx]
        losses.append(float(np.mean(r ** 2)))
        g = 2 * xa[idx].T @ r / len(idx)
        eta = lr * (1.0 if factors is None else factors[t])
        if optimizer == "sgd":
            g = g + wd * th
            if momentum:
                buf = g.copy() if buf is None else momentum * buf + g
                g = g + momentum * buf if nesterov else buf
            th = th - eta * g
        else:
            if optimizer == "adamw":
                th = th * (1 - eta * wd)
            else:
                g = g + wd * th
            m = (1 - betas[0]) * g if m is None else betas[0] * m + (1 - betas[0]) * g
            v = (1 - betas[1]) * g * g if v is None else betas[1] * v + (1 - betas[1]) * g * g
            k = t + 1
            th = th - eta / (1 - betas[0] ** k) * m / (np.sqrt(v) / np.sqrt(1 - betas[1] ** k) + eps)
    return th, losses


def linear_model(d=3, seed=0):
    return models.mlp(d, [], 1, seed=seed, dtype=torch.float64)


def theta(model):
    return np.concatenate([model[0].weight.detach().numpy().ravel(), model[0].bias.detach().numpy()])


OPTIMIZER_CASES = [
    dict(optimizer="sgd", lr=0.05),
    dict(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=0.01, schedule="cosine"),
    dict(optimizer="sgd", lr=0.05, momentum=0.5, nesterov=True, schedule="linear", warmup=3),
    dict(optimizer="adam", lr=0.02, weight_decay=0.01),
    dict(optimizer="adamw", lr=0.02, weight_decay=0.1, betas=(0.8, 0.99), schedule="cosine"),
]


def oracle_kwargs(kw, steps):
    return dict(lr=kw["lr"], optimizer=kw["optimizer"], momentum=kw.get("momentum", 0.0),
                nesterov=kw.get("nesterov", False), wd=kw.get("weight_decay", 0.0), betas=kw.get("betas", (0.9, 0.999)),
                factors=train.schedule_factors(steps, kw.get("schedule", "constant"), kw.get("warmup", 0)))


# ------------------------------------------------------------------------------- schedules

def test_schedule_factors_closed_forms():
    assert train.schedule_factors(4) == [1.0] * 4
    cos = train.schedule_factors(8, "cosine")
    assert cos[0] == 1.0 and cos[4] == pytest.approx(0.5, abs=1e-15) and cos[7] == pytest.approx((1 + math.cos(7 * math.pi / 8)) / 2)
    assert train.schedule_factors(4, "linear") == [1.0, 0.75, 0.5, 0.25]
    assert train.schedule_factors(4, "constant", warmup=2) == [0.5, 1.0, 1.0, 1.0]
    assert train.schedule_factors(3, lambda t, T: 0.1 * t) == pytest.approx([0.0, 0.1, 0.2])
    with pytest.raises(ValueError, match=r"schedule='step'.*'constant', 'cosine', 'linear'"):
        train.schedule_factors(3, "step")
    with pytest.raises(ValueError, match="finite and >= 0"):
        train.schedule_factors(3, lambda t, T: -1.0)
    with pytest.raises(ValueError, match="warmup"):
        train.schedule_factors(3, warmup=-1)


# ------------------------------------------------------------------------------------ fit

@pytest.mark.parametrize("kw", OPTIMIZER_CASES)
def test_fit_follows_the_update_rule(kw):
    x, y = linear_problem()
    model = linear_model()
    th0 = theta(model)
    hist = train.fit(model, (x, y), steps=12, loss="mse", progress=False, **kw)
    th, losses = oracle_linear(x, y, th0[:-1], th0[-1], steps=12, **oracle_kwargs(kw, 12))
    np.testing.assert_allclose(theta(model), th, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(hist.loss, losses, rtol=1e-10)
    assert hist.step == list(range(1, 13))


def test_fit_minibatches_are_fresh_permutations_per_epoch():
    x, y = linear_problem(n=10)
    model = linear_model()
    th0 = theta(model)
    train.fit(model, (x, y), epochs=3, batch_size=4, lr=0.05, loss="mse", seed=5, progress=False)
    g = torch.Generator().manual_seed(5)
    batches = []
    for _ in range(3):  # 10 // 4 = 2 steps per epoch; the last 2 samples of each permutation are skipped
        perm = torch.randperm(10, generator=g).numpy()
        batches += [perm[0:4], perm[4:8]]
    th, _ = oracle_linear(x, y, th0[:-1], th0[-1], steps=6, lr=0.05, batches=batches)
    np.testing.assert_allclose(theta(model), th, rtol=1e-10)


def test_fit_records_evaluations_and_restores_the_mode(digits):
    model = models.mlp(64, [16], 10, seed=0)
    model.eval()
    calls = []
    hist = train.fit(model, digits, steps=25, eval_every=10, lr=0.1, progress=False,
                     callbacks=[lambda s, m, h: calls.append((s, m.training))])
    assert hist.eval_step == [10, 20, 25] and [c[0] for c in calls] == [10, 20, 25]
    assert not any(c[1] for c in calls)  # evaluation runs in eval mode
    assert not model.training  # the caller's mode is restored
    assert set(hist.eval) == {"train_loss", "train_acc", "test_loss", "test_acc"}
    ev = train.evaluate(model, digits.x_test, digits.y_test)
    assert hist.final("test_acc") == pytest.approx(ev["acc"]) and hist.final("test_loss") == pytest.approx(ev["loss"], rel=1e-6)
    with torch.no_grad():
        acc = float((model(digits.x_test).argmax(1) == digits.y_test).float().mean())
    assert ev["acc"] == pytest.approx(acc)
    assert hist.config["steps"] == 25 and hist.config["optimizer"] == "sgd" and hist.seconds > 0


def test_callbacks_and_stop_when_end_training_early(digits):
    hist = train.fit(models.mlp(64, [16], 10, seed=0), digits, steps=100, eval_every=5, progress=False,
                     callbacks=[lambda s, m, h: s >= 15])
    assert hist.stopped_at == 15 and hist.step[-1] == 15 and "callback" in hist.message
    hist = train.fit(models.mlp(64, [32], 10, seed=0), digits, steps=400, eval_every=5, lr=0.2, progress=False,
                     stop_when={"train_acc": 0.9})
    assert hist.stopped_at is not None and hist.final("train_acc") >= 0.9
    assert all(a < 0.9 for a in hist.eval["train_acc"][:-1]) and hist.step[-1] == hist.stopped_at


def test_divergence_guard_names_the_step_and_last_finite_loss(digits):
    model = models.mlp(64, [16], 10, seed=0)
    with pytest.raises(train.DivergenceError, match=r"loss became (nan|inf) at step \d+; last finite loss [0-9.e+]+"):
        train.fit(model, digits, steps=50, lr=1e4, momentum=0.9, progress=False)
    hist = train.fit(models.mlp(64, [16], 10, seed=0), digits, steps=50, lr=1e4, momentum=0.9, progress=False,
                     on_divergence="record")
    assert hist.diverged and len(hist.loss) < 50 and all(math.isfinite(v) for v in hist.loss)
    assert f"at step {len(hist.loss) + 1};" in hist.message and f"{hist.loss[-1]:.6g}" in hist.message


@pytest.mark.parametrize("kwargs, match", [
    (dict(steps=0), "steps=0"),
    (dict(steps=5, epochs=2), "not both"),
    (dict(epochs=0), "epochs=0"),
    (dict(lr=-1.0), r"lr=-1 must lie in \(0, inf\)"),
    (dict(lr=[0.1, 0.2]), r"lr=\[0.1, 0.2\] must be a finite real number"),  # one model, one rate
    (dict(lr=float("nan")), "lr=nan"),
    (dict(optimizer="rmsprop"), r"optimizer='rmsprop'.*'sgd', 'adam', 'adamw'"),
    (dict(momentum=1.0), r"momentum=1 must lie in \[0, 1\)"),
    (dict(nesterov=True), r"nesterov=True needs momentum > 0"),
    (dict(optimizer="adam", betas=(0.9, 1.0)), r"betas\[1\]=1 must lie in \[0, 1\)"),
    (dict(optimizer="adam", betas=(0.9,)), r"betas=\(0.9,\) must be two numbers in \[0, 1\)"),
    (dict(eps=0.0), r"eps=0 must lie in \(0, inf\)"),
    (dict(weight_decay=-0.1), r"weight_decay=-0.1 must lie in \[0, inf\)"),
    (dict(warmup=1.5), r"warmup=1.5 must be an integer >= 0"),
    (dict(eval_every=0), r"eval_every=0 must be an integer >= 1, or None \(steps // 50\)"),
    (dict(seed="0"), r"seed='0' must be an integer"),
    (dict(optimizer="adam", momentum=0.9), "applies to optimizer='sgd'"),
    (dict(batch_size=10**6), r"batch_size=1000000 must be an integer in \[1, 400\], or None \(full batch\)"),
    (dict(batch_size=True), r"batch_size=True must be an integer >= 1"),
    (dict(on_divergence="ignore"), r"on_divergence='ignore'.*'raise', 'record'"),
    (dict(loss="hinge"), r"loss='hinge'.*'cross_entropy', 'mse'"),
    (dict(precision="fp8"), "precision='fp8'"),
    (dict(compile="turbo"), "compile='turbo'"),
    (dict(stop_when={"val_acc": 1.0}), r"stop_when key='val_acc' is not allowed; allowed: 'train_loss', "),
    (dict(stop_when={"train_acc": "high"}), r"stop_when\['train_acc'\]='high' must be a finite real number"),
    (dict(schedule="exp"), "schedule='exp'"),
])
def test_fit_bad_options(digits, kwargs, match):
    model = models.mlp(64, [8], 10, seed=0)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=match):
        train.fit(model, digits, progress=False, **({"steps": 2} | kwargs if "epochs" not in kwargs else kwargs))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # rejected before training


def test_train_config_checks_normalizes_and_resolves():
    cpu = torch.device("cpu")
    cfg = train.TrainConfig(epochs=3, batch_size=32, lr=[0.1, 0.2], betas=[0.8, 0.9], schedule="cosine", warmup=2)
    assert cfg.lr == (0.1, 0.2) and cfg.betas == (0.8, 0.9)
    run = cfg.resolve(100, cpu)  # 100 // 32 = 3 steps per epoch
    assert run.steps == 9 and run.eval_every == 1 and run.precision == "fp32" and run.backend is None
    assert run.factors == train.schedule_factors(9, "cosine", 2)
    h = run.history(lr=0.2, seed=3, ensemble_index=1)
    assert h.config["steps"] == 9 and h.config["epochs"] == 3 and h.config["lr"] == 0.2 and h.config["seed"] == 3
    assert h.config["schedule"] == "cosine" and h.config["ensemble_index"] == 1 and h.step == []
    run = train.TrainConfig(eval_every=4).resolve(10, cpu)
    assert run.steps == 1000 and [s for s in range(1, 13) if run.is_eval(s)] == [4, 8, 12]
    assert run.is_eval(1000)
    with pytest.raises(ValueError, match=r"lr\[1\]=0 must lie in \(0, inf\)"):
        train.TrainConfig(lr=[0.1, 0])
    with pytest.raises(ValueError, match=r"batch_size=200 must be an integer in \[1, 100\], or None \(full batch\)"):
        train.TrainConfig(batch_size=200).resolve(100, cpu)
    with pytest.raises(ValueError, match=r"loss='l1' is not allowed; allowed: 'cross_entropy', 'mse', or a callable"):
        train.TrainConfig(loss="l1")
    with pytest.raises(ValueError, match=r"progress='yes' must be True or False"):
        train.TrainConfig(progress="yes")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.lr = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("statement", [
    "import tdlcourse.checkpoint",
    # train does not need checkpoint (History.save writes through tdlcourse._atomic)
    "import sys, tdlcourse.train; assert 'tdlcourse.checkpoint' not in sys.modules",
])
def test_modules_import_alone(statement):
    subprocess.run([sys.executable, "-c", statement], check=True, env=os.environ | {"OMP_NUM_THREADS": "1"})


def test_fit_bad_data_is_rejected_before_training(digits):
    model = models.mlp(64, [8], 5, seed=0)  # 5 outputs, digits has labels up to 9
    with pytest.raises(ValueError, match=r"label 9; labels must lie in \[0, 4\].*5 outputs"):
        train.fit(model, (digits.x_train, digits.y_train), steps=2, progress=False)
    with pytest.raises(ValueError, match="rows"):
        train.fit(model, (digits.x_train, digits.y_train[:-1]), steps=2, progress=False)
    with pytest.raises(ValueError, match="empty"):
        train.fit(model, (digits.x_train[:0], digits.y_train[:0]), steps=2, progress=False)
    with pytest.raises(TypeError, match="Data or an"):
        train.fit(model, [digits.x_train, digits.y_train], steps=2, progress=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train.fit(nn.Sequential(nn.Identity()), digits, steps=2, progress=False)


def test_fit_progress_bar_and_precision_and_compile_paths(digits, capsys):
    train.fit(models.mlp(64, [8], 10, seed=0), digits, steps=20, progress=True, desc="bar-test")
    assert "bar-test" in capsys.readouterr().err
    ref = train.fit(models.mlp(64, [8], 10, seed=0), digits, steps=5, progress=False)
    bf = train.fit(models.mlp(64, [8], 10, seed=0), digits, steps=5, progress=False, precision="bf16")
    assert bf.config["precision"] == "bf16" and bf.loss != ref.loss  # autocast was active ...
    np.testing.assert_allclose(bf.loss, ref.loss, rtol=2e-2)  # ... and bfloat16 is close to float32
    comp = train.fit(models.mlp(64, [8], 10, seed=0), digits, steps=5, progress=False, compile="eager")
    np.testing.assert_allclose(comp.loss, ref.loss, rtol=1e-6)


# ---------------------------------------------------------------------------- History

def test_history_round_trip_and_helpers(tmp_path, digits):
    hist = train.fit(models.mlp(64, [8], 10, seed=0), digits, steps=10, eval_every=5, progress=False)
    path = tmp_path / "h.json"
    hist.save(path)
    back = train.History.load(path)
    assert back == hist and json.loads(path.read_text())["config"]["steps"] == 10
    assert train.History.from_dict(hist.to_dict() | {"future_field": 1}) == hist
    assert hist.first_step_reaching("train_acc", 0.0) == 5 and hist.first_step_reaching("train_acc", 2.0) is None
    with pytest.raises(KeyError, match="recorded"):
        hist.final("val_acc")
    fig = hist.plot()
    assert {t.name for t in fig.data} == {"train_acc", "test_acc"}


# ------------------------------------------------------------------------ fit_ensemble

@torch.no_grad()
def params_rel_err(a: list[nn.Module], b: list[nn.Module]) -> float:
    return max(float((p - q).abs().max() / q.abs().max()) for ma, mb in zip(a, b)
               for p, q in zip(ma.parameters(), mb.parameters()))


def hist_rel_err(ha: list[train.History], hb: list[train.History]) -> float:
    errs = [0.0]
    for a, b in zip(ha, hb):
        assert a.step == b.step and a.eval_step == b.eval_step and a.diverged == b.diverged
        errs += [abs(u - v) / max(abs(v), 1e-12) for u, v in zip(a.loss, b.loss)]
        for key in b.eval:
            errs += [abs(u - v) / max(abs(v), 1e-6) for u, v in zip(a.eval[key], b.eval[key])]
    return max(errs)


@pytest.mark.parametrize("engine", ["bmm", "func"])
@pytest.mark.parametrize("activation, kw", [
    ("tanh", dict(optimizer="sgd", lr=[0.05, 0.1, 0.02], momentum=0.9, batch_size=64)),
    ("relu", dict(optimizer="adam", lr=[1e-3, 3e-3, 2e-3], schedule="cosine")),
    ("relu", dict(optimizer="adamw", lr=2e-3, weight_decay=0.05, batch_size=100, nesterov=False)),
])
def test_ensemble_equals_sequential_fits(digits, engine, activation, kw):
    k, steps = 3, 12
    seeds = [3, 4, 5]
    labels = [digits.y_train, data.shuffle_labels(digits.y_train, seed=1), data.corrupt_labels(digits.y_train, 0.5, 10)]
    per_model = [digits.with_train(y_train=y) for y in labels]  # own labels per model (random-label sweeps)
    ens = [models.mlp(64, [16, 16], 10, activation=activation, seed=s) for s in range(k)]
    seq = copy.deepcopy(ens)
    lrs = kw["lr"] if isinstance(kw["lr"], list) else [kw["lr"]] * k
    hs = [train.fit(m, d, steps=steps, seed=s, progress=False, eval_every=4, **(kw | {"lr": lr}))
          for m, d, s, lr in zip(seq, per_model, seeds, lrs)]
    res = train.fit_ensemble(ens, per_model, steps=steps, seeds=seeds, progress=False, eval_every=4,
                             engine=engine, **kw)
    assert res.engine == engine and res.models[0] is ens[0]
    assert params_rel_err(ens, seq) < 1e-5
    assert hist_rel_err(res.histories, hs) < 1e-5


@pytest.mark.parametrize("kw", OPTIMIZER_CASES)
def test_ensemble_follows_the_update_rule(kw):
    x, y = linear_problem()
    ms = [linear_model(seed=s) for s in range(2)]
    th0 = [theta(m) for m in ms]
    train.fit_ensemble(ms, (x, y), steps=12, loss="mse", progress=False, **kw)
    for m, t0 in zip(ms, th0):
        th, _ = oracle_linear(x, y, t0[:-1], t0[-1], steps=12, **oracle_kwargs(kw, 12))
        np.testing.assert_allclose(theta(m), th, rtol=1e-10, atol=1e-12)


def test_ensemble_general_engine_on_residual_nets_and_chunks(digits):
    ens = [models.resmlp(64, 16, 2, 10, seed=s) for s in range(4)]
    seq = copy.deepcopy(ens)
    chunked = copy.deepcopy(ens)
    hs = [train.fit(m, digits, steps=8, lr=0.05, momentum=0.9, progress=False) for m in seq]
    res = train.fit_ensemble(ens, digits, steps=8, lr=0.05, momentum=0.9, progress=False)
    assert res.engine == "func"
    assert params_rel_err(ens, seq) < 1e-5 and hist_rel_err(res.histories, hs) < 1e-5
    train.fit_ensemble(chunked, digits, steps=8, lr=0.05, momentum=0.9, progress=False, model_chunk=3)
    assert params_rel_err(chunked, seq) < 1e-5


def test_ensemble_chunks_and_compile_give_the_same_result(digits):
    base = [models.mlp(64, [16], 10, seed=s) for s in range(4)]
    runs = {}
    for name, kw in {"whole": dict(model_chunk=4), "chunks": dict(model_chunk=3),
                     "compiled": dict(compile="eager"), "func": dict(engine="func", model_chunk=1)}.items():
        ms = copy.deepcopy(base)
        train.fit_ensemble(ms, digits, steps=6, batch_size=50, seeds=[0, 1, 2, 3], progress=False, **kw)
        runs[name] = ms
    for name in ("chunks", "compiled", "func"):
        assert params_rel_err(runs[name], runs["whole"]) < 1e-5, name


def test_ensemble_divergence_is_per_model(digits):
    lrs = [0.05, 1e4, 0.1]
    ens = [models.mlp(64, [16], 10, seed=s) for s in range(3)]
    seq = copy.deepcopy(ens)
    hs = [train.fit(m, digits, steps=30, lr=lr, momentum=0.9, progress=False, on_divergence="record")
          for m, lr in zip(seq, lrs)]
    res = train.fit_ensemble(ens, digits, steps=30, lr=lrs, momentum=0.9, progress=False, on_divergence="record")
    assert [h.diverged for h in res.histories] == [False, True, False] == [h.diverged for h in hs]
    assert res.histories[1].message == hs[1].message and len(res.histories[1].loss) == len(hs[1].loss)
    keep = [0, 2]
    assert params_rel_err([ens[i] for i in keep], [seq[i] for i in keep]) < 1e-5
    assert hist_rel_err(res.histories, hs) < 1e-5
    with pytest.raises(train.DivergenceError, match=r"model 1: loss became (nan|inf) at step \d+"):
        train.fit_ensemble([models.mlp(64, [16], 10, seed=s) for s in range(3)], digits, steps=30, lr=lrs,
                           momentum=0.9, progress=False)


def test_ensemble_stop_when_is_per_model(digits):
    lrs = [0.05, 0.3]
    ens = [models.mlp(64, [32], 10, seed=s) for s in range(2)]
    seq = copy.deepcopy(ens)
    hs = [train.fit(m, digits, steps=300, lr=lr, eval_every=5, stop_when={"train_acc": 0.9}, progress=False)
          for m, lr in zip(seq, lrs)]
    res = train.fit_ensemble(ens, digits, steps=300, lr=lrs, eval_every=5, stop_when={"train_acc": 0.9},
                             progress=False)
    assert [h.stopped_at for h in res.histories] == [h.stopped_at for h in hs]
    assert hs[0].stopped_at != hs[1].stopped_at
    assert params_rel_err(ens, seq) < 1e-5


@pytest.mark.parametrize("engine", ["bmm", "func"])
def test_ensemble_accelerator_code_path_on_cpu(digits, monkeypatch, engine):
    # The GPU path (one pass for all K, losses on the device until each evaluation, masked updates)
    # cannot run here; the same logic on a CPU must give the sequential fits' results, divergence
    # and early stops included.
    monkeypatch.setattr(train.ensemble, "_ACCELERATOR_STYLE_ON_CPU", True)
    lrs = [0.05, 1e4, 0.3, 0.1]
    ens = [models.mlp(64, [32], 10, seed=s) for s in range(4)]
    seq = copy.deepcopy(ens)
    kw = dict(steps=60, momentum=0.9, eval_every=7, stop_when={"train_acc": 0.9}, on_divergence="record",
              batch_size=100, progress=False)
    hs = [train.fit(m, digits, lr=lr, **kw) for m, lr in zip(seq, lrs)]
    res = train.fit_ensemble(ens, digits, lr=lrs, engine=engine, **kw)
    assert [h.diverged for h in res.histories] == [h.diverged for h in hs] == [False, True, False, False]
    assert [h.stopped_at for h in res.histories] == [h.stopped_at for h in hs]
    assert any(h.stopped_at for h in hs)
    assert params_rel_err(ens, seq) < 1e-5 and hist_rel_err(res.histories, hs) < 1e-5
    with pytest.raises(train.DivergenceError, match="model 1"):
        train.fit_ensemble(copy.deepcopy(seq), digits, lr=lrs, engine=engine, **(kw | {"on_divergence": "raise"}))


def test_ensemble_refuses_mixed_architectures_and_batchnorm(digits):
    with pytest.raises(ValueError, match=r"models\[1\] differs from models\[0\] at parameter '2.weight': shape \(8, 16\)"):
        train.fit_ensemble([models.mlp(64, [16, 16], 10), models.mlp(64, [16, 8], 10)], digits, progress=False)
    with pytest.raises(ValueError, match=r"models\[2\] differs .* at module '1': Tanh\(\) vs ReLU\(\)"):
        train.fit_ensemble([models.mlp(64, [16], 10), models.mlp(64, [16], 10),
                            models.mlp(64, [16], 10, activation="tanh")], digits, progress=False)
    with pytest.raises(ValueError, match=r"parameter '6.weight' .*only models\[1\] has"):
        train.fit_ensemble([models.mlp(64, [16, 16], 10), models.mlp(64, [16, 16, 10], 10)], digits, progress=False)
    bn = lambda: nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16), nn.ReLU(), nn.Linear(16, 10))  # noqa: E731
    with pytest.raises(ValueError, match=r"module '1' \(BatchNorm1d\) keeps running statistics"):
        train.fit_ensemble([bn(), bn()], digits, progress=False)


def test_ensemble_batch_statistics_without_running_stats_match_fit(digits):
    torch.manual_seed(0)
    make = lambda: nn.Sequential(nn.Linear(64, 16), nn.BatchNorm1d(16, track_running_stats=False),  # noqa: E731
                                 nn.ReLU(), nn.Linear(16, 10))
    ens = [make() for _ in range(2)]
    seq = copy.deepcopy(ens)
    hs = [train.fit(m, digits, steps=5, batch_size=32, progress=False) for m in seq]
    res = train.fit_ensemble(ens, digits, steps=5, batch_size=32, progress=False)
    assert res.engine == "func" and params_rel_err(ens, seq) < 1e-5 and hist_rel_err(res.histories, hs) < 1e-5


def test_ensemble_of_a_sequential_that_reuses_one_activation_module(digits):
    # Sequential's children list a reused module once; the bmm engine must not train the shorter net.
    def make(s):
        torch.manual_seed(s)
        act = nn.Tanh()
        return nn.Sequential(nn.Linear(64, 16), act, nn.Linear(16, 16), act, nn.Linear(16, 10))

    ens = [make(s) for s in range(2)]
    seq = copy.deepcopy(ens)
    hs = [train.fit(m, digits, steps=5, progress=False) for m in seq]
    res = train.fit_ensemble(ens, digits, steps=5, progress=False)
    assert res.engine == "func"
    assert params_rel_err(ens, seq) < 1e-5 and hist_rel_err(res.histories, hs) < 1e-5


def test_ensemble_bad_input(digits):
    ms = [models.mlp(64, [8], 10, seed=s) for s in range(2)]
    with pytest.raises(ValueError, match="models is empty"):
        train.fit_ensemble([], digits)
    with pytest.raises(ValueError, match="lr holds 3 values but there are 2 models"):
        train.fit_ensemble(ms, digits, lr=[0.1, 0.1, 0.1], progress=False)
    with pytest.raises(ValueError, match="seeds"):
        train.fit_ensemble(ms, digits, seeds=[1], progress=False)
    with pytest.raises(ValueError, match="data holds 3 datasets but there are 2 models"):
        train.fit_ensemble(ms, [digits] * 3, progress=False)
    small = data.Data(digits.x_train[:10], digits.y_train[:10], digits.x_test, digits.y_test, 10)
    with pytest.raises(ValueError, match=r"data\[1\].x_train has shape \(10, 64\)"):
        train.fit_ensemble(ms, [digits, small], progress=False)
    with pytest.raises(ValueError, match=r"data\[1\].y_train holds the label 11"):
        bad = data.Data(digits.x_train, digits.y_train + 2, digits.x_test, digits.y_test)
        train.fit_ensemble(ms, [digits, bad], progress=False)
    with pytest.raises(ValueError, match=r"engine='jax'.*'auto', 'func', 'bmm'"):
        train.fit_ensemble(ms, digits, engine="jax", progress=False)
    with pytest.raises(ValueError, match="engine='bmm' needs a plain MLP"):
        train.fit_ensemble([models.resmlp(64, 8, 1, 10) for _ in range(2)], digits, engine="bmm", progress=False)
    with pytest.raises(ValueError, match=r"model_chunk=0 must be an integer >= 1, or None \(automatic\)"):
        train.fit_ensemble(ms, digits, model_chunk=0, progress=False)
    with pytest.raises(ValueError, match=r"eval_chunk=0 must be an integer >= 1"):
        train.fit_ensemble(ms, digits, eval_chunk=0, progress=False)
    with pytest.raises(ValueError, match=r"lr\[1\]=-0.1 must lie in \(0, inf\)"):
        train.fit_ensemble(ms, digits, lr=[0.1, -0.1], progress=False)
    with pytest.raises(ValueError, match=r"seeds\[1\]=1.5 must be an integer"):
        train.fit_ensemble(ms, digits, seeds=[0, 1.5], progress=False)


# --------------------------------------------------------------------------- fit_sweep

def test_sweep_groups_by_shape_and_equals_single_fits(digits):
    configs = [dict(widths=[w], seed=s, activation=a, lr=lr)
               for w, a, lr in ((8, "relu", 0.1), (16, "relu", 0.05), (8, "tanh", 0.1)) for s in (0, 1)]
    configs[1]["data"] = digits.with_train(y_train=data.shuffle_labels(digits.y_train, seed=0))
    configs[3]["train_seed"] = 7
    make = lambda **c: models.mlp(64, c["widths"], 10, activation=c["activation"], seed=c["seed"])  # noqa: E731
    res = train.fit_sweep(make, configs, digits, steps=6, batch_size=100, max_group=5, progress=False)
    assert res.groups == [[0, 1], [2, 3], [4, 5]]
    for c, m, h in zip(configs, res.models, res.histories):
        ref = make(**c)
        hr = train.fit(ref, c.get("data", digits), steps=6, batch_size=100, lr=c["lr"], seed=c.get("train_seed", 0),
                       progress=False)
        assert params_rel_err([m], [ref]) < 1e-5 and hist_rel_err([h], [hr]) < 1e-5
    small = train.fit_sweep(make, configs[:2], digits, steps=2, max_group=1, progress=False)
    assert small.groups == [[0], [1]]
    with pytest.raises(ValueError, match="'seeds' is set per configuration"):
        train.fit_sweep(make, configs, digits, seeds=[0] * 6)
    with pytest.raises(ValueError, match="configs is empty"):
        train.fit_sweep(make, [], digits)


# -------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip(tmp_path, digits):
    model = models.mlp(64, [8], 10, seed=0)
    hist = train.fit(model, digits, steps=5, progress=False)
    cfg = {"builder": "mlp", "d_in": 64, "widths": [8], "d_out": 10}
    path = checkpoint.save(tmp_path / "ck" / "m.pt", model, history=hist, config=cfg)
    ck = checkpoint.load(path)
    assert ck.history == hist and ck.config == cfg
    fresh = ck.load_into(models.mlp(cfg["d_in"], cfg["widths"], cfg["d_out"], seed=1))
    assert torch.equal(fresh(digits.x_test), model(digits.x_test))
    raw = torch.load(path, weights_only=True)  # plain data and tensors only
    assert raw["format"] == checkpoint.FORMAT and set(raw) == {"format", "version", "state_dict", "history", "config"}
    assert os.listdir(path.parent) == ["m.pt"]


class Custom:
    """A class that a checkpoint must not be able to smuggle in."""


def test_checkpoint_refuses_classes_and_bad_config(tmp_path):
    torch.save({"format": checkpoint.FORMAT, "state_dict": {}, "x": Custom()}, tmp_path / "evil.pt")
    with pytest.raises(Exception, match="(?i)weights_only|unsupported global"):
        checkpoint.load(tmp_path / "evil.pt")
    torch.save({"a": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="not a tdlcourse checkpoint"):
        checkpoint.load(tmp_path / "other.pt")
    with pytest.raises(ValueError, match="JSON-serializable"):
        checkpoint.save(tmp_path / "m.pt", nn.Linear(2, 2), config={"f": object()})
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / "missing.pt")


def test_checkpoint_writes_are_atomic(tmp_path, monkeypatch):
    path = tmp_path / "m.pt"
    checkpoint.save(path, nn.Linear(2, 2), config={"v": 1})

    def fail(src, dst):
        raise OSError("disk full (test)")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        checkpoint.save(path, nn.Linear(2, 2), config={"v": 2})
    monkeypatch.undo()
    assert checkpoint.load(path).config == {"v": 1}  # the old checkpoint is intact
    assert os.listdir(tmp_path) == ["m.pt"]  # and no temporary file is left


def test_ensemble_bf16_autocast_is_close_to_float32(digits):
    ref = train.fit_ensemble([models.mlp(64, [16], 10, seed=s) for s in range(2)], digits, steps=5, progress=False)
    for engine in ("bmm", "func"):
        bf = train.fit_ensemble([models.mlp(64, [16], 10, seed=s) for s in range(2)], digits, steps=5,
                                progress=False, precision="bf16", engine=engine)
        for a, b in zip(bf.histories, ref.histories):
            assert a.config["precision"] == "bf16" and a.loss != b.loss  # autocast was active
            np.testing.assert_allclose(a.loss, b.loss, rtol=2e-2)
