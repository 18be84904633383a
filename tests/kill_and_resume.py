"""Run `python -m nin train ARGS...`, killing the process with SIGKILL at one point.

    python tests/kill_and_resume.py POINT -- TRAIN-ARGS...

POINT is `none`, `mid-epoch:E:B` (before training batch B, 1-based, of epoch E), `save:E`
(halfway through writing weights.npz for epoch E, leaving the temporary file a real kill
would) or `between:E` (after epoch E's checkpoint, before epoch E + 1 starts). Used by
tests/test_reliability.py; the library itself has no kill switch.
"""

import os
import signal
import sys
from pathlib import Path

from nin import callbacks, cli, files, training
from nin.backends import get_backend


def die():
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def arm(point: str, backend: str) -> None:
    kind, *numbers = point.split(":")
    numbers = [int(n) for n in numbers]
    if kind == "mid-epoch":
        epoch, batch = numbers
        Trainer = get_backend(backend).Trainer
        step = Trainer._train_step

        def train_step(self, batch_):
            if (
                self.epoch + 1 == epoch
                and self.train_batch_idx % self.num_train_batches + 1 == batch
            ):
                die()
            return step(self, batch_)

        Trainer._train_step = train_step
    elif kind == "save":
        (epoch,) = numbers
        export, write = callbacks.ExportRun.on_epoch_end, files.atomic_write
        state = {}

        def exporting(self, trainer, record):
            state["epoch"] = trainer.epoch
            return export(self, trainer, record)

        def half_written(path, data):
            if state.get("epoch") == epoch and Path(path).name == "weights.npz":
                orphan = Path(path).with_name(Path(path).name + ".killed.tmp")
                orphan.write_bytes(data[: len(data) // 2])
                die()
            return write(path, data)

        callbacks.ExportRun.on_epoch_end, files.atomic_write = exporting, half_written
    elif kind == "between":
        (epoch,) = numbers
        fit_epoch = training.TrainerBase.fit_epoch

        def next_epoch(self):
            if self.epoch == epoch:
                die()
            return fit_epoch(self)

        training.TrainerBase.fit_epoch = next_epoch
    elif kind != "none":
        raise SystemExit(f"unknown kill point {point!r}")


if __name__ == "__main__":
    point, sep, *args = sys.argv[1:]
    assert sep == "--", "usage: kill_and_resume.py POINT -- TRAIN-ARGS..."
    arm(point, args[args.index("--backend") + 1])
    sys.exit(cli.main(["train", *args]))
