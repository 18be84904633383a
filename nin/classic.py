"""The classic d2l helpers the 0.17 and 2.0 editions' chapters call (`load_data_fashion_mnist`,
`train_ch6`, `evaluate_accuracy_gpu`, `Animator`, `Accumulator`, `Timer`), as d2l 1.0.3
defines them: the parts no framework changes, written once.

Each backend's `classic` module (nin/backends/<name>/classic.py) supplies the framework's
parts (the step, the Xavier init, the accuracy count, the device moves) and calls `fit_ch6`
for the loop, the curves and the two printed lines:

    loss 0.563, train acc 0.789, test acc 0.801
    5123.4 examples/sec on cpu

The curves are an `Animator`: redrawn in place in a Jupyter notebook, drawn but not shown
elsewhere (its `fig` can be saved)."""

from __future__ import annotations

import itertools
import time
from numbers import Integral
from typing import Callable, Iterable

import numpy as np

from nin.quick import active

__all__ = ["Accumulator", "Timer", "Animator", "CLASSIC_NAMES", "epochs_to_run",
           "fit_ch6", "mean_accuracy", "make_load_data"]  # fmt: skip

# what every backend's classic module offers (its __all__), d2l 1.0.3's names
CLASSIC_NAMES = ("load_data_fashion_mnist", "train_ch6", "evaluate_accuracy_gpu", "Animator",
                 "Accumulator", "Timer")  # fmt: skip
LEGEND = ["train loss", "train acc", "test acc"]


class Accumulator:
    """Running sums of `n` numbers: `add(a, b, ...)` adds each value, made a Python float,
    to its own sum; `acc[i]` reads sum i."""

    def __init__(self, n):
        self.data = [0.0] * n

    def add(self, *args):
        self.data = [total + float(value) for total, value in zip(self.data, args)]

    def reset(self):
        self.data = [0.0] * len(self.data)

    def __getitem__(self, idx):
        return self.data[idx]


class Timer:
    """Wall-clock intervals in seconds: `start()`, then `stop()` records one (started at
    creation); `sum`, `avg` and `cumsum` read the records."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.start()

    def start(self):
        self.tik = time.perf_counter()

    def stop(self):
        self.times.append(time.perf_counter() - self.tik)
        return self.times[-1]

    def avg(self):
        return sum(self.times) / len(self.times)

    def sum(self):
        return sum(self.times)

    def cumsum(self):
        return np.cumsum(self.times).tolist()


class Animator:
    """Curves that grow one point at a time: `add(x, ys)` appends one point to each curve
    (a None skips that curve) and redraws them all on the first axes.

    In a Jupyter notebook the figure is shown and redrawn in place at each `add`; anywhere
    else nothing is shown or printed (no window, no text), and `self.fig` holds the drawing
    to save (`animator.fig.savefig('curves.png')`)."""

    def __init__(
        self,
        xlabel=None,
        ylabel=None,
        legend=None,
        xlim=None,
        ylim=None,
        xscale="linear",
        yscale="linear",
        fmts=("-", "m--", "g-.", "r:"),
        nrows=1,
        ncols=1,
        figsize=(3.5, 2.5),
    ) -> None:
        from nin.history import _in_notebook

        self.live = _in_notebook()
        if self.live:  # pyplot's figure: the notebook's inline backend knows how to show it
            import matplotlib.pyplot as plt

            self.fig, axes = plt.subplots(nrows, ncols, figsize=figsize)
            plt.close(self.fig)  # shown by `display` below, not again at the cell's end
        else:  # a figure outside pyplot: no GUI backend is asked for, nothing pops up
            from matplotlib.figure import Figure

            self.fig = Figure(figsize=figsize)
            axes = self.fig.subplots(nrows, ncols)
        self.axes = [axes] if nrows * ncols == 1 else axes
        self.axis_settings = dict(xlabel=xlabel, ylabel=ylabel, xlim=xlim, ylim=ylim,
                                  xscale=xscale, yscale=yscale, legend=legend or [])  # fmt: skip
        self.X: list[list] | None = None
        self.Y: list[list] | None = None
        self.fmts = fmts
        self._handle = None

    def add(self, x, y):
        ys = list(y) if hasattr(y, "__len__") else [y]
        xs = list(x) if hasattr(x, "__len__") else [x] * len(ys)
        if not self.X or not self.Y:
            self.X, self.Y = [[] for _ in ys], [[] for _ in ys]
        for i, (a, b) in enumerate(zip(xs, ys)):
            if a is not None and b is not None:
                self.X[i].append(a)
                self.Y[i].append(b)
        ax = self.axes[0]
        ax.cla()
        for xs_i, ys_i, fmt in zip(self.X, self.Y, self.fmts):
            ax.plot(xs_i, ys_i, fmt)
        self._set_axes(ax)
        self._show()

    def _set_axes(self, ax):
        s = self.axis_settings
        ax.set_xlabel(s["xlabel"])
        ax.set_ylabel(s["ylabel"])
        ax.set_xscale(s["xscale"])
        ax.set_yscale(s["yscale"])
        for limits, set_limits in ((s["xlim"], ax.set_xlim), (s["ylim"], ax.set_ylim)):
            if limits is None or limits[0] != limits[1]:  # [1, 1] (one epoch): autoscaled,
                set_limits(limits)  # without matplotlib's warning of a singular range
        if s["legend"]:
            ax.legend(s["legend"])
        ax.grid()

    def _show(self):
        if not self.live:
            return
        from IPython.display import display

        if self._handle is None:
            self._handle = display(self.fig, display_id=True)
        else:
            self._handle.update(self.fig)


def make_load_data(data_class) -> Callable:
    """d2l's `load_data_fashion_mnist` over a backend's `FashionMNIST` (nin.data): the same
    folder (`NIN_DATA_DIR`, else nin's cache, downloaded and MD5-checked), the same batches
    as nin's data module, as the backend's tensors."""

    def load_data_fashion_mnist(batch_size, resize=None):
        """(training batches, shuffled anew each pass; test batches, in order): images in
        [0, 1], `resize` x `resize` (28 x 28 when None), and their labels."""
        data = data_class(batch_size=batch_size, resize=resize or 28)
        return data.train_dataloader(), data.val_dataloader()  # val is the test split

    return load_data_fashion_mnist


def mean_accuracy(data_iter: Iterable, count: Callable) -> float:
    """The fraction of correct predictions over `data_iter`; `count(X, y)` gives one batch's
    (correct predictions, examples)."""
    metric = Accumulator(2)
    for X, y in _capped(data_iter, "val_batches"):
        metric.add(*count(X, y))
    return metric[0] / metric[1]


def epochs_to_run(train_iter, num_epochs) -> int:
    """`num_epochs`, checked before any work (d2l would fail after the last batch), and
    capped in the quick mode (nin.quick), as every Trainer is."""
    if isinstance(num_epochs, bool) or not isinstance(num_epochs, Integral) or num_epochs < 1:
        raise ValueError(f"num_epochs must be a whole number of at least 1, got {num_epochs!r}")
    try:
        empty = len(train_iter) == 0
    except TypeError:
        raise TypeError(
            f"train_iter must have a length (the batches per epoch place the curve's points), "
            f"got a {type(train_iter).__name__}; pass a list or a data loader"
        ) from None
    if empty:
        raise ValueError("train_iter holds no batches: nothing to train on")
    quick = active()
    return min(int(num_epochs), quick.epochs) if quick else int(num_epochs)


def _capped(batches: Iterable, field: str) -> Iterable:
    quick = active()
    return itertools.islice(batches, getattr(quick, field)) if quick else batches


def fit_ch6(
    step: Callable,
    evaluate: Callable,
    train_iter,
    test_iter,
    num_epochs: int,
    device,
    start_epoch: Callable = lambda: None,
) -> tuple[float, float, float]:
    """d2l's train_ch6 loop: `start_epoch()` (PyTorch's train mode), then `step(X, y)` per
    batch, which trains and returns (the batch's summed loss, its correct predictions, its
    examples); `evaluate(test_iter)` after each epoch gives the test accuracy. Draws the
    three curves (five training points an epoch, one test point), prints the last epoch's
    loss and accuracies and the examples per second the steps took. Returns (train loss,
    train accuracy, test accuracy) of the last epoch."""
    num_batches = len(train_iter)
    quick = active()
    if quick:
        num_batches = min(num_batches, quick.train_batches)
    every = max(1, num_batches // 5)  # d2l 1.0.3 divides by 0 under 5 batches
    animator = Animator(xlabel="epoch", xlim=[1, num_epochs], legend=LEGEND)
    timer, examples = Timer(), 0.0
    train_l = train_acc = test_acc = float("nan")
    for epoch in range(num_epochs):
        metric = Accumulator(3)  # summed loss, correct predictions, examples
        start_epoch()
        for i, (X, y) in enumerate(itertools.islice(train_iter, num_batches)):
            timer.start()
            metric.add(*step(X, y))  # the floats wait for the step's end, as d2l's timing
            timer.stop()
            train_l, train_acc = metric[0] / metric[2], metric[1] / metric[2]
            if (i + 1) % every == 0 or i == num_batches - 1:
                animator.add(epoch + (i + 1) / num_batches, (train_l, train_acc, None))
        test_acc = evaluate(test_iter)
        animator.add(epoch + 1, (None, None, test_acc))
        examples += metric[2]
    print(f"loss {train_l:.3f}, train acc {train_acc:.3f}, test acc {test_acc:.3f}")
    print(f"{examples / timer.sum():.1f} examples/sec on {device}")
    return train_l, train_acc, test_acc
