"""The small-size override for running the chapter's cells and notebooks quickly.

Set NIN_QUICK to run training cells small without editing them: "1" takes the defaults below,
"epochs=1,train_batches=3,resize=67" sets fields. Trainer and FashionMNIST read it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace

__all__ = ["QuickSettings", "quick_settings", "capped", "ENV_VAR"]

ENV_VAR = "NIN_QUICK"


@dataclass(frozen=True)
class QuickSettings:
    epochs: int = 1          # Trainer(max_epochs=...) is capped at this
    train_batches: int = 2   # batches per training epoch
    val_batches: int = 1     # batches per validation pass
    batch_size: int = 16     # FashionMNIST(batch_size=...) is capped at this
    resize: int = 67         # the smallest input the chapter's NiN takes


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
            raise ValueError(f"{ENV_VAR}={value!r}: expected '1' or comma-separated key=integer "
                             f"pairs with keys from {sorted(names)}")
        changes[key] = int(number)
        if changes[key] < 1:
            raise ValueError(f"{ENV_VAR}={value!r}: {key} must be at least 1, got {number}")
    return replace(QuickSettings(), **changes)
