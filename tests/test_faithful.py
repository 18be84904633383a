"""What the caller passes is what runs, and the d2l surface a subclass expects is there."""

import inspect
import json

import numpy as np
import pytest

from conftest import needs, real_d2l
from nin import recipes
from nin.backends import get_backend
from nin.history import Board, History
from nin.runs import read_checkpoint

SMALL = dict(batch_size=16, resize=(67, 67))


def _data(B, root, seed=0):
    return B.FashionMNIST(root=root, seed=seed, **SMALL)


def _prepared(B, model, root, **kwargs):
    trainer = B.Trainer(max_epochs=1, progress=False, stuck_check=0, **kwargs)
    trainer.prepare(model, _data(B, root))
    return trainer


def _optimizer_settings(backend, optim) -> dict:
    """lr, momentum and weight decay as the framework's optimizer object holds them."""
    if backend == "torch":
        group = optim.param_groups[0]
        return {
            "lr": group["lr"],
            "momentum": group.get("momentum", 0.0),
            "weight_decay": group["weight_decay"],
            "kind": type(optim).__name__.lower(),
        }
    if backend == "mxnet":
        inner = optim._optimizer
        return {
            "lr": optim.learning_rate,
            "momentum": getattr(inner, "momentum", 0.0),
            "weight_decay": inner.wd,
            "kind": type(inner).__name__.lower(),
        }
    if backend == "jax":  # nin's optax Optimizer: its settings, the lr it starts at
        return {
            "lr": optim.learning_rate,
            "momentum": optim.momentum,
            "weight_decay": optim.weight_decay,
            "kind": optim.name,
        }
    return {
        "lr": float(optim.learning_rate.numpy()),
        "momentum": float(getattr(optim, "momentum", 0.0)),
        "weight_decay": optim.coupled_weight_decay,  # Keras' own (decoupled) stays off
        "keras_weight_decay": optim.weight_decay,
        "kind": type(optim).__name__.lower().removeprefix("coupled"),
    }


@pytest.mark.parametrize("recipe", ["book", "nin"])
def test_lr_passed_to_nin_reaches_the_optimizer(backend, recipe, synthetic_root):
    B = get_backend(backend)
    model = B.NiN(lr=0.0123, recipe=recipe)
    assert model.lr == 0.0123 and model.recipe.lr == 0.0123
    trainer = _prepared(B, model, synthetic_root)
    assert _optimizer_settings(backend, trainer.optim)["lr"] == pytest.approx(0.0123)
    assert trainer.base_lr == pytest.approx(0.0123)


def test_recipe_defaults_apply_when_nothing_is_passed(backend, synthetic_root):
    B = get_backend(backend)
    for recipe, lr, kind in (("book", 0.1, "sgd"), ("nin", 1e-3, "adam")):
        trainer = _prepared(B, B.NiN(recipe=recipe), synthetic_root)
        settings = _optimizer_settings(backend, trainer.optim)
        assert settings["lr"] == pytest.approx(lr) and settings["kind"] == kind
        # the run's record names the optimizer that updates the weights (not gluon's Trainer)
        config = trainer.config()
        assert config["optimizer"].lower().removeprefix("coupled") == kind


def test_recipe_object_and_keyword_fields_reach_the_optimizer(backend, synthetic_root):
    B = get_backend(backend)
    mine = recipes.Recipe(
        "mine", optimizer="sgd", momentum=0.9, weight_decay=1e-4, schedule="constant", lr=0.02
    )
    settings = _optimizer_settings(backend, _prepared(B, B.NiN(recipe=mine), synthetic_root).optim)
    assert settings["kind"] == "sgd"
    assert (settings["lr"], settings["momentum"], settings["weight_decay"]) == pytest.approx(
        (0.02, 0.9, 1e-4)
    )
    assert settings.get("keras_weight_decay") is None  # not also Keras' decoupled one
    # a keyword wins over the named recipe's field, and over a Recipe object's
    model = B.NiN(recipe="nin", optimizer="sgd", momentum=0.5, lr=0.03)
    settings = _optimizer_settings(backend, _prepared(B, model, synthetic_root).optim)
    assert settings["kind"] == "sgd" and settings["momentum"] == pytest.approx(0.5)
    assert model.recipe.schedule == "onecycle" and model.recipe.init == "kaiming"
    assert B.NiN(recipe=mine, lr=0.5).recipe.lr == 0.5


def test_bad_recipe_values_are_refused():
    with pytest.raises(ValueError, match="lr must be a finite number > 0 and at most 1e6, got -1"):
        recipes.resolve_recipe("nin", lr=-1)
    with pytest.raises(ValueError, match="lr must be a finite number > 0.*got 0"):
        recipes.resolve_recipe("nin", lr=0)
    with pytest.raises(ValueError, match="at most 1e6, got 1e"):
        recipes.resolve_recipe("nin", lr=1e308)
    with pytest.raises(ValueError, match="lr must be a finite number"):
        recipes.resolve_recipe("book", lr=float("nan"))
    with pytest.raises(ValueError, match="momentum must be a finite number >= 0 and < 1"):
        recipes.resolve_recipe("book", momentum=1.5)
    with pytest.raises(ValueError, match="momentum 0.9 is for SGD; adam has none"):
        recipes.resolve_recipe("nin", momentum=0.9)
    assert recipes.resolve_recipe("book", lr=np.float32(0.05)).lr == np.float32(0.05)
    with pytest.raises(ValueError, match="optimizer must be one of adam, sgd, got 'rmsprop'"):
        recipes.resolve_recipe("book", optimizer="rmsprop")
    with pytest.raises(TypeError, match="unknown recipe field.*momentm"):
        recipes.resolve_recipe("book", momentm=0.9)


def test_schedule_scales_the_lr_that_was_passed(backend, synthetic_root):
    B = get_backend(backend)
    trainer = B.Trainer(
        max_epochs=1, limit_train_batches=5, limit_val_batches=1, progress=False, stuck_check=0
    )
    seen = []
    set_lr = trainer._set_lr
    trainer._set_lr = lambda lr: (seen.append(lr), set_lr(lr))
    trainer.fit(B.NiN(recipe="nin", lr=0.02), _data(B, synthetic_root))
    assert seen == pytest.approx([recipes.lr_at(s, 5, 0.02, "onecycle") for s in range(5)])
    assert max(seen) == pytest.approx(0.02)


def _cli_losses(backend, root, out, *flags):
    from nin.cli import main

    assert (
        main(
            [
                "train",
                "--backend",
                backend,
                "--resize",
                "67",
                "--batch-size",
                "8",
                "--epochs",
                "1",
                "--limit-train-batches",
                "3",
                "--limit-val-batches",
                "1",
                "--data-dir",
                str(root),
                "--out",
                str(out),
                *flags,
            ]
        )
        == 0
    )
    history = json.loads((out / "history.json").read_text())
    return [loss for _, loss in history["steps"]], history["config"]


def test_cli_lr_changes_the_step_losses(backend, synthetic_root, tmp_path):
    low, low_config = _cli_losses(backend, synthetic_root, tmp_path / "a", "--lr", "1e-4")
    high, high_config = _cli_losses(backend, synthetic_root, tmp_path / "b", "--lr", "0.05")
    assert low[0] == pytest.approx(high[0], rel=1e-3)  # the same first batch, before any step
    assert abs(low[2] - high[2]) > 1e-3, (low, high)
    assert low_config["lr"] == pytest.approx(1e-4) and high_config["lr"] == pytest.approx(0.05)
    assert high_config["recipe"]["lr"] == pytest.approx(0.05)


def test_cli_recipe_flags_reach_the_run(synthetic_root, tmp_path, capsys):
    _, config = _cli_losses(
        "torch", synthetic_root, tmp_path, "--recipe", "book", "--momentum", "0.9", "--no-fast"
    )
    assert config["recipe"] == dict(vars(recipes.RECIPES["book"]), lr=0.05, momentum=0.9)
    assert config["lr"] == 0.05
    assert config["precision"] == "fp32" and config["optimizer"] == "SGD"
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    assert first.startswith(
        "nin: training the chapter's NiN with torch, recipe book (changed "
        "from the chapter's: momentum 0.9 (the chapter's: 0.0))"
    )
    assert "training on cpu, fp32, the plain step as the chapter runs it" in out


def test_cli_refuses_a_bad_lr(synthetic_root, tmp_path, capsys):
    from nin.cli import main

    assert (
        main(["train", "--lr", "-1", "--data-dir", str(synthetic_root), "--out", str(tmp_path)])
        == 2
    )
    assert "lr must be a finite number > 0 and at most 1e6, got -1" in capsys.readouterr().err


def test_cli_book_recipe_is_the_chapters_training_cell(synthetic_root, tmp_path, capsys):
    _, config = _cli_losses("torch", synthetic_root, tmp_path, "--recipe", "book", "--no-fast")
    assert config["recipe"]["lr"] == 0.05  # the chapter's NiN(lr=0.05)
    assert "recipe book (the chapter's own)" in capsys.readouterr().out.splitlines()[0]


def test_values_set_on_the_model_are_what_runs_and_what_is_recorded(backend, synthetic_root):
    from nin.spec import chapter_spec, class_block_relu

    B = get_backend(backend)
    model = B.NiN(spec=chapter_spec(), class_block_relu="none")
    assert class_block_relu(model.spec) == "none" and model.recipe.class_block_relu == "none"
    given = B.NiN(spec=chapter_spec(), recipe="nin")  # the spec decides; the recipe says so
    assert given.recipe.class_block_relu == "all"
    model = B.NiN()
    model.lr = 0.01  # d2l style, after construction
    trainer = _prepared(B, model, synthetic_root)
    assert _optimizer_settings(backend, trainer.optim)["lr"] == pytest.approx(0.01)
    assert trainer.config()["recipe"]["lr"] == 0.01 and "lr 0.01" in trainer.describe()


def test_model_is_left_in_inference_mode_after_fit(synthetic_root):
    B = get_backend("torch")
    model = B.NiN()
    B.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, progress=False, stuck_check=0
    ).fit(model, _data(B, synthetic_root))
    assert model.training is False


def test_start_line_names_device_precision_and_recipe(backend, synthetic_root, capsys):
    B = get_backend(backend)
    trainer = B.Trainer(max_epochs=1, limit_train_batches=1, limit_val_batches=1, stuck_check=0)
    history = trainer.fit(B.NiN(lr=0.05), _data(B, synthetic_root))
    out = capsys.readouterr().out
    assert out.count("nin: training on ") == 1
    assert (
        "fp32, the plain step as the chapter runs it (`fast=True` for the fast path); "
        "recipe book: sgd at lr 0.05 (constant), xavier init, class-block ReLU all, "
        "raw [0, 1] inputs"
    ) in out
    assert history.config["recipe"] == vars(recipes.resolve_recipe("book", lr=0.05))
    assert history.config["precision"] == "fp32"
    assert history.config["lr"] == pytest.approx(0.05)  # TensorFlow holds it in float32


def test_the_fast_start_line_names_bf16_only_where_it_runs(backend, synthetic_root):
    """On a CPU without native bf16 the fast path runs fp32, and its start line says so
    without naming a bf16 step (it once read 'fp32 fast path (channels-last, bf16 autocast;
    no native bf16 here')."""
    B = get_backend(backend)
    trainer = B.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, progress=False, fast=True
    )
    trainer.fit(B.NiN(recipe="nin"), _data(B, synthetic_root))
    assert f"fast path ({trainer.FAST_PATH}" in trainer.describe()  # as it ran here
    assert "bf16" in trainer.FAST_BF16 and "bf16" not in trainer.FAST_PATH
    trainer.bf16 = True  # either machine's line, whichever this one is
    assert f"bf16 fast path ({trainer.FAST_PATH}, {trainer.FAST_BF16}; " in trainer.describe()
    trainer.bf16 = False
    line = trainer.describe()
    assert f"fp32 fast path ({trainer.FAST_PATH}; no native bf16 here; " in line
    assert trainer.FAST_BF16 not in line


def test_checkpoint_records_the_resolved_recipe(backend, synthetic_root, tmp_path):
    B = get_backend(backend)
    B.Trainer(
        max_epochs=1, limit_train_batches=1, limit_val_batches=1, progress=False, out_dir=tmp_path
    ).fit(B.NiN(lr=0.07, recipe="nin"), _data(B, synthetic_root))
    _, meta = read_checkpoint(tmp_path / "checkpoint.npz")
    assert meta["recipe"]["lr"] == 0.07 and meta["recipe"]["optimizer"] == "adam"
    assert meta["history"]["config"]["lr"] == pytest.approx(0.07)


# --- the d2l surface -----------------------------------------------------------------------

D2L_TRAINER_METHODS = [
    "fit",
    "prepare_data",
    "prepare_model",
    "prepare_batch",
    "fit_epoch",
    "clip_gradients",
]
D2L_MODULE_METHODS = [
    "loss",
    "forward",
    "plot",
    "training_step",
    "validation_step",
    "configure_optimizers",
]


def _params(fn):
    return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]


@pytest.mark.d2l
def test_d2l_names_and_signatures(backend):
    """Every d2l 1.0.3 method a subclass may override exists here with d2l's parameters."""
    real, B = real_d2l(backend), get_backend(backend)
    for name in D2L_TRAINER_METHODS:
        assert _params(getattr(B.Trainer, name)) == _params(getattr(real.Trainer, name)), name
    for name in D2L_MODULE_METHODS + ["__init__"]:
        assert _params(getattr(B.Module, name)) == _params(getattr(real.Module, name)), name
    if hasattr(real.Module, "apply_init"):
        assert _params(B.Module.apply_init) == _params(real.Module.apply_init)
    init = _params(real.Trainer.__init__)
    assert _params(B.Trainer.__init__)[: len(init)] == init  # nin's extras are keyword-only
    model = B.NiN()
    assert (model.plot_train_per_epoch, model.plot_valid_per_epoch) == (2, 1)
    assert model.board.points_per_epoch == 2


def test_num_gpus_zero_means_the_cpu(backend, synthetic_root, monkeypatch):
    """Even where a GPU is present (faked: this machine has none), num_gpus=0 is the CPU."""
    B = get_backend(backend)
    monkeypatch.setattr(B.ops, "num_gpus", lambda: 1)  # where the Trainer looks
    trainer = _prepared(B, B.NiN(), synthetic_root)
    assert "cpu" in str(trainer.device).lower()


@needs("tensorflow")
def test_tensorflow_device_choice():
    B = get_backend("tensorflow")
    assert B.training_device(0, 1) == "/CPU:0"
    assert B.training_device(1, 1) == "/GPU:0"
    assert B.training_device(1, 0) == "/CPU:0"
    # the chapter's `with d2l.try_gpu():` scope is honoured when no GPU count is given
    assert B.training_device(0, 1, "/job:localhost/replica:0/task:0/device:GPU:0").endswith("GPU:0")


@needs("tensorflow")
def test_tensorflow_weight_decay_is_added_to_the_gradient_as_in_pytorch_and_mxnet():
    """A recipe's weight decay is torch.optim's and MXNet's: wd x w added to the gradient
    before the update. Keras' own `weight_decay` is decoupled (AdamW's: w shrinks by
    lr x wd), which for Adam is another recipe: at lr 0.01 and wd 0.1 it moves a weight with
    no gradient by 0.001 of itself, where the coupled one moves it by lr (Adam's first step
    is lr x the sign of its gradient)."""
    import tensorflow as tf

    from nin.backends.tensorflow.model import CoupledAdam, CoupledSGD

    model = get_backend("tensorflow").NiN(recipe=recipes.Recipe("wd", weight_decay=0.1, lr=0.01))
    adam = model.configure_optimizers()
    assert isinstance(adam, CoupledAdam) and adam.weight_decay is None  # Keras' stays off
    w = tf.Variable([1.0, -2.0])
    adam.apply_gradients([(tf.zeros(2), w)])
    np.testing.assert_allclose(w.numpy(), [0.99, -1.99], rtol=1e-6)
    # SGD with momentum: the decay goes through the momentum buffer, as in torch.optim.SGD:
    # buffer 0.5 w0, w1 = 0.95 w0; buffer 0.9 x 0.5 w0 + 0.5 w1, w2 = w1 - 0.1 x buffer
    w = tf.Variable([1.0, -2.0])
    sgd = CoupledSGD(0.1, momentum=0.9, coupled_weight_decay=0.5)
    for _ in range(2):
        sgd.apply_gradients([(tf.zeros(2), w)])
    np.testing.assert_allclose(w.numpy(), [0.8575, -1.715], rtol=1e-6)
    with pytest.raises(ValueError, match="coupled_weight_decay"):
        CoupledAdam(0.01, weight_decay=0.1)
    with pytest.raises(ValueError, match="coupled_weight_decay"):  # by position too
        CoupledSGD(0.1, 0.9, False, 0.1)


@needs("tensorflow")
def test_tensorflow_dropout_runs_in_training():
    """d2l 1.0.3 stores Keras' training=None over the Trainer's True; nin keeps the mode."""
    B = get_backend("tensorflow")
    import tensorflow as tf

    B.set_seed(0)
    model = B.NiN()
    X = tf.random.uniform((4, 67, 67, 1))
    model.training = True
    first, second = model(X).numpy(), model(X).numpy()
    assert np.abs(first - second).max() > 0, "dropout did not run in training mode"
    model.training = False
    inference = model(X).numpy()
    assert np.array_equal(inference, model(X).numpy())
    assert not np.array_equal(model(X, training=True).numpy(), inference)
    assert model.training is True  # an explicit flag sets the mode, as in d2l
    model(X, training=None)
    assert model.training is True  # None does not


@pytest.mark.parametrize("fast", [False, True])
def test_overridden_validation_step_is_what_runs(backend, fast, synthetic_root):
    B = get_backend(backend)

    class Mine(B.NiN):
        def validation_step(self, *batch):  # (batch), or JAX's (params, batch, state)
            self.plot("loss", 7.0, train=False)
            self.plot("acc", 0.25, train=False)
            self.plot("top3", 0.5, train=False)  # any metric reaches the history

    trainer = B.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        limit_val_batches=2,
        progress=False,
        stuck_check=0,
        fast=fast,
    )
    history = trainer.fit(Mine(), _data(B, synthetic_root))
    assert history.epochs[0]["val_loss"] == pytest.approx(7.0)
    assert history.epochs[0]["val_acc"] == pytest.approx(0.25)
    assert history.epochs[0]["val_top3"] == pytest.approx(0.5)


@pytest.mark.parametrize("fast", [False, True])
def test_fit_twice_on_one_trainer(backend, fast, synthetic_root):
    B = get_backend(backend)
    trainer = B.Trainer(
        max_epochs=1,
        limit_train_batches=2,
        limit_val_batches=1,
        progress=False,
        stuck_check=0,
        fast=fast,
    )
    model, data = B.NiN(recipe="nin"), _data(B, synthetic_root)
    first = trainer.fit(model, data)
    after_first = [a.copy() for a in B.parameter_arrays(model.net)]
    second = trainer.fit(model, data)
    assert len(first.epochs) == len(second.epochs) == 1 and len(second.steps) == 2
    moved = max(np.abs(a - b).max() for a, b in zip(B.parameter_arrays(model.net), after_first))
    assert moved > 0, "the second fit did not train"


def test_subclass_hooks_are_called(backend, synthetic_root):
    """prepare_batch and clip_gradients, overridden as the book's later chapters do."""
    B = get_backend(backend)
    calls = {"prepare_batch": 0, "clip_gradients": 0}

    class Mine(B.Trainer):
        def prepare_batch(self, batch):
            calls["prepare_batch"] += 1
            return super().prepare_batch(batch)

        def clip_gradients(self, grad_clip_val, model_or_grads):
            calls["clip_gradients"] += 1
            assert grad_clip_val == 0.5
            return super().clip_gradients(grad_clip_val, model_or_grads)

    Mine(
        max_epochs=1,
        gradient_clip_val=0.5,
        limit_train_batches=3,
        limit_val_batches=1,
        progress=False,
        stuck_check=0,
    ).fit(B.NiN(), _data(B, synthetic_root))
    assert calls == {"prepare_batch": 4, "clip_gradients": 3}


def test_clip_gradients_bounds_the_norm(backend, synthetic_root):
    """d2l's rule: gradients whose global norm passes the value are scaled down to it."""
    B = get_backend(backend)
    norms = []

    class Mine(B.Trainer):
        def clip_gradients(self, grad_clip_val, model_or_grads):
            out = super().clip_gradients(grad_clip_val, model_or_grads)
            norms.append(_global_norm(backend, model_or_grads if out is None else out))
            return out

    Mine(
        max_epochs=1,
        gradient_clip_val=1e-3,
        limit_train_batches=2,
        limit_val_batches=1,
        progress=False,
        stuck_check=0,
    ).fit(B.NiN(), _data(B, synthetic_root))
    assert len(norms) == 2 and max(norms) == pytest.approx(1e-3, rel=1e-3)


def _global_norm(backend, model_or_grads) -> float:
    if backend == "torch":
        return float(sum((p.grad.double() ** 2).sum() for p in model_or_grads.parameters()) ** 0.5)
    if backend == "mxnet":
        return float(
            sum(float((p.grad() ** 2).sum()) for p in model_or_grads.collect_params().values())
            ** 0.5
        )
    if backend == "jax":  # a tree of gradients
        import jax

        leaves = jax.tree_util.tree_leaves(model_or_grads)
        return float(np.sqrt(sum(float(np.sum(np.square(np.asarray(g)))) for g in leaves)))
    return float(np.sqrt(sum(float(np.sum(np.square(g.numpy()))) for g in model_or_grads)))


def test_board_draws_d2l_points_per_epoch():
    board = Board(live=False, points_per_epoch=2)
    history = History()
    history.steps = [((i + 1) / 10, float(i)) for i in range(10)]
    x, y = board.train_curve(history)
    assert list(y) == [2.0, 7.0] and x == pytest.approx([0.3, 0.8])
    with pytest.raises(ValueError, match="plot_train_per_epoch"):
        Board(points_per_epoch=0)
