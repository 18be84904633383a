"""JAX's primitives and devices (Flax linen, NHWC, HWIO kernels): what `spec.build` makes a
network from, and the d2l functions over a built network.

A Flax module holds no weights: `build` returns a `Net`, the module with its variables
(created on its first call, as a lazy layer is), so that a network here is what it is in the
other tabs, a callable that holds its weights. Random numbers come from one key stream that
`set_seed` restarts (`get_key` draws the next key), since JAX has no global generator.

Nothing here starts JAX's runtime at import: `--xla_force_host_platform_device_count` (CPU
replicas for data parallelism) is read when the first array is made.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from flax import linen as nn
from jax import numpy as jnp

from nin import spec as _spec
from nin.backends import common as _common

LAYOUT = "NHWC"
KERNEL_LAYOUT = "HWIO"


class _KeyStream:
    """JAX's keys as a stream: `set_seed(s)` restarts it, each `get_key()` splits off a
    fresh key (a global generator, where JAX keeps none)."""

    def __init__(self, seed: int = 0):
        self.seed(seed)

    def seed(self, seed: int) -> None:
        self._seed, self._key = int(seed), None  # made on the first draw: no runtime at import

    def next(self):
        if self._key is None:
            self._key = jax.random.PRNGKey(self._seed)
        self._key, key = jax.random.split(self._key)
        return key


_KEYS = _KeyStream()


def get_key():
    """d2l's `get_key`: a fresh PRNG key, the next of the stream `set_seed` starts."""
    return _KEYS.next()


def set_seed(seed: int) -> None:
    """Restart the key stream (weights, dropout masks, `normal`)."""
    _KEYS.seed(seed)


def normal(shape, key=None):
    """Standard normal numbers of `shape` (float32), from `key` or the next key of the
    stream: the tab's `jax.random.normal(d2l.get_key(), shape)`."""
    return jax.random.normal(get_key() if key is None else key, tuple(shape), jnp.float32)


def cpu():
    return jax.devices("cpu")[0]


def gpu(i=0):
    return jax.devices("gpu")[i]


def num_gpus():
    try:
        return jax.device_count("gpu")
    except RuntimeError:  # no GPU backend in this jaxlib
        return 0


def synchronize() -> None:
    """Wait until all queued work is done: XLA runs a device's work in order, so the end of
    one more computation is the end of all before it."""
    (jnp.zeros(()) + 0).block_until_ready()


def strict_fp32() -> None:
    """Full fp32 matrix products and convolutions (no TF32 on GPUs), for numbers that can be
    compared across frameworks."""
    jax.config.update("jax_default_matmul_precision", "highest")


def to_numpy(x) -> np.ndarray:
    return np.asarray(jnp.asarray(x, jnp.float32))


class MaxPool(nn.Module):
    """Max pooling over `size` x `size` windows, no padding (the tab's `nn.max_pool`)."""

    size: int
    stride: int

    def __call__(self, X):
        return nn.max_pool(X, (self.size, self.size), strides=(self.stride, self.stride))


class GlobalAvgPool(nn.Module):
    """The mean over every position: N x H x W x C -> N x 1 x 1 x C (the tab's `avg_pool`
    over the whole 5 x 5 map, for any map size)."""

    def __call__(self, X):
        return jnp.mean(X, axis=(1, 2), keepdims=True)


class Flatten(nn.Module):
    """N x ... -> N x features, in the H, W, C order of NHWC (as Keras flattens)."""

    def __call__(self, X):
        return X.reshape((X.shape[0], -1))


class Ops:
    """The primitives `spec.build` makes any spec from (`spec.PRIMITIVES`). `training`
    says whether dropout drops (Flax fixes it when the module is made, as the tab's
    `deterministic=not self.training` does); `dtype` is what convs and dense layers compute
    in (None: their inputs' and weights', fp32; 'bfloat16' on the fast path, the weights
    kept in fp32)."""

    def __init__(self, training: bool = False, dtype=None):
        self.training, self.dtype = training, dtype

    def conv(self, out_channels, kernel, stride, padding, relu, in_channels):
        """A conv (its input channels found on the first call) and its ReLU; integer padding
        on each side, as torch and MXNet pad."""
        conv = nn.Conv(
            out_channels,
            (kernel, kernel),
            strides=(stride, stride),
            padding=((padding, padding), (padding, padding)),
            dtype=self.dtype,
        )
        return [conv, nn.relu] if relu else [conv]

    @staticmethod
    def max_pool(size, stride):
        return MaxPool(size, stride)

    def dropout(self, rate):
        return nn.Dropout(rate, deterministic=not self.training)

    @staticmethod
    def global_avg_pool():
        return GlobalAvgPool()

    @staticmethod
    def flatten():
        return Flatten()

    def dense(self, units, relu):
        dense = nn.Dense(units, dtype=self.dtype)
        return nn.Sequential([dense, nn.relu]) if relu else dense

    @staticmethod
    def sequential(layers):
        return nn.Sequential(layers)


OPS = Ops()


class Net:
    """A Flax module with its variables: nin's network in this tab. `module` is the
    definition (an `nn.Sequential`, inference mode), `variables` its `{'params': ...}`,
    made on the first call from the key stream (None until then). Calling it runs the
    module in inference mode."""

    def __init__(self, module: nn.Module):
        self.module = module
        self.variables: dict | None = None

    @property
    def layers(self) -> list:
        return list(self.module.layers)

    @property
    def params(self) -> dict:
        if self.variables is None:
            raise ValueError(
                "the network has no weights yet: Flax makes them on the first call; run an "
                "input through it first, e.g. layer_shapes(net, 224)"
            )
        return self.variables["params"]

    def materialize(self, X, init: str = "xavier") -> None:
        """Make the weights for inputs like `X`, if there are none yet (`drawn`)."""
        if self.variables is None:
            shapes = jax.eval_shape(self.module.init, get_key(), X)["params"]
            self.variables = {"params": drawn(shapes, get_key(), init)}

    def __call__(self, X):
        X = jnp.asarray(X, jnp.float32)
        self.materialize(X)
        return self.module.apply(self.variables, X)


def drawn(params, key, init: str = "xavier") -> dict:
    """Weights for a tree of parameters (or of their shapes): every kernel drawn from `init`
    with the NumPy generator `key` seeds, every bias zero. 'xavier': uniform in +-sqrt(6 /
    (fan_in + fan_out)) (Glorot's, Keras' default, the book's); 'kaiming': normal with std
    sqrt(2 / fan_in) (He's, as PyTorch's kaiming_normal_). Fans of an HWIO kernel: fan_in =
    H W I, fan_out = H W O. Drawn in NumPy: JAX would compile a program per kernel shape."""
    if init not in ("xavier", "kaiming"):
        raise ValueError(f"init must be 'xavier' or 'kaiming', got {init!r}")
    rng = np.random.default_rng(np.asarray(jax.random.key_data(key)))

    def draw(path, leaf):
        shape = tuple(leaf.shape)
        if not jax.tree_util.keystr(path).endswith("['kernel']"):
            return jnp.zeros(shape, jnp.float32)
        receptive = int(np.prod(shape[:-2]))
        fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
        if init == "xavier":
            bound = np.sqrt(6.0 / (fan_in + fan_out))
            values = rng.uniform(-bound, bound, shape)
        else:
            values = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        return jnp.asarray(values, jnp.float32)

    return jax.tree_util.tree_map_with_path(draw, params)


def build_module(spec: _spec.NetSpec, training: bool = False, dtype=None) -> nn.Sequential:
    """The Flax definition for `spec`: one top-level layer per spec layer, at the positions
    of the tab's `nn.Sequential` (so its parameters have the tab's names)."""
    return _spec.build(spec, Ops(training, dtype))


def build(spec: _spec.NetSpec) -> Net:
    """The network for `spec` (weights made on the first call): one top-level layer per
    spec layer."""
    return Net(build_module(spec))


def nin_block(out_channels, kernel_size, strides, padding, *, num_1x1=2, relu="all"):
    """The chapter's block, weights made on its first call; integer padding on each side
    (the spec's), or Flax's own ((2, 2), 'SAME', ...) as the tab writes it."""
    if isinstance(padding, int):
        block = _spec.NiNBlock(out_channels, kernel_size, strides, padding, num_1x1, relu)
        return Net(block.build(OPS, None))
    layers = []
    block = _spec.NiNBlock(out_channels, kernel_size, strides, 0, num_1x1, relu)
    for i, conv in enumerate(block.convs):
        pad = padding if i == 0 else "VALID"
        k, s = (conv.kernel, conv.kernel), (conv.stride, conv.stride)
        layers += [nn.Conv(conv.out_channels, k, strides=s, padding=pad)]
        layers += [nn.relu] if conv.relu else []
    return Net(nn.Sequential(layers))


def ordered_leaves(params) -> list:
    """A parameter tree's arrays in spec order: the layers by position (`layers_<i>`), each
    layer's kernel before its bias (Flax's dicts sort 'bias' first, and 'layers_10' before
    'layers_2')."""
    if "kernel" in params:
        return [params["kernel"]] + ([params["bias"]] if "bias" in params else [])
    keys = sorted(params, key=lambda k: int(k.rsplit("_", 1)[1]))
    return [leaf for k in keys for leaf in ordered_leaves(params[k])]


def _replaced(params, arrays: list):
    """`params` with its leaves, in `ordered_leaves` order, replaced by `arrays` (consumed)."""
    if "kernel" in params:
        out = {"kernel": jnp.asarray(arrays.pop(0), jnp.float32)}
        if "bias" in params:
            out["bias"] = jnp.asarray(arrays.pop(0), jnp.float32)
        return out
    keys = sorted(params, key=lambda k: int(k.rsplit("_", 1)[1]))
    return {k: _replaced(params[k], arrays) for k in keys}


def count_params(net) -> int:
    return int(sum(np.prod(a.shape) for a in jax.tree_util.tree_leaves(_net(net).params)))


def _net(net) -> Net:
    """The `Net` of a network or of a model that holds one (nin's `NiN`)."""
    if isinstance(net, Net):
        return net
    held = getattr(net, "__dict__", {}).get("net")
    if isinstance(held, Net):
        return held
    raise TypeError(
        f"{type(net).__name__} holds no weights: a Flax module keeps them apart; pass a "
        f"network from `build` or `nin_block`, or nin's `NiN`"
    )


def layer_outputs(net, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(class name, output) of each top-level layer, in inference mode; x is NHWC."""
    net = _net(net)
    X: Any = jnp.asarray(np.asarray(x, np.float32))
    out = []
    net.materialize(X)
    params = net.params
    for i, layer in enumerate(net.layers):
        if isinstance(layer, nn.Module):
            own = params.get(f"layers_{i}")
            X = layer.apply({"params": own} if own else {}, X)
        else:  # a function, as the tab's lambdas
            X = layer(X)
        out.append((type(layer).__name__, to_numpy(X)))
    return out


try_gpu = _common.make_try_gpu(gpu, cpu, num_gpus)
layer_shapes = _common.make_layer_shapes(layer_outputs, LAYOUT)


def predict(model, x: np.ndarray, params=None) -> np.ndarray:
    """Logits for a NumPy batch in NHWC, in inference mode: of a network (`build`), or of a
    model with its weights (nin's `NiN`, or any d2l Module given `params`, e.g.
    `trainer.state.params`)."""
    X = jnp.asarray(np.asarray(x, np.float32))
    if isinstance(model, Net):
        return to_numpy(model(X))
    return to_numpy(model._infer(X, params))


def parameter_arrays(net) -> list[np.ndarray]:
    """Every parameter in spec order, Flax layout (conv HWIO, dense in x out)."""
    return [np.asarray(a) for a in ordered_leaves(_net(net).params)]


def assign_parameter_arrays(net, arrays) -> None:
    net = _net(net)
    net.variables = {"params": _replaced(net.params, list(arrays))}


def init_cnn(module):
    """Flax sets initializers on the layers (`kernel_init`); the tab keeps Flax's defaults,
    so d2l's `init_cnn` changes nothing here (nin's `NiN` draws its recipe's init)."""
    return module
