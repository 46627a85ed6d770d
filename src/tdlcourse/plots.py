"""Plotly figure builders and one offline-safe ``show``.

``show(fig)`` emits two representations of the figure: the plotly MIME bundle (rendered by the
plotly extension in JupyterLab) and an HTML ``<div>`` that draws itself with the page's own
``window.Plotly``. The web book serves ``plotly.min.js`` from its ``_static`` folder (copied from the
plotly Python package by ``make``), so no page loads anything from the internet.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Sequence

import plotly.graph_objects as go
import plotly.io as pio

# One template for the whole course: white background, readable in print and on screen.
TEMPLATE = "plotly_white"


def _html_div(fig: go.Figure) -> str:
    # include_plotlyjs=False: the book loads plotly.min.js once per page from _static; the
    # guard makes a missing library show a readable message instead of a blank box.
    div = pio.to_html(fig, include_plotlyjs=False, full_html=False, config={"responsive": True})
    return (
        div
        + "<noscript>This figure needs JavaScript.</noscript>"
        + "<script>if (typeof window.Plotly === 'undefined') {"
        + " document.currentScript.insertAdjacentHTML('beforebegin',"
        + " '<p class=\"tdl-plotly-missing\">plotly.js is not loaded on this page.</p>'); }</script>"
    )


def mimebundle(fig: go.Figure) -> dict[str, Any]:
    """The MIME bundle ``show`` displays: plotly JSON for JupyterLab, HTML for the static book."""
    if not isinstance(fig, go.Figure):
        raise TypeError(f"fig must be a plotly.graph_objects.Figure, got {type(fig).__name__}")
    return {
        "application/vnd.plotly.v1+json": json.loads(pio.to_json(fig, validate=False)),
        "text/html": _html_div(fig),
        "text/plain": f"<plotly figure: {fig.layout.title.text or 'untitled'}>",
    }


def show(fig: go.Figure) -> None:
    """Display ``fig`` so that it renders in JupyterLab and in the offline web book."""
    from IPython.display import display

    display(mimebundle(fig), raw=True)


def curves(
    series: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    *,
    title: str = "",
    xaxis: str = "step",
    yaxis: str = "",
    yrange: tuple[float, float] | None = None,
    dash: Mapping[str, str] | None = None,
) -> go.Figure:
    """Line plot of named ``(x, y)`` series (e.g. train and test accuracy over steps)."""
    fig = go.Figure()
    for name, (x, y) in series.items():
        fig.add_trace(
            go.Scatter(x=list(x), y=list(y), mode="lines", name=name,
                       line={"dash": (dash or {}).get(name, "solid")})
        )
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title=xaxis, yaxis_title=yaxis,
                      height=420, margin={"l": 60, "r": 20, "t": 60, "b": 50})
    if yrange is not None:
        fig.update_yaxes(range=list(yrange))
    return fig


class BookPlotlyMime:
    """myst-nb mime renderer plugin (entry point ``myst_nb.mime_renderers``): the web book draws
    plotly figures from the HTML representation that ``show`` emits beside the plotly JSON, so the
    JSON is rendered as nothing instead of raising an 'unknown mime type' warning."""

    mime_priority_overrides = ()

    @staticmethod
    def handle_mime(renderer, data, inline):
        return [] if data.mime_type == "application/vnd.plotly.v1+json" else None
