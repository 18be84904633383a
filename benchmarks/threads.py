"""MXNet's training step on nin's threads (one per core) against MXNet 1.9.1's own count.

MXNet 1.9.1 takes half the processors, and sets that count for the whole process, PyTorch's
operators included (nin/backends/mxnet/threads.py). Each side runs in a fresh process: "own"
imports MXNet before nin, so that MXNet chooses; "nin" lets nin choose. Each process times
nin's fast training step of MXNet, then PyTorch's in the same process (the chapter's model,
its SGD, one random batch); the two sides alternate over `--rounds` pairs of processes, and
the figure is each side's median. Baseline: MXNet's own count, measured in the same run.

    python -m benchmarks.threads [--size 96] [--batch-size 128] [--steps 10] [--rounds 2]
        [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

SIDES = ("own", "nin")


def child(side: str, size: int, batch_size: int, steps: int, backends: list[str]) -> dict:
    """In this process: images/s of nin's fast step per backend, and the threads' words."""
    if side == "own":
        import mxnet  # noqa: F401  # before nin: MXNet's own count

    from benchmarks.train import nin_fast
    from nin.backends.mxnet import threads

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, 1, size, size)).astype(np.uint8)
    labels = rng.integers(0, 10, batch_size).astype(np.int64)
    out = {"side": side, "threads": threads.STATE, "omp_threads": threads.COUNT}
    for backend in backends:
        step = nin_fast(backend, images, labels, size, gpu=False)[0]
        for _ in range(2):
            step()
        times = []
        for _ in range(steps):
            start = time.perf_counter()
            step()
            times.append(time.perf_counter() - start)
        out[backend] = batch_size / float(np.median(times))
    return out


def run(size: int, batch_size: int, steps: int, rounds: int, backends: list[str]) -> dict:
    """Both sides, alternated over `rounds` pairs of fresh processes; each side's median."""
    runs: dict[str, list[dict]] = {side: [] for side in SIDES}
    for _ in range(rounds):
        for side in SIDES:
            args = [side, str(size), str(batch_size), str(steps), ",".join(backends)]
            done = subprocess.run(
                [sys.executable, "-m", "benchmarks.threads", "--child", *args],
                capture_output=True,
                text=True,
            )
            if done.returncode != 0:
                raise RuntimeError(
                    f"the {side!r} process failed (exit {done.returncode}):\n{done.stderr[-2000:]}"
                )
            runs[side].append(json.loads(done.stdout.strip().splitlines()[-1]))
    result = {"size": size, "batch_size": batch_size, "steps": steps, "rounds": rounds}
    for side in SIDES:
        result[side] = {
            "threads": runs[side][0]["threads"],
            "omp_threads": runs[side][0]["omp_threads"],
            **{b: float(np.median([r[b] for r in runs[side]])) for b in backends},
        }
    result["ratio"] = {b: result["nin"][b] / result["own"][b] for b in backends}
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=96)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument(
        "--backends",
        default="mxnet,torch",
        help="timed in each process, in this order (mxnet,torch: PyTorch after MXNet)",
    )
    p.add_argument("--json", action="store_true")
    p.add_argument("--child", nargs=5, metavar="ARG", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        side, size, batch, steps, backends = args.child
        print(json.dumps(child(side, int(size), int(batch), int(steps), backends.split(","))))
        return 0
    from nin.backends import resolve_backends

    backends = resolve_backends(args.backends)
    if args.rounds < 1 or args.steps < 1:
        p.error("--rounds and --steps must be at least 1")
    given = [
        f"{k}={os.environ[k]}"
        for k in ("OMP_NUM_THREADS", "MXNET_OMP_MAX_THREADS", "OMP_THREAD_LIMIT")
        if os.environ.get(k)
    ]
    if given:  # both sides then run on the caller's count: nothing is compared
        print(
            f"note: {', '.join(given)} is set, so both sides run on it; unset it to compare "
            "MXNet's own thread count with nin's",
            file=sys.stderr,
        )
    result = run(args.size, args.batch_size, args.steps, args.rounds, backends)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"size {args.size}, batch {args.batch_size}, median of {args.steps} steps a process, "
        f"{args.rounds} process(es) a side, alternated"
    )
    for side in SIDES:
        print(f"  {side}: {result[side]['threads']}")
    for b in backends:
        print(
            f"  {b:<11} {result['nin'][b]:7.1f} img/s on nin's threads vs "
            f"{result['own'][b]:7.1f} on MXNet's own ({result['ratio'][b]:.2f}x)"
            + ("  (after MXNet, in its process)" if b != "mxnet" else "")
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
