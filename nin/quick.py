"""The small-size override for running the chapter's cells and notebooks quickly.

Set NIN_QUICK to run training cells small without editing them: "1" takes the defaults below,
"epochs=1,train_batches=3,resize=67" sets fields. Only the edges read the variable: the CLI
(which turns it into its own flags and says so), `nin.chapter.run_chapter`, and a notebook's
first cell, `quick.enable_from_env()`. Once enabled, every Trainer caps its run (the
`QuickCaps` callback) and every FashionMNIST its batch size and input size.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

__all__ = [
    "QuickSettings",
    "quick_settings",
    "capped",
    "ENV_VAR",
    "enable",
    "disable",
    "active",
    "enable_from_env",
]

ENV_VAR = "NIN_QUICK"


@dataclass(frozen=True)
class QuickSettings:
    epochs: int = 1  # Trainer(max_epochs=...) is capped at this
    train_batches: int = 2  # batches per training epoch
    val_batches: int = 1  # batches per validation pass
    batch_size: int = 16  # FashionMNIST(batch_size=...) is capped at this
    resize: int = 67  # the smallest input the chapter's NiN takes


def capped(value: int | None, cap: int) -> int:
    """`value` limited to `cap`; None (no limit) becomes the cap."""
    return cap if value is None else min(value, cap)


def quick_settings() -> QuickSettings | None:
    """The settings from $NIN_QUICK, or None when it is unset, empty or '0'."""
    value = os.environ.get(ENV_VAR, "").strip()
    if value in ("", "0"):
        return None
    if value == "1":
        return QuickSettings()
    names = {f.name for f in fields(QuickSettings)}
    changes = {}
    for item in value.split(","):
        key, _, number = item.partition("=")
        key = key.strip()
        if key not in names or not number.strip().isdigit():
            raise ValueError(
                f"{ENV_VAR}={value!r}: expected '1' or comma-separated key=integer "
                f"pairs with keys from {sorted(names)}"
            )
        changes[key] = int(number)
        if changes[key] < 1:
            raise ValueError(f"{ENV_VAR}={value!r}: {key} must be at least 1, got {number}")
    return replace(QuickSettings(), **changes)


_active: QuickSettings | None = None


def enable(settings: QuickSettings | None = None) -> None:
    """Run every Trainer and FashionMNIST made from now on small (`QuickSettings()` by
    default), until `disable()`."""
    global _active
    _active = QuickSettings() if settings is None else settings


def disable() -> None:
    global _active
    _active = None


def active() -> QuickSettings | None:
    """The quick settings in force (enabled by an edge), or None."""
    return _active


def enable_from_env(announce: bool = True) -> QuickSettings | None:
    """Enable the settings $NIN_QUICK gives, or disable when it is unset; say so in one line.
    A notebook's first cell calls this."""
    settings = quick_settings()
    if settings is None:
        disable()
        return None
    enable(settings)
    if announce:
        print(
            f"nin: {ENV_VAR}={os.environ[ENV_VAR]!r}: training runs {settings.epochs} "
            f"epoch(s) of {settings.train_batches} batches of at most {settings.batch_size} "
            f"at {settings.resize}x{settings.resize}, whatever the cells ask; unset it for "
            f"the real run.",
            flush=True,
        )
    return settings
