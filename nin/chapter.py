"""Run one tab of a d2l-format chapter with `d2l` bound to a `nin` backend module.

d2l chapters keep code in ```{.python .input} blocks; a first line `%%tab pytorch` (or
`mxnet, pytorch`, or `all`) says which tabs a block belongs to, and `tab.selected('x')`
inside a block picks a framework's branch. The classic editions (d2l-en 0.17, d2l-zh 2.0)
mark blocks with a first line `#@tab pytorch` (or `#@tab all`) instead and leave their
MXNet code unmarked: there an unmarked block is MXNet's alone, their books' first tab
(in the 1.0 editions it is every tab's). `cells(text, tab)` returns one tab's code;
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

__all__ = ["TABS", "CLASSIC_DEFAULT_TAB", "Cell", "Tab", "cells", "run_chapter", "d2l_shim"]

# chapter tab name -> nin backend name
TABS = {"pytorch": "torch", "mxnet": "mxnet", "tensorflow": "tensorflow", "jax": "jax"}
_BLOCK = re.compile(r"```\{\.python \.input[^}\n]*\}\n(.*?)```", re.S)  # attributes: n=3
_MARK = re.compile(r"(%%tab|#@tab)\b(.*)")
_SELECT = re.compile(r"tab\.interact_select\(\[([^\]]*)\]")
# the tab of a classic edition's unmarked block: the first of its books' tabs
CLASSIC_DEFAULT_TAB = "mxnet"


@dataclass(frozen=True)
class Cell:
    index: int  # position among the chapter's code blocks
    source: str  # the code as the tab sees it (the %%tab line removed)


def cells(text: str, tab: str) -> list[Cell]:
    """The code cells of `tab` (one of TABS: 'pytorch', 'mxnet', 'tensorflow', 'jax'), in
    order."""
    if tab not in TABS:
        raise ValueError(f"unknown tab {tab!r}; the chapter's tabs are {', '.join(TABS)}")
    blocks = [match.group(1).splitlines() for match in _BLOCK.finditer(text)]
    classic = any(lines and lines[0].startswith("#@tab") for lines in blocks)
    # the chapter's own tabs, as its first block selects them (an edition without the JAX
    # tab says so there): what `all` means, and in a 1.0 edition what a block without a
    # %%tab line belongs to
    selected = _SELECT.search(text)
    own = re.findall(r"[\w-]+", selected.group(1)) if selected else list(TABS)
    unmarked = [CLASSIC_DEFAULT_TAB] if classic else own
    found = []
    for i, lines in enumerate(blocks):
        if lines and lines[0].startswith("%load_ext"):
            continue  # the d2lbook tab machinery itself
        tabs = unmarked
        mark = _MARK.match(lines[0]) if lines else None
        if mark:
            names = [t.strip() for t in mark.group(2).split(",")]
            tabs = own if "all" in names else names
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
