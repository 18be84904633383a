"""`nin compare`: the same weights in every backend, layer by layer; the same training steps
(`--train-steps`); one device against N replicas (`--data-parallel`)."""

from __future__ import annotations

import json
from pathlib import Path

import nin.cli.flags as flags
from nin import spec as _spec
from nin.backends import BACKENDS, resolve_backends
from nin.cli.flags import non_negative_int, positive_int

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "compare", allow_abbrev=False, help="the same weights in every backend, layer by layer"
    )
    p.add_argument(
        "--backends",
        default=",".join(BACKENDS),
        help="comma-separated backends; add onnxruntime for the exported ONNX graph (inference)",
    )
    reference = next(iter(BACKENDS))
    p.add_argument(
        "--reference",
        default=reference,
        help=f"the backend the others are measured against (default: {reference})",
    )
    flags.add_size(p, None, help="input size (224; 67 with --data-parallel)")
    flags.add_batch_size(p, None, help="batch (4; the global batch, 16, with --data-parallel)")
    flags.add_seed(p)
    flags.add_num_classes(p)
    flags.add_weights(p, "a canonical weight file (.npz) to load")
    flags.add_data_dir(p, help="Fashion-MNIST folder for the input batch")
    p.add_argument(
        "--train-steps",
        type=non_negative_int,
        default=0,
        help="instead: train N SGD steps in each backend and compare the losses",
    )
    flags.add_num_gpus(
        p,
        0,
        "with --train-steps: train on the first GPU (1) or the CPU (0, the default); the "
        "layer comparison runs in fp32 on the CPU",
    )
    p.add_argument(
        "--plot",
        default="runs/compare/parity.png",
        help="with --train-steps: where the loss curves go",
    )
    p.add_argument(
        "--data-parallel",
        type=positive_int,
        default=0,
        metavar="N",
        help="instead: train --train-steps steps (10 by default) on one device and on N "
        "replicas with each framework's engine, and compare (docs/distributed.md)",
    )
    p.add_argument(
        "--machines",
        action="store_true",
        help="with --data-parallel: the N replicas as N machines on 127.0.0.1 (--nnodes)",
    )
    flags.add_json(p)
    p.set_defaults(func=run)


def run(args) -> int:
    from nin import compare
    from nin.quick import ENV_VAR, quick_settings
    from nin.resources import check_fits_in_memory

    if quick_settings() is not None:
        raise ValueError(
            f"{ENV_VAR} is set, and compare measures at the size and batch you "
            f"give: unset {ENV_VAR} (`unset {ENV_VAR}`) to compare"
        )
    if args.data_parallel:
        return _compare_data_parallel(args)
    if args.machines:
        raise ValueError("--machines goes with --data-parallel N")
    args.size = 224 if args.size is None else args.size
    args.batch_size = 4 if args.batch_size is None else args.batch_size
    plot = Path(args.plot).expanduser()
    if args.train_steps:
        if plot.suffix.lower() != ".png":
            raise ValueError(f"--plot {args.plot}: give a file name ending in .png")
        from nin.files import check_writable_folder

        check_writable_folder(plot.parent, "--plot's folder")
    spec = _spec.chapter_spec(args.num_classes)
    if args.weights:  # the weights' own spec: a run with any recipe or variant loads
        from nin import weights as _weights

        spec = _weights.read(args.weights)[1]
    backends = _compared(args)
    reference = resolve_backends(args.reference)[0]
    _spec.check_input_size(spec, args.size)
    check_fits_in_memory(spec, args.size, args.batch_size, training=bool(args.train_steps))
    common = dict(
        size=args.size,
        batch_size=args.batch_size,
        seed=args.seed,
        root=args.data_dir,
        reference=reference,
    )
    if args.train_steps:
        result = compare.train_parity(
            backends, spec, steps=args.train_steps, num_gpus=args.num_gpus, **common
        )
        compare.plot_parity(result, plot)
        if args.json:
            print(json.dumps(result))
        else:
            _print_parity(args, result, plot)
        return 0
    result = compare.compare_layers(backends, spec, weights_path=args.weights, **common)
    print(json.dumps(result) if args.json else compare.format_layers(result, args.wording))
    return 0


def _compared(args) -> list[str]:
    """--backends as canonical names, onnxruntime (the exported graph) last."""
    from nin import compare

    names = [b.strip().lower() for b in args.backends.split(",") if b.strip()]
    with_ort = compare.ONNXRUNTIME in names
    if with_ort and args.train_steps:
        raise ValueError(
            "onnxruntime runs the exported graph for inference only; drop it "
            "from --backends for --train-steps"
        )
    backends = resolve_backends([b for b in names if b != compare.ONNXRUNTIME])
    return backends + ([compare.ONNXRUNTIME] if with_ort else [])


def _print_parity(args, result: dict, plot: Path) -> None:
    """--train-steps' table: each backend's loss at each step, then its differences."""
    names = list(result["losses"])
    print(
        f"{args.train_steps} SGD steps at {args.size}x{args.size}, batch "
        f"{args.batch_size}, same weights and batches, dropout off"
    )
    print(f"{'step':<6}" + "".join(f"{b:<14}" for b in names))
    for i in range(args.train_steps):
        print(f"{i + 1:<6}" + "".join(f"{result['losses'][b][i]:<14.6f}" for b in names))
    for b in names[1:]:
        print(
            f"{b}: max loss difference {result['max_loss_diff'][b]:.2e}, final weights "
            f"max relative difference {result['max_weight_rel_diff'][b]:.2e}"
        )
    print(f"plot: {plot}")


def _compare_data_parallel(args) -> int:
    from nin import compare

    if args.data_parallel < 2:
        raise ValueError("--data-parallel N compares N replicas with one device: N >= 2")
    if args.weights or ("onnxruntime" in args.backends):
        raise ValueError(
            "--data-parallel trains from each backend's seeded weights: drop "
            "--weights and onnxruntime"
        )
    backends = resolve_backends([b.strip() for b in args.backends.split(",") if b.strip()])
    size = 67 if args.size is None else args.size
    batch = 16 if args.batch_size is None else args.batch_size
    steps = args.train_steps or 10
    _spec.check_input_size(_spec.chapter_spec(10), size)
    if batch < args.data_parallel:
        raise ValueError(
            f"--batch-size {batch} cannot be split across {args.data_parallel} replicas: "
            f"give at least {args.data_parallel}"
        )
    if not args.json:
        print(
            f"nin: {steps} SGD steps at lr {compare.DP_LR}, {size}x{size}, global batch "
            f"{batch}, fp32, dropout off, one CPU thread a process: one device against "
            f"{args.data_parallel} replicas{' as machines on 127.0.0.1' if args.machines else ''}",
            flush=True,
        )
    records = []
    for backend in backends:
        for record in compare.data_parallel(
            [backend],
            workers=args.data_parallel,
            steps=steps,
            size=size,
            batch_size=batch,
            seed=args.seed,
            root=args.data_dir,
            machines=args.machines,
        ):
            records.append(record)
            if args.json:
                print(json.dumps(record), flush=True)
            else:
                print(
                    f"{record['backend']:<11} {record['engine']}: max loss difference "
                    f"{record['max_loss_diff']:.2e}, final weights relative difference "
                    f"{record['max_weight_rel_diff']:.2e} (the most in one array: "
                    f"{record['worst_array_rel_diff']:.2e}, {record['worst_array']})",
                    flush=True,
                )
    return 0
