"""`nin train`: the chapter's NiN on Fashion-MNIST, on one device or several, on one machine
or several (docs/distributed.md)."""

from __future__ import annotations

import argparse
import sys

from nin import spec as _spec
from nin.backends import get_backend
from nin.cli import flags
from nin.cli.flags import dropout_rate, non_negative_int, positive_int
from nin.cli.runs import (
    CHAPTER_TRAINING_LR,
    claim_out,
    optimizer_slots,
    recipe_from_args,
)
from nin.cli.wording import cli_wording
from nin.data import AUGMENTATIONS
from nin.training import TTA

__all__ = ["add_parser", "run"]


def add_parser(sub) -> None:
    """`nin train`'s flags; with none given, it trains `make train`'s run: the sprint plan
    (nin.training.PLANS), 0.91 in two short epochs, under 10 minutes on a 2-core CPU with or
    without bf16 (README, Training)."""
    from nin.training import PLANS

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
    from nin.resources import check_fits_in_memory

    recipe = recipe_from_args(args)
    if args.tta != "none" and (_parallel(args) or args.worker):
        raise ValueError(
            "--tta scores the model in one process after training; a data-parallel run "
            "(--devices/--nnodes) does not offer it: drop --tta, or train on one device"
        )
    if (_parallel(args) or args.master or args.node_rank) and not args.worker:
        from nin.distributed import check_layout

        check_layout(args.devices, args.nnodes, args.node_rank, args.master)
        if args.master and args.nnodes == 1 and args.backend != "torch":
            raise ValueError(
                f"--master is the first machine's address, for --nnodes 2 or more; "
                f"{args.backend} trains one machine's devices in one process: drop --master"
            )
        if args.backend == "torch":
            return _launch_torch(args, recipe)
    B = get_backend(args.backend)
    from nin.training import claim_out_dir

    spec = _spec.with_class_block_relu(_spec.chapter_spec(10), recipe.class_block_relu)
    if args.dropout is not None:
        spec = _spec.with_dropout(spec, args.dropout)
    _spec.check_input_size(spec, args.resize, name="resize")
    if not B.num_gpus():  # on a GPU the host's memory is not what limits the batch
        check_fits_in_memory(spec, args.resize, args.batch_size, optimizer_slots(recipe))
    multi_cpu = args.backend == "tensorflow" and args.nnodes > 1 and not B.num_gpus()
    if multi_cpu and args.devices > 1:
        raise ValueError(
            "TensorFlow's MultiWorkerMirroredStrategy runs one CPU replica a machine: "
            "give --devices 1 on a machine without GPUs"
        )
    writer = _join_torch_group() if args.worker else args.node_rank == 0
    if writer and args.out is not None:  # before the data is read: folder, resume, overwrite
        claim_out_dir(args.out, args.resume, args.overwrite)
    out = claim_out(args, args.backend, recipe.name) if writer or args.out else None
    if writer:
        _say_start(args, recipe, out)
    if args.backend == "mxnet" and args.nnodes > 1:
        return _train_dist_sync(args, B, recipe, spec, out, writer)
    engine = _start_engine(args, B)
    history = _train(args, B, recipe, spec, engine, out)
    if writer:
        _say_done(args, history, out)
    if args.worker:
        _leave_torch_group()
    return 0


def _parallel(args) -> bool:
    return args.devices > 1 or args.nnodes > 1


def _launch_torch(args, recipe) -> int:
    """`--devices`/`--nnodes` in PyTorch: torchrun starts one worker process per device, each
    running this same command (with --worker); the first machine claims the run folder."""
    import subprocess

    import torch

    from nin.distributed import torchrun_command
    from nin.training import claim_out_dir

    if 0 < torch.cuda.device_count() < args.devices:
        raise ValueError(
            f"--devices {args.devices} asks for {args.devices} GPUs and this machine has "
            f"{torch.cuda.device_count()}; ask for {torch.cuda.device_count()} or fewer"
        )
    argv = _without_flag(args.argv, "--master")  # torchrun has it (and would take it for its
    # --master-addr / --master-port); the workers find the group through torchrun
    if args.node_rank == 0:
        if args.out is not None:
            claim_out_dir(args.out, args.resume, args.overwrite)
        else:
            argv += ["--out", str(claim_out(args, args.backend, recipe.name))]
    cmd = torchrun_command(
        ["nin", *argv, "--worker"], args.devices, args.nnodes, args.node_rank, args.master
    )
    print(f"nin: starting {args.devices} PyTorch worker(s) on this machine: {' '.join(cmd)}")
    return subprocess.call(cmd)


def _without_flag(argv: list[str], flag: str) -> list[str]:
    """`argv` less `flag VALUE` and `flag=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out


def _join_torch_group() -> bool:
    """A worker torchrun started joins the process group it set up; True on rank 0."""
    import torch
    from torch import distributed as dist

    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return dist.get_rank() == 0


def _leave_torch_group() -> None:
    """A worker's clean end, as torch.distributed asks: every process past its last
    collective (a peer that failed after it does not keep this one waiting past 10 minutes),
    then the process group destroyed before the interpreter exits."""
    from torch import distributed as dist

    hint = "another worker ended before it (its error is above)"
    _within(600, "meet the other workers after training", dist.barrier, hint=hint)
    dist.destroy_process_group()


def _start_engine(args, B) -> dict:
    """This process's part in a data-parallel run (nothing for one device): the Trainer's
    `devices`, `engine` and `rank`. Called once the run's folder is claimed, so that a refusal
    comes before any peer waits for this process."""
    if not _parallel(args):
        return {}
    from nin.callbacks import StallWatchdog

    if args.backend == "torch":  # several processes: none waits for ever on a failed one
        return {"devices": args.devices, "callbacks": [StallWatchdog()]}
    if args.nnodes == 1:  # one process: TensorFlow's MirroredStrategy, MXNet's contexts
        if args.backend == "tensorflow" and not B.num_gpus():
            B.use_cpu_devices(args.devices)  # before TensorFlow starts
        return {"devices": args.devices}
    from nin.distributed import free_port, parse_master, rendezvous

    if args.backend == "tensorflow":  # MultiWorkerMirroredStrategy, one process a machine
        workers = rendezvous(args.master, args.node_rank, args.nnodes, free_port())
        strategy = B.multi_worker_strategy(
            workers, args.node_rank, gpus=B.num_gpus() and args.devices
        )
        return {"devices": args.devices, "engine": strategy, "callbacks": [StallWatchdog()]}
    host, port = parse_master(args.master)  # MXNet: dist_sync, its scheduler at --master
    if args.node_rank == 0:
        args.servers = B.start_parameter_server(host, port, args.nnodes)
    kv = _within(
        600, "join MXNet's dist_sync job at --master", B.join_dist_sync, host, port, args.nnodes
    )
    # the scheduler numbers the workers as it likes: the first machine writes, and the data's
    # parts follow the machines' ranks
    return {
        "devices": args.devices,
        "engine": kv,
        "rank": args.node_rank,
        "callbacks": [StallWatchdog()],
    }


def _within(seconds: float, what: str, fn, *fn_args, hint: str = ""):
    """`fn(*fn_args)`, or this process ended (exit code 3) with a message when it has not
    returned after `seconds`: a machine that never came leaves the others waiting for ever."""
    import os
    import threading

    hint = hint or (
        "start every machine with the same --nnodes and --master, each with its own --node-rank"
    )

    def give_up():
        print(
            f"error: could not {what} within {seconds:.0f} s: {hint}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(3)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    try:
        return fn(*fn_args)
    finally:
        timer.cancel()


def _score_with_tta(args, B, model, data, trainer, history, out) -> None:
    """`--tta`: the trained model on the validation split with test-time augmentation (the
    batches the epochs' validation scored), printed and added to the last epoch's record
    in history.json, with the TTA's name; the checkpoint's history gets them too, so a
    `--resume` (which writes history.json again from the checkpoint) keeps them."""
    from nin.runs import add_to_checkpoint_epoch
    from nin.training import tta_accuracy

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
    from nin.training import resolve_recipe

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


def _train_dist_sync(args, B, recipe, spec, out, writer) -> int:
    """An MXNet dist_sync worker: a failure ends this process at once (a worker that returned
    would wait forever for the others at the kvstore's exit barrier), a run that stops making
    progress ends too (a peer that failed leaves the others waiting in a sum that never
    completes; `StallWatchdog`), and the kvstore is let go before the interpreter ends; the
    first machine then waits for its scheduler and server."""
    import gc
    import os
    import traceback

    try:
        engine = _start_engine(args, B)
        history = _train(args, B, recipe, spec, engine, out)
        if writer:
            _say_done(args, history, out)
        engine.clear()
        gc.collect()  # the kvstore's destructor: the workers' exit barrier
    except BaseException as err:  # noqa: BLE001  (any failure: the others must not wait)
        if not isinstance(err, (ValueError, OSError, RuntimeError)):
            traceback.print_exc()
        print(f"error: {cli_wording(str(err))}", file=sys.stderr, flush=True)
        for proc in getattr(args, "servers", []):
            proc.kill()
        os._exit(2)
    for proc in getattr(args, "servers", []):
        try:
            proc.wait(timeout=60)
        except Exception:  # noqa: BLE001
            proc.kill()
    return 0


def _train(args, B, recipe, spec, engine, out):
    B.set_seed(args.seed)
    data = B.FashionMNIST(
        batch_size=args.batch_size,
        resize=(args.resize, args.resize),
        root=args.data_dir,
        seed=args.seed,
        augment=args.augment,
        val_split=args.val_split,
    )
    model = B.NiN(num_classes=10, recipe=recipe, spec=spec)
    trainer = B.Trainer(
        max_epochs=args.epochs,
        num_gpus=1,
        fast=not args.no_fast,
        limit_train_batches=args.limit_train_batches,
        limit_val_batches=args.limit_val_batches,
        out_dir=out,
        resume=args.resume,
        overwrite=args.overwrite,
        on_stuck=args.on_stuck,
        wording=cli_wording,
        **engine,
    )
    history = trainer.fit(model, data)
    if args.tta != "none" and out is not None:
        _score_with_tta(args, B, model, data, trainer, history, out)
    return history
