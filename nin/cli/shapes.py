"""`nin shapes`: each backend's layer table and parameter count, against the spec's."""

from __future__ import annotations

import json
import sys

import nin.cli.flags as flags
from nin import spec as _spec
from nin.backends import BackendUnavailableError, get_backend, resolve_backends
from nin.resources import num_params

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "shapes", allow_abbrev=False, help="each backend's layer table and parameter count"
    )
    flags.add_backend(p, all_ok=True)
    flags.add_size(p, 224, help="input height and width")
    flags.add_num_classes(p)
    flags.add_json(p)
    p.set_defaults(func=run)


def _shape_rows(backend: str, spec: _spec.NetSpec, size: int) -> dict:
    B = get_backend(backend)
    net = B.build(spec)
    rows = B.layer_shapes(net, size, spec.in_channels)
    return {
        "layout": B.LAYOUT,
        "layers": [[name, list(shape)] for name, shape in rows],
        "params": B.count_params(net),
    }


def run(args) -> int:
    from nin.resources import check_fits_in_memory

    spec = _spec.chapter_spec(args.num_classes)
    try:
        analytic = _spec.output_shapes(spec, args.size)
    except _spec.InputTooSmallError as err:
        print(f"error: {args.wording(err)}", file=sys.stderr)
        return 2
    check_fits_in_memory(spec, args.size, 1, training=False)
    results, failed = {}, False
    for backend in resolve_backends(args.backend):
        try:
            results[backend] = _shape_rows(backend, spec, args.size)
        except BackendUnavailableError as err:
            results[backend] = {"error": str(err)}
            failed = True
            print(f"error: {err}", file=sys.stderr)
    if args.json:
        print(json.dumps(results))
        return 1 if failed else 0
    expected = num_params(spec, args.size)
    for backend, result in results.items():
        if "error" in result:
            continue
        print(
            f"{backend} ({result['layout']}), input 1 x {args.size} x {args.size}, "
            f"{args.num_classes} classes"
        )
        print(f"  {'layer':<24}{'output shape':<22}spec (C x H x W)")
        for (name, shape), row in zip(result["layers"], analytic):
            dims = " x ".join(map(str, row.shape))
            print(f"  {name:<24}{str(tuple(shape)):<22}{dims}")
        mark = "matches" if result["params"] == expected else "DIFFERS from"
        print(f"  parameters: {result['params']:,} ({mark} the spec's {expected:,})\n")
    return 1 if failed else 0
