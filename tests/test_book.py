"""The web book: builds with --all and warnings as errors, fails on a notebook that raises, and in
a real headless Chromium every page of _toc.yml loads offline with figures, math and widgets drawn."""

from __future__ import annotations

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import ROOT, PageLog, build_book

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("book")]


def toc_pages() -> list[str]:
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    files = [toc["root"]]

    def walk(entries):
        for e in entries or []:
            if "file" in e:
                files.append(e["file"])
            walk(e.get("sections"))
            walk(e.get("chapters"))

    for part in toc.get("parts", []):
        walk(part.get("chapters"))
    walk(toc.get("chapters"))
    return [f + ".html" for f in files]


def test_book_builds_with_warnings_as_errors(site):
    for page in toc_pages():
        assert (site / page).is_file(), f"{page} was not built"
    # the offline JavaScript is served by the site
    for f in ("plotly.min.js", "require.js", "embed-amd.js", "mathjax/tex-chtml.js"):
        assert (site / "_static" / f).is_file(), f"_static/{f} missing from the built site"


def test_no_page_references_a_cdn(site):
    for page in toc_pages() + ["search.html"]:
        text = (site / page).read_text()
        for host in ("cdn.jsdelivr.net", "cdnjs.cloudflare.com", "unpkg.com", "cdn.plot.ly", "googleapis.com"):
            assert host not in text, f"{page} references {host}"


GRADED_LABS = [p for p in sorted(ROOT.glob("labs/*.ipynb"))
               if any(c.metadata.get("nbgrader") for c in nbformat.read(p, as_version=4).cells)]


MARKERS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")


class _Text(HTMLParser):
    """The text a reader sees (code included: highlighted code is text split over spans)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.parts, self._skip = [], 0

    def handle_starttag(self, tag, attrs):
        self._skip += tag in ("script", "style")

    def handle_endtag(self, tag):
        self._skip -= tag in ("script", "style") and self._skip > 0

    def handle_data(self, data):
        if not self._skip:
            self.parts.append(data)


def page_text(html: str) -> str:
    p = _Text()
    p.feed(html)
    return re.sub(r"\s+", " ", "".join(p.parts))


def graded_secrets(nb_path: Path) -> list[str]:
    """What a reader of the book must never see, read from the graded notebook itself: every line of
    its solution regions and hidden tests, the reference names, and the model answers' sentences."""
    secrets = [*MARKERS, "tdlcheck"]
    for cell in nbformat.read(nb_path, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        for begin, end in (("BEGIN SOLUTION", "END SOLUTION"), ("BEGIN HIDDEN TESTS", "END HIDDEN TESTS")):
            for region in re.findall(rf"{begin}[^\n]*\n(.*?)\n[^\n]*{end}", cell.source, re.S):
                secrets += [line.strip() for line in region.splitlines() if len(line.strip()) >= 12]
        secrets += re.findall(r"against=\"([\w.]+)\"", cell.source)
        if cell.cell_type == "markdown" and meta.get("solution"):
            # the model answer's sentences, as rendered (no markdown or HTML characters)
            secrets += [s.strip() for s in re.split(r"[.;:()]", cell.source)
                        if len(s.strip()) >= 30 and not re.search(r"[*`$<>_\\]", s)]
    return secrets


def test_graded_secrets_are_found_in_the_source():
    """The leak test below is only as good as its list: it holds solution lines, hidden-test lines,
    the reference's name and model-answer sentences of every graded lab."""
    assert GRADED_LABS, "no lab has nbgrader metadata (every lab ends with a graded Your turn)"
    for lab in GRADED_LABS:
        secrets = graded_secrets(lab)
        text = "\n".join(c.source for c in nbformat.read(lab, as_version=4).cells)
        assert any(s.startswith("check(") for s in secrets), f"{lab.name}: no hidden check found"
        assert any(s.startswith("tdlcourse.") for s in secrets), f"{lab.name}: no reference name found"
        assert sum(len(s) >= 30 and s[0].isalpha() and " " in s for s in secrets) >= 3, "no model answer found"
        assert all(s in text for s in secrets)


@pytest.mark.parametrize("lab", GRADED_LABS, ids=lambda p: p.name)
def test_book_shows_the_student_version_of_graded_labs(site, lab):
    """The page of a graded lab shows its Your turn section as released to students: the stubs,
    no solution, no hidden test, no model answer; so do the page's download (``_sources``) and the
    search index."""
    page = site / "labs" / (lab.stem + ".html")
    text = page_text(page.read_text())
    assert "Your turn" in text
    assert "# YOUR CODE HERE raise NotImplementedError()" in text, "the code stub is not on the page"
    assert "YOUR ANSWER HERE" in text, "the answer stub is not on the page"
    assert re.search(r"the lab ran in \d+\.\d s", text), "the lab's last cell (its running time) did not run"
    download = site / "_sources" / "labs" / lab.name
    assert download.is_file(), f"{download} (the page's download button) is missing"
    dl = nbformat.read(download, as_version=4)
    dl_text = "\n".join(c.source for c in dl.cells)
    assert "raise NotImplementedError()" in dl_text and "YOUR ANSWER HERE" in dl_text
    index = (site / "searchindex.js").read_text()
    for secret in graded_secrets(lab):
        norm = re.sub(r"\s+", " ", secret)
        assert norm not in text, f"{page.name} shows {secret!r}"
        assert secret not in dl_text, f"the download of {lab.name} holds {secret!r}"
        if " " not in secret and len(secret) > 20:
            assert secret not in index, f"the search index holds {secret!r}"
    # nor anything else the build wrote: doctrees, the executed copy in jupyter_execute/, any
    # execution cache (the markers themselves are named in prose on other pages, and so may the
    # reference, a public library function: its name is a secret only in what this lab's page is
    # built from)
    lines = [s.encode() for s in graded_secrets(lab) if s not in MARKERS]
    for f in site.parent.rglob("*"):
        if f.is_file() and f.stat().st_size < 50_000_000:
            data = f.read_bytes()
            ours = f"labs/{lab.stem}" in f.relative_to(site.parent).as_posix()  # not the chapter page
            leaked = [s for s in lines if s in data and (ours or not s.startswith(b"tdlcourse."))]
            assert not leaked, f"{f.relative_to(site.parent)} holds {leaked[0]!r}"


@pytest.mark.parametrize("page", sorted((ROOT / "book").glob("[0-9][0-9]_*.md")), ids=lambda p: p.name)
def test_chapter_ends_with_oral_exam_questions_then_references(page, site):
    text = page.read_text()
    headings = re.findall(r"^## (.+)$", text, re.M)
    assert headings[-2:] == ["Questions for the oral exam", "References"], headings
    questions = text.split("## Questions for the oral exam")[1].split("## References")[0]
    n = len(re.findall(r"^\d+\. ", questions, re.M))
    assert 5 <= n <= 8, f"{page.name}: {n} oral exam questions (5 to 8)"
    html = page_text((site / "book" / (page.stem + ".html")).read_text())
    assert "Questions for the oral exam" in html and "Your turn" in html


def test_a_notebook_that_raises_fails_the_build(tmp_path):
    book = tmp_path / "bad"
    (book / "book").mkdir(parents=True)
    for f in ("_config.yml",):
        shutil.copy(ROOT / f, book / f)
    shutil.copytree(ROOT / "book" / "_ext", book / "book" / "_ext")
    (book / "_vendor").symlink_to(ROOT / "_vendor", target_is_directory=True)
    (book / "_toc.yml").write_text("format: jb-book\nroot: book/intro\nchapters:\n  - file: book/broken\n")
    (book / "book" / "intro.md").write_text("# Intro\n\nA page.\n")
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# Broken"), nbformat.v4.new_code_cell("raise RuntimeError('boom 42')")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, book / "book" / "broken.ipynb")
    r = build_book(book, tmp_path / "out", scale="ci")
    assert r.returncode != 0, "a notebook that raises did not fail the build"
    assert "boom 42" in r.stdout + r.stderr


# --- in a real browser -------------------------------------------------------------------------

def open_page(browser, url):
    page = browser.new_page()
    log = PageLog(page)
    page.goto(url, wait_until="load")
    # Playwright's "networkidle" never fires on these pages with Debian's Chromium (no request is
    # pending): wait for what each test checks, and give late scripts a moment to report errors.
    page.wait_for_timeout(1000)
    return page, log


@pytest.mark.browser
@pytest.mark.parametrize("page_path", toc_pages())
def test_page_in_browser(browser, server, site, page_path):
    page, log = open_page(browser, f"{server}/{page_path}")
    html = (site / page_path).read_text()
    try:
        n_plots = html.count('class="plotly-graph-div"')
        if n_plots:
            page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n_plots}",
                                   timeout=30000)
            drawn = page.eval_on_selector_all(".plotly-graph-div", "els => els.map(e => !!e.querySelector('svg.main-svg'))")
            assert all(drawn) and len(drawn) == n_plots, f"{page_path}: plotly figures drawn {drawn}"
            assert page.locator(".tdl-plotly-missing").count() == 0
        if "$" in html or "\\(" in html or 'class="math' in html:
            # attached, not visible: the first formula may sit in the hidden "On this page" list
            # (a heading with math), so wait for MathJax's output and then require a visible one
            page.wait_for_selector("mjx-container", state="attached", timeout=30000)
            assert page.locator("mjx-container:visible").count() > 0, f"{page_path}: no formula is visible"
            assert page.locator("mjx-merror").count() == 0, f"{page_path}: MathJax errors"
        if 'sliders' in html and page_path.startswith("labs/"):
            slider = page.locator(".plotly-graph-div g.slider-container")
            assert slider.count() >= 1 and slider.first.is_visible(), f"{page_path}: the lab's slider is not visible"
            # the static widget works: clicking the last step of each slider redraws its own figure
            # with another precomputed state, whose title names it (a title that vanishes fails)
            figs = [h for h in page.query_selector_all(".plotly-graph-div") if h.query_selector("g.slider-container")]
            for i, fig in enumerate(figs):
                fig.scroll_into_view_if_needed()
                before = fig.query_selector("g.infolayer .gtitle")
                assert before is not None, f"{page_path}: the figure of slider {i} has no title"
                title = before.text_content()
                box = fig.query_selector("g.slider-container .slider-rail-touch-rect").bounding_box()
                page.mouse.click(box["x"] + box["width"] - 3, box["y"] + box["height"] / 2)
                page.wait_for_timeout(500)
                after = fig.query_selector("g.infolayer .gtitle")
                assert after is not None, f"{page_path}: moving slider {i} removed its figure's title"
                assert after.text_content() not in ("", title), \
                    f"{page_path}: slider {i} did not redraw its figure (title {title!r})"
        assert not log.foreign, f"{page_path}: requests left 127.0.0.1: {log.foreign}"
        assert not log.failed, f"{page_path}: failed requests: {log.failed}"
        assert not log.errors, f"{page_path}: console errors: {log.errors}"
    finally:
        page.close()


@pytest.mark.browser
def test_search_finds_chapter_1(browser, server):
    page, log = open_page(browser, f"{server}/search.html?q=Rademacher")
    try:
        page.wait_for_selector("#search-results li", timeout=30000)
        hits = page.locator("#search-results li a").evaluate_all("els => els.map(e => e.getAttribute('href'))")
        assert any("01_generalization_puzzle" in h for h in hits), hits
        assert not log.foreign, f"search: requests left 127.0.0.1: {log.foreign}"
        assert not log.errors, f"search: console errors: {log.errors}"
    finally:
        page.close()
