"""Sphinx extension: a "launch on the class JupyterHub" button on every lab page, when configured.

The ecosystem's convention (sphinx-book-theme's JupyterHub launch button): the link
``{hub}/hub/user-redirect/git-pull?repo=...&urlpath=lab/tree/<repo>/labs/NN_x.ipynb&branch=...``
asks the student's server to pull the course repository with nbgitpuller (installed in the hub's
environment, pinned in ``deploy/hub``) and opens that lab in JupyterLab.

Configured by the environment of the build, so that one committed ``_config.yml`` serves every
class (and the default build has no button):

- ``TDL_HUB_URL``: the hub, e.g. ``https://hub.example.edu`` (unset or empty: no button);
- ``TDL_REPO_URL``: the git repository nbgitpuller pulls (required with ``TDL_HUB_URL``);
- ``TDL_REPO_BRANCH``: its branch (default ``main``).

Chapter pages are executed MyST notebooks too, and the theme would give them a button that opens a
Markdown file; only lab pages (``labs/``) keep it.
"""

import os
from urllib.parse import urlparse

from sphinx.errors import ConfigError

ENV = ("TDL_HUB_URL", "TDL_REPO_URL", "TDL_REPO_BRANCH")


def _url(name: str, value: str) -> str:
    parts = urlparse(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(f"{name}={value!r} must be an http(s) URL, e.g. https://hub.example.edu")
    return value.rstrip("/")


def _configure(app, config) -> None:
    hub = os.environ.get("TDL_HUB_URL", "").strip()
    if not hub:
        return
    hub = _url("TDL_HUB_URL", hub)
    repo = os.environ.get("TDL_REPO_URL", "").strip()
    if not repo:
        raise ConfigError("TDL_HUB_URL is set but TDL_REPO_URL is not: the launch button needs the git "
                          "repository that nbgitpuller pulls onto the hub (e.g. https://github.com/org/tdl)")
    repo = _url("TDL_REPO_URL", repo)
    if len(urlparse(repo).path.strip("/").split("/")) < 2:
        raise ConfigError(f"TDL_REPO_URL={repo!r} must name a repository as <host>/<owner>/<name>")
    opts = dict(config.html_theme_options or {})
    launch = dict(opts.get("launch_buttons") or {})
    launch.update(jupyterhub_url=hub, notebook_interface="jupyterlab")
    opts["launch_buttons"] = launch
    opts["repository_url"] = repo
    opts["repository_branch"] = os.environ.get("TDL_REPO_BRANCH", "").strip() or "main"
    opts["path_to_docs"] = ""
    host = urlparse(repo).netloc.lower()
    if not any(p in host for p in ("github", "gitlab", "bitbucket")):
        opts["repository_provider"] = "github"  # only names the theme's context keys; the link uses the raw URL
    config.html_theme_options = opts


def _labs_only(app, pagename, templatename, context, doctree) -> None:
    if pagename.startswith("labs/"):
        return
    buttons = context.get("header_buttons")
    if buttons:
        context["header_buttons"] = [b for b in buttons if b.get("label") != "launch-buttons"]


def setup(app):
    app.connect("config-inited", _configure)
    app.connect("html-page-context", _labs_only, priority=600)  # after the theme adds them (501)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
