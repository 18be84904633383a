"""The chapter's cells on the real d2l 1.0.3 package against nin's `NiN`: the same model, the
same training. For each tab, the chapter's own `nin_block` and `NiN` cells run with `d2l`
bound to the real package; nin's default `NiN(lr=0.05)` gets the same weights by position;
then both must give the same logits, and the same losses and weights after 5 SGD steps, each
trained by its own library's Trainer on the same batches.
"""

import numpy as np
import pytest

from conftest import BACKENDS, chapter_path, real_d2l
from nin.backends import get_backend
from nin.chapter import TABS, Tab, cells

TAB_OF = {backend: tab for tab, backend in TABS.items()}
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


@pytest.mark.parametrize("backend", BACKENDS)
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


@pytest.mark.parametrize("backend", BACKENDS)
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
