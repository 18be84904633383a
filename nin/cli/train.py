"""`nin train`: the chapter's NiN on Fashion-MNIST, on one device or several, on one machine
or several (docs/distributed.md)."""

from __future__ import annotations

import argparse

import nin.cli.flags as flags
from nin import spec as _spec
from nin.backends import get_backend
from nin.cli.flags import dropout_rate, non_negative_int, positive_int
from nin.cli.runs import (
    CHAPTER_TRAINING_LR,
    claim_out,
    optimizer_slots,
    recipe_from_args,
)
from nin.data import AUGMENTATIONS
from nin.tta import TTA

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """`nin train`'s flags; with none given, it trains `make train`'s run: the sprint plan
    (nin.recipes.PLANS), 0.91 in two short epochs, under 10 minutes on a 2-core CPU with or
    without bf16 (README, Training)."""
    from nin.recipes import PLANS

    plan, book = PLANS["sprint"], PLANS["book"]
    smallest = _spec.min_input_size(_spec.chapter_spec())
    p = sub.add_parser("train", allow_abbrev=False, help="train the chapter's NiN on Fashion-MNIST")
    flags.add_backend(p)
    flags.add_epochs(
        p,
        plan.epochs,
        help=f"passes over the training set (default: {plan.epochs}, the sprint plan's; the "
        f"chapter's {book.epochs})",
    )
    flags.add_batch_size(
        p,
        plan.batch_size,
        help=f"images a step (default: {plan.batch_size}, the sprint plan's)",
    )
    flags.add_resize(
        p,
        plan.resize,
        help=f"image size (default: {plan.resize}, the sprint plan's; the chapter uses "
        f"{book.resize}; {smallest} is the smallest the network takes)",
    )
    flags.add_recipe_flags(p, default=plan.recipe)
    flags.add_data_dir(p)
    flags.add_limit_train_batches(p, plan.limit_train_batches)
    p.add_argument("--limit-val-batches", type=positive_int, default=None)
    flags.add_seed(p)
    flags.add_out(
        p,
        "folder for history, plot, checkpoint and weights (default: a new "
        "runs/<backend>-<recipe>-<date-time> folder; an existing run is never "
        "replaced without --overwrite)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    flags.add_overwrite(p, "replace the run already in --out")
    flags.add_no_fast(
        p,
        "the plain fp32 step as the chapter runs it (default: the fast path: bf16 where the "
        "hardware has it; channels-last in PyTorch, compiled steps in TensorFlow, "
        "hybridized ones in MXNet)",
    )
    p.add_argument(
        "--on-stuck",
        default="stop",
        choices=["stop", "warn"],
        help="what to do when the loss stays at chance (default: stop)",
    )
    _add_data_flags(p, plan)
    _add_device_flags(p)
    p.set_defaults(func=run)


def _add_data_flags(p, plan) -> None:
    """What the data and the model are beside the recipe: augmentation, TTA, the validation
    split, dropout."""
    p.add_argument(
        "--augment",
        default=plan.augment,
        choices=list(AUGMENTATIONS),
        help="training-image augmentation, in the shared NumPy pipeline: flip mirrors each "
        "image left-right with probability 1/2 (the quality recipe's), flip-shift also "
        "shifts it by up to 2 pixels each way, flip-erase mirrors and then fills a random "
        "rectangle of half the images with noise (random erasing) (default: "
        f"{plan.augment}, the sprint plan's; the chapter's: none)",
    )
    p.add_argument(
        "--tta",
        default=plan.tta,
        choices=list(TTA),
        help="after training, also score the validation split with test-time augmentation: "
        "flip sums each image's class probabilities with its mirror image's (the quality "
        "recipe's), flip-shift adds one-pixel shifts of both (10 views) (default: "
        f"{plan.tta}, the sprint plan's)",
    )
    p.add_argument(
        "--val-split",
        type=non_negative_int,
        default=0,
        help="hold out this many training images as the validation split (default 0: "
        "validate on the test split, as the chapter)",
    )
    p.add_argument(
        "--dropout",
        type=dropout_rate,
        default=None,
        help="the dropout rate (default: the chapter's 0.5; 0 turns it off)",
    )


def _add_device_flags(p) -> None:
    g = p.add_argument_group(
        "several devices and machines (docs/distributed.md): the global batch (--batch-size) "
        "is split across them, and the same model trains"
    )
    g.add_argument(
        "--devices",
        type=positive_int,
        default=1,
        help="devices on this machine: its GPUs, or as many CPU workers on a machine "
        "without GPUs (default: 1)",
    )
    g.add_argument("--nnodes", type=positive_int, default=1, help="machines (default: 1)")
    g.add_argument(
        "--node-rank", type=non_negative_int, default=0, help="this machine's rank, from 0"
    )
    g.add_argument("--master", default=None, help="HOST:PORT of the machine with --node-rank 0")
    # a process the launcher started (PyTorch's torchrun workers)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)


def run(args) -> int:
    from nin.distributed import Layout, check_layout

    recipe = recipe_from_args(args)
    layout = Layout(args.devices, args.nnodes, args.node_rank, args.master, args.worker)
    if args.tta != "none" and (layout.parallel or layout.worker):
        raise ValueError(
            "--tta scores the model in one process after training; a data-parallel run "
            "(--devices/--nnodes) does not offer it: drop --tta, or train on one device"
        )
    if not layout.worker:  # (a launcher checked its workers' layout)
        check_layout(layout.devices, layout.nnodes, layout.node_rank, layout.master)
    B = get_backend(args.backend)
    launch = B.launch.Launch(layout)  # the backend's hooks: nin.distributed.Launch
    if not layout.worker:
        launch.check()
    if launch.starts_workers():
        return launch.start_workers(_worker_argv(args, recipe))
    spec = _checked_spec(args, B, recipe)
    writer = launch.join()
    out = _claim_run_folder(args, recipe, writer)
    if writer:
        _say_start(args, recipe, out)

    def train(engine: dict) -> None:
        history = _train(args, B, recipe, spec, engine, out)
        if writer:
            _say_done(args, history, out)

    launch.run(train, args.wording)
    return 0


def _worker_argv(args, recipe) -> list[str]:
    """The command line the workers run: this one, the run's folder claimed on the first
    machine first, and named for them when the user gave none."""
    from nin.runs import claim_out_dir

    if args.node_rank != 0:
        return list(args.argv)
    if args.out is not None:
        claim_out_dir(args.out, args.resume, args.overwrite)
        return list(args.argv)
    return [*args.argv, "--out", str(claim_out(args, args.backend, recipe.name))]


def _checked_spec(args, B, recipe):
    """The network the flags ask for, refused before any work when the input is too small
    for it or the batch would not fit in this machine's memory."""
    from nin.resources import check_fits_in_memory

    spec = _spec.with_class_block_relu(_spec.chapter_spec(10), recipe.class_block_relu)
    if args.dropout is not None:
        spec = _spec.with_dropout(spec, args.dropout)
    _spec.check_input_size(spec, args.resize, name="resize")
    if not B.num_gpus():  # on a GPU the host's memory is not what limits the batch
        check_fits_in_memory(spec, args.resize, args.batch_size, optimizer_slots(recipe))
    return spec


def _claim_run_folder(args, recipe, writer: bool):
    """The run's folder: claimed by the process that writes, before the data is read
    (folder, resume, overwrite); the others are told --out, or write nothing."""
    from nin.runs import claim_out_dir

    if writer and args.out is not None:
        claim_out_dir(args.out, args.resume, args.overwrite)
    return claim_out(args, args.backend, recipe.name) if writer or args.out else None


def _score_with_tta(args, B, model, data, trainer, history, out) -> None:
    """`--tta`: the trained model on the validation split with test-time augmentation (the
    batches the epochs' validation scored), printed and added to the last epoch's record
    in history.json, with the TTA's name; the checkpoint's history gets them too, so a
    `--resume` (which writes history.json again from the checkpoint) keeps them."""
    from nin.runs import add_to_checkpoint_epoch
    from nin.tta import tta_accuracy

    limit = trainer.num_val_batches
    acc = tta_accuracy(B, model, data, args.tta, split="val", limit_batches=limit)
    scored = {"val_acc_tta": acc, "tta": args.tta}
    history.epochs[-1].update(scored)
    add_to_checkpoint_epoch(out / "checkpoint.npz", history.epochs[-1]["epoch"], scored)
    history.save(out / "history.json")
    print(
        f"nin: {_accuracy_name(args)} with {args.tta} test-time augmentation "
        f"({TTA[args.tta]}): {acc:.4f}",
        flush=True,
    )


def _say_done(args, history, out) -> None:
    best = max(e["val_acc"] for e in history.epochs)
    print(
        f"nin: done. {_accuracy_name(args)} {history.epochs[-1]['val_acc']:.4f} "
        f"(best {best:.4f}); history.json, board.png, checkpoint.npz and weights.npz "
        f"are in {out}",
        flush=True,
    )


def _accuracy_name(args) -> str:
    """What the validation accuracy is measured on."""
    if args.val_split:
        return f"Validation accuracy (the {args.val_split} held-out training images)"
    return "Test accuracy"


def _say_start(args, recipe, out) -> None:
    from nin.recipes import resolve_recipe

    changes = recipe.changes_from(resolve_recipe("book", lr=CHAPTER_TRAINING_LR))
    if args.dropout is not None and args.dropout != 0.5:
        changes.append(f"dropout {args.dropout} (the chapter's: 0.5)")
    if args.augment != "none":
        changes.append(f"augment {args.augment} (the chapter's: none)")
    if args.val_split:
        changes.append(
            f"validation on {args.val_split} held-out training images (the chapter's: the "
            f"test split)"
        )
    print(
        f"nin: training the chapter's NiN with {args.backend}, recipe {recipe.name}"
        + (
            f" (changed from the chapter's: {'; '.join(changes)})"
            if changes
            else " (the chapter's own)"
        )
        + f", {args.resize}x{args.resize}, batch {args.batch_size}, {args.epochs} epochs; "
        f"writing to {out}",
        flush=True,
    )


def _train(args, B, recipe, spec, engine, out):
    from nin.runner import RunSettings, build_run

    settings = RunSettings(
        recipe=recipe,
        spec=spec,
        epochs=args.epochs,
        batch_size=args.batch_size,
        resize=args.resize,
        seed=args.seed,
        augment=args.augment,
        val_split=args.val_split,
        root=args.data_dir,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        fast=args.fast,
        num_gpus=1,
        out_dir=out,
        resume=args.resume,
        overwrite=args.overwrite,
        on_stuck=args.on_stuck,
    )
    run = build_run(B, settings, wording=args.wording, **engine)
    history = run.fit()
    if args.tta != "none" and out is not None:
        _score_with_tta(args, B, run.model, run.data, run.trainer, history, out)
    return history
