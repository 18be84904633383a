"""A run's record and its picture: `History` (each step's training loss, each epoch's metrics,
the resolved settings; saved as JSON) and `Board` (d2l's ProgressBoard for the whole run:
redrawn live in a notebook, saved as a PNG). matplotlib is imported only to draw."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np

from nin.files import atomic_write

__all__ = ["History", "Board", "finish_figure"]


class History:
    """Per-step training loss, per-epoch metrics and the run's resolved settings (`config`:
    recipe, lr, device, precision); saved as JSON."""

    def __init__(self):
        self.steps: list[tuple[float, float]] = []  # (fractional epoch, train loss)
        self.epochs: list[dict] = []
        self.config: dict = {}

    def to_dict(self) -> dict:
        return {"config": self.config, "steps": self.steps, "epochs": self.epochs}

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        h = cls()
        h.steps = [tuple(s) for s in data.get("steps", [])]
        h.epochs = list(data.get("epochs", []))
        h.config = dict(data.get("config", {}))
        return h

    def save(self, path) -> None:
        atomic_write(Path(path), json.dumps(self.to_dict(), indent=1).encode())


class Board:
    """d2l's ProgressBoard for a whole run: train loss by step, val loss and accuracy by
    epoch. Redrawn live in a notebook; `save` writes a PNG.

    `points_per_epoch` is d2l's `plot_train_per_epoch`: the training loss is drawn as that many
    averages per epoch, as d2l's board draws it; None draws every step, smoothed. `xlim` is
    d2l's (the Trainer sets it to the run's epochs)."""

    def __init__(
        self, title: str = "", live: bool | None = None, points_per_epoch: int | None = None
    ):
        if points_per_epoch is not None and points_per_epoch < 1:
            raise ValueError(
                f"points_per_epoch (plot_train_per_epoch) must be at least 1, "
                f"got {points_per_epoch}"
            )
        self.title = title
        self.live = _in_notebook() if live is None else live
        self.points_per_epoch = points_per_epoch
        self.xlabel, self.xlim = "epoch", None
        self._handle = None

    def train_curve(self, history: History) -> tuple[np.ndarray, np.ndarray]:
        """(epochs, losses) of the training curve as drawn."""
        if not history.steps:
            return np.array([]), np.array([])
        x, y = (np.array(v, dtype=float) for v in zip(*history.steps))
        if self.points_per_epoch is None:
            return x, _smooth(y)
        per_epoch = max(1, int(np.sum(x <= 1.0 + 1e-9)))
        every_n = max(1, per_epoch // self.points_per_epoch)  # d2l's every_n
        whole = len(x) // every_n * every_n
        if whole == 0:
            return x, y
        return (x[:whole].reshape(-1, every_n).mean(1), y[:whole].reshape(-1, every_n).mean(1))

    def figure(self, history: History):
        import matplotlib

        if not self.live:
            matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(5, 3.4))
        if history.steps:
            x, y = self.train_curve(history)
            ax.plot(x, y, label="train_loss", color="C0")
        if history.epochs:
            ep = [e["epoch"] for e in history.epochs]
            for key, style, color in (("val_loss", "--o", "C1"), ("val_acc", "-.s", "C2")):
                values = [e[key] for e in history.epochs]
                ax.plot(ep, values, style, label=key, color=color, markersize=4)
        ax.set_xlabel(self.xlabel)
        if self.xlim:
            ax.set_xlim(self.xlim)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right")
        if self.title:
            ax.set_title(self.title, fontsize=10)
        fig.tight_layout()
        return fig

    def draw(self, history: History) -> None:
        if not self.live:
            return
        import matplotlib.pyplot as plt
        from IPython.display import display

        fig = self.figure(history)
        if self._handle is None:
            self._handle = display(fig, display_id=True)
        else:
            self._handle.update(fig)
        plt.close(fig)

    def save(self, history: History, path) -> None:
        import matplotlib.pyplot as plt

        fig = self.figure(history)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write(Path(path), buf.getvalue())


def finish_figure(fig, path=None):
    """Lay out `fig`; saved to `path` and closed, or returned for a notebook to show."""
    fig.tight_layout()
    if path is None:
        return fig
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


def _smooth(y: np.ndarray, window: int = 20) -> np.ndarray:
    if len(y) < window:
        return y
    kernel = np.ones(window) / window
    head = np.cumsum(y[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(y, kernel, mode="valid")])


def _in_notebook() -> bool:
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:
        return False
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})
