"""The backend-neutral half of the d2l shim: the mixins (hyperparameters, Module, Classifier,
NiN) and the one loop, `TrainerBase`, whose side jobs are callbacks (nin.callbacks).

Each backend's `Trainer` subclasses `TrainerBase` and supplies only what is framework
specific: `_prepare` (device, fast paths, optimizer), `_train_step` (forward, loss, backward,
update), `_eval_step`, `_get_lr` / `_set_lr`, `_to_float`, `prepare_batch`, `clip_gradients`,
the state conversion for checkpoints and the random state (`_rng_arrays`).
"""

from __future__ import annotations

import inspect
import itertools
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from nin.callbacks import Logs, default_callbacks, takes_logs
from nin.data import data_settings
from nin.distributed import SINGLE, DataParallelMixin, Shards
from nin.errors import ArgumentError, Message, arg
from nin.history import Board, History
from nin.recipes import PIXEL_MEAN, PIXEL_STD, Recipe, lr_at, resolve_recipe

__all__ = ["HyperParameters", "ModuleMixin", "ClassifierMixin", "NiNMixin",
           "overrides_validation_step", "TrainerBase", "sample_batch"]  # fmt: skip


class HyperParameters:
    """d2l's `save_hyperparameters`: the caller's __init__ arguments become attributes."""

    def save_hyperparameters(self, ignore=()):
        frame = inspect.currentframe().f_back
        _, _, _, local_vars = inspect.getargvalues(frame)
        self.hparams = {
            k: v
            for k, v in local_vars.items()
            if k not in set(ignore) | {"self"} and not k.startswith("_") and k != "__class__"
        }
        for k, v in self.hparams.items():
            setattr(self, k, v)


class ModuleMixin(HyperParameters):
    """d2l's Module logic that no framework changes; each backend's `Module` puts this first
    among its bases, before the framework's module class, so these methods win.

    `plot_train_per_epoch` / `plot_valid_per_epoch` are d2l's: how many points per epoch the
    board draws for the training loss and for validation (nin's board draws one validation
    point per epoch, the average over the validation batches, as d2l's default does)."""

    _sink = None  # set by the Trainer while it validates: where `plot` sends metrics

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__()
        self.save_hyperparameters()
        self.board = Board(points_per_epoch=plot_train_per_epoch)

    def loss(self, y_hat, y):
        raise NotImplementedError

    def forward(self, X):
        return self.net(X)

    def configure_optimizers(self):
        """d2l's: plain SGD at `self.lr`."""
        return self._optimizer("sgd", self.lr)

    def layer_summary(self, X_shape):
        """d2l's: each top-level layer's class and output shape for a random `X_shape` input."""
        X = self._random(X_shape)
        for layer in self._top_layers(self.net):
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)

    # the backend's Module supplies these
    def _optimizer(self, name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
        raise NotImplementedError  # the framework's 'sgd' or 'adam' over the parameters

    @staticmethod
    def _random(shape):  # a random normal tensor of `shape`
        raise NotImplementedError

    @staticmethod
    def _top_layers(net) -> list:  # the top-level layers of a sequential net
        raise NotImplementedError

    def plot(self, key, value, train):
        """d2l's `plot`: send one metric to the Trainer (validation values are averaged per
        epoch; the training loss is recorded by the loop itself, every step)."""
        if self._sink is not None:
            self._sink(key, value, train)

    def training_step(self, batch):
        return self.loss(self(*batch[:-1]), batch[-1])

    def validation_step(self, batch):
        self.plot("loss", self.loss(self(*batch[:-1]), batch[-1]), train=False)


class ClassifierMixin:
    """d2l's Classifier: validation reports the loss and the accuracy."""

    def validation_step(self, batch):
        Y_hat = self(*batch[:-1])
        self.plot("loss", self.loss(Y_hat, batch[-1]), train=False)
        self.plot("acc", self.accuracy(Y_hat, batch[-1]), train=False)


def overrides_validation_step(model) -> bool:
    """Whether `model`'s class defines its own `validation_step` (then a fast path that
    compiles the library's validation must run the user's instead)."""
    return type(model).validation_step is not ClassifierMixin.validation_step


class NiNMixin:
    """The chapter's NiN from a spec and a recipe. By default the chapter's model and training
    (recipe 'book'); `recipe='nin'` opts in to nin's. `lr` and any Recipe field passed as a
    keyword (optimizer, momentum, schedule, ...) win over the recipe's defaults. The backend
    supplies `_build` (spec -> network) and `_initialize` (the recipe's init)."""

    hparams: dict

    def __init__(self, lr=None, num_classes=10, recipe="book", spec=None, **recipe_fields):
        super().__init__()
        self.save_hyperparameters()
        recipe = self._setup(lr, num_classes, recipe, spec, recipe_fields)
        self.net = self._build(self.spec)
        self._initialize(recipe.init)

    def forward(self, X):
        return super().forward(self._normalized(X))

    def configure_optimizers(self):
        r = self.recipe
        return self._optimizer(r.optimizer, self.lr, r.momentum, r.weight_decay)

    def _setup(self, lr, num_classes, recipe, spec, fields) -> "Recipe":
        """Resolve the recipe with what the caller passed (`lr` and any Recipe field in
        `fields`), which wins over the recipe's defaults; `self.lr` and `self.recipe` hold the
        values that run."""
        from nin.spec import chapter_spec, class_block_relu, with_class_block_relu

        recipe = resolve_recipe(recipe, lr=lr, **fields)
        if spec is None:  # the chapter's NiN, its class block as the recipe says
            spec = with_class_block_relu(chapter_spec(num_classes), recipe.class_block_relu)
        elif fields.get("class_block_relu") is not None:  # asked for: applied to the spec
            spec = with_class_block_relu(spec, fields["class_block_relu"])
        actual = class_block_relu(spec)  # a given spec decides; the recipe records it
        if actual is not None and actual != recipe.class_block_relu:
            recipe = replace(recipe, class_block_relu=actual)
        self.recipe, self.lr, self.spec = recipe, recipe.lr, spec
        self.label_smoothing = recipe.label_smoothing  # the loss reads it
        self.hparams["lr"] = recipe.lr
        self.normalize = recipe.normalize
        return recipe

    def _normalized(self, X):
        return (X - PIXEL_MEAN) / PIXEL_STD if self.normalize else X


@dataclass
class _EpochTally:
    """One epoch's running count: its start, the images stepped on, the losses not yet synced
    (backend scalars) and synced (floats); at the last sync, the rate and an agreed stop."""

    start: float
    seen: int = 0
    pending: list = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    agreed_stop: bool = False
    images_per_s: float | None = None  # at the last sync


class TrainerBase(DataParallelMixin, HyperParameters):
    """d2l's Trainer: `fit(model, data)` runs `max_epochs` epochs of training and validation,
    through d2l's `prepare_data`, `prepare_model`, `fit_epoch` and `prepare_batch`; all else
    the loop does (progress, history, NaN and stuck checks, the board, checkpoints) is a
    callback (nin.callbacks).

    `num_gpus=0` (d2l's default) trains on the CPU; `num_gpus=1` on the first GPU when there is
    one. Extra keyword arguments (all optional) serve the CLI and tests: `fast` (False, the
    default: plain fp32 steps, as the chapter runs them; True: bf16 where the hardware has it,
    compiled or hybridized steps, channels-last), `limit_train_batches` / `limit_val_batches`,
    `progress` (tqdm bars and the set-up line), `out_dir` (history.json, board.png,
    checkpoint.npz each epoch; a folder that holds a run is refused unless `resume`, which
    continues it, or `overwrite`, which replaces it), `stuck_check`
    (batches after which a loss still near ln(num_classes) is reported; 0 turns it off),
    `on_stuck` ('warn' or 'stop'), `board` (the live board; default: the model's),
    `callbacks` (more Callback objects, run after the defaults), `wording` (how printed
    messages, nin.errors Messages, name arguments: the CLI passes its flags'). Several
    devices: `num_gpus=N`, `devices`, `engine`, `rank` (nin.distributed.DataParallelMixin).
    """

    FAST_PATH = ""  # what the backend's fast path does, in a few words (the start line)
    FAST_BF16 = ""  # and what it adds where bf16 is native
    backend_name = ""
    # the constructor's arguments, set by save_hyperparameters
    max_epochs: int
    num_gpus: int
    gradient_clip_val: float
    fast: bool
    limit_train_batches: int | None
    limit_val_batches: int | None
    progress: bool
    resume: bool
    overwrite: bool
    stuck_check: int
    on_stuck: str
    devices: int | None

    def __init__(
        self,
        max_epochs,
        num_gpus=0,
        gradient_clip_val=0,
        *,
        fast=False,
        limit_train_batches=None,
        limit_val_batches=None,
        progress=True,
        out_dir=None,
        resume=False,
        overwrite=False,
        stuck_check=150,
        on_stuck="warn",
        board=None,
        callbacks=(),
        wording=None,
        devices=None,
        engine=None,
        rank=None,
    ):
        if resume and not out_dir:
            raise ArgumentError(
                "{resume} needs {out_dir}: the folder of the run to continue",
                resume=arg("resume", True),
                out_dir=arg("out_dir"),
            )
        if devices is not None and (
            isinstance(devices, bool) or not isinstance(devices, int) or devices < 1
        ):
            raise ArgumentError(
                "{devices} must be a whole number >= 1, got {got!r}",
                devices=arg("devices"),
                got=devices,
            )
        self.save_hyperparameters(ignore=("board", "callbacks", "wording", "engine", "rank"))
        self.engine, self.rank = engine, rank
        self.world = SINGLE  # where this process stands; `_prepare` sets it
        self.out_dir = Path(out_dir).expanduser() if out_dir else None
        self.callbacks = default_callbacks(self, wording) + list(callbacks)
        self._board_arg = board
        self.board = board
        self.history = History()
        self.stop_training = False  # set by a callback (TimeLimit): `fit` ends after that step
        self.last_lr = None  # the scheduled lr of the last step; `fit` keeps it
        self.bf16 = False  # whether the fast path computes in bf16; `prepare_model` sets it
        self.device = None  # where the step runs; `prepare_model` sets it

    # --- the backend supplies these ------------------------------------------------------
    def _prepare(self, model, data):  # device, fast paths; returns the optimizer
        raise NotImplementedError

    def _train_step(self, batch):  # -> loss as a backend scalar (not yet synced)
        raise NotImplementedError

    def _eval_step(self, batch):  # runs model.validation_step without gradients
        raise NotImplementedError

    def _get_lr(self) -> float:  # the optimizer's learning rate now
        raise NotImplementedError

    def _set_lr(self, lr: float) -> None:
        raise NotImplementedError

    def _optimizer_name(self) -> str:  # the class that updates the weights
        return type(self.optim).__name__

    def _scale_momentum(self, ratio: float) -> None:
        """Before the lr changes to `ratio` times the last step's: SGD's momentum as
        torch.optim keeps it (the sum of past gradients, `b = mu b + g`, `w -= lr b`) for
        the backends whose optimizers keep it with the lr inside (Keras and MXNet: `m = mu m -
        lr g`, `w += m`; `m` is `-lr b`): their `m` is scaled by the ratio, so that under a
        changing lr the three apply one rule (at a constant lr the two rules already agree).
        PyTorch's: nothing to do."""

    def _to_float(self, value) -> float:
        raise NotImplementedError

    def _state_arrays(self) -> dict[str, np.ndarray]:  # model and optimizer state
        raise NotImplementedError

    def _load_state_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        raise NotImplementedError

    def _train_mode(self, on: bool) -> None:  # the model's training flag, where it has one
        pass

    # RNG state that decides the rest of the run, saved in checkpoints
    def _rng_arrays(self) -> dict[str, np.ndarray]:
        return {}

    def _load_rng_arrays(self, arrays: dict[str, np.ndarray]) -> None:
        pass

    def _start_epoch_rng(self, epoch: int) -> None:
        pass

    def prepare_batch(self, batch):
        """d2l's hook: a batch as the step takes it (each backend moves it to the device)."""
        return batch

    # --- the loop, written once ----------------------------------------------------------
    def prepare_data(self, data):
        """d2l's: the loaders and how many batches of each one epoch takes."""
        self.data = data
        self.train_dataloader = data.train_dataloader()
        self.val_dataloader = data.val_dataloader()
        self.num_train_batches = _limited_len(self.train_dataloader, self.limit_train_batches)
        self.num_val_batches = (
            0
            if self.val_dataloader is None
            else _limited_len(self.val_dataloader, self.limit_val_batches)
        )

    def prepare_model(self, model):
        """d2l's: the board, then the device, the fast path and the optimizer for `model`."""
        self.model = model
        recipe = getattr(model, "recipe", None)
        if isinstance(recipe, Recipe) and getattr(model, "lr", recipe.lr) != recipe.lr:
            model.recipe = replace(recipe, lr=model.lr)  # `model.lr = x` set after building
        self.board = self._board_arg or getattr(model, "board", None) or Board()
        self.board.xlim = [0, self.max_epochs]
        self.optim = self._prepare(model, self.data)
        if self.world.parallel:
            self._shard_loaders()
        recipe = getattr(model, "recipe", None)
        # the schedule scales the optimizer's own lr; without a recipe the lr stays as set
        self.schedule = recipe.schedule if isinstance(recipe, Recipe) else "constant"
        self.base_lr = self._get_lr()
        self._train_mode(True)

    def prepare(self, model, data):
        """`prepare_data` then `prepare_model`: what `fit` does before the first batch."""
        self.prepare_data(data)
        self.prepare_model(model)

    def fit(self, model, data):
        """Train `model` on `data` for `max_epochs` (from the checkpoint's epoch with `resume`);
        may be called again on the same trainer. Returns the history."""
        self._emit("before_fit")  # before any work: a run is never overwritten by accident
        self.prepare(model, data)
        self.epoch, self.history, self.val_batch_idx = 0, History(), 0
        self.last_lr = None  # the scheduled lr of the last step (a resume restores it)
        self.stop_training = False  # a callback may set it: the loop ends after that step
        self.history.config = self.config()
        self._emit("on_fit_start")  # a resume sets the epoch and the history here
        if hasattr(self.train_dataloader, "set_epoch"):  # the shuffles of an unbroken run
            self.train_dataloader.set_epoch(self.epoch)
        self.train_batch_idx = self.epoch * self.num_train_batches
        self._total_steps = self.max_epochs * self.num_train_batches
        while self.epoch < self.max_epochs and not self.stop_training:
            self._start_epoch_rng(self.epoch)
            self.fit_epoch()
            if self.world.size > 1:  # a stop asked for after the epoch's last sync, agreed on
                self.stop_training = bool(self._all_sum(np.array([float(self.stop_training)]))[0])
        self._emit("on_fit_end")
        return self.history

    def fit_epoch(self):
        """d2l's: one epoch of training steps, then validation (and the epoch's record)."""
        tally = _EpochTally(start=time.perf_counter())
        self._train_mode(True)
        self._emit("on_epoch_start")
        for i, batch in enumerate(self.train_dataloader):
            if i >= self.num_train_batches:
                break
            self._set_scheduled_lr()
            self._emit("on_batch_start", logs=self._logs(tally))
            self._take_step(batch, tally)
            if len(tally.pending) >= 10 or i + 1 == self.num_train_batches:  # sync every 10 steps
                self._sync(tally)
            self._emit("on_batch_end", logs=self._logs(tally))
            if self._stops_after_step(tally):
                break
        train_seconds = time.perf_counter() - tally.start
        metrics = self._validate()
        self._emit("on_validation_end", metrics, logs=self._logs(tally))
        record = {
            "epoch": self.epoch + 1,
            "train_loss": float(np.mean(tally.losses)) if tally.losses else float("nan"),
            **{f"val_{k}": v for k, v in metrics.items()},
            "images_per_s": tally.seen / train_seconds,
            "seconds": time.perf_counter() - tally.start,
        }
        self.epoch += 1
        self._emit("on_epoch_end", record)

    def _set_scheduled_lr(self) -> None:
        """The schedule's lr for the step about to run (`lr_at`), SGD momentum rescaled to it
        (`_scale_momentum`); a constant schedule leaves the optimizer's lr alone."""
        if self.schedule == "constant":
            return
        step = self.train_batch_idx
        lr = lr_at(step, self._total_steps, self.base_lr, self.schedule)
        before = self.last_lr  # None: no step yet, or a checkpoint from before it was kept
        if before is None and step:
            before = lr_at(step - 1, self._total_steps, self.base_lr, self.schedule)
        if before:  # the momentum, in the backend's rule, for this step's lr
            self._scale_momentum(lr / before)
        self._set_lr(lr)
        self.last_lr = lr

    def _take_step(self, batch, tally: _EpochTally) -> None:
        """One training step on `batch`; its loss waits in `tally`, not yet synced."""
        if isinstance(batch, Shards):  # data-parallel: this process's parts
            tally.pending.append(self._parallel_step(batch))
            tally.seen += batch.total
        else:
            tally.pending.append(self._train_step(self.prepare_batch(batch)))
            tally.seen += len(batch[-1])
        self.train_batch_idx += 1

    def _sync(self, tally: _EpochTally) -> None:
        """The pending steps' losses as floats (summed over processes), to the callbacks."""
        synced = [self._to_float(v) for v in tally.pending]
        if self.world.size > 1:  # each process holds its part of each loss, and its stop request
            summed = self._all_sum(np.array([*synced, float(self.stop_training)]))
            synced, tally.agreed_stop = [float(v) for v in summed[:-1]], bool(summed[-1] > 0)
        tally.pending.clear()
        tally.losses.extend(synced)
        tally.images_per_s = tally.seen / (time.perf_counter() - tally.start)
        self._emit("on_losses", synced, logs=self._logs(tally, synced))

    def _logs(self, tally: _EpochTally, losses=()) -> Logs:
        """What the callbacks are told at this point of the loop (nin.callbacks.Logs)."""
        return Logs(
            step=self.train_batch_idx,
            epoch=self.epoch,
            steps_per_epoch=self.num_train_batches,
            lr=self._get_lr(),
            precision="bf16" if self.bf16 else "fp32",
            images_per_s=tally.images_per_s,
            losses=tuple(losses),
        )

    def _stops_after_step(self, tally: _EpochTally) -> bool:
        """Whether the epoch ends after this step: several processes stop together, on the
        step after the sync where they agreed to; one process when a callback asked, its last
        losses synced first, so that they are recorded too."""
        if self.world.size > 1:
            if tally.agreed_stop:
                self.stop_training = True
            return tally.agreed_stop
        if self.stop_training and tally.pending:
            self._sync(tally)
        return self.stop_training

    def _emit(self, event: str, *args, logs: Logs | None = None) -> None:
        """Call `event` on each callback (a writer-only one on the first process alone); with
        `logs` for a hook that takes it (nin.callbacks.takes_logs)."""
        writer = self.is_writer
        for callback in self.callbacks:
            if writer or not getattr(callback, "writer_only", False):
                hook = getattr(callback, event)
                if logs is not None and takes_logs(hook):
                    hook(self, *args, logs=logs)
                else:
                    hook(self, *args)

    def config(self) -> dict:
        """The values this run trains with, as resolved: recorded in history.json and the
        checkpoint."""
        recipe = getattr(self.model, "recipe", None)
        return {
            "recipe": asdict(recipe) if isinstance(recipe, Recipe) else None,
            "optimizer": self._optimizer_name(),
            "lr": self.base_lr,
            "schedule": self.schedule,
            "device": str(self.device),
            "precision": "bf16" if self.bf16 else "fp32",
            **data_settings(self.data),
            "fast": bool(self.fast),
            "max_epochs": self.max_epochs,
            "num_train_batches": self.num_train_batches,
            "num_val_batches": self.num_val_batches,
            "gradient_clip_val": self.gradient_clip_val,
            "replicas": self.world.replicas,
            "engine": self.world.engine or None,
        }

    def describe(self, wording=str) -> str:
        """The one line printed when training starts: what runs, where, in which precision,
        and how to change it; `wording` says the arguments it names (the CLI: its flags)."""
        recipe = getattr(self.model, "recipe", None)
        what = (
            recipe.describe()
            if isinstance(recipe, Recipe)
            else f"{self._optimizer_name()} at lr {self.base_lr:g} (the model's optimizer)"
        )
        if self.fast:
            step = Message(
                "{precision} fast path ({path}{bf16}; {fast} for the plain fp32 step)",
                precision="bf16" if self.bf16 else "fp32",
                path=self.FAST_PATH,
                bf16=", " + self.FAST_BF16 if self.bf16 else "; no native bf16 here",
                fast=arg("fast", False),
            )
        else:
            step = Message(
                "fp32, the plain step as the chapter runs it ({fast} for the fast path)",
                fast=arg("fast", True),
            )
        where = self.world.describe() or f"on {self.device}"
        if threads := self._threads_note():
            where += f", {threads}"
        line = Message("training {where}, {step}; {what}", where=where, step=step, what=what)
        return wording(line)

    def _threads_note(self) -> str:
        """The start line's words on the CPU threads the backend runs on, if any."""
        return ""

    def train_batch(self, batch) -> float:
        """One update on one batch; returns its loss (synchronized)."""
        if self.world.parallel:
            raise ValueError(
                "`train_batch` steps one process alone; a data-parallel Trainer steps all of "
                "them together in `fit`"
            )
        return self._to_float(self._train_step(self.prepare_batch(batch)))

    def eval_batch(self, batch) -> dict:
        """One validation step (inference mode, the fast path if on); its metrics, synced."""
        self._train_mode(False)
        try:
            return self._evaluate([batch])
        finally:
            self._train_mode(True)

    def _evaluate(self, batches, across_processes: bool = False) -> dict:
        """Validation steps over `batches`; the metrics `plot`ted, averaged per example (over
        every process's batches with `across_processes`, in a data-parallel run)."""
        self._val_sums: dict[str, float] = {}
        self._val_counts: dict[str, int] = {}
        sink, self.model._sink = self.model._sink, self._record
        try:
            for batch in batches:
                self._val_batch_size = len(batch[-1])
                self._eval_step(self.prepare_batch(batch))
                self.val_batch_idx = getattr(self, "val_batch_idx", 0) + 1
        finally:
            self.model._sink = sink
        keys = list(self._val_sums)  # the order the model plots them, alike in every process
        if across_processes and self.world.size > 1:  # each process saw its share: sum them
            summed = self._all_sum(
                np.array([self._val_sums[k] for k in keys] + [self._val_counts[k] for k in keys])
            )
            self._val_sums = dict(zip(keys, summed[: len(keys)]))
            self._val_counts = dict(zip(keys, summed[len(keys) :]))
        return {k: float(self._val_sums[k] / self._val_counts[k]) for k in keys}

    def _record(self, key, value, train):
        """The model's `plot` calls land here: accumulate validation metrics per example."""
        if not train:
            n = self._val_batch_size
            self._val_sums[key] = self._val_sums.get(key, 0.0) + self._to_float(value) * n
            self._val_counts[key] = self._val_counts.get(key, 0) + n

    def _validate(self) -> dict[str, float]:
        """Every metric the model's `validation_step` plots, averaged per example; the model
        stays in inference mode afterwards, as d2l leaves it (`fit_epoch` turns training on)."""
        mean = {"loss": float("nan"), "acc": float("nan")}
        if self.num_val_batches:
            self._train_mode(False)
            mean.update(
                self._evaluate(
                    itertools.islice(self.val_dataloader, self.num_val_batches),
                    across_processes=True,
                )
            )
        return mean


def sample_batch(data):
    """One batch of `data` (validation's if it has one) to build or materialize a model with;
    a fresh loader, so that the training order is untouched."""
    loader = data.val_dataloader()
    if loader is None:
        loader = data.train_dataloader()
    return next(iter(loader))


def _limited_len(loader, limit) -> int:
    return len(loader) if limit is None else min(len(loader), limit)
