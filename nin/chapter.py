"""Run one tab of a d2l-format chapter with `d2l` bound to a `nin` backend module.

d2l chapters keep code in ```{.python .input} blocks; a first line `%%tab pytorch` (or
`mxnet, pytorch`, or `all`) says which tabs a block belongs to, and `tab.selected('x')`
inside a block picks a framework's branch. `cells(text, tab)` returns one tab's code;
`run_chapter(path, tab)` executes it with a `d2l` package whose `torch` / `mxnet` /
`tensorflow` / `jax` attributes are `nin`'s backends. Set NIN_QUICK (see nin.quick) to run the
training cells small without editing them: `run_chapter` reads it, for its run only.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
import types
from dataclasses import dataclass
from pathlib import Path

__all__ = ["TABS", "Cell", "Tab", "cells", "run_chapter", "d2l_shim"]

# chapter tab name -> nin backend name
TABS = {"pytorch": "torch", "mxnet": "mxnet", "tensorflow": "tensorflow", "jax": "jax"}
_BLOCK = re.compile(r"```\{\.python \.input\}\n(.*?)```", re.S)
_SELECT = re.compile(r"tab\.interact_select\(\[([^\]]*)\]")


@dataclass(frozen=True)
class Cell:
    index: int  # position among the chapter's code blocks
    source: str  # the code as the tab sees it (the %%tab line removed)


def cells(text: str, tab: str) -> list[Cell]:
    """The code cells of `tab` (one of TABS: 'pytorch', 'mxnet', 'tensorflow', 'jax'), in
    order."""
    if tab not in TABS:
        raise ValueError(f"unknown tab {tab!r}; the chapter's tabs are {', '.join(TABS)}")
    # the chapter's own tabs, as its first block selects them (an edition without the JAX
    # tab says so there): what a block without a %%tab line, or `%%tab all`, belongs to
    selected = _SELECT.search(text)
    own = re.findall(r"[\w-]+", selected.group(1)) if selected else list(TABS)
    found = []
    for i, match in enumerate(_BLOCK.finditer(text)):
        lines = match.group(1).splitlines()
        if lines and lines[0].startswith("%load_ext"):
            continue  # the d2lbook tab machinery itself
        tabs = own
        if lines and lines[0].startswith("%%tab"):
            names = [t.strip() for t in lines[0][len("%%tab") :].split(",")]
            tabs = own if names == ["all"] else names
            lines = lines[1:]
        if tab in tabs:
            found.append(Cell(i, "\n".join(lines) + "\n"))
    return found


class Tab:
    """The `tab` object d2l's cells consult: `tab.selected('pytorch')` etc."""

    def __init__(self, current: str):
        self.current = current

    def selected(self, *names) -> bool:
        return self.current in names

    def interact_select(self, *args, **kwargs):
        return None


def d2l_shim() -> types.ModuleType:
    """A `d2l` package whose framework modules are nin's backends, imported lazily."""
    from nin.backends import get_backend

    module = types.ModuleType("d2l")
    module.__path__ = []

    def __getattr__(name):
        if name in TABS.values():
            return get_backend(name)
        raise AttributeError(name)

    setattr(module, "__getattr__", __getattr__)  # PEP 562: attributes on first use
    return module


@contextlib.contextmanager
def _d2l_bound():
    saved = sys.modules.get("d2l")
    sys.modules["d2l"] = d2l_shim()
    try:
        yield
    finally:
        if saved is None:
            sys.modules.pop("d2l", None)
        else:
            sys.modules["d2l"] = saved


@contextlib.contextmanager
def _restored(quick, settings):
    try:
        yield
    finally:
        quick.enable(settings) if settings is not None else quick.disable()


def run_chapter(path, tab: str, echo: bool = True) -> tuple[dict, list[str]]:
    """Execute every cell of `tab` in one namespace; returns (namespace, each cell's output)."""
    from nin import quick

    text = Path(path).read_text(encoding="utf-8")
    namespace = {"__name__": "__chapter__", "tab": Tab(tab)}
    outputs = []
    before = quick.active()
    if quick.quick_settings() is not None:  # else what the caller enabled, if anything
        quick.enable_from_env(announce=echo)
    with _d2l_bound(), _restored(quick, before):
        for cell in cells(text, tab):
            buf = io.StringIO()
            with contextlib.redirect_stdout(buf):
                # dont_inherit: the cells run as a notebook runs them, without this module's
                # `from __future__ import annotations` (under which Flax's dataclass fields
                # would be strings, looked up in a module the cells do not have)
                name = f"<{Path(path).name} cell {cell.index}>"
                exec(compile(cell.source, name, "exec", dont_inherit=True), namespace)
            outputs.append(buf.getvalue())
            if echo:
                sys.stdout.write(buf.getvalue())
    return namespace, outputs
