"""The command line's wording of library messages: each Python argument a message names
(nin.errors: `resume=True`, `out_dir`) is said as the flag of the command that sets it
(`--resume`, `--out`), read off the command's own parser."""

from __future__ import annotations

import argparse
import functools
from typing import Callable

from nin.cli.flags import PYTHON_NAMES
from nin.errors import Flag, worded

__all__ = ["cli_wording", "flag_words"]


def flag_words(parser: argparse.ArgumentParser) -> dict[str, Flag]:
    """The flags `parser` declares, by the Python argument each sets: a switch with the value
    it sets (`--resume`: True; `--no-fast`: `fast` False), `--normalize` with its
    `--no-normalize`, a flag that takes a value with none."""
    words = {}
    for action in parser._actions:
        options = [o for o in action.option_strings if o.startswith("--")]
        if not options or action.dest == argparse.SUPPRESS:  # --help
            continue
        name = PYTHON_NAMES.get(action.dest, action.dest)
        if isinstance(action, argparse.BooleanOptionalAction):
            words[name] = Flag(options[0], sets=True, opposite=options[1])
        elif action.nargs == 0 and isinstance(action.const, bool):  # store_true / store_false
            words[name] = Flag(options[0], sets=action.const)
        else:
            words[name] = Flag(options[0])
    return words


def cli_wording(parser: argparse.ArgumentParser) -> Callable[[object], str]:
    """How `parser`'s command says a library message (a Message, or an exception carrying
    one): each argument as the flag that sets it, one the command has no flag for in
    Python's words; an error that is not ours (a framework's, the OS's) as it is."""
    return functools.partial(worded, flags=flag_words(parser))
