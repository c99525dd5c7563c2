"""The notebooks in a real browser, as a student runs them: JupyterLab in headless Chromium,
driven by Playwright, opens each notebook, clears its outputs, runs every cell through the
menus (Edit > Clear Outputs of All Cells, Run > Run All Cells), waits for the kernel to go
idle, saves it, and fails on any error output, any cell left unrun, or any widget that does
not render ("Loading widget...", "model not found", a widget shown as its text).

Needs Playwright (PyPI ``playwright``, in the ``test`` extra) and Debian's Chromium
(``apt-get install chromium``, or ``DNEWTON_CHROMIUM=/path/to/chrome``); without either,
the tests skip with one line saying how to enable them. Playwright drives that Chromium
(``executable_path``) and never downloads a browser.

JupyterLab runs on 127.0.0.1, on a free port, with a random token, on a copy of
``notebooks/`` in a temporary directory, with its own settings: the repository is never
touched. Every process it starts (kernels, controllers, mpiexec, engines) inherits a marker
in its environment (``DNEWTON_NOTEBOOK_RUN``, as in ``test_notebooks.py``): after each
notebook no kernel or engine may be left, and after the server none at all.

In ``make test`` the notebooks that show widgets run (01, 05 and 07): what the browser adds
to nbval's runs of every notebook is JupyterLab's front end, where a widget renders or fails,
while text and images are the outputs nbval already compares. ``DNEWTON_BROWSER=all`` runs
every notebook (``make browser-check`` does, and only this test: 25-40 s a notebook on this
kit's 2-core machine, 2026-11-28), ``DNEWTON_BROWSER=05,07`` those whose names start so.
"""
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from test_notebooks import _describe  # the same leftover report as nbval's runs

from dnewton_core.classroom.cluster import cluster_processes
from dnewton_core.environment import blas_environment

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb"))
MARK = "DNEWTON_NOTEBOOK_RUN"
WIDGET = "application/vnd.jupyter.widget-view+json"       # a widget in a saved output
RUN_TIMEOUT = 400          # seconds for one notebook's cells, engines included
ENABLE = ("to run it: pip install playwright (the test extra) and apt-get install -y "
          "--no-install-recommends chromium")

# JupyterLab's own settings for the run: every cell in the page (no windowing, so every
# output can be checked), and no news or update pop-up over the notebook.
SETTINGS = {
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"windowingMode": "none"},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def chromium():
    """The system Chromium, or None."""
    path = os.environ.get("DNEWTON_CHROMIUM") or shutil.which("chromium") or \
        shutil.which("chromium-browser")
    return path if path and os.access(path, os.X_OK) else None


def selected():
    """The notebooks to run: those that show widgets (in their saved outputs), all
    (``DNEWTON_BROWSER=all``), or those whose names start as ``DNEWTON_BROWSER`` lists."""
    wanted = os.environ.get("DNEWTON_BROWSER", "").strip().lower()
    if not wanted:
        shown = [nb for nb in NOTEBOOKS if WIDGET in nb.read_text()]
        if not shown:                  # outputs stripped: nothing would run, and pass
            raise pytest.UsageError("no notebook in notebooks/ shows a widget in its saved "
                                    "outputs; run them (README, Tests) or set DNEWTON_BROWSER")
        return shown
    prefixes = [w.strip() for w in wanted.split(",") if w.strip() and w.strip() != "all"]
    chosen = [nb for nb in NOTEBOOKS if nb.stem.lower().startswith(tuple(prefixes) or ("",))]
    if not chosen:
        raise pytest.UsageError(f"DNEWTON_BROWSER={wanted}: no notebook's name starts so "
                                f"({', '.join(nb.stem for nb in NOTEBOOKS)})")
    return chosen


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(server, path, method="GET"):
    request = urllib.request.Request(f"{server['url']}{path}", method=method,
                                     headers={"Authorization": f"token {server['token']}"})
    with urllib.request.urlopen(request, timeout=10) as reply:
        body = reply.read()
    return json.loads(body) if body else None


def _start_server(tmp):
    """JupyterLab on a copy of notebooks/ in ``tmp``; returns {"proc", "url", "token", "marker", "log"}."""
    shutil.copytree(ROOT / "notebooks", tmp / "notebooks")
    for name, values in SETTINGS.items():
        path = tmp / "settings" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    port, token = _free_port(), secrets.token_hex(24)
    marker = f"browser-{uuid.uuid4().hex[:12]}"
    env = dict(os.environ, IPP_NONINTERACTIVE="1", **{MARK: marker}, **blas_environment(),
               JUPYTER_CONFIG_DIR=str(tmp / "config"), JUPYTER_RUNTIME_DIR=str(tmp / "runtime"),
               JUPYTERLAB_SETTINGS_DIR=str(tmp / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(tmp / "workspaces"), IPYTHONDIR=str(tmp / "ipython"))
    cmd = [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1",
           f"--ServerApp.port={port}", "--ServerApp.port_retries=0",
           f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={tmp / 'notebooks'}"]
    if os.geteuid() == 0:
        cmd.append("--allow-root")
    log = open(tmp / "jupyterlab.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    server = dict(proc=proc, url=f"http://127.0.0.1:{port}", token=token, marker=marker,
                  log=tmp / "jupyterlab.log")
    deadline = time.monotonic() + 120
    while True:
        try:
            _api(server, "/api/status")
            return server
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                _stop_server(server)
                pytest.fail(f"JupyterLab did not start:\n{server['log'].read_text()[-3000:]}")
            time.sleep(0.3)


def _stop_server(server):
    """Shut JupyterLab down (its kernels with it); end what is left of its process tree;
    return the processes that carried its marker after 15 s (now ended)."""
    try:
        _api(server, "/api/shutdown", "POST")
        server["proc"].wait(30)
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(server["proc"].pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    server["proc"].wait()
    left = _leftovers(server["marker"])
    for p in left:
        try:
            p.kill()
        except Exception:
            pass
    return left


def _leftovers(marker, keep=(), wait=15.0):
    """Processes carrying ``marker`` (but ``keep``'s pids) after up to ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        left = [p for p in cluster_processes(**{MARK: marker}) if p.pid not in keep]
        if not left or time.monotonic() > deadline:
            return left
        time.sleep(0.25)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(a Playwright browser, the JupyterLab server); both end with the module."""
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip(f"browser check skipped: no Playwright; {ENABLE}")
    executable = chromium()
    if executable is None:
        pytest.skip(f"browser check skipped: no Chromium; {ENABLE}")
    server = _start_server(tmp_path_factory.mktemp("lab"))
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=executable, headless=True,
                args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
            yield browser, server
            browser.close()
    finally:
        left = _stop_server(server)
    assert not left, f"JupyterLab left {len(left)} process(es) (now ended):\n{_describe(left)}"


# ------------------------------------------------------------------------- in the page

def _no_dialog(page):
    """Fail with its text if JupyterLab shows a dialog (a kernel to choose, a dead kernel)."""
    dialog = page.locator(".jp-Dialog")
    if dialog.count():
        pytest.fail(f"JupyterLab asks: {' '.join(dialog.first.inner_text().split())[:300]}")


def _wait_for_kernel(page, server, name, timeout=120):
    """Wait until the notebook's kernel has started (the server's session) and the page
    shows it idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _no_dialog(page)
        kernels = [s["kernel"] for s in _api(server, "/api/sessions") if s["path"].endswith(name)]
        if kernels and kernels[0].get("execution_state") == "idle" and \
                page.evaluate(STATE)["status"] == "idle":
            return
        page.wait_for_timeout(300)
    pytest.fail(f"{name}: no idle kernel after {timeout} s")


def _menu(page, top, item):
    _no_dialog(page)
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(f"^{re.escape(top)}$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(f"^{re.escape(item)}$")).click()


PANEL = ".jp-NotebookPanel:not(.lm-mod-hidden)"        # the notebook on show
STATE = f"""() => ({{
  status: document.querySelector('{PANEL} .jp-Notebook-ExecutionIndicator')?.dataset.status,
  prompts: [...document.querySelectorAll('{PANEL} .jp-CodeCell .jp-InputPrompt')]
             .map(e => e.textContent.trim()),
}})"""


def _wait_until_done(page, timeout):
    """Wait until every code cell shows an execution count and the kernel is idle, or the
    kernel has been idle with no cell queued for 10 s (a failed cell stops the run)."""
    deadline, idle_since = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        _no_dialog(page)
        state = page.evaluate(STATE)
        prompts, idle = state["prompts"], state["status"] == "idle"
        quiet = idle and not any("*" in p for p in prompts)
        if quiet and prompts and all(re.fullmatch(r"\[\d+\]:", p) for p in prompts):
            return prompts
        idle_since = (idle_since or time.monotonic()) if quiet else None
        if idle_since and time.monotonic() - idle_since > 10:
            return prompts
        page.wait_for_timeout(500)
    pytest.fail(f"cells still running after {timeout} s: {page.evaluate(STATE)}")


PROBLEMS = """() => {
  const out = [];
  document.querySelectorAll('.jp-NotebookPanel .jp-Cell').forEach((cell, k) => {
    cell.querySelectorAll('.jp-OutputArea-output').forEach(o => {
      const mime = o.dataset.mimeType || '', text = o.innerText || '';
      if (mime === 'application/vnd.jupyter.stderr' && /Traceback|^\\w*(Error|Exception)\\b/m.test(text))
        out.push(`cell ${k}: error output: ${text.slice(0, 400)}`);
      if (/Loading widget|Error displaying widget|model not found/.test(text))
        out.push(`cell ${k}: widget not rendered: ${text.slice(0, 200)}`);
    });
  });
  return out;
}"""

# Outputs showing a rendered widget (an ipywidgets view), not counting outputs nested in one.
WIDGETS = """() => [...document.querySelectorAll('.jp-NotebookPanel .jp-OutputArea-output')]
  .filter(o => !o.parentElement.closest('.jupyter-widgets'))
  .filter(o => o.classList.contains('jupyter-widgets') || o.querySelector('.jupyter-widgets'))
  .length"""


def _rendered_problems(page, widgets_saved):
    """Problems in the page, once the widgets had up to 20 s to render."""
    deadline = time.monotonic() + 20
    while True:
        problems = page.evaluate(PROBLEMS)
        if widgets_saved > page.evaluate(WIDGETS):
            problems.append(f"{widgets_saved} widget output(s) saved, "
                            f"{page.evaluate(WIDGETS)} shown as widgets")
        if not problems or time.monotonic() > deadline:
            return problems
        page.wait_for_timeout(500)


def _saved_problems(nb):
    """Errors in the saved notebook, and code cells that did not run."""
    out = []
    for k, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        if cell.get("execution_count") is None and cell["source"]:
            out.append(f"cell {k} did not run")
        for o in cell.get("outputs", []):
            if o["output_type"] == "error":
                out.append(f"cell {k}: {o['ename']}: {o['evalue'][:300]}")
            elif o["output_type"] == "stream" and "Traceback" in "".join(o.get("text", "")):
                out.append(f"cell {k}: a traceback on {o['name']}")
    return out


def _widget_outputs(nb):
    return sum("application/vnd.jupyter.widget-view+json" in o.get("data", {})
               for c in nb["cells"] for o in c.get("outputs", []))


def _save(page, path):
    before = path.stat().st_mtime_ns
    page.keyboard.press("Control+s")
    deadline = time.monotonic() + 30
    while path.stat().st_mtime_ns == before and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    page.wait_for_timeout(500)                  # the write that changed mtime completes
    return json.loads(path.read_text())


def _shut_down_kernels(server):
    for session in _api(server, "/api/sessions"):
        _api(server, f"/api/sessions/{session['id']}", "DELETE")


@pytest.mark.parametrize("notebook", selected(), ids=lambda p: p.stem)
def test_notebook_runs_in_jupyterlab_without_errors(lab, notebook):
    browser, server = lab
    copy = server["log"].parent / "notebooks" / notebook.name
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # reset: a fresh workspace, this notebook alone (no tab restored from an earlier one)
        page.goto(f"{server['url']}/lab/tree/{notebook.name}?reset&token={server['token']}")
        _wait_for_kernel(page, server, notebook.name)
        page.locator(f"{PANEL} .jp-Cell").first.click()
        _menu(page, "Edit", "Clear Outputs of All Cells")
        _menu(page, "Run", "Run All Cells")
        tic = time.monotonic()
        _wait_until_done(page, RUN_TIMEOUT)
        print(f"{notebook.name}: cells ran in {time.monotonic() - tic:.1f} s")
        saved = _save(page, copy)
        problems = _saved_problems(saved) + _rendered_problems(page, _widget_outputs(saved))
        if problems:
            page.screenshot(path=copy.with_suffix(".png"), full_page=True)
            problems.append(f"(the page: {copy.with_suffix('.png')})")
    finally:
        page.close()
        _shut_down_kernels(server)
    left = _leftovers(server["marker"], keep={server["proc"].pid})
    for p in left:
        p.kill()
    assert not problems, f"{notebook.name}:\n" + "\n".join(problems)
    assert not left, f"{notebook.name} left {len(left)} process(es) (now ended):\n{_describe(left)}"
