"""ipywidgets explorers for the labs, each with a static fallback for the web book.

In JupyterLab an explorer is a live control: moving it shows a precomputed run at once and trains a
new one on demand. The book has no kernel, so there the same explorer is a plotly figure with a
slider over the precomputed runs. ``TDL_STATIC=1`` (set by ``make book``) selects the static form;
``static=`` overrides.
"""

from __future__ import annotations

import os
from typing import Callable, Sequence

import plotly.graph_objects as go

from . import plots
from .randomization import Run


def is_static() -> bool:
    """True when notebooks are executed for the static web book (``TDL_STATIC=1``)."""
    return os.environ.get("TDL_STATIC", "") == "1"


def _acc_traces(r: Run, visible: bool) -> list[go.Scatter]:
    h = r.history
    return [
        go.Scatter(x=h.eval_step, y=h.eval["train_acc"], name="train accuracy", visible=visible,
                   mode="lines", line={"color": "#1f77b4"}),
        go.Scatter(x=h.eval_step, y=h.eval["test_acc"], name="test accuracy", visible=visible,
                   mode="lines", line={"color": "#d62728"}),
    ]


def _layout(fig: go.Figure, title: str) -> go.Figure:
    fig.update_layout(template=plots.TEMPLATE, title=title, xaxis_title="step", yaxis_title="accuracy",
                      height=460, margin={"l": 60, "r": 20, "t": 60, "b": 50})
    fig.update_yaxes(range=[0, 1.02])
    return fig


def label_noise_slider_figure(runs: Sequence[Run]) -> go.Figure:
    """Static explorer: train/test accuracy over steps, one slider position per label-noise fraction."""
    runs = sorted(runs, key=lambda r: r.fraction)
    if not runs:
        raise ValueError("runs=[] must hold at least one randomization.Run")
    fig = go.Figure()
    for i, r in enumerate(runs):
        for t in _acc_traces(r, visible=(i == 0)):
            fig.add_trace(t)
    steps = []
    for i, r in enumerate(runs):
        vis = [j // 2 == i for j in range(2 * len(runs))]
        label = f"{r.fraction:.0%}"
        steps.append({"method": "update", "label": label,
                      "args": [{"visible": vis},
                               {"title.text": f"{label} random labels: test accuracy {r.test_acc:.1%}"}]})
    fig.update_layout(sliders=[{"active": 0, "steps": steps, "pad": {"t": 40},
                                "currentvalue": {"prefix": "fraction of random labels: "}}])
    return _layout(fig, f"{runs[0].fraction:.0%} random labels: test accuracy {runs[0].test_acc:.1%}")


def explore_label_noise(runs: Sequence[Run], train_fn: Callable[[float], Run] | None = None,
                        fractions: Sequence[float] | None = None, static: bool | None = None) -> None:
    """Display the label-noise explorer.

    Live (JupyterLab): a slider over ``fractions`` (default: the precomputed ones); a fraction with no
    precomputed run is trained on demand with ``train_fn(fraction)`` and cached. Static (the book):
    ``label_noise_slider_figure(runs)``.
    """
    from IPython.display import display

    if static is None:
        static = is_static()
    if static:
        plots.show(label_noise_slider_figure(runs))
        return
    import ipywidgets as w

    cache = {round(r.fraction, 6): r for r in runs}
    options = sorted(set(cache) | {round(float(f), 6) for f in (() if fractions is None else fractions)})
    if not options:
        raise ValueError("no runs and no fractions to explore")
    slider = w.SelectionSlider(options=[(f"{f:.0%}", f) for f in options], value=options[0],
                               description="random labels", continuous_update=False,
                               style={"description_width": "initial"}, layout={"width": "420px"})
    status = w.HTML()
    out = w.Output()

    def render(change=None) -> None:
        f = slider.value
        if f not in cache:
            if train_fn is None:
                status.value = f"<i>no run for {f:.0%} and no train_fn given</i>"
                return
            status.value = f"<i>training with {f:.0%} random labels...</i>"
            cache[f] = train_fn(f)
        r = cache[f]
        status.value = (f"train accuracy <b>{r.train_acc:.1%}</b>, test accuracy <b>{r.test_acc:.1%}</b>, "
                        f"100% train accuracy at step <b>{r.steps_to_fit or 'never'}</b>")
        fig = go.Figure(_acc_traces(r, visible=True))
        with out:
            out.clear_output(wait=True)
            plots.show(_layout(fig, f"{f:.0%} random labels"))

    slider.observe(render, names="value")
    render()
    display(w.VBox([slider, status, out]))


def _slider_figure(figures: Sequence[tuple[str, go.Figure]], label: str) -> go.Figure:
    """One figure holding every figure's traces, a slider position showing one figure's at a time."""
    fig = go.Figure()
    owner: list[int] = []
    for i, (_, f) in enumerate(figures):
        for t in f.data:
            t = t.to_plotly_json()
            t["visible"] = i == 0
            fig.add_trace(t)
            owner.append(i)
    first = figures[0][1]
    fig.update_layout(first.layout)
    steps = [{"method": "update", "label": text,
              "args": [{"visible": [o == i for o in owner]}, {"title.text": f.layout.title.text or ""}]}
             for i, (text, f) in enumerate(figures)]
    fig.update_layout(sliders=[{"active": 0, "steps": steps, "pad": {"t": 40},
                                "currentvalue": {"prefix": f"{label}: "}}])
    return fig


def explore(make_figure: Callable[[object], go.Figure], values: Sequence, *, label: str,
            precomputed: Sequence | None = None, fmt: Callable[[object], str] = str,
            static: bool | None = None) -> None:
    """Display a control that shows ``make_figure(value)`` for the chosen value.

    Live (JupyterLab): a slider over ``values``; each value's figure is made when the slider first
    reaches it and then cached, so ``make_figure`` may recompute (train, solve) for values nobody
    precomputed. Static (the book): one plotly figure with a slider over ``precomputed`` (default:
    ``values``), each position showing the traces of ``make_figure(value)``; there is no kernel, so
    only those values can be shown.
    """
    from IPython.display import display

    values = list(values)
    if not values:
        raise ValueError("values=[] must hold at least one value to explore")
    if not isinstance(label, str) or not label:
        raise ValueError(f"label must be a non-empty string, got {label!r}")
    shown = values if precomputed is None else list(precomputed)
    if not shown:
        raise ValueError("precomputed=[] must hold at least one value (or be None: all values)")
    if static is None:
        static = is_static()
    if static:
        plots.show(_slider_figure([(fmt(v), make_figure(v)) for v in shown], label))
        return
    import ipywidgets as w

    cache: dict[int, go.Figure] = {}
    slider = w.SelectionSlider(options=[(fmt(v), i) for i, v in enumerate(values)], value=0,
                               description=label, continuous_update=False,
                               style={"description_width": "initial"}, layout={"width": "480px"})
    status = w.HTML()
    out = w.Output()

    def render(change=None) -> None:
        i = slider.value
        if i not in cache:
            status.value = f"<i>computing {label} = {fmt(values[i])}...</i>"
            cache[i] = make_figure(values[i])
        status.value = ""
        with out:
            out.clear_output(wait=True)
            plots.show(cache[i])

    slider.observe(render, names="value")
    render()
    display(w.VBox([slider, status, out]))
