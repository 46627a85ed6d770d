"""Math without the internet in nbgrader's HTML: the Formgrader's grading page and the feedback
students read.

nbgrader's ``formgrade`` and ``feedback`` templates call nbconvert's ``mathjax()`` macro with no
argument, so both pages load MathJax 2.7.7 from cdnjs whatever ``HTMLExporter.mathjax_url`` says;
offline every formula stays raw TeX. ``configure(c)`` (called by the course's
``nbgrader_config.py``) puts a template folder written from ``MACRO`` first among the HTML
exporter's template folders (``template_dir``). There ``formgrade/mathjax.html.j2`` and
``feedback/mathjax.html.j2`` shadow nbconvert's macro (nothing of nbgrader's installed files changes) with ``mathjax_html``: MathJax 3's SVG build
(``tex-svg-full.js``: every TeX extension, the glyphs inside, no font or component fetched later)
inlined in the page. Inlined, because feedback travels through the exchange as single HTML files
that students open from their own folders (file://) with no server and no network; the Formgrader
page gets the same script (it is served from 127.0.0.1 anyway), plus the two calls its
``formgrade.js`` makes to MathJax 2's API (``MathJax.Hub``), answered once MathJax 3 has typeset.

Where MathJax comes from (``mathjax_file``): ``$TDL_MATHJAX`` (the file), else
``tex-svg-full.js`` in ``<sys.prefix>/share/tdlcourse/mathjax/``, the repository's ``_vendor/mathjax/``
(``make vendor``) or ``js/node_modules/mathjax/es5/`` (``npm ci`` in ``js/``).
"""

from __future__ import annotations

import functools
import html
import json
import os
import sys
from pathlib import Path

FILTER = "tdl_offline_mathjax"
MATHJAX_NAME = "tex-svg-full.js"
_REPO = Path(__file__).resolve().parents[3]

# MathJax 3 set up as nbconvert's MathJax 2 configuration was: $...$ and \(...\) inline, $$...$$ and
# \[...\] displayed, \$ a dollar, AMS environments and numbering; no lazy loading from anywhere.
MATHJAX_CONFIG = {
    "tex": {"inlineMath": [["$", "$"], ["\\(", "\\)"]], "displayMath": [["$$", "$$"], ["\\[", "\\]"]],
            "processEscapes": True, "processEnvironments": True, "tags": "ams"},
    "svg": {"fontCache": "global"},
    "options": {"ignoreHtmlClass": "tex2jax_ignore", "processHtmlClass": "tex2jax_process"},
}

# formgrade.js (nbgrader 0.9.6) calls MathJax.Hub.Startup.signal.Interest(f) and waits for "End"
# before focusing the first cell; MathJax 3 has no Hub. Answer it when MathJax 3 is done.
_HUB_SHIM = """(function () {
  var mj = window.MathJax;
  if (!mj || mj.Hub) return;
  function ready() { return (mj.startup && mj.startup.promise) || Promise.resolve(); }
  mj.Hub = {
    Startup: {signal: {Interest: function (f) { ready().then(function () { f("End"); }); }}},
    Queue: function () {
      ready().then(function () { return mj.typesetPromise ? mj.typesetPromise() : null; });
    }
  };
})();"""


class MathJaxMissing(RuntimeError):
    pass


def candidates() -> list[Path]:
    """Where ``mathjax_file`` looks, in order."""
    env = os.environ.get("TDL_MATHJAX")
    found = [Path(env).expanduser()] if env else []
    return found + [Path(sys.prefix) / "share" / "tdlcourse" / "mathjax" / MATHJAX_NAME,
                    _REPO / "_vendor" / "mathjax" / MATHJAX_NAME,
                    _REPO / "js" / "node_modules" / "mathjax" / "es5" / MATHJAX_NAME]


def mathjax_file() -> Path:
    """MathJax 3's ``tex-svg-full.js`` (see the module's doc); ``MathJaxMissing`` names every
    place looked at and what to set when there is none (a ``$TDL_MATHJAX`` that is set but is no
    file is an error too, not skipped)."""
    env = os.environ.get("TDL_MATHJAX")
    if env and not Path(env).expanduser().is_file():
        raise MathJaxMissing(f"TDL_MATHJAX={env!r} is not a file; set it to MathJax 3's {MATHJAX_NAME} "
                             "(js/node_modules/mathjax/es5/ after `npm ci` in js/) or unset it")
    for path in candidates():
        if path.is_file():
            return path
    raise MathJaxMissing(f"MathJax 3 ({MATHJAX_NAME}) is not in any of: "
                         + ", ".join(str(p) for p in candidates())
                         + "; run `make vendor` in the repository, or set TDL_MATHJAX to that file "
                         "(math in the Formgrader and in feedback is rendered from this local copy, never a CDN)")


@functools.lru_cache(maxsize=4)
def _script(path: str, mtime: float) -> str:
    source = Path(path).read_text(encoding="utf-8")
    if "</script" in source.lower():  # would end the inline <script> early
        raise MathJaxMissing(f"{path} contains '</script' and cannot be inlined; use MathJax 3.2's {MATHJAX_NAME}")
    return source


def mathjax_html(_url=None) -> str:
    """The ``<script>`` elements that render the page's math offline (a Jinja filter; its argument,
    the CDN URL nbconvert's macro would load, is ignored). Without MathJax, a visible note saying
    why the math is raw TeX and how to fix it (the Formgrader page still works; ``tdl feedback``
    refuses earlier, see ``check``)."""
    from markupsafe import Markup

    try:
        path = mathjax_file()
        source = _script(str(path), path.stat().st_mtime)
    except MathJaxMissing as e:
        return Markup('<div class="alert alert-warning" id="tdl-no-mathjax" style="margin:1em">'
                      f"Math is shown as TeX: {html.escape(str(e))}</div>")
    config = json.dumps(MATHJAX_CONFIG).replace("</", "<\\/")
    return Markup(f"<!-- MathJax {MATHJAX_NAME} from {html.escape(path.name)}, inlined by tdlcourse (offline) -->\n"
                  f"<script>window.MathJax = {config};</script>\n<script>{source}</script>\n"
                  f"<script>{_HUB_SHIM}</script>")


def check() -> Path:
    """Raise ``MathJaxMissing`` unless MathJax can be inlined (``tdl feedback`` checks this before
    writing anything: feedback with raw TeX would reach students)."""
    path = mathjax_file()
    _script(str(path), path.stat().st_mtime)
    return path


def nbgrader_template_dir() -> str:
    """nbgrader's own template folder (its formgrade/ and feedback/ templates)."""
    import nbgrader

    return os.path.join(os.path.dirname(nbgrader.__file__), "server_extensions", "formgrader", "templates")


# The macro both template files hold: the one source of their text (nothing of it is packaged).
MACRO = """{#- tdlcourse: replaces nbconvert's mathjax() macro (MathJax 2.7.7 from a CDN) in nbgrader's
    formgrade and feedback templates by MathJax 3 inlined from a local copy (tdlcourse.grading.offline). -#}
{%- macro mathjax(url=None) -%}
{{ url | tdl_offline_mathjax }}
{%- endmacro %}
"""
TEMPLATE_FILES = ("formgrade/mathjax.html.j2", "feedback/mathjax.html.j2")


def template_dir() -> Path:
    """A folder holding ``TEMPLATE_FILES``, written from ``MACRO`` into the user's cache
    (``$XDG_CACHE_HOME`` or ``~/.cache``, ``tdlcourse/``; one folder per version of the macro,
    reused while its files are intact), else into a fresh private temporary folder."""
    import hashlib
    import tempfile

    tag = hashlib.sha256(MACRO.encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tdlcourse"
    try:
        target = cache / f"nbconvert-templates-{tag}"
        if all((target / f).is_file() and (target / f).read_text() == MACRO for f in TEMPLATE_FILES):
            return target
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=_mkdir(cache)))
    except OSError:
        target = tmp = Path(tempfile.mkdtemp(prefix="tdlcourse-nbconvert-templates-"))
    for f in TEMPLATE_FILES:
        (tmp / f).parent.mkdir(parents=True, exist_ok=True)
        (tmp / f).write_text(MACRO)
    if tmp != target:
        try:
            tmp.rename(target)
        except OSError:  # another process wrote it first (or a stale copy is there): use ours
            return tmp
    return target


def _mkdir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def configure(c) -> None:
    """Make nbgrader's HTML (the Formgrader's grading page, generated feedback) render math from
    the inlined local MathJax: our template folder (``template_dir``) first, then nbgrader's (both
    are needed: setting ``HTMLExporter.extra_template_basedirs`` replaces nbgrader's default), and
    the filter that writes the script. Called from the course's ``nbgrader_config.py``."""
    c.HTMLExporter.extra_template_basedirs = [str(template_dir()), nbgrader_template_dir()]
    filters = dict(c.HTMLExporter.get("filters", {}) or {})
    filters[FILTER] = f"{__name__}.mathjax_html"
    c.HTMLExporter.filters = filters
