"""A run's folder and its checkpoint file: what the run-folder callbacks (nin.callbacks:
`ClaimRunFolder`, `ExportRun`, `SaveCheckpoint`, `ResumeFromCheckpoint`) claim, write and
resume from, and what the CLI checks before it reads any data.

A folder holds one run (`RUN_FILES`); it is never replaced unless the caller asks
(`overwrite`), and `resume` continues it from `checkpoint.npz`, the file written last.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nin.errors import ArgumentError, Message, arg
from nin.files import (
    check_writable_folder,
    format_version,
    json_entry,
    load_npz,
    remove_orphans,
    save_npz,
)

__all__ = [
    "CheckpointError",
    "RunExistsError",
    "RUN_FILES",
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "claim_out_dir",
    "save_checkpoint",
    "read_checkpoint",
    "add_to_checkpoint_epoch",
    "check_state_fits",
]


class CheckpointError(ValueError):
    """A checkpoint that does not fit this model, backend or spec."""


RUN_FILES = ("checkpoint.npz", "weights.npz", "history.json", "board.png")


def claim_out_dir(out_dir, resume: bool = False, overwrite: bool = False) -> Path:
    """Check a run's folder before any work: writable, and holding no run unless `resume`
    (continue it: its checkpoint must be there) or `overwrite` (its files are removed).
    Clears the temporary files a killed run left. The CLI calls this before it reads the data;
    the Trainer again before its first batch."""
    out_dir = Path(out_dir).expanduser()
    if resume and overwrite:
        raise ArgumentError(
            "{resume} continues the run in the folder and {overwrite} replaces it; give one "
            "of them",
            resume=arg("resume", True),
            overwrite=arg("overwrite", True),
        )
    checkpoint = out_dir / "checkpoint.npz"
    held = [name for name in RUN_FILES if (out_dir / name).exists()]
    if resume and not checkpoint.exists():
        stopped = (
            Message(
                "it holds {held} from a run stopped before its first epoch ended; {overwrite} "
                "starts that run again",
                held=", ".join(held),
                overwrite=arg("overwrite", True),
            )
            if held
            else Message(
                "train once with this {out_dir} first, or drop {resume}",
                out_dir=arg("out_dir"),
                resume=arg("resume", True),
            )
        )
        raise CheckpointError(
            Message(
                "{resume}: no checkpoint at {checkpoint}; {stopped}",
                resume=arg("resume", True),
                checkpoint=checkpoint,
                stopped=stopped,
            )
        )
    check_writable_folder(out_dir, arg("out_dir"))
    remove_orphans(out_dir)
    if held and not resume and not overwrite:
        what = "a run" if "checkpoint.npz" in held else "a run stopped before its first epoch ended"
        raise RunExistsError(
            Message(
                "{folder} already holds {what} ({held}); pass {continue_it}{overwrite} to "
                "replace it, or choose another {out_dir}",
                folder=out_dir,
                what=what,
                held=", ".join(held),
                continue_it=(
                    Message("{resume} to continue it, ", resume=arg("resume", True))
                    if "checkpoint.npz" in held
                    else ""
                ),
                overwrite=arg("overwrite", True),
                out_dir=arg("out_dir"),
            )
        )
    if overwrite:
        for name in held:
            (out_dir / name).unlink()
    return out_dir


class RunExistsError(ValueError):
    """The output folder already holds a run, and neither resume nor overwrite was asked."""


CHECKPOINT_FORMAT = "nin-checkpoint"  # the meta's `format`; version 1 wrote "nin-checkpoint/1"
# 2: MXNet's optimizer state as named arrays (version 1 kept a pickle, which is refused)
CHECKPOINT_VERSION = 2


def save_checkpoint(path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """One .npz: the backend's named arrays plus a JSON `meta` entry; written atomically."""
    meta = dict(meta, format=CHECKPOINT_FORMAT, format_version=CHECKPOINT_VERSION)
    save_npz(path, arrays, "__meta__", meta)


def read_checkpoint(path) -> tuple[dict[str, np.ndarray], dict]:
    """The named arrays and the meta (its `format_version`: 1 for a file from before versions
    were written) of a checkpoint; a file that is not one, or one of a newer version than
    this nin reads, raises CheckpointError."""
    path = Path(path)
    try:
        arrays = load_npz(path)
        meta = json_entry(arrays, "__meta__")
        if not isinstance(meta, dict):
            raise ValueError("its __meta__ entry is not a JSON object")
    except FileNotFoundError:
        raise
    except Exception as err:  # truncated zip, missing entry, bad JSON
        raise CheckpointError(
            Message(
                "{path} is not a readable nin checkpoint ({err}); start the run again with "
                "{overwrite}, or resume another folder",
                path=path,
                err=err,
                overwrite=arg("overwrite", True),
            )
        ) from None
    if meta.get("format") not in (CHECKPOINT_FORMAT, f"{CHECKPOINT_FORMAT}/1"):
        raise CheckpointError(
            f"{path} has format {meta.get('format')!r}, expected {CHECKPOINT_FORMAT!r}"
        )
    meta["format_version"] = format_version(
        meta, path, CHECKPOINT_VERSION, "nin checkpoint", CheckpointError
    )
    return arrays, meta


def add_to_checkpoint_epoch(path, epoch: int, values: dict) -> None:
    """Add `values` to epoch `epoch`'s record in the checkpoint's history (a score made after
    the epoch, such as test-time augmentation), so that a resume, which writes history.json
    again from the checkpoint, keeps it. The checkpoint is written again atomically."""
    arrays, meta = read_checkpoint(path)
    records = [r for r in meta.get("history", {}).get("epochs", []) if r.get("epoch") == epoch]
    if not records:
        raise CheckpointError(f"{path} holds no record of epoch {epoch}")
    records[-1].update(values)
    save_checkpoint(path, arrays, meta)


def check_state_fits(own: dict, loaded: dict) -> None:
    """Refuse a checkpoint whose arrays do not fit the model: `own` maps each name to the
    model's shape, `loaded` each name to the checkpoint's array; the first misfit is named."""
    for name, shape in own.items():
        got = loaded.get(name)
        if got is None or tuple(got.shape) != tuple(shape):
            raise CheckpointError(
                f"checkpoint does not fit this model: {name} is "
                f"{'missing' if got is None else tuple(got.shape)}, the model has "
                f"{tuple(shape)}"
            )
