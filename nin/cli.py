"""`python -m nin <command>`: shapes, resources, compare, train, experiment."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from nin import spec as _spec
from nin.backends import BackendUnavailableError, get_backend, resolve_backends
from nin.data import AUGMENTATIONS
from nin.resources import num_params
from nin.training import TTA

__all__ = ["main", "positive_int", "fresh_out_dir"]


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _checked(parse, ok, expected: str):
    """An argparse type: `parse(text)`, refused with `expected` unless `ok(value)`."""

    def check(text: str):
        try:
            value = parse(text)
        except ValueError:
            value = None
        if value is None or not ok(value):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return check


non_negative_int = _checked(int, lambda v: v >= 0, "a whole number >= 0")
_dropout_rate = _checked(float, lambda v: 0 <= v < 1, "a rate >= 0 and < 1")


def fresh_out_dir(command: str, *parts: str, root: str = "runs") -> Path:
    """A new folder for this run, made here: runs/<command>-<parts>-<date-time>[-N], never one
    that exists, so that no run replaces another."""
    stem = "-".join([command, *parts, time.strftime("%Y%m%d-%H%M%S")])
    Path(root).mkdir(parents=True, exist_ok=True)
    for n in range(1, 10_000):
        path = Path(root) / (stem if n == 1 else f"{stem}-{n}")
        try:
            path.mkdir()  # claimed: two runs started in the same second get two
            return path
        except FileExistsError:
            continue
    raise RuntimeError(f"could not make a new folder for {stem} under {root}")


# the args NIN_QUICK caps, with the flag that sets each
_QUICK_FLAGS = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "resize": "--resize",
    "limit_train_batches": "--limit-train-batches",
    "limit_val_batches": "--limit-val-batches",
}


# The library names Python arguments in backticks (`resume=True`, `out_dir`); on the command
# line they read as the flags that set them. Whatever has no flag keeps its Python name.
_FLAG_WORDING = (
    (r"`resume=True`", "--resume"),
    (r"`overwrite=True`", "--overwrite"),
    (r"`out_dir`", "--out"),
    (r"`root=<folder>`", "--data-dir <folder>"),
    (r"`root`", "--data-dir"),
    (r"`lr`", "--lr"),
    (r"`fast=False`", "--no-fast"),
    (r"`fast=True`", "drop --no-fast"),
    (r"`recipe='(\w+)'`", r"--recipe \1"),
    (r"`optimizer='(\w+)'`", r"--optimizer \1"),
    (r"`max_epochs=(\d+)`", r"--epochs \1"),
    (r"`max_epochs`", "--epochs"),
    (r"`batch_size=(\d+)`", r"--batch-size \1"),
    (r"`batch_size`", "--batch-size"),
    (r"`(resize|size)=(\d+)`", r"--\1 \2"),
    (r"`backend`", "--backend"),
    (r"`normalize`", "--normalize"),
    (r"`devices=(\d+)`", r"--devices \1"),
)


def cli_wording(text: str) -> str:
    """A library message as the command line says it: Python arguments become flags."""
    import re

    for pattern, flag in _FLAG_WORDING:
        text = re.sub(pattern, flag, text)
    return text


def _apply_quick(args, argv):
    """NIN_QUICK on the command line: say what it changes, and refuse when it contradicts a
    flag the user gave; the args then hold the values that will run. Returns the settings
    (None when NIN_QUICK is unset)."""
    import os

    from nin.quick import ENV_VAR, capped, quick_settings

    quick = quick_settings()
    if quick is None:
        return None
    wanted = {
        "epochs": min(args.epochs, quick.epochs),
        "batch_size": min(args.batch_size, quick.batch_size),
        "resize": quick.resize,
        "limit_train_batches": capped(args.limit_train_batches, quick.train_batches),
        "limit_val_batches": capped(getattr(args, "limit_val_batches", None), quick.val_batches),
    }
    try:
        _spec.check_input_size(_spec.chapter_spec(), wanted["resize"], name="resize")
    except _spec.InputTooSmallError as err:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r}: resize={wanted['resize']}: {err}"
        ) from None
    given = {a.split("=")[0] for a in argv if a.startswith("--")}
    clashes = [
        f"{flag} {getattr(args, name)}"
        for name, flag in _QUICK_FLAGS.items()
        if flag in given and getattr(args, name) != wanted[name]
    ]
    if clashes:
        raise ValueError(
            f"{ENV_VAR}={os.environ[ENV_VAR]!r} is set and would train {wanted['epochs']} "
            f"epoch(s) of {wanted['limit_train_batches']} batches of {wanted['batch_size']} at "
            f"{wanted['resize']}x{wanted['resize']}, but {', '.join(clashes)} were given: "
            f"unset {ENV_VAR} for the run you asked for, or drop those flags"
        )
    for name in _QUICK_FLAGS:
        if hasattr(args, name):
            setattr(args, name, wanted[name])
    print(
        f"nin: {ENV_VAR}={os.environ[ENV_VAR]!r} is set: a quick run of {args.epochs} "
        f"epoch(s), {args.limit_train_batches} batches of {args.batch_size} at "
        f"{args.resize}x{args.resize} (unset {ENV_VAR} for a full run)",
        flush=True,
    )
    return quick


def _shape_rows(backend: str, spec: _spec.NetSpec, size: int) -> dict:
    B = get_backend(backend)
    net = B.build(spec)
    rows = B.layer_shapes(net, size, spec.in_channels)
    return {
        "layout": B.LAYOUT,
        "layers": [[name, list(shape)] for name, shape in rows],
        "params": B.count_params(net),
    }


def cmd_shapes(args) -> int:
    from nin.resources import check_fits_in_memory

    spec = _spec.chapter_spec(args.num_classes)
    try:
        analytic = _spec.output_shapes(spec, args.size)
    except _spec.InputTooSmallError as err:
        print(f"error: {cli_wording(str(err))}", file=sys.stderr)
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


# the lr of the chapter's training cell, `NiN(lr=0.05)`: `--recipe book` trains with it
CHAPTER_TRAINING_LR = 0.05


def _recipe_from_args(args):
    """The named recipe with every recipe flag the user gave put in its place."""
    from nin.training import RECIPE_FLAGS, resolve_recipe

    given = {name: getattr(args, name) for name in RECIPE_FLAGS}
    if args.recipe == "book" and given["lr"] is None:
        given["lr"] = CHAPTER_TRAINING_LR
    return resolve_recipe(args.recipe, **given)


def _claim_out(args, command: str, *parts: str) -> Path:
    """--out as given, or a fresh folder; --resume needs --out. Kept on `args.run_folder`
    for the message an interruption prints."""
    if args.out is None:
        if getattr(args, "resume", False):
            raise ValueError("--resume needs --out: the folder of the run to continue")
        args.run_folder = fresh_out_dir(command, *parts)
    else:
        args.run_folder = Path(args.out).expanduser()
    return args.run_folder


def _optimizer_slots(recipe) -> str:
    """The name nin.resources.memory takes for the recipe's optimizer state."""
    return "adam" if recipe.optimizer == "adam" else "momentum" if recipe.momentum else "sgd"


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
            argv += ["--out", str(_claim_out(args, args.backend, recipe.name))]
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


def cmd_train(args) -> int:
    from nin.resources import check_fits_in_memory

    recipe = _recipe_from_args(args)
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
        check_fits_in_memory(spec, args.resize, args.batch_size, _optimizer_slots(recipe))
    multi_cpu = args.backend == "tensorflow" and args.nnodes > 1 and not B.num_gpus()
    if multi_cpu and args.devices > 1:
        raise ValueError(
            "TensorFlow's MultiWorkerMirroredStrategy runs one CPU replica a machine: "
            "give --devices 1 on a machine without GPUs"
        )
    writer = _join_torch_group() if args.worker else args.node_rank == 0
    if writer and args.out is not None:  # before the data is read: folder, resume, overwrite
        claim_out_dir(args.out, args.resume, args.overwrite)
    out = _claim_out(args, args.backend, recipe.name) if writer or args.out else None
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


def cmd_compare(args) -> int:
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
    names = [b.strip().lower() for b in args.backends.split(",") if b.strip()]
    with_ort = compare.ONNXRUNTIME in names
    if with_ort and args.train_steps:
        raise ValueError(
            "onnxruntime runs the exported graph for inference only; drop it "
            "from --backends for --train-steps"
        )
    backends = resolve_backends([b for b in names if b != compare.ONNXRUNTIME])
    backends += [compare.ONNXRUNTIME] if with_ort else []
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
            return 0
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
        return 0
    result = compare.compare_layers(backends, spec, weights_path=args.weights, **common)
    print(json.dumps(result) if args.json else cli_wording(compare.format_layers(result)))
    return 0


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


def _mib(n: int) -> str:
    return f"{n / 2**20:,.1f} MiB"


def cmd_resources(args) -> int:
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


def cmd_experiment(args) -> int:
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
    recipe = _recipe_from_args(args)
    for name in names:  # every name and size checked before any training
        spec = variant(name)
        _spec.check_input_size(spec, args.resize, name="resize")
        check_fits_in_memory(spec, args.resize, args.batch_size, _optimizer_slots(recipe))
    out = experiment.claim(_claim_out(args, "experiment", recipe.name), args.overwrite)
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
        fast=not args.no_fast,
        out_dir=out,
        num_gpus=args.num_gpus,
        wording=cli_wording,
    )
    print(experiment.format_table(rows))
    print(f"results.json, results.md and results.png are in {out}")
    return 0


def _add_recipe_flags(p, default: str) -> None:
    """--recipe (`default` unless given), then one flag per Recipe field: each given one
    wins over the recipe's value."""
    from nin.training import CHOICES, RECIPE_FLAGS, RECIPES

    p.add_argument(
        "--recipe",
        default=default,
        choices=list(RECIPES),
        help="nin (He init, a linear class block, standardized inputs, Adam on a one-cycle "
        "schedule at lr 1e-3), book (the chapter's training cell: Xavier, ReLU class block, "
        "raw inputs, plain SGD at lr 0.05), or sprint / quality (nin's with label smoothing "
        f"0.1 at lr 2e-3; quality with weight decay: docs/training.md) (default: {default})",
    )
    for name, help_text in RECIPE_FLAGS.items():
        flag = "--" + name.replace("_", "-")
        if name == "normalize":
            p.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=help_text + " (default: the recipe's)",
            )
        elif name in CHOICES:
            p.add_argument(
                flag,
                choices=CHOICES[name],
                default=None,
                help=help_text + " (default: the recipe's)",
            )
        else:
            p.add_argument(
                flag, type=float, default=None, help=help_text + " (default: the recipe's)"
            )


def cmd_export(args) -> int:
    from nin import export

    out = export.export_file(args.weights, args.format, args.out, args.normalize)
    print(f"nin: wrote {out} ({args.format}, {out.stat().st_size:,} bytes) from {args.weights}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nin", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "shapes", allow_abbrev=False, help="each backend's layer table and parameter count"
    )
    p.add_argument("--backend", default="all", help="torch, mxnet, tensorflow or all")
    p.add_argument("--size", type=positive_int, default=224, help="input height and width")
    p.add_argument("--num-classes", type=positive_int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.set_defaults(func=cmd_shapes)

    p = sub.add_parser(
        "resources", allow_abbrev=False, help="parameters, MACs and memory from the spec"
    )
    p.add_argument("--variant", default="nin", help="see nin/variants.py (default: nin)")
    p.add_argument("--size", type=positive_int, default=224)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--num-classes", type=positive_int, default=10)
    p.add_argument("--optimizer", default="sgd", choices=["sgd", "momentum", "adam"])
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_resources)

    p = sub.add_parser(
        "experiment", allow_abbrev=False, help="train variants on one budget, tabulate and plot"
    )
    p.add_argument(
        "--variants",
        default="nin,nin-1x1-1,nin-1x1-3",
        help="comma-separated names from nin/variants.py, or all",
    )
    p.add_argument("--backend", default="torch", choices=["torch", "mxnet", "tensorflow"])
    p.add_argument("--epochs", type=positive_int, default=1)
    p.add_argument("--resize", type=positive_int, default=96)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--limit-train-batches", type=positive_int, default=None)
    _add_recipe_flags(p, default="nin")
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--data-dir", default=None)
    p.add_argument(
        "--out",
        default=None,
        help="folder for the results (default: a new runs/experiment-... folder)",
    )
    p.add_argument("--overwrite", action="store_true", help="replace the results already in --out")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--no-fast", action="store_true", help="plain fp32, no graph fast paths")
    p.add_argument(
        "--num-gpus",
        type=int,
        choices=[0, 1],
        default=1,
        help="the first GPU when there is one (1, the default), or 0 for the CPU",
    )
    p.set_defaults(func=cmd_experiment)

    p = sub.add_parser("export", allow_abbrev=False, help="a weight file as ONNX or safetensors")
    p.add_argument("--weights", required=True, help="a weights.npz a run wrote (or .safetensors)")
    p.add_argument("--format", required=True, choices=["onnx", "safetensors"])
    p.add_argument("--out", required=True, help="the file to write")
    p.add_argument(
        "--normalize",
        action="store_true",
        help="ONNX: standardize the input in the graph, as the nin recipe's model does",
    )
    p.set_defaults(func=cmd_export)

    p = sub.add_parser(
        "compare", allow_abbrev=False, help="the same weights in every backend, layer by layer"
    )
    p.add_argument(
        "--backends",
        default="torch,mxnet,tensorflow",
        help="comma-separated backends; add onnxruntime for the exported ONNX graph (inference)",
    )
    p.add_argument("--reference", default="torch")
    p.add_argument(
        "--size", type=positive_int, default=None, help="input size (224; 67 with --data-parallel)"
    )
    p.add_argument(
        "--batch-size",
        type=positive_int,
        default=None,
        help="batch (4; the global batch, 16, with --data-parallel)",
    )
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument("--num-classes", type=positive_int, default=10)
    p.add_argument("--weights", default=None, help="a canonical weight file (.npz) to load")
    p.add_argument("--data-dir", default=None, help="Fashion-MNIST folder for the input batch")
    p.add_argument(
        "--train-steps",
        type=non_negative_int,
        default=0,
        help="instead: train N SGD steps in each backend and compare the losses",
    )
    p.add_argument(
        "--num-gpus",
        type=int,
        choices=[0, 1],
        default=0,
        help="with --train-steps: train on the first GPU (1) or the CPU (0, the "
        "default); the layer comparison runs in fp32 on the CPU",
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
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("train", allow_abbrev=False, help="train the chapter's NiN on Fashion-MNIST")
    # the defaults are `make train`'s: the sprint plan (nin.training.PLANS), 0.91 in two
    # short epochs, under 10 minutes on a 2-core CPU with or without bf16 (README, Training)
    p.add_argument("--backend", default="torch", choices=["torch", "mxnet", "tensorflow"])
    p.add_argument(
        "--epochs",
        type=positive_int,
        default=2,
        help="passes over the training set (default: 2, the sprint's; the chapter's 10)",
    )
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument(
        "--resize",
        type=positive_int,
        default=67,
        help="image size; the chapter uses 224; 67, the smallest the network takes, is "
        "the default (the sprint's), 96 is nin's",
    )
    _add_recipe_flags(p, default="sprint")
    p.add_argument(
        "--data-dir",
        default=None,
        help="folder with the Fashion-MNIST IDX files (default: $NIN_DATA_DIR or "
        "~/.cache/nin/fashion-mnist, downloaded if missing)",
    )
    p.add_argument("--limit-train-batches", type=positive_int, default=None)
    p.add_argument("--limit-val-batches", type=positive_int, default=None)
    p.add_argument("--seed", type=non_negative_int, default=0)
    p.add_argument(
        "--out",
        default=None,
        help="folder for history, plot, checkpoint and weights (default: a new "
        "runs/<backend>-<recipe>-<date-time> folder; an existing run is never "
        "replaced without --overwrite)",
    )
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the run already in --out")
    p.add_argument(
        "--no-fast",
        action="store_true",
        help="the plain fp32 step as the chapter runs it (default: the fast path: "
        "bf16 where the hardware has it; channels-last in PyTorch, compiled "
        "steps in TensorFlow, hybridized ones in MXNet)",
    )
    p.add_argument(
        "--on-stuck",
        default="stop",
        choices=["stop", "warn"],
        help="what to do when the loss stays at chance (default: stop)",
    )
    p.add_argument(
        "--augment",
        default="none",
        choices=list(AUGMENTATIONS),
        help="training-image augmentation, in the shared NumPy pipeline: flip mirrors each "
        "image left-right with probability 1/2 (the quality recipe's), flip-shift also "
        "shifts it by up to 2 pixels each way, flip-erase mirrors and then fills a random "
        "rectangle of half the images with noise (random erasing) (default: none, as the chapter)",
    )
    p.add_argument(
        "--tta",
        default="none",
        choices=list(TTA),
        help="after training, also score the validation split with test-time augmentation: "
        "flip sums each image's class probabilities with its mirror image's (the quality "
        "recipe's), flip-shift adds one-pixel shifts of both (10 views) (default: none)",
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
        type=_dropout_rate,
        default=None,
        help="the dropout rate (default: the chapter's 0.5; 0 turns it off)",
    )
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
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_train)
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from nin import quick

    before = quick.active()
    try:
        if args.command in ("train", "experiment"):
            settings = _apply_quick(args, argv)
            if settings is not None:  # the caps the flags cannot carry, too
                quick.enable(settings)
        return args.func(args)
    except (
        ValueError,
        OSError,
        RuntimeError,
        MemoryError,
        OverflowError,
        BackendUnavailableError,
    ) as err:
        print(f"error: {cli_wording(str(err))}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        folder = getattr(args, "run_folder", None)
        hint = ""
        if args.command == "train" and folder:
            hint = (
                f"; the last finished epoch is kept in {folder}: continue with --resume "
                f"--out {folder}"
                if (folder / "checkpoint.npz").exists()
                else f"; no epoch had finished: --overwrite --out {folder} starts again"
            )
        print(f"\nnin: interrupted{hint}", file=sys.stderr)
        return 130
    finally:
        quick.enable(before) if before is not None else quick.disable()
