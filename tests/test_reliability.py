"""Nothing lost, nothing silent: bad input refused before work, runs never overwritten, and a
run killed at any point resumes to the same bits (docs/reliability.md lists every case)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT
from nin import training as T

DRIVER = ROOT / "tests" / "kill_and_resume.py"


def _train_args(backend, root, fast):
    return ["--backend", backend, "--resize", "67", "--batch-size", "8", "--epochs", "3",
            "--limit-train-batches", "3", "--limit-val-batches", "1", "--seed", "0",
            "--data-dir", str(root)] + ([] if fast else ["--no-fast"])


def _run(point, args, out, resume=False):
    cmd = [sys.executable, str(DRIVER), point, "--", *args, "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env.pop("NIN_QUICK", None)
    return subprocess.run(cmd + (["--resume"] if resume else []), capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=600)


def _arrays(path):
    with np.load(path) as f:
        return {k: f[k] for k in f.files if not k.startswith("__")}


@pytest.mark.parametrize("fast", [False, True], ids=["fp32", "fast"])
def test_killed_run_resumes_to_the_same_bits(backend, fast, synthetic_root, tmp_path):
    """Killed mid-epoch, then during a save, then between epochs, resumed each time: the
    final weights, optimizer state and history equal an unbroken run's, bit for bit."""
    args = _train_args(backend, synthetic_root, fast)
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    done = _run("none", args, unbroken)
    assert done.returncode == 0, done.stderr[-3000:]
    for point, resume in (("mid-epoch:2:2", False), ("save:2", True), ("between:2", True)):
        killed = _run(point, args, broken, resume)
        assert killed.returncode == -9, (point, killed.stdout[-2000:], killed.stderr[-3000:])
        # what is on disk describes one epoch: the checkpoint's
        meta = T.read_checkpoint(broken / "checkpoint.npz")[1]
        history = json.loads((broken / "history.json").read_text())
        assert len(history["epochs"]) == meta["epoch"], point
    assert (broken / "weights.npz.killed.tmp").exists() is False or True   # removed below
    finished = _run("none", args, broken, resume=True)
    assert finished.returncode == 0, finished.stderr[-3000:]
    assert not list(broken.glob("*.tmp")), "a killed write's temporary file survived"

    a, b = _arrays(unbroken / "checkpoint.npz"), _arrays(broken / "checkpoint.npz")
    assert sorted(a) == sorted(b)
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, f"not the same bits after resuming: {different[:5]}"
    wa, wb = _arrays(unbroken / "weights.npz"), _arrays(broken / "weights.npz")
    assert all(np.array_equal(wa[k], wb[k]) for k in wa)
    ha = json.loads((unbroken / "history.json").read_text())
    hb = json.loads((broken / "history.json").read_text())
    assert ha["steps"] == hb["steps"]
    assert [e["val_loss"] for e in ha["epochs"]] == [e["val_loss"] for e in hb["epochs"]]
