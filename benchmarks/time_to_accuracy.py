"""Time to accuracy: how long a recipe trains the chapter's NiN before its test accuracy.

    python -m benchmarks.time_to_accuracy [--backend torch|mxnet|tensorflow|all]
        [--target 0.90] [--recipe nin,book,sprint,quality] [--seeds 1] [--cap-seconds S]
        [--curve] [--plot FILE] [--json]

Each run (backend, recipe, seed) is a process of its own. It trains the recipe's plan
(`nin.training.PLANS`: epochs, input size, batch) to its end, with no evaluation while
training, then evaluates once on all 10,000 test images. Reported apart:
- `train_seconds`: the wall time of training, every step (the recipe evaluates nothing);
- `setup_seconds`: from the process's first line to the first step (imports, the data
  read, the build, warm-up or tracing);
- `process_seconds`: the whole process, as the parent measured it.
`--cap-seconds` stops training after that long (`nin.callbacks.TimeLimit`), for the slow
recipes (the chapter's 10 epochs at 224 take hours on a CPU); a capped run says so. Per
backend: the median training time over the seeds, each seed's accuracy, whether every seed
reached the target, images/s, and the machine's bf16/fp32 peak measured in the same run.
`--curve` also evaluates the test split after every epoch, off the clock (the time it takes
is left out of `train_seconds`), for the picture: `--plot FILE` draws test accuracy against
training seconds, one curve per backend and recipe; `--records A.jsonl,B.jsonl` prints the
table and draws the plot from earlier runs' records, without training.
`--json`: one record per run, one JSON object a line.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

START = time.perf_counter()  # the child's first line: its set-up counts from here


def run_one(
    backend,
    recipe,
    seed,
    target,
    root=None,
    cap=None,
    epochs=None,
    resize=None,
    batch_size=None,
    limit_train_batches=None,
    curve=False,
) -> dict:
    """One run in this process; the record, less `process_seconds` (the parent's)."""
    from nin.backends import get_backend
    from nin.callbacks import Callback, TimeLimit
    from nin.training import PLANS, resolve_recipe

    plan = PLANS[recipe]
    epochs, resize = epochs or plan.epochs, resize or plan.resize
    batch_size = batch_size or plan.batch_size
    clock: dict = {"off": 0.0, "curve": []}

    class Clock(Callback):
        def on_epoch_start(self, trainer):
            clock.setdefault("first_step", time.perf_counter())

        def on_epoch_end(self, trainer, record):
            if not curve:
                return
            start = time.perf_counter()  # off the clock: the test split, for the picture
            trained = start - clock["first_step"] - clock["off"]
            trainer._train_mode(False)
            acc = trainer._evaluate(iter(data.test_dataloader()))["acc"]
            trainer._train_mode(True)
            clock["curve"].append([trained, float(acc)])
            clock["off"] += time.perf_counter() - start

        def on_fit_end(self, trainer):
            clock["end"] = time.perf_counter()

    B = get_backend(backend)
    B.set_seed(seed)
    data = B.FashionMNIST(
        batch_size=batch_size,
        resize=(resize, resize),
        root=root,
        seed=seed,
        augment=plan.augment,
    )
    model = B.NiN(recipe=resolve_recipe(recipe, lr=plan.lr))
    limit = TimeLimit(cap) if cap else None
    trainer = B.Trainer(
        max_epochs=epochs,
        num_gpus=1,
        fast=True,
        progress=False,
        stuck_check=0,
        limit_train_batches=limit_train_batches,
        limit_val_batches=0,
        callbacks=[Clock()] + ([limit] if limit else []),
    )
    history = trainer.fit(model, data)
    trainer._train_mode(False)  # one evaluation, on the whole test split, after training
    metrics = trainer._evaluate(iter(data.test_dataloader()))
    steps = len(history.steps)
    train_seconds = clock["end"] - clock["first_step"] - clock["off"]
    return {
        "backend": backend,
        "recipe": recipe,
        "seed": seed,
        "target": target,
        "train_seconds": train_seconds,
        "setup_seconds": clock["first_step"] - START,
        "test_acc": float(metrics["acc"]),
        "reached": bool(metrics["acc"] >= target),
        "images_per_s": steps * batch_size / train_seconds,
        "epochs": epochs,
        "resize": resize,
        "batch_size": batch_size,
        "capped": bool(limit and limit.stopped),
        "test_images": len(data.test[1]),
        "augment": plan.augment,
        "label_smoothing": model.recipe.label_smoothing,
        "lr": model.recipe.lr,
        "curve": clock["curve"],
    }


def _child(args: dict) -> dict:
    """Run `run_one(**args)` in a fresh process; its record plus the process's wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.time_to_accuracy", "--child", json.dumps(args)],
        capture_output=True,
        text=True,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode or not lines:
        raise RuntimeError(
            f"the {args['backend']} run (seed {args['seed']}) failed:\n{done.stderr[-3000:]}"
        )
    return dict(json.loads(lines[-1]), process_seconds=time.perf_counter() - start)


def summary(records: list[dict], peak: dict | None) -> str:
    import numpy as np

    lines = []
    if peak:
        lines.append(
            f"machine peak (same run): bf16 {peak['bf16']:.0f} GFLOP/s, fp32 "
            f"{peak['fp32']:.0f} GFLOP/s"
        )
    lines.append(
        f"{'backend':<11}{'recipe':<8}{'train s (median)':>17}{'setup s':>9}"
        f"{'img/s':>8}  test accuracy per seed  reached"
    )
    groups: dict = {}
    for r in records:
        groups.setdefault((r["backend"], r["recipe"]), []).append(r)
    for (backend, recipe), rs in groups.items():
        accs = " ".join(f"{r['test_acc']:.4f}" for r in rs)
        capped = " (capped)" if any(r["capped"] for r in rs) else ""
        lines.append(
            f"{backend:<11}{recipe:<8}{np.median([r['train_seconds'] for r in rs]):>17.1f}"
            f"{np.median([r['setup_seconds'] for r in rs]):>9.1f}"
            f"{np.median([r['images_per_s'] for r in rs]):>8.0f}  {accs:<22}  "
            f"{'all' if all(r['reached'] for r in rs) else 'not all'} >= {rs[0]['target']}"
            f"{capped}"
        )
    return "\n".join(lines)


def plot(records: list[dict], path) -> None:
    """Test accuracy against training seconds, into a PNG file
    (`nin.experiment.plot_time_to_accuracy`)."""
    import matplotlib

    matplotlib.use("Agg")
    from nin.experiment import plot_time_to_accuracy

    plot_time_to_accuracy(records, path)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="torch", help="torch, mxnet, tensorflow or all")
    p.add_argument("--recipe", default="nin,book", help="comma-separated names of PLANS")
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument(
        "--cap-seconds",
        type=float,
        default=None,
        help="stop each run's training after this long (says so)",
    )
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true")
    p.add_argument("--curve", action="store_true", help="test accuracy after every epoch")
    p.add_argument("--plot", default=None, help="a .png of the curves (implies --curve)")
    p.add_argument("--no-peak", action="store_true", help="skip the peak measurement")
    # small runs, for the tests: override the plan
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--resize", type=int, default=None)
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--limit-train-batches", type=int, default=None)
    p.add_argument("--records", default=None, help="earlier runs' .jsonl files: no training")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.records:  # one table per file (each file is one run, with its own peak)
        from nin.experiment import load_records

        records = []
        for name in args.records.split(","):
            run = load_records([name])
            peaks = [r["peak_gflops"] for r in run if r.get("peak_gflops")]
            print(f"{name}:\n{summary(run, peaks[0] if peaks else None)}")
            records += run
        if args.plot:
            plot(records, args.plot)
        return 0
    if args.child:
        print(json.dumps(run_one(**json.loads(args.child))), flush=True)
        return 0
    from nin.backends import resolve_backends
    from nin.training import PLANS

    recipes = [r.strip() for r in args.recipe.split(",") if r.strip()]
    unknown = [r for r in recipes if r not in PLANS]
    if unknown:
        raise SystemExit(f"unknown recipe(s) {unknown}; PLANS has {sorted(PLANS)}")
    peak = None
    if not args.no_peak:
        from benchmarks.train import machine_peak

        peak = machine_peak()
    records = []
    for backend in resolve_backends(args.backend):
        for recipe in recipes:
            for seed in range(args.seeds):
                record = _child(
                    {
                        "backend": backend,
                        "recipe": recipe,
                        "seed": seed,
                        "target": args.target,
                        "root": args.data_dir,
                        "cap": args.cap_seconds,
                        "epochs": args.epochs,
                        "resize": args.resize,
                        "batch_size": args.batch_size,
                        "limit_train_batches": args.limit_train_batches,
                        "curve": args.curve or bool(args.plot),
                    }
                )
                record["peak_gflops"] = peak
                records.append(record)
                if args.json:
                    print(json.dumps(record), flush=True)
    if not args.json:
        print(summary(records, peak))
    if args.plot:
        plot(records, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
