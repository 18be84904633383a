"""d2l's Module, Classifier and FashionMNIST for Gluon, and the chapter's NiN."""

from __future__ import annotations

from mxnet import gluon, init, np, npx
from mxnet.gluon import nn

from nin import data as _data
from nin import training as _training
from nin.backends.mxnet.ops import build, cpu, ordered_params, to_numpy


class Module(_training.ModuleMixin, nn.Block):
    """d2l's Module for Gluon: `self.net`, `loss`, `training_step`, `validation_step`."""

    def _optimizer(self, name, lr, momentum=0.0, weight_decay=0.0):
        settings = {"learning_rate": lr, "wd": weight_decay}
        if name == "sgd":
            settings["momentum"] = momentum
        return gluon.Trainer(ordered_params(self), name, settings)

    _random = staticmethod(lambda shape: np.random.randn(*shape))
    _top_layers = staticmethod(lambda net: list(net))

    def apply_init(self, inputs, init=None):
        if init is not None:
            self.net.initialize(init)
        self.forward(*inputs)


class Classifier(_training.ClassifierMixin, Module):
    """d2l's Classifier: softmax cross-entropy and accuracy, averaged over the batch."""

    def accuracy(self, Y_hat, Y, averaged=True):
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        preds = Y_hat.argmax(axis=1).astype(Y.dtype)
        compare = (preds == Y.reshape(-1)).astype("float32")
        return compare.mean() if averaged else compare

    def loss(self, Y_hat, Y, averaged=True):
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1])).astype("float32")
        smoothing = getattr(self, "label_smoothing", 0.0)
        if smoothing:  # (1 - e) x the label's -log p, plus e x the mean -log p over classes
            logp = npx.log_softmax(Y_hat, axis=-1)
            nll = -npx.pick(logp, Y.reshape((-1,)), axis=-1)
            losses = (1 - smoothing) * nll - smoothing * logp.mean(axis=-1)
        else:
            losses = gluon.loss.SoftmaxCrossEntropyLoss()(Y_hat, Y.reshape((-1,)))
        return losses.mean() if averaged else losses


class NiN(_training.NiNMixin, Classifier):
    __doc__ = _training.NiNMixin.__doc__
    _build = staticmethod(build)

    def _initialize(self, how):
        self.net.initialize(
            init.Xavier() if how == "xavier" else init.MSRAPrelu(factor_type="in", slope=0.0)
        )


class FashionMNIST(_data.FashionMNISTBase):
    """d2l's FashionMNIST: batches as float NCHW arrays in [0, 1], resized by two matmuls."""

    def convert_batch(self, images, labels):
        ctx = self.device or cpu()
        rows, cols = self.resize_matrices(*images.shape[1:], convert=lambda m: np.array(m, ctx=ctx))
        X = np.array(images, ctx=ctx, dtype="float32") / 255
        X = np.dot(rows, X).transpose(1, 0, 2)  # N x H x 28
        X = np.dot(X, cols.T)  # N x H x W, bilinear
        return np.expand_dims(X, 1), np.array(labels, ctx=ctx, dtype="int32")

    def to_numpy(self, images):
        return to_numpy(images)[:, 0]
