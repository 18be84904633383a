"""The reader's view in a real browser (headless Chromium, driven by Playwright): each
notebook run in JupyterLab, and the docs site built strictly and opened. Screenshots are kept
in build/browser/ (one per notebook, two of the site)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
pytestmark = [
    pytest.mark.browser,  # `make test-browser`, apart from `make test` (minutes: JupyterLab, docs)
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason=f"no Chromium at {CHROMIUM}: .ci/run installs Debian's chromium package "
        f"(apt-get install chromium); set CHROMIUM to another build",
    ),
]
DRIVER = ROOT / "tests" / "browser_check.py"
SHOTS = ROOT / "build" / "browser"


def _env(synthetic_root):
    env = dict(os.environ, PYTHONPATH=str(ROOT), NIN_QUICK="1")
    env["NIN_DATA_DIR"] = os.environ.get("NIN_DATA_DIR") or str(synthetic_root)
    return env


def _results(done) -> list[dict]:
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    assert lines, done.stdout[-2000:] + done.stderr[-3000:]
    return [json.loads(line) for line in lines]


def test_every_notebook_runs_in_jupyterlab_in_a_browser(synthetic_root):
    done = subprocess.run(
        [sys.executable, str(DRIVER), "notebooks", str(SHOTS)],
        capture_output=True,
        text=True,
        env=_env(synthetic_root),
        cwd=ROOT,
        timeout=2400,
    )
    results = _results(done)
    assert [r["notebook"] for r in results] == sorted(
        p.name for p in ROOT.glob("notebooks/*.ipynb")
    )
    for r in results:
        assert r["errors"] == [] and r["cells_run"] == r["code_cells"], r
        assert r["plot_cells"] and r["plots_without_image"] == [] and r["images_on_page"], r
        assert Path(r["screenshot"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    trained = [r for r in results if r["notebook"].startswith("nin_")]
    # the training cells' progress bars are ipywidgets, rendered as widgets on the page
    assert all(r["widget_outputs"] and r["widgets_on_page"] for r in trained), trained
    assert done.returncode == 0, done.stderr[-3000:]


def test_the_docs_site_builds_strictly_and_renders(synthetic_root, tmp_path):
    env = _env(synthetic_root)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    subprocess.run(
        [sys.executable, "scripts/assemble_docs.py", "build/docs"], cwd=ROOT, check=True, env=env
    )
    site = tmp_path / "site"
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=2400,
    )
    assert build.returncode == 0, build.stderr[-4000:]
    api = (site / "api" / "spec" / "index.html").read_text()
    assert "walk" in api and "weight_table" in api  # the reference came from the docstrings
    done = subprocess.run(
        [sys.executable, str(DRIVER), "site", str(site), str(SHOTS)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=600,
    )
    results = _results(done)
    assert [r["page"] for r in results] == ["site-index", "site-notebook"]
    assert all(r["ok"] for r in results), results
