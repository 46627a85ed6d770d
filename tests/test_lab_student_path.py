"""The student's path through `make lab`'s JupyterLab in a real browser (issue 16): the instructor
releases hw01 with `tdl release`; in headless Chromium the student opens the Assignments panel,
fetches hw01, types the answers into the notebook, sees Validate name a wrong answer and then pass,
saves and submits. Oracles outside the browser: the exchange holds exactly one submission with
the typed answers, and `tdl collect` + `tdl grade` give it full marks on every autograded cell.

Also measured here: Submit sends the notebook as it is on disk. An edit made after the last save
stays in the browser and is not submitted (the tab is still dirty when the submission is already
in the exchange); `make lab` therefore autosaves every 20 s (deploy/lab, as the class hub does),
which the student's server reports as the schema default and which the browser is seen doing.

The server is the Makefile's own `lab` command (`make -n lab`) with --notebook-dir the student's
home, started in that home (as `make lab` starts in its --notebook-dir), plus the options a test
needs (port, token, no browser). What the student's server needs to see the course, on one
machine where instructor and student are the same OS user (nbgrader 0.9.6's server extensions):
- its nbgrader config: the Assignment List reads nbgrader_config.py from the server's root
  directory, and Fetch, Submit and Validate from its working directory; the home holds one that
  loads the course's (as the repository root's does for `make lab`) and names the student
  (CourseDirectory.student_id; by default the submission is made by the OS user);
- the same exchange and course id as the instructor (Exchange.root from TDL_EXCHANGE, TDL_COURSE_ID,
  path_includes_course): Fetch writes <working directory>/<course>/hw01 (Exchange.assignment_dir
  is "."), Submit copies that folder to <exchange>/<course>/inbound;
- not CourseDirectory.root: it is the instructor's folder (the Formgrader's, which logs that it is
  outside this server's root) and plays no part in fetch, validate or submit.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import time
import urllib.request

import nbformat
import pytest

from conftest import BIN, ROOT, free_port, tdl_env

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("jupyterlab")]

COURSE_ID = "tdl101"  # not the default "tdl": proves TDL_COURSE_ID reaches the student's server
STUDENT = "ada"
ASSIGNMENT = "hw01"
AUTOSAVE_S = 20  # deploy/lab (and deploy/hub): JupyterLab's own default is 120 s
LOCAL = ("data:", "blob:", "http://127.0.0.1", "ws://127.0.0.1")
WRITTEN = "Ada's answer, typed in the browser: the bound is the same for true and random labels."


def _tdl(env, *args):
    r = subprocess.run([str(BIN / "tdl"), *args], env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, f"tdl {' '.join(args)} -> {r.returncode}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def _answers() -> dict[str, str]:
    """What the student types: each solution cell of the source with the solution markers removed
    (the released stub with its `YOUR CODE HERE` lines replaced by the reference solution)."""
    source = nbformat.read(ROOT / "assignments" / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    out = {}
    for c in source.cells:
        meta = c.metadata.get("nbgrader", {})
        if meta.get("solution") and c.cell_type == "code":
            out[meta["grade_id"]] = "\n".join(line for line in c.source.splitlines()
                                              if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION"))
        elif meta.get("solution"):
            out[meta["grade_id"]] = WRITTEN
    assert set(out) == {"q1-solution", "q2-solution", "q3-solution", "q4-answer"}, out
    return out


def _lab_command(home) -> tuple[dict, list[str]]:
    """The command `make lab` runs (its prerequisites taken as made: -o), as (environment
    assignments, argv), with --notebook-dir the student's home and a relative program made absolute
    (make runs it in the repository root; here it runs in the home, see ``lab``)."""
    make = shutil.which("make")
    if make is None:
        pytest.fail("`make` is not on PATH: this test starts JupyterLab from the Makefile's lab recipe")
    r = subprocess.run([make, "-s", "-n", "-o", ".venv/.tdl-installed", "-o", "_vendor/.stamp", "lab"],
                       cwd=ROOT, env=_clean_env(), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout.strip(), f"make -n lab failed: {r.stdout}\n{r.stderr}"
    lines = [line for line in r.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"the lab recipe is expected to be one command: {lines}"
    tokens = shlex.split(lines[0])
    if any(t in ("&&", "||", ";", "|") or "$" in t or "`" in t for t in tokens):
        pytest.fail(f"the lab recipe is not one simple command this test can run: {lines[0]}")
    assignments = {}
    while tokens and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        assignments[name] = value
    if not os.path.isabs(tokens[0]):
        tokens[0] = str(ROOT / tokens[0])
    dirs = [i for i, t in enumerate(tokens) if t.startswith("--notebook-dir=")]
    assert len(dirs) == 1, f"no single --notebook-dir in the lab recipe: {lines[0]}"
    tokens[dirs[0]] = f"--notebook-dir={home}"
    return assignments, tokens


def _clean_env(**extra) -> dict:
    """tdl_env without the caller's Jupyter settings (config, data, runtime, settings dirs)."""
    env = {k: v for k, v in tdl_env().items() if not k.startswith("JUPYTER") and k not in ("TDL_STATIC", "TDL_SCALE")}
    env.update(extra)
    return env


def _get_json(url: str, token: str):
    req = urllib.request.Request(url, headers={"Authorization": f"token {token}"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read())


@pytest.fixture(scope="module")
def term(tmp_path_factory):
    """A throwaway course with hw01 released by `tdl release`, a roster with the student, a tmp
    exchange, and the student's home with its nbgrader_config.py."""
    work = tmp_path_factory.mktemp("studentpath")
    course, exchange, home = work / "course", work / "exchange", work / "home"
    (course / "source").mkdir(parents=True)
    shutil.copy(ROOT / "assignments" / "nbgrader_config.py", course)
    shutil.copytree(ROOT / "assignments" / "source" / ASSIGNMENT, course / "source" / ASSIGNMENT)
    exchange.mkdir()  # the instructor's to create (tdl release refuses a missing TDL_EXCHANGE)
    home.mkdir()
    env = tdl_env(TDL_COURSE=str(course), TDL_EXCHANGE=str(exchange), TDL_COURSE_ID=COURSE_ID)
    (work / "roster.csv").write_text(f"id,first_name,last_name,email\n{STUDENT},Ada,L,ada@x.example\n")
    _tdl(env, "roster", "import", str(work / "roster.csv"))
    _tdl(env, "release", ASSIGNMENT)
    (home / "nbgrader_config.py").write_text(
        "# The student's nbgrader configuration, read by the Assignment List from the server's root\n"
        "# directory; like the repository root's for `make lab`, it loads the course's.\n"
        f"load_subconfig({str(course / 'nbgrader_config.py')!r})  # noqa: F821\n"
        f"c.CourseDirectory.student_id = {STUDENT!r}  # noqa: F821\n")
    return {"work": work, "course": course, "exchange": exchange, "home": home, "env": env}


@pytest.fixture(scope="module")
def lab(term):
    """The student's JupyterLab, started by the Makefile's lab recipe with --notebook-dir the
    student's home; JUPYTER_CONFIG_DIR, HOME and with it the data and runtime dirs are throwaway."""
    home = term["home"]
    assignments, argv = _lab_command(home)
    port, token = free_port(), "tdl-student"
    argv += ["--no-browser", "--ip", "127.0.0.1", "--port", str(port), f"--ServerApp.token={token}",
             "--LabApp.news_url="]
    env = _clean_env(TDL_EXCHANGE=str(term["exchange"]), TDL_COURSE_ID=COURSE_ID, HOME=str(home),
                     JUPYTER_CONFIG_DIR=str(term["work"] / "jupyter-config"), **assignments)
    command = " ".join([*(f"{k}={shlex.quote(v)}" for k, v in assignments.items()), shlex.join(argv)])
    log_path = term["work"] / "server.log"
    log = open(log_path, "w")
    # In the home, not the repository root: nbgrader's Assignment List fetches to and submits from
    # Exchange.assignment_dir ("."), i.e. the server's working directory, which for `make lab` is
    # its --notebook-dir (started elsewhere, it fetched into that folder and read its config).
    proc = subprocess.Popen(argv, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"JupyterLab exited ({proc.returncode}): {command}\n{log_path.read_text()[-3000:]}")
            try:
                _get_json(f"{url}/api/status", token)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"JupyterLab did not answer in 120 s: {command}\n{log_path.read_text()[-3000:]}")
                time.sleep(0.2)
        yield {"url": url, "token": token, "log": log_path, "command": command}
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@contextlib.contextmanager
def _screenshot_on_failure(page, path, lab):
    try:
        yield
    except Exception as e:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(path))
        raise AssertionError(f"{e}\n(screenshot: {path}; server log: {lab['log']})") from e


# --- the page: nbgrader 0.9.6's lab extension (its ids and classes, from its source) -------------

def _open_assignments(page):
    """Nbgrader > Assignment List (opens the panel, or brings it to the front)."""
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Nbgrader$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Assignment List$")).click()
    page.wait_for_selector("#nbgrader-assignment-list:not(.lm-mod-hidden) #assignments", timeout=30000)


def _row(page, section: str):
    """The hw01 row of a section of the panel: released, fetched or submitted."""
    name = page.locator(".item_name", has_text=re.compile(rf"^\s*{ASSIGNMENT}\s*$"))
    return page.locator(f"#{section}_assignments_list > .list_item", has=name)


def _submitted_timestamps(page) -> list[str]:
    items = _row(page, "submitted").locator(".assignment-notebooks > .list_item .item_name")
    return [t.strip() for t in items.all_text_contents() if t.strip()]


def _notebook(page):
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")


def _notebook_tab(page):
    return page.locator("#jp-main-dock-panel .lm-TabBar-tab").filter(has_text=f"{ASSIGNMENT}.ipynb")


def _replace_cell(page, index: int, text: str, markdown: bool = False):
    """Select all of cell ``index`` in its editor and enter ``text`` as typed input (CodeMirror's
    auto-indent would re-indent keystroke by keystroke, so code goes in as one text input)."""
    cell = _notebook(page).locator(".jp-Notebook .jp-Cell").nth(index)
    cell.scroll_into_view_if_needed()
    if markdown:
        cell.locator(".jp-MarkdownOutput").dblclick()  # a rendered markdown cell edits on double-click
    editor = cell.locator(".jp-InputArea-editor .cm-content")
    editor.click()
    page.keyboard.press("Control+a")
    if markdown:
        page.keyboard.type(text)
    else:
        page.keyboard.insert_text(text)
    page.keyboard.press("Escape")  # command mode


def _validate(page) -> dict:
    """Click the notebook toolbar's Validate (it saves first) and read the result dialog."""
    _notebook(page).locator(".validate-button button").click()
    dialog = page.locator(".jp-Dialog", has=page.locator("#validation-message"))
    dialog.wait_for(timeout=120000)
    body = dialog.locator("#validation-message")
    result = {"classes": body.get_attribute("class") or "", "text": body.inner_text(),
              "dialog": dialog.get_attribute("class") or ""}
    dialog.locator(".jp-Dialog-footer button.jp-mod-accept").click()
    dialog.wait_for(state="detached", timeout=10000)
    return result


def _wait_clean(page, timeout=30000):
    """Until the notebook's tab loses its unsaved-changes mark (a save completed)."""
    page.wait_for_function("(name) => ![...document.querySelectorAll('#jp-main-dock-panel .lm-TabBar-tab')]"
                           ".some(t => t.textContent.includes(name) && t.classList.contains('jp-mod-dirty'))",
                           arg=f"{ASSIGNMENT}.ipynb", timeout=timeout)


def _wait_dirty(page):
    """Until the notebook's tab shows unsaved changes (the edit reached the document model)."""
    page.wait_for_function("(name) => [...document.querySelectorAll('#jp-main-dock-panel .lm-TabBar-tab')]"
                           ".some(t => t.textContent.includes(name) && t.classList.contains('jp-mod-dirty'))",
                           arg=f"{ASSIGNMENT}.ipynb", timeout=10000)


def _is_dirty(page) -> bool:
    return "jp-mod-dirty" in (_notebook_tab(page).first.get_attribute("class") or "")


def _inbound(term) -> list:
    return sorted((term["exchange"] / COURSE_ID / "inbound").glob(f"{STUDENT}+{ASSIGNMENT}+*"))


@pytest.fixture(scope="module")
def student(term, lab, browser):
    """The student's path in the browser up to Submit, then the instructor's collect and grade.
    Returns what was seen; the page stays open for the unsaved-edit measurement."""
    answers = _answers()
    seen = {"answers": answers, "foreign": []}
    page = browser.new_page()
    page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(LOCAL)
               else (seen["foreign"].append(r.request.url), r.abort()))
    shot = term["work"] / "student-path-failure.png"
    home_nb = term["home"] / COURSE_ID / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    with _screenshot_on_failure(page, shot, lab):
        # a fresh JUPYTER_CONFIG_DIR holds no workspace: the default one, restored once the launcher shows
        page.goto(f"{lab['url']}/lab?token={lab['token']}")
        page.wait_for_selector(".jp-Launcher", timeout=60000)
        _open_assignments(page)
        _row(page, "released").wait_for(timeout=30000)
        seen["course_shown"] = page.locator("#course_list_default").inner_text().strip()
        seen["released_row"] = _row(page, "released").inner_text()
        seen["home_before_fetch"] = home_nb.exists()

        _row(page, "released").locator(".item_status button").click()  # Fetch
        _row(page, "fetched").wait_for(timeout=60000)
        seen["fetched_file"] = home_nb.read_text()
        fetched = nbformat.reads(seen["fetched_file"], as_version=4)
        index = {c.metadata.get("nbgrader", {}).get("grade_id"): i for i, c in enumerate(fetched.cells)}

        # open hw01.ipynb from the panel: expand the assignment, click the notebook's link
        _row(page, "fetched").locator("a.assignment-notebooks-link").click()
        _row(page, "fetched").locator(".assignment-notebooks a", has_text=re.compile(rf"^{ASSIGNMENT}$")).click()
        _notebook(page).locator(".jp-Notebook .jp-Cell").nth(index["q4-answer"]).wait_for(timeout=60000)
        _notebook(page).locator(".validate-button").wait_for(timeout=60000)

        # every answer typed in, q1 first wrong (its second square-root term left out)
        correct_q1 = answers["q1-solution"]
        wrong_q1 = correct_q1.replace(" + math.sqrt(math.log(1 / delta) / (2 * m))", "")
        assert wrong_q1 != correct_q1, "the wrong answer must differ from the right one"
        _replace_cell(page, index["q1-solution"], wrong_q1)
        for gid in ("q2-solution", "q3-solution"):
            _replace_cell(page, index[gid], answers[gid])
        _replace_cell(page, index["q4-answer"], answers["q4-answer"], markdown=True)
        seen["validate_wrong"] = _validate(page)
        seen["on_disk_after_wrong"] = home_nb.read_text()  # Validate saved before validating

        _replace_cell(page, index["q1-solution"], correct_q1)
        seen["validate_right"] = _validate(page)
        page.keyboard.press("Control+s")  # save (Validate saved too; the student saves anyway)
        _wait_clean(page)
        seen["on_disk_before_submit"] = home_nb.read_text()

        _open_assignments(page)
        seen["inbound_before"] = _inbound(term)
        _row(page, "fetched").locator(":scope > .col-md-12 > .item_status button").click()  # Submit
        _row(page, "submitted").locator(".assignment-notebooks > .list_item .item_name").first.wait_for(timeout=60000)
        seen["timestamps"] = _submitted_timestamps(page)
    seen["inbound"] = _inbound(term)
    seen["collect"] = _tdl(term["env"], "collect", ASSIGNMENT)
    seen["grade"] = _tdl(term["env"], "grade", ASSIGNMENT, "--sandbox", "off", "--jobs", "1", "--no-progress")
    seen["page"], seen["index"], seen["home_nb"] = page, index, home_nb
    yield seen
    page.close()


def test_panel_shows_the_release_and_fetch_puts_it_in_home(student):
    assert student["course_shown"] == COURSE_ID
    assert COURSE_ID in student["released_row"] and "fetch" in student["released_row"].lower()
    assert not student["home_before_fetch"]
    fetched = student["fetched_file"]
    assert "YOUR CODE HERE" in fetched and "YOUR ANSWER HERE" in fetched
    for secret in ("BEGIN SOLUTION", "HIDDEN TESTS", "tdlcheck"):
        assert secret not in fetched, secret


def test_validate_names_the_wrong_answer_then_passes(student):
    wrong, right = student["validate_wrong"], student["validate_right"]
    assert "validation-failed" in wrong["classes"] and "nbgrader-ErrorDialog" in wrong["dialog"], wrong
    assert "The following cell failed" in wrong["text"], wrong
    assert "assert abs(vc_gap(100, 1797, 0.05) - 0.686746) < 1e-6" in wrong["text"], wrong  # q1's test, named
    assert "AssertionError" in wrong["text"], wrong
    for other in ("d_vacuous", "rademacher_linear"):  # the right answers are not blamed
        assert other not in wrong["text"], wrong
    # Validate saves first: the wrong answer was on disk when it was validated
    assert "+ math.sqrt(math.log(1 / delta)" not in student["on_disk_after_wrong"]
    assert "validation-success" in right["classes"] and "nbgrader-SuccessDialog" in right["dialog"], right
    assert "Success! Your notebook passes all the tests." in right["text"], right


def test_exchange_holds_one_submission_with_the_typed_answers(student, term):
    assert student["inbound_before"] == []
    inbound = student["inbound"]
    assert len(inbound) == 1, inbound
    sub = inbound[0]
    nb = nbformat.read(sub / f"{ASSIGNMENT}.ipynb", as_version=4)
    got = {c.metadata["nbgrader"]["grade_id"]: c.source for c in nb.cells
           if c.metadata.get("nbgrader", {}).get("solution")}
    assert got == student["answers"]
    assert (sub / f"{ASSIGNMENT}.ipynb").read_text() == student["on_disk_before_submit"]  # the file as saved
    # the panel's timestamp is the submission's
    assert student["timestamps"] == [(sub / "timestamp.txt").read_text().strip()]


def test_instructor_grades_full_marks(student, term):
    from nbgrader.api import Gradebook

    assert "FLAGGED" not in student["grade"].stdout, student["grade"].stdout
    with Gradebook(f"sqlite:///{term['course'] / 'gradebook.db'}") as gb:
        for gid, points in (("q1-test", 2), ("q2-test", 1), ("q3-test", 3)):
            g = gb.find_grade(gid, ASSIGNMENT, ASSIGNMENT, STUDENT)
            assert (g.score, g.max_score) == (points, points), (gid, g.score, g.max_score)
        written = gb.find_grade("q4-answer", ASSIGNMENT, ASSIGNMENT, STUDENT)
        assert written.needs_manual_grade and written.manual_score is None
    submitted = term["course"] / "submitted" / STUDENT / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert WRITTEN in submitted.read_text()


def test_no_request_leaves_localhost(student):
    assert not student["foreign"], f"JupyterLab requested other hosts: {student['foreign']}"


def test_make_lab_autosaves_every_20_s(lab):
    """The default the student's server reports: the docmanager plugin's schema, as overridden."""
    reply = _get_json(f"{lab['url']}/lab/api/settings/@jupyterlab/docmanager-extension:plugin", lab["token"])
    schema = reply["schema"]["properties"]
    assert schema["autosave"]["default"] is True
    assert schema["autosaveInterval"]["default"] == AUTOSAVE_S, (schema["autosaveInterval"], lab["command"])


def test_submit_sends_the_file_on_disk_not_unsaved_edits(student, term, lab):
    """Measured in the browser: an edit (A) reaches disk by autosave alone within the interval;
    an edit typed right after (B), unsaved, is not in the submission Submit then makes."""
    page, index, home_nb = student["page"], student["index"], student["home_nb"]
    cell = _notebook(page).locator(".jp-Notebook .jp-Cell").nth(index["q3-solution"])
    before = set(_inbound(term))
    with _screenshot_on_failure(page, term["work"] / "unsaved-edit-failure.png", lab):
        _notebook_tab(page).first.click()
        cell.locator(".jp-InputArea-editor .cm-content").click()
        page.keyboard.press("Control+End")
        page.keyboard.press("Enter")
        page.keyboard.type("# edit A: left to autosave")
        _wait_dirty(page)
        typed = time.monotonic()
        _wait_clean(page, timeout=(AUTOSAVE_S + 25) * 1000)  # no save pressed: only autosave cleans it
        to_disk = time.monotonic() - typed
        assert "# edit A: left to autosave" in home_nb.read_text()
        # right after an autosave the next one is >= 20 s away: edit B stays unsaved through Submit
        page.keyboard.press("Enter")
        page.keyboard.type("# edit B: never saved")
        page.keyboard.press("Escape")
        _wait_dirty(page)
        _open_assignments(page)
        _row(page, "fetched").locator(":scope > .col-md-12 > .item_status button").click()  # Submit
        page.wait_for_function("(n) => document.querySelectorAll('#submitted_assignments_list .assignment-notebooks"
                               " > .list_item .item_name').length > n", arg=len(student["timestamps"]),
                               timeout=60000)
        new = sorted(set(_inbound(term)) - before)
        still_dirty = _is_dirty(page)
    assert to_disk <= AUTOSAVE_S + 5, f"autosave took {to_disk:.1f} s"
    assert len(new) == 1, new
    submitted = (new[0] / f"{ASSIGNMENT}.ipynb").read_text()
    assert "# edit A: left to autosave" in submitted
    assert still_dirty, "an autosave ran between edit B and Submit: the measurement is void"
    assert "# edit B: never saved" not in submitted  # Submit sent the file on disk, not the browser's
    assert "# edit B: never saved" not in home_nb.read_text()
