"""`nin resources`: parameters, MACs and memory, computed from the spec."""

from __future__ import annotations

import json

import nin.cli.flags as flags
from nin import spec as _spec

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "resources", allow_abbrev=False, help="parameters, MACs and memory from the spec"
    )
    p.add_argument("--variant", default="nin", help="see nin/variants.py (default: nin)")
    flags.add_size(p, 224, help="input height and width")
    flags.add_batch_size(p, 128)
    flags.add_num_classes(p)
    p.add_argument(
        "--optimizer",
        default="sgd",
        choices=["sgd", "momentum", "adam"],
        help="the optimizer whose state the training memory counts: sgd (none), momentum or "
        "adam (default: sgd)",
    )
    flags.add_json(p)
    p.set_defaults(func=run)


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def run(args) -> int:
    from nin.resources import summary
    from nin.variants import variant

    spec = variant(args.variant, args.num_classes)
    _spec.check_input_size(spec, args.size)
    result = summary(spec, args.size, args.batch_size, args.optimizer)
    if args.json:
        print(json.dumps(result))
        return 0
    print(
        f"{spec.name}: input {args.size}x{args.size}, batch {args.batch_size}, optimizer "
        f"{args.optimizer} (minimum input {result['min_input_size']}x"
        f"{result['min_input_size']})"
    )
    print(f"  {'layer':<10}{'output':<18}{'params':>12}{'MACs/image':>16}{'activations/image':>20}")
    for row in result["layers"]:
        shape = " x ".join(map(str, row["shape"]))
        print(
            f"  {row['name']:<10}{shape:<18}{row['params']:>12,}{row['macs']:>16,}"
            f"{row['activations']:>20,}"
        )
    print(
        f"  parameters {result['params']:,}; MACs {result['macs_per_image']:,} per image "
        f"(FLOPs = 2 x MACs = {result['flops_per_image']:,}); pooling "
        f"{result['pool_ops_per_image']:,} and ReLU {result['relu_ops_per_image']:,} "
        f"operations per image, apart"
    )
    for dtype in ("fp32", "bf16"):
        m = result["memory"][dtype]
        parts = ", ".join(
            f"{k.replace('_', ' ')} {_mib(v)}" for k, v in m["training_parts"].items()
        )
        print(
            f"  {dtype}: inference {_mib(m['inference'])} (peak live activations "
            f"{_mib(m['inference_activations'])} + parameters); training "
            f"{_mib(m['training'])} ({parts})"
        )
    return 0
