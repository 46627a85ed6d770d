"""Sphinx extension for the offline book.

- Serves plotly.js from the site (before require.js).
- Refuses to build without the vendored JavaScript (otherwise figures and math silently go blank).
- Drops sphinx-thebe's scripts (launching a live kernel is off; its config names a CDN URL) and
  fails the build if any page would still load a script or stylesheet from another host.
"""

from pathlib import Path

REQUIRED = ("plotly.min.js", "require.js", "embed-amd.js", "mathjax/tex-chtml.js")


def _check_vendor(app):
    vendor = Path(app.confdir) / "_vendor"
    missing = [f for f in REQUIRED if not (vendor / f).is_file()]
    if missing:
        raise RuntimeError(
            f"the offline JavaScript is missing from {vendor}: {', '.join(missing)}; run `make vendor`"
        )


def _is_remote(url) -> bool:
    return isinstance(url, str) and url.split(":", 1)[0] in ("http", "https") or str(url).startswith("//")


def _offline_assets(app, pagename, templatename, context, doctree):
    scripts = []
    for s in context.get("script_files", []):
        name = str(getattr(s, "filename", s) or "")
        body = str(getattr(s, "attributes", {}).get("body", ""))
        if "sphinx-thebe" in name or "THEBE_JS_URL" in body:
            continue
        if _is_remote(name):
            raise RuntimeError(f"page {pagename} would load a remote script {name}: the book must work offline")
        scripts.append(s)
    context["script_files"] = scripts
    for c in context.get("css_files", []):
        name = str(getattr(c, "filename", c) or "")
        if _is_remote(name):
            raise RuntimeError(f"page {pagename} would load a remote stylesheet {name}: the book must work offline")


def setup(app):
    # Before require.js (priority 500 in myst-nb): plotly's UMD bundle registers as an anonymous AMD
    # module instead of setting window.Plotly when require.js is already on the page.
    app.add_js_file("plotly.min.js", priority=100)
    app.connect("builder-inited", _check_vendor)
    app.connect("html-page-context", _offline_assets, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
