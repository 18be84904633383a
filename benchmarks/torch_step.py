"""Where PyTorch's fast training step spends its time, and torch.compile against eager.

Profiles nin's fast step (channels-last, bf16 autocast, the chapter's model and SGD) with
torch.profiler and splits its CPU time into convolutions (forward and backward, with their
GFLOP/s from the analytic MACs), ReLU (forward and backward), pooling and the rest. With
`--compile`, also times the same step with the network under `torch.compile`, in
alternation with eager (medians, after warm-up steps that include the compilation).

    python -m benchmarks.torch_step [--size 224] [--batch-size 128] [--steps 2] [--compile]
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks.train import _paired, fast_trainer
from nin.resources import conv_macs
from nin.spec import chapter_spec

# profiler op names -> the part of the step they belong to (first match wins)
PARTS = (
    ("convolution backward", ("convolution_backward", "ConvolutionBackward")),
    ("convolution forward", ("mkldnn_convolution", "aten::convolution", "aten::_convolution")),
    ("relu", ("relu", "clamp_min", "threshold_backward", "ReluBackward")),
    ("pooling", ("max_pool", "MaxPool", "adaptive_avg_pool", "AdaptiveAvgPool")),
)


def _part(name: str) -> str:
    for part, keys in PARTS:
        if any(k in name for k in keys):
            return part
    return "other"


def profile(trainer, batch, steps: int) -> dict:
    """Seconds per step in each part, from the ops' self CPU time."""
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    trainer.train_batch(batch)  # warm-up outside the profile
    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            trainer.train_batch(batch)
    seconds = {}
    for event in prof.key_averages():
        part = _part(event.key)
        seconds[part] = seconds.get(part, 0.0) + event.self_cpu_time_total / 1e6 / steps
    return seconds


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time torch.compile")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (args.batch_size, 1, 28, 28)).astype(np.uint8)
    labels = np.arange(args.batch_size) % 10
    trainer, batch = fast_trainer("torch", images, labels, args.size)
    seconds = profile(trainer, batch, args.steps)
    total = sum(seconds.values())
    flops = 2 * conv_macs(chapter_spec(), args.size) * args.batch_size
    conv_flops = {"convolution forward": flops, "convolution backward": 2 * flops}
    record = {
        "size": args.size,
        "batch_size": args.batch_size,
        "step_seconds": total,
        "parts": {
            k: {
                "seconds": v,
                "share": v / total,
                "gflop_per_s": conv_flops[k] / v / 1e9 if k in conv_flops else None,
            }
            for k, v in sorted(seconds.items())
        },
    }
    if args.compile:
        import torch

        compiled, _ = fast_trainer("torch", images, labels, args.size)
        compiled.model.net = torch.compile(compiled.model.net)
        eager_s, compiled_s = _paired(
            lambda: trainer.train_batch(batch), lambda: compiled.train_batch(batch), args.steps
        )
        record["eager_images_per_s"] = args.batch_size / eager_s
        record["compiled_images_per_s"] = args.batch_size / compiled_s
    if args.json:
        print(json.dumps(record))
        return
    print(
        f"PyTorch fast step, {args.size}x{args.size}, batch {args.batch_size}: "
        f"{total:.3f} s of CPU time per step (profiled)"
    )
    for part, r in record["parts"].items():
        rate = f"  {r['gflop_per_s']:5.0f} GFLOP/s" if r["gflop_per_s"] else ""
        print(f"  {part:<22}{r['seconds']:7.3f} s  {100 * r['share']:4.0f}%{rate}")
    if args.compile:
        print(
            f"torch.compile: {record['compiled_images_per_s']:.1f} images/s against "
            f"{record['eager_images_per_s']:.1f} eager"
        )


if __name__ == "__main__":
    main()
