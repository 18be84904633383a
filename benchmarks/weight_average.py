"""A moving average of the weights (EMA) against the weights themselves, on a held-out split.

    python -m benchmarks.weight_average [--backend torch] [--recipe quality] [--lr LR]
        [--epochs 10] [--resize 96] [--batch-size 128] [--augment flip] [--val-split 10000]
        [--decays 0.99 0.998 0.9995] [--seed 0] [--limit-train-batches N] [--json]

Trains one run as `python -m nin train --recipe R --val-split N` does (the same seed, data,
batches and steps: the run's own weights end as that command's do), and after every step
updates one exponential moving average of the weights per decay d, on the backend's own
parameter arrays (`parameter_arrays`, the same code for each backend):
avg <- avg + (1 - d_t) (w - avg), with d_t = min(d, (1 + t) / (10 + t)) at step t, so that
the first steps do not weigh for long.
At the end, each average and the weights themselves are scored on the held-out images,
without test-time augmentation and with the mirror image (`nin.training.tta_accuracy`),
in fp32. The test split is never looked at: this is for choosing, not for reporting.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def update(average: list[np.ndarray], now: list[np.ndarray], decay: float, t: int) -> None:
    """One step of the moving average, in place: avg <- avg + (1 - d_t) (w - avg), with
    d_t = min(decay, (1 + t) / (10 + t))."""
    w = np.float32(1 - min(decay, (1 + t) / (10 + t)))
    for avg, v in zip(average, now):
        diff = v - avg
        diff *= w
        avg += diff


def run(
    backend="torch",
    recipe="quality",
    lr=None,
    epochs=10,
    resize=96,
    batch_size=128,
    augment="flip",
    val_split=10000,
    decays=(0.99, 0.998, 0.9995),
    seed=0,
    root=None,
    limit_train_batches=None,
    limit_val_batches=None,
) -> dict:
    """The run's held-out accuracies, its own weights' and each average's."""
    from nin.backends import get_backend
    from nin.callbacks import Callback
    from nin.training import resolve_recipe, tta_accuracy

    if not val_split:
        raise ValueError("--val-split must hold out training images: the test split is not used")
    B = get_backend(backend)
    B.set_seed(seed)
    data = B.FashionMNIST(
        batch_size=batch_size,
        resize=(resize, resize),
        root=root,
        seed=seed,
        augment=augment,
        val_split=val_split,
    )
    model = B.NiN(num_classes=10, recipe=resolve_recipe(recipe, lr=lr))
    averages: dict[float, list[np.ndarray]] = {}  # per decay, the backend's own arrays
    step = {"t": 0, "seconds": 0.0}

    class Average(Callback):
        def on_batch_end(self, trainer):
            start = time.perf_counter()
            now = B.parameter_arrays(trainer.model.net)
            t = step["t"]
            for d in decays:
                if d not in averages:
                    averages[d] = [np.array(v, np.float32) for v in now]
                else:
                    update(averages[d], now, d, t)
            step["t"] = t + 1
            step["seconds"] += time.perf_counter() - start

    trainer = B.Trainer(
        max_epochs=epochs,
        num_gpus=1,
        fast=True,
        stuck_check=0,
        limit_train_batches=limit_train_batches,
        limit_val_batches=limit_val_batches,
        callbacks=[Average()],
    )
    history = trainer.fit(model, data)
    limit = trainer.num_val_batches

    def score() -> dict:
        return {tta: tta_accuracy(B, model, data, tta, "val", limit) for tta in ("none", "flip")}

    own = [np.array(v) for v in B.parameter_arrays(model.net)]
    scores = {"weights": score()}
    for d, avg in averages.items():
        B.assign_parameter_arrays(model.net, avg)
        scores[f"ema {d:g}"] = score()
    B.assign_parameter_arrays(model.net, own)
    return {
        "backend": backend,
        "recipe": recipe,
        "lr": model.recipe.lr,
        "epochs": epochs,
        "resize": resize,
        "batch_size": batch_size,
        "augment": augment,
        "val_split": val_split,
        "seed": seed,
        "steps": step["t"],
        "average_seconds": step["seconds"],
        "val_acc_per_epoch": [e["val_acc"] for e in history.epochs],
        "held_out": scores,
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="torch")
    p.add_argument("--recipe", default="quality")
    p.add_argument("--lr", type=float)
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--resize", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--augment", default="flip")
    p.add_argument("--val-split", type=int, default=10000)
    p.add_argument("--decays", type=float, nargs="+", default=[0.99, 0.998, 0.9995])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir")
    p.add_argument("--limit-train-batches", type=int)
    p.add_argument("--limit-val-batches", type=int)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    for d in args.decays:
        if not 0 < d < 1:
            raise SystemExit(f"--decays: each decay must be between 0 and 1, got {d}")
    record = run(
        backend=args.backend,
        recipe=args.recipe,
        lr=args.lr,
        epochs=args.epochs,
        resize=args.resize,
        batch_size=args.batch_size,
        augment=args.augment,
        val_split=args.val_split,
        decays=tuple(args.decays),
        seed=args.seed,
        root=args.data_dir,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
    )
    if args.json:
        print(json.dumps(record))
        return
    print(
        f"{args.backend} {args.recipe} lr {record['lr']:g}, {args.epochs} epochs at "
        f"{args.resize}, batch {args.batch_size}, augment {args.augment}; held-out accuracy "
        f"on {args.val_split} training images (fp32):"
    )
    print(f"  {'weights':<14}{'TTA none':>10}{'TTA flip':>10}")
    for name, s in record["held_out"].items():
        print(f"  {name:<14}{s['none']:>10.4f}{s['flip']:>10.4f}")
    print(f"  averaging took {record['average_seconds']:.1f} s over {record['steps']} steps")


if __name__ == "__main__":
    main()
