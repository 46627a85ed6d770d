"""plots.show emits a bundle that renders in JupyterLab and offline in the book; the label-noise
explorer is a working slider in both forms; randomization variants are what they claim."""

from __future__ import annotations

import json

import numpy as np
import plotly.graph_objects as go
import pytest
import torch

from tdlcourse import data, plots, randomization, widgets


def tiny_data(n=100, seed=0):
    d = data.digits(seed=seed)
    return data.Data(d.x_train[:n], d.y_train[:n], d.x_test[:200], d.y_test[:200], num_classes=10, name="tiny")


def test_mimebundle_has_plotly_json_and_offline_html():
    fig = plots.curves({"a": ([0, 1, 2], [1.0, 0.5, 0.25])}, title="t")
    b = plots.mimebundle(fig)
    assert b["application/vnd.plotly.v1+json"]["data"][0]["y"] == [1.0, 0.5, 0.25]
    html = b["text/html"]
    assert 'class="plotly-graph-div"' in html and "Plotly.newPlot" in html
    assert "<script src" not in html and "cdn" not in html.lower(), "the figure must not load plotly.js itself"
    json.dumps(b)  # serializable into a notebook
    with pytest.raises(TypeError, match="plotly"):
        plots.mimebundle({"data": []})


def test_book_plugin_drops_only_plotly_json():
    class D:
        def __init__(self, mime):
            self.mime_type = mime

    assert plots.BookPlotlyMime.handle_mime(None, D("application/vnd.plotly.v1+json"), False) == []
    assert plots.BookPlotlyMime.handle_mime(None, D("text/html"), False) is None


@pytest.fixture(scope="module")
def sweep():
    d = tiny_data()
    return randomization.label_noise_sweep(d, [0.0, 1.0], widths=(32,), steps=20, lr=0.05, eval_every=5)


def test_slider_figure_shows_one_run_per_step(sweep):
    fig = widgets.label_noise_slider_figure(sweep)
    assert len(fig.data) == 2 * len(sweep)
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["0%", "100%"]
    for i, s in enumerate(steps):
        vis = s.args[0]["visible"]
        assert [j for j, v in enumerate(vis) if v] == [2 * i, 2 * i + 1]
        assert list(fig.data[2 * i].y) == sweep[i].history.eval["train_acc"]
    assert [t.visible for t in fig.data] == [True, True, False, False]


def test_explorer_static_and_live(sweep, monkeypatch):
    shown = []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append(a[0]))
    monkeypatch.setenv("TDL_STATIC", "1")
    assert widgets.is_static()
    widgets.explore_label_noise(sweep)
    assert isinstance(shown[-1], dict) and "text/html" in shown[-1]

    calls = []

    def train_fn(f):
        calls.append(f)
        return sweep[-1]

    monkeypatch.setenv("TDL_STATIC", "0")
    widgets.explore_label_noise(sweep, train_fn=train_fn, fractions=[0.0, 0.5, 1.0])
    box = shown[-1]
    import ipywidgets as w

    assert isinstance(box, w.VBox)
    slider, status = box.children[0], box.children[1]
    assert [v for _, v in slider.options] == [0.0, 0.5, 1.0]
    slider.value = 0.5  # not precomputed: trained on demand, then cached
    slider.value = 0.0
    slider.value = 0.5
    assert calls == [0.5]
    assert "test accuracy" in status.value


def _line(a):
    return go.Figure(go.Scatter(x=[0, 1, 2], y=[0, a, 2 * a], name=f"slope {a}"), layout={"title": f"a = {a}"})


def test_explore_static_is_one_slider_figure_over_the_precomputed_values(monkeypatch):
    shown, made = [], []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append(a[0]))

    def make(a):
        made.append(a)
        return _line(a)

    widgets.explore(make, [1, 2, 3, 4], label="slope", precomputed=[1, 3], fmt=lambda a: f"{a}x", static=True)
    assert made == [1, 3]  # only the precomputed values: the book has no kernel for the others
    fig = go.Figure(json.loads(shown[-1]["application/vnd.plotly.v1+json"]) if isinstance(
        shown[-1]["application/vnd.plotly.v1+json"], str) else shown[-1]["application/vnd.plotly.v1+json"])
    steps = fig.layout.sliders[0].steps
    assert [s.label for s in steps] == ["1x", "3x"]
    assert [list(t.y) for t in fig.data] == [[0, 1, 2], [0, 3, 6]]
    assert [t.visible for t in fig.data] == [True, False]
    assert steps[1].args[0]["visible"] == [False, True] and steps[1].args[1]["title.text"] == "a = 3"


def test_explore_live_computes_on_demand_and_caches(monkeypatch):
    import ipywidgets as w

    shown, made = [], []
    monkeypatch.setattr("IPython.display.display", lambda *a, **k: shown.append(a[0]))
    widgets.explore(lambda a: made.append(a) or _line(a), [0.5, 1.0, 2.0], label="slope", static=False)
    box = shown[-1]
    assert isinstance(box, w.VBox)
    slider = box.children[0]
    assert [lab for lab, _ in slider.options] == ["0.5", "1.0", "2.0"]
    slider.value = 2
    slider.value = 0
    slider.value = 2
    assert made == [0.5, 2.0]
    with pytest.raises(ValueError, match="values"):
        widgets.explore(_line, [], label="slope", static=False)


def test_variants():
    d = tiny_data(n=1000)
    same = randomization.variant(d, "true labels")
    assert same is d
    half = randomization.variant(d, "random labels", 0.5, seed=1)
    changed = (half.y_train != d.y_train).float().mean().item()
    assert abs(changed - 0.5 * 0.9) < 0.05  # a redrawn label keeps its class with probability 1/10
    assert torch.equal(half.x_train, d.x_train) and torch.equal(half.y_test, d.y_test)
    g = randomization.variant(d, "gaussian inputs", seed=2)
    assert torch.allclose(g.x_train.mean(0), d.x_train.mean(0), atol=0.15)
    assert torch.allclose(g.x_train.std(0), d.x_train.std(0), rtol=0.15, atol=1e-6)
    with pytest.raises(ValueError, match="kind='noise'.*allowed"):
        randomization.variant(d, "noise")


def test_a_wide_net_fits_random_labels():
    # Zhang et al. 2017 in miniature: 100 points with random labels are memorized exactly.
    r = randomization.run(tiny_data(), "random labels", 1.0, widths=(256,), steps=300, lr=0.01,
                          optimizer="adam", eval_every=25)
    assert r.train_acc == 1.0 and r.steps_to_fit is not None
    assert r.test_acc < 0.3  # and it has learned nothing about the digits


def test_label_noise_sweep_equals_separate_runs():
    # The sweep trains all fractions as one ensemble; each must match its own run up to float rounding.
    d = tiny_data()
    kw = dict(widths=(32,), steps=40, lr=0.05, momentum=0.9, batch_size=25, eval_every=10, seed=3)
    sweep = randomization.label_noise_sweep(d, [0.0, 0.5, 1.0], **kw)
    for r in sweep:
        alone = randomization.run(d, "random labels", r.fraction, **kw)
        assert r.fraction == alone.fraction and r.n_params == alone.n_params
        assert r.steps_to_fit == alone.steps_to_fit and r.history.eval_step == alone.history.eval_step
        np.testing.assert_allclose(r.history.loss, alone.history.loss, rtol=1e-5)
        np.testing.assert_allclose(r.history.eval["test_acc"], alone.history.eval["test_acc"], atol=1e-9)
    with pytest.raises(ValueError, match="fractions"):
        randomization.label_noise_sweep(d, [], **kw)
