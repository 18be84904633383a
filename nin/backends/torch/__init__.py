"""The chapter's PyTorch tab: `from nin.backends import torch as d2l`.

`ops` holds the primitives and devices, `model` d2l's Module, Classifier, NiN and
FashionMNIST, `trainer` the Trainer, `parallel` its data-parallel engine, `launch` how `nin
train` starts that engine on several devices or machines, `classic` the classic editions'
`train_ch6` and its friends (0.17, 2.0)."""

from __future__ import annotations

from nin.backends import common as _common
from nin.backends.torch import launch  # noqa: F401  (nin train's hook, not in __all__)
from nin.backends.torch.classic import *
from nin.backends.torch.model import *
from nin.backends.torch.ops import *
from nin.backends.torch.parallel import *
from nin.backends.torch.trainer import *

__all__ = [*_common.SURFACE, *_common.CLASSIC_SURFACE, "randn"]
