"""The nbgrader round trip on the class hub in a real browser (issue 16): a throwaway hub from
`deploy/hub/demo.sh` (real Linux accounts, PAM, one Formgrader service per course), driven by
headless Chromium, one browser context (cookie jar) per user:

1. students sign in through the hub's login form and their servers spawn into JupyterLab; in
   nbgrader's Assignments panel student1 sees course "tdl" with hw01 released and nothing of
   "tdl2" (where hw02 is released), and the student of "tdl2" sees hw02 and no hw01;
2. student1 clicks Fetch, opens hw01.ipynb, types the answers into the solution cells (the written
   one with math), clicks Validate (success), saves and clicks Submit, and sees the timestamp; the
   exchange then holds exactly that notebook;
3. the grader collects and grades (`tdl`, as the course's grader account);
4. the instructor opens the course's Formgrader service, finds the submission under Manual
   Grading, sees the written answer's math typeset by MathJax, and types a score, which lands in
   the gradebook (read back through the Formgrader's REST API);
5. `tdl feedback` releases without --partial (everything is graded); student1 clicks Fetch
   Feedback and reads the score and the typeset math, both in JupyterLab's HTML viewer (after
   "Trust HTML": untrusted, it runs no script) and as a plain page under /user/<name>/files/.
Every request to a host other than 127.0.0.1 is recorded and aborted; each test asserts none.
The tests run in order and build on each other (one hub per module: its start is most of the cost).
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import urllib.parse
from pathlib import Path

import pytest

from conftest import CHROMIUM_ARGS, ROOT, require_browser
from hubkit import as_grader, demo_hub

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("hub")]
# this module's own account prefix, unique per run (never tdlt/tdlr: test_hub*.py delete those)
UP = f"tdlb{os.getpid() % 100000}"
STUDENT, OTHER, INSTRUCTOR = f"{UP}-student1", f"{UP}-other", f"{UP}-instructor"
WRITTEN = r"A class that fits random labels has a vacuous bound here: $\sqrt{d/m} > 1$."
MANUAL_SCORE = 2.5  # of the written answer's 3 points; the autograded parts are worth 6
SPAWN_MS = 180_000
STAMP = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}(\.\d+)? UTC")


def _solutions() -> dict[int, tuple[str, str, str]]:
    """Cell index -> (grade_id, cell type, what a student types): the reference solutions of the
    source notebook without nbgrader's solution markers, and WRITTEN for the written answer."""
    nb = json.loads((ROOT / "assignments" / "source" / "hw01" / "hw01.ipynb").read_text())
    out = {}
    for i, cell in enumerate(nb["cells"]):
        meta = cell["metadata"].get("nbgrader", {})
        if meta.get("solution"):
            source = "".join(cell["source"])
            typed = WRITTEN if cell["cell_type"] == "markdown" else "\n".join(
                line for line in source.splitlines() if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
            out[i] = (meta["grade_id"], cell["cell_type"], typed)
    return out


SOLUTIONS = _solutions()


@pytest.fixture(scope="module")
def hub():
    with demo_hub(UP, "browser") as h:
        yield h


@pytest.fixture(scope="module")
def chromium():
    """A headless Chromium that can open several contexts. The shared `browser` fixture of
    conftest.py is a persistent context (its `.browser` is None: it cannot open another), and each
    user here needs a cookie jar of their own, held side by side as on a real class's machines."""
    exe = require_browser()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Users:
    """One browser context per user, every request that leaves 127.0.0.1 recorded and aborted."""

    def __init__(self, chromium, hub, shots: Path):
        self.chromium, self.hub, self.shots = chromium, hub, shots
        self.contexts, self.foreign = {}, []

    def context(self, user: str):
        if user not in self.contexts:
            ctx = self.chromium.new_context(viewport={"width": 1400, "height": 1000})

            def local(url: str) -> bool:
                return url.startswith(("data:", "blob:", "about:")) or urllib.parse.urlparse(url).hostname == "127.0.0.1"

            # recorded from the request event: it fires for every request, also for the hops of a
            # redirected navigation, which routes never see; aborted by the route
            ctx.on("request", lambda req: local(req.url) or self.foreign.append((user, req.url)))
            ctx.route("**/*", lambda r: r.continue_() if local(r.request.url) else r.abort())
            self.contexts[user] = ctx
        return self.contexts[user]

    def sign_in(self, user: str, next_path: str | None = None):
        """The hub's login form, typed and clicked; the page it lands on."""
        page = self.context(user).new_page()
        page.goto(self.hub["url"] + "/hub/login" + (f"?next={urllib.parse.quote(next_path)}" if next_path else ""))
        page.locator("#username_input").fill(user)
        page.locator("#password_input").fill(self.hub["logins"][user])
        page.get_by_role("button", name="Sign in").click()
        return page

    @contextlib.contextmanager
    def screenshots_on_failure(self, name: str):
        try:
            yield
        except (Exception, pytest.fail.Exception) as e:
            taken = []
            for user, ctx in self.contexts.items():
                for i, page in enumerate(ctx.pages):
                    path = self.shots / f"{name}-{user}-{i}.png"
                    with contextlib.suppress(Exception):
                        page.screenshot(path=str(path), full_page=True)
                        taken.append(str(path))
            e.add_note(f"screenshots: {taken}")
            raise

    def assert_offline(self):
        """None since the last check (each test checks its own; one leak fails one test)."""
        found, self.foreign = self.foreign, []
        assert found == [], f"requests that left 127.0.0.1 (aborted): {found}"


@pytest.fixture(scope="module")
def users(chromium, hub, tmp_path_factory):
    u = Users(chromium, hub, tmp_path_factory.mktemp("hub-browser-shots"))
    yield u
    for ctx in u.contexts.values():
        ctx.close()


@pytest.fixture(scope="module")
def trip():
    """What the tests in order hand on to each other."""
    return {}


def wait_for_lab(page, user: str):
    """JupyterLab up with its workspace restored. The menu bar comes about a second before the
    restore, which then replaces a main area opened too early (the Assignments tab vanished):
    every page here opens an empty workspace, restored when the Launcher shows."""
    page.wait_for_url(re.compile(rf"/user/{re.escape(user)}/lab"), timeout=SPAWN_MS)
    page.locator(".jp-Launcher").first.wait_for(timeout=SPAWN_MS)
    page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).wait_for()


def open_assignments(page):
    """Nbgrader > Assignment List, then wait until it has loaded the course list and the lists."""
    page.locator("#jp-MainMenu").get_by_text("Nbgrader", exact=True).click()
    page.locator(".lm-Menu-itemLabel", has_text="Assignment List").click()
    panel = page.locator("#assignments")
    # the course dropdown is filled once the course's assignments have been listed
    panel.locator("#course_list li").first.wait_for(state="attached", timeout=60_000)
    for which in ("released", "fetched", "submitted"):
        page.wait_for_selector(f"#{which}_assignments_list_loading", state="hidden", timeout=60_000)
    return panel


def course_list(panel) -> list[str]:
    return [t.strip() for t in panel.locator("#course_list li").all_text_contents()]  # a closed dropdown


def listed(panel, which: str) -> list[tuple[str, str]]:
    """(assignment, course) of every item in one of the panel's lists."""
    items = panel.locator(f"#{which}_assignments_list > .list_item")
    return [(items.nth(i).locator(".item_name").first.inner_text().strip(),
             items.nth(i).locator(".item_course").first.inner_text().strip()) for i in range(items.count())]


def visible_math(locator, timeout=30_000):
    """Wait for a MathJax rendering (an mjx-container holding an svg, with a size) inside the
    element; how many there are."""
    locator.locator("mjx-container svg").first.wait_for(state="visible", timeout=timeout)
    return locator.locator("mjx-container").evaluate_all(
        "els => els.filter(e => e.getBoundingClientRect().width > 0 && e.querySelector('svg')).length")


def test_students_sign_in_and_see_only_their_courses_assignments(hub, users):
    # something released in tdl2 too (by its grader), so that "nothing of tdl2" can fail: the
    # Assignments panel lists only the courses with something to show
    tdl2 = hub["site"]["courses"][1]
    r = as_grader(hub, tdl2, "release", "hw02", "--no-check")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    with users.screenshots_on_failure("assignments"):
        page = users.sign_in(STUDENT)  # no ?next: the hub's default, its spawn, JupyterLab
        wait_for_lab(page, STUDENT)
        panel = open_assignments(page)
        assert panel.locator("#course_list_default").inner_text().strip() == "tdl"
        assert course_list(panel) == ["tdl"]  # nothing of tdl2
        assert listed(panel, "released") == [("hw01", "tdl")]
        assert listed(panel, "fetched") == [] and listed(panel, "submitted") == []

        other = users.sign_in(OTHER)
        wait_for_lab(other, OTHER)
        panel = open_assignments(other)
        assert course_list(panel) == ["tdl2"]
        assert listed(panel, "released") == [("hw02", "tdl2")]
        assert listed(panel, "fetched") == [] and listed(panel, "submitted") == []
        assert "hw01" not in panel.inner_text()
    users.assert_offline()


def test_a_student_fetches_answers_validates_and_submits_in_the_browser(hub, users, trip):
    cid = hub["site"]["courses"][0]["id"]
    with users.screenshots_on_failure("submit"):
        page = users.context(STUDENT).new_page()
        page.goto(f"{hub['url']}/user/{STUDENT}/lab/workspaces/submit?reset")
        wait_for_lab(page, STUDENT)
        panel = open_assignments(page)
        panel.locator("#released_assignments_list .list_item", has_text="hw01").get_by_role("button", name="Fetch").click()
        fetched = panel.locator("#fetched_assignments_list .list_item", has_text="hw01")
        fetched.locator(".assignment-notebooks-link").click()
        fetched.locator(".assignment-notebooks a", has_text="hw01").click()

        nb = page.locator(".jp-NotebookPanel:visible")
        cells = nb.locator(".jp-Notebook .jp-Cell")  # inside the notebook's windowed viewport
        cells.nth(max(SOLUTIONS)).wait_for(state="attached", timeout=60_000)
        for i, (gid, kind, typed) in SOLUTIONS.items():
            cell = cells.nth(i)
            cell.scroll_into_view_if_needed()
            # the released stub is what is replaced (and the cell order matches the source's)
            assert ("YOUR ANSWER HERE" if kind == "markdown" else "YOUR CODE HERE") in cell.inner_text(), gid
            if kind == "markdown":
                cell.locator(".jp-MarkdownOutput").dblclick()  # rendered markdown: edit it
            cell.locator(".cm-content").click()
            page.keyboard.press("Control+A")
            # insert_text types the text as one input (an IME would): CodeMirror adds no
            # auto-indentation or closing brackets, which key-by-key typing of code would
            page.keyboard.insert_text(typed)
            if kind == "markdown":
                page.keyboard.press("Shift+Enter")  # render it again
                cell.locator(".jp-MarkdownOutput mjx-container").first.wait_for(timeout=30_000)

        nb.locator(".validate-button").first.click()  # the notebook toolbar's Validate (it saves first)
        dialog = page.locator(".jp-Dialog")
        dialog.wait_for(timeout=180_000)
        assert "nbgrader-SuccessDialog" in dialog.get_attribute("class"), dialog.inner_text()
        assert dialog.locator("#validation-message.validation-success").inner_text().strip() == \
            "Success! Your notebook passes all the tests.", dialog.inner_text()
        dialog.get_by_role("button", name="Ok").click()

        page.keyboard.press("Control+S")
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="hw01.ipynb")
        page.wait_for_function("t => !t.classList.contains('jp-mod-dirty')", arg=tab.element_handle(), timeout=30_000)

        page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab", has_text="Assignments").click()
        panel.locator("#fetched_assignments_list .list_item", has_text="hw01").get_by_role("button", name="Submit").click()
        submitted = panel.locator("#submitted_assignments_list > .list_item", has_text="hw01")
        submitted.wait_for(timeout=60_000)
        stamp = STAMP.search(submitted.inner_text())
        assert stamp, submitted.inner_text()

    # the exchange holds one submission, at that time, with what was typed
    inbound = Path(hub["site"]["exchange"]) / cid / "inbound"
    subs = [p for p in inbound.iterdir() if p.name.startswith(f"{STUDENT}+hw01+")]
    assert len(subs) == 1 and stamp.group(0) in subs[0].name, (subs, stamp.group(0))
    got = json.loads((subs[0] / "hw01.ipynb").read_text())["cells"]
    for i, (gid, _, typed) in SOLUTIONS.items():
        assert got[i]["metadata"]["nbgrader"]["grade_id"] == gid
        assert "".join(got[i]["source"]).rstrip() == typed.rstrip(), gid
    trip["submitted"] = stamp.group(0)
    users.assert_offline()


def test_the_grader_collects_and_grades(hub, trip):
    assert "submitted" in trip, "needs the submission of the test before"
    course = hub["site"]["courses"][0]
    r = as_grader(hub, course, "collect", "hw01")
    assert r.returncode == 0 and STUDENT in r.stdout, r.stdout[-2000:] + r.stderr[-2000:]
    r = as_grader(hub, course, "grade", "hw01", "--jobs", "1", "--sandbox", "off", "--no-progress")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    row = next(line for line in r.stdout.splitlines() if line.startswith(STUDENT))
    assert "6/9" in row.split(), row  # every autograded point; the written answer waits for a person
    trip["graded"] = True


def test_the_instructor_scores_the_written_answer_in_the_formgrader(hub, users, trip):
    assert trip.get("graded"), "needs the grading of the test before"
    cid = hub["site"]["courses"][0]["id"]
    fg = f"{hub['url']}/services/{cid}/formgrader"
    with users.screenshots_on_failure("formgrader"):
        page = users.sign_in(INSTRUCTOR, "/hub/home")
        page.wait_for_url(re.compile(r"/hub/home"), timeout=60_000)
        page.goto(fg)  # the service's OAuth (no confirmation) and its first page
        page.get_by_role("link", name="Manual Grading").click()
        page.locator("table a", has_text="hw01").first.click()  # the assignment
        page.wait_for_url(re.compile(r"/gradebook/hw01$"))
        page.locator("table a", has_text="hw01").first.click()  # its notebook
        page.wait_for_url(re.compile(r"/gradebook/hw01/hw01$"))

        # which row is student1's (the page shows "Submission #n" or real names, not ids)
        api = users.context(INSTRUCTOR).request
        r = api.get(f"{fg}/api/submitted_notebooks/hw01/hw01")
        assert r.ok, r.text()
        sub_id = next(s["id"] for s in r.json() if s["student"] == STUDENT)
        page.locator("td.reveal .name-hidden").first.click()  # show the students' names
        page.locator(f"td.name a.name-shown[href$='/submissions/{sub_id}']").click()
        page.wait_for_url(re.compile(rf"/submissions/{sub_id}"))

        answer = page.locator(".nbgrader_cell", has=page.locator("input#q4-answer"))
        assert visible_math(answer) >= 1
        text = answer.locator(".text_cell_render").inner_text()
        assert "A class that fits random labels" in text and "$" not in text and r"\sqrt" not in text, text

        # formgrade.js binds the score boxes once it has fetched the grades: typing earlier is lost
        page.wait_for_function("window.formgrader && formgrader.grades && formgrader.grades.loaded "
                               "&& formgrader.grade_uis.length > 0", timeout=30_000)
        score = answer.locator("input#q4-answer.score")
        score.fill(str(MANUAL_SCORE))
        # formgrade.js saves on change (Enter, or leaving the box): the PUT to the grade API
        with page.expect_response(lambda resp: "/api/grade/" in resp.url and resp.request.method == "PUT") as put:
            score.press("Enter")
        assert put.value.ok, put.value.text()

        r = api.get(f"{fg}/api/grades?submission_id={sub_id}")
        assert r.ok, r.text()
        grades = {g["name"]: g for g in r.json()}
        assert grades["q4-answer"]["manual_score"] == MANUAL_SCORE and not grades["q4-answer"]["needs_manual_grade"]
        assert sum(g["auto_score"] or 0 for g in grades.values()) == 6
    trip["scored"] = True
    users.assert_offline()


def test_the_student_reads_feedback_with_the_score_and_typeset_math(hub, users, trip):
    assert trip.get("scored"), "needs the manual grade of the test before"
    course = hub["site"]["courses"][0]
    r = as_grader(hub, course, "feedback", "hw01")  # no --partial: nothing is left to grade by hand
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    total = f"Score: {6 + MANUAL_SCORE} / 9.0"

    with users.screenshots_on_failure("feedback"):
        page = users.context(STUDENT).new_page()
        page.goto(f"{hub['url']}/user/{STUDENT}/lab/workspaces/feedback?reset")
        wait_for_lab(page, STUDENT)
        panel = open_assignments(page)
        submitted = panel.locator("#submitted_assignments_list > .list_item", has_text="hw01")
        assert "feedback available to fetch" in submitted.inner_text()
        submitted.get_by_role("button", name="Fetch Feedback").click()
        view = panel.locator("#submitted_assignments_list a", has_text="view feedback")
        view.click()  # the file browser goes to the feedback folder
        page.locator(".jp-DirListing-item", has_text="hw01.html").dblclick()

        # JupyterLab's HTML viewer shows the page in an iframe sandboxed without scripts (Chromium:
        # "Blocked script execution"), so the TeX stays raw until "Trust HTML" reloads it with them
        frame = page.frame_locator(".jp-HTMLViewer iframe")
        frame.locator("body").get_by_text(total).first.wait_for(timeout=30_000)
        assert frame.locator("mjx-container").count() == 0
        page.get_by_role("button", name="Trust HTML").click()
        assert visible_math(frame.locator("body")) >= 1
        answer = frame.locator(".nbgrader_cell", has=frame.locator("a[name='q4-answer']"))
        assert visible_math(answer) >= 1 and "$" not in answer.locator(".text_cell_render").inner_text()

    home = Path(pwd.getpwnam(STUDENT).pw_dir)
    pages = list((home / course["id"] / "hw01" / "feedback").glob("*/hw01.html"))
    assert len(pages) == 1, pages
    assert trip["submitted"] in pages[0].parent.name  # the feedback of that submission
    with users.screenshots_on_failure("feedback-files"):
        # the same file as a plain page, as a browser tab opens /files/: MathJax runs at once
        rel = urllib.parse.quote(pages[0].relative_to(home).as_posix())
        page = users.context(STUDENT).new_page()
        page.goto(f"{hub['url']}/user/{STUDENT}/files/{rel}")
        body = page.locator("body")
        assert visible_math(body) >= 1
        assert total in body.inner_text()
        answer = page.locator(".nbgrader_cell", has=page.locator("a[name='q4-answer']"))
        assert f"Score: {MANUAL_SCORE} / 3.0" in answer.inner_text()
        assert visible_math(answer) >= 1
        text = answer.locator(".text_cell_render").inner_text()
        assert "A class that fits random labels" in text and "$" not in text and r"\sqrt" not in text, text
    users.assert_offline()
