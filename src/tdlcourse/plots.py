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


# ------------------------------------------------------------- curvature and landscape figures

def _np(x: Any):
    import numpy as np

    if hasattr(x, "detach"):
        x = x.detach().cpu().double().numpy()
    return np.asarray(x, dtype=float)


def loss_surface(
    alphas: Any,
    betas: Any,
    losses: Any,
    *,
    title: str = "",
    log: bool = False,
    path: Any = None,
    zlabel: str = "loss",
) -> go.Figure:
    """3-D surface and contour map, side by side, of ``losses[i, j]`` at ``(alphas[i], betas[j])``.

    Takes the fields of ``landscape.Surface2D``. The trained point (0, 0) is marked; ``path`` (T x 2
    coordinates, e.g. ``TrajectoryPCA.coordinates``) is drawn on the contour map. ``log`` plots
    log10 of the loss (the usual view of Li et al. 2018).
    """
    from plotly.subplots import make_subplots
    import numpy as np

    a, b, z = _np(alphas), _np(betas), _np(losses)
    if z.shape != (a.size, b.size):
        raise ValueError(f"losses must have shape (len(alphas), len(betas)) = {(a.size, b.size)}, got {z.shape}")
    if log:
        z = np.log10(np.maximum(z, np.finfo(float).tiny))
        zlabel = f"log10 {zlabel}"
    zt = z.T  # plotly: z[row][col] sits at (x[col], y[row])
    fig = make_subplots(rows=1, cols=2, specs=[[{"type": "surface"}, {"type": "xy"}]],
                        column_widths=[0.55, 0.45], horizontal_spacing=0.08)
    fig.add_trace(go.Surface(x=a, y=b, z=zt, colorscale="Viridis", showscale=False,
                             contours={"z": {"show": True, "usecolormap": True, "project": {"z": True}}},
                             name=zlabel), row=1, col=1)
    fig.add_trace(go.Contour(x=a, y=b, z=zt, colorscale="Viridis", ncontours=25,
                             colorbar={"title": zlabel, "len": 0.8}, name=zlabel), row=1, col=2)
    if path is not None:
        p = _np(path)
        fig.add_trace(go.Scatter(x=p[:, 0], y=p[:, 1], mode="lines+markers", name="trajectory",
                                 line={"color": "white"}, marker={"size": 4}), row=1, col=2)
    fig.add_trace(go.Scatter(x=[0.0], y=[0.0], mode="markers", name="trained point",
                             marker={"symbol": "x", "size": 10, "color": "red"}), row=1, col=2)
    fig.update_layout(template=TEMPLATE, title=title, height=480, margin={"l": 40, "r": 20, "t": 60, "b": 40},
                      scene={"xaxis_title": "alpha", "yaxis_title": "beta", "zaxis_title": zlabel})
    fig.update_xaxes(title_text="alpha", row=1, col=2)
    fig.update_yaxes(title_text="beta", row=1, col=2)
    return fig


def spectral_density(
    grid: Any,
    density: Any,
    *,
    stderr: Any = None,
    eigenvalues: Any = None,
    log: bool = True,
    title: str = "",
) -> go.Figure:
    """Spectral density of a Hessian (``curvature.DensityResult``): a line, an optional band of +-2
    standard errors, and optional eigenvalues (e.g. from ``hessian_eigs``) as a rug.

    ``log`` uses a log y-axis (Ghorbani et al. 2019), which shows the bulk and the outliers at once.
    """
    import numpy as np

    x, y = _np(grid), _np(density)
    if x.ndim != 1 or y.shape != x.shape:
        raise ValueError(f"density must have the shape of grid, a 1-D array of {x.shape}, got {y.shape}")
    floor = max(float(y.max()) * 1e-8, np.finfo(float).tiny) if log else None
    yy = np.maximum(y, floor) if log else y
    fig = go.Figure()
    if stderr is not None:
        se = _np(stderr)
        lo, hi = y - 2 * se, y + 2 * se
        if log:
            lo, hi = np.maximum(lo, floor), np.maximum(hi, floor)
        fig.add_trace(go.Scatter(x=np.concatenate([x, x[::-1]]), y=np.concatenate([hi, lo[::-1]]), fill="toself",
                                 mode="lines", line={"width": 0}, opacity=0.3, name="+-2 s.e."))
    fig.add_trace(go.Scatter(x=x, y=yy, mode="lines", name="density"))
    if eigenvalues is not None:
        ev = _np(eigenvalues).ravel()
        fig.add_trace(go.Scatter(x=ev, y=np.full(ev.shape, float(yy.max())), mode="markers", name="eigenvalues",
                                 marker={"symbol": "line-ns-open", "size": 14, "color": "crimson"}))
    fig.update_layout(template=TEMPLATE, title=title, xaxis_title="eigenvalue", yaxis_title="density",
                      height=420, margin={"l": 60, "r": 20, "t": 60, "b": 50})
    if log:
        fig.update_yaxes(type="log")
    return fig


def eigenvalue_bars(
    eigenvalues: Any,
    *,
    errors: Any = None,
    labels: Sequence[str] | None = None,
    title: str = "",
) -> go.Figure:
    """Bar chart of eigenvalues (e.g. ``EigResult.eigenvalues``) with optional error bars
    (``EigResult.error_bounds``)."""
    ev = _np(eigenvalues).ravel()
    names = list(labels) if labels is not None else [f"lambda_{i + 1}" for i in range(ev.size)]
    if len(names) != ev.size:
        raise ValueError(f"labels has {len(names)} entries for {ev.size} eigenvalues")
    err = None if errors is None else {"type": "data", "array": _np(errors).ravel().tolist(), "visible": True}
    fig = go.Figure(go.Bar(x=names, y=ev.tolist(), error_y=err, name="eigenvalue"))
    fig.update_layout(template=TEMPLATE, title=title, yaxis_title="eigenvalue", height=380,
                      margin={"l": 60, "r": 20, "t": 60, "b": 50})
    return fig
