"""Where MXNet's fast training step spends its time: MXNet's own profiler, by operator.

    python -m benchmarks.mxnet_profile [--size 224] [--batch-size 128] [--steps 2] [--json]

Runs nin's fast MXNet step (hybridized with static allocation, convolutions in bf16 where the
CPU has it, as `benchmarks.train` times it) and the same step with bf16 off (hybridized,
fp32), in this process, with the engine's bulk execution off so that the profiler sees each
operator rather than fused segments (its images/s are not `benchmarks.train`'s: compare the
shares). Prints, for each step, the seconds per step and each operator group's share of
the operator time: convolutions (forward, backward), the bf16 casts around them (`amp_cast`),
ReLU, pooling, dropout, the optimizer update and the rest; then the top operators by time.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import tempfile
import time

# one operator per profiler row (set before MXNet is imported)
os.environ.setdefault("MXNET_EXEC_BULK_EXEC_TRAIN", "0")
os.environ.setdefault("MXNET_EXEC_BULK_EXEC_INFERENCE", "0")

import numpy as np  # noqa: E402

GROUPS = (  # (group, pattern on the operator's name), first match wins
    ("conv backward", r"^_backward_(Convolution|npx_convolution)"),
    ("conv forward", r"^(Convolution|_npx_convolution)"),
    ("bf16 casts", r"amp_cast"),
    ("relu", r"Activation|relu"),
    ("pooling", r"Pooling"),
    ("dropout", r"Dropout"),
    ("update", r"update"),
)


def group_of(name: str) -> str:
    for group, pattern in GROUPS:
        if re.search(pattern, name):
            return group
    return "other"


def parse_operators(table: str) -> dict[str, float]:
    """Operator name -> total ms, from the 'operator' section of `mx.profiler.dumps()`."""
    rows: dict[str, float] = {}
    section = table.split("\noperator\n", 1)[-1].split("\n\n", 1)[0]
    for line in section.splitlines():
        parts = line.split()
        if len(parts) >= 6 and parts[1].isdigit():
            rows[parts[0]] = rows.get(parts[0], 0.0) + float(parts[2])
    return rows


def profile(size: int, batch_size: int, steps: int, bf16: bool) -> dict:
    from benchmarks.train import fast_trainer
    from nin import training
    from nin.backends import get_backend

    get_backend("mxnet")  # before MXNet's own import: nin's set-up (AMX) first
    import mxnet as mx

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (batch_size, 1, size, size)).astype(np.uint8)
    labels = rng.integers(0, 10, batch_size).astype(np.int64)
    has_bf16 = training.cpu_has_bf16
    if not bf16:  # the fast path less bf16: hybridized, fp32
        training.cpu_has_bf16 = lambda: False
    try:
        trainer, batch = fast_trainer("mxnet", images, labels, size)
    finally:
        training.cpu_has_bf16 = has_bf16
    for _ in range(2):  # warm-up: oneDNN picks its kernels, static memory is allocated
        trainer.train_batch(batch)
        mx.npx.waitall()
    trace = tempfile.TemporaryDirectory()  # the profiler's trace file, not kept
    mx.profiler.set_config(
        profile_all=True, aggregate_stats=True, filename=f"{trace.name}/profile.json"
    )
    mx.profiler.set_state("run")
    start = time.perf_counter()
    for _ in range(steps):
        trainer.train_batch(batch)
        mx.npx.waitall()
    seconds = (time.perf_counter() - start) / steps
    mx.profiler.set_state("stop")
    operators = parse_operators(mx.profiler.dumps(reset=True))
    trace.cleanup()
    total = sum(operators.values())
    groups: dict[str, float] = {}
    for name, ms in operators.items():
        groups[group_of(name)] = groups.get(group_of(name), 0.0) + ms
    return {
        "bf16": bool(trainer.bf16),
        "size": size,
        "batch_size": batch_size,
        "seconds_per_step": seconds,
        "images_per_s": batch_size / seconds,
        "operator_ms_per_step": total / steps,
        "groups": {g: ms / total for g, ms in sorted(groups.items(), key=lambda kv: -kv[1])},
        "top": [
            [name, ms / steps] for name, ms in sorted(operators.items(), key=lambda kv: -kv[1])[:10]
        ],
    }


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    results = [profile(args.size, args.batch_size, args.steps, bf16) for bf16 in (True, False)]
    if args.json:
        for r in results:
            print(json.dumps(r))
        return
    for r in results:
        print(
            f"mxnet fast step, {'bf16 convolutions' if r['bf16'] else 'fp32'}, "
            f"{r['size']}x{r['size']}, batch {r['batch_size']}: {r['seconds_per_step']:.2f} s "
            f"a step ({r['images_per_s']:.1f} img/s), operators {r['operator_ms_per_step']:.0f} "
            f"ms a step"
        )
        print("  " + ", ".join(f"{g} {share:.0%}" for g, share in r["groups"].items()))
        for name, ms in r["top"]:
            print(f"    {name:<36}{ms:>10.1f} ms")


if __name__ == "__main__":
    main()
