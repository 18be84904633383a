"""The command line's wording of library messages: Python arguments become the flags that
set them."""

from __future__ import annotations

import re

__all__ = ["cli_wording"]

# The library names Python arguments in backticks (`resume=True`, `out_dir`); on the command
# line they read as the flags that set them. Whatever has no flag keeps its Python name.
_FLAG_WORDING = (
    (r"`resume=True`", "--resume"),
    (r"`overwrite=True`", "--overwrite"),
    (r"`out_dir`", "--out"),
    (r"`root=<folder>`", "--data-dir <folder>"),
    (r"`root`", "--data-dir"),
    (r"`lr`", "--lr"),
    (r"`fast=False`", "--no-fast"),
    (r"`fast=True`", "drop --no-fast"),
    (r"`recipe='(\w+)'`", r"--recipe \1"),
    (r"`optimizer='(\w+)'`", r"--optimizer \1"),
    (r"`max_epochs=(\d+)`", r"--epochs \1"),
    (r"`max_epochs`", "--epochs"),
    (r"`batch_size=(\d+)`", r"--batch-size \1"),
    (r"`batch_size`", "--batch-size"),
    (r"`(resize|size)=(\d+)`", r"--\1 \2"),
    (r"`backend`", "--backend"),
    (r"`normalize`", "--normalize"),
    (r"`devices=(\d+)`", r"--devices \1"),
)


def cli_wording(text) -> str:
    """A library message as the command line says it: Python arguments become flags."""
    text = str(text)  # a nin.errors.Message: its Python wording
    for pattern, flag in _FLAG_WORDING:
        text = re.sub(pattern, flag, text)
    return text
