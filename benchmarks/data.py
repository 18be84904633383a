"""Images per second delivered by each backend's data pipeline, against the chapter's way.

Baseline (the chapter's way, as torchvision's Resize + ToTensor do it): each image resized
alone with PIL's bilinear filter, converted to float in [0, 1], then stacked into a batch.
Ours: one uint8 batch, scaled and resized by two matmuls inside the framework.

    python -m benchmarks.data [--backend all] [--size 224] [--batch-size 128] [--batches 20]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from PIL import Image

from nin.backends import get_backend, resolve_backends
from nin.data import BatchSource, load_fashion_mnist


def chapter_batch(images: np.ndarray, size: int) -> np.ndarray:
    """The baseline: per-image PIL bilinear resize, then conversion to float [0, 1]."""
    out = [
        np.asarray(Image.fromarray(img).resize((size, size), Image.BILINEAR), dtype=np.float32)
        / 255
        for img in images
    ]
    return np.stack(out)[:, None]


def _rate(make_batches, convert, n_images) -> float:
    start = time.perf_counter()
    last = None
    for images, labels in make_batches():
        last = convert(images, labels)
    _ = last  # keep the final result alive until timing stops
    return n_images / (time.perf_counter() - start)


def run(backends, size, batch_size, batches, root=None) -> list[dict]:
    x, y, _, _ = load_fashion_mnist(root, download_missing=True)
    source = BatchSource(x, y, batch_size, shuffle=True, seed=0, limit_batches=batches)
    n_images = batch_size * batches
    baseline = _rate(lambda: source, lambda images, labels: chapter_batch(images, size), n_images)
    records = []
    for name in backends:
        B = get_backend(name)
        dm = B.FashionMNIST(batch_size=batch_size, resize=(size, size), root=root)
        dm.convert_batch(x[:batch_size], y[:batch_size])  # warm-up
        rate = _rate(
            lambda: source,
            lambda images, labels: B.to_numpy(dm.convert_batch(images, labels)[0]),
            n_images,
        )
        records.append(
            {
                "backend": name,
                "size": size,
                "batch_size": batch_size,
                "images_per_s": rate,
                "baseline_images_per_s": baseline,
                "ratio": rate / baseline,
            }
        )
    return records


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="all")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    records = run(
        resolve_backends(args.backend), args.size, args.batch_size, args.batches, args.data_dir
    )
    if args.json:
        print(json.dumps(records))
        return
    print(
        f"data pipeline at {args.size}x{args.size}, batch {args.batch_size}, "
        f"{args.batches} batches; baseline (per-image PIL resize): "
        f"{records[0]['baseline_images_per_s']:,.0f} images/s"
    )
    for r in records:
        print(
            f"  {r['backend']:<11} {r['images_per_s']:>10,.0f} images/s  "
            f"{r['ratio']:>6.1f}x the baseline"
        )


if __name__ == "__main__":
    main()
