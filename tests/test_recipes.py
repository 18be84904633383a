"""Time to accuracy's parts (issue 18): augmentation in the shared NumPy pipeline, a held-out
validation split, label smoothing in every backend, the sprint and quality recipes, and the
benchmark's curves. The chapter's path stays as it was: none of these is on by default."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, needs
from nin.data import BatchSource, flip_shift
from nin.training import PLANS, RECIPES, Recipe


def test_flip_shift_moves_each_image_whole_and_is_seeded():
    rng = np.random.default_rng(0)
    images = rng.integers(1, 255, size=(16, 28, 28), dtype=np.uint8)
    out = flip_shift(images, np.random.default_rng(5))
    again = flip_shift(images, np.random.default_rng(5))
    np.testing.assert_array_equal(out, again)
    assert out.dtype == np.uint8 and out.shape == images.shape
    assert not np.array_equal(out, images)
    for i in range(16):  # some flip and shift of the image itself, edges filled with 0
        candidates = [
            np.pad(images[i][:, ::-1] if flip else images[i], 2)[dy : dy + 28, dx : dx + 28]
            for flip in (False, True)
            for dy in range(5)
            for dx in range(5)
        ]
        assert any(np.array_equal(out[i], c) for c in candidates), i


def test_augmented_batches_are_the_same_for_the_same_epoch_and_not_for_the_next():
    images = np.random.default_rng(1).integers(1, 255, size=(40, 28, 28), dtype=np.uint8)
    labels = np.arange(40)

    def epoch(e, augment="flip-shift"):
        source = BatchSource(images, labels, 8, shuffle=True, seed=3, augment=augment)
        source.epoch = e
        return list(source)

    first, resumed, second = epoch(0), epoch(0), epoch(1)
    plain = epoch(0, "none")
    for (x, y), (x2, y2), (xp, yp) in zip(first, resumed, plain):
        np.testing.assert_array_equal(x, x2)  # a resumed epoch draws what an unbroken one did
        np.testing.assert_array_equal(y, yp)  # the labels and the order are untouched
        assert not np.array_equal(x, xp)
    assert any(not np.array_equal(a[0], b[0]) for a, b in zip(first, second))
    with pytest.raises(ValueError, match="augment must be one of none, flip-shift"):
        BatchSource(images, labels, 8, shuffle=True, augment="mixup")


def test_only_training_batches_are_augmented_and_the_held_out_split_is_never_trained_on(
    synthetic_root,
):
    from nin.backends import torch as B

    plain = B.FashionMNIST(batch_size=50, root=synthetic_root)
    assert plain.val is plain.test and plain.val_split == 0  # the chapter's: the test split
    data = B.FashionMNIST(batch_size=50, root=synthetic_root, augment="flip-shift", val_split=100)
    assert len(data.train[1]) == 500 and len(data.val[1]) == 100 and len(data.test[1]) == 100
    train = {x.tobytes() for x in data.train[0]}
    assert not any(x.tobytes() in train for x in data.val[0])  # disjoint
    assert data.batches(False).augment == "none" and data.batches(True).augment == "flip-shift"
    test = np.concatenate([data.to_numpy(X) for X, _ in data.test_dataloader()])
    np.testing.assert_allclose(test, plain.test[0] / 255.0, atol=1e-6)
    with pytest.raises(ValueError, match="val_split must be >= 0 and below the 600"):
        B.FashionMNIST(root=synthetic_root, val_split=600)


def _reference_loss(logits, labels, eps):
    top = logits.max(1, keepdims=True)
    logp = logits - top - np.log(np.exp(logits - top).sum(1, keepdims=True))
    nll = -logp[np.arange(len(labels)), labels]
    return float(np.mean((1 - eps) * nll - eps * logp.mean(1)))


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_label_smoothing_is_the_same_loss_in_every_backend(backend, eps):
    from nin.backends import get_backend

    B = get_backend(backend)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(6, 10)).astype(np.float32) * 3
    labels = rng.integers(0, 10, 6)
    model = B.NiN(recipe="nin", label_smoothing=eps)
    assert model.recipe.label_smoothing == eps
    if backend == "torch":
        import torch

        got = model.loss(torch.from_numpy(logits), torch.from_numpy(labels))
    elif backend == "mxnet":
        from mxnet import np as mnp

        got = model.loss(mnp.array(logits), mnp.array(labels))
    else:
        import tensorflow as tf

        got = model.loss(tf.constant(logits), tf.constant(labels, tf.int32))
    assert float(got) == pytest.approx(_reference_loss(logits, labels, eps), rel=1e-5)


def test_the_time_to_accuracy_recipes_are_named_and_bounded():
    assert RECIPES["sprint"].label_smoothing == 0.1 and RECIPES["quality"].weight_decay > 0
    assert PLANS["quality"].augment == "flip-shift" and PLANS["quality"].epochs == 10
    assert PLANS["quality"].resize <= 96 and PLANS["sprint"].resize == 67
    assert RECIPES["book"].label_smoothing == 0.0 and RECIPES["nin"].label_smoothing == 0.0
    with pytest.raises(ValueError, match="label_smoothing must be a finite number >= 0 and < 1"):
        Recipe("x", label_smoothing=1.0)


@needs("torch")
def test_train_records_what_the_recipe_and_the_data_did(synthetic_root, tmp_path):
    cmd = [sys.executable, "-m", "nin", "train", "--backend", "torch", "--recipe", "sprint"]
    cmd += ["--augment", "flip-shift", "--val-split", "100", "--epochs", "1", "--resize", "67"]
    cmd += ["--batch-size", "16", "--limit-train-batches", "3", "--data-dir", str(synthetic_root)]
    cmd += ["--out", str(tmp_path / "run")]
    env = dict(os.environ)
    env.pop("NIN_QUICK", None)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "augment flip-shift (the chapter's: none)" in done.stdout
    assert "validation on 100 held-out training images" in done.stdout
    config = json.loads((tmp_path / "run" / "history.json").read_text())["config"]
    assert "Validation accuracy (the 100 held-out training images)" in done.stdout
    assert config["augment"] == "flip-shift" and config["val_split"] == 100
    assert config["recipe"]["label_smoothing"] == 0.1 and config["recipe"]["name"] == "sprint"


def test_the_benchmark_draws_accuracy_against_seconds(synthetic_root, tmp_path, capsys):
    from benchmarks import time_to_accuracy as tta

    png = tmp_path / "curves.png"
    tta.main(
        ["--backend", "torch", "--recipe", "sprint,quality", "--epochs", "2", "--resize", "67"]
        + ["--batch-size", "8", "--limit-train-batches", "2", "--no-peak", "--json"]
        + ["--data-dir", str(synthetic_root), "--plot", str(png)]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["recipe"] for r in records] == ["sprint", "quality"]
    for r in records:
        assert len(r["curve"]) == 2  # one test evaluation per epoch, off the clock
        (t1, a1), (t2, a2) = r["curve"]
        assert 0 < t1 < t2 <= r["train_seconds"] + 1e-6 and 0 <= a1 <= 1
        assert a2 == pytest.approx(r["test_acc"])  # the last point is the final evaluation
    assert records[1]["augment"] == "flip-shift" and records[0]["label_smoothing"] == 0.1
    assert png.stat().st_size > 10_000
