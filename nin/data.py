"""Fashion-MNIST: IDX files, verified download, cache folder, and batches as NumPy.

No framework is imported here. Every backend sees the same uint8 batches in the same order
for the same seed; each backend only converts a batch to its tensors (`convert_batch`),
scaling to [0, 1] and resizing with the bilinear matrix from `resize_matrix`.
"""

from __future__ import annotations

import functools
import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from nin.errors import Message, Placeholder, arg

__all__ = [
    "FILES", "MD5", "MIRRORS", "TEXT_LABELS", "DataFileError", "DataUnavailableError",
    "default_root", "read_idx", "write_idx", "download", "load_fashion_mnist",
    "resize_matrix", "BatchSource", "Loader", "FashionMNISTBase", "data_settings",
]  # fmt: skip

# split -> (images file, labels file), as the official mirrors name them
FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
# the official archives' MD5 sums; checked on download only (a local copy may be re-gzipped)
MD5 = {
    "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
    "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
    "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
    "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
}
# the mirrors torchvision and Keras download from, tried in order
MIRRORS = (
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    "https://storage.googleapis.com/tensorflow/tf-keras-datasets/",
)
TEXT_LABELS = (
    "t-shirt",
    "trouser",
    "pullover",
    "dress",
    "coat",
    "sandal",
    "shirt",
    "sneaker",
    "bag",
    "ankle boot",
)
_IDX_MAGIC = {1: 0x00000801, 3: 0x00000803}  # unsigned bytes, 1-d labels / 3-d images


class DataFileError(ValueError):
    """A data file exists but is not a valid Fashion-MNIST IDX file (or cannot be read)."""

    def __init__(self, path, problem: str, fix: str | Message | None = None):
        self.path = Path(path)
        fix = fix or Message(
            "Delete the file so that it is downloaded again, or point {root} (or "
            "NIN_DATA_DIR) at a folder with intact copies.",
            root=arg("root"),
        )
        super().__init__(
            Message("{path}: {problem}. {fix}", path=self.path, problem=problem, fix=fix)
        )


class DataUnavailableError(FileNotFoundError):
    """Some files are missing and could not be downloaded."""


def default_root(root=None) -> Path:
    """root= argument, else $NIN_DATA_DIR, else ~/.cache/nin/fashion-mnist; refused if it
    names a file."""
    source = "root"
    if root is None:
        source = "NIN_DATA_DIR" if os.environ.get("NIN_DATA_DIR") else "the default folder"
        root = os.environ.get("NIN_DATA_DIR") or _cache_folder()
    root = Path(root).expanduser()
    if root.exists() and not root.is_dir():
        raise DataUnavailableError(
            Message(
                "the data folder {folder} ({source}) is a file, not a folder: point {root} "
                "(or NIN_DATA_DIR) at the folder that holds the four IDX files",
                folder=root,
                source=source,
                root=arg("root"),
            )
        )
    return root


def _request_errors() -> tuple:
    import requests  # pooch's HTTP client; some of its errors are ValueErrors

    return (requests.RequestException,)


def _cache_folder() -> Path:
    return Path.home() / ".cache" / "nin" / "fashion-mnist"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise DataFileError(
            path,
            f"cannot be read ({err.strerror or err})",
            Message(
                "Check the file's permissions, or point {root} (or NIN_DATA_DIR) at a readable "
                "copy.",
                root=arg("root"),
            ),
        ) from None
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as err:
        raise DataFileError(path, f"the gzip stream is truncated or corrupt ({err})") from None


def read_idx(path, ndim: int) -> np.ndarray:
    """Read an IDX file of unsigned bytes (gzip or raw), checking magic number and size."""
    path = Path(path)
    data = _read_bytes(path)
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataFileError(path, f"only {len(data)} bytes, shorter than an IDX header")
    magic = struct.unpack(">I", data[:4])[0]
    if magic != _IDX_MAGIC[ndim]:
        raise DataFileError(
            path,
            f"bad magic number 0x{magic:08x}, expected "
            f"0x{_IDX_MAGIC[ndim]:08x} (a {ndim}-d IDX file of bytes)",
        )
    dims = struct.unpack(f">{ndim}I", data[4:header])
    expected = math.prod(dims)
    if len(data) - header != expected:
        raise DataFileError(
            path,
            f"truncated or padded: the header promises {expected} bytes "
            f"of data for shape {dims}, the file holds {len(data) - header}",
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def write_idx(path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write a uint8 array as IDX (gzip when the name ends in .gz): for tests and fixtures."""
    path = Path(path)
    array = np.ascontiguousarray(array, dtype=np.uint8)
    data = (
        struct.pack(">I", _IDX_MAGIC[array.ndim])
        + struct.pack(f">{array.ndim}I", *array.shape)
        + array.tobytes()
    )
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)


def _fetch(url: str, target: Path, md5: str | None, timeout: float) -> None:
    """`url` to `target` through pooch: streamed to a temporary file beside it, renamed only
    when the MD5 matches (a mismatch raises ValueError and leaves nothing)."""
    import pooch

    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel("WARNING")  # nin prints its own line per file
    try:
        pooch.retrieve(
            url,
            known_hash=f"md5:{md5}" if md5 else None,
            fname=target.name,
            path=target.parent,
            downloader=pooch.HTTPDownloader(timeout=timeout),
        )
    finally:
        logger.setLevel(level)


def download(
    root=None,
    mirrors: Sequence[str] = MIRRORS,
    checksums: dict | None = None,
    timeout: float = 30.0,
    progress: Callable[[str], None] | None = print,
) -> Path:
    """Download the missing files into `root`, trying each mirror in turn, MD5-checked."""
    root = default_root(root)
    root.mkdir(parents=True, exist_ok=True)
    checksums = MD5 if checksums is None else checksums
    failures = {}
    for name in [n for pair in FILES.values() for n in pair]:
        target = root / name
        if _present(root, name):
            continue
        errors = []
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + name
            try:
                if progress:
                    progress(f"downloading {url}")
                _fetch(url, target, checksums.get(name), timeout)
                break
            except _request_errors() as err:  # refused, timed out, a bad URL, HTTP errors
                errors.append(f"{url}: {type(err).__name__}: {err}")
            except ValueError as err:  # pooch: the hash does not match
                errors.append(f"{url}: checksum mismatch ({err})")
            except OSError as err:  # refused, timed out, HTTP errors
                errors.append(f"{url}: {type(err).__name__}: {err}")
        else:
            failures[name] = errors
    if failures:
        lines = "\n".join(
            f"  {name}:\n    " + "\n    ".join(errs) for name, errs in failures.items()
        )
        raise DataUnavailableError(
            Message(
                "Fashion-MNIST files missing in {folder} and the download failed:\n{lines}\n"
                "Offline? Copy the four IDX files (.gz or raw) into a folder and pass {root} or "
                "set NIN_DATA_DIR=<folder>.",
                folder=root,
                lines=lines,
                root=arg("root", Placeholder("<folder>")),
            )
        )
    return root


def _present(root: Path, name: str) -> Path | None:
    for candidate in (root / name, root / name[:-3]):  # gzip or raw
        if candidate.is_file():
            return candidate
    return None


@functools.lru_cache(maxsize=4)
def _load_split(images: Path, labels: Path, _stamp) -> tuple[np.ndarray, np.ndarray]:
    x = read_idx(images, 3)
    y = read_idx(labels, 1)
    if x.shape[1:] != (28, 28):
        raise DataFileError(images, f"images are {x.shape[1]}x{x.shape[2]}, expected 28x28")
    if len(x) != len(y):
        raise DataFileError(
            labels,
            f"{len(y)} labels for {len(x)} images in {images.name}; "
            f"the two files come from different sets",
        )
    if y.size and y.max() > 9:
        raise DataFileError(labels, f"label {int(y.max())} is out of range 0-9")
    x.setflags(write=False)
    y = y.astype(np.int64)
    y.setflags(write=False)
    return x, y


def load_fashion_mnist(root=None, download_missing: bool = True, **download_kwargs):
    """(train_images, train_labels, test_images, test_labels): uint8 N x 28 x 28 and int64 N."""
    root = default_root(root)
    names = [n for pair in FILES.values() for n in pair]
    missing = [n for n in names if not _present(root, n)]
    if missing:
        if not download_missing:
            raise DataUnavailableError(
                Message(
                    "Fashion-MNIST files missing in {folder}: {missing}. Pass {root} or set "
                    "NIN_DATA_DIR=<folder> to a folder that has them.",
                    folder=root,
                    missing=", ".join(missing),
                    root=arg("root", Placeholder("<folder>")),
                )
            )
        download(root, **download_kwargs)
    arrays: list[np.ndarray] = []
    for split in ("train", "test"):
        paths = [p for p in (_present(root, n) for n in FILES[split]) if p is not None]
        stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
        arrays.extend(_load_split(*paths, stamp))
    return tuple(arrays)


def resize_matrix(in_size: int, out_size: int) -> np.ndarray:
    """Bilinear resize as an (out_size, in_size) float32 matrix: half-pixel centres, edges
    clamped (like torch's interpolate(align_corners=False)). Image R @ X @ C.T resizes X."""
    m = np.zeros((out_size, in_size), dtype=np.float64)
    scale = in_size / out_size
    for i in range(out_size):
        src = max((i + 0.5) * scale - 0.5, 0.0)
        lo = min(int(src), in_size - 1)
        hi = min(lo + 1, in_size - 1)
        frac = src - lo
        m[i, lo] += 1.0 - frac
        m[i, hi] += frac
    return m.astype(np.float32)


# training-image augmentations, drawn per batch in the shared NumPy pipeline: name -> (the
# largest shift `flip_shift` makes, whether `erase` follows); none is the chapter's
AUGMENTATIONS = {
    "none": None,
    "flip": (0, False),
    "flip-shift": (2, False),
    "flip-erase": (0, True),
}


def flip_shift(images: np.ndarray, rng, pad: int = 2) -> np.ndarray:
    """Each image mirrored left-right with probability 1/2, then shifted by up to `pad`
    pixels each way (the edge filled with 0, the background); uint8 in, uint8 out. Done on
    the 28 x 28 images, before the resize, so every backend sees the same batches."""
    n, h, w = images.shape
    out = images.copy()
    flip = rng.random(n) < 0.5
    out[flip] = out[flip, :, ::-1]
    padded = np.pad(out, ((0, 0), (pad, pad), (pad, pad)))
    dy = rng.integers(0, 2 * pad + 1, n)
    dx = rng.integers(0, 2 * pad + 1, n)
    rows = (dy[:, None] + np.arange(h))[:, :, None]
    cols = (dx[:, None] + np.arange(w))[:, None, :]
    return padded[np.arange(n)[:, None, None], rows, cols]


def erase(images: np.ndarray, rng, p: float = 0.5) -> np.ndarray:
    """Random erasing (Zhong et al., 2017): with probability `p`, one rectangle of each
    image, 2% to 40% of its area with an aspect ratio from 0.3 to 3.3, is filled with random
    pixel values; uint8 in, uint8 out (a copy). Done on the 28 x 28 images, before the resize."""
    n, h, w = images.shape
    out = images.copy()
    chosen = rng.random(n) < p
    area = rng.uniform(0.02, 0.4, n) * h * w
    aspect = np.exp(rng.uniform(np.log(0.3), np.log(1 / 0.3), n))
    eh = np.clip(np.round(np.sqrt(area * aspect)), 1, h).astype(int)
    ew = np.clip(np.round(np.sqrt(area / aspect)), 1, w).astype(int)
    top = (rng.random(n) * (h - eh + 1)).astype(int)
    left = (rng.random(n) * (w - ew + 1)).astype(int)
    noise = rng.integers(0, 256, (n, h, w), dtype=np.uint8)
    rows, cols = np.arange(h)[None, :, None], np.arange(w)[None, None, :]
    inside = (
        chosen[:, None, None]
        & (rows >= top[:, None, None])
        & (rows < (top + eh)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + ew)[:, None, None])
    )
    out[inside] = noise[inside]
    return out


class BatchSource:
    """Seeded batches of (uint8 images, int64 labels) as NumPy; one new order per epoch."""

    def __init__(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        batch_size: int,
        shuffle: bool,
        seed: int = 0,
        limit_batches: int | None = None,
        augment: str = "none",
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
        self.images, self.labels = images, labels
        self.batch_size, self.shuffle, self.seed = batch_size, shuffle, seed
        self.limit_batches, self.augment = limit_batches, augment
        self.epoch = 0

    def __len__(self) -> int:
        full = math.ceil(len(self.labels) / self.batch_size)
        return full if self.limit_batches is None else min(full, self.limit_batches)

    def order(self, epoch: int) -> np.ndarray:
        if not self.shuffle:
            return np.arange(len(self.labels))
        return np.random.default_rng([self.seed, epoch]).permutation(len(self.labels))

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        order, epoch = self.order(self.epoch), self.epoch
        self.epoch += 1
        augment = AUGMENTATIONS[self.augment]
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            images = self.images[idx]
            if augment is not None:  # seeded by the batch's place: a resume draws alike
                pad, erasing = augment
                rng = np.random.default_rng([self.seed, epoch, b, 1])
                images = flip_shift(images, rng, pad)
                if erasing:
                    images = erase(images, rng)
            yield images, self.labels[idx]


class Loader:
    """Iterable of backend tensors: a BatchSource with a conversion applied to each batch."""

    def __init__(self, source: BatchSource, convert: Callable):
        self.source, self.convert = source, convert

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        """Start the next pass at `epoch`'s order: a resumed run sees the batches of an
        unbroken one (the Trainer calls this)."""
        self.source.epoch = epoch

    def __iter__(self):
        for images, labels in self.source:
            yield self.convert(images, labels)


def data_settings(data) -> dict:
    """What a data module feeds a run: batch size, input size, seed, augmentation and the
    held-out split (val_* metrics are on held-out training images when it is not 0)."""
    resize = getattr(data, "resize", None)
    return {
        "batch_size": getattr(data, "batch_size", None),
        "input_size": list(resize) if resize is not None else None,
        "seed": getattr(data, "seed", None),
        "augment": getattr(data, "augment", None),
        "val_split": getattr(data, "val_split", None),
    }


class FashionMNISTBase:
    """d2l's FashionMNIST data module; a backend subclass supplies `convert_batch`.

    `num_train` / `num_val` take a seeded random subset (quick runs and tests);
    `limit_train_batches` / `limit_val_batches` cut each epoch short; `arrays` =
    (train_images, train_labels, val_images, val_labels) uses those instead of the files.
    `augment='flip'` mirrors half the training images, `'flip-shift'` also shifts them by
    up to 2 pixels, `'flip-erase'` mirrors and then erases (`erase`) (seeded, in NumPy:
    every backend sees the same batches). `val_split=N`
    holds out N training images (a seeded draw) as the validation split, for tuning without
    the test set; the test split is then `test` / `test_dataloader()` (without it,
    validation is the test split, as in d2l).
    """

    device = None  # where batches go; the Trainer sets it

    def __init__(
        self,
        batch_size: int = 64,
        resize=(28, 28),
        root=None,
        seed: int = 0,
        num_train: int | None = None,
        num_val: int | None = None,
        limit_train_batches: int | None = None,
        limit_val_batches: int | None = None,
        download: bool = True,
        arrays=None,
        augment: str = "none",
        val_split: int = 0,
    ):
        from nin.quick import active, capped  # the small-size mode, if an edge enabled it

        quick = active()
        if quick:
            batch_size = min(batch_size, quick.batch_size)
            resize = (quick.resize, quick.resize)
            limit_train_batches = capped(limit_train_batches, quick.train_batches)
            limit_val_batches = capped(limit_val_batches, quick.val_batches)
        self.batch_size, self.seed = batch_size, seed
        self.resize = (resize, resize) if isinstance(resize, int) else tuple(resize)
        self.root = default_root(root)
        train_x, train_y, val_x, val_y = (
            arrays
            if arrays is not None
            else load_fashion_mnist(self.root, download_missing=download)
        )
        for split, labels in (("training", train_y), ("test", val_y)):
            if len(labels) == 0:
                raise DataFileError(
                    self.root,
                    f"the {split} split holds no images",
                    Message(
                        "Point {root} (or NIN_DATA_DIR) at the full Fashion-MNIST files.",
                        root=arg("root"),
                    ),
                )
        if augment not in AUGMENTATIONS:
            raise ValueError(f"augment must be one of {', '.join(AUGMENTATIONS)}, got {augment!r}")
        if not 0 <= val_split < len(train_y):
            raise ValueError(
                f"val_split must be >= 0 and below the {len(train_y)} training images, "
                f"got {val_split}"
            )
        self.augment, self.val_split = augment, val_split
        self.test = self._subset(val_x, val_y, num_val, seed + 1)
        if val_split:  # a seeded draw of the training images, never trained on
            order = np.random.default_rng([seed, 2, 0]).permutation(len(train_y))
            held, kept = np.sort(order[:val_split]), np.sort(order[val_split:])
            self.val = (train_x[held], train_y[held])
            train_x, train_y = train_x[kept], train_y[kept]
        else:
            self.val = self.test
        self.train = self._subset(train_x, train_y, num_train, seed)
        self.limits = {True: limit_train_batches, False: limit_val_batches}
        self._resize_cache: dict = {}

    @staticmethod
    def _subset(x, y, n, seed):
        if n is None or n >= len(y):
            return x, y
        idx = np.sort(np.random.default_rng(seed).permutation(len(y))[:n])
        return x[idx], y[idx]

    def resize_matrices(self, height: int = 28, width: int = 28, convert=None):
        """(rows, cols) matrices resizing height x width images to this module's size; with
        `convert` (NumPy -> a tensor on `self.device`), converted once per device, so a
        batch is the only thing copied to the device per step."""
        key = (height, width, str(self.device) if convert else None)
        if key not in self._resize_cache:
            pair = (resize_matrix(height, self.resize[0]), resize_matrix(width, self.resize[1]))
            self._resize_cache[key] = tuple(map(convert, pair)) if convert else pair
        return self._resize_cache[key]

    def batches(self, train: bool) -> BatchSource:
        x, y = self.train if train else self.val
        return BatchSource(
            x,
            y,
            self.batch_size,
            shuffle=train,
            seed=self.seed,
            limit_batches=self.limits[train],
            augment=self.augment if train else "none",
        )

    def get_dataloader(self, train: bool) -> Loader:
        return Loader(self.batches(train), self.convert_batch)

    def train_dataloader(self) -> Loader:
        return self.get_dataloader(True)

    def val_dataloader(self) -> Loader:
        return self.get_dataloader(False)

    def test_dataloader(self) -> Loader:
        """The test split, whole (the validation split too, unless `val_split` holds out
        training images)."""
        return Loader(
            BatchSource(self.test[0], self.test[1], self.batch_size, False, seed=self.seed),
            self.convert_batch,
        )

    def convert_batch(self, images: np.ndarray, labels: np.ndarray):
        """uint8 N x 28 x 28 -> the backend's float tensor in [0, 1], resized, and labels."""
        raise NotImplementedError

    def to_numpy(self, images) -> np.ndarray:
        """A batch of backend images -> float N x H x W NumPy (for `visualize`)."""
        raise NotImplementedError

    def text_labels(self, indices) -> list[str]:
        return [TEXT_LABELS[int(i)] for i in np.asarray(indices).reshape(-1)]

    def visualize(self, batch, nrows: int = 1, ncols: int = 8, labels=None):
        """Draw the first nrows x ncols images of a batch with their class names."""
        import matplotlib.pyplot as plt

        images, y = batch
        pixels = self.to_numpy(images)
        labels = self.text_labels(y) if labels is None else labels
        n = min(nrows * ncols, len(pixels))
        fig, axes = plt.subplots(nrows, ncols, figsize=(1.5 * ncols, 1.7 * nrows), squeeze=False)
        for i, ax in enumerate(axes.flat):
            ax.axis("off")
            if i < n:
                ax.imshow(pixels[i], cmap="gray")
                ax.set_title(labels[i], fontsize=9)
        fig.tight_layout()
        return fig
