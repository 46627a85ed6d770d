"""Offline everywhere, on the grading side (issue 16, item 6): the Formgrader's pages (its
assignment list and the manual grading page of a submission whose written answer holds math), the
feedback HTML students read (from their own folders, file://) and the `tdl report` page load no
resource from another host, log no console error, and render math with the local MathJax
(`tdlcourse.grading.offline`). With nbgrader's own templates the same feedback asks cdnjs for
MathJax (and shows raw TeX): `test_nbgrader_templates_alone_ask_the_cdn` proves the check fails."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import BIN, ROOT, PageLog, hw01_answers, student_app, submit_hw01, tdl_env
from test_tdl_safety import COURSE_VARS, _get, _runner, _server, roster

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("grading")]

MATH = r"$\int_0^1 x\,dx = \frac{1}{2}$"


def open_page(browser, url):
    page = browser.new_page()
    log = PageLog(page, files=True)
    page.goto(url, wait_until="load")
    return page, log


def visible_math(page, log, timeout=30000) -> int:
    """Wait for a visible MathJax rendering (an mjx-container with an svg inside); their count.
    On timeout, says what was requested from other hosts and what the console said."""
    from playwright.sync_api import TimeoutError

    try:
        page.wait_for_function("[...document.querySelectorAll('mjx-container')].some(e => e.offsetParent !== null "
                               "&& e.getBoundingClientRect().width > 0 && e.querySelector('svg'))", timeout=timeout)
    except TimeoutError:
        pytest.fail(f"no visible math on {page.url} after {timeout / 1000:g} s; requests that left 127.0.0.1: "
                    f"{log.foreign}; console errors: {log.errors}")
    page.wait_for_timeout(500)  # late script errors
    return page.eval_on_selector_all("mjx-container", "els => els.filter(e => e.offsetParent !== null).length")


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """hw01 released; ada and bob submit every answer, the written one with math; collected, graded
    (`tdl grade`), feedback released (--partial: nobody graded the written answer) and fetched by
    ada; `tdl report hw01` written."""
    from nbgrader.exchange.default import ExchangeFetchFeedback

    work = tmp_path_factory.mktemp("offline")
    root = work / "course"
    root.mkdir()
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", root)
    shutil.copytree(ROOT / "assignments" / "source", root / "source")
    with pytest.MonkeyPatch.context() as mp:
        for name in COURSE_VARS:
            mp.delenv(name, raising=False)
        run = _runner(root)
        for args in (("roster", "import", roster(work)), ("release", "hw01", "--no-check")):
            r = run(*args)
            assert r.returncode == 0, r.stdout + r.stderr
        answers = hw01_answers(root)
        for sid in ("ada", "bob"):
            submit_hw01(root, work, sid, answers, f"{sid}: the area is {MATH}.")
        for args in (("collect", "hw01"), ("grade", "hw01", "--jobs", "1", "--sandbox", "off", "--no-progress"),
                     ("feedback", "hw01", "--partial"), ("report", "hw01")):
            r = run(*args)
            assert r.returncode == 0, r.stdout + r.stderr
        student_app(ExchangeFetchFeedback, root, work / "students" / "ada", "ada", "hw01").start()
        fetched = sorted((work / "students" / "ada" / "tdl" / "hw01" / "feedback").glob("*/hw01.html"))
        assert len(fetched) == 1, fetched
        yield {"root": root, "work": work, "env": tdl_env(TDL_COURSE=str(root)), "fetched": fetched[0]}


@pytest.fixture(scope="module")
def formgrader(course, tmp_path_factory):
    yield from _server(course["env"], tmp_path_factory.mktemp("fg"), ["lab", "--instructor", "--"], course["root"])


def test_formgrader_pages_are_offline_and_render_math(browser, formgrader):
    url, token = formgrader["url"], formgrader["token"]
    page, log = open_page(browser, f"{url}/formgrader/manage_assignments?token={token}")  # logs in (cookie)
    page.wait_for_selector("text=hw01", timeout=30000)
    page.wait_for_timeout(1000)
    assert not log.foreign and not log.errors, (log.foreign, log.errors)
    page.close()
    for path in ("manage_submissions/hw01", "gradebook", "gradebook/hw01/hw01", "manage_students"):
        page, log = open_page(browser, f"{url}/formgrader/{path}")
        page.wait_for_selector("table", timeout=30000)
        page.wait_for_timeout(1000)
        assert not log.foreign and not log.errors, (path, log.foreign, log.errors)
        page.close()

    status, body = _get(formgrader, "/formgrader/api/submitted_notebooks/hw01/hw01")
    assert status == 200, body[:2000]
    subs = sorted(json.loads(body), key=lambda s: s["student"])
    assert [s["student"] for s in subs] == ["ada", "bob"], subs
    page, log = open_page(browser, f"{url}/formgrader/submissions/{subs[0]['id']}/?index=0")
    assert visible_math(page, log) >= 1
    text = page.inner_text("body")
    assert "ada: the area is" in text and r"\int_0^1" not in text  # typeset, not raw TeX
    # the page works as a grading page: the score boxes are there and formgrade.js raised nothing
    assert page.locator("input.score").count() >= 1
    # formgrade.js waited for MathJax 2's "End" signal (answered by offline.py's shim) before focusing a cell
    page.wait_for_function("window.MathJax && MathJax.loaded === true", timeout=10000)
    assert not log.foreign and not log.errors, (log.foreign, log.errors)
    page.close()


@pytest.mark.parametrize("which", ["instructor", "student", "served"])
def test_feedback_renders_math_offline(browser, course, which, request):
    """The generated feedback (file://), the copy a student fetched into her folder (file://), and
    the same file served by the course's Jupyter server (/files/, as a browser tab opens it)."""
    path = course["fetched"] if which == "student" else course["root"] / "feedback" / "ada" / "hw01" / "hw01.html"
    html = path.read_text()
    assert "cdnjs" not in html and "<script src=\"http" not in html
    if which == "served":
        fg = request.getfixturevalue("formgrader")
        url = f"{fg['url']}/files/{path.relative_to(fg['course']).as_posix()}?token={fg['token']}"
    else:
        url = path.as_uri()
    page, log = open_page(browser, url)
    assert visible_math(page, log) >= 1
    text = page.inner_text("body")
    assert "ada: the area is" in text and r"\int_0^1" not in text
    assert not log.foreign and not log.errors, (log.foreign, log.errors)
    page.close()


def test_report_is_offline(browser, course):
    path = course["root"] / "reports" / "hw01.html"
    page, log = open_page(browser, path.as_uri())
    n = path.read_text().count('class="plotly-graph-div"')
    assert n >= 1
    page.wait_for_function(f"document.querySelectorAll('.plotly-graph-div .main-svg').length >= {n}", timeout=30000)
    page.wait_for_timeout(500)
    assert not log.foreign and not log.errors, (log.foreign, log.errors)
    page.close()


def test_nbgrader_templates_alone_ask_the_cdn(browser, course, tmp_path):
    """The check can fail: the same feedback generated with nbgrader's own templates (our template
    folder left out on the command line) requests MathJax from cdnjs and shows the TeX raw."""
    import nbgrader

    old = tmp_path / "course"
    shutil.copytree(course["root"], old, ignore=shutil.ignore_patterns("feedback", "exchange"))
    templates = f"{nbgrader.__path__[0]}/server_extensions/formgrader/templates"
    r = subprocess.run([str(BIN / "nbgrader"), "generate_feedback", "hw01", "--student", "ada", "--force",
                        f"--HTMLExporter.extra_template_basedirs={templates}"],
                       cwd=old, env=course["env"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    html = old / "feedback" / "ada" / "hw01" / "hw01.html"
    assert "cdnjs.cloudflare.com/ajax/libs/mathjax" in html.read_text()
    page, log = open_page(browser, html.as_uri())
    page.wait_for_timeout(1500)
    assert any("cdnjs.cloudflare.com" in u for u in log.foreign), log.foreign
    assert page.locator("mjx-container").count() == 0 and r"\int_0^1" in page.inner_text("body")
    page.close()


def test_feedback_refuses_without_local_mathjax(course, tmp_path, monkeypatch):
    """No MathJax where it is looked for: `tdl feedback` says where it looked and what to set, and
    releases nothing (students would get raw TeX)."""
    released = sorted(p.name for p in (course["root"] / "exchange").rglob("*.html"))
    monkeypatch.setenv("TDL_MATHJAX", str(tmp_path / "missing.js"))
    r = _runner(course["root"])("feedback", "hw01", "--partial")
    assert r.returncode != 0
    assert "TDL_MATHJAX" in r.stderr and "missing.js" in r.stderr and "nothing was released" in r.stderr, r.stderr
    assert sorted(p.name for p in (course["root"] / "exchange").rglob("*.html")) == released


def test_feedback_refuses_a_configuration_without_offline_math(course, tmp_path):
    """A course whose nbgrader_config.py does not use tdlcourse.grading.offline: refused, naming
    the file and the line to add."""
    from tdlcourse.grading.course import CourseError, load_course
    from tdlcourse.grading.release import check_offline_math

    root = tmp_path / "c"
    root.mkdir()
    text = (ROOT / "assignments" / "nbgrader_config.py").read_text()
    (root / "nbgrader_config.py").write_text(text.split("# Offline math")[0])
    with pytest.raises(CourseError, match="does not render math offline") as e:
        check_offline_math(load_course(str(root)))
    assert str(root / "nbgrader_config.py") in str(e.value) and "configure(c)" in str(e.value)


def test_without_mathjax_the_formgrader_says_why(monkeypatch, tmp_path):
    """The grading page without the local MathJax: a visible note naming where it looked and what to
    set (never a CDN script)."""
    from tdlcourse.grading import offline

    monkeypatch.setenv("TDL_MATHJAX", str(tmp_path / "none.js"))
    html = str(offline.mathjax_html("https://cdnjs.cloudflare.com/x.js"))
    assert 'id="tdl-no-mathjax"' in html and "TDL_MATHJAX" in html and "none.js" in html
    assert "<script" not in html and "cdnjs" not in html
    monkeypatch.delenv("TDL_MATHJAX")
    html = str(offline.mathjax_html())
    assert html.count("<script>") == 3 and "mj.Hub" in html


def test_the_templates_are_written_from_the_macro_and_reused(monkeypatch, tmp_path):
    """The shadowing templates are written from ``offline.MACRO`` (the one source of their text)
    into the user's cache, reused while intact, rewritten when a file was changed."""
    from traitlets.config import Config

    from tdlcourse.grading import offline

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    c = Config()
    offline.configure(c)
    first = Path(c.HTMLExporter.extra_template_basedirs[0])
    assert first.parent == tmp_path / "cache" / "tdlcourse"
    assert all((first / f).read_text() == offline.MACRO for f in offline.TEMPLATE_FILES)
    assert offline.template_dir() == first  # reused, not rewritten
    assert c.HTMLExporter.filters[offline.FILTER] == "tdlcourse.grading.offline.mathjax_html"
    (first / offline.TEMPLATE_FILES[0]).write_text("{% macro mathjax(url=None) %}cdn{% endmacro %}")
    again = offline.template_dir()  # a changed file is never used
    assert all((again / f).read_text() == offline.MACRO for f in offline.TEMPLATE_FILES)
