"""d2l's Module, Classifier and FashionMNIST for PyTorch, and the chapter's NiN."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from nin import data as _data
from nin import training as _training
from nin.backends.torch.ops import build, cpu, init_cnn, init_kaiming, to_numpy


class Module(_training.ModuleMixin, nn.Module):
    """d2l's Module: `self.net`, `loss`, `training_step`, `validation_step`, SGD at `self.lr`."""

    def _optimizer(self, name, lr, momentum=0.0, weight_decay=0.0):
        if name == "adam":
            return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        return torch.optim.SGD(
            self.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )

    _random = staticmethod(lambda shape: torch.randn(*shape))
    _top_layers = staticmethod(lambda net: list(net))

    def apply_init(self, inputs, init=None):
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


class Classifier(_training.ClassifierMixin, Module):
    """d2l's Classifier: cross-entropy loss and accuracy, both averaged over the batch."""

    def accuracy(self, Y_hat, Y, averaged=True):
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        compare = (Y_hat.argmax(dim=1).type(Y.dtype) == Y.reshape(-1)).float()
        return compare.mean() if averaged else compare

    def loss(self, Y_hat, Y, averaged=True):
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1])).float()  # fp32 loss under autocast
        return F.cross_entropy(
            Y_hat,
            Y.reshape((-1,)),
            reduction="mean" if averaged else "none",
            label_smoothing=getattr(self, "label_smoothing", 0.0),
        )


class NiN(_training.NiNMixin, Classifier):
    __doc__ = _training.NiNMixin.__doc__
    _build = staticmethod(build)

    def _initialize(self, init):
        self.net.apply(init_cnn if init == "xavier" else init_kaiming)


def _to_device(a: np.ndarray, device):
    """A NumPy batch on `device`: uint8 images and int64 labels cross as they are (a quarter of
    float32's bytes), from pinned memory and without blocking on a GPU, so that the step that
    follows is not held up by a host round trip."""
    t = torch.from_numpy(a if a.flags.writeable else a.copy())  # a read-only view: copied
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class FashionMNIST(_data.FashionMNISTBase):
    """d2l's FashionMNIST: batches as float NCHW tensors in [0, 1], resized by two matmuls."""

    def convert_batch(self, images, labels):
        device = self.device or cpu()
        rows, cols = self.resize_matrices(
            *images.shape[1:], convert=lambda m: torch.from_numpy(m).to(device)
        )
        X, y = (_to_device(a, device) for a in (images, labels))
        X = X.float().div_(255)
        X = rows @ X @ cols.T  # N x 28 x 28 -> N x H x W, bilinear, on the device
        return X.unsqueeze(1), y

    def to_numpy(self, images):
        return to_numpy(images)[:, 0]
