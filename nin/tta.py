"""Test-time augmentation (TTA): score each test image by the class probabilities summed over
several views of it (the image, its mirror image, one-pixel shifts), in fp32 through the
backend's `predict`. The backend module is an argument (`nin.backends.get_backend(name)`),
so that this module sits below the backends and imports no framework."""

from __future__ import annotations

import numpy as np

from nin.data import BatchSource

__all__ = ["TTA", "tta_views", "tta_probabilities", "tta_accuracy"]

# test-time augmentation: the views of each test image whose class probabilities are summed
TTA = {
    "none": "the image itself",
    "flip": "the image and its mirror image",
    "flip-shift": "the image and its mirror image, each also shifted by one pixel up, down, "
    "left and right: 10 views",
}


def tta_views(images: np.ndarray, tta: str) -> list[np.ndarray]:
    """The views of a uint8 N x 28 x 28 batch that `tta` scores (shifts fill with 0, the
    background, as `nin.data.flip_shift` does)."""
    if tta not in TTA:
        raise ValueError(f"unknown test-time augmentation {tta!r}; choose one of {', '.join(TTA)}")
    views = [images] if tta == "none" else [images, images[:, :, ::-1]]
    if tta == "flip-shift":
        h, w = images.shape[1:]
        for view in list(views):
            padded = np.pad(view, ((0, 0), (1, 1), (1, 1)))
            for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                views.append(padded[:, 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w])
    return [np.ascontiguousarray(v) for v in views]


def tta_probabilities(
    backend, model, data, tta: str = "flip", split: str = "test", limit_batches=None
) -> tuple[np.ndarray, np.ndarray]:
    """(class probabilities summed over each image's views (`tta_views`), labels) for
    `data`'s test split or its validation split (`split='val'`: the held-out images with
    `val_split`, else the test split), the model in inference mode and fp32 (the backend's
    `predict`); the first `limit_batches` batches only, if given. `backend` is the backend
    module (`nin.backends.get_backend(name)`); `data` its FashionMNIST."""
    if isinstance(backend, str):
        raise TypeError(
            f"pass the backend module, `nin.backends.get_backend({backend!r})`, not its name"
        )
    if split not in ("test", "val"):
        raise ValueError(f"split must be 'test' or 'val', got {split!r}")
    B = backend
    images, labels = data.test if split == "test" else data.val
    source = BatchSource(images, labels, data.batch_size, False, limit_batches=limit_batches)
    summed, seen = [], []
    for x, y in source:
        probs = np.zeros(1)
        for view in tta_views(x, tta):
            X, _ = data.convert_batch(view, y)
            logits = np.asarray(B.predict(model, B.to_numpy(X)), np.float64)
            e = np.exp(logits - logits.max(axis=1, keepdims=True))
            probs = probs + e / e.sum(axis=1, keepdims=True)
        summed.append(probs)
        seen.append(y)
    return np.concatenate(summed), np.concatenate(seen)


def tta_accuracy(backend, model, data, tta: str = "flip", split: str = "test", limit_batches=None):
    """Accuracy with test-time augmentation: each image counts as the class whose
    probabilities, summed over its views, are highest (`tta_probabilities`, same arguments)."""
    probs, labels = tta_probabilities(backend, model, data, tta, split, limit_batches)
    return float((probs.argmax(axis=1) == labels).mean())
