"""The baseline: the chapter's NiN and training step as the chapter writes them, per
framework: eager, fp32, the book's layers, plain SGD at lr 0.05, no nin code involved.

Each `make_<framework>(images, labels, gpu)` returns (train_step, infer) closures over one
fixed batch in the framework's layout (on the GPU when `gpu`), so a benchmark times only
forward, loss, backward and update; both closures end by waiting for every queued
operation (MXNet's engine and CUDA run asynchronously, and reading the loss back waits only
for the forward pass).
"""

from __future__ import annotations

import numpy as np


def make_torch(images: np.ndarray, labels: np.ndarray, gpu: bool = False):
    import torch
    from torch import nn
    from torch.nn import functional as F

    def nin_block(out_channels, kernel_size, strides, padding):
        return nn.Sequential(
            nn.LazyConv2d(out_channels, kernel_size, strides, padding),
            nn.ReLU(),
            nn.LazyConv2d(out_channels, kernel_size=1),
            nn.ReLU(),
            nn.LazyConv2d(out_channels, kernel_size=1),
            nn.ReLU(),
        )

    net = nn.Sequential(
        nin_block(96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2d(3, stride=2),
        nin_block(256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2d(3, stride=2),
        nin_block(384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2d(3, stride=2),
        nn.Dropout(0.5),
        nin_block(10, kernel_size=3, strides=1, padding=1),
        nn.AdaptiveAvgPool2d((1, 1)),
        nn.Flatten(),
    )
    device = torch.device("cuda" if gpu else "cpu")
    X, y = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    net.to(device)
    net(X[:1])
    for m in net.modules():
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.xavier_uniform_(m.weight)
    optim = torch.optim.SGD(net.parameters(), lr=0.05)

    def train_step():
        net.train()
        loss = F.cross_entropy(net(X), y)
        optim.zero_grad()
        loss.backward()
        optim.step()
        if gpu:
            torch.cuda.synchronize()
        return float(loss.detach())

    def infer():
        net.eval()
        with torch.no_grad():
            return net(X).cpu().numpy()

    return train_step, infer


def make_mxnet(images: np.ndarray, labels: np.ndarray, gpu: bool = False):
    import mxnet as mx
    from mxnet import autograd, gluon, init, npx
    from mxnet import np as mnp
    from mxnet.gluon import nn

    npx.set_np()

    def nin_block(num_channels, kernel_size, strides, padding):
        blk = nn.Sequential()
        blk.add(
            nn.Conv2D(num_channels, kernel_size, strides, padding, activation="relu"),
            nn.Conv2D(num_channels, kernel_size=1, activation="relu"),
            nn.Conv2D(num_channels, kernel_size=1, activation="relu"),
        )
        return blk

    net = nn.Sequential()
    net.add(
        nin_block(96, kernel_size=11, strides=4, padding=0),
        nn.MaxPool2D(pool_size=3, strides=2),
        nin_block(256, kernel_size=5, strides=1, padding=2),
        nn.MaxPool2D(pool_size=3, strides=2),
        nin_block(384, kernel_size=3, strides=1, padding=1),
        nn.MaxPool2D(pool_size=3, strides=2),
        nn.Dropout(0.5),
        nin_block(10, kernel_size=3, strides=1, padding=1),
        nn.GlobalAvgPool2D(),
        nn.Flatten(),
    )
    ctx = mx.gpu() if gpu else mx.cpu()
    net.initialize(init.Xavier(), ctx=ctx)
    X, y = mnp.array(images, ctx=ctx), mnp.array(labels, ctx=ctx)
    net(X[:1])
    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.05})

    def train_step():
        with autograd.record():
            loss = loss_fn(net(X), y).mean()
        loss.backward()
        trainer.step(1)
        npx.waitall()
        return float(loss.item())

    def infer():
        return net(X).asnumpy()

    return train_step, infer


def make_tensorflow(images: np.ndarray, labels: np.ndarray, gpu: bool = False):
    import tensorflow as tf

    def nin_block(out_channels, kernel_size, strides, padding):
        return tf.keras.models.Sequential(
            [
                tf.keras.layers.Conv2D(out_channels, kernel_size, strides=strides, padding=padding),
                tf.keras.layers.Activation("relu"),
                tf.keras.layers.Conv2D(out_channels, 1),
                tf.keras.layers.Activation("relu"),
                tf.keras.layers.Conv2D(out_channels, 1),
                tf.keras.layers.Activation("relu"),
            ]
        )

    net = tf.keras.models.Sequential(
        [
            nin_block(96, kernel_size=11, strides=4, padding="valid"),
            tf.keras.layers.MaxPool2D(pool_size=3, strides=2),
            nin_block(256, kernel_size=5, strides=1, padding="same"),
            tf.keras.layers.MaxPool2D(pool_size=3, strides=2),
            nin_block(384, kernel_size=3, strides=1, padding="same"),
            tf.keras.layers.MaxPool2D(pool_size=3, strides=2),
            tf.keras.layers.Dropout(0.5),
            nin_block(10, kernel_size=3, strides=1, padding="same"),
            tf.keras.layers.GlobalAvgPool2D(),
            tf.keras.layers.Flatten(),
        ]
    )
    with tf.device("/GPU:0" if gpu else "/CPU:0"):
        X, y = tf.constant(images.transpose(0, 2, 3, 1)), tf.constant(labels)
    net(X[:1])
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    optim = tf.keras.optimizers.SGD(0.05)

    def train_step():
        with tf.GradientTape() as tape:
            loss = loss_fn(y, net(X, training=True))
        grads = tape.gradient(loss, net.trainable_variables)
        optim.apply_gradients(zip(grads, net.trainable_variables))
        if gpu:
            tf.test.experimental.sync_devices()
        return float(loss)

    def infer():
        return net(X, training=False).numpy()

    return train_step, infer


def make_jax(images: np.ndarray, labels: np.ndarray, gpu: bool = False):
    """The English 1.0.3 edition's JAX tab as a reader writes it: Flax's layers at the tab's
    places, d2l's step (the gradient of a compiled loss, then optax's SGD update, eager).
    The class block is averaged over the whole map (the tab pools a 5 x 5 window, the map of
    a 224 x 224 input), so that every size runs."""
    from functools import partial

    import jax
    import optax
    from flax import linen as nn

    def block(channels, kernel, stride, pad):
        square = ((pad, pad), (pad, pad))
        layers = [nn.Conv(channels, (kernel, kernel), (stride, stride), square), nn.relu]
        for _ in range(2):
            layers += [nn.Conv(channels, (1, 1)), nn.relu]
        return nn.Sequential(layers)

    class NiN(nn.Module):
        training: bool = True

        def setup(self):
            def pool(x):
                return nn.max_pool(x, (3, 3), strides=(2, 2))

            self.net = nn.Sequential(
                [block(96, 11, 4, 0), pool, block(256, 5, 1, 2), pool, block(384, 3, 1, 1),
                 pool, nn.Dropout(0.5, deterministic=not self.training), block(10, 3, 1, 1),
                 lambda x: x.mean(axis=(1, 2))]
            )  # fmt: skip

        def __call__(self, X):
            return self.net(X)

    device = jax.devices("gpu" if gpu else "cpu")[0]
    X = jax.device_put(images.transpose(0, 2, 3, 1), device)
    y = jax.device_put(labels.astype(np.int32), device)
    model, inference = NiN(), NiN(training=False)
    key, dropout = jax.random.split(jax.random.PRNGKey(0))
    params = model.init({"params": key, "dropout": dropout}, X[:1])["params"]
    optim = optax.sgd(0.05)
    state = {"params": params, "optim": optim.init(params), "dropout": dropout}

    @partial(jax.jit, static_argnums=0)
    def loss(module, params, X, y, rng):
        logits = module.apply({"params": params}, X, rngs={"dropout": rng})
        return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

    def train_step():
        value, grads = jax.value_and_grad(loss, argnums=1)(
            model, state["params"], X, y, state["dropout"]
        )
        updates, state["optim"] = optim.update(grads, state["optim"])
        state["params"] = optax.apply_updates(state["params"], updates)
        state["dropout"] = jax.random.split(state["dropout"])[0]
        jax.block_until_ready(state["params"])
        return float(value)

    def infer():
        return np.asarray(inference.apply({"params": state["params"]}, X))

    return train_step, infer


BASELINES = {
    "torch": make_torch,
    "mxnet": make_mxnet,
    "tensorflow": make_tensorflow,
    "jax": make_jax,
}
