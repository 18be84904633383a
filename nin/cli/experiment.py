"""`nin experiment`: train variants of the network on one budget, tabulate and plot."""

from __future__ import annotations

import nin.cli.flags as flags
from nin import spec as _spec
from nin.cli.runs import claim_out, optimizer_slots, recipe_from_args

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    p = sub.add_parser(
        "experiment", allow_abbrev=False, help="train variants on one budget, tabulate and plot"
    )
    p.add_argument(
        "--variants",
        default="nin,nin-1x1-1,nin-1x1-3",
        help="comma-separated names from nin/variants.py, or all",
    )
    flags.add_backend(p)
    flags.add_epochs(p, 1)
    flags.add_resize(p, 96)
    flags.add_batch_size(p, 128)
    flags.add_limit_train_batches(p)
    flags.add_recipe_flags(p, default="nin")
    flags.add_seed(p)
    flags.add_data_dir(p)
    flags.add_out(p, "folder for the results (default: a new runs/experiment-... folder)")
    flags.add_overwrite(p, "replace the results already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    flags.add_no_fast(p, "plain fp32, no graph fast paths")
    flags.add_num_gpus(p, 1, "the first GPU when there is one (1, the default), or 0 for the CPU")
    p.set_defaults(func=run)


def run(args) -> int:
    from nin import experiment
    from nin.resources import check_fits_in_memory
    from nin.variants import variant, variant_names

    names = (
        variant_names()
        if args.variants == "all"
        else [n.strip() for n in args.variants.split(",") if n.strip()]
    )
    if not names:
        raise ValueError(
            f"--variants {args.variants!r} names no variant; choose from "
            f"{', '.join(variant_names())}, or all"
        )
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise ValueError(
            f"--variants names {', '.join(twice)} more than once; each variant trains once"
        )
    recipe = recipe_from_args(args)
    for name in names:  # every name and size checked before any training
        spec = variant(name)
        _spec.check_input_size(spec, args.resize, name="resize")
        check_fits_in_memory(spec, args.resize, args.batch_size, optimizer_slots(recipe))
    out = experiment.claim(claim_out(args, "experiment", recipe.name), args.overwrite)
    rows = experiment.run_experiment(
        names,
        backend=args.backend,
        epochs=args.epochs,
        resize=args.resize,
        batch_size=args.batch_size,
        limit_train_batches=args.limit_train_batches,
        seed=args.seed,
        recipe=recipe,
        root=args.data_dir,
        progress=not args.quiet,
        fast=args.fast,
        out_dir=out,
        num_gpus=args.num_gpus,
        wording=args.wording,
    )
    print(experiment.format_table(rows))
    print(f"results.json, results.md and results.png are in {out}")
    return 0
