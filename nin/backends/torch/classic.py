"""The classic d2l helpers' PyTorch parts (the 0.17 and 2.0 editions' `train_ch6` and its
friends, as d2l 1.0.3 defines them); the loop and the curves are nin.classic's."""

from __future__ import annotations

import torch
from torch import nn

from nin import classic as _classic
from nin.backends.torch.model import FashionMNIST
from nin.backends.torch.ops import init_cnn
from nin.classic import Accumulator, Animator, Timer  # noqa: F401  (the d2l surface)

__all__ = list(_classic.CLASSIC_NAMES)

load_data_fashion_mnist = _classic.make_load_data(FashionMNIST)


def _correct(y_hat, y):
    """How many rows of logits (or labels) `y_hat` name the label in `y`."""
    if y_hat.dim() > 1 and y_hat.shape[1] > 1:
        y_hat = y_hat.argmax(dim=1)
    return float((y_hat.type(y.dtype) == y).sum())


def evaluate_accuracy_gpu(net, data_iter, device=None):
    """The accuracy of `net` over `data_iter`, in eval mode (and left there), on `device`
    (where the net's first parameter is, by default)."""
    if isinstance(net, nn.Module):
        net.eval()
        if not device:
            device = next(iter(net.parameters())).device

    def count(X, y):
        X = [x.to(device) for x in X] if isinstance(X, list) else X.to(device)
        y = y.to(device)
        return _correct(net(X), y), y.numel()

    with torch.no_grad():
        return _classic.mean_accuracy(data_iter, count)


def train_ch6(net, train_iter, test_iter, num_epochs, lr, device):
    """Train `net` on `device`: Xavier-uniform weights for its Linear and Conv2d layers
    (`init_cnn`; biases are kept), SGD at `lr` on the mean cross-entropy, the test accuracy
    after each epoch; curves drawn, then the last epoch's numbers printed."""
    num_epochs = _classic.epochs_to_run(train_iter, num_epochs)
    net.apply(init_cnn)
    print("training on", device)
    net.to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=lr)
    loss = nn.CrossEntropyLoss()

    def step(X, y):
        optimizer.zero_grad()
        X, y = X.to(device), y.to(device)
        y_hat = net(X)
        batch_loss = loss(y_hat, y)
        batch_loss.backward()
        optimizer.step()
        with torch.no_grad():
            return batch_loss * X.shape[0], _correct(y_hat, y), X.shape[0]

    _classic.fit_ch6(
        step,
        lambda batches: evaluate_accuracy_gpu(net, batches),
        train_iter,
        test_iter,
        num_epochs,
        device,
        start_epoch=net.train,
    )
