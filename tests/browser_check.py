"""Open pages in a real browser (headless Chromium) and check what a reader sees.

    python tests/browser_check.py notebooks OUT [NAME.ipynb ...]
    python tests/browser_check.py site SITE_DIR OUT

`notebooks`: starts JupyterLab on 127.0.0.1 with a token, over copies of the notebooks in
OUT/work (the committed ones stay clean), opens each one, runs all cells (quick mode: the
notebook's first cell reads NIN_QUICK, which this sets), saves it, and checks that no cell
failed, that every plot cell shows an image, and that progress bars rendered as widgets;
one screenshot per notebook in OUT. `site`: serves SITE_DIR on 127.0.0.1 and checks that the
index page and a notebook page render (title, content, images). Prints one JSON line per
page; exits 1 if any check failed. Used by tests/test_browser.py; Chromium is Debian's
(/usr/bin/chromium, or $CHROMIUM), driven by Playwright.
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(url: str, seconds: float) -> None:
    import urllib.request

    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            urllib.request.urlopen(url, timeout=2)
            return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {seconds:.0f} s")


def _browser(playwright):
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)


def check_notebooks(out: Path, names: list[str], timeout: float = 900) -> list[dict]:
    import nbformat
    from playwright.sync_api import sync_playwright

    work = out / "work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    names = names or sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    for name in names:
        shutil.copy(ROOT / "notebooks" / name, work / name)
    port, token = _free_port(), secrets.token_hex(16)
    env = dict(os.environ, NIN_QUICK=os.environ.get("NIN_QUICK", "1"), PYTHONPATH=str(ROOT))
    lab = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=127.0.0.1",
            f"--port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={work}",
            "--LabApp.expose_app_in_browser=True",
            "--ServerApp.disable_check_xsrf=True",
            f"--LabApp.workspaces_dir={out / 'lab-workspaces'}",  # this check's own, not ~/.jupyter
            f"--LabApp.user_settings_dir={out / 'lab-settings'}",
            "--allow-root",
        ],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    results = []
    try:
        _wait_for(f"http://127.0.0.1:{port}/api/status?token={token}", 120)
        with sync_playwright() as p:
            browser = _browser(p)
            for name in names:
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                results.append(_run_notebook(page, port, token, work / name, out, timeout))
                page.close()
            browser.close()
    finally:
        lab.terminate()
        try:
            lab.wait(timeout=30)
        except subprocess.TimeoutExpired:
            lab.kill()
    for r in results:
        nb = nbformat.read(work / r["notebook"], as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        r["cells_run"] = sum(c.execution_count is not None for c in code)
        r["code_cells"] = len(code)
        r["errors"] = [
            o.get("ename", "") + ": " + o.get("evalue", "")
            for c in code
            for o in c.outputs
            if o.output_type == "error"
        ]
        plots = [c for c in code if "plot" in c.metadata.get("tags", [])]
        r["plot_cells"] = len(plots)
        r["plots_without_image"] = [
            c.source.splitlines()[0]
            for c in plots
            if not any("image/png" in o.get("data", {}) for o in c.outputs)
        ]
        r["widget_outputs"] = sum(
            "application/vnd.jupyter.widget-view+json" in o.get("data", {})
            for c in code
            for o in c.outputs
        )
        r["ok"] = (
            r["cells_run"] == r["code_cells"]
            and not r["errors"]
            and r["plot_cells"] > 0
            and not r["plots_without_image"]
            and r["images_on_page"] > 0
        )
    return results


_STATE = """() => {
  const panel = window.jupyterapp.shell.currentWidget;
  const cells = [...panel.content.model.cells];
  const code = cells.filter(c => c.type === 'code');
  const kernel = panel.sessionContext.session && panel.sessionContext.session.kernel;
  return {code: code.length, run: code.filter(c => c.executionCount).length,
          status: kernel ? kernel.status : 'none'};
}"""


def _run_notebook(page, port, token, path: Path, out: Path, timeout: float) -> dict:
    url = f"http://127.0.0.1:{port}/lab/tree/{path.name}?reset&token={token}"
    page.goto(url)
    page.wait_for_function(
        "window.jupyterapp && window.jupyterapp.shell.currentWidget"
        f" && window.jupyterapp.shell.currentWidget.context"
        f" && window.jupyterapp.shell.currentWidget.context.path === {json.dumps(path.name)}",
        timeout=120_000,
    )
    page.evaluate(  # the file loaded and the kernel started before anything runs
        """async () => {
          const panel = window.jupyterapp.shell.currentWidget;
          await panel.context.ready;
          await panel.sessionContext.ready;
        }"""
    )
    start = time.time()
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    idle_since = None
    while time.time() - start < timeout:  # the notebook's model, not the DOM (JupyterLab
        time.sleep(2)  # renders only the cells in view)
        state = page.evaluate(_STATE)
        if state["run"] == state["code"] and state["status"] == "idle":
            break
        if state["status"] == "idle":  # run-all stops at a failing cell: do not wait it out
            idle_since = idle_since or time.time()
            if time.time() - idle_since > 30:
                break
        else:
            idle_since = None
    seconds = time.time() - start
    page.evaluate("window.jupyterapp.commands.execute('docmanager:save')")
    time.sleep(2)
    images = page.evaluate("document.querySelectorAll('.jp-OutputArea-output img').length")
    widgets = page.evaluate(
        "document.querySelectorAll('.jp-OutputArea-output .widget-progress,"
        " .jp-OutputArea-output .jupyter-widgets').length"
    )
    shot = out / (path.stem + ".png")
    page.screenshot(path=str(shot), full_page=True)
    return {
        "page": "notebook",
        "notebook": path.name,
        "seconds": round(seconds, 1),
        "images_on_page": images,
        "widgets_on_page": widgets,
        "screenshot": str(shot),
    }


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def check_site(site: Path, out: Path) -> list[dict]:
    from playwright.sync_api import sync_playwright

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(_Quiet, directory=str(site))
    )
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}/"
    notebook = next(p for p in sorted(site.glob("notebooks/*/index.html")))
    pages = {"index": base, "notebook": base + str(notebook.parent.relative_to(site)) + "/"}
    results = []
    try:
        with sync_playwright() as p:
            browser = _browser(p)
            for kind, url in pages.items():
                page = browser.new_page(viewport={"width": 1280, "height": 1600})
                response = page.goto(url)
                text = page.inner_text("article") if page.query_selector("article") else ""
                shot = out / f"site-{kind}.png"
                page.screenshot(path=str(shot), full_page=True)
                results.append(
                    {
                        "page": f"site-{kind}",
                        "url": url,
                        "status": response.status,
                        "title": page.title(),
                        "words": len(text.split()),
                        "images": page.evaluate("document.querySelectorAll('article img').length"),
                        "screenshot": str(shot),
                    }
                )
                page.close()
            browser.close()
    finally:
        server.shutdown()
    for r in results:
        r["ok"] = (
            r["status"] == 200
            and r["words"] > 50
            and (r["page"] != "site-notebook" or r["images"] > 0)
        )
    return results


def main(argv: list[str]) -> int:
    kind, *rest = argv
    if kind == "notebooks":
        out = Path(rest[0])
        out.mkdir(parents=True, exist_ok=True)
        results = check_notebooks(out.resolve(), rest[1:])
    elif kind == "site":
        out = Path(rest[1])
        out.mkdir(parents=True, exist_ok=True)
        results = check_site(Path(rest[0]).resolve(), out.resolve())
    else:
        raise SystemExit(f"unknown check {kind!r}: notebooks or site")
    for r in results:
        print(json.dumps(r), flush=True)
    return 0 if results and all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
