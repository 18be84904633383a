"""The flags more than one command takes, and the argparse types the flags share."""

from __future__ import annotations

import argparse

__all__ = ["positive_int", "non_negative_int", "dropout_rate", "add_recipe_flags"]


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


def add_recipe_flags(p, default: str) -> None:
    """--recipe (`default` unless given), then one flag per Recipe field: each given one
    wins over the recipe's value."""
    from nin.training import CHOICES, RECIPE_FLAGS, RECIPES

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
        flag = "--" + name.replace("_", "-")
        if name == "normalize":
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text + " (default: the recipe's)",
            )
        elif name in CHOICES:
            p.add_argument(
                flag,
                choices=CHOICES[name],
                default=None,
                help=help_text + " (default: the recipe's)",
            )
        else:
            p.add_argument(
                flag, type=float, default=None, help=help_text + " (default: the recipe's)"
            )
