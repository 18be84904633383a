"""Fashion-MNIST: IDX reading and its errors, the verified download, one pipeline for all."""

import gzip
import hashlib
import http.server
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest

from conftest import BACKENDS, synthetic_fashion
from nin import data as D
from nin.backends import get_backend


def test_idx_round_trip(tmp_path):
    images = np.random.default_rng(0).integers(0, 256, (7, 28, 28), dtype=np.uint8)
    for name in ("a-idx3-ubyte.gz", "a-idx3-ubyte"):
        D.write_idx(tmp_path / name, images)
        np.testing.assert_array_equal(D.read_idx(tmp_path / name, 3), images)


@pytest.fixture
def folder(tmp_path):
    return synthetic_fashion(tmp_path / "fm", n_train=50, n_test=20)


def _raw(path: Path) -> bytes:
    return gzip.decompress(path.read_bytes())


def test_bad_magic(folder):
    path = folder / D.FILES["train"][1]
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + _raw(path)[4:]))
    with pytest.raises(D.DataFileError, match="train-labels.*bad magic number 0x00000803.*Delete"):
        D.load_fashion_mnist(folder, download_missing=False)


def test_truncated_data(folder):
    path = folder / D.FILES["test"][0]
    path.write_bytes(gzip.compress(_raw(path)[:-100]))
    with pytest.raises(D.DataFileError, match="t10k-images.*truncated"):
        D.load_fashion_mnist(folder, download_missing=False)


def test_truncated_gzip(folder):
    path = folder / D.FILES["train"][0]
    path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(D.DataFileError, match="gzip stream is truncated or corrupt"):
        D.load_fashion_mnist(folder, download_missing=False)


def test_count_mismatch(folder):
    D.write_idx(folder / D.FILES["train"][1], np.zeros(49, dtype=np.uint8))
    with pytest.raises(D.DataFileError, match="49 labels for 50 images"):
        D.load_fashion_mnist(folder, download_missing=False)


def test_label_out_of_range(folder):
    D.write_idx(folder / D.FILES["test"][1], np.full(20, 12, dtype=np.uint8))
    with pytest.raises(D.DataFileError, match="label 12 is out of range 0-9"):
        D.load_fashion_mnist(folder, download_missing=False)


def test_wrong_image_size(folder):
    D.write_idx(folder / D.FILES["test"][0], np.zeros((20, 32, 32), dtype=np.uint8))
    with pytest.raises(D.DataFileError, match="32x32, expected 28x28"):
        D.load_fashion_mnist(folder, download_missing=False)


def test_root_precedence(tmp_path, monkeypatch):
    monkeypatch.setenv("NIN_DATA_DIR", str(tmp_path / "env"))
    assert D.default_root() == tmp_path / "env"
    assert D.default_root(tmp_path / "arg") == tmp_path / "arg"
    monkeypatch.delenv("NIN_DATA_DIR")
    assert D.default_root() == Path.home() / ".cache" / "nin" / "fashion-mnist"


# --- download, against a local server: one mirror down, one with bad bytes, one good ------


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirrors(tmp_path):
    """Serve tmp/good (the real files) and tmp/bad (altered files) on 127.0.0.1."""
    good = synthetic_fashion(tmp_path / "srv" / "good", n_train=40, n_test=10, seed=3)
    bad = tmp_path / "srv" / "bad"
    bad.mkdir()
    for f in good.iterdir():
        raw = bytearray(f.read_bytes())
        raw[len(raw) // 2] ^= 0xFF  # one corrupted byte
        (bad / f.name).write_bytes(bytes(raw))
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Quiet, directory=str(tmp_path / "srv"))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    sums = {f.name: hashlib.md5(f.read_bytes()).hexdigest() for f in good.iterdir()}
    yield base, sums
    server.shutdown()


def test_download_falls_back_to_next_mirror(tmp_path, mirrors):
    base, sums = mirrors
    root = tmp_path / "cache"
    down = "http://127.0.0.1:9/"  # nothing listens on the discard port
    D.download(
        root,
        mirrors=[down, base + "/bad/", base + "/good/"],
        checksums=sums,
        timeout=5,
        progress=None,
    )
    assert sorted(p.name for p in root.iterdir()) == sorted(sums)
    x, y, xt, yt = D.load_fashion_mnist(root, download_missing=False)
    assert x.shape == (40, 28, 28) and yt.shape == (10,)


def test_checksum_mismatch_leaves_no_file(tmp_path, mirrors):
    base, sums = mirrors
    root = tmp_path / "cache"
    with pytest.raises(D.DataUnavailableError, match="checksum mismatch") as err:
        D.download(root, mirrors=[base + "/bad/"], checksums=sums, timeout=5, progress=None)
    assert list(root.iterdir()) == []  # no file, no leftover .part
    assert "NIN_DATA_DIR" in str(err.value)


def test_offline_message_names_files_and_folder(tmp_path):
    root = tmp_path / "empty"
    with pytest.raises(D.DataUnavailableError) as err:
        D.load_fashion_mnist(root, mirrors=["http://127.0.0.1:9/"], timeout=2, progress=None)
    message = str(err.value)
    assert str(root) in message and "train-images-idx3-ubyte.gz" in message
    assert "`root=<folder>`" in message and "NIN_DATA_DIR" in message


# --- one pipeline ----------------------------------------------------------------------------


def test_same_seed_same_batches_new_order_each_epoch(folder):
    x, y, _, _ = D.load_fashion_mnist(folder, download_missing=False)
    a, b = D.BatchSource(x, y, 8, True, seed=5), D.BatchSource(x, y, 8, True, seed=5)
    first_a, first_b = [y for _, y in a], [y for _, y in b]
    np.testing.assert_array_equal(np.concatenate(first_a), np.concatenate(first_b))
    assert not np.array_equal(np.concatenate(first_a), np.concatenate([y for _, y in a]))


def test_resize_matrix_matches_torch_bilinear():
    torch = pytest.importorskip("torch")
    img = np.random.default_rng(1).random((3, 28, 28)).astype(np.float32)
    for size in (28, 67, 96, 224):
        R = D.resize_matrix(28, size)
        ours = R @ img @ R.T
        ref = torch.nn.functional.interpolate(
            torch.from_numpy(img)[:, None], size=(size, size), mode="bilinear", align_corners=False
        )[:, 0]
        # torch interpolates with another order of fp32 operations: agreement to rounding
        np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5)


def _first_batch(backend, root, size):
    B = get_backend(backend)
    dm = B.FashionMNIST(batch_size=16, resize=(size, size), root=root, seed=11)
    X, y = next(iter(dm.train_dataloader()))
    return B, dm, X, y


@pytest.mark.parametrize("size", [28, 96])
def test_layout_and_range(backend, folder, size):
    B, dm, X, y = _first_batch(backend, folder, size)
    expected = (16, size, size, 1) if B.LAYOUT == "NHWC" else (16, 1, size, size)
    assert tuple(X.shape) == expected
    pixels = B.to_numpy(X)
    assert pixels.dtype == np.float32 and 0 <= pixels.min() and pixels.max() <= 1


@pytest.mark.parametrize("other", [b for b in BACKENDS if b != "torch"])
def test_backends_agree_on_batches(other, folder):
    """The same seed gives the same labels, and the same resized pixels to 1e-6, in any two."""
    _, dm_a, Xa, ya = _first_batch("torch", folder, 96)
    _, dm_b, Xb, yb = _first_batch(other, folder, 96)
    np.testing.assert_array_equal(
        np.asarray(get_backend("torch").to_numpy(ya)), get_backend(other).to_numpy(yb)
    )
    np.testing.assert_allclose(dm_a.to_numpy(Xa), dm_b.to_numpy(Xb), atol=1e-6)


def test_text_labels_and_visualize(backend, folder):
    B, dm, X, y = _first_batch(backend, folder, 28)
    assert dm.text_labels([0, 9]) == ["t-shirt", "ankle boot"]
    fig = dm.visualize((X, y), nrows=2, ncols=4)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titles == dm.text_labels(B.to_numpy(y)[:8])


def test_subset_option(backend, folder):
    dm = get_backend(backend).FashionMNIST(batch_size=4, root=folder, num_train=12, num_val=8)
    assert len(dm.train_dataloader()) == 3 and len(dm.val_dataloader()) == 2


NIN_DATA_DIR = os.environ.get("NIN_DATA_DIR")
real_data = pytest.mark.skipif(
    not NIN_DATA_DIR,
    reason="NIN_DATA_DIR is not set: no offline copy of Fashion-MNIST to read (CI sets it)",
)


@real_data
def test_real_fashion_mnist_counts():
    x, y, xt, yt = D.load_fashion_mnist(NIN_DATA_DIR, download_missing=False)
    assert x.shape == (60000, 28, 28) and xt.shape == (10000, 28, 28)
    assert np.bincount(y).tolist() == [6000] * 10
    assert np.bincount(yt).tolist() == [1000] * 10


@real_data
def test_real_train_loader_batches(backend):
    B = get_backend(backend)
    loader = B.FashionMNIST(batch_size=256).train_dataloader()
    assert len(loader) == 235
    sizes = [len(B.to_numpy(y)) for _, y in loader]
    assert sizes[:-1] == [256] * 234 and sizes[-1] == 96
