"""The chapter's TensorFlow tab: `from nin.backends import tensorflow as d2l` (tf.keras, NHWC).

`ops` holds the primitives and devices, `model` d2l's Module, Classifier, NiN and
FashionMNIST, `trainer` the Trainer, `parallel` its data-parallel engine, `launch` how `nin
train` starts that engine on several devices or machines, `classic` the classic editions'
`train_ch6` and its friends (0.17, 2.0)."""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before TensorFlow's import: a quiet start

from nin.backends import common as _common
from nin.backends.tensorflow import launch  # noqa: F401  (nin train's hook, not in __all__)
from nin.backends.tensorflow.classic import *
from nin.backends.tensorflow.model import *
from nin.backends.tensorflow.ops import *
from nin.backends.tensorflow.parallel import *
from nin.backends.tensorflow.trainer import *

__all__ = [*_common.SURFACE, *_common.CLASSIC_SURFACE, "normal"]
