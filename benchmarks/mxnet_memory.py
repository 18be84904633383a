"""Where MXNet's training-step memory goes: the same step measured with one thing changed.

    python -m benchmarks.mxnet_memory [--size 224] [--batch-size 128] [--json]

Each row is one training step of the chapter's NiN (SGD, as `benchmarks.memory` measures it:
peak RSS above the RSS before the step, in a fresh process), MXNet run four ways, then
PyTorch's fast step from the same run as the reference; the baseline is the analytic
estimate of `nin.resources` (each layer's stored activations, parameters, gradients). Reading
down the rows:

- the chapter's code (eager) against the hybridized step: what the graph's memory planning
  saves;
- hybridized without, then with static allocation and shapes (nin's fast step): what
  keeping the buffers between steps costs in the first step;
- nin's fast step with oneDNN turned off (`MXNET_MKLDNN_ENABLED=0`), in fp32: MXNet's own
  kernels in place of oneDNN's, with their own layouts and workspaces (this row is for the
  memory only: oneDNN's kernels are the ones MXNet trains fast with).

On a CPU with native bf16, nin's fast step also casts around each convolution, so those rows
run in bf16 there (the `dtype` column) and the oneDNN-off row, in fp32, compares less
directly. Each row is one fresh process, measured once.
"""

from __future__ import annotations

import argparse
import json

from benchmarks.memory import step_memory
from nin.resources import memory
from nin.spec import chapter_spec

OFF = {"MXNET_MKLDNN_ENABLED": "0"}
VARIANTS = (  # (name, backend, fast, child options, environment)
    ("MXNet, the chapter's code (eager)", "mxnet", False, (), None),
    ("MXNet hybridized, no static allocation", "mxnet", True, ("dynamic",), None),
    ("MXNet, nin's fast step (static allocation)", "mxnet", True, (), None),
    # MXNet's own kernels have no bf16: this row runs in fp32 on every CPU
    ("MXNet, nin's fast step, oneDNN off, fp32", "mxnet", True, ("fp32",), OFF),
    ("PyTorch, nin's fast step", "torch", True, (), None),
)


def run(size: int, batch_size: int) -> list[dict]:
    """One record per variant: its measured peak, the estimate and their ratio."""
    records = []
    for name, backend, fast, options, env in VARIANTS:
        step = step_memory(backend, size, batch_size, fast, options=options, env=env)
        width = 2 if step["bf16"] else 4
        estimate = memory(chapter_spec(), size, batch_size, "sgd", width)["training"]
        records.append(
            {
                "variant": name,
                "backend": backend,
                "dtype": "bf16" if step["bf16"] else "fp32",
                "size": size,
                "batch_size": batch_size,
                "environment": env or {},
                "estimate_bytes": estimate,
                "measured_bytes": step["peak_bytes"],
                "ratio": step["peak_bytes"] / estimate,
            }
        )
    return records


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    records = run(args.size, args.batch_size)
    if args.json:
        for r in records:
            print(json.dumps(r))
        return
    print(
        f"one training step, chapter NiN, {args.size}x{args.size}, batch {args.batch_size}, SGD; "
        f"measured = peak RSS above the RSS before the step; estimate = nin.resources"
    )
    fast = next(r for r in records if r["variant"].endswith("(static allocation)"))
    print(f"  {'step':<46}{'dtype':<6}{'measured':>12}{'/ estimate':>11}{'/ fast':>8}")
    for r in records:
        print(
            f"  {r['variant']:<46}{r['dtype']:<6}{r['measured_bytes'] / 2**20:>8,.0f} MiB"
            f"{r['ratio']:>11.2f}{r['measured_bytes'] / fast['measured_bytes']:>8.2f}"
        )
    print(f"  estimate ({fast['dtype']}): {fast['estimate_bytes'] / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
