"""The classic d2l helpers' MXNet parts (the 0.17 and 2.0 editions' `train_ch6` and its
friends, as d2l 1.0.3 defines them); the loop and the curves are nin.classic's."""

from __future__ import annotations

from mxnet import autograd, gluon, init

from nin import classic as _classic
from nin.backends.mxnet.model import FashionMNIST
from nin.classic import Accumulator, Animator, Timer  # noqa: F401  (the d2l surface)

__all__ = list(_classic.CLASSIC_NAMES)

load_data_fashion_mnist = _classic.make_load_data(FashionMNIST)


def _correct(y_hat, y):
    """How many rows of logits (or labels) `y_hat` name the label in `y`."""
    if y_hat.ndim > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(axis=1)
    return float((y_hat.astype(y.dtype) == y).sum())


def evaluate_accuracy_gpu(net, data_iter, device=None):
    """The accuracy of `net` over `data_iter` (outside autograd.record: inference mode), on
    `device` (where the net's first parameter is, by default)."""
    if not device:
        device = list(net.collect_params().values())[0].list_ctx()[0]

    def count(X, y):
        X, y = X.as_in_ctx(device), y.as_in_ctx(device)
        return _correct(net(X), y), y.size

    return _classic.mean_accuracy(data_iter, count)


def train_ch6(net, train_iter, test_iter, num_epochs, lr, device):
    """Train `net` on `device`: every parameter initialized anew (Xavier-uniform weights,
    zero biases), SGD at `lr` on the mean softmax cross-entropy, the test accuracy after
    each epoch; curves drawn, then the last epoch's numbers printed."""
    num_epochs = _classic.epochs_to_run(train_iter, num_epochs)
    net.initialize(force_reinit=True, ctx=device, init=init.Xavier())
    loss = gluon.loss.SoftmaxCrossEntropyLoss()
    trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": lr})

    def step(X, y):
        X, y = X.as_in_ctx(device), y.as_in_ctx(device)
        with autograd.record():
            y_hat = net(X)
            losses = loss(y_hat, y)
        losses.backward()
        trainer.step(X.shape[0])  # the gradient of the summed losses, over the batch size
        return losses.sum(), _correct(y_hat, y), X.shape[0]

    _classic.fit_ch6(
        step,
        lambda batches: evaluate_accuracy_gpu(net, batches),
        train_iter,
        test_iter,
        num_epochs,
        device,
    )
