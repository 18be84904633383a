"""The GPU check: each backend in a process of its own, with its own time budget, every record
written the moment it is measured, so that one backend's crash or time-out loses nothing
of the others'.

    python -m benchmarks.gpu [--backends all] [--out DIR] [--budget 180]
                             [--device gpu|cpu] [--quick] [--data-dir DIR]

Per backend (records appended to DIR/bench-gpu.jsonl, one JSON object a line):
  probe           a real operation on the device, and the device's name
  speed           training and inference images/s at 224 (batch 128) against the chapter's
                  code, with the machine's bf16/fp32 peak measured by that framework
  chapter_epoch   one epoch of the chapter's recipe (NiN(lr=0.05), plain SGD, fp32) at
                  224x224, its seconds and test accuracy
  scaling         data-parallel training (`python -m nin train --devices K`, each framework's
                  engine) on K = 1, 2, ... every GPU there is, 128 images a GPU: images/s and
                  the efficiency against K times the one-GPU rate; on one GPU the one-GPU line
                  alone, saying so (`--quick` on a CPU: 1 and 2 CPU workers, tiny)
  time_to_0.90    the sprint plan (`make train`'s: two epochs at 67x67) to its end, seed 0:
                  its training seconds, images/s, test accuracy and device (run last, so that
                  a run past the budget loses only this record)
  error           a backend whose process crashed or ran out of its budget
`--device cpu --quick` runs the same path small on a CPU (the tests do);
`--crash BACKEND` makes that backend's process abort after its probe, to show that the
others' records survive (tests/test_benchmarks.py).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

from nin.backends import resolve_backends

RECORDS = "bench-gpu.jsonl"


STAGE_FAILED = "stage failed: "  # how a backend's process names a failed stage on stderr


def append(path: Path, record: dict) -> None:
    """One record, flushed to disk before the next measurement starts."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def device_name(backend: str, gpu: bool) -> str:
    if not gpu:
        return platform.processor() or platform.machine()
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0)
    if backend == "tensorflow":
        import tensorflow as tf

        details = tf.config.experimental.get_device_details(
            tf.config.list_physical_devices("GPU")[0]
        )
        return details.get("device_name", "GPU")
    smi = shutil.which("nvidia-smi")
    if smi:
        out = subprocess.run(
            [smi, "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True
        )
        return out.stdout.splitlines()[0].strip() if out.stdout else "GPU"
    return "GPU"


def probe(backend: str, gpu: bool) -> float:
    """A real computation on the device (2 * ones(4), summed): 8.0, or an exception."""
    if backend == "torch":
        import torch

        device = "cuda" if gpu else "cpu"
        return float((torch.ones(4, device=device) * 2).sum().item())
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.device("/GPU:0" if gpu else "/CPU:0"):
            return float(tf.reduce_sum(tf.ones(4) * 2).numpy())
    if backend == "jax":  # a CPU-only jaxlib has no "gpu" devices: this raises, and says so
        import jax
        from jax import numpy as jnp

        device = jax.devices("gpu" if gpu else "cpu")[0]
        return float((jax.device_put(jnp.ones(4), device) * 2).sum())
    import mxnet as mx

    return float((mx.np.ones(4, ctx=mx.gpu() if gpu else mx.cpu()) * 2).sum().item())


class Records:
    """One backend's records, each appended to the file as it comes (`append`), and the
    problems they name: a stage that failed and let the next ones run."""

    def __init__(self, path: Path):
        self.path = path
        self.problems: list[str] = []

    def add(self, record: dict) -> None:
        if "problem" in record:
            said = record["problem"].strip().splitlines() or ["(nothing said)"]
            self.problems.append(f"{record['kind']}: {said[-1]}")
        elif record.get("ok") is False:
            self.problems.append(f"{record['kind']}: not ok")
        append(self.path, record)


def one_backend(backend: str, args) -> list[str]:
    """Everything measured for one backend, in this process; records appended as they come.
    Returns the problems they name."""
    from nin.backends import get_backend

    records = Records(Path(args.out) / RECORDS)
    gpu = args.device == "gpu"
    B = get_backend(backend)  # TensorFlow's backend turns memory growth on at import
    start = time.perf_counter()
    value = probe(backend, gpu)
    records.add(
        {
            "backend": backend,
            "kind": "probe",
            "device": args.device,
            "device_name": device_name(backend, gpu),
            "ok": value == 8.0,
            "seconds": time.perf_counter() - start,
        },
    )
    if args.crash == backend:
        sys.stdout.flush()
        os.abort()

    from benchmarks import train as train_bench

    size, batch, steps = (67, 4, 1) if args.quick else (224, 128, 10)
    speeds, peaks = train_bench.run(
        [backend], [size], batch, steps, json_out=True, gpu=gpu, peak_framework=backend
    )
    for r in speeds:
        records.add(dict(r, kind="speed", peak_gflop_per_s=peaks))

    B.set_seed(0)
    resize = 67 if args.quick else 224
    data = B.FashionMNIST(
        batch_size=128 if not args.quick else 8, resize=(resize, resize), root=args.data_dir
    )
    trainer = B.Trainer(
        max_epochs=1,
        num_gpus=int(gpu),
        progress=False,
        stuck_check=0,
        limit_train_batches=2 if args.quick else None,
        limit_val_batches=1 if args.quick else None,
    )
    start = time.perf_counter()
    history = trainer.fit(B.NiN(lr=0.05), data)
    epoch = history.epochs[-1]
    chapter_seconds = time.perf_counter() - start
    records.add(
        {
            "backend": backend,
            "kind": "chapter_epoch",
            "size": resize,
            "seconds": chapter_seconds,
            "test_acc": epoch["val_acc"],
            "train_loss": epoch["train_loss"],
            "images_per_s": epoch["images_per_s"],
            "device": str(trainer.device),
            "quick": bool(args.quick),
        },
    )
    scaling(backend, B.num_gpus() if gpu else 2, args, records)
    records.add(time_to_090(backend, args))  # last: a run past the budget loses only this
    return records.problems


def time_to_090(backend: str, args) -> dict:
    """The sprint plan (nin.recipes.PLANS, `make train`'s) on the device, seed 0, through
    benchmarks/time_to_accuracy.py's run: its training seconds, images/s and final test
    accuracy, and `device`, where it trained (`--quick`: one epoch of two batches of 8). A
    failure is recorded, not raised. `seconds` is the whole run (build, training, the final
    evaluation); time_to_accuracy's `setup_seconds` is left out, as the framework was
    imported and warmed up by the records before."""
    from benchmarks import time_to_accuracy

    small = {"epochs": 1, "batch_size": 8, "limit_train_batches": 2} if args.quick else {}
    start = time.perf_counter()
    try:
        record = time_to_accuracy.run_one(
            backend,
            "sprint",
            0,
            0.90,
            root=args.data_dir,
            num_gpus=int(args.device == "gpu"),
            **small,
        )
    except Exception as e:  # noqa: BLE001 - the record says what went wrong
        return {"backend": backend, "kind": "time_to_0.90", "problem": f"{type(e).__name__}: {e}"}
    for field in ("curve", "setup_seconds"):
        record.pop(field)
    return dict(
        record, kind="time_to_0.90", seconds=time.perf_counter() - start, quick=bool(args.quick)
    )


def scaling(backend: str, devices: int, args, records: Records) -> None:
    """Images/s of `python -m nin train --devices K` for K = 1 .. `devices` (the same
    per-device batch, so the global batch grows with K), from each run's history."""
    import tempfile

    size, per_device, steps = (67, 4, 2) if args.quick else (224, 128, 30)
    rates: dict[int, float] = {}
    for k in range(1, devices + 1):
        with tempfile.TemporaryDirectory(prefix="nin-scaling-") as tmp:
            cmd = [sys.executable, "-m", "nin", "train", "--backend", backend]
            cmd += ["--devices", str(k), "--epochs", "1", "--resize", str(size)]
            cmd += ["--batch-size", str(per_device * k), "--limit-train-batches", str(steps)]
            cmd += ["--limit-val-batches", "1", "--recipe", "nin", "--out", tmp]
            cmd += ["--data-dir", args.data_dir] if args.data_dir else []
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode:
                records.add(
                    {
                        "backend": backend,
                        "kind": "scaling",
                        "devices": k,
                        "problem": f"exit code {done.returncode}: " + done.stderr.strip()[-1500:],
                    },
                )
                return
            history = json.loads((Path(tmp) / "history.json").read_text())
        rates[k] = history["epochs"][-1]["images_per_s"]
        records.add(
            {
                "backend": backend,
                "kind": "scaling",
                "devices": k,
                "engine": history["config"]["engine"],
                "global_batch": per_device * k,
                "images_per_s": rates[k],
                "efficiency": rates[k] / (k * rates[1]),
                "note": (
                    "one GPU here: the scaling line needs a machine with several"
                    if devices == 1
                    else f"{steps} steps, the first (warm-up) included"
                ),
            },
        )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backends", default="all")
    p.add_argument("--out", default=".")
    p.add_argument(
        "--budget",
        type=float,
        default=180,
        help="seconds each backend's process may take (default 180: 9 minutes in all)",
    )
    p.add_argument("--device", default="gpu", choices=["gpu", "cpu"])
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a test run")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder (else NIN_DATA_DIR)")
    p.add_argument("--crash", default=None, help=argparse.SUPPRESS)
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        problems = one_backend(args.one, args)
        for problem in problems:  # the records hold them in full; the parent prints these
            print(f"{STAGE_FAILED}{problem}", file=sys.stderr)
        return 3 if problems else 0

    out = Path(args.out).resolve()  # the children run from the repository's root
    out.mkdir(parents=True, exist_ok=True)
    if args.data_dir:
        args.data_dir = str(Path(args.data_dir).resolve())
    path = out / RECORDS
    smi = shutil.which("nvidia-smi")
    gpus = (
        subprocess.run(
            [smi, "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
        ).stdout
        if smi
        else ""
    )
    append(
        path,
        {
            "kind": "machine",
            "python": sys.executable,
            "device": args.device,
            "gpus": gpus.strip().splitlines(),
            "time": time.strftime("%Y-%m-%d %H:%M"),
        },
    )
    failed = 0
    for backend in resolve_backends(args.backends):
        cmd = (
            [
                sys.executable,
                "-m",
                "benchmarks.gpu",
                "--one",
                backend,
                "--out",
                str(out),
                "--device",
                args.device,
            ]
            + (["--quick"] if args.quick else [])
            + (["--data-dir", args.data_dir] if args.data_dir else [])
            + (["--crash", args.crash] if args.crash else [])
        )
        start = time.perf_counter()
        try:
            done = subprocess.run(
                cmd,
                capture_output=True,
                text=True,
                timeout=args.budget,
                cwd=Path(__file__).resolve().parent.parent,
            )
            stages = [
                line[len(STAGE_FAILED) :]
                for line in done.stderr.splitlines()
                if line.startswith(STAGE_FAILED)
            ]
            if done.returncode == 0:
                problem = None
            elif stages:  # it ran to its end; a stage's record names its problem
                problem = "failed stages: " + "; ".join(stages)
            else:
                problem = f"exit code {done.returncode}: {done.stderr.strip()[-1500:]}"
        except subprocess.TimeoutExpired:
            problem = f"ran past its budget of {args.budget:.0f} s"
        seconds = time.perf_counter() - start
        if problem:
            failed += 1
            append(
                path, {"backend": backend, "kind": "error", "problem": problem, "seconds": seconds}
            )
        print(
            f"{backend}: {'ok' if not problem else problem.splitlines()[0]} ({seconds:.0f} s)",
            flush=True,
        )
    print(f"records: {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
