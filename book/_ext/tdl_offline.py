"""Sphinx extension for the offline book: serve plotly.js from the site and refuse to build
without the vendored JavaScript (otherwise pages silently fall back to blank figures or CDNs)."""

from pathlib import Path

REQUIRED = ("plotly.min.js", "require.js", "embed-amd.js", "mathjax/tex-chtml.js")


def _check_vendor(app):
    vendor = Path(app.confdir) / "_vendor"
    missing = [f for f in REQUIRED if not (vendor / f).is_file()]
    if missing:
        raise RuntimeError(
            f"the offline JavaScript is missing from {vendor}: {', '.join(missing)}; run `make vendor`"
        )


def setup(app):
    # Before require.js (priority 500 in myst-nb): plotly's UMD bundle registers as an anonymous AMD
    # module instead of setting window.Plotly when require.js is already on the page.
    app.add_js_file("plotly.min.js", priority=100)
    app.connect("builder-inited", _check_vendor)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
