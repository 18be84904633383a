"""The chapter's JAX tab: `from nin.backends import jax as d2l` (Flax linen, NHWC).

`ops` holds the primitives and devices, `model` d2l's Module, Classifier, NiN and
FashionMNIST, `trainer` the Trainer, `parallel` its data-parallel hooks, `launch` how `nin
train` starts it."""

from __future__ import annotations

from nin.backends import common as _common
from nin.backends.jax import launch  # noqa: F401  (nin train's hook, not in __all__)
from nin.backends.jax.model import *
from nin.backends.jax.ops import *
from nin.backends.jax.parallel import *
from nin.backends.jax.trainer import *

__all__ = [*_common.SURFACE, "normal", "get_key"]
