"""Peak memory of one training step, measured, beside the analytic estimate.

Each backend runs in a fresh process on the CPU: the model (built by one forward pass),
optimizer and one batch are made; the kernel's peak-RSS counter is then reset
(/proc/self/clear_refs) and the first training step is measured as peak RSS above the RSS
before it. (A second step would show less: allocators keep the first step's pages.)
Baseline: the estimate from nin.resources for the same spec, size, batch and optimizer.

    python -m benchmarks.memory [--backend all] [--size 224] [--batch-size 32] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from nin.backends import resolve_backends
from nin.resources import memory
from nin.spec import chapter_spec

CHILD = r"""
import json, sys
import numpy as np
from nin.backends import get_backend
backend, size, batch, fast = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] == "1"
options = sys.argv[5].split(",") if len(sys.argv) > 5 else []
if "fp32" in options:                                          # no bf16 step, whatever the CPU
    import nin.machine
    nin.machine.cpu_has_bf16 = lambda: False
B = get_backend(backend)

def rss(field):
    for line in open("/proc/self/status"):
        if line.startswith(field):
            return int(line.split()[1]) * 1024

images = np.random.default_rng(0).integers(0, 256, (batch, 28, 28)).astype(np.uint8)
labels = np.arange(batch) % 10
data = B.FashionMNIST(batch_size=batch, resize=(size, size),
                      arrays=(images, labels, images, labels))
model = B.NiN(recipe="book", lr=0.01)
trainer = B.Trainer(max_epochs=1, progress=False, fast=fast, stuck_check=0)
trainer.prepare(model, data)
if "dynamic" in options:                                # MXNet: hybridized, no static memory
    model.hybridize(static_alloc=False, static_shape=False)
batch_data = next(iter(data.train_dataloader()))
before = rss("VmRSS")
open("/proc/self/clear_refs", "w").write("5")                 # reset the peak counter
trainer.train_batch(batch_data)
B.synchronize()                                                # MXNet: the backward pass too
print(json.dumps({"peak_bytes": rss("VmHWM") - before, "bf16": bool(trainer.bf16)}))
"""


def measure(backend: str, size: int, batch: int, fast: bool) -> int:
    """The step's peak memory in bytes (`step_memory`'s)."""
    return step_memory(backend, size, batch, fast)["peak_bytes"]


def step_memory(
    backend: str, size: int, batch: int, fast: bool, options: tuple[str, ...] = (), env=None
) -> dict:
    """One training step's peak memory above the RSS before it ("peak_bytes"), measured in a
    fresh process, and whether it ran in bf16 ("bf16": the fast path on a machine with
    native bf16). `options`: "dynamic" (MXNet's fast step: hybridized without static
    allocation and shapes), "fp32" (the fast step without bf16 on any CPU); `env`: variables
    set in the child's environment."""
    argv = [sys.executable, "-c", CHILD, backend, str(size), str(batch), "1" if fast else "0"]
    out = subprocess.run(
        argv + ([",".join(options)] if options else []),
        capture_output=True,
        text=True,
        check=True,
        env=None if env is None else {**os.environ, **env},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="all")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    records = []
    for backend in resolve_backends(args.backend):
        for fast in (False, True):
            step = step_memory(backend, args.size, args.batch_size, fast)
            measured = step["peak_bytes"]
            estimate = memory(
                chapter_spec(), args.size, args.batch_size, "sgd", 2 if step["bf16"] else 4
            )["training"]
            records.append(
                {
                    "backend": backend,
                    "fast": fast,
                    "dtype": "bf16" if step["bf16"] else "fp32",
                    "size": args.size,
                    "batch_size": args.batch_size,
                    "estimate_bytes": estimate,
                    "measured_bytes": measured,
                    "ratio": measured / estimate,
                }
            )
    if args.json:
        print(json.dumps(records))
        return
    print(
        f"one training step, chapter NiN, {args.size}x{args.size}, batch {args.batch_size}, "
        f"SGD; measured = peak RSS above the RSS before the step"
    )
    print(f"  {'backend':<11}{'step':<6}{'dtype':<6}{'estimate':>14}{'measured':>14}{'ratio':>8}")
    for r in records:
        print(
            f"  {r['backend']:<11}{'fast' if r['fast'] else 'plain':<6}{r['dtype']:<6}"
            f"{r['estimate_bytes'] / 2**20:>11,.0f} MiB"
            f"{r['measured_bytes'] / 2**20:>11,.0f} MiB{r['ratio']:>8.2f}"
        )


if __name__ == "__main__":
    main()
