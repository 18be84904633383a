"""The d2l functions that no framework changes, written once over each backend's own
(`try_gpu` over `gpu` / `cpu` / `num_gpus`, `layer_shapes` over `layer_outputs`); each backend
module binds them to its primitives, so `d2l.try_gpu` is a plain function of that module."""

from __future__ import annotations

from typing import Callable

import numpy as np

from nin.classic import CLASSIC_NAMES
from nin.weights import input_from_nchw

__all__ = ["SURFACE", "CLASSIC_SURFACE", "OPS_NAMES", "MODEL_NAMES", "BACKEND_MODULES",
           "make_try_gpu", "make_layer_shapes"]  # fmt: skip

# what every backend module offers (its __all__): d2l's names the chapter's cells use and the
# ones nin adds; each backend adds its random-tensor function (randn, or Keras' normal)
SURFACE = (
    "nin_block", "build", "count_params", "layer_shapes", "layer_outputs", "predict",
    "parameter_arrays", "assign_parameter_arrays", "Module", "Classifier", "NiN", "Trainer",
    "FashionMNIST", "init_cnn", "try_gpu", "gpu", "cpu", "num_gpus", "set_seed", "to_numpy",
    "synchronize", "strict_fp32",
)  # fmt: skip
# and the backends of the classic editions' tabs (CLASSIC_TABS) the classic names, in their
# `classic` module: `train_ch6` and its friends (d2l-en 0.17, d2l-zh 2.0)
CLASSIC_SURFACE = CLASSIC_NAMES

# where the surface lives in a backend package (nin/backends/<name>/), whose __init__ gathers
# each module's public names; the trainer module holds the Trainer
OPS_NAMES = (
    "LAYOUT", "KERNEL_LAYOUT", "OPS", "nin_block", "build", "count_params", "layer_shapes",
    "layer_outputs", "predict", "parameter_arrays", "assign_parameter_arrays", "init_cnn",
    "try_gpu", "gpu", "cpu", "num_gpus", "set_seed", "to_numpy", "synchronize", "strict_fp32",
)  # fmt: skip
MODEL_NAMES = ("Module", "Classifier", "NiN", "FashionMNIST")
BACKEND_MODULES = ("ops", "model", "trainer", "parallel", "launch")


def make_try_gpu(gpu: Callable, cpu: Callable, num_gpus: Callable) -> Callable:
    def try_gpu(i: int = 0):
        """d2l's: the i-th GPU if there is one, else the CPU."""
        return gpu(i) if num_gpus() >= i + 1 else cpu()

    return try_gpu


def make_layer_shapes(layer_outputs: Callable, layout: str) -> Callable:
    def layer_shapes(net, size: int, in_channels: int = 1) -> list[tuple[str, tuple]]:
        """(class name, output shape) of each top-level layer for one size x size image, in
        the backend's layout."""
        blank = input_from_nchw(np.zeros((1, in_channels, size, size), np.float32), layout)
        return [(name, tuple(a.shape)) for name, a in layer_outputs(net, blank)]

    return layer_shapes
