"""From the book to the class JupyterHub: with TDL_HUB_URL and TDL_REPO_URL set, every lab page has
an nbgitpuller launch link (sphinx-book-theme's JupyterHub button) and no other page has one; the
default build has none (checked on the real book, built once for the whole suite)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import nbformat
import pytest

from conftest import ROOT, tool

pytestmark = [pytest.mark.slow]

HUB, REPO = "https://hub.example.edu", "https://github.com/example-org/tdl-course"


def tiny_book(tmp: Path) -> Path:
    """The real configuration and extensions, one chapter page (a MyST notebook) and one lab."""
    book = tmp / "src"
    (book / "book").mkdir(parents=True)
    (book / "labs").mkdir()
    shutil.copy(ROOT / "_config.yml", book / "_config.yml")
    shutil.copytree(ROOT / "book" / "_ext", book / "book" / "_ext")
    (book / "_vendor").symlink_to(ROOT / "_vendor", target_is_directory=True)
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/ch\n"
                                   "    sections:\n      - file: labs/00_tiny\n")
    (book / "book" / "intro.md").write_text("# Intro\n\nA page.\n")
    (book / "book" / "ch.md").write_text("---\nfile_format: mystnb\nkernelspec:\n  name: python3\n"
                                         "  display_name: Python 3\n---\n\n# A chapter\n\n```{code-cell}\n1 + 1\n```\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# A lab"), nbformat.v4.new_code_cell("print(6 * 7)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "labs" / "00_tiny.ipynb")
    return book


def build(book: Path, out: Path, **env) -> subprocess.CompletedProcess:
    e = {k: v for k, v in os.environ.items() if k not in ("TDL_HUB_URL", "TDL_REPO_URL", "TDL_REPO_BRANCH")}
    e.update(TDL_SCALE="ci", TDL_STATIC="1", **env)
    return subprocess.run([tool("jupyter-book"), "build", "--all", "-W", "-n", "--keep-going",
                           "--path-output", str(out), str(book)], cwd=book, env=e, capture_output=True,
                          text=True, timeout=900)


def launch_links(html: str) -> list[str]:
    return sorted({part.split('"')[0] for part in html.split('href="')[1:] if "git-pull" in part.split('"')[0]})


def test_lab_pages_get_a_jupyterhub_launch_link_when_the_hub_is_configured(tmp_path):
    book = tiny_book(tmp_path)
    r = build(book, tmp_path / "out", TDL_HUB_URL=HUB + "/", TDL_REPO_URL=REPO, TDL_REPO_BRANCH="fall-2026")
    assert r.returncode == 0, r.stdout[-4000:] + r.stderr[-4000:]
    html = tmp_path / "out" / "_build" / "html"
    links = launch_links((html / "labs" / "00_tiny.html").read_text())
    assert len(links) == 1, links
    url = urlparse(links[0].replace("&amp;", "&"))
    assert f"{url.scheme}://{url.netloc}{url.path}" == HUB + "/hub/user-redirect/git-pull"
    q = parse_qs(url.query)
    assert q == {"repo": [REPO], "urlpath": ["lab/tree/tdl-course/labs/00_tiny.ipynb"], "branch": ["fall-2026"]}
    for page in ("book/ch.html", "book/intro.html", "index.html"):
        if (html / page).is_file():
            assert launch_links((html / page).read_text()) == [], f"{page} has a launch link"


def test_a_hub_without_a_repository_fails_the_build_and_says_what_to_set(tmp_path):
    book = tiny_book(tmp_path)
    r = build(book, tmp_path / "out", TDL_HUB_URL=HUB)
    assert r.returncode != 0
    assert "TDL_REPO_URL" in r.stdout + r.stderr
    r = build(book, tmp_path / "out2", TDL_HUB_URL="hub.example.edu", TDL_REPO_URL=REPO)
    assert r.returncode != 0
    assert "TDL_HUB_URL='hub.example.edu' must be an http(s) URL" in r.stdout + r.stderr


@pytest.mark.xdist_group("book")
def test_the_default_book_has_no_launch_link(site):
    pages = list(site.rglob("*.html"))
    assert any(p.parent.name == "labs" for p in pages)
    assert [p.name for p in pages if launch_links(p.read_text(errors="replace"))] == []
