"""The chapter's JAX tab: `from nin.backends import jax as d2l` (Flax linen, NHWC).

`ops` holds the primitives and devices, `model` d2l's Module, Classifier, NiN and
FashionMNIST, `trainer` the Trainer, `parallel` its data-parallel hooks, `launch` how `nin
train` starts it."""

from __future__ import annotations

from nin.backends.jax.model import *
from nin.backends.jax.ops import *
