"""`python -m nin <command>`: shapes, resources, compare, train, experiment."""

# One module a command, its flags beside what it runs (`add_parser(sub)`, `run(args)`);
# `flags` declares the flags several commands share, `runs` what train and experiment share,
# `wording` says the arguments library messages name as each command's flags.

from __future__ import annotations

import argparse
import sys

from nin.backends import BackendUnavailableError
from nin.cli import compare, experiment, export, resources, shapes, train
from nin.cli.flags import positive_int
from nin.cli.runs import apply_quick, fresh_out_dir
from nin.cli.wording import cli_wording

__all__ = ["main", "build_parser", "cli_wording", "positive_int", "fresh_out_dir"]

# in the order `--help` lists them
COMMANDS = (shapes, resources, experiment, export, compare, train)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m nin", description=__doc__, allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(sub)
    for command_parser in sub.choices.values():  # args.wording: library messages, its flags
        command_parser.set_defaults(wording=cli_wording(command_parser))
    return parser


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    from nin import quick

    before = quick.active()
    try:
        if args.command in ("train", "experiment"):
            settings = apply_quick(args, argv)
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
        print(f"error: {args.wording(err)}", file=sys.stderr)
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
