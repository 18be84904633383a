"""The classic d2l helpers' TensorFlow parts (the 0.17 and 2.0 editions' `train_ch6` and its
friends, as d2l 1.0.3 defines them); the loop and the curves are nin.classic's."""

from __future__ import annotations

import contextlib

import tensorflow as tf

from nin import classic as _classic
from nin.backends.tensorflow.model import FashionMNIST
from nin.classic import Accumulator, Animator, Timer  # noqa: F401  (the d2l surface)

__all__ = list(_classic.CLASSIC_NAMES)

load_data_fashion_mnist = _classic.make_load_data(FashionMNIST)


def _device_name(device) -> str:
    """'/CPU:0' for `try_gpu()`'s `tf.device('/CPU:0')` (d2l's devices); a name as it is."""
    return getattr(device, "_device_name", device)


def _correct(y_hat, y):
    """How many rows of logits (or labels) `y_hat` name the label in `y` (a float tensor)."""
    if len(y_hat.shape) > 1 and y_hat.shape[1] > 1:
        y_hat = tf.argmax(y_hat, axis=1)
    return tf.reduce_sum(tf.cast(tf.cast(y_hat, y.dtype) == y, tf.float32))


def evaluate_accuracy_gpu(net, data_iter, device=None):
    """The accuracy of `net` over `data_iter`, in inference mode (`training=False`), on
    `device` when given. d2l 1.0.3's TensorFlow module has no such function (its train_ch6
    asks Keras' `evaluate`); this is the other tabs' one, with the same arguments."""

    def count(X, y):
        return _correct(net(X, training=False), y), int(tf.size(y))

    place = tf.device(_device_name(device)) if device else contextlib.nullcontext()
    with place:
        return _classic.mean_accuracy(data_iter, count)


def train_ch6(net_fn, train_iter, test_iter, num_epochs, lr, device):
    """Build the net `net_fn()` returns on `device` (one device's `tf.distribute` strategy,
    as d2l does; Keras' defaults are the Xavier init: Glorot-uniform kernels, zero biases)
    and train it: SGD at `lr` on the mean sparse cross-entropy of the logits, the test
    accuracy after each epoch; curves drawn, the last epoch's numbers printed. Returns the
    trained net."""
    num_epochs = _classic.epochs_to_run(train_iter, num_epochs)
    device_name = _device_name(device)
    strategy = tf.distribute.OneDeviceStrategy(device_name)
    with strategy.scope():
        optimizer = tf.keras.optimizers.SGD(learning_rate=lr)
        loss = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
        net = net_fn()

    def replica_step(X, y):
        with tf.GradientTape() as tape:
            y_hat = net(X, training=True)
            losses = loss(y, y_hat)
            # Keras' sum over the batch size, as its fit reduces a compiled loss
            mean = tf.math.divide_no_nan(
                tf.reduce_sum(losses), tf.cast(tf.size(losses), losses.dtype)
            )
        grads = tape.gradient(mean, net.trainable_variables)
        optimizer.apply_gradients(zip(grads, net.trainable_variables))
        n = tf.shape(y)[0]
        return mean * tf.cast(n, mean.dtype), _correct(y_hat, y), n

    train_step = tf.function(lambda X, y: strategy.run(replica_step, args=(X, y)))
    with strategy.scope():
        _classic.fit_ch6(
            train_step,
            lambda batches: evaluate_accuracy_gpu(net, batches),
            train_iter,
            test_iter,
            num_epochs,
            device_name,
        )
    return net
