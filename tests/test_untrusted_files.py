"""Reading a file never runs code: checkpoints and weight files someone sent are read as plain
arrays and JSON, never unpickled (docs/reliability.md, "Files from others")."""

import json
import os
import pickle

import numpy as np
import pytest

from conftest import needs
from nin import export as E
from nin import files
from nin import runs as T
from nin import spec as S
from nin import weights as W
from nin.backends import get_backend

SMALL = dict(batch_size=16, resize=(67, 67))


class _Touch:
    """Unpickled, runs a shell command that creates `marker`: the probe's payload."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def _payload(tmp_path) -> tuple[bytes, object]:
    """A pickle that creates a marker file when loaded, and that marker; the payload is
    checked live once (on another marker), so a test that finds no marker can fail."""
    probe = tmp_path / "payload-is-live"
    pickle.loads(pickle.dumps(_Touch(probe)))
    assert probe.exists(), "the payload does not run: the tests below would prove nothing"
    marker = tmp_path / "code-ran"
    return pickle.dumps(_Touch(marker)), marker


class _Stop(Exception):
    pass


def _fit(backend, root, out, epochs=1, resume=False, stop_at_epoch=None, **model_fields):
    """A small run; `stop_at_epoch`: interrupted by an exception as that epoch starts."""
    B = get_backend(backend)
    B.set_seed(0)
    trainer = B.Trainer(
        max_epochs=epochs,
        limit_train_batches=3,
        limit_val_batches=1,
        progress=False,
        out_dir=out,
        resume=resume,
    )
    step = trainer._train_step

    def train_step(batch):
        if trainer.epoch == stop_at_epoch:
            raise _Stop
        return step(batch)

    trainer._train_step = train_step
    trainer.fit(B.NiN(**model_fields), B.FashionMNIST(root=root, seed=0, **SMALL))
    return trainer


# --- MXNet's optimizer state: named arrays, not gluon's pickled `save_states` ---------------


@needs("mxnet")
@pytest.mark.parametrize(
    "fields, per_parameter",
    [
        (dict(recipe="nin"), 2),  # Adam: mean, var
        (dict(recipe="book", momentum=0.9, schedule="onecycle"), 1),  # SGD: its momentum
        (dict(recipe="book"), 0),  # plain SGD: no state
    ],
    ids=["adam", "sgd-momentum", "sgd"],
)
def test_mxnet_optimizer_state_is_named_arrays_and_resumes(
    fields, per_parameter, synthetic_root, tmp_path
):
    """The checkpoint holds no bytes to unpickle; resumed from it, the run ends where an
    unbroken one does (a lost momentum or update count moves weights by about lr * grad)."""
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    _fit("mxnet", synthetic_root, unbroken, epochs=2, **fields)
    with pytest.raises(_Stop):
        _fit("mxnet", synthetic_root, broken, epochs=2, stop_at_epoch=1, **fields)
    arrays, _ = T.read_checkpoint(broken / "checkpoint.npz")
    assert "optim/states" not in arrays
    indices = arrays["optim/indices"]
    assert len(indices) == 24  # every parameter of the chapter's NiN
    for i in indices:
        found = [k for k in arrays if k.startswith(f"optim/state/{i}/")]
        assert len(found) == per_parameter, (i, found)
    assert arrays["optim/num_update"][0] == 3
    assert all(a.dtype.kind in "fiu" for a in arrays.values())

    _fit("mxnet", synthetic_root, broken, epochs=2, resume=True, **fields)
    a = T.read_checkpoint(unbroken / "checkpoint.npz")[0]
    b = T.read_checkpoint(broken / "checkpoint.npz")[0]
    assert sorted(a) == sorted(b)
    different = [k for k in a if not np.array_equal(a[k], b[k])]
    assert not different, f"not the same bits after resuming: {different[:5]}"


@needs("mxnet")
@pytest.mark.parametrize("states", ["pickle-payload", "genuine-save-states"])
def test_mxnet_checkpoint_with_pickled_states_is_refused(states, synthetic_root, tmp_path):
    """A checkpoint of the previous format keeps gluon's `save_states` bytes (a pickle) as
    `optim/states`: refused, with what to do, whatever the bytes hold, and never unpickled."""
    payload, marker = _payload(tmp_path)
    out = tmp_path / "run"
    trainer = _fit("mxnet", synthetic_root, out)
    arrays, meta = T.read_checkpoint(out / "checkpoint.npz")
    arrays = {k: v for k, v in arrays.items() if not k.startswith("optim/")}
    if states == "genuine-save-states":
        trainer.optim.save_states(str(tmp_path / "states"))
        payload = (tmp_path / "states").read_bytes()
    arrays["optim/states"] = np.frombuffer(payload, dtype=np.uint8)
    legacy = {k: v for k, v in meta.items() if k != "format_version"}
    files.save_npz(
        out / "checkpoint.npz", arrays, "__meta__", dict(legacy, format="nin-checkpoint/1")
    )
    with pytest.raises(T.CheckpointError, match="pickle") as err:
        _fit("mxnet", synthetic_root, out, epochs=2, resume=True)
    assert "older nin" in str(err.value) and "`overwrite=True`" in str(err.value)
    assert str(out / "checkpoint.npz") in str(err.value)
    assert not marker.exists()


# --- NumPy never unpickles ------------------------------------------------------------------


def test_npz_entries_holding_a_pickle_are_refused(tmp_path, monkeypatch):
    """An .npz entry can be a pickled object array: `load_npz` (every .npz nin reads) asks
    NumPy not to unpickle, whatever NumPy's default (before 1.16.3 it unpickled: here a
    `np.load` whose default allows pickles stands in for such a NumPy)."""
    _, marker = _payload(tmp_path)
    path = tmp_path / "crafted.npz"
    np.savez(path, weight=np.array([_Touch(marker)], dtype=object))
    load = np.load
    monkeypatch.setattr(
        np, "load", lambda *a, allow_pickle=True, **k: load(*a, allow_pickle=allow_pickle, **k)
    )
    with pytest.raises(ValueError, match="allow_pickle=False"):
        files.load_npz(path)
    assert not marker.exists()


# --- format versions: written in every file, a newer one refused ----------------------------


@pytest.fixture(scope="module")
def canonical():
    """The chapter's spec and small canonical weights for it."""
    spec = S.chapter_spec()
    rng = np.random.default_rng(0)
    return spec, {
        w.name: rng.normal(0, 0.01, w.shape).astype(np.float32) for w in S.weight_table(spec)
    }


def _checkpoint(path, **meta):
    T.save_checkpoint(path, {"model/w": np.ones(3, np.float32)}, dict(meta, epoch=1))
    return path


def test_files_carry_their_format_version(canonical, tmp_path):
    spec, named = canonical
    W.save(tmp_path / "w.npz", named, spec)
    assert files.json_entry(files.load_npz(tmp_path / "w.npz"), "__spec__")["format_version"] == 2
    E.save_safetensors(tmp_path / "w.safetensors", named, spec)
    from safetensors import safe_open

    with safe_open(str(tmp_path / "w.safetensors"), framework="np") as f:
        assert f.metadata()["nin_format_version"] == "2"
    meta = files.json_entry(files.load_npz(_checkpoint(tmp_path / "c.npz")), "__meta__")
    assert meta["format"] == "nin-checkpoint" and meta["format_version"] == 2
    assert T.read_checkpoint(tmp_path / "c.npz")[1]["format_version"] == 2


def test_files_without_a_version_are_read_as_version_1(canonical, tmp_path):
    spec, named = canonical
    files.save_npz(
        tmp_path / "w.npz", named, "__spec__", {"spec": S.spec_to_dict(spec), "size": None}
    )
    got, file_spec, _ = W.read(tmp_path / "w.npz")
    assert file_spec == spec and all(np.array_equal(got[k], named[k]) for k in named)
    legacy = {"format": "nin-checkpoint/1", "epoch": 1}
    files.save_npz(tmp_path / "c.npz", {"model/w": np.ones(3, np.float32)}, "__meta__", legacy)
    assert T.read_checkpoint(tmp_path / "c.npz")[1]["format_version"] == 1


@pytest.mark.parametrize("kind", ["weights.npz", "weights.safetensors", "checkpoint.npz"])
def test_a_newer_format_version_is_refused_with_the_fix(kind, canonical, tmp_path):
    spec, named = canonical
    path = tmp_path / kind
    if kind == "weights.npz":
        meta = {"spec": S.spec_to_dict(spec), "size": None, "format_version": 3}
        files.save_npz(path, named, "__spec__", meta)
    elif kind == "weights.safetensors":
        from safetensors.numpy import save_file

        meta = {"nin_spec": json.dumps(S.spec_to_dict(spec)), "nin_format_version": "3"}
        save_file(named, str(path), metadata=meta)
    else:
        meta = {"format": "nin-checkpoint", "format_version": 3, "epoch": 1}
        files.save_npz(path, {"model/w": np.ones(3, np.float32)}, "__meta__", meta)
    read = T.read_checkpoint if kind == "checkpoint.npz" else W.read
    with pytest.raises(ValueError) as err:
        read(path)
    assert f"{path} is a nin" in str(err.value)
    assert "format version 3" in str(err.value) and "versions up to 2" in str(err.value)
    assert "upgrade nin" in str(err.value)


@pytest.mark.parametrize("version", ["0", '"2"', "true", "2.5"])
def test_a_format_version_no_nin_writes_is_refused(version, canonical, tmp_path):
    spec, named = canonical
    meta = {"spec": S.spec_to_dict(spec), "size": None, "format_version": json.loads(version)}
    files.save_npz(tmp_path / "w.npz", named, "__spec__", meta)
    with pytest.raises(W.WeightFileError, match="which no nin writes"):
        W.read(tmp_path / "w.npz")


# --- values: floating point and finite ------------------------------------------------------


@pytest.mark.parametrize("suffix", [".npz", ".safetensors"])
@pytest.mark.parametrize(
    "bad, expected",
    [
        (np.full(96, 3, np.int32), "holds int32 values, not floating point"),
        (np.full(96, True), "holds bool values, not floating point"),
        (np.where(np.arange(96) == 5, np.nan, 0.5).astype(np.float32), "holds 1 NaN or infinite"),
        (np.full(96, np.inf, np.float32), "holds 96 NaN or infinite value\\(s\\) of 96"),
    ],
    ids=["int", "bool", "nan", "inf"],
)
def test_weights_that_are_not_finite_floats_are_refused(suffix, bad, expected, canonical, tmp_path):
    """Integer or boolean weights would be cast and used, NaN ones would pass to the model:
    refused where a weight file is read, naming the array."""
    spec, named = canonical
    named = dict(named, **{"block1.conv1.bias": bad})
    path = tmp_path / f"w{suffix}"
    if suffix == ".npz":
        W.save(path, named, spec)
    else:
        from safetensors.numpy import save_file

        meta = {"nin_spec": json.dumps(S.spec_to_dict(spec)), "nin_format_version": "2"}
        save_file(named, str(path), metadata=meta)
    with pytest.raises(W.WeightFileError, match=f"{path}: block1.conv1.bias {expected}"):
        W.read(path)


# --- every loader of a user's file, fed a pickle: no code runs, a clear refusal -------------

CRAFTED = ["object-entry", "pickle-file", "torch-save-file"]


def _crafted(kind, path, marker):
    """A file at `path` whose reading would run the payload if anything unpickled it: an .npz
    with nin's meta and an object array (NumPy pickles those), the pickle itself under the
    file's name, or a `torch.save` archive (a zip whose data.pkl is the pickle)."""
    payload = _Touch(marker)
    if kind == "object-entry":
        meta = np.frombuffer(b'{"format": "nin-checkpoint", "format_version": 2}', np.uint8)
        np.savez(path.with_suffix(".tmp.npz"), __meta__=meta, **{"model/w": np.array([payload])})
        path.with_suffix(".tmp.npz").rename(path)
    elif kind == "pickle-file":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch = pytest.importorskip("torch")
        torch.save({"model": payload}, path)
    return path


@pytest.mark.parametrize("kind", CRAFTED[:2])
def test_resume_never_unpickles(kind, backend, synthetic_root, tmp_path):
    """`resume` in each backend, from a crafted checkpoint.npz (MXNet's optimizer bytes:
    test_mxnet_checkpoint_with_pickled_states_is_refused)."""
    _, marker = _payload(tmp_path)
    (tmp_path / "run").mkdir()
    _crafted(kind, tmp_path / "run" / "checkpoint.npz", marker)
    with pytest.raises(T.CheckpointError, match="is not a readable nin checkpoint"):
        _fit(backend, synthetic_root, tmp_path / "run", resume=True)
    assert not marker.exists()


@pytest.mark.parametrize("kind", CRAFTED[:2])
def test_loading_weights_into_a_backend_never_unpickles(kind, backend, tmp_path):
    _, marker = _payload(tmp_path)
    path = _crafted(kind, tmp_path / "weights.npz", marker)
    spec = S.chapter_spec()
    with pytest.raises(W.WeightFileError, match="is not a readable nin weight file"):
        W.load(backend, get_backend(backend).build(spec), spec, path)
    assert not marker.exists()


def _compare(path, root, capsys):
    from nin.cli import main

    argv = ["compare", "--backends", "torch", "--size", "67", "--data-dir", str(root)]
    assert main(argv + ["--weights", str(path)]) == 2
    raise ValueError(capsys.readouterr().err)  # the message the user saw, checked below


READERS = {
    "read_checkpoint": ("checkpoint.npz", lambda path, root, capsys: T.read_checkpoint(path)),
    "weights.read": ("weights.npz", lambda path, root, capsys: W.read(path)),
    "weights.read safetensors": ("w.safetensors", lambda path, root, capsys: W.read(path)),
    "export": ("weights.npz", lambda path, root, capsys: E.export_file(path, "onnx", "x.onnx")),
    "export safetensors": (
        "w.safetensors",
        lambda path, root, capsys: E.export_file(path, "safetensors", "x.safetensors"),
    ),
    "compare --weights": ("weights.npz", _compare),
}


@pytest.mark.parametrize("kind", CRAFTED)
@pytest.mark.parametrize("reader", list(READERS))
def test_readers_never_unpickle(reader, kind, synthetic_root, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # where an export would be written
    _, marker = _payload(tmp_path)
    name, read = READERS[reader]
    path = _crafted(kind, tmp_path / name, marker)
    what = "checkpoint" if reader == "read_checkpoint" else "weight file"
    with pytest.raises(ValueError, match=f"{path} is not a readable nin {what}"):
        read(path, synthetic_root, capsys)
    assert not marker.exists()
    assert not list(tmp_path.glob("x.*")), "nothing is exported from a refused file"
