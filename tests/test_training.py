"""The shared Trainer: training works, files are written, resume, stuck and NaN detection."""

import json

import numpy as np
import pytest

from conftest import scale_loss
from nin import machine, recipes
from nin.backends import get_backend
from nin.callbacks import StuckCheck, TrainingDivergedError, TrainingStuckError
from nin.data import FILES, write_idx
from nin.runs import CheckpointError, read_checkpoint, save_checkpoint

SMALL = dict(batch_size=32, resize=(67, 67))


def _fit(
    backend,
    root,
    out=None,
    epochs=1,
    batches=12,
    recipe="nin",
    seed=0,
    num_classes=10,
    **trainer_kwargs,
):
    B = get_backend(backend)
    B.set_seed(seed)
    data = B.FashionMNIST(root=root, seed=seed, **SMALL)
    model = B.NiN(num_classes=num_classes, recipe=recipe)
    trainer = B.Trainer(
        max_epochs=epochs,
        limit_train_batches=batches,
        limit_val_batches=2,
        progress=False,
        out_dir=out,
        **trainer_kwargs,
    )
    trainer.fit(model, data)
    return trainer


def test_loss_falls(backend, synthetic_root):
    steps = [loss for _, loss in _fit(backend, synthetic_root, batches=15).history.steps]
    assert len(steps) == 15
    assert np.mean(steps[-3:]) < np.mean(steps[:3]) - 0.5, steps


def test_history_plot_and_checkpoint_written(backend, synthetic_root, tmp_path):
    trainer = _fit(backend, synthetic_root, out=tmp_path, epochs=2, batches=3)
    history = json.loads((tmp_path / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert {"train_loss", "val_loss", "val_acc", "images_per_s"} <= set(history["epochs"][0])
    assert len(history["steps"]) == 6
    assert (tmp_path / "board.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    arrays, meta = read_checkpoint(tmp_path / "checkpoint.npz")
    assert meta["epoch"] == 2 and meta["backend"] == trainer.backend_name
    assert not list(tmp_path.glob("*.tmp"))  # atomic writes leave nothing behind


class _Interrupt(Exception):
    pass


def test_interrupted_run_resumes_where_it_stopped(backend, synthetic_root, tmp_path):
    B = get_backend(backend)
    B.set_seed(0)
    data = B.FashionMNIST(root=synthetic_root, **SMALL)
    trainer = B.Trainer(
        max_epochs=3, limit_train_batches=3, limit_val_batches=1, progress=False, out_dir=tmp_path
    )
    step = trainer._train_step

    def interrupt_in_epoch_two(batch):
        if trainer.epoch == 1 and trainer.train_batch_idx == 4:
            raise _Interrupt
        return step(batch)

    trainer._train_step = interrupt_in_epoch_two
    with pytest.raises(_Interrupt):  # Adam: optimizer state to restore
        trainer.fit(B.NiN(recipe="nin"), data)
    first = json.loads((tmp_path / "history.json").read_text())["epochs"]
    assert len(first) == 1

    resumed = B.Trainer(
        max_epochs=3,
        limit_train_batches=3,
        limit_val_batches=1,
        progress=False,
        out_dir=tmp_path,
        resume=True,
    )
    history = resumed.fit(B.NiN(recipe="nin"), B.FashionMNIST(root=synthetic_root, **SMALL))
    assert [e["epoch"] for e in history.epochs] == [1, 2, 3]
    assert history.epochs[0] == first[0]
    assert len(history.steps) == 9
    # the data order continues too: epoch 2 of the resumed run is epoch 2 of an unbroken one
    assert resumed.train_dataloader.source.epoch == 3


def test_checkpoint_for_another_spec_is_refused(backend, synthetic_root, tmp_path):
    _fit(backend, synthetic_root, out=tmp_path, batches=2)
    with pytest.raises(CheckpointError, match="another spec.*5 classes"):
        _fit(backend, synthetic_root, out=tmp_path, batches=2, num_classes=5, resume=True)


def test_checkpoint_for_another_backend_is_refused(backend, synthetic_root, tmp_path):
    _fit(backend, synthetic_root, out=tmp_path, batches=2)
    arrays, meta = read_checkpoint(tmp_path / "checkpoint.npz")
    save_checkpoint(tmp_path / "checkpoint.npz", arrays, dict(meta, backend="caffe"))
    with pytest.raises(CheckpointError, match="another backend \\(caffe\\)"):
        _fit(backend, synthetic_root, out=tmp_path, batches=2, resume=True)


def test_truncated_checkpoint_is_refused(backend, synthetic_root, tmp_path):
    _fit(backend, synthetic_root, out=tmp_path, batches=2)
    path = tmp_path / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable nin checkpoint"):
        _fit(backend, synthetic_root, out=tmp_path, batches=2, resume=True)


@pytest.fixture(scope="module")
def blank_root(tmp_path_factory):
    """All-black images with balanced labels: nothing to learn, the loss stays at ln 10."""
    root = tmp_path_factory.mktemp("blank")
    for split, n in (("train", 320), ("test", 64)):
        write_idx(root / FILES[split][0], np.zeros((n, 28, 28), dtype=np.uint8))
        write_idx(root / FILES[split][1], (np.arange(n) % 10).astype(np.uint8))
    return root


def test_stuck_run_is_detected(backend, blank_root):
    with pytest.raises(TrainingStuckError, match=r"still at chance level ln\(10\) = 2.303"):
        _fit(backend, blank_root, batches=10, stuck_check=8, on_stuck="stop")


def test_stuck_run_warns_and_trains_on(backend, blank_root, capsys):
    """`on_stuck='warn'` (the default): a warning and a printed line, then the run goes on."""
    with pytest.warns(RuntimeWarning, match=r"looks stuck.*still at chance level ln\(10\)"):
        trainer = _fit(backend, blank_root, batches=10, stuck_check=8, on_stuck="warn")
    assert len(trainer.history.steps) == 10
    assert capsys.readouterr().out.count("nin: training looks stuck: the loss is") == 1


@pytest.mark.parametrize("on_stuck", ["stop", "warn"])
def test_healthy_run_is_not_flagged(backend, synthetic_root, recwarn, on_stuck):
    """The check runs after 12 batches and finds a falling loss: no TrainingStuckError (what
    'stop' raises), no warning (what 'warn' gives)."""
    trainer = _fit(backend, synthetic_root, batches=15, stuck_check=12, on_stuck=on_stuck)
    (check,) = [c for c in trainer.callbacks if isinstance(c, StuckCheck)]
    assert check.checked  # it did look
    assert not [w for w in recwarn if "stuck" in str(w.message)]


def test_diverging_run_is_detected(backend, synthetic_root):
    B = get_backend(backend)
    data = B.FashionMNIST(root=synthetic_root, **SMALL)
    model = B.NiN()
    scale_loss(model, lambda: float("nan"))  # a loss gone NaN
    trainer = B.Trainer(max_epochs=1, limit_train_batches=3, progress=False)
    with pytest.raises(TrainingDivergedError, match="became nan.*diverged.*lower learning"):
        trainer.fit(model, data)


def test_no_gpu_prints_one_line(backend, synthetic_root, capsys):
    B = get_backend(backend)
    if B.num_gpus():
        pytest.skip("a GPU is present: the fallback line is not printed")
    _fit(backend, synthetic_root, batches=1, num_gpus=1)
    assert capsys.readouterr().out.count("no GPU found; training on the CPU") == 1


def test_default_is_the_chapters_model_and_nin_recipe_is_opt_in(backend):
    from nin.spec import NiNBlock, chapter_spec

    B = get_backend(backend)
    default = B.NiN()
    assert default.recipe == recipes.RECIPES["book"] and default.lr == 0.1  # NiN(lr=0.1, ...)
    assert default.spec == chapter_spec(10)
    blocks = [layer for layer in default.spec.layers if isinstance(layer, NiNBlock)]
    assert len(blocks) == 4 and blocks[-1].out_channels == 10  # the class block too
    assert all(c.relu for block in blocks for c in block.convs)
    nin = B.NiN(recipe="nin")
    assert [c.relu for c in nin.spec.layers[7].convs] == [False] * 3
    assert nin.recipe == recipes.RECIPES["nin"] and nin.lr == 1e-3


def test_one_cycle_schedule():
    lrs = [recipes.lr_at(s, 100, 1.0, "onecycle") for s in range(100)]
    assert lrs[0] == pytest.approx(1 / 25) and max(lrs) == pytest.approx(1.0)
    assert lrs[-1] < 0.01 and int(np.argmax(lrs)) == 20
    assert recipes.lr_at(50, 100, 0.3, "constant") == 0.3


def test_unknown_recipe():
    with pytest.raises(ValueError, match="unknown recipe 'fast'.*book, nin"):
        recipes.get_recipe("fast")


def _force_bf16(monkeypatch, backend):
    """Make a fast trainer decide for bf16 as it does on a CPU with native bf16 (MXNet and
    TensorFlow ask nin.machine.cpu_has_bf16, PyTorch asks oneDNN), so that the bf16 step is
    tested on any CPU; skipped where the framework cannot run a bf16 convolution at all."""
    monkeypatch.setattr(machine, "cpu_has_bf16", lambda cpuinfo="/proc/cpuinfo": True)
    if backend == "torch":
        import torch

        monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    try:
        _bf16_convolution(backend)
    except Exception as err:  # the framework's own refusal, whatever its type
        pytest.skip(f"{backend} cannot run a bf16 convolution on this CPU: {err}")


def _bf16_convolution(backend):
    """One bf16 convolution, the framework's alone (nin's code is not tried here, so that a
    bug in it fails rather than skips): autocast in PyTorch, which runs on any CPU; oneDNN's
    bf16 kernels in MXNet and TensorFlow, which refuse a CPU below AVX-512 (tried with
    DNNL_MAX_CPU_ISA=AVX2: 'could not create a primitive descriptor')."""
    if backend == "torch":
        import torch

        with torch.autocast("cpu", dtype=torch.bfloat16):
            torch.nn.Conv2d(1, 2, 3)(torch.ones(1, 1, 5, 5))
    elif backend == "mxnet":
        import mxnet as mx
        from mxnet.contrib.amp.amp import bfloat16

        x, w = (
            mx.nd.amp_cast(mx.nd.ones(shape), dtype=bfloat16)
            for shape in ((1, 1, 5, 5), (2, 1, 3, 3))
        )
        mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=2, no_bias=True).wait_to_read()
    elif backend == "jax":
        import jax
        from jax import numpy as jnp

        ones = (jnp.ones(shape, jnp.bfloat16) for shape in ((1, 1, 5, 5), (2, 1, 3, 3)))
        jax.lax.conv(*ones, (1, 1), "VALID").block_until_ready()
    else:
        import tensorflow as tf

        tf.nn.conv2d(
            tf.ones((1, 5, 5, 1), tf.bfloat16), tf.ones((3, 3, 1, 2), tf.bfloat16), 1, "VALID"
        )


def _step_conv_dtypes(backend, trainer, model, batch, tmp_path) -> set:
    """The dtypes the convolutions of one training step compute in, as the framework reports
    them: PyTorch's conv outputs (forward hooks), Keras' Conv2D outputs (in the traced step),
    JAX's convolutions in the step's jaxpr,
    MXNet's convolution nodes in the hybridized graph the step ran (exported; its bf16
    convolutions cast back to fp32 after, so their blocks' outputs would say fp32)."""
    seen: set = set()
    if backend == "torch":
        import torch

        convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
        hooks = [c.register_forward_hook(lambda m, i, out: seen.add(str(out.dtype))) for c in convs]
        trainer.train_batch(batch)
        for hook in hooks:
            hook.remove()
        return {name.removeprefix("torch.") for name in seen}
    if backend == "tensorflow":
        import tensorflow as tf

        from nin.backends.tensorflow.ops import leaf_layers

        convs = [c for c in leaf_layers(model.net) if isinstance(c, tf.keras.layers.Conv2D)]
        for conv in convs:

            def call(inputs, _call=conv.call):
                out = _call(inputs)
                seen.add(out.dtype.name)
                return out

            conv.call = call
        try:
            trainer.train_batch(batch)
        finally:
            for conv in convs:
                del conv.call
        return seen
    if backend == "jax":
        return _jax_step_conv_dtypes(trainer, batch)
    import mxnet as mx

    trainer.train_batch(batch)
    model.net.export(str(tmp_path / "step"), remove_amp_cast=False)
    graph = mx.sym.load(str(tmp_path / "step-symbol.json"))
    nodes = json.loads(graph.tojson())["nodes"]
    convs = {f"{n['name']}_output" for n in nodes if "convolution" in n["op"].lower()}
    internals = graph.get_internals()
    _, types, _ = internals.infer_type(data=np.float32)
    names = {np.dtype(np.float32): "float32", np.dtype(mx.contrib.amp.amp.bfloat16): "bfloat16"}
    return {
        names.get(np.dtype(t), str(t))
        for n, t in zip(internals.list_outputs(), types)
        if n in convs
    }


def _jax_step_conv_dtypes(trainer, batch) -> set:
    """JAX: the output dtypes of every convolution (forward and backward) in the traced
    training step, read from its jaxpr, nested calls included."""
    import jax

    seen: set = set()

    def walk(jaxpr):
        for eqn in jaxpr.eqns:
            if eqn.primitive.name == "conv_general_dilated":
                seen.update(str(v.aval.dtype) for v in eqn.outvars)
            for value in eqn.params.values():
                for sub in value if isinstance(value, (list, tuple)) else [value]:
                    if isinstance(sub, jax.core.ClosedJaxpr):
                        walk(sub.jaxpr)
                    elif isinstance(sub, jax.core.Jaxpr):
                        walk(sub)

    walk(jax.make_jaxpr(trainer._step)(trainer.state, *trainer.prepare_batch(batch)).jaxpr)
    trainer.train_batch(batch)  # and the step runs
    return seen


def _prepared(B, model, data, fast):
    trainer = B.Trainer(max_epochs=1, fast=fast, progress=False, stuck_check=0)
    trainer.prepare(model, data)
    return trainer


@pytest.mark.parametrize("built", [False, True], ids=["new-model", "built-model"])
def test_fast_path_computes_in_bf16(backend, synthetic_root, monkeypatch, tmp_path, built):
    """A fast trainer that says bf16 computes its convolutions in bf16, also on a model an
    earlier trainer built in fp32 (Keras once kept such a model's fp32 variables and fp32
    step under a bf16 start line)."""
    _force_bf16(monkeypatch, backend)
    B = get_backend(backend)
    data = B.FashionMNIST(root=synthetic_root, seed=0, **SMALL)
    batch = next(iter(data.val_dataloader()))
    B.set_seed(0)
    model = B.NiN(recipe="nin")  # the book's class block can start at chance
    plain = _prepared(B, model, data, fast=False).eval_batch(batch)["loss"]
    if not built:
        B.set_seed(0)
        model = B.NiN(recipe="nin")  # the same weights, not built yet
    trainer = _prepared(B, model, data, fast=True)
    fast = trainer.eval_batch(batch)["loss"]
    assert trainer.bf16 and trainer.config()["precision"] == "bf16"
    assert abs(fast - plain) / plain < 2e-2, (plain, fast)  # the same model...
    assert abs(fast - plain) / plain > 1e-5, (plain, fast)  # ...rounded to bf16
    assert _step_conv_dtypes(backend, trainer, model, batch, tmp_path) == {"bfloat16"}


def test_plain_trainer_undoes_an_earlier_fast_one(backend, synthetic_root, monkeypatch):
    """A model handed from a fast trainer to a plain one computes in fp32 again."""
    _force_bf16(monkeypatch, backend)  # so that the fast trainer's step is a bf16 one
    B = get_backend(backend)
    B.set_seed(0)
    data = B.FashionMNIST(root=synthetic_root, seed=0, **SMALL)
    model, batch = B.NiN(recipe="nin"), next(iter(data.val_dataloader()))
    losses = []
    for fast in (False, True, False):
        trainer = B.Trainer(max_epochs=1, fast=fast, progress=False, stuck_check=0)
        trainer.prepare(model, data)
        losses.append(trainer.eval_batch(batch)["loss"])
    assert losses[1] != pytest.approx(losses[0], rel=1e-5), losses  # bf16 in between
    assert losses[2] == pytest.approx(losses[0], rel=1e-5), losses
