"""The chapter's own cells, run unchanged against nin's modules (NIN_QUICK keeps them small)."""

import pytest

from conftest import BACKENDS, chapter_path
from nin.chapter import TABS, cells, run_chapter

TAB_OF = {backend: tab for tab, backend in TABS.items()}

SAMPLE = """
```{.python .input}
%load_ext d2lbook.tab
tab.interact_select(['mxnet', 'pytorch', 'tensorflow'])
```
text
```{.python .input}
%%tab mxnet, pytorch
a = 1
```
```{.python .input}
%%tab tensorflow
a = 2
```
```{.python .input}
%%tab all
if tab.selected('pytorch'):
    b = 'pt'
```
"""


def test_cells_of_one_tab():
    assert [c.source for c in cells(SAMPLE, "pytorch")] == [
        "a = 1\n",
        "if tab.selected('pytorch'):\n    b = 'pt'\n",
    ]
    assert [c.index for c in cells(SAMPLE, "tensorflow")] == [2, 3]
    with pytest.raises(ValueError, match="unknown tab 'jax'"):
        cells(SAMPLE, "jax")


def test_tab_selected_branches(tmp_path):
    path = tmp_path / "c.md"
    path.write_text(SAMPLE)
    assert run_chapter(path, "pytorch", echo=False)[0]["b"] == "pt"
    assert "b" not in run_chapter(path, "mxnet", echo=False)[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_cell_of_the_tab_runs_unchanged(backend, synthetic_root, monkeypatch):
    chapter = chapter_path()
    monkeypatch.setenv("NIN_QUICK", "epochs=1,train_batches=2,val_batches=1,batch_size=8")
    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    tab = TAB_OF[backend]
    namespace, outputs = run_chapter(chapter, tab, echo=False)
    assert len(outputs) == len(cells(chapter.read_text(), tab)) == 4
    table = [line.split("output shape:")[0].strip() for line in outputs[2].splitlines()]
    assert len(table) == 10 and table[6] == "Dropout" and table[9] == "Flatten"
    first, last = outputs[2].splitlines()[0], outputs[2].splitlines()[-1]
    assert ("54, 54, 96" if backend == "tensorflow" else "96, 54, 54") in first
    assert "(1, 10)" in last or "[1, 10]" in last
    history = namespace["trainer"].history
    assert len(history.epochs) == 1 and len(history.steps) == 2
