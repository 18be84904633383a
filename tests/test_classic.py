"""The classic editions' API (d2l-en 0.17, d2l-zh 2.0): `load_data_fashion_mnist`,
`train_ch6`, `evaluate_accuracy_gpu`, `Animator`, `Accumulator`, `Timer`, `try_gpu`, held to
the real d2l 1.0.3 functions: the same signatures, the same printed lines, and, for the same
net, weights and batches, the same losses and final weights.

Both libraries train in this one process, so they run on the same threads (OpenMP's, TF's
intra-op pool): any difference is theirs, not the machine's."""

import inspect
import itertools
import re
import sys

import numpy as np
import pytest

from conftest import CLASSIC_BACKENDS, real_d2l
from nin import classic
from nin.backends import get_backend
from nin.chapter import d2l_shim


@pytest.fixture(params=CLASSIC_BACKENDS)
def backend(request):
    """The tabs the classic editions have (d2l-en 0.17 and d2l-zh 2.0 have no JAX tab)."""
    return request.param


SIZE, BATCH, STEPS, EPOCHS, LR = 28, 16, 8, 2, 0.1

# The net a reader of the 0.17 chapter writes from plain framework layers (nin_block: a conv
# and two 1x1 convs, each with its ReLU), made small for 28 x 28 inputs; `net` is the model
# (TensorFlow: a function returning it, as train_ch6 there takes)
READER_NET = {
    "torch": """
import torch
from torch import nn

def nin_block(in_channels, out_channels, kernel_size, strides, padding):
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size, strides, padding), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU(),
        nn.Conv2d(out_channels, out_channels, kernel_size=1), nn.ReLU())

net = nn.Sequential(
    nin_block(1, 16, kernel_size=5, strides=1, padding=2), nn.MaxPool2d(3, stride=2),
    nin_block(16, 24, kernel_size=3, strides=1, padding=1), nn.MaxPool2d(3, stride=2),
    nn.Dropout(0.5),
    nin_block(24, 10, kernel_size=3, strides=1, padding=1),
    nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten())
""",
    "mxnet": """
from mxnet import np, npx
from mxnet.gluon import nn
npx.set_np()

def nin_block(num_channels, kernel_size, strides, padding):
    blk = nn.Sequential()
    blk.add(nn.Conv2D(num_channels, kernel_size, strides, padding, activation='relu'),
            nn.Conv2D(num_channels, kernel_size=1, activation='relu'),
            nn.Conv2D(num_channels, kernel_size=1, activation='relu'))
    return blk

net = nn.Sequential()
net.add(nin_block(16, kernel_size=5, strides=1, padding=2), nn.MaxPool2D(3, 2),
        nin_block(24, kernel_size=3, strides=1, padding=1), nn.MaxPool2D(3, 2),
        nn.Dropout(0.5),
        nin_block(10, kernel_size=3, strides=1, padding=1),
        nn.GlobalAvgPool2D(), nn.Flatten())
""",
    "tensorflow": """
import tensorflow as tf

def nin_block(num_channels, kernel_size, strides, padding):
    return tf.keras.models.Sequential([
        tf.keras.layers.Conv2D(num_channels, kernel_size, strides=strides,
                               padding=padding, activation='relu'),
        tf.keras.layers.Conv2D(num_channels, kernel_size=1, activation='relu'),
        tf.keras.layers.Conv2D(num_channels, kernel_size=1, activation='relu')])

def net():
    return tf.keras.models.Sequential([
        nin_block(16, kernel_size=5, strides=1, padding='same'),
        tf.keras.layers.MaxPool2D(pool_size=3, strides=2),
        nin_block(24, kernel_size=3, strides=1, padding='same'),
        tf.keras.layers.MaxPool2D(pool_size=3, strides=2),
        tf.keras.layers.Dropout(DROPOUT),
        nin_block(10, kernel_size=3, strides=1, padding='same'),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Reshape((1, 1, 10)),
        tf.keras.layers.Flatten()])
""",
}
# the chapter's training cell, small
READER_TRAIN = """
lr, num_epochs, batch_size = 0.1, 1, 64
train_iter, test_iter = d2l.load_data_fashion_mnist(batch_size, resize=28)
d2l.train_ch6(net, train_iter, test_iter, num_epochs, lr, d2l.try_gpu())
"""
TAB_MODULE = {"torch": "torch", "mxnet": "mxnet", "tensorflow": "tensorflow"}
DEVICE = {"torch": r"cpu|cuda:\d+", "mxnet": r"cpu\(0\)|gpu\(\d+\)", "tensorflow": r"/[CG]PU:\d+"}
LOSS_LINE = re.compile(r"loss (\d+\.\d{3}), train acc (\d\.\d{3}), test acc (\d\.\d{3})")


def _reader_net(backend, dropout=0.5):
    namespace = {"DROPOUT": dropout}
    exec(READER_NET[backend], namespace)
    return namespace["net"]


def _printed(out: str) -> list[str]:
    """The lines train_ch6 prints; d2l's Animator also writes its figure's repr and the
    terminal's clear-line codes, which are not train_ch6's own."""
    out = re.sub(r"\x1b\[[0-9;]*[A-Za-z]|\r", "", out)
    keep = re.compile(r"training on |loss |[\d.]+ examples/sec on ")
    return [line for line in out.splitlines() if keep.match(line)]


def _dtype(x) -> str:
    """'float32' for a torch, MXNet or TensorFlow tensor of float32."""
    return getattr(x.dtype, "name", str(x.dtype).replace("torch.", ""))


def _weights(backend, net):
    if backend == "torch":
        return [p.detach().numpy().copy() for p in net.parameters()]
    if backend == "mxnet":
        return [p.data().asnumpy() for p in net.collect_params().values()]
    return [w.numpy() for w in net.weights]


@pytest.mark.d2l
@pytest.mark.parametrize("name", ["try_gpu", *classic.CLASSIC_NAMES])
def test_signatures_are_d2ls(backend, name):
    """Argument names, order, kinds and defaults of each function, class and public method
    as in d2l 1.0.3 (annotations aside: nin's are its own)."""
    real = real_d2l(backend)
    ours = getattr(get_backend(backend), name)
    if not hasattr(real, name):  # d2l 1.0.3's TensorFlow module has no evaluate_accuracy_gpu
        assert (backend, name) == ("tensorflow", "evaluate_accuracy_gpu")
        real = real_d2l("mxnet")  # nin's has the other tabs' arguments

    def shape(fn):
        return [(p.name, p.kind, p.default) for p in inspect.signature(fn).parameters.values()]

    theirs = getattr(real, name)
    assert shape(ours) == shape(theirs)
    if inspect.isclass(theirs):
        methods = [m for m in vars(theirs) if not m.startswith("_") or m == "__getitem__"]
        assert methods, name
        for method in methods:
            assert shape(getattr(ours, method)) == shape(getattr(theirs, method)), method


def test_load_data_gives_nin_data_modules_batches(backend, synthetic_root, monkeypatch):
    """The same folder, the same batches (order, pixels, labels, dtypes) as nin's
    FashionMNIST at that size; `resize=None` keeps 28 x 28."""
    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    B = get_backend(backend)
    for resize, size in ((None, 28), (40, 40)):
        train_iter, test_iter = B.load_data_fashion_mnist(BATCH, resize=resize)
        data = B.FashionMNIST(batch_size=BATCH, resize=size)
        for got, expected in (
            (train_iter, data.train_dataloader()),
            (test_iter, data.test_dataloader()),
        ):
            assert len(got) == len(expected) == -(-len(expected.source.labels) // BATCH)
            for (X, y), (X0, y0) in zip(got, expected, strict=True):
                n = len(y0)
                shape = (n, size, size, 1) if backend == "tensorflow" else (n, 1, size, size)
                assert tuple(X.shape) == shape and _dtype(X) == "float32"
                assert _dtype(y) == ("int64" if backend == "torch" else "int32")  # d2l's
                np.testing.assert_array_equal(B.to_numpy(X), B.to_numpy(X0))
                np.testing.assert_array_equal(B.to_numpy(y), B.to_numpy(y0))
        first, again = (B.to_numpy(next(iter(train_iter))[1]) for _ in range(2))
        assert not np.array_equal(first, again), "the training batches are shuffled each pass"


class _Recorded(classic.Accumulator):
    """An Accumulator that keeps every `add`: the loop's (summed loss, correct, examples)."""

    adds: list = []

    def add(self, *args):
        if len(self.data) == 3:
            type(self).adds.append(tuple(float(a) for a in args))
        super().add(*args)


def _recording_accumulator(monkeypatch, module):
    recorded = type("Recorded", (_Recorded,), {"adds": []})
    monkeypatch.setattr(module, "Accumulator", recorded)
    return recorded.adds


def _keras_batch_losses(monkeypatch, real):
    """d2l's TensorFlow train_ch6 runs Keras' fit: its logs hold each epoch's running mean of
    the loss, from which each batch's loss is taken (the batches are all the same size)."""
    means: list[list[float]] = []

    class Recording(real.TrainCallback):
        def on_epoch_begin(self, epoch, logs=None):
            means.append([])
            super().on_epoch_begin(epoch, logs)

        def on_train_batch_end(self, batch, logs=None):
            means[-1].append(float(logs["loss"]))

    monkeypatch.setattr(real, "TrainCallback", Recording)
    return means


def _losses_from_means(means):
    losses = []
    for epoch in means:
        sums = np.arange(1, len(epoch) + 1) * np.asarray(epoch, np.float64)
        losses.extend(np.diff(sums, prepend=0.0))
    return losses


def _as_fed(backend, batches):
    """What each train_ch6 is fed: the batches as a list, or for TensorFlow a tf.data
    Dataset of them (d2l's counts its batches with tf.data's cardinality)."""
    if backend != "tensorflow":
        return batches
    import tensorflow as tf

    X, y = (tf.stack([b[i] for b in batches]) for i in (0, 1))
    return tf.data.Dataset.from_tensor_slices((X, y))


@pytest.mark.d2l
def test_train_ch6_matches_d2l(backend, synthetic_root, monkeypatch, capsys):
    """The same reader's net, the same initial weights and batches (nin's): d2l 1.0.3's
    train_ch6 and nin's give the same per-batch losses, final weights and printed numbers
    over EPOCHS x STEPS SGD steps, fp32, dropout on.

    Both train_ch6 draw new weights inside (PyTorch: Xavier on the conv weights, biases
    kept; MXNet: every parameter, Xavier and zeros; TensorFlow: Keras' Glorot defaults as
    `net()` builds): each call starts from the same seed (`set_seed`, the framework's
    generators), so the draws, and the dropout masks after them, are the same. The biases
    PyTorch keeps are copied from d2l's net to nin's first."""
    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    B, real = get_backend(backend), real_d2l(backend)
    train_iter, test_iter = B.load_data_fashion_mnist(BATCH, resize=SIZE)
    train = _as_fed(backend, list(itertools.islice(train_iter, STEPS)))
    test = _as_fed(backend, list(itertools.islice(test_iter, 2)))
    theirs, ours, still = (_reader_net(backend) for _ in range(3))
    if backend == "torch":
        with __import__("torch").no_grad():
            for net in (ours, still):
                for mine, given in zip(net.parameters(), theirs.parameters()):
                    mine.copy_(given)

    if backend == "tensorflow":
        their_means = _keras_batch_losses(monkeypatch, real)
    else:
        their_adds = _recording_accumulator(monkeypatch, real)
    our_adds = _recording_accumulator(monkeypatch, classic)

    B.set_seed(7)
    returned = real.train_ch6(theirs, train, test, EPOCHS, LR, real.try_gpu())
    their_out = _printed(capsys.readouterr().out)
    B.set_seed(7)
    ours_returned = B.train_ch6(ours, train, test, EPOCHS, LR, B.try_gpu())
    our_out = _printed(capsys.readouterr().out)
    if backend == "tensorflow":  # TensorFlow's takes the function and returns the net
        theirs, ours = returned, ours_returned
    else:
        assert returned is None and ours_returned is None

    our_losses = [loss / n for loss, _, n in our_adds]
    if backend == "tensorflow":
        their_losses = _losses_from_means(their_means)
        # Keras keeps the running mean in fp32: a batch's loss taken back from it (k x the
        # k-th mean less (k - 1) x the one before) carries that rounding, ~2e-7 x k (1.2e-6
        # seen at k = 8); the weights below show the steps themselves agree
        tolerance = 1e-5
    else:
        their_losses = [loss / n for loss, _, n in their_adds]
        assert [a[1:] for a in our_adds] == [a[1:] for a in their_adds]  # correct, examples
        # the same fp32 operations in the same order on the same numbers, in one process on
        # the same threads: equal to the last bit here (0.0 seen); 1e-6 leaves room for a
        # kernel whose reduction order varies from call to call
        tolerance = 1e-6
    assert len(our_losses) == len(their_losses) == EPOCHS * STEPS
    np.testing.assert_allclose(our_losses, their_losses, rtol=tolerance, atol=tolerance)

    final_theirs, final_ours = _weights(backend, theirs), _weights(backend, ours)
    assert [a.shape for a in final_ours] == [a.shape for a in final_theirs]
    for a, b in zip(final_ours, final_theirs):  # equal to the last bit here, as the losses
        np.testing.assert_allclose(a, b, rtol=0, atol=1e-6 * max(1.0, np.abs(b).max()))
    # the same run at lr 0 keeps the initial weights: training moved them far from there
    B.set_seed(7)
    still = B.train_ch6(still, train, test, 1, 0.0, B.try_gpu()) or still
    capsys.readouterr()
    moved = max(np.abs(a - b).max() for a, b in zip(final_ours, _weights(backend, still)))
    assert moved > 1e-3, "the weights did not move: the comparison would prove nothing"

    # the printed lines: the same words, the same loss and accuracies (to the printed digits,
    # one unit of the last apart at most where the two sums round differently)
    mask = re.compile(r"\d+(\.\d+)?")
    assert [mask.sub("N", line) for line in our_out] == [mask.sub("N", line) for line in their_out]
    assert len(our_out) == (3 if backend == "torch" else 2)
    ours_numbers = [float(v) for v in LOSS_LINE.fullmatch(our_out[-2]).groups()]
    theirs_numbers = [float(v) for v in LOSS_LINE.fullmatch(their_out[-2]).groups()]
    np.testing.assert_allclose(ours_numbers, theirs_numbers, atol=1.01e-3)
    assert re.fullmatch(rf"\d+\.\d examples/sec on ({DEVICE[backend]})", our_out[-1])


def test_train_ch6_prints_d2ls_lines(backend, synthetic_root, monkeypatch, capsys):
    """Without the real d2l: the printed lines have d2l's form, the loss falls on the
    learnable synthetic images, and the curves hold five points an epoch and one test point."""
    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    B = get_backend(backend)
    B.set_seed(0)
    train_iter, test_iter = B.load_data_fashion_mnist(BATCH, resize=SIZE)
    animators = []

    class Kept(classic.Animator):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            animators.append(self)

    monkeypatch.setattr(classic, "Animator", Kept)
    B.train_ch6(
        _reader_net(backend), list(itertools.islice(train_iter, 10)), test_iter, 2, LR, B.try_gpu()
    )
    lines = capsys.readouterr().out.splitlines()
    assert LOSS_LINE.fullmatch(lines[-2]), lines
    assert re.fullmatch(rf"\d+\.\d examples/sec on ({DEVICE[backend]})", lines[-1]), lines
    if backend == "torch":
        assert re.fullmatch(rf"training on ({DEVICE[backend]})", lines[0]), lines
    (animator,) = animators
    assert [len(xs) for xs in animator.X] == [10, 10, 2]
    assert animator.X[0][:5] == [0.2, 0.4, 0.6, 0.8, 1.0] and animator.X[2] == [1, 2]


def test_train_ch6_refuses_before_training(backend):
    B = get_backend(backend)
    with pytest.raises(ValueError, match="num_epochs must be a whole number of at least 1"):
        B.train_ch6(None, [(None, None)], [], 0, LR, B.try_gpu())
    with pytest.raises(ValueError, match="train_iter holds no batches"):
        B.train_ch6(None, [], [], 1, LR, B.try_gpu())


def test_a_readers_classic_cells_run(backend, synthetic_root, monkeypatch, capsys):
    """The chapter's cells as a reader of the 0.17 / 2.0 editions writes them (`from d2l
    import torch as d2l`, bound to nin), small: the net, then the training cell."""
    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    monkeypatch.setitem(sys.modules, "d2l", d2l_shim())
    namespace = {"DROPOUT": 0.5}
    exec(f"from d2l import {TAB_MODULE[backend]} as d2l\n", namespace)
    exec(READER_NET[backend], namespace)
    exec(READER_TRAIN, namespace)
    assert namespace["d2l"] is get_backend(backend)
    lines = capsys.readouterr().out.splitlines()
    assert LOSS_LINE.fullmatch(lines[-2]) and "examples/sec on" in lines[-1], lines


def test_accumulator_and_timer():
    acc = classic.Accumulator(2)
    acc.add(1, np.float32(2.5))
    acc.add(2, 0.5)
    assert acc[0] == 3.0 and acc[1] == 3.0 and all(type(v) is float for v in acc.data)
    acc.reset()
    assert acc.data == [0.0, 0.0]
    timer = classic.Timer()
    first = timer.stop()
    timer.start()
    second = timer.stop()
    assert timer.times == [first, second] and timer.sum() == first + second
    assert timer.avg() == (first + second) / 2 and timer.cumsum() == [first, first + second]


def test_animator_draws_quietly_outside_a_notebook(capsys):
    animator = classic.Animator(xlabel="epoch", xlim=[1, 2], legend=["a", "b"])
    animator.add(0.5, (1.0, None))
    animator.add([1.0, 1.0], [0.8, 0.3])
    assert animator.X == [[0.5, 1.0], [1.0]] and animator.Y == [[1.0, 0.8], [0.3]]
    ax = animator.axes[0]
    assert len(ax.lines) == 2 and ax.get_xlabel() == "epoch" and ax.get_xlim() == (1.0, 2.0)
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert capsys.readouterr().out == ""  # nothing printed, nothing shown


def test_animator_redraws_in_place_in_a_notebook(monkeypatch, capsys):
    """In a notebook: shown once, then the same output updated at each `add` (no new
    output per point), and the figure left out of pyplot, so the cell does not show it twice."""
    import IPython.display
    import matplotlib.pyplot as plt

    from nin import history

    shown = []

    class Handle:
        def update(self, fig):
            shown.append(("update", fig))

    def display(fig, display_id=False):
        shown.append(("display", fig))
        return Handle()

    monkeypatch.setattr(history, "_in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    animator = classic.Animator(legend=["loss"])
    for x in (1, 2, 3):
        animator.add(x, 1.0 / x)
    assert shown == [("display", animator.fig), ("update", animator.fig), ("update", animator.fig)]
    assert animator.fig.number not in plt.get_fignums() and capsys.readouterr().out == ""
