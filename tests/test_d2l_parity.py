"""The chapter's cells on the real d2l 1.0.3 package against nin's `NiN`: the same model, the
same training. For each tab, the chapter's own `nin_block` and `NiN` cells run with `d2l`
bound to the real package; nin's default `NiN(lr=0.05)` gets the same weights by position;
then both must give the same logits, and the same losses and weights after 5 SGD steps, each
trained by its own library's Trainer on the same batches.
"""

import numpy as np
import pytest

from conftest import BACKENDS, CHAPTER, chapter_path, chapter_with_tab, needs, real_d2l
from nin.backends import get_backend
from nin.chapter import TABS, Tab, cells

TAB_OF = {backend: tab for tab, backend in TABS.items()}
# the shared edition's tabs (its cells say which); the JAX tab, of the English 1.0.3
# edition, is tested below
THREE_TABS = [
    b for b in BACKENDS if not CHAPTER.exists() or cells(CHAPTER.read_text("utf-8"), TAB_OF[b])
]
SIZE, BATCH, STEPS = 96, 8, 5
pytestmark = pytest.mark.d2l


def _chapter_nin(backend):
    """The chapter's `NiN` class, built by the chapter's own cells on the real d2l."""
    real = real_d2l(backend)
    tab = TAB_OF[backend]
    namespace = {"__name__": "__chapter__", "tab": Tab(tab)}
    block_cell, model_cell = cells(chapter_path().read_text(encoding="utf-8"), tab)[:2]
    for cell in (block_cell, model_cell):
        exec(compile(cell.source, f"<chapter cell {cell.index}>", "exec"), namespace)
    assert namespace["d2l"] is real
    return namespace["NiN"], real


def _batches(backend, seed=0):
    """STEPS + 1 batches of random images in [0, 1] with labels, as each framework takes them."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(STEPS + 1):
        x = rng.random((BATCH, 1, SIZE, SIZE), dtype=np.float32)
        y = rng.integers(0, 10, BATCH)
        if backend == "torch":
            import torch

            out.append((torch.from_numpy(x), torch.from_numpy(y)))
        elif backend == "mxnet":
            from mxnet import np as mnp

            out.append((mnp.array(x), mnp.array(y, dtype="int32")))
        else:
            import tensorflow as tf

            out.append((tf.constant(x.transpose(0, 2, 3, 1)), tf.constant(y, dtype=tf.int32)))
    return out


def _weights(backend, model):
    """The model's parameter arrays (by position) and a setter for them."""
    if backend == "torch":
        params = list(model.parameters())
        return (
            [p.detach().numpy().copy() for p in params],
            lambda arrays: [
                p.data.copy_(__import__("torch").from_numpy(a)) for p, a in zip(params, arrays)
            ],
        )
    if backend == "mxnet":
        from mxnet import np as mnp

        params = list(model.collect_params().values())
        return (
            [p.data().asnumpy() for p in params],
            lambda arrays: [p.set_data(mnp.array(a)) for p, a in zip(params, arrays)],
        )
    variables = [w for layer in model.net.layers for w in layer.weights]
    return [v.numpy() for v in variables], lambda arrays: [
        v.assign(a) for v, a in zip(variables, arrays)
    ]


def _logits(backend, model, X):
    if backend == "torch":
        import torch

        model.eval()
        with torch.no_grad():
            out = model(X).numpy()
        model.train()
        return out
    if backend == "mxnet":
        return model(X).asnumpy()  # outside autograd.record: inference mode
    return model(X, training=False).numpy()


def _built_pair(backend):
    """(the chapter's model on the real d2l, nin's default NiN(lr=0.05)), same weights."""
    ChapterNiN, real = _chapter_nin(backend)
    B = get_backend(backend)
    B.set_seed(0)
    ours = B.NiN(lr=0.05)
    theirs = ChapterNiN(lr=0.05)
    X = _batches(backend)[0][0]
    if backend == "torch":  # the chapter's training cell materializes and initializes so
        theirs.apply_init([X], real.init_cnn)
    else:
        theirs(X)
    ours(X)
    mine, _ = _weights(backend, ours)
    before, assign = _weights(backend, theirs)
    assert [a.shape for a in mine] == [a.shape for a in before]
    assert sum(a.size for a in mine) == 1_992_166
    assign(mine)
    return theirs, ours, real


@pytest.mark.parametrize("backend", THREE_TABS)
def test_default_nin_is_the_chapters_model(backend):
    """Same weights, same input: the logits agree (fp32, inference). nin's `nin` recipe (a
    linear class block, standardized inputs) would differ by far more than the tolerance."""
    theirs, ours, _ = _built_pair(backend)
    X = _batches(backend)[0][0]
    expected, got = _logits(backend, theirs, X), _logits(backend, ours, X)
    assert np.abs(expected).max() > 0, "every logit is 0: the comparison would prove nothing"
    # the same framework runs the same fp32 operations: only summation order may differ
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max(), (got, expected)


class _Batches:
    """The d2l DataModule interface over fixed batches: both Trainers see the same ones."""

    def __init__(self, batches):
        self.batches = batches

    def train_dataloader(self):
        return self.batches

    def val_dataloader(self):
        return None


def _without_dropout(model):
    """Dropout off in nin's net, to match d2l 1.0.3's TensorFlow tab, whose dropout never runs
    (Keras hands `training=None` to its Module, which stores it over the Trainer's True)."""
    import tensorflow as tf

    for layer in model.net.layers:
        if isinstance(layer, tf.keras.layers.Dropout):
            layer.rate = 0.0


@pytest.mark.parametrize("backend", THREE_TABS)
def test_chapter_training_matches_d2l(backend):
    """5 SGD steps at the chapter's lr, each library's own Trainer: the same losses and weights.
    PyTorch and MXNet train with dropout on both sides (the same seed gives the same masks);
    TensorFlow with dropout off on both sides, see `_without_dropout`."""
    theirs, ours, real = _built_pair(backend)
    B = get_backend(backend)
    if backend == "tensorflow":
        _without_dropout(ours)
    start, _ = _weights(backend, ours)
    batches = _batches(backend)[1:]

    their_losses = []
    step = theirs.training_step

    def recorded(batch):
        loss = step(batch)
        their_losses.append(float(loss.detach() if hasattr(loss, "detach") else loss))
        return loss

    theirs.training_step = recorded
    theirs.board.display = False
    B.set_seed(1)
    real.Trainer(max_epochs=1).fit(theirs, _Batches(batches))

    B.set_seed(1)
    trainer = B.Trainer(max_epochs=1, progress=False, stuck_check=0)
    history = trainer.fit(ours, _Batches(batches))
    our_losses = [loss for _, loss in history.steps]

    assert len(their_losses) == len(our_losses) == STEPS
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-4, atol=1e-4)
    theirs_final, _ = _weights(backend, theirs)
    ours_final, _ = _weights(backend, ours)
    moved = max(np.abs(a - b).max() for a, b in zip(ours_final, start))
    assert moved > 1e-4, "the weights did not move: the comparison would prove nothing"
    for a, b in zip(ours_final, theirs_final):
        assert np.abs(a - b).max() <= 1e-4 * max(1.0, np.abs(b).max())


# --- JAX: the English 1.0.3 edition's tab -------------------------------------------------
# The JAX tab's model keeps no weights (Flax): each Trainer holds them in its TrainState.
# nin's NiN lays its layers at the tab's positions in nn.Sequential, so both parameter trees
# have the same names, and the same key draws the same dropout masks on both sides.


def _readers_nin(d2l, nn):
    """The JAX tab's NiN as a reader writes it on the real d2l: a Flax subclass of
    d2l.Classifier with the chapter's fields, its layers made in `setup`; the class block
    averaged over the whole map (the tab pools a 5 x 5 one), so that any size runs. Used
    where the chapter's own cells are not at hand."""

    def block(channels, kernel, stride, pad):
        square = ((pad, pad), (pad, pad))
        convs = [nn.Conv(channels, (kernel, kernel), (stride, stride), square)]
        convs += [nn.Conv(channels, (1, 1)) for _ in range(2)]
        return nn.Sequential([layer for conv in convs for layer in (conv, nn.relu)])

    def pool(x):
        return nn.max_pool(x, (3, 3), strides=(2, 2))

    class ReadersNiN(d2l.Classifier):
        lr: float = 0.1
        num_classes: int = 10
        training: bool = True

        def setup(self):
            layers = [block(96, 11, 4, 0), pool, block(256, 5, 1, 2), pool]
            layers += [block(384, 3, 1, 1), pool, nn.Dropout(0.5, deterministic=not self.training)]
            layers += [block(self.num_classes, 3, 1, 1), lambda x: x.mean(axis=(1, 2))]
            self.net = nn.Sequential(layers)

    return ReadersNiN


def _jax_model(source):
    """(the JAX tab's NiN class on the real d2l, the input size it takes): the chapter's own
    cells (English 1.0.3 edition, skipped where absent) or a reader's (`_readers_nin`)."""
    real = real_d2l("jax")
    if source == "readers":
        from flax import linen as nn

        return _readers_nin(real, nn), 67
    chapter = chapter_with_tab("jax")
    namespace = {"__name__": "__chapter__", "tab": Tab("jax")}
    for cell in cells(chapter.read_text(encoding="utf-8"), "jax"):
        exec(compile(cell.source, f"<chapter cell {cell.index}>", "exec"), namespace)
        if "class NiN" in cell.source:
            break
    assert namespace["d2l"] is real
    return namespace["NiN"], 224  # its global pooling is a 5 x 5 window: 224 x 224 inputs


def _jax_batches(size, count, seed=0):
    from jax import numpy as jnp

    rng = np.random.default_rng(seed)
    return [
        (
            jnp.asarray(rng.random((BATCH // 2, size, size, 1), dtype=np.float32)),
            jnp.asarray(rng.integers(0, 10, BATCH // 2), jnp.int32),
        )
        for _ in range(count)
    ]


@needs("jax")
@pytest.mark.parametrize("source", ["chapter", "readers"])
def test_jax_default_nin_is_the_tabs_model(source):
    """nin's NiN(lr=0.05) and the tab's: the same parameter names, shapes and count; with
    nin's weights, the same logits (fp32, inference)."""
    import jax

    B = get_backend("jax")
    TabNiN, size = _jax_model(source)
    B.set_seed(0)
    ours = B.NiN(lr=0.05)
    X = _jax_batches(size, 1)[0][0]
    theirs = TabNiN(lr=0.05, training=False)
    their_params = theirs.init(jax.random.PRNGKey(0), X)["params"]
    our_params = {"net": ours.net.params}
    shapes = jax.tree_util.tree_map(lambda a: a.shape, our_params)
    assert shapes == jax.tree_util.tree_map(lambda a: a.shape, their_params)
    assert sum(a.size for a in jax.tree_util.tree_leaves(our_params)) == 1_992_166
    expected = np.asarray(theirs.apply({"params": our_params}, X))
    got = B.predict(ours, np.asarray(X))
    assert np.abs(expected).max() > 0, "every logit is 0: the comparison would prove nothing"
    assert np.abs(got - expected).max() <= 1e-5 * np.abs(expected).max(), (got, expected)


@needs("jax")
@pytest.mark.parametrize("source", ["chapter", "readers"])
def test_jax_chapter_training_matches_d2l(source):
    """3 SGD steps at the chapter's lr, each library's own Trainer, the same key (so the same
    dropout masks): the same losses and weights. The tab's model starts from nin's weights
    (its `apply_init` hands them over)."""
    import jax

    B, real = get_backend("jax"), real_d2l("jax")
    TabNiN, size = _jax_model(source)
    B.set_seed(0)
    ours = B.NiN(lr=0.05)
    start = {"net": ours.net.params}
    theirs = TabNiN(lr=0.05)
    theirs.apply_init = lambda dummy_input, key: {"params": start}
    theirs.board.display = False
    their_losses = []
    step = theirs.training_step

    def recorded(params, batch, state):
        value, grads = step(params, batch, state)
        their_losses.append(float(value[0]))
        return value, grads

    theirs.training_step = recorded
    batches = _jax_batches(size, 3, seed=1)
    key = jax.random.PRNGKey(7)
    their_trainer = real.Trainer(max_epochs=1)
    their_trainer.fit(theirs, _Batches(batches), key=key)

    trainer = B.Trainer(max_epochs=1, progress=False, stuck_check=0)
    history = trainer.fit(ours, _Batches(batches), key=key)
    our_losses = [loss for _, loss in history.steps]

    assert len(their_losses) == len(our_losses) == 3
    np.testing.assert_allclose(our_losses, their_losses, rtol=1e-5, atol=1e-6)
    final, their_final = (
        jax.tree_util.tree_leaves(p) for p in ({"net": ours.net.params}, their_trainer.state.params)
    )
    moved = max(
        np.abs(np.asarray(a) - np.asarray(b)).max()
        for a, b in zip(final, jax.tree_util.tree_leaves(start))
    )
    assert moved > 1e-4, "the weights did not move: the comparison would prove nothing"
    for a, b in zip(final, their_final):
        a, b = np.asarray(a), np.asarray(b)
        assert np.abs(a - b).max() <= 1e-5 * max(1.0, np.abs(b).max())
