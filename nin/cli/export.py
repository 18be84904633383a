"""`nin export`: a weight file as ONNX or safetensors."""

from __future__ import annotations

import nin.cli.flags as flags

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser("export", allow_abbrev=False, help="a weight file as ONNX or safetensors")
    flags.add_weights(p, "a weights.npz a run wrote (or .safetensors)", required=True)
    p.add_argument("--format", required=True, choices=["onnx", "safetensors"])
    flags.add_out(p, "the file to write", required=True)
    p.add_argument(
        "--normalize",
        action="store_true",
        help="ONNX: standardize the input in the graph, as the nin recipe's model does",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from nin import export

    out = export.export_file(args.weights, args.format, args.out, args.normalize)
    print(f"nin: wrote {out} ({args.format}, {out.stat().st_size:,} bytes) from {args.weights}")
    return 0
