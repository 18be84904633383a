"""What `train` and `experiment` share: the recipe the flags name, the run's folder, and
NIN_QUICK's caps said on the command line."""

from __future__ import annotations

import time
from pathlib import Path

from nin import spec as _spec
from nin.cli.flags import flag_name

__all__ = [
    "CHAPTER_TRAINING_LR",
    "fresh_out_dir",
    "claim_out",
    "recipe_from_args",
    "optimizer_slots",
    "apply_quick",
]

# the lr of the chapter's training cell, `NiN(lr=0.05)`: `--recipe book` trains with it
CHAPTER_TRAINING_LR = 0.05


def fresh_out_dir(command: str, *parts: str, root: str = "runs") -> Path:
    """A new folder for this run, made here: runs/<command>-<parts>-<date-time>[-N], never one
    that exists, so that no run replaces another."""
    stem = "-".join([command, *parts, time.strftime("%Y%m%d-%H%M%S")])
    Path(root).mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = Path(root) / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()  # claimed: two runs started in the same second get two
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not make a new folder for {stem} under {root}")


def recipe_from_args(args):
    """The named recipe with every recipe flag the user gave put in its place."""
    from nin.recipes import RECIPE_FLAGS, resolve_recipe

    given = {name: getattr(args, name) for name in RECIPE_FLAGS}
    if args.recipe == "book" and given["lr"] is None:
        given["lr"] = CHAPTER_TRAINING_LR
    return resolve_recipe(args.recipe, **given)


def claim_out(args, command: str, *parts: str) -> Path:
    """--out as given, or a fresh folder; --resume needs --out. Kept on `args.run_folder`
    for the message an interruption prints."""
    if args.out is None:
        if getattr(args, "resume", False):
            raise ValueError("--resume needs --out: the folder of the run to continue")
        args.run_folder = fresh_out_dir(command, *parts)
    else:
        args.run_folder = Path(args.out).expanduser()
    return args.run_folder


def optimizer_slots(recipe) -> str:
    """The name nin.resources.memory takes for the recipe's optimizer state."""
    return "adam" if recipe.optimizer == "adam" else "momentum" if recipe.momentum else "sgd"


# the args NIN_QUICK caps
_QUICK_ARGS = ("epochs", "batch_size", "resize", "limit_train_batches", "limit_val_batches")


def apply_quick(args, argv):
    """NIN_QUICK on the command line: say what it changes, and refuse when it contradicts a
    flag the user gave; the args then hold the values that will run. Returns the settings
    (None when NIN_QUICK is unset)."""
    import os

    from nin.quick import ENV_VAR, capped, quick_settings

    quick = quick_settings()
    if quick is None:
        return None
    wanted = {
        "epochs": min(args.epochs, quick.epochs),
        "batch_size": min(args.batch_size, quick.batch_size),
        "resize": quick.resize,
        "limit_train_batches": capped(args.limit_train_batches, quick.train_batches),
        "limit_val_batches": capped(getattr(args, "limit_val_batches", None), quick.val_batches),
    }
    try:
        _spec.check_input_size(_spec.chapter_spec(), wanted["resize"], name="resize")
    except _spec.InputTooSmallError as err:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r}: resize={wanted['resize']}: {args.wording(err)}"
        ) from None
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    clashes = [
        f"{flag_name(name)} {getattr(args, name)}"
        for name in _QUICK_ARGS
        if flag_name(name) in given and getattr(args, name) != wanted[name]
    ]
    if clashes:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r} is set and would train {wanted['epochs']} "
            f"epoch(s) of {wanted['limit_train_batches']} batches of {wanted['batch_size']} at "
            f"{wanted['resize']}x{wanted['resize']}, but {', '.join(clashes)} were given: "
            f"unset {ENV_VAR} for the run you asked for, or drop those flags"
        )
    for name in _QUICK_ARGS:
        if hasattr(args, name):
            setattr(args, name, wanted[name])
    print(
        f"nin: {ENV_VAR}={os.environ[ENV_VAR]!r} is set: a quick run of {args.epochs} "
        f"epoch(s), {args.limit_train_batches} batches of {args.batch_size} at "
        f"{args.resize}x{args.resize} (unset {ENV_VAR} for a full run)",
        flush=True,
    )
    return quick
