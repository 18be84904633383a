"""d2l's Module, Classifier and FashionMNIST for Keras, and the chapter's NiN."""

from __future__ import annotations

import tensorflow as tf

from nin import data as _data
from nin import training as _training
from nin.backends.tensorflow.ops import build, leaf_layers, to_numpy


class _CoupledWeightDecay:
    """Weight decay as PyTorch's and MXNet's optimizers apply it: `coupled_weight_decay` x the
    weight added to its gradient before the update, so that it goes through Adam's scaling
    and SGD's momentum. Keras' own `weight_decay` is decoupled (AdamW's: the weight shrinks
    by lr x decay, apart from the gradient's update), another recipe, and stays off (None)
    here."""

    def __init__(self, *args, coupled_weight_decay=0.0, **kwargs):
        super().__init__(*args, **kwargs)
        if self.weight_decay:  # by keyword or by position
            raise ValueError(
                f"weight_decay={self.weight_decay} is Keras' decoupled decay; "
                "pass coupled_weight_decay= for PyTorch's and MXNet's"
            )
        self.coupled_weight_decay = float(coupled_weight_decay or 0.0)

    def update_step(self, gradient, variable):
        if self.coupled_weight_decay:
            gradient = gradient + tf.cast(self.coupled_weight_decay, gradient.dtype) * variable
        return super().update_step(gradient, variable)

    def get_config(self):
        return dict(super().get_config(), coupled_weight_decay=self.coupled_weight_decay)


class CoupledAdam(_CoupledWeightDecay, tf.keras.optimizers.Adam):
    __doc__ = _CoupledWeightDecay.__doc__


class CoupledSGD(_CoupledWeightDecay, tf.keras.optimizers.SGD):
    __doc__ = _CoupledWeightDecay.__doc__


class Module(_training.ModuleMixin, tf.keras.Model):
    """d2l's Module for Keras: `self.net`, `loss`, `training_step`, `validation_step`.

    `self.training` is the mode the Trainer sets (True while training, False to validate).
    d2l 1.0.3 stores Keras' `training=None` (what Keras passes when the caller gives no flag)
    over it, so its nets never train with dropout; here only an explicit True or False
    changes the mode, and dropout runs in training as the chapter means (docs/training.md)."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__(plot_train_per_epoch, plot_valid_per_epoch)
        self.training = None

    def call(self, X, *args, **kwargs):
        if kwargs.get("training") is not None:
            self.training = kwargs["training"]
        return self.forward(X, *args)

    def apply_init(self, inputs, init=None):
        """d2l's (PyTorch tab's): build the weights with one forward pass, then `init` each
        layer. Keras' defaults already are the chapter's init, so `init_cnn` changes nothing."""
        self.forward(*inputs)
        if init is not None:
            for layer in leaf_layers(self.net):
                init(layer)

    def forward(self, X):
        return self.net(X, training=self.training)

    def _optimizer(self, name, lr, momentum=0.0, weight_decay=0.0):
        if name == "adam":  # PyTorch's and MXNet's epsilon (Keras' default is 1e-7)
            return CoupledAdam(float(lr), epsilon=1e-8, coupled_weight_decay=weight_decay)
        return CoupledSGD(float(lr), momentum=momentum, coupled_weight_decay=weight_decay)

    _random = staticmethod(tf.random.normal)
    _top_layers = staticmethod(lambda net: net.layers)


class Classifier(_training.ClassifierMixin, Module):
    """d2l's Classifier: sparse cross-entropy from logits, and accuracy."""

    def accuracy(self, Y_hat, Y, averaged=True):
        Y_hat = tf.reshape(Y_hat, (-1, Y_hat.shape[-1]))
        preds = tf.cast(tf.argmax(Y_hat, axis=1), Y.dtype)
        compare = tf.cast(preds == tf.reshape(Y, [-1]), tf.float32)
        return tf.reduce_mean(compare) if averaged else compare

    def loss(self, Y_hat, Y, averaged=True):
        Y_hat = tf.cast(tf.reshape(Y_hat, (-1, Y_hat.shape[-1])), tf.float32)  # fp32 under bf16
        smoothing = getattr(self, "label_smoothing", 0.0)
        if smoothing:  # Keras smooths one-hot targets only
            fn = tf.keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=smoothing, reduction="none"
            )
            losses = fn(tf.one_hot(tf.reshape(Y, (-1,)), Y_hat.shape[-1]), Y_hat)
        else:
            fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
            losses = fn(tf.reshape(Y, (-1,)), Y_hat)
        if not averaged:
            return losses
        # Keras' sum_over_batch_size, written out: tf.distribute refuses that reduction
        return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32))


class NiN(_training.NiNMixin, Classifier):
    __doc__ = _training.NiNMixin.__doc__
    _build = staticmethod(build)

    def _initialize(self, init):
        """Keras' default (Glorot) is the chapter's; He init is set on the initializers."""
        if init == "kaiming":
            for layer in leaf_layers(self.net):
                if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)):
                    layer.kernel_initializer = tf.keras.initializers.HeNormal()


class FashionMNIST(_data.FashionMNISTBase):
    """d2l's FashionMNIST: batches as float NHWC tensors in [0, 1], resized by two matmuls."""

    def convert_batch(self, images, labels):
        with tf.device(self.device or "/CPU:0"):
            rows, cols = self.resize_matrices(*images.shape[1:], convert=tf.constant)
            X = tf.cast(tf.constant(images), tf.float32) / 255
            X = tf.einsum("hi,nij,wj->nhw", rows, X, cols)  # bilinear, N x H x W
            return X[..., None], tf.constant(labels, dtype=tf.int32)

    def to_numpy(self, images):
        return to_numpy(images)[..., 0]
