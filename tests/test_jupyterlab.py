"""The lab in a real JupyterLab: `make lab`'s server, headless Chromium, Run All, then the
ipywidgets control retrains live and the plotly figures draw through JupyterLab's renderer."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request

import nbformat
import pytest

from conftest import ROOT, tool

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.xdist_group("jupyterlab")]
LAB = ROOT / "labs" / "01_generalization_puzzle.ipynb"


@pytest.fixture(scope="module")
def lab_server(tmp_path_factory):
    work = tmp_path_factory.mktemp("lab")
    nb = nbformat.read(LAB, as_version=4)
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    params.source = params.source.replace('scale = "auto"', 'scale = "ci"')
    nbformat.write(nb, work / "lab01.ipynb")
    bad = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print('before')"),
                                          nbformat.v4.new_code_cell("raise ValueError('raised on purpose')")])
    bad.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(bad, work / "raises.ipynb")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("TDL_STATIC", "TDL_SCALE")}
    env["JUPYTER_CONFIG_DIR"] = str(work / ".jupyter")  # no user settings leak in
    token = "tdltest"
    proc = subprocess.Popen([tool("jupyter"), "lab", "--no-browser", "--ip", "127.0.0.1", "--port", str(port),
                             f"--ServerApp.token={token}", f"--notebook-dir={work}",
                             "--LabApp.news_url=", *(["--allow-root"] if os.geteuid() == 0 else [])],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(work / "server.log", "w"))
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            urllib.request.urlopen(f"{url}/api/status?token={token}", timeout=1)
            break
        except OSError:
            time.sleep(0.2)
    else:
        proc.kill()
        pytest.fail("JupyterLab did not start: " + (work / "server.log").read_text()[-3000:])
    yield url, token
    proc.terminate()
    proc.wait(timeout=20)


# JupyterLab 4.6 renders a traceback as an output of mime type application/vnd.jupyter.stderr
# (not application/vnd.jupyter.error) whose text is coloured by ANSI codes; the exception's name
# is in the text. test_error_check_sees_a_cell_that_raises proves this check can fire.
RAISED = ".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']"


def raised_cells(page) -> list[str]:
    """The text of every output that shows a traceback."""
    texts = page.locator(RAISED).all_text_contents()
    return [t for t in texts if "Traceback" in t or "Error" in t]


def open_and_run_all(page, url, token, name):
    page.goto(f"{url}/lab/workspaces/t/tree/{name}?reset&token={token}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60000)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle'], .jp-mod-idle, .jp-Toolbar", timeout=60000)
    page.wait_for_timeout(2000)
    try:
        page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
        page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first.click()
    except Exception:
        page.screenshot(path=str(ROOT / "_build" / "jupyterlab-debug.png"))
        raise


def test_error_check_sees_a_cell_that_raises(lab_server, browser):
    url, token = lab_server
    page = browser.new_page()
    open_and_run_all(page, url, token, "raises.ipynb")
    page.wait_for_function("(sel) => document.querySelectorAll(sel).length > 0", arg=RAISED, timeout=120000)
    found = raised_cells(page)
    assert len(found) == 1 and "raised on purpose" in found[0], found
    assert page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.error']").count() == 0
    page.close()


def test_lab_runs_and_widget_is_live(lab_server, browser, tmp_path):
    url, token = lab_server
    if True:  # one shared browser (conftest); a fresh page
        page = browser.new_page()
        foreign = []
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(("data:", "blob:", "http://127.0.0.1", "ws://127.0.0.1"))
                   else (foreign.append(r.request.url), r.abort()))
        open_and_run_all(page, url, token, "lab01.ipynb")
        # the explorer: a SelectionSlider, a status line, and a figure drawn by the plotly extension
        status = page.locator(".widget-vbox .widget-html-content").last
        page.wait_for_function("() => [...document.querySelectorAll('.widget-html-content')].some(e => e.textContent.includes('test accuracy'))",
                               timeout=240000)
        page.wait_for_selector(".widget-vbox .js-plotly-plot .main-svg", timeout=60000)
        first = status.text_content()
        slider = page.locator(".widget-vbox .widget-slider .noUi-handle").last
        slider.focus()
        for _ in range(5):  # 0% -> 50%: no precomputed run at 50% in the ci sweep, trained live
            page.keyboard.press("ArrowRight")
        page.wait_for_function("(first) => { const e = [...document.querySelectorAll('.widget-vbox .widget-html-content')].pop();"
                               " return e && e.textContent !== first && e.textContent.includes('test accuracy'); }",
                               arg=first, timeout=120000)
        readout = page.locator(".widget-vbox .widget-readout").last.text_content()
        assert readout.strip() == "50%", readout
        assert not raised_cells(page), f"a cell raised in JupyterLab: {raised_cells(page)}"
        assert page.locator(RAISED + " .ansi-red-fg").count() == 0
        assert page.locator(".jp-RenderedPlotly .main-svg, .js-plotly-plot .main-svg").count() >= 4
        assert not foreign, f"JupyterLab requested other hosts: {foreign}"
        page.screenshot(path=str(tmp_path / "jupyterlab.png"))
        page.close()
