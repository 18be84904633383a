"""What the training loop does besides training, one job per callback.

`TrainerBase.fit` is d2l's loop: prepare, then epochs of training steps and a validation pass.
Everything else hangs off it here, called at these points (each a method; the default does
nothing):

    before_fit(trainer)                    before any work: claim the run folder, cap a
                                           quick run
    on_fit_start(trainer)                  model and data prepared: resume, the start line
    on_epoch_start(trainer)                before the epoch's first step
    on_batch_start(trainer, logs)          before each training step, its lr set
    on_losses(trainer, losses, logs)       every sync (10 steps): the steps' losses as floats
    on_batch_end(trainer, logs)            after each training step
    on_validation_end(trainer, metrics, logs)  the epoch's validation metrics ('loss', 'acc')
    on_epoch_end(trainer, record)          after validation; `record` is the epoch's metrics
    on_fit_end(trainer)

`logs` (a `Logs`) is what the loop knows at that point, as Keras hands its callbacks `logs`:
the step, the epoch, the lr, the precision, the training rate, the losses just synced. The
Trainer runs `default_callbacks(...)` (history, NaN stop, stuck check, run folder, resume,
progress, board, checkpoint), then the caller's `callbacks=[...]`, in order. A callback of
your own:

    class PrintLR(Callback):
        def on_validation_end(self, trainer, metrics, logs):
            print(f"epoch {logs.epoch + 1}: lr {logs.lr:g}, val_acc {metrics['acc']:.4f}")

    d2l.Trainer(max_epochs=3, callbacks=[PrintLR()])
"""

from __future__ import annotations

import functools
import inspect
import math
import os
import sys
import threading
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from nin import runs
from nin.data import data_settings
from nin.errors import Message, arg
from nin.history import History
from nin.recipes import Recipe

__all__ = [
    "TrainingStuckError",
    "TrainingDivergedError",
    "Logs",
    "Callback",
    "RecordHistory",
    "TerminateOnNaN",
    "StuckCheck",
    "ProgressBar",
    "LiveBoard",
    "TimeLimit",
    "ClaimRunFolder",
    "ResumeFromCheckpoint",
    "ExportRun",
    "SaveCheckpoint",
    "run_identity",
    "check_resumable",
    "export_run_files",
    "QuickCaps",
    "StallWatchdog",
    "default_callbacks",
]


class TrainingStuckError(RuntimeError):
    """The loss stayed at chance level (ln num_classes) past the check."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite."""


@dataclass(frozen=True)
class Logs:
    """What the loop knows at a hook, handed to it (as Keras hands its callbacks `logs`), so
    that a callback reads these rather than the trainer's counters and hooks."""

    step: int  # training steps run so far in the whole run (a resume counts the earlier ones)
    epoch: int  # the epoch under way, from 0
    steps_per_epoch: int  # the training batches an epoch takes
    lr: float  # the optimizer's lr now (at `on_batch_start`: the one this step runs at)
    precision: str  # what the step computes in: 'bf16' or 'fp32'
    images_per_s: float | None = None  # this epoch's training rate at its last sync, if any
    losses: tuple[float, ...] = ()  # at `on_losses`: the losses just synced; the last: `step`'s

    @property
    def first_step(self) -> int:
        """The run-wide number (from 1) of the step whose loss is `losses[0]`."""
        return self.step - len(self.losses) + 1

    @property
    def step_in_epoch(self) -> int:
        """Training steps run so far in this epoch."""
        return self.step - self.epoch * self.steps_per_epoch


class Callback:
    """Does nothing at every point of the loop; subclasses pick the points they need.
    `writer_only`: in a data-parallel run, only the first process runs it (it prints,
    draws or writes); every process runs the others, on the same reduced losses.

    A hook gets `logs` when it names a `logs` parameter (`takes_logs`), and is called
    without it otherwise: callbacks written before `logs` existed (`on_losses(self, trainer,
    losses)`, `on_batch_end(self, trainer)`) keep working unchanged."""

    writer_only = False

    def before_fit(self, trainer) -> None:
        pass

    def on_fit_start(self, trainer) -> None:
        pass

    def on_epoch_start(self, trainer) -> None:
        pass

    def on_batch_start(self, trainer, logs: Logs) -> None:
        pass

    def on_losses(self, trainer, losses: list[float], logs: Logs) -> None:
        pass

    def on_batch_end(self, trainer, logs: Logs) -> None:
        pass

    def on_validation_end(self, trainer, metrics: dict, logs: Logs) -> None:
        pass

    def on_epoch_end(self, trainer, record: dict) -> None:
        pass

    def on_fit_end(self, trainer) -> None:
        pass


def takes_logs(hook) -> bool:
    """Whether a callback's hook names a `logs` parameter (or takes any keyword): the loop
    passes `logs` to it then, and calls it as before otherwise."""
    return _names_logs(getattr(hook, "__func__", hook))


@functools.cache
def _names_logs(function) -> bool:
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # a builtin without a signature
        return False
    return any(p.name == "logs" or p.kind is p.VAR_KEYWORD for p in parameters)


class TerminateOnNaN(Callback):
    """Stop at the first non-finite loss, named by the step that produced it."""

    def on_losses(self, trainer, losses, logs):
        for j, value in enumerate(losses):
            if not math.isfinite(value):
                step = logs.first_step + j
                batch = (step - 1) % logs.steps_per_epoch + 1
                raise TrainingDivergedError(
                    Message(
                        "the training loss became {value} at step {step} (epoch {epoch}, batch "
                        "{batch}): the run diverged. Try a lower learning rate ({lr}), gradient "
                        "clipping (Trainer(gradient_clip_val=1), in Python), or {fast} for "
                        "plain fp32.",
                        value=value,
                        step=step,
                        epoch=logs.epoch + 1,
                        batch=batch,
                        lr=arg("lr"),
                        fast=arg("fast", False),
                    )
                )


class RecordHistory(Callback):
    """`trainer.history`: each step's loss (at its fractional epoch) and each epoch's record."""

    def on_losses(self, trainer, losses, logs):
        n, first = logs.steps_per_epoch, logs.first_step
        for j, loss in enumerate(losses):
            k = first + j - logs.epoch * n  # the step's number in its epoch
            trainer.history.steps.append((logs.epoch + k / n, loss))

    def on_epoch_end(self, trainer, record):
        trainer.history.epochs.append(record)


class StuckCheck(Callback):
    """Report once, after `after` steps, a loss still at chance level (ln num_classes):
    warn, or stop with TrainingStuckError (`on_stuck='stop'`). Counted across epochs and
    resumes (from the history)."""

    def __init__(self, after: int = 150, on_stuck: str = "warn", wording=str):
        if on_stuck not in ("warn", "stop"):
            raise ValueError(f"on_stuck must be 'warn' or 'stop', got {on_stuck!r}")
        self.after, self.on_stuck, self.checked = after, on_stuck, False
        self.wording = wording

    def on_fit_start(self, trainer):
        self.checked = False

    def on_losses(self, trainer, losses):
        steps = trainer.history.steps
        if not self.after or self.checked or len(steps) < self.after:
            return
        self.checked = True
        losses = [loss for _, loss in steps]
        classes = getattr(trainer.model, "num_classes", 10)
        chance = math.log(classes)
        recent = float(np.mean(losses[-min(20, max(1, len(losses) // 2)) :]))  # the later half
        if recent > chance - 0.05:
            message = Message(
                "training looks stuck: the loss is {recent:.3f} after {batches} batches, still "
                "at chance level ln({classes}) = {chance:.3f}. The ReLUs of the last block (the "
                "class scores) can all die and leave every score constant. Try nin's recipe "
                "({nin}: He init, a linear class block, Adam with a one-cycle schedule), or a "
                "lower learning rate.",
                recent=recent,
                batches=len(losses),
                classes=classes,
                chance=chance,
                nin=arg("recipe", "nin"),
            )
            if self.on_stuck == "stop":
                raise TrainingStuckError(message)
            if not trainer.is_writer:
                return
            warnings.warn(str(message), RuntimeWarning, stacklevel=2)
            print("nin: " + self.wording(message), flush=True)


class ProgressBar(Callback):
    """The start line, a tqdm bar per epoch (loss and images/s), and one line per epoch;
    `wording` says the arguments the start line names (the CLI names its flags)."""

    writer_only = True

    def __init__(self, wording=str):
        self.wording = wording

    def on_fit_start(self, trainer):
        print("nin: " + trainer.describe(self.wording), flush=True)

    def on_epoch_start(self, trainer):
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=trainer.num_train_batches,
            leave=True,
            dynamic_ncols=True,
            desc=f"epoch {trainer.epoch + 1}/{trainer.max_epochs}",
        )
        self.losses = []

    def on_losses(self, trainer, losses, logs):
        self.losses += losses
        self.bar.set_postfix(
            loss=f"{np.mean(self.losses[-10:]):.3f}", img_s=f"{logs.images_per_s:.0f}"
        )

    def on_batch_end(self, trainer):
        self.bar.update(1)

    def on_epoch_end(self, trainer, record):
        self.bar.close()
        print(
            f"epoch {record['epoch']}: train_loss {record['train_loss']:.4f}  "
            f"val_loss {record['val_loss']:.4f}  val_acc {record['val_acc']:.4f}  "
            f"{record['images_per_s']:.0f} img/s  {record['seconds']:.0f} s",
            flush=True,
        )


class LiveBoard(Callback):
    """Redraw the trainer's board in a notebook: as often as it has points during an epoch,
    and at each epoch's end (the board itself does nothing outside a notebook)."""

    writer_only = True

    def on_epoch_start(self, trainer):
        self.every = max(1, trainer.num_train_batches // (trainer.board.points_per_epoch or 10))
        self.next = self.every

    def on_losses(self, trainer, losses, logs):
        if trainer.board.live and logs.step_in_epoch >= self.next:
            trainer.board.draw(trainer.history)
            self.next += self.every

    def on_epoch_end(self, trainer, record):
        trainer.board.draw(trainer.history)


class ClaimRunFolder(Callback):
    """Claim the run folder before any work: never a folder that holds a run, unless `resume`
    (continue it) or `overwrite` (replace it) says so (nin.runs.claim_out_dir). In a
    data-parallel run the first process claims it."""

    writer_only = True

    def __init__(self, out_dir, resume: bool = False, overwrite: bool = False):
        self.out_dir = Path(out_dir).expanduser()
        self.resume, self.overwrite = resume, overwrite

    def before_fit(self, trainer):
        runs.claim_out_dir(self.out_dir, self.resume, self.overwrite)


class ResumeFromCheckpoint(Callback):
    """Continue the run from the folder's checkpoint.npz (Keras: BackupAndRestore): it must
    fit this run field by field (`run_identity`); then the model, optimizer, RNG, epoch, lr
    and history are the checkpoint's, the run's other files are written again from them, and
    a line says how many epochs are left. In a data-parallel run every process resumes."""

    def __init__(self, out_dir, progress: bool = True, wording=str):
        self.out_dir = Path(out_dir).expanduser()
        self.progress, self.wording = progress, wording

    def on_fit_start(self, trainer):
        path = self.out_dir / "checkpoint.npz"  # claim_out_dir saw that it exists
        arrays, meta = runs.read_checkpoint(path)
        check_resumable(path, meta, run_identity(trainer), trainer.max_epochs)
        trainer._load_state_arrays({k: v for k, v in arrays.items() if not k.startswith("rng/")})
        trainer._load_rng_arrays({k[4:]: v for k, v in arrays.items() if k.startswith("rng/")})
        trainer.epoch = int(meta["epoch"])
        trainer.last_lr = meta.get("last_lr")  # the last step's, if a stop came mid-epoch
        trainer.history = History.from_dict(meta["history"])
        trainer.history.config = trainer.config()
        if not trainer.is_writer:
            return
        export_run_files(trainer, self.out_dir)  # anything older than the checkpoint, again
        if self.progress:
            left = trainer.max_epochs - trainer.epoch
            what = (
                f"{left} epoch(s) to train"
                if left
                else Message(
                    "the run had finished its epochs: nothing left to train (a constant "
                    "schedule may go on with a larger {max_epochs})",
                    max_epochs=arg("max_epochs"),
                )
            )
            line = Message(
                "nin: resumed from {path} after epoch {epoch}; {what}",
                path=path,
                epoch=trainer.epoch,
                what=what,
            )
            print(self.wording(line), flush=True)


class ExportRun(Callback):
    """After each epoch, the run's files for other tools: weights.npz (the canonical format,
    which every backend loads), history.json and board.png (`export_run_files`)."""

    writer_only = True

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir).expanduser()

    def on_epoch_end(self, trainer, record):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        export_run_files(trainer, self.out_dir)


class SaveCheckpoint(Callback):
    """After each epoch, checkpoint.npz (Keras: ModelCheckpoint): the model, optimizer and RNG
    state with what a resume must match (`run_identity`), the epoch, the last lr and the
    history. Placed after `ExportRun`: the checkpoint is the commit point, so that after a
    kill at any moment a resume starts from the last one and writes the other files again."""

    writer_only = True

    def __init__(self, out_dir):
        self.out_dir = Path(out_dir).expanduser()

    def on_epoch_end(self, trainer, record):
        self.out_dir.mkdir(parents=True, exist_ok=True)
        meta = dict(
            run_identity(trainer),
            epoch=trainer.epoch,
            max_epochs=trainer.max_epochs,
            history=trainer.history.to_dict(),
            last_lr=trainer.last_lr,  # SGD momentum's scale in Keras and MXNet (_scale_momentum)
        )
        arrays = dict(trainer._state_arrays())
        arrays.update({f"rng/{k}": v for k, v in trainer._rng_arrays().items()})
        runs.save_checkpoint(self.out_dir / "checkpoint.npz", arrays, meta)


def run_identity(trainer) -> dict:
    """What a checkpoint must match to be resumed: the model, the data and the run."""
    from nin.spec import spec_to_dict

    spec = getattr(trainer.model, "spec", None)
    recipe = getattr(trainer.model, "recipe", None)
    data = trainer.data
    return {
        "backend": trainer.backend_name,
        "spec": spec_to_dict(spec) if spec is not None else None,
        "recipe": asdict(recipe) if isinstance(recipe, Recipe) else None,
        "run": {
            **data_settings(data),
            "num_train": _length(getattr(data, "train", None)),
            "num_val": _length(getattr(data, "val", None)),
            "num_train_batches": trainer.num_train_batches,
            "num_val_batches": trainer.num_val_batches,
            "fast": bool(trainer.fast),
        },
    }


def check_resumable(path, meta: dict, mine: dict, max_epochs: int) -> None:
    """Refuse, with what differs and what to do, a checkpoint (`meta`, read from `path`)
    made for another backend, model, recipe or data, or past this run's `max_epochs`."""
    for key in ("backend", "spec"):
        if meta.get(key) != mine[key]:
            raise runs.CheckpointError(
                Message(
                    "{path} was made for another {key} ({theirs}), not this run's ({mine})"
                    "{changes}; use another {out_dir} or the matching {backend} and model.",
                    path=path,
                    key=key,
                    theirs=_short(meta.get(key)),
                    mine=_short(mine[key]),
                    changes=_spec_changes(meta.get(key), mine[key], key),
                    out_dir=arg("out_dir"),
                    backend=arg("backend"),
                )
            )
    # a checkpoint from before a field existed was made with that field's default
    recipe = meta.get("recipe") and {"label_smoothing": 0.0, **meta["recipe"]}
    run = meta.get("run") and {"augment": "none", "val_split": 0, **meta["run"]}
    differences = _field_diff(recipe, mine["recipe"], "recipe ") + _field_diff(run, mine["run"], "")
    schedule = (mine["recipe"] or {}).get("schedule", "constant")
    if schedule != "constant" and meta.get("max_epochs") not in (None, max_epochs):
        differences.append(
            f"epochs {meta['max_epochs']} vs {max_epochs} (the "
            f"{schedule} schedule is laid out over the whole run)"
        )
    if differences:
        raise runs.CheckpointError(
            Message(
                "{path} was made with other settings (checkpoint vs this run): {differences}. "
                "Resume with the checkpoint's values, or start a new run in another {out_dir}.",
                path=path,
                differences="; ".join(differences),
                out_dir=arg("out_dir"),
            )
        )
    if int(meta["epoch"]) > max_epochs:
        raise runs.CheckpointError(
            Message(
                "{path} is at epoch {epoch}, past this run's {max_epochs} epochs; resume with "
                "{arg} or more",
                path=path,
                epoch=meta["epoch"],
                max_epochs=max_epochs,
                arg=arg("max_epochs", meta["epoch"]),
            )
        )


def export_run_files(trainer, out_dir: Path) -> None:
    """weights.npz, history.json and board.png in `out_dir` for the state the trainer holds
    now."""
    spec = getattr(trainer.model, "spec", None)
    if spec is not None:  # the same weights in the canonical format, for other backends
        from nin import weights

        weights.export(trainer.backend_name, trainer.model.net, spec, out_dir / "weights.npz")
    trainer.history.save(out_dir / "history.json")
    trainer.board.save(trainer.history, out_dir / "board.png")


class StallWatchdog(Callback):
    """End this process (exit code 3, with a message) when the loop has made no progress (no
    synced losses, no batch or epoch end) for `seconds`: in a run of several processes, a
    peer that failed can leave the others waiting for ever in a sum it never joins."""

    def __init__(self, seconds: float = 600):
        self.seconds, self.last, self.done = seconds, time.monotonic(), threading.Event()

    def before_fit(self, trainer):
        self._beat()
        self.done.clear()
        threading.Thread(target=self._watch, daemon=True).start()

    def _beat(self, *_):
        self.last = time.monotonic()

    on_fit_start = on_epoch_start = on_batch_start = on_losses = on_batch_end = _beat
    on_validation_end = on_epoch_end = _beat

    def on_fit_end(self, trainer):
        self.done.set()

    def _watch(self):
        while not self.done.wait(min(5.0, self.seconds / 4)):
            if time.monotonic() - self.last > self.seconds:
                print(
                    f"error: no training progress for {self.seconds:.0f} s: another worker "
                    f"probably failed (see its output); ending this one",
                    file=sys.stderr,
                    flush=True,
                )
                os._exit(3)


class TimeLimit(Callback):
    """Stop training once `seconds` of it have passed, counted from the first epoch's start
    (checked after each step; the epoch then ends with its validation, as any epoch does).
    `off_clock`, if given, returns the seconds within that time that do not count (a
    benchmark's evaluations between epochs). `stopped` says whether it stopped the run."""

    def __init__(self, seconds: float, off_clock=None):
        self.seconds, self.off_clock, self.stopped = seconds, off_clock, False

    def on_fit_start(self, trainer):
        self.start, self.stopped = None, False

    def on_epoch_start(self, trainer):
        if self.start is None:
            self.start = time.perf_counter()

    def on_batch_end(self, trainer):
        spent = time.perf_counter() - self.start - (self.off_clock() if self.off_clock else 0)
        if spent >= self.seconds:
            trainer.stop_training = self.stopped = True


class QuickCaps(Callback):
    """A quick run: at most `epochs` epochs of `train_batches` training and `val_batches`
    validation batches, whatever the Trainer was asked (the notebooks' small mode,
    `nin.quick`)."""

    def __init__(self, epochs: int, train_batches: int, val_batches: int):
        self.epochs, self.train_batches, self.val_batches = epochs, train_batches, val_batches

    def before_fit(self, trainer):
        from nin.quick import capped

        trainer.max_epochs = min(trainer.max_epochs, self.epochs)
        trainer.limit_train_batches = capped(trainer.limit_train_batches, self.train_batches)
        trainer.limit_val_batches = capped(trainer.limit_val_batches, self.val_batches)


def _field_diff(theirs: dict | None, mine: dict | None, prefix: str) -> list[str]:
    """'name A vs B' for each field two records disagree on (None: not recorded, skipped)."""
    if not theirs or not mine:
        return []
    return [
        f"{prefix}{k.replace('_', ' ')} {theirs.get(k)!r} vs {mine.get(k)!r}"
        for k in mine
        if k in theirs and theirs[k] != mine[k]
    ]


def _spec_changes(theirs, mine, key) -> str:
    if key != "spec" or not theirs or not mine:
        return ""
    from nin.spec import spec_diff, spec_from_dict

    return "; checkpoint vs this run: " + "; ".join(
        spec_diff(spec_from_dict(theirs), spec_from_dict(mine))
    )


def _short(value) -> str:
    if isinstance(value, dict) and "layers" in value:
        return f"{value['name']}, {value['num_classes']} classes, {len(value['layers'])} layers"
    return str(value)


def _length(split) -> int | None:
    """How many examples a data module's (images, labels) split holds, if it has one."""
    try:
        return len(split[1])
    except (TypeError, IndexError):
        return None


def default_callbacks(trainer, wording=None) -> list[Callback]:
    """What every Trainer runs, as its arguments (`progress`, `out_dir`, `resume`,
    `overwrite`, `stuck_check`, `on_stuck`) say, in this order: the NaN check before anything
    records a loss; the run folder's callbacks (claim, resume, export, checkpoint, the
    checkpoint last) after the history they save, and before the progress bar, so that a
    resume (or its refusal) comes before the start line."""
    t, wording = trainer, wording or str
    found: list[Callback] = [
        TerminateOnNaN(),
        RecordHistory(),
        StuckCheck(t.stuck_check, t.on_stuck, wording),
    ]
    from nin.quick import active

    quick = active()
    if quick is not None:
        found.insert(0, QuickCaps(quick.epochs, quick.train_batches, quick.val_batches))
    if t.out_dir:  # resumes before the start line; saves before the epoch's line is printed
        found.append(ClaimRunFolder(t.out_dir, t.resume, t.overwrite))
        if t.resume:
            found.append(ResumeFromCheckpoint(t.out_dir, t.progress, wording))
        found += [ExportRun(t.out_dir), SaveCheckpoint(t.out_dir)]
    if t.progress:
        found.append(ProgressBar(wording))
    found.append(LiveBoard())
    return found
