"""One training run set up in one place: the seed, then the data module, the model and the
Trainer, each built with the run's settings (`RunSettings`), for any backend.

    from nin.backends import get_backend
    from nin.runner import RunSettings, build_run

    run = build_run(get_backend("torch"), RunSettings(recipe="sprint", epochs=2, resize=67))
    history = run.fit()

The CLI's `train`, `nin.experiment` and the time-to-accuracy benchmark all start a run this
way, so that a setting means the same in each. The backend module is an argument: this
module imports no framework and sits below the backends.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nin.recipes import Recipe
from nin.spec import NetSpec

__all__ = ["RunSettings", "Run", "build_run"]


@dataclass(frozen=True)
class RunSettings:
    """What one run trains, on what data, for how long and where it writes; every field is
    passed as it is to the data module, the model or the Trainer (`build_run`)."""

    recipe: Recipe | str = "book"  # NiN's `recipe`: a name in RECIPES or a Recipe
    spec: NetSpec | None = None  # NiN's `spec` (None: the chapter's, as the recipe says)
    epochs: int = 1  # the Trainer's `max_epochs`
    batch_size: int = 128  # the data module's
    resize: int = 96  # the input's side: images are resized to resize x resize
    seed: int = 0  # the framework's seed (the initial weights) and the data's draws
    augment: str = "none"  # the data module's (nin.data.AUGMENTATIONS)
    val_split: int = 0  # training images held out for validation (0: the test split)
    root: str | Path | None = None  # the Fashion-MNIST folder (None: NIN_DATA_DIR or cache)
    limit_train_batches: int | None = None  # batches an epoch (None: all of them)
    limit_val_batches: int | None = None
    fast: bool = False  # the Trainer's fast path (bf16 where native, compiled steps)
    num_gpus: int = 1  # the first GPU when there is one (the Trainer's own default is 0)
    progress: bool = True  # the start line, progress bars and epoch lines
    out_dir: str | Path | None = None  # the run folder (None: nothing written)
    resume: bool = False  # continue the run in `out_dir`
    overwrite: bool = False  # replace the run in `out_dir`
    stuck_check: int = 150  # steps after which a loss at chance level is reported (0: off)
    on_stuck: str = "warn"  # or 'stop'


# the RunSettings fields that go to the Trainer, by the Trainer's names
_TRAINER_FIELDS = {
    "epochs": "max_epochs",
    "num_gpus": "num_gpus",
    "fast": "fast",
    "limit_train_batches": "limit_train_batches",
    "limit_val_batches": "limit_val_batches",
    "progress": "progress",
    "out_dir": "out_dir",
    "resume": "resume",
    "overwrite": "overwrite",
    "stuck_check": "stuck_check",
    "on_stuck": "on_stuck",
}


@dataclass
class Run:
    """A run set up and not yet trained: its data module, model and Trainer."""

    data: Any
    model: Any
    trainer: Any

    def fit(self):
        """Train the model on the data (`trainer.fit`); returns the history."""
        return self.trainer.fit(self.model, self.data)


def build_run(backend, settings: RunSettings, **trainer_extras) -> Run:
    """The run `settings` describe on `backend` (the backend module,
    `nin.backends.get_backend(name)`): the seed set first, then the data module, the model
    and the Trainer, in the order the chapter builds them. `trainer_extras` go to the Trainer
    as they are: what is not a setting of the run (`callbacks`, `wording`, an engine's
    `devices` / `engine` / `rank`, `gradient_clip_val`, `board`)."""
    if isinstance(backend, str):
        raise TypeError(
            f"pass the backend module, `nin.backends.get_backend({backend!r})`, not its name"
        )
    given_twice = [
        f"RunSettings.{f}" for f, name in _TRAINER_FIELDS.items() if name in trainer_extras
    ]
    if given_twice:
        raise TypeError(
            f"a setting of the run given as a Trainer extra: set {', '.join(given_twice)} instead"
        )
    s = settings
    backend.set_seed(s.seed)
    data = backend.FashionMNIST(
        batch_size=s.batch_size,
        resize=(s.resize, s.resize),
        root=s.root,
        seed=s.seed,
        augment=s.augment,
        val_split=s.val_split,
    )
    model = backend.NiN(recipe=s.recipe, spec=s.spec)
    mine = {name: getattr(s, f) for f, name in _TRAINER_FIELDS.items()}
    trainer = backend.Trainer(**mine, **trainer_extras)
    return Run(data, model, trainer)
