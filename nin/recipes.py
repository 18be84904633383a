"""Recipes and plans: how the network is initialized and optimized (`Recipe`, `RECIPES`), and
how long, at what size and batch a recipe trains in the runs that compare them (`Plan`,
`PLANS`). A recipe's input standardization (`PIXEL_MEAN`, `PIXEL_STD`) and its lr schedule
(`lr_at`) travel with it. No framework is imported here."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace

from nin.errors import ArgumentError, arg

__all__ = [
    "Recipe",
    "CHOICES",
    "RECIPE_FLAGS",
    "RECIPES",
    "Plan",
    "PLANS",
    "PIXEL_MEAN",
    "PIXEL_STD",
    "get_recipe",
    "resolve_recipe",
    "lr_at",
]


@dataclass(frozen=True)
class Recipe:
    """How the network is initialized and optimized. `book` (the default of `NiN`) is the
    chapter's: Xavier init, a ReLU after every convolution, raw [0, 1] inputs,
    plain SGD at a constant lr. `nin` is opt-in: He init, a linear class block, standardized
    inputs, Adam on a one-cycle schedule; docs/training.md shows why the book's recipe can sit
    at chance (loss ln 10) for epochs. Every field is a default that the caller can override."""

    name: str
    init: str = "kaiming"  # 'kaiming' (He, for ReLU nets) or 'xavier' (the book's)
    class_block_relu: str = "none"  # ReLUs in the last (class-score) block: 'all' is the book's
    normalize: bool = True  # standardize inputs with Fashion-MNIST's mean and std
    optimizer: str = "adam"  # 'adam' or 'sgd'
    momentum: float = 0.0  # for 'sgd'
    weight_decay: float = 0.0
    schedule: str = "onecycle"  # 'onecycle' (warm-up, then cosine decay) or 'constant'
    lr: float = 1e-3  # the peak lr for 'onecycle', the lr for 'constant'
    label_smoothing: float = 0.0  # the loss's targets: 1 - e on the label, e spread evenly

    def __post_init__(self):
        if not isinstance(self.normalize, bool):
            raise ValueError(
                f"recipe {self.name!r}: normalize must be True or False, got {self.normalize!r}"
            )
        for name, allowed in CHOICES.items():
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"recipe {self.name!r}: {name} must be one of "
                    f"{', '.join(map(str, allowed))}, got {getattr(self, name)!r}"
                )
        # an lr above 1e6 overflows float32 in the frameworks' updates, and means a typo
        for name, low, high, bounds in (
            ("lr", 0, 1e6 + 1, "> 0 and at most 1e6"),
            ("momentum", 0, 1, ">= 0 and < 1"),
            ("weight_decay", 0, math.inf, ">= 0"),
            ("label_smoothing", 0, 1, ">= 0 and < 1"),
        ):
            value = getattr(self, name)
            ok = (
                isinstance(value, numbers.Real)
                and not isinstance(value, bool)
                and math.isfinite(value)
                and low <= value < high
                and (name != "lr" or value > 0)
            )
            if not ok:
                raise ValueError(
                    f"recipe {self.name!r}: {name} must be a finite number {bounds}, got {value!r}"
                )
        if self.momentum and self.optimizer != "sgd":
            raise ArgumentError(
                "recipe {name!r}: momentum {momentum} is for SGD; {optimizer} has none (use "
                "{sgd}, or drop the momentum)",
                name=self.name,
                momentum=self.momentum,
                optimizer=self.optimizer,
                sgd=arg("optimizer", "sgd"),
            )

    def changes_from(self, reference: "Recipe") -> list[str]:
        """What this recipe does differently from `reference`, one phrase per field."""
        changed = []
        for f in fields(self):
            mine, theirs = getattr(self, f.name), getattr(reference, f.name)
            if f.name != "name" and mine != theirs:
                changed.append(f"{f.name} {mine} (the chapter's: {theirs})")
        return changed

    def describe(self) -> str:
        """One line: the optimizer, lr, schedule and set-up that will run."""
        opt = self.optimizer + (f" momentum {self.momentum}" if self.momentum else "")
        wd = f", weight decay {self.weight_decay}" if self.weight_decay else ""
        inputs = "standardized inputs" if self.normalize else "raw [0, 1] inputs"
        return (
            f"recipe {self.name}: {opt} at lr {self.lr:g} ({self.schedule}{wd}), "
            f"{self.init} init, class-block ReLU {self.class_block_relu}, {inputs}"
        )


# the values each categorical Recipe field takes
CHOICES = {
    "init": ("kaiming", "xavier"),
    "class_block_relu": ("none", "hidden", "all"),
    "normalize": (True, False),
    "optimizer": ("adam", "sgd"),
    "schedule": ("onecycle", "constant"),
}

# the Recipe fields a caller may override, with what each one sets (the CLI's flag help)
RECIPE_FLAGS = {
    "lr": "learning rate, the peak of a one-cycle schedule (book: the chapter's "
    "0.05 on the command line, NiN()'s 0.1 in Python; nin: 1e-3; sprint, quality: 2e-3)",
    "optimizer": "the optimizer",
    "momentum": "SGD momentum",
    "weight_decay": "weight decay",
    "schedule": "the lr schedule",
    "init": "weight initialization",
    "class_block_relu": "ReLUs in the class-score block",
    "normalize": "standardize the inputs",
    "label_smoothing": "label smoothing e: the loss's target is 1 - e on the label and e "
    "spread over all classes (0: plain cross-entropy, the chapter's)",
}

RECIPES = {
    # the chapter's: NiN(lr=0.1) by default, NiN(lr=0.05) in its training cell
    "book": Recipe(
        "book",
        init="xavier",
        class_block_relu="all",
        normalize=False,
        optimizer="sgd",
        schedule="constant",
        lr=0.1,
    ),
    "nin": Recipe("nin"),
    # time to accuracy (benchmarks/time_to_accuracy.py, PLANS): nin's, with label smoothing
    # and a higher peak lr; `quality` adds weight decay (and its plan, augmentation)
    "sprint": Recipe("sprint", lr=2e-3, label_smoothing=0.1),
    "quality": Recipe("quality", lr=2e-3, weight_decay=5e-5, label_smoothing=0.1),
}


@dataclass(frozen=True)
class Plan:
    """How long, at what size and batch a recipe trains, for runs that compare recipes
    (benchmarks/time_to_accuracy.py): its one place, recorded with each run."""

    recipe: str  # the name in RECIPES
    lr: float | None  # None: the recipe's own
    epochs: int
    resize: int
    batch_size: int
    augment: str = "none"  # the data module's `augment` (nin.data.AUGMENTATIONS)
    tta: str = "none"  # test-time augmentation (TTA): how `tta_accuracy` scores the test split
    limit_train_batches: int | None = None  # batches an epoch (None: the whole training set)


PLANS = {
    # the chapter's training cell: NiN(lr=0.05), 10 epochs at 224 x 224, batch 128
    "book": Plan("book", 0.05, epochs=10, resize=224, batch_size=128),
    # `make train`'s until 2026-11-30
    "nin": Plan("nin", None, epochs=3, resize=96, batch_size=128),
    # to 0.90 soon, and `make train`'s (the command line's defaults): the smallest input the
    # network takes, two epochs
    "sprint": Plan("sprint", None, epochs=2, resize=67, batch_size=128),
    # to 0.90 in 83,200 images (45 s at the 1,852 images/s that issue 18 measured at 67 x 67):
    # two passes of 650 batches of 64, half the images mirrored, each test image scored with
    # its mirror image (chosen on a held-out split: docs/training.md)
    "sprint-83k": Plan(
        "sprint",
        3e-3,
        epochs=2,
        resize=67,
        batch_size=64,
        augment="flip",
        tta="flip",
        limit_train_batches=650,
    ),
    # aimed at 0.945 in ten epochs: 96 x 96, half the training images mirrored, each test
    # image scored with its mirror image (chosen on a held-out split: docs/training.md)
    "quality": Plan("quality", None, 10, resize=96, batch_size=128, augment="flip", tta="flip"),
}
# Fashion-MNIST's pixel mean and standard deviation over the training set, in [0, 1] units
PIXEL_MEAN, PIXEL_STD = 0.2860, 0.3530


def get_recipe(recipe) -> Recipe:
    """A registered recipe by name ('book', 'nin'), or a Recipe object as it is."""
    if isinstance(recipe, Recipe):
        return recipe
    if recipe not in RECIPES:
        raise ValueError(f"unknown recipe {recipe!r}; choose one of {', '.join(RECIPES)}")
    return RECIPES[recipe]


def resolve_recipe(recipe="book", **overrides) -> Recipe:
    """`recipe` (a name or a Recipe) with every override that is not None put in its place:
    the recipe supplies defaults, what the caller passes wins."""
    recipe = get_recipe(recipe)
    names = {f.name for f in fields(Recipe)} - {"name"}
    unknown = sorted(set(overrides) - names)
    if unknown:
        raise TypeError(
            f"unknown recipe field(s) {', '.join(unknown)}; the fields are "
            f"{', '.join(sorted(names))}"
        )
    given = {k: v for k, v in overrides.items() if v is not None}
    return replace(recipe, **given) if given else recipe


def lr_at(step: int, total: int, base_lr: float, schedule: str, warmup: float = 0.2) -> float:
    """Learning rate at `step` of `total`: constant, or one-cycle (linear warm-up from
    base/25 over the first 20%, then cosine decay to base/1e4)."""
    if schedule == "constant" or total <= 1:
        return base_lr
    if schedule != "onecycle":
        raise ValueError(f"unknown schedule {schedule!r}; use 'onecycle' or 'constant'")
    peak = max(1, int(total * warmup))
    if step < peak:
        return base_lr / 25 + (base_lr - base_lr / 25) * step / peak
    t = (step - peak) / max(1, total - peak)
    return base_lr / 1e4 + (base_lr - base_lr / 1e4) * 0.5 * (1 + math.cos(math.pi * t))
