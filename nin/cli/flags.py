"""The flags more than one command takes, each declared here once, and the argparse types
they share. A command calls `add_<flag>(p, ...)` with its own default (read from where it
lives: the backend registry, the training plans) and, where the flag means more there, its
own help. A flag sets the Python argument of its own name (`--batch-size`: `batch_size`)
but where PYTHON_NAMES says another; the CLI words library messages with that
(nin.cli.wording)."""

from __future__ import annotations

import argparse

from nin.backends import BACKENDS

__all__ = [
    "positive_int", "non_negative_int", "dropout_rate", "flag_name", "add_backend",
    "add_size", "add_batch_size", "add_num_classes", "add_json", "add_seed", "add_data_dir",
    "add_weights", "add_out", "add_overwrite", "add_epochs", "add_resize",
    "add_limit_train_batches", "add_no_fast", "add_num_gpus", "add_recipe_flags",
    "PYTHON_NAMES",
]  # fmt: skip

# The library's argument each flag sets where it is not the flag's own name (its `dest`):
# `--out` is the run's `out_dir`, `--data-dir` the data's `root`, `--epochs` the Trainer's
# `max_epochs`. (`--no-fast` sets `fast` itself: dest 'fast', store_false.)
PYTHON_NAMES = {"out": "out_dir", "data_dir": "root", "epochs": "max_epochs"}


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _checked(parse, ok, expected: str):
    """An argparse type: `parse(text)`, refused with `expected` unless `ok(value)`."""

    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return check


non_negative_int = _checked(int, lambda v: v >= 0, "a whole number >= 0")
dropout_rate = _checked(float, lambda v: 0 <= v < 1, "a rate >= 0 and < 1")


def flag_name(dest: str) -> str:
    """The flag that sets the argument `dest`: batch_size -> --batch-size."""
    return "--" + dest.replace("_", "-")


def add_backend(p, *, all_ok: bool = False) -> None:
    """--backend: a backend of the registry (nin.backends.BACKENDS), its first by default;
    with `all_ok`, also 'all', the default (resolve_backends checks the names)."""
    names = list(BACKENDS)
    kind: dict = {"default": names[0], "choices": names}
    kind["help"] = f"the framework to train with (default: {names[0]})"
    if all_ok:
        kind = {"default": "all", "help": f"{', '.join(names)} or all"}
    p.add_argument("--backend", **kind)


def add_size(p, default: int | None, help: str | None = None) -> None:
    p.add_argument("--size", type=positive_int, default=default, help=help)


def add_batch_size(p, default: int | None, help: str | None = None) -> None:
    p.add_argument("--batch-size", type=positive_int, default=default, help=help)


def add_num_classes(p) -> None:
    p.add_argument("--num-classes", type=positive_int, default=10)


def add_json(p) -> None:
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")


def add_seed(p) -> None:
    p.add_argument("--seed", type=non_negative_int, default=0)


def add_data_dir(p, help: str = "") -> None:
    """--data-dir: the folder with the Fashion-MNIST IDX files."""
    help = help or (
        "folder with the Fashion-MNIST IDX files (default: $NIN_DATA_DIR or "
        "~/.cache/nin/fashion-mnist, downloaded if missing)"
    )
    p.add_argument("--data-dir", default=None, help=help)


def add_weights(p, help: str, required: bool = False) -> None:
    """--weights: a weight file a run wrote."""
    p.add_argument("--weights", required=required, default=None, help=help)


def add_out(p, help: str, required: bool = False) -> None:
    """--out: where a command writes (a run's folder; export's file)."""
    p.add_argument("--out", required=required, default=None, help=help)


def add_overwrite(p, help: str) -> None:
    p.add_argument("--overwrite", action="store_true", help=help)


def add_epochs(p, default: int, help: str | None = None) -> None:
    p.add_argument("--epochs", type=positive_int, default=default, help=help)


def add_resize(p, default: int, help: str | None = None) -> None:
    p.add_argument("--resize", type=positive_int, default=default, help=help)


def add_limit_train_batches(p, default: int | None = None) -> None:
    p.add_argument("--limit-train-batches", type=positive_int, default=default)


def add_no_fast(p, help: str) -> None:
    """--no-fast: `fast=False` (args.fast)."""
    p.add_argument("--no-fast", dest="fast", action="store_false", help=help)


def add_num_gpus(p, default: int, help: str) -> None:
    """--num-gpus: the first GPU (1) or the CPU (0)."""
    p.add_argument("--num-gpus", type=int, choices=[0, 1], default=default, help=help)


def add_recipe_flags(p, default: str) -> None:
    """--recipe (`default` unless given), then one flag per Recipe field: each given one
    wins over the recipe's value."""
    from nin.recipes import CHOICES, RECIPE_FLAGS, RECIPES

    p.add_argument(
        "--recipe",
        default=default,
        choices=list(RECIPES),
        help="nin (He init, a linear class block, standardized inputs, Adam on a one-cycle "
        "schedule at lr 1e-3), book (the chapter's training cell: Xavier, ReLU class block, "
        "raw inputs, plain SGD at lr 0.05), or sprint / quality (nin's with label smoothing "
        f"0.1 at lr 2e-3; quality with weight decay: docs/training.md) (default: {default})",
    )
    for name, help_text in RECIPE_FLAGS.items():
        kind: dict = {"type": float}
        if name == "normalize":
            kind = {"action": argparse.BooleanOptionalAction}
        elif name in CHOICES:
            kind = {"choices": CHOICES[name]}
        help_text += " (default: the recipe's)"
        p.add_argument(flag_name(name), default=None, help=help_text, **kind)
