"""Train several variants on one budget and tabulate what they cost and what they reach.

`run_experiment` trains each named variant (nin/variants.py) with the same recipe, data,
seed, size and number of batches in one backend, and returns a row per variant:
parameters, MACs per image, seconds per epoch, test accuracy after each epoch.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from nin import spec as _spec
from nin.backends import get_backend
from nin.errors import ArgumentError, arg
from nin.history import finish_figure
from nin.recipes import PLANS, RECIPES, get_recipe
from nin.resources import conv_macs, num_params
from nin.runner import RunSettings, build_run
from nin.variants import variant

__all__ = ["run_experiment", "format_table", "plot_results", "claim", "save", "RESULT_FILES",
           "RECORDS_DIR", "load_records", "plan_changes", "plot_time_to_accuracy"]  # fmt: skip


def run_experiment(
    names,
    backend="torch",
    epochs=1,
    resize=96,
    batch_size=128,
    limit_train_batches=None,
    seed=0,
    recipe="nin",
    root=None,
    progress=True,
    fast=True,
    out_dir=None,
    num_gpus=1,
    wording=None,
) -> list[dict]:
    """`recipe` is a name or a Recipe; `fast` and `num_gpus` as the Trainer's (the first GPU
    by default, when there is one); `wording` as the Trainer's (the CLI names its flags).
    Every variant name and the input size are checked before the first one trains; with
    `out_dir`, the results are saved after each variant, so a later failure loses none."""
    B = get_backend(backend)
    recipe = get_recipe(recipe)
    specs = {
        name: _spec.with_class_block_relu(variant(name), recipe.class_block_relu) for name in names
    }
    for spec in specs.values():
        _spec.check_input_size(spec, resize, name="resize")
    rows = []
    for name, spec in specs.items():
        settings = RunSettings(
            recipe=recipe,
            spec=spec,
            epochs=epochs,
            batch_size=batch_size,
            resize=resize,
            seed=seed,
            root=root,
            limit_train_batches=limit_train_batches,
            fast=fast,
            num_gpus=num_gpus,
            progress=progress,
            stuck_check=0,
        )
        run = build_run(B, settings, wording=wording)
        if progress:
            print(f"--- {name}: {num_params(spec, resize):,} parameters", flush=True)
        start = time.perf_counter()
        history = run.fit()
        rows.append(
            {
                "variant": name,
                "backend": backend,
                "resize": resize,
                "params": num_params(spec, resize),
                "macs": conv_macs(spec, resize),
                "seconds_per_epoch": (time.perf_counter() - start) / epochs,
                "train_images_per_s": history.epochs[-1]["images_per_s"],
                "val_acc": [e["val_acc"] for e in history.epochs],
                "final_val_acc": history.epochs[-1]["val_acc"],
                "final_train_loss": history.epochs[-1]["train_loss"],
            }
        )
        if out_dir is not None:
            save(rows, out_dir)
    return rows


def format_table(rows) -> str:
    lines = [
        "| variant | parameters | MACs/image | s/epoch | images/s | test accuracy |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['variant']} | {r['params']:,} | {r['macs'] / 1e6:,.1f} M | "
            f"{r['seconds_per_epoch']:.0f} | {r['train_images_per_s']:.0f} | "
            f"{r['final_val_acc']:.4f} |"
        )
    return "\n".join(lines)


def plot_results(rows, path=None):
    """Test accuracy against MACs and parameters; saved to `path`, else returned."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for r in rows:
        for ax, key in zip(axes, ("macs", "params")):
            point = (r[key] / 1e6, r["final_val_acc"])
            ax.scatter(*point, s=30)
            ax.annotate(r["variant"], point, fontsize=7, xytext=(3, 3), textcoords="offset points")
    axes[0].set_xlabel("MACs per image (millions)")
    axes[1].set_xlabel("parameters (millions)")
    axes[1].set_xscale("log")
    for ax in axes:
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
    return finish_figure(fig, path)


# the records `python -m benchmarks.time_to_accuracy --json` prints, as stored in a checkout
RECORDS_DIR = Path(__file__).resolve().parents[1] / "benchmarks" / "results"


def load_records(paths) -> list[dict]:
    """The records in .jsonl files (one JSON object a line), in order; `paths` is a list, or
    a comma-separated string."""
    if isinstance(paths, str):
        paths = [p for p in paths.split(",") if p]
    return [
        json.loads(line)
        for name in paths
        for line in Path(name).read_text().splitlines()
        if line.startswith("{")
    ]


def plan_changes(record: dict) -> list[str]:
    """What a run changed from its recipe's plan (`--epochs`, `--resize`, `--batch-size`,
    `--lr`, `--limit-train-batches`; an augmentation or a test-time augmentation other than
    the plan's, as in records made before the plan changed), one phrase each; empty for a
    run of the plan."""
    plan = PLANS.get(record["recipe"])
    if plan is None:
        return []
    planned = {
        "epochs": plan.epochs,
        "resize": plan.resize,
        "batch_size": plan.batch_size,
        "lr": plan.lr or RECIPES[plan.recipe].lr,
    }
    changed = [
        f"{name} {record[name]:g}"
        for name, value in planned.items()
        if name in record and record[name] != value
    ]
    limit = record.get("limit_train_batches")  # absent from records older than the flag
    limited = limit if limit and limit == record.get("batches_per_epoch") else None
    if limited != plan.limit_train_batches:  # the epoch the run had is not the plan's
        changed.append(f"{limited} batches an epoch" if limited else "whole epochs")
    augment = record.get("augment", "none")  # absent from records older than augmentation
    if augment != plan.augment:
        changed.append(f"augment {augment}")
    tta = record.get("tta", "none")  # absent from records older than test-time augmentation
    if tta != plan.tta:
        changed.append(f"tta {tta}")
    return changed


def plot_time_to_accuracy(records, path=None):
    """Test accuracy against training seconds, one curve per (backend, recipe): the test
    accuracy after each epoch (`--curve`), from the first record with a curve that runs the
    recipe's plan as it is now (`plan_changes`), else the first record with a curve, its
    label then saying what it changed; saved to `path`, else returned."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4))
    chosen: dict = {}
    # the runs of the plan now first, each group in its order (a stable sort)
    for r in sorted((r for r in records if r["curve"]), key=lambda r: bool(plan_changes(r))):
        chosen.setdefault((r["backend"], r["recipe"]), r)
    for (backend, recipe), r in chosen.items():
        changed = plan_changes(r)
        label = f"{backend} {recipe}" + (f" ({', '.join(changed)})" if changed else "")
        xs, ys = zip(*r["curve"])
        ax.plot(xs, ys, marker="o", ms=3, label=label)
    targets = {r["target"] for r in records}
    for target in targets:
        ax.axhline(target, color="grey", lw=0.8, ls="--")
    ax.set_xlabel("training seconds (evaluation off the clock)")
    ax.set_ylabel("test accuracy")
    lowest = min((a for r in chosen.values() for _, a in r["curve"]), default=0.5)
    ax.set_ylim(min(0.5, lowest - 0.05), 1.0)  # a recipe still at chance shows too
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return finish_figure(fig, path)


RESULT_FILES = ("results.json", "results.md", "results.png")


def claim(out_dir, overwrite: bool = False) -> Path:
    """Check `out_dir` before any training: writable, and holding no results unless
    `overwrite` (then the old ones are removed)."""
    from nin.files import check_writable_folder, remove_orphans

    out = check_writable_folder(out_dir, arg("out_dir"))
    remove_orphans(out)
    held = [name for name in RESULT_FILES if (out / name).exists()]
    if held and not overwrite:
        raise ArgumentError(
            "{folder} already holds results ({held}); pass {overwrite} to replace them, or "
            "choose another {out_dir}",
            folder=out,
            held=", ".join(held),
            overwrite=arg("overwrite", True),
            out_dir=arg("out_dir"),
        )
    for name in held:
        (out / name).unlink()
    return out


def save(rows, out_dir) -> Path:
    """results.json, results.md and results.png for the rows so far (each written whole)."""
    from nin.files import atomic_write

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "results.json", json.dumps(rows, indent=1).encode())
    atomic_write(out / "results.md", (format_table(rows) + "\n").encode())
    plot_results(rows, out / "results.png")
    return out
