"""The chapter's MXNet tab: `from nin.backends import mxnet as d2l` (NumPy mode, like d2l).

`ops` holds the primitives and devices, `model` d2l's Module, Classifier, NiN and
FashionMNIST, `trainer` the Trainer, `parallel` its data-parallel engine, `launch` how `nin
train` starts that engine on several devices or machines, `classic` the classic editions'
`train_ch6` and its friends (0.17, 2.0)."""

from __future__ import annotations

# first: AMX is opened, and the threads chosen (MXNet reads them at its import), before MXNet
# is imported
from nin.backends.mxnet import amx, threads  # noqa: F401

# isort: split
from nin.backends import common as _common
from nin.backends.mxnet import launch  # noqa: F401  (nin train's hook, not in __all__)
from nin.backends.mxnet.classic import *
from nin.backends.mxnet.model import *
from nin.backends.mxnet.ops import *
from nin.backends.mxnet.parallel import *
from nin.backends.mxnet.trainer import *

__all__ = [*_common.SURFACE, *_common.CLASSIC_SURFACE, "randn"]
