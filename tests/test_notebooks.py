"""Notebooks: committed clean, and each runs top to bottom in small-size mode (NIN_QUICK)."""

import os

import pytest

from conftest import ROOT

nbformat = pytest.importorskip("nbformat", reason="the notebook extra is not installed")
nbclient = pytest.importorskip("nbclient", reason="the notebook extra is not installed")

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_the_six_notebooks_exist():
    assert [p.name for p in NOTEBOOKS] == [
        "compare.ipynb",
        "exercises.ipynb",
        "nin_jax.ipynb",
        "nin_mxnet.ipynb",
        "nin_pytorch.ipynb",
        "nin_tensorflow.ipynb",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, (
                f"{path.name}: clear the outputs before committing"
            )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runs_top_to_bottom_and_plots(path, synthetic_root, monkeypatch, tmp_path):
    monkeypatch.setenv("NIN_QUICK", "1")
    monkeypatch.setenv("NIN_DATA_DIR", os.environ.get("NIN_DATA_DIR") or str(synthetic_root))
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()
    plots = [c for c in nb.cells if "plot" in c.metadata.get("tags", [])]
    assert plots, f"{path.name} has no plot cell"
    for cell in plots:
        kinds = {k for out in cell.outputs for k in out.get("data", {})}
        assert "image/png" in kinds, f"{path.name}: a plot cell drew nothing:\n{cell.source}"
    assert not list(tmp_path.glob("*.png"))  # plots are shown, not left on disk
