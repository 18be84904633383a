"""Time to accuracy: how long a recipe trains the chapter's NiN before its test accuracy.

    python -m benchmarks.time_to_accuracy [--backend torch|mxnet|tensorflow|all]
        [--target 0.90] [--recipe sprint] [--seeds 1] [--first-seed 0] [--cap-seconds S]
        [--compare nin,book] [--compare-cap 2] [--curve] [--plot FILE] [--json]
        [--epochs N] [--resize N] [--batch-size N] [--lr LR] [--limit-train-batches N]
        [--augment NAME] [--tta NAME]   (a variant of the plan; the table says so)

Each run (backend, recipe, seed) is a process of its own. `--recipe` names plans
(`nin.recipes.PLANS`: a Recipe with its epochs, input size, batch, batches an epoch,
augmentation and test-time augmentation). A run trains its plan to the end, with no
evaluation while training, then evaluates once on all 10,000 test images. Reported apart:
- `train_seconds`: the wall time of training, every step (the recipe evaluates nothing);
- `setup_seconds`: from the process's first line to the first step (imports, the data
  read, the build, warm-up or tracing);
- `process_seconds`: the whole process, as the parent measured it;
- `eval_seconds`: the final evaluation. A plan with test-time augmentation (`tta`, the
  sprint-83k and quality plans') scores each test image by its class probabilities summed
  over several views (`nin.tta.tta_accuracy`); the record keeps the plain accuracy too.
`--cap-seconds` stops training after that long (`nin.callbacks.TimeLimit`), for the slow
recipes (the chapter's 10 epochs at 224 take hours on a CPU); a capped run says so. Per
backend: the median training time over the seeds, each seed's accuracy, whether every seed
reached the target, images/s, and the machine's bf16/fp32 peak measured in the same run.
Then, on each backend, the `--compare` recipes (the chapter's and `nin`'s by default)
run once under the same clock, their training capped at `--compare-cap` (2) times the first
recipe's median there; the table says where a cap stopped them.
`--curve` also evaluates the test split after every epoch, off the clock (the time it takes
is left out of `train_seconds`; with a plan's test-time augmentation each point scores
every view, two forward passes of the test split for a plan with flip TTA), for the picture:
`--plot FILE` draws test accuracy against training seconds, one curve per backend and
recipe; `--records A.jsonl,B.jsonl` prints the table and draws the plot from earlier runs'
records, without training.
`--json`: one record per run, one JSON object a line.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
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
    lr=None,
    augment=None,
    tta=None,
    num_gpus=1,
) -> dict:
    """One run in this process (on the first GPU if there is one, unless `num_gpus=0`); the
    record, less `process_seconds` (the parent's)."""
    from nin.backends import get_backend
    from nin.callbacks import Callback, TimeLimit
    from nin.recipes import PLANS, resolve_recipe
    from nin.runner import RunSettings, build_run
    from nin.tta import tta_accuracy

    plan = PLANS[recipe]  # `recipe` names a plan; the plan names its Recipe
    epochs, resize = epochs or plan.epochs, resize or plan.resize
    batch_size = batch_size or plan.batch_size
    if limit_train_batches is None:  # 0: whole epochs, whatever the plan's limit
        limit_train_batches = plan.limit_train_batches
    limit_train_batches = limit_train_batches or None
    augment, tta = augment or plan.augment, tta or plan.tta
    clock: dict = {"off": 0.0, "curve": []}

    def test_accuracy(trainer, plain_too=False):
        """The plan's test accuracy; with `plain_too`, (it, the plain one). The plain one is
        the trainer's evaluation, as for every plan (on the fast path: bf16 where the CPU
        has it); with test-time augmentation the plan's sums each image's class
        probabilities over its views, in fp32 (`nin.tta.tta_accuracy`)."""
        plain = None
        if tta == "none" or plain_too:
            trainer._train_mode(False)
            plain = float(trainer._evaluate(iter(data.test_dataloader()))["acc"])
            trainer._train_mode(True)
        acc = plain if tta == "none" else tta_accuracy(B, model, data, tta)
        return (acc, plain) if plain_too else acc

    class Clock(Callback):
        def on_epoch_start(self, trainer):
            clock.setdefault("first_step", time.perf_counter())

        def on_epoch_end(self, trainer, record):
            if not curve:
                return
            start = time.perf_counter()  # off the clock: the test split, for the picture
            trained = start - clock["first_step"] - clock["off"]
            clock["curve"].append([trained, test_accuracy(trainer)])
            clock["off"] += time.perf_counter() - start

        def on_fit_end(self, trainer):
            clock["end"] = time.perf_counter()

    B = get_backend(backend)
    settings = RunSettings(
        recipe=resolve_recipe(plan.recipe, lr=plan.lr if lr is None else lr),
        epochs=epochs,
        batch_size=batch_size,
        resize=resize,
        seed=seed,
        augment=augment,
        root=root,
        limit_train_batches=limit_train_batches,
        limit_val_batches=0,
        fast=True,
        num_gpus=num_gpus,
        progress=False,
        stuck_check=0,
    )
    limit = TimeLimit(cap, off_clock=lambda: clock["off"]) if cap else None
    run = build_run(B, settings, callbacks=[Clock()] + ([limit] if limit else []))
    data, model, trainer = run.data, run.model, run.trainer
    history = run.fit()
    start = time.perf_counter()
    acc, plain = test_accuracy(trainer, plain_too=True)  # on the whole test split, once
    eval_seconds = time.perf_counter() - start
    steps = len(history.steps)
    train_seconds = clock["end"] - clock["first_step"] - clock["off"]
    return {
        "backend": backend,
        "recipe": recipe,
        "seed": seed,
        "target": target,
        "train_seconds": train_seconds,
        "setup_seconds": clock["first_step"] - START,
        "eval_seconds": eval_seconds,
        "test_acc": acc,
        "test_acc_plain": plain,
        "tta": tta,
        "reached": bool(acc >= target),
        "images_per_s": steps * batch_size / train_seconds,
        "epochs": epochs,
        "resize": resize,
        "batch_size": batch_size,
        "batches_per_epoch": trainer.num_train_batches,
        "limit_train_batches": limit_train_batches,
        "capped": bool(limit and limit.stopped),
        "test_images": len(data.test[1]),
        "augment": augment,
        "label_smoothing": model.recipe.label_smoothing,
        "lr": model.recipe.lr,
        "curve": clock["curve"],
        "device": str(trainer.device),
        "omp_threads": trainer.config().get("omp_threads"),  # MXNet's; None elsewhere
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
            f"the {args['backend']} run of {args['recipe']} (seed {args['seed']}) failed:\n"
            f"{done.stderr[-3000:]}"
        )
    return dict(json.loads(lines[-1]), process_seconds=time.perf_counter() - start)


def comparison_cap(timed_seconds: list[float], factor: float, cap_seconds=None) -> float:
    """The training time a compared recipe gets: `factor` x the median of the first timed
    recipe's seeds, and never more than `--cap-seconds`."""
    cap = factor * statistics.median(timed_seconds)
    return cap if cap_seconds is None else min(cap, cap_seconds)


def summary(records: list[dict], peak: dict | None) -> str:
    import numpy as np

    from nin.experiment import plan_changes

    lines = []
    if peak:
        from benchmarks.train import peak_text

        lines.append(f"machine peak (same run): {peak_text(peak)}")
    width = max([7] + [len(r["recipe"]) for r in records]) + 1  # the recipe column's
    lines.append(
        f"{'backend':<11}{'recipe':<{width}}{'train s (median)':>17}{'setup s':>9}"
        f"{'img/s':>8}  test accuracy per seed  reached"
    )
    groups: dict = {}
    for r in records:
        groups.setdefault((r["backend"], r["recipe"]), []).append(r)
    for (backend, recipe), rs in groups.items():
        accs = " ".join(f"{r['test_acc']:.4f}" for r in rs)
        capped = " (capped)" if any(r["capped"] for r in rs) else ""
        if rs[0].get("role") == "compared":
            hit = ", hit" if capped else ""
            capped = f" (compared; training capped at {rs[0]['cap_seconds']:.0f} s{hit})"
        changed = plan_changes(rs[0])
        capped += f" (not the plan: {', '.join(changed)})" if changed else ""
        if rs[0].get("tta", "none") != "none":
            plain = " ".join(f"{r['test_acc_plain']:.4f}" for r in rs)
            capped += f" ({rs[0]['tta']} TTA; without it: {plain})"
        lines.append(
            f"{backend:<11}{recipe:<{width}}{np.median([r['train_seconds'] for r in rs]):>17.1f}"
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
    from nin.data import AUGMENTATIONS
    from nin.tta import TTA

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="torch", help="torch, mxnet, tensorflow or all")
    p.add_argument("--recipe", default="sprint", help="comma-separated names of PLANS")
    p.add_argument(
        "--compare",
        default="nin,book",
        help="recipes run once more on each backend, after --recipe, for comparison: "
        "seed 0, capped at --compare-cap times the first recipe's median training time "
        "there (a capped run says so); 'none' for none, and a recipe already in --recipe "
        "is not run twice (default: nin,book)",
    )
    p.add_argument(
        "--compare-cap",
        type=float,
        default=2.0,
        help="the compared runs' training time, in multiples of the first recipe's median "
        "(default: 2), and never more than --cap-seconds",
    )
    p.add_argument("--target", type=float, default=0.90)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument(
        "--first-seed",
        type=int,
        default=0,
        help="the first seed: --seeds N runs seeds first .. first+N-1, to add seeds to an "
        "earlier run's (with --compare none; join the two runs' --json records in one file "
        "for one table: `--records` prints a table per file)",
    )
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
    # override the plan (small runs for the tests, or a variant to try; the table says so)
    every_run = "(every run's, the compared runs' too; default: each plan's)"
    p.add_argument("--epochs", type=int, default=None, help=f"epochs {every_run}")
    p.add_argument("--resize", type=int, default=None, help=f"input size {every_run}")
    p.add_argument("--batch-size", type=int, default=None, help=f"batch size {every_run}")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="the peak lr of the --recipe runs (default: the plan's; the compared runs "
        "keep their plan's)",
    )
    p.add_argument(
        "--limit-train-batches",
        type=int,
        default=None,
        help="batches an epoch, 0 for whole epochs, the compared runs' too (default: each "
        "plan's: sprint-83k's 650, whole epochs for the others)",
    )
    p.add_argument(
        "--augment",
        default=None,
        choices=list(AUGMENTATIONS),
        help="the --recipe runs' training augmentation (default: the plan's)",
    )
    p.add_argument(
        "--tta",
        default=None,
        choices=list(TTA),
        help="how the --recipe runs' final test accuracy is scored (default: the plan's)",
    )
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
    from nin.recipes import PLANS

    recipes = [r.strip() for r in args.recipe.split(",") if r.strip()]
    compared = [] if args.compare == "none" else [r.strip() for r in args.compare.split(",")]
    compared = [r for r in compared if r and r not in recipes]
    unknown = [r for r in recipes + compared if r not in PLANS]
    if unknown or not recipes:
        raise SystemExit(
            f"unknown recipe(s) {unknown or 'none given'}; PLANS has {', '.join(PLANS)} "
            "(--recipe and --compare take names from it)"
        )
    for flag, value in (
        ("--seeds", args.seeds),
        ("--epochs", args.epochs),
        ("--batch-size", args.batch_size),
    ):
        if value is not None and value < 1:
            raise SystemExit(f"{flag} must be at least 1, got {value}")
    limit = args.limit_train_batches
    if limit is not None and limit < 0:
        raise SystemExit(f"--limit-train-batches must be 0 (whole epochs) or more, got {limit}")
    if args.first_seed < 0:
        raise SystemExit(f"--first-seed must be 0 or more, got {args.first_seed}")
    if args.first_seed and compared:
        raise SystemExit(
            f"--first-seed {args.first_seed} adds seeds to an earlier run, whose compared "
            f"recipes ({', '.join(compared)}) ran there with seed 0: add --compare none"
        )
    for flag, value in (
        ("--lr", args.lr),
        ("--cap-seconds", args.cap_seconds),
        ("--compare-cap", args.compare_cap),
    ):
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise SystemExit(f"{flag} must be a positive number, got {value}")
    peak = None
    if not args.no_peak:
        from benchmarks.train import machine_peak

        peak = machine_peak()
    records = []

    def run(backend, recipe, seed, cap, role):
        timed = role == "timed"  # the compared recipes keep their plan's lr
        record = _child(
            {
                "backend": backend,
                "recipe": recipe,
                "seed": seed,
                "target": args.target,
                "root": args.data_dir,
                "cap": cap,
                "epochs": args.epochs,
                "resize": args.resize,
                "batch_size": args.batch_size,
                "limit_train_batches": args.limit_train_batches,
                "lr": args.lr if timed else None,
                "augment": args.augment if timed else None,
                "tta": args.tta if timed else None,
                "curve": args.curve or bool(args.plot),
            }
        )
        record.update(peak_gflops=peak, role=role, cap_seconds=cap)
        records.append(record)
        if args.json:
            print(json.dumps(record), flush=True)
        return record

    try:
        for backend in resolve_backends(args.backend):
            for recipe in recipes:
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    run(backend, recipe, seed, args.cap_seconds, "timed")
            first = [r["train_seconds"] for r in records if r["backend"] == backend]
            cap = comparison_cap(first[: args.seeds], args.compare_cap, args.cap_seconds)
            for recipe in compared:
                run(backend, recipe, 0, cap, "compared")
    except RuntimeError as error:  # what finished is still shown
        if records and not args.json:
            print(summary(records, peak))
        raise SystemExit(f"time_to_accuracy: {error}") from None
    if not args.json:
        print(summary(records, peak))
    if args.plot:
        plot(records, args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
