"""What users read, checked against golden files (tests/golden/*.out): the chapter's layer
table per backend, `nin shapes`, `nin resources` and the layout of `nin compare`'s table.
`pytest tests/test_golden.py --overwrite` rewrites them; review the diff before committing."""

import contextlib
import io
import re

import pytest

from conftest import chapter_with_tab, needs
from nin.backends import BACKENDS
from nin.chapter import TABS, Tab, _d2l_bound, cells

TAB_OF = {backend: tab for tab, backend in TABS.items()}


def test_chapter_layer_table(backend, golden):
    """The chapter's own cells up to its shape cell (the first that prints the table), run
    with `d2l` bound to nin (the JAX tab's from the English 1.0.3 edition)."""
    chapter = chapter_with_tab(TAB_OF[backend])
    namespace = {"__name__": "__chapter__", "tab": Tab(TAB_OF[backend])}
    out = io.StringIO()
    with _d2l_bound(), contextlib.redirect_stdout(out):
        for cell in cells(chapter.read_text(encoding="utf-8"), TAB_OF[backend]):
            name = f"<chapter cell {cell.index}>"
            exec(compile(cell.source, name, "exec", dont_inherit=True), namespace)
            if "output shape" in out.getvalue():
                break
    golden(f"chapter-table-{backend}", out.getvalue())


def test_shapes_command(backend, golden, capsys):
    from nin.cli import main

    assert main(["shapes", "--backend", backend]) == 0
    golden(f"shapes-{backend}", capsys.readouterr().out)


@pytest.mark.parametrize("variant", ["nin", "nin-1x1-1", "dense-head", "nin-vgg11"])
def test_resources_command(variant, golden, capsys):
    from nin.cli import main

    assert main(["resources", "--variant", variant]) == 0
    golden(f"resources-{variant}", capsys.readouterr().out)


@needs("torch", "mxnet", "tensorflow", "jax")
def test_compare_table_layout(golden, synthetic_root, capsys):
    """The table's layout, columns and rows; the measured differences (which depend on the
    machine's kernels) are masked, as are the logits."""
    from nin.cli import main

    assert (
        main(["compare", "--size", "96", "--batch-size", "2", "--data-dir", str(synthetic_root)])
        == 0
    )
    text = re.sub(r"[-+]?\d\.\d+e[-+]\d+", "#.#e-##", capsys.readouterr().out)
    text = re.sub(r"[-+]\d+\.\d{4}", "+#.####", text)
    names = "|".join(BACKENDS)
    text = re.sub(rf"(?m)^(  (?:{names}) +)[a-z].*$", r"\1<predicted classes>", text)
    golden("compare-layout", text)
