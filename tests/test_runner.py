"""The one run factory (nin.runner): every setting reaches the data, the model or the Trainer."""

from dataclasses import fields, replace

import numpy as np
import pytest

from nin import spec as S
from nin.callbacks import Callback
from nin.recipes import resolve_recipe
from nin.runner import RunSettings, build_run


def test_build_run_passes_every_setting_through(synthetic_root, tmp_path):
    from nin.backends import get_backend

    B = get_backend("torch")
    recipe = resolve_recipe("sprint", lr=3e-3)
    spec = S.with_class_block_relu(S.chapter_spec(10), "hidden")
    settings = RunSettings(
        recipe=recipe,
        spec=spec,
        epochs=3,
        batch_size=16,
        resize=67,
        seed=5,
        augment="flip",
        val_split=100,
        root=synthetic_root,
        limit_train_batches=4,
        limit_val_batches=2,
        fast=True,
        num_gpus=0,
        progress=False,
        out_dir=tmp_path / "run",
        resume=False,
        overwrite=True,
        stuck_check=7,
        on_stuck="stop",
    )  # every field away from its default, so that a dropped one shows
    defaults = RunSettings()
    assert all(getattr(settings, f.name) != getattr(defaults, f.name) for f in fields(settings)
               if f.name != "resume")  # fmt: skip
    mine = Callback()
    run = build_run(B, settings, callbacks=[mine], gradient_clip_val=1.0)
    data, model, trainer = run.data, run.model, run.trainer
    assert (data.batch_size, data.resize, data.seed) == (16, (67, 67), 5)
    assert (data.augment, data.val_split, len(data.val[1])) == ("flip", 100, 100)
    assert data.root == synthetic_root
    assert model.spec == spec and model.lr == 3e-3  # the spec says its class block:
    assert model.recipe == replace(recipe, class_block_relu="hidden")
    assert (trainer.max_epochs, trainer.num_gpus, trainer.fast, trainer.progress) == (
        3, 0, True, False
    )  # fmt: skip
    assert (trainer.limit_train_batches, trainer.limit_val_batches) == (4, 2)
    assert (trainer.stuck_check, trainer.on_stuck) == (7, "stop")
    assert trainer.out_dir == tmp_path / "run" and trainer.overwrite and not trainer.resume
    assert trainer.callbacks[-1] is mine and trainer.gradient_clip_val == 1.0  # the extras
    resumed = build_run(B, replace(settings, resume=True, overwrite=False)).trainer
    assert resumed.resume and not resumed.overwrite

    def weights(run):
        return B.parameter_arrays(run.model.net)

    same, other = build_run(B, settings), build_run(B, replace(settings, seed=6))
    assert all(np.array_equal(a, b) for a, b in zip(weights(run), weights(same)))  # seeded
    assert not all(np.array_equal(a, b) for a, b in zip(weights(run), weights(other)))

    fitted = []
    trainer.fit = lambda model, data: fitted.append((model, data)) or "history"
    assert run.fit() == "history" and fitted == [(model, data)]  # nothing trained here


def test_build_run_refuses_a_name_and_a_setting_given_twice():
    with pytest.raises(TypeError, match=r"`nin.backends.get_backend\('torch'\)`"):
        build_run("torch", RunSettings())
    fake = type("Backend", (), {})
    with pytest.raises(TypeError, match=r"set RunSettings.epochs, RunSettings.fast instead"):
        build_run(fake, RunSettings(), max_epochs=2, fast=True)
