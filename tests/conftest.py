"""Shared fixtures. NIN_TEST_BACKENDS picks the backends to test (default: every registered
one, nin.backends.BACKENDS)."""

import os
import sys
from pathlib import Path

import numpy as np
import pytest

from nin.backends import BACKENDS as REGISTERED
from nin.data import FILES, write_idx

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "tests" / "golden"
CHAPTER = ROOT.parent / "shared" / "chapter" / "nin.md"


def chapter_path() -> Path:
    """The d2l chapter the tests run, in the shared/ folder beside the checkout (CI always
    has it). Missing, it fails the test rather than skipping it: these tests are the proof
    that nin runs the chapter's own cells and builds the chapter's model."""
    if not CHAPTER.is_file():
        pytest.fail(
            f"the chapter is not at {CHAPTER}: copy d2l-en's "
            f"chapter_convolutional-modern/nin.md (https://github.com/d2l-ai/d2l-en) there, "
            f"into the shared/ folder beside the checkout, as CI lays it out",
            pytrace=False,
        )
    return CHAPTER


def pytest_addoption(parser):
    parser.addoption(
        "--overwrite",
        action="store_true",
        help="write this run's output over the golden files in tests/golden/ "
        "(then review the diff before committing it)",
    )


@pytest.fixture
def golden(request):
    """`golden(name, text)`: `text` must equal tests/golden/<name>.out; with --overwrite, the
    file is written from `text` instead."""

    def check(name: str, text: str) -> None:
        path = GOLDEN / f"{name}.out"
        if request.config.getoption("--overwrite"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"no golden file {path}: run `pytest --overwrite` and review it"
        expected = path.read_text()
        if text != expected:
            import difflib

            diff = "".join(
                difflib.unified_diff(
                    expected.splitlines(True),
                    text.splitlines(True),
                    f"{path.name} (golden)",
                    "this run",
                )
            )
            raise AssertionError(
                f"output differs from {path}:\n{diff}\nIf the change is "
                f"meant, run `pytest --overwrite` and review the diff."
            )

    return check


BACKENDS = [b for b in os.environ.get("NIN_TEST_BACKENDS", ",".join(REGISTERED)).split(",") if b]

# the chapter (shared/ beside the checkout, as CI lays it out): the three tabs of the edition
# nin follows, and the English 1.0.3 edition, the first with the JAX tab (when present)
CHAPTER_EN = ROOT.parent / "shared" / "chapter" / "nin-en-1.0.3.md"


def chapter_with_tab(tab: str) -> Path:
    """The chapter file that has `tab`: the shared chapter, or for a tab it lacks (JAX) the
    English 1.0.3 edition, the test skipped naming that file when it is absent."""
    from nin.chapter import cells

    if cells(chapter_path().read_text(encoding="utf-8"), tab):
        return CHAPTER
    if not CHAPTER_EN.exists():
        pytest.skip(
            f"the {tab} tab is in the English 1.0.3 edition of the chapter, not at "
            f"{CHAPTER_EN}: put d2l-ai/d2l-en's chapter_convolutional-modern/nin.md of the "
            f"v1.0.3 tag there"
        )
    return CHAPTER_EN


def synthetic_fashion(folder: Path, n_train=600, n_test=100, seed=0) -> Path:
    """Small learnable IDX files: each class is a bright 14 x 5 patch at its own place, on
    noise; easy enough that a few steps lower the loss."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        labels = np.arange(n) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(n, 28, 28))
        for i, c in enumerate(labels):
            top, left = 14 * (c // 5), 5 * (c % 5) + 1
            images[i, top : top + 14, left : left + 5] = 230
        write_idx(folder / FILES[split][0], images.astype(np.uint8))
        write_idx(folder / FILES[split][1], labels.astype(np.uint8))
    return folder


def _classic_tabs() -> tuple:
    from nin.backends import CLASSIC_TABS

    return CLASSIC_TABS


# the backends with the classic editions' API (train_ch6 ...): the classic tests' backends
CLASSIC_BACKENDS = [b for b in BACKENDS if b in _classic_tabs()]


def needs(*backends):
    """Skip a test that names a backend NIN_TEST_BACKENDS leaves out (the numpy 2 job tests
    PyTorch alone; `make test` runs every one)."""
    missing = [b for b in backends if b not in BACKENDS]
    return pytest.mark.skipif(
        bool(missing), reason=f"NIN_TEST_BACKENDS leaves out {', '.join(missing)} in this job"
    )


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    return synthetic_fashion(tmp_path_factory.mktemp("fashion"))


@pytest.fixture(params=BACKENDS)
def backend(request):
    """Each test case runs with one backend."""
    return request.param


def scale_loss(model, factor) -> None:
    """Replace `model.training_step` by one whose loss is multiplied by `factor()` (called
    once a step), in the tab's own signature: `(batch) -> loss`, or JAX's `(params, batch,
    state) -> ((loss, aux), grads)`."""
    import inspect

    step = model.training_step
    if "params" in inspect.signature(step).parameters:

        def scaled(params, batch, state):
            (loss, aux), grads = step(params, batch, state)
            return (loss * factor(), aux), grads

    else:

        def scaled(batch):
            return step(batch) * factor()

    model.training_step = scaled


def run_python(code: str, env_extra=None, cwd=ROOT):
    import subprocess

    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=cwd, env=env, timeout=600
    )


def real_d2l(backend: str):
    """The real d2l 1.0.3 package's module for `backend` ('torch', 'mxnet', 'tensorflow').

    For 'torch' a STAND-IN for torchvision goes into sys.modules first, when torchvision is
    not installed: d2l 1.0.3's torch module imports torchvision (and its `transforms`) at the
    top, and no torchvision build installs beside the CPU torch 2.13.0 pinned here. d2l uses
    it only in its data sets and image helpers, which the tests never call; the model, Module,
    Classifier and Trainer do not touch it. `make test` installs d2l with pip --no-deps."""
    import importlib
    import types

    if backend == "torch":
        try:
            importlib.import_module("torchvision")
        except ImportError:
            stand_in = types.ModuleType("torchvision")
            stand_in.transforms = types.ModuleType("torchvision.transforms")
            sys.modules.setdefault("torchvision", stand_in)
            sys.modules.setdefault("torchvision.transforms", stand_in.transforms)
    try:
        package = importlib.import_module("d2l")
    except ImportError as err:  # a failure, not a skip: the parity tests are the point
        raise ImportError(
            "the tests need the real d2l 1.0.3: run `make test`, or `pip install "
            "--no-deps d2l==1.0.3` and `pip install -e .[test]`"
        ) from err
    assert package.__version__ == "1.0.3" and hasattr(package, "__file__"), package
    return importlib.import_module(f"d2l.{backend}")
