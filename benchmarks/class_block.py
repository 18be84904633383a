"""Why the chapter's NiN can sit at chance: the ReLUs of its 10-channel class block.

For each backend and each setting of the class block's ReLUs ('all': the book's; 'hidden':
the final one removed; 'none': a linear class block), train the same steps from the same
seed with Adam and a one-cycle schedule (the `nin` recipe otherwise), then report the last
losses and the share of the class block's first-conv outputs that are positive on a
validation batch. A share of 0 means every class score is a constant: the loss is ln 10 and
no gradient reaches anything below the block.

    python -m benchmarks.class_block [--backend all] [--steps 40] [--size 67] [--data-dir D]
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np

from nin import spec as S
from nin.backends import get_backend, resolve_backends
from nin.training import PIXEL_MEAN, PIXEL_STD, RECIPES


def live_share(B, model, batch) -> float:
    """Share of positive outputs of the class block's first conv on one batch. A ReLU's
    output is positive exactly where its input is, so a fused ReLU (MXNet) changes nothing."""
    x = B.to_numpy(batch[0])  # the backend's own layout
    if model.normalize:
        x = (x - PIXEL_MEAN) / PIXEL_STD
    index = len(model.spec.layers) - 3  # block, GAP, flatten at the end
    outputs = B.layer_outputs(model.net, x.astype(np.float32))
    features = outputs[index - 1][1]
    block = list(model.net.layers if hasattr(model.net, "layers") else model.net)[index]
    first = block.layers[0] if hasattr(block, "layers") else block[0]
    return float((B.to_numpy(_call(first, features)) > 0).mean())


def _call(layer, x: np.ndarray):
    """Call one framework layer on a NumPy array, in that framework's array type."""
    module = type(layer).__module__
    if module.startswith("torch"):
        import torch

        with torch.no_grad():
            return layer(torch.from_numpy(x))
    if module.startswith("mxnet"):
        from mxnet import np as mnp

        return layer(mnp.array(x))
    import tensorflow as tf

    return layer(tf.constant(x))


def run(backend, relu, steps, size, root, seed=0) -> dict:
    B = get_backend(backend)
    B.set_seed(seed)
    recipe = replace(RECIPES["nin"], name=f"class-{relu}", class_block_relu=relu)
    data = B.FashionMNIST(batch_size=32, resize=(size, size), root=root, seed=seed)
    model = B.NiN(spec=S.with_class_block_relu(S.chapter_spec(), relu), recipe=recipe)
    trainer = B.Trainer(
        max_epochs=1,
        limit_train_batches=steps,
        limit_val_batches=2,
        progress=False,
        stuck_check=0,
        fast=True,
    )
    history = trainer.fit(model, data)
    losses = [loss for _, loss in history.steps]
    batch = next(iter(data.val_dataloader()))
    return {
        "backend": backend,
        "class_block_relu": relu,
        "steps": steps,
        "last_losses": float(np.mean(losses[-5:])),
        "val_loss": history.epochs[-1]["val_loss"],
        "val_acc": history.epochs[-1]["val_acc"],
        "live_share": live_share(B, model, batch),
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--backend", default="all")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--size", type=int, default=67)
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    records = [
        run(b, relu, args.steps, args.size, args.data_dir, seed)
        for b in resolve_backends(args.backend)
        for relu in ("all", "hidden", "none")
        for seed in range(args.seeds)
    ]
    if args.json:
        print(json.dumps(records))
        return
    print(
        f"{args.steps} steps at {args.size}x{args.size}, batch 32, Adam one-cycle; live = "
        f"share of positive class-block pre-activations (0: every score constant)"
    )
    print(
        f"  {'backend':<11}{'class ReLUs':<12}{'last loss':>10}{'val loss':>10}"
        f"{'val acc':>9}{'live':>7}"
    )
    for r in records:
        print(
            f"  {r['backend']:<11}{r['class_block_relu']:<12}{r['last_losses']:>10.3f}"
            f"{r['val_loss']:>10.3f}{r['val_acc']:>9.3f}{r['live_share']:>7.2f}"
        )


if __name__ == "__main__":
    main()
