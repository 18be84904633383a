"""Time to accuracy's parts (issue 18): augmentation in the shared NumPy pipeline, a held-out
validation split, label smoothing in every backend, the sprint and quality recipes, and the
benchmark's curves. The chapter's path stays as it was: none of these is on by default."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, needs, synthetic_fashion
from nin.data import BatchSource, erase, flip_shift
from nin.experiment import RECORDS_DIR, plan_changes, plot_time_to_accuracy
from nin.recipes import PLANS, RECIPES, Plan, Recipe


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


def test_erase_fills_one_rectangle_of_about_half_the_images_and_is_seeded():
    images = np.full((400, 28, 28), 7, dtype=np.uint8)
    out = erase(images, np.random.default_rng(5))
    np.testing.assert_array_equal(out, erase(images, np.random.default_rng(5)))
    assert out.dtype == np.uint8 and (images == 7).all()  # a copy: the input is untouched
    touched = (out != 7).any(axis=(1, 2))
    assert 150 <= touched.sum() <= 250
    for changed in (out != 7)[touched]:  # inside one rectangle of 2-40% of the image
        rows, cols = np.flatnonzero(changed.any(1)), np.flatnonzero(changed.any(0))
        box = (rows[-1] - rows[0] + 1) * (cols[-1] - cols[0] + 1)
        assert box <= 0.4 * 28 * 28 + 28 and changed.sum() <= box


@pytest.mark.parametrize("augment", ["flip-shift", "flip-erase"])
def test_augmented_batches_are_the_same_for_the_same_epoch_and_not_for_the_next(augment):
    images = np.random.default_rng(1).integers(1, 255, size=(40, 28, 28), dtype=np.uint8)
    labels = np.arange(40)

    def epoch(e, augment=augment):
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
    with pytest.raises(ValueError, match="one of none, flip, flip-shift, flip-erase, got"):
        BatchSource(images, labels, 8, shuffle=True, augment="mixup")


def test_flip_augmentation_mirrors_about_half_the_images_and_moves_none():
    images = np.random.default_rng(2).integers(1, 255, size=(64, 28, 28), dtype=np.uint8)
    (out, _), *_ = BatchSource(images, np.arange(64), 64, shuffle=False, augment="flip")
    mirrored = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, images)]
    kept = [np.array_equal(o, i) for o, i in zip(out, images)]
    assert all(m != k for m, k in zip(mirrored, kept))  # each image whole: itself or its mirror
    assert 16 <= sum(mirrored) <= 48


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
    elif backend == "jax":  # the tab's loss(params, X, Y, state): the state's model is given
        import optax
        from jax import numpy as jnp

        state = B.TrainState.create(
            apply_fn=lambda variables, X, **kwargs: (X, {}),
            params={},
            tx=optax.identity(),
            batch_stats={},
            dropout_rng=B.get_key(),
        )
        got, _ = model.loss({}, (jnp.asarray(logits),), jnp.asarray(labels), state)
    else:
        import tensorflow as tf

        got = model.loss(tf.constant(logits), tf.constant(labels, tf.int32))
    assert float(got) == pytest.approx(_reference_loss(logits, labels, eps), rel=1e-5)


def test_flip_tta_sums_each_image_with_its_mirror_image():
    """A fake model that reads the two halves of an image unequally: for each test image,
    one of its two views alone is wrong and their summed probabilities are right."""
    from types import SimpleNamespace

    from nin.tta import tta_accuracy

    def predict(model, x):  # logits: 10 x the left half's mean, 5 x the right's, 4 x both
        left, right = x[:, :, :14].mean(axis=(1, 2)), x[:, :, 14:].mean(axis=(1, 2))
        return np.stack([10 * left, 5 * right, 4 * (left + right)], axis=1)

    images = np.zeros((3, 28, 28), np.uint8)
    images[0, :, 14:] = 128  # plain view: class 1; mirror: class 0
    images[1, :, :14] = 255  # plain view: class 0; mirror: class 1
    images[2, :, :14], images[2, :, 14:] = 77, 204  # plain view: class 2; mirror: class 0
    data = SimpleNamespace(
        test=(images, np.zeros(3, np.int64)),
        batch_size=2,  # two batches, the last one short
        convert_batch=lambda x, y: (x.astype(np.float32) / 255, y),
    )

    def accuracy(predict):
        fake = SimpleNamespace(predict=predict, to_numpy=np.asarray)
        return tta_accuracy(fake, None, data, "flip")

    assert accuracy(predict) == 1.0  # the summed probabilities say class 0 for all three
    assert accuracy(lambda m, x: predict(m, x[:, :, ::-1])) == 1.0  # the views' order: no matter
    one_view = np.mean([predict(None, images[i : i + 1] / 255).argmax() == 0 for i in range(3)])
    assert one_view == pytest.approx(1 / 3)  # the plain view alone is right on one image
    data.val = (images, np.ones(3, np.int64))  # the validation split, when asked for
    fake = SimpleNamespace(predict=predict, to_numpy=np.asarray)
    assert tta_accuracy(fake, None, data, "flip", split="val") == 0.0
    with pytest.raises(ValueError, match="split must be 'test' or 'val', got 'train'"):
        tta_accuracy(fake, None, data, "flip", split="train")
    with pytest.raises(
        TypeError, match=r"the backend module, `nin.backends.get_backend\('torch'\)`"
    ):
        tta_accuracy("torch", None, data, "flip")  # a name: the caller gets the module


def test_flip_shift_tta_scores_ten_views_of_each_image():
    from nin.tta import tta_views

    images = np.random.default_rng(0).integers(1, 255, size=(3, 28, 28), dtype=np.uint8)
    views = tta_views(images, "flip-shift")
    assert len(views) == 10 and all(v.shape == images.shape for v in views)
    np.testing.assert_array_equal(views[0], images)
    np.testing.assert_array_equal(views[1], images[:, :, ::-1])
    expected = [  # each of the two, moved one pixel up, down, left, right, 0 filling in
        np.pad(base, ((0, 0), (1, 1), (1, 1)))[:, 1 + dy : 29 + dy, 1 + dx : 29 + dx]
        for base in (images, images[:, :, ::-1])
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1))
    ]
    for got, want in zip(views[2:], expected):
        np.testing.assert_array_equal(got, want)
    assert (views[2][:, 0] == 0).all() and (views[3][:, -1] == 0).all()  # moved down / up
    assert len(tta_views(images, "none")) == 1 and len(tta_views(images, "flip")) == 2
    with pytest.raises(ValueError, match="unknown test-time augmentation 'rotate'; choose"):
        tta_views(images, "rotate")


@pytest.mark.parametrize("tta", ["flip", "flip-shift"])
def test_tta_scores_the_same_views_of_mirrored_test_images(backend, synthetic_root, tta):
    """In every backend (its layout, its predict): the views of a mirrored test split are
    the views of the test split, so each image's summed probabilities are the same; those
    of the plain view alone are not (the network is not left-right symmetric)."""
    from nin.backends import get_backend
    from nin.tta import TTA, tta_accuracy, tta_probabilities

    B = get_backend(backend)
    B.set_seed(0)
    data = B.FashionMNIST(batch_size=32, resize=(67, 67), root=synthetic_root)
    model = B.NiN(recipe="nin")
    B.predict(model, B.to_numpy(data.convert_batch(data.test[0][:2], data.test[1][:2])[0]))
    probs, labels = tta_probabilities(B, model, data, tta, limit_batches=2)
    views = 2 if tta == "flip" else 10
    assert probs.shape == (64, 10) and (labels == data.test[1][:64]).all()
    np.testing.assert_allclose(probs.sum(axis=1), views, rtol=1e-6)  # each view sums to 1
    plain, _ = tta_probabilities(B, model, data, "none", limit_batches=2)
    mirrored = (np.ascontiguousarray(data.test[0][:, :, ::-1]), data.test[1])
    data.test = mirrored
    again, _ = tta_probabilities(B, model, data, tta, limit_batches=2)
    plain_mirrored, _ = tta_probabilities(B, model, data, "none", limit_batches=2)
    np.testing.assert_allclose(again, probs, rtol=1e-5, atol=1e-7)
    assert np.abs(plain_mirrored - plain).max() > 1e3 * np.abs(again - probs).max() + 1e-6
    acc = tta_accuracy(B, model, data, tta)
    assert acc == float(
        (tta_probabilities(B, model, data, tta)[0].argmax(1) == data.test[1]).mean()
    )
    assert set(TTA) == {"none", "flip", "flip-shift"}


def test_the_time_to_accuracy_recipes_are_named_and_bounded():
    assert RECIPES["sprint"].label_smoothing == 0.1 and RECIPES["quality"].weight_decay > 0
    assert PLANS["quality"].augment == "flip" and PLANS["quality"].epochs == 10
    assert PLANS["quality"].tta == "flip" and PLANS["sprint"].tta == "none"
    assert PLANS["quality"].resize <= 96 and PLANS["sprint"].resize == 67
    short = PLANS["sprint-83k"]  # 45 s at the 1,852 images/s issue 18 measured
    assert (short.recipe, short.resize, short.augment, short.tta) == ("sprint", 67, "flip", "flip")
    assert short.epochs * short.limit_train_batches * short.batch_size == 83_200
    assert all(plan.recipe in RECIPES for plan in PLANS.values())
    assert RECIPES["book"].label_smoothing == 0.0 and RECIPES["nin"].label_smoothing == 0.0
    with pytest.raises(ValueError, match="label_smoothing must be a finite number >= 0 and < 1"):
        Recipe("x", label_smoothing=1.0)


@needs("torch")
def test_train_records_what_the_recipe_and_the_data_did(synthetic_root, tmp_path):
    cmd = [sys.executable, "-m", "nin", "train", "--backend", "torch", "--recipe", "sprint"]
    cmd += ["--augment", "flip-shift", "--val-split", "100", "--epochs", "1", "--resize", "67"]
    cmd += ["--batch-size", "16", "--limit-train-batches", "3", "--data-dir", str(synthetic_root)]
    cmd += ["--out", str(tmp_path / "run"), "--tta", "flip-shift"]
    env = dict(os.environ)
    env.pop("NIN_QUICK", None)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "augment flip-shift (the chapter's: none)" in done.stdout
    assert "validation on 100 held-out training images" in done.stdout
    config = json.loads((tmp_path / "run" / "history.json").read_text())["config"]
    assert "Validation accuracy (the 100 held-out training images)" in done.stdout
    assert config["augment"] == "flip-shift" and config["val_split"] == 100
    assert (config["seed"], config["batch_size"], config["input_size"]) == (0, 16, [67, 67])
    assert config["recipe"]["label_smoothing"] == 0.1 and config["recipe"]["name"] == "sprint"
    last = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"][-1]
    said = re.search(
        r"images\) with flip-shift test-time augmentation \(.*10 views\): (\S+)\n", done.stdout
    )
    assert said and float(said.group(1)) == pytest.approx(last["val_acc_tta"], abs=5e-5)
    assert last["tta"] == "flip-shift"
    # a resume writes history.json again from the checkpoint: the score stays
    env["NIN_DATA_DIR"] = str(synthetic_root)
    again = subprocess.run(
        cmd[:-2] + ["--resume"], capture_output=True, text=True, cwd=ROOT, env=env, timeout=300
    )
    assert again.returncode == 0 and "nothing left to train" in again.stdout, again.stderr[-2000:]
    kept = json.loads((tmp_path / "run" / "history.json").read_text())["epochs"][-1]
    assert kept["val_acc_tta"] == last["val_acc_tta"] and kept["tta"] == "flip-shift"
    refused = subprocess.run(
        cmd[:-4] + ["--tta", "flip", "--devices", "2"], capture_output=True, text=True, cwd=ROOT
    )
    assert refused.returncode != 0 and "a data-parallel run" in refused.stderr


@needs("torch")
def test_a_run_that_leaves_its_plan_says_so(synthetic_root, monkeypatch):
    """`--lr`, `--limit-train-batches`, `--augment` and `--tta` reach the run and its
    record, and the table marks a run that is not its recipe's plan; a run of the plan is
    not marked."""
    from benchmarks import time_to_accuracy as tta

    common = dict(root=synthetic_root, epochs=1, resize=67, batch_size=100)
    full = tta.run_one("torch", "sprint", 0, 0.9, **common)
    assert full["batches_per_epoch"] == 6 and full["lr"] == RECIPES["sprint"].lr
    variant = dict(lr=5e-3, limit_train_batches=2, augment="flip", tta="flip")
    tried = tta.run_one("torch", "sprint", 0, 0.9, **variant, **common)
    assert tried["batches_per_epoch"] == 2 and tried["lr"] == 5e-3
    assert tried["augment"] == "flip" and tried["tta"] == "flip"
    assert full["augment"] == "none" and full["tta"] == "none"  # the plan's
    assert plan_changes(tried) == [
        "epochs 1",
        "batch_size 100",
        "lr 0.005",
        "2 batches an epoch",
        "augment flip",
        "tta flip",
    ]
    plan = PLANS["sprint"]
    as_planned = dict(full, epochs=plan.epochs, batch_size=plan.batch_size, resize=plan.resize)
    assert plan_changes(as_planned) == []
    # a plan of its own recipe at its own lr, with a batch limit: a run that trains whole
    # epochs instead (6 batches of 100 images, under the plan's 650) is not the plan
    short = tta.run_one("torch", "sprint-83k", 0, 0.9, **common)
    assert (short["recipe"], short["lr"], short["label_smoothing"]) == ("sprint-83k", 3e-3, 0.1)
    assert (short["augment"], short["tta"], short["limit_train_batches"]) == ("flip", "flip", 650)
    assert plan_changes(short) == ["epochs 1", "batch_size 100", "whole epochs"]
    assert plan_changes(dict(short, epochs=2, batch_size=64, batches_per_epoch=650)) == []
    # 0 asks for whole epochs where the plan has a limit; None keeps the plan's
    tiny = Plan("sprint", None, epochs=1, resize=67, batch_size=100, limit_train_batches=2)
    monkeypatch.setitem(PLANS, "tiny", tiny)
    whole = tta.run_one("torch", "tiny", 0, 0.9, root=synthetic_root, limit_train_batches=0)
    assert (whole["batches_per_epoch"], whole["limit_train_batches"]) == (6, None)
    assert plan_changes(whole) == ["whole epochs"]
    planned = tta.run_one("torch", "tiny", 0, 0.9, root=synthetic_root)
    assert (planned["batches_per_epoch"], planned["limit_train_batches"]) == (2, 2)
    table = tta.summary([tried, short], None)
    assert "torch      sprint-83k" in table  # the recipe column fits the longest name
    assert (
        "(not the plan: epochs 1, batch_size 100, lr 0.005, 2 batches an epoch, augment flip, "
        "tta flip) (flip TTA; without it: " in table
    )


def _counted_over(accuracy: float, images: int) -> bool:
    """Whether `accuracy` is a count of right answers over `images`. With a prime number of
    test images, any subset of them, another split (600 training images) or a mean of batch
    means (batches of 8) gives a value between two such counts, except 0 and 1."""
    return 0 <= accuracy <= 1 and abs(accuracy * images - round(accuracy * images)) < 1e-6


def test_the_benchmark_draws_accuracy_against_seconds(tmp_path, capsys):
    from benchmarks import time_to_accuracy as tta

    root = synthetic_fashion(tmp_path / "fashion", n_test=101)  # a prime: see _counted_over
    png = tmp_path / "curves.png"
    tta.main(
        ["--backend", "torch", "--recipe", "sprint,quality", "--compare", "none"]
        + ["--epochs", "2", "--resize", "67"]
        + ["--batch-size", "8", "--limit-train-batches", "2", "--no-peak", "--json"]
        + ["--data-dir", str(root), "--plot", str(png)]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [r["recipe"] for r in records] == ["sprint", "quality"]
    for r in records:
        assert len(r["curve"]) == 2  # one test evaluation per epoch, off the clock
        (t1, a1), (t2, a2) = r["curve"]
        assert 0 < t1 < t2 <= r["train_seconds"] + 1e-6
        assert r["test_images"] == 101 and _counted_over(a1, 101), a1  # the whole test split
        assert _counted_over(r["test_acc"], 101), r["test_acc"]
        assert a2 == pytest.approx(r["test_acc"])  # the last point is the final evaluation
    assert records[1]["augment"] == "flip" and records[0]["label_smoothing"] == 0.1
    assert records[0]["tta"] == "none" and records[0]["test_acc"] == records[0]["test_acc_plain"]
    assert records[1]["tta"] == "flip" and _counted_over(records[1]["test_acc_plain"], 101)
    assert all(r["eval_seconds"] > 0 for r in records)
    assert png.stat().st_size > 10_000


def test_the_picture_draws_each_recipe_as_its_plan_runs_now():
    """Per backend and recipe, the first record with a curve that runs the plan as it is
    now; a record of an older plan only where there is none, labelled with what differs."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plan = PLANS["quality"]
    now = dict(backend="torch", recipe="quality", target=0.9, augment=plan.augment, tta=plan.tta)
    older = dict(now, augment="flip-shift", tta="none", curve=[[10.0, 0.80], [20.0, 0.90]])
    records = [
        older,
        dict(now, curve=[]),  # no curve: nothing to draw
        dict(now, curve=[[15.0, 0.85], [30.0, 0.93]]),
        dict(now, curve=[[15.0, 0.70], [30.0, 0.75]]),  # a later seed of the plan
        dict(older, backend="tensorflow"),
        dict(older, backend="tensorflow", curve=[[12.0, 0.20], [24.0, 0.30]]),
    ]
    fig = plot_time_to_accuracy(records)
    drawn = {line.get_label(): list(line.get_ydata()) for line in fig.axes[0].lines}
    plt.close(fig)
    assert drawn.pop("torch quality") == [0.85, 0.93]
    assert drawn.pop("tensorflow quality (augment flip-shift, tta none)") == [0.80, 0.90]
    assert all(label.startswith("_") for label in drawn)  # only the target lines are left
    assert fig.axes[0].get_ylim()[0] == pytest.approx(0.5)  # from the drawn curves only


@needs("torch")
def test_the_benchmark_compares_under_a_cap_and_says_so(synthetic_root, capsys):
    """After the timed recipes, each --compare recipe not among them runs once on the same
    backend, capped at --compare-cap times the first recipe's median; --lr and --augment
    reach only the timed runs; the cap is recorded and shown; bad flags are refused before
    any run."""
    from benchmarks import time_to_accuracy as tta

    tiny = ["--epochs", "1", "--resize", "67", "--batch-size", "8", "--limit-train-batches"]
    tiny += ["3", "--data-dir", str(synthetic_root), "--no-peak", "--json", "--lr", "5e-3"]
    tiny += ["--augment", "flip-shift"]
    tta.main(["--recipe", "sprint,quality", "--seeds", "2", "--compare", "nin,sprint", *tiny])
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert [(r["recipe"], r["seed"], r["role"]) for r in records] == [
        ("sprint", 0, "timed"),
        ("sprint", 1, "timed"),
        ("quality", 0, "timed"),
        ("quality", 1, "timed"),
        ("nin", 0, "compared"),
    ]
    *timed, nin = records
    assert all(r["lr"] == 5e-3 and r["cap_seconds"] is None for r in timed)
    assert all(r["augment"] == "flip-shift" for r in timed)
    assert nin["lr"] == RECIPES["nin"].lr and nin["augment"] == "none"  # its plan's
    sprint_median = np.median([r["train_seconds"] for r in timed[:2]])
    assert nin["cap_seconds"] == pytest.approx(2 * sprint_median)
    assert tta.comparison_cap([1.0, 3.0, 10.0], 2) == 6.0
    assert tta.comparison_cap([1.0, 3.0, 10.0], 2, cap_seconds=4.0) == 4.0
    hit = dict(nin, capped=True, cap_seconds=0.2)
    assert "(compared; training capped at 0 s, hit)" in tta.summary([hit], None)
    for bad, says in (
        (["--compare", "nope"], "unknown recipe(s) ['nope']"),
        (["--seeds", "0"], "--seeds must be at least 1"),
        (["--limit-train-batches", "-1"], "--limit-train-batches must be 0 (whole epochs)"),
        (["--lr", "0"], "--lr must be a positive number, got 0.0"),
        (["--compare-cap", "0"], "--compare-cap must be a positive number"),
    ):
        with pytest.raises(SystemExit, match=re.escape(says)):
            tta.main([*tiny, *bad])
    with pytest.raises(SystemExit) as usage:  # argparse: exit status 2, the choices named
        tta.main([*tiny, "--tta", "mirror"])
    assert usage.value.code == 2 and "invalid choice: 'mirror'" in capsys.readouterr().err


RECORD_FILES = sorted(RECORDS_DIR.glob("*.jsonl"))
_NONE = type(None)
# what every time-to-accuracy record holds, older ones included (the table, the plot and
# plan_changes read these), and the fields newer records added, checked where present
RECORD_FIELDS = {
    "backend": str, "recipe": str, "seed": int, "target": float, "test_acc": float,
    "test_images": int, "reached": bool, "capped": bool, "train_seconds": float,
    "setup_seconds": float, "process_seconds": float, "images_per_s": float, "epochs": int,
    "resize": int, "batch_size": int, "lr": float, "label_smoothing": float, "augment": str,
    "curve": list, "peak_gflops": (dict, _NONE),
}  # fmt: skip
NEWER_FIELDS = {
    "tta": str, "test_acc_plain": float, "role": str, "cap_seconds": (float, _NONE),
    "eval_seconds": float, "batches_per_epoch": int, "limit_train_batches": (int, _NONE),
    "device": str, "omp_threads": (int, _NONE),
}  # fmt: skip
# what `--records` marks in the files stored until this test was written: the tried
# 83,200-image sprint, and the four quality runs made before its plan became flip training
# with flip TTA (two without TTA, two with flip-shift TTA); every other file then, none
MARKED_UNTIL = "2026-11-30"
MARKED = {
    "tried-sprint-83k-2026-11-29.jsonl": "batch_size 64, lr 0.003, 650 batches an epoch",
    "time_to_accuracy-2026-11-29.jsonl": "augment flip-shift, tta none",
    "time_to_accuracy-2026-11-29-tf-quality.jsonl": "augment flip-shift, tta none",
    "time_to_accuracy-2026-11-29-quality-tta.jsonl": "augment flip-shift, tta flip-shift",
    "time_to_accuracy-2026-11-29-mxnet-quality-tta.jsonl": "augment flip-shift, tta flip-shift",
}


def _problems(record: dict) -> list[str]:
    """What is wrong with one stored record: a missing field, a wrong type, or a value the
    benchmark cannot have written."""
    problems = [f"no {name!r}" for name in RECORD_FIELDS if name not in record]
    for name, kind in {**RECORD_FIELDS, **NEWER_FIELDS}.items():
        kinds = kind if isinstance(kind, tuple) else (kind,)
        value = record.get(name)
        if name in record and not (
            type(value) in kinds or (float in kinds and type(value) is int)  # 1 for 1.0
        ):
            problems.append(f"{name}={value!r} is not {' or '.join(k.__name__ for k in kinds)}")
    if problems:
        return problems
    images, acc = record["test_images"], record["test_acc"]
    counted = [acc, record.get("test_acc_plain", 0.0)] + [a for _, a in record["curve"]]
    checks = {
        "backend is one of nin's": record["backend"] in ("torch", "mxnet", "tensorflow"),
        "recipe names a plan": record["recipe"] in PLANS,
        "accuracies are counts over test_images": all(
            0 <= a <= 1 and abs(a * images - round(a * images)) < 1e-6 for a in counted
        ),
        "reached is test_acc >= target": record["reached"] == (acc >= record["target"]),
        "times and speed are positive": min(record["train_seconds"], record["images_per_s"]) > 0,
        "the curve's points are [seconds, accuracy], in time order, ending at test_acc": all(
            len(point) == 2 for point in record["curve"]
        )
        and [t for t, _ in record["curve"]] == sorted(t for t, _ in record["curve"])
        and (not record["curve"] or record["curve"][-1][1] == acc),
        "a TTA record keeps its plain accuracy": record.get("tta", "none") == "none"
        or "test_acc_plain" in record,
        "a compared run records its cap": record.get("role") != "compared"
        or record.get("cap_seconds") is not None,
    }
    return [claim for claim, holds in checks.items() if not holds]


@pytest.mark.parametrize("path", RECORD_FILES, ids=[p.name for p in RECORD_FILES])
def test_each_stored_record_is_well_formed(path):
    """Every line of every stored .jsonl file is a record the benchmark could have written
    (a new file or record is checked the same way: nothing here counts them)."""
    lines = path.read_text().splitlines()
    assert lines, f"{path.name} is empty"
    for number, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise AssertionError(f"{path.name}:{number} is not JSON: {err}") from None
        assert isinstance(record, dict), f"{path.name}:{number} is not a record"
        assert not _problems(record), f"{path.name}:{number}: {_problems(record)}"


def test_a_malformed_record_is_found():
    """The check above fails on what a broken or hand-edited record would hold."""
    good = json.loads(RECORD_FILES[0].read_text().splitlines()[0])
    assert _problems(good) == []
    missing = {k: v for k, v in good.items() if k != "test_acc"}
    assert _problems(missing) == ["no 'test_acc'"]
    assert _problems(dict(good, seed="0")) == ["seed='0' is not int"]
    assert _problems(dict(good, reached=not good["reached"])) == ["reached is test_acc >= target"]
    assert "accuracies are counts over test_images" in _problems(dict(good, test_acc=93.5))
    assert "recipe names a plan" in _problems(dict(good, recipe="quick"))


def test_the_stored_records_still_print(capsys):
    """`--records` reads every stored run, the older ones without the newer fields, and
    marks only the runs that left their plan: for the files stored until MARKED_UNTIL, the
    marks they had; for any file, the mark plan_changes gives its first record, or none."""
    from benchmarks import time_to_accuracy as tta
    from nin.experiment import load_records, plan_changes

    assert len(RECORD_FILES) >= 5 and set(MARKED) <= {p.name for p in RECORD_FILES}
    assert tta.main(["--records", ",".join(map(str, RECORD_FILES))]) == 0
    out = capsys.readouterr().out
    tables = re.split(r"^(\S+\.jsonl):$", out, flags=re.M)[1:]
    printed = dict(zip([Path(name).name for name in tables[::2]], tables[1::2]))
    assert list(printed) == [p.name for p in RECORD_FILES]
    for path in RECORD_FILES:
        marks = re.findall(r"\(not the plan: ([^)]*)\)", printed[path.name])
        groups: dict = {}
        for r in load_records([path]):
            groups.setdefault((r["backend"], r["recipe"]), r)
        assert marks == [", ".join(plan_changes(r)) for r in groups.values() if plan_changes(r)]
        dated = re.search(r"\d{4}-\d{2}-\d{2}", path.name)
        if dated and dated.group() <= MARKED_UNTIL:
            assert marks == ([MARKED[path.name]] if path.name in MARKED else []), path.name
    assert "torch      sprint" in out and "mxnet      sprint" in out


def test_a_time_limit_leaves_out_what_is_off_the_clock():
    """The benchmark's cap counts training only: time that `off_clock` reports (evaluations
    between epochs) does not use it up."""
    from nin.callbacks import TimeLimit

    class Run:
        stop_training = False

    run, off = Run(), [0.0]
    limit = TimeLimit(0.05, off_clock=lambda: off[0])
    limit.on_fit_start(run)
    limit.on_epoch_start(run)
    time.sleep(0.1)
    off[0] = 0.1  # all of it was off the clock
    limit.on_batch_end(run)
    assert not run.stop_training and not limit.stopped
    off[0] = 0.0
    limit.on_batch_end(run)
    assert run.stop_training and limit.stopped
