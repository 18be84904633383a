"""The GPU set-up resolves, and the install extras fit the machines users have (no GPU needed:
pip resolves the CUDA builds from PyPI without installing them)."""

import json
import subprocess
import sys
import urllib.request

import pytest
import tomllib

from conftest import ROOT

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
EXTRAS = PYPROJECT["project"]["optional-dependencies"]


def _pypi_reachable() -> bool:
    try:
        urllib.request.urlopen("https://pypi.org/simple/pip/", timeout=10).close()
        return True
    except OSError:
        return False


@pytest.mark.skipif(not _pypi_reachable(), reason="PyPI cannot be reached from here")
def test_gpu_requirements_resolve(tmp_path):
    """`make setup-gpu`'s extra, resolved against PyPI alone (--isolated: this machine's
    local CPU wheels are not consulted) for Python 3.11 on Linux x86-64."""
    report = tmp_path / "report.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--isolated",
            "--dry-run",
            "--quiet",
            "--ignore-installed",
            "--no-cache-dir",
            "--report",
            str(report),
            *EXTRAS["gpu"],
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = {
        item["metadata"]["name"].lower(): item["metadata"]["version"]
        for item in json.loads(report.read_text())["install"]
    }
    assert found["torch"] == "2.13.0"  # PyPI's CUDA build, not +cpu
    assert any(name.startswith("nvidia-cudnn") for name in found)
    assert found["tensorflow"] == "2.15.1" and found["nvidia-cudnn-cu12"].startswith("8.9")
    assert found["mxnet-cu112"] == "1.9.1" and "mxnet" not in found
    assert found["numpy"] == "1.23.5"


def test_extras_fit_python_3_12_and_numpy_2():
    """PyTorch alone installs on Python 3.10+ with numpy 2; MXNet and TensorFlow 2.15 are
    marked for Python below 3.12, and only MXNet's extra holds numpy below 1.24."""
    project = PYPROJECT["project"]
    assert project["requires-python"] == ">=3.10"
    numpy_pins = [d for d in project["dependencies"] if d.startswith("numpy")]
    assert numpy_pins == ["numpy>=1.23.5"]
    assert EXTRAS["torch"] == ["torch>=2.1"]
    assert all("python_version < '3.12'" in d for d in EXTRAS["mxnet"] + EXTRAS["tensorflow"])
    assert "numpy<1.24; python_version < '3.12'" in EXTRAS["mxnet"]
