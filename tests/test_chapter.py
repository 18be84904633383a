"""The chapter's own cells, run unchanged against nin's modules (NIN_QUICK keeps them small)."""

import re

import numpy as np
import pytest

from conftest import BACKENDS, CHAPTER, CLASSIC_BACKENDS, chapter_with_tab, needs
from nin.backends import get_backend
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
    assert cells(SAMPLE, "jax") == []  # `%%tab all` is the chapter's three tabs
    with pytest.raises(ValueError, match="unknown tab 'caffe'"):
        cells(SAMPLE, "caffe")


def test_tab_selected_branches(tmp_path):
    path = tmp_path / "c.md"
    path.write_text(SAMPLE)
    assert run_chapter(path, "pytorch", echo=False)[0]["b"] == "pt"
    assert "b" not in run_chapter(path, "mxnet", echo=False)[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_cell_of_the_tab_runs_unchanged(backend, synthetic_root, monkeypatch):
    """The shared chapter's tabs; the JAX tab from the English 1.0.3 edition, whose JAX
    model pools the 5 x 5 map of a 224 x 224 input (`nn.avg_pool(x, (5, 5))`): its run
    keeps that size."""
    tab = TAB_OF[backend]
    chapter = chapter_with_tab(tab)
    size = "" if chapter == CHAPTER else ",resize=224"
    monkeypatch.setenv("NIN_QUICK", f"epochs=1,train_batches=2,val_batches=1,batch_size=8{size}")
    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    namespace, outputs = run_chapter(chapter, tab, echo=False)
    assert len(outputs) == len(cells(chapter.read_text(), tab)) >= 4
    summary = next(out for out in outputs if "output shape:" in out).splitlines()
    table = [line.split("output shape:")[0].strip() for line in summary]
    assert len(table) == 10 and table[6] == "Dropout"
    if chapter == CHAPTER:  # (the JAX tab pools and flattens with lambdas: 'function')
        assert table[9] == "Flatten"
    channels_last = get_backend(backend).LAYOUT == "NHWC"
    assert ("54, 54, 96" if channels_last else "96, 54, 54") in summary[0]
    assert "(1, 10)" in summary[-1] or "[1, 10]" in summary[-1]
    history = namespace["trainer"].history
    assert len(history.epochs) == 1 and len(history.steps) == 2


# the classic editions' markup (d2l-en 0.17, d2l-zh 2.0): `#@tab` first lines, MXNet unmarked
CLASSIC_SAMPLE = """
```{.python .input}
a = 'mx'
```
```{.python .input  n=2}
#@tab pytorch
a = 'pt'
```
```{.python .input}
#@tab mxnet, tensorflow
b = 1
```
```{.python .input}
#@tab paddle
a = 'pd'
```
```{.python .input}
#@tab all
c = a
```
"""


def test_cells_of_one_classic_tab():
    """An unmarked block is MXNet's alone; `#@tab` lines name the tabs (paddle's are
    nobody's here); block attributes (`n=2`) are read past."""
    source = {tab: [c.source for c in cells(CLASSIC_SAMPLE, tab)] for tab in TABS}
    assert source["mxnet"] == ["a = 'mx'\n", "b = 1\n", "c = a\n"]
    assert source["pytorch"] == ["a = 'pt'\n", "c = a\n"]
    assert source["tensorflow"] == ["b = 1\n", "c = a\n"]
    assert [c.index for c in cells(CLASSIC_SAMPLE, "pytorch")] == [1, 4]


# The classic editions' NiN chapters, which nin does not carry (their text is d2l's): each
# must be added to ../shared/chapter/ under this name, from this source, to be run
CLASSIC_CHAPTERS = {
    "nin-en-0.17.md": "d2l-ai/d2l-en at tag v0.17.6 (commit 0f920da87c3d), the file "
    "chapter_convolutional-modern/nin.md (the same from v0.17.0 on)",
    "nin-zh-2.0.md": "d2l-ai/d2l-zh at tag v2.0.0 (commit 3edee269d4c9), the file "
    "chapter_convolutional-modern/nin.md",
}
LOSS_LINE = re.compile(r"loss \d+\.\d{3}, train acc \d\.\d{3}, test acc \d\.\d{3}")


@pytest.mark.parametrize("name", list(CLASSIC_CHAPTERS))
@pytest.mark.parametrize("backend", CLASSIC_BACKENDS)
def test_every_cell_of_a_classic_tab_runs_unchanged(name, backend, synthetic_root, monkeypatch):
    """The classic chapter's cells as they stand, `d2l` bound to nin: the net from plain
    layers, its shape table at 224 x 224, then `load_data_fashion_mnist` and `train_ch6`
    (NIN_QUICK keeps them small), which print d2l's lines."""
    path = CHAPTER.parent / name
    if not path.exists():
        pytest.skip(f"add {path} to run it: {CLASSIC_CHAPTERS[name]}")
    monkeypatch.setenv("NIN_QUICK", "epochs=1,train_batches=2,val_batches=1,batch_size=8")
    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    tab = TAB_OF[backend]
    namespace, outputs = run_chapter(path, tab, echo=False)
    assert len(outputs) == 4
    assert namespace["d2l"] is get_backend(backend)
    table = outputs[2].splitlines()
    assert len(table) == (11 if backend == "tensorflow" else 10)  # TF's adds a Reshape
    assert ("54, 54, 96" if backend == "tensorflow" else "96, 54, 54") in table[0]
    assert ", 10)" in table[-1] or ", 10])" in table[-1]
    printed = outputs[3].splitlines()
    assert LOSS_LINE.fullmatch(printed[-2]), printed
    assert "examples/sec on" in printed[-1] and printed[0].startswith(
        "training on" if backend == "torch" else "loss"
    )


@needs("jax")
def test_a_flax_model_written_as_the_jax_tab_writes_one_trains(synthetic_root, capsys):
    """The JAX tab's API as a reader uses it, without the chapter file: a Flax subclass of
    d2l.Classifier with dataclass fields and `setup`, its `layer_summary`, then d2l's
    Trainer and FashionMNIST as the training cell calls them (a small net, 28 x 28)."""
    from flax import linen as nn

    d2l = get_backend("jax")

    def conv_pair(channels, kernel, stride, pad):
        square = ((pad, pad), (pad, pad))
        return nn.Sequential(
            [nn.Conv(channels, (kernel, kernel), (stride, stride), square), nn.relu,
             nn.Conv(channels, kernel_size=(1, 1)), nn.relu]
        )  # fmt: skip

    class SmallNiN(d2l.Classifier):
        lr: float = 0.1
        num_classes: int = 10
        training: bool = True

        def setup(self):
            self.net = nn.Sequential(
                [
                    conv_pair(16, 5, 2, 0),
                    lambda x: nn.max_pool(x, (3, 3), strides=(2, 2)),
                    nn.Dropout(0.5, deterministic=not self.training),
                    conv_pair(self.num_classes, 3, 1, 1),
                    lambda x: x.mean(axis=(1, 2)),
                ]
            )

    SmallNiN(training=False).layer_summary((1, 28, 28, 1))
    summary = capsys.readouterr().out.splitlines()
    assert len(summary) == 5 and summary[0].startswith("Sequential output shape:")
    assert "(1, 12, 12, 16)" in summary[0] and "(1, 10)" in summary[-1]

    model = SmallNiN(lr=0.05)
    trainer = d2l.Trainer(max_epochs=1, num_gpus=1)
    data = d2l.FashionMNIST(
        batch_size=32, resize=(28, 28), root=synthetic_root, num_train=128, num_val=64
    )
    history = trainer.fit(model, data)
    assert len(history.epochs) == 1 and len(history.steps) == len(data.train_dataloader())
    assert np.isfinite(history.epochs[0]["val_loss"]) and 0 <= history.epochs[0]["val_acc"] <= 1
    assert model.training is False  # validation leaves the model in inference mode, as d2l's
    kernel = trainer.state.params["net"]["layers_0"]["layers_0"]["kernel"]
    assert kernel.shape == (5, 5, 1, 16)  # the tab's names: the weights live in the state
    logits = d2l.predict(model, np.zeros((2, 28, 28, 1), np.float32), trainer.state.params)
    assert logits.shape == (2, 10)
