"""Messages that name the Python arguments they are about as data, not as text, so that each
front end says them its own way: the Python API by the argument (`resume=True`, `out_dir`),
the command line by the flag that sets it (`--resume`, `--out`).

    raise ArgumentError("{resume} needs {out}", resume=arg("resume", True), out=arg("out_dir"))

`str(err)` is the Python wording; `worded(err, flags)` the command line's, given the flags
by the Python name each sets; `err.fields` the arguments the error is about. The lowest
floor: it imports nothing from nin."""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NamedTuple

__all__ = ["Arg", "arg", "Placeholder", "Flag", "Message", "ArgumentError", "worded"]

_NO_VALUE = ...  # an argument named without a value (`out_dir`); a singleton that pickles


class Placeholder(str):
    """A value that stands for what the user fills in, written as it is in both wordings:
    `root=<folder>`, `--data-dir <folder>`."""

    def __repr__(self) -> str:
        return str(self)


class Flag(NamedTuple):
    """The command-line flag that sets a Python argument: `--out` takes the value; a switch
    (`sets`, the value it sets: `--resume` sets True, `--no-fast` sets False) stands alone,
    and the other value reads `opposite` (`--no-normalize`), else `drop --resume`."""

    option: str
    sets: bool | None = None
    opposite: str | None = None


@dataclass(frozen=True)
class Arg:
    """A mention of the Python argument `name`, with the value it should have, if any."""

    name: str
    value: object = _NO_VALUE

    def render(self, flag: Flag | None = None) -> str:
        """In Python's words (`` `max_epochs=3` ``), or as `flag` on the command line
        (`--epochs 3`)."""
        if flag is None:
            value = "" if self.value is _NO_VALUE else f"={self.value!r}"
            return f"`{self.name}{value}`"
        if self.value is _NO_VALUE:
            return flag.option
        if flag.sets is None:
            return f"{flag.option} {self.value}"
        if self.value == flag.sets:
            return flag.option
        return flag.opposite or f"drop {flag.option}"


def arg(name: str, value: object = _NO_VALUE) -> Arg:
    """A mention of the argument `name` (`arg("out_dir")`), or of it set to `value`
    (`arg("resume", True)`)."""
    return Arg(name, value)


class Message:
    """A message from a `str.format` template whose values may be Args (or Messages): `str()`
    says them in Python, `render(flags)` as the command line does. A template with no values
    is the text as it stands (no braces are read)."""

    def __init__(self, template: str, **values):
        self.template, self.values = template, values

    @property
    def fields(self) -> tuple[str, ...]:
        """The Python arguments mentioned, in the template's order, once each."""
        found: dict[str, None] = {}
        for _, key, _, _ in string.Formatter().parse(self.template) if self.values else ():
            value = self.values.get(key) if key else None
            if isinstance(value, Arg):
                found[value.name] = None
            elif isinstance(value, Message):
                found.update(dict.fromkeys(value.fields))
        return tuple(found)

    def render(self, flags: Mapping[str, Flag] | None = None) -> str:
        """The text, each Arg said as its flag in `flags` (by Python name), or in Python's
        words when `flags` has none for it."""
        if not self.values:
            return self.template
        said = {k: _render(v, flags) for k, v in self.values.items()}
        return self.template.format(**said)

    def __str__(self) -> str:
        return self.render()

    def __repr__(self) -> str:
        return f"Message({self.render()!r})"


def _render(value, flags: Mapping[str, Flag] | None):
    if isinstance(value, Arg):
        return value.render((flags or {}).get(value.name))
    if isinstance(value, Message):
        return value.render(flags)
    return value  # as format gets it, so that `{x:.3f}` still works


class ArgumentError(ValueError):
    """A ValueError about the caller's arguments, its message a Message: `str(err)` in
    Python's words, `err.fields` the arguments it is about."""

    def __init__(self, template: str | Message, **values):
        message = template if isinstance(template, Message) else Message(template, **values)
        super().__init__(message)

    @property
    def message(self) -> Message:
        return self.args[0]

    @property
    def fields(self) -> tuple[str, ...]:
        return self.message.fields


def worded(thing, flags: Mapping[str, Flag] | None = None) -> str:
    """A Message, or an exception that carries one (any class: its one argument), said with
    `flags`; anything else (a framework's or the OS's error, plain text) as `str` says it."""
    if isinstance(thing, BaseException) and len(thing.args) == 1:
        thing = thing.args[0] if isinstance(thing.args[0], Message) else thing
    return thing.render(flags) if isinstance(thing, Message) else str(thing)
