"""TensorFlow's primitives and devices (tf.keras, NHWC): what `spec.build` makes a network
from, and the d2l functions over a built network."""

from __future__ import annotations

import warnings

import numpy as np
import tensorflow as tf

from nin import spec as _spec
from nin.backends import common as _common

# memory growth: TensorFlow would otherwise take all of a GPU's memory at its first use, and
# PyTorch or MXNet in the same process would find none left
for _gpu in tf.config.list_physical_devices("GPU"):
    try:
        tf.config.experimental.set_memory_growth(_gpu, True)
    except RuntimeError:  # the GPU was already initialized by the caller: theirs
        pass

normal = tf.random.normal
LAYOUT = "NHWC"
KERNEL_LAYOUT = "HWIO"


def num_gpus():
    return len(tf.config.experimental.list_physical_devices("GPU"))


def synchronize() -> None:
    """Wait until all queued work is done (GPU kernels run asynchronously)."""
    if num_gpus():
        tf.test.experimental.sync_devices()


def gpu(i=0):
    return tf.device(f"/GPU:{i}")


def cpu():
    return tf.device("/CPU:0")


def strict_fp32() -> None:
    """Turn off TF32 and reduced-precision shortcuts (on GPUs), for numbers that can be
    compared across frameworks."""
    tf.config.experimental.enable_tensor_float_32_execution(False)


def set_seed(seed: int) -> None:
    """Seed TensorFlow's generators (weights, dropout)."""
    tf.keras.utils.set_random_seed(seed)


def to_numpy(x) -> np.ndarray:
    return np.asarray(tf.cast(x, tf.float32))


def keras_padding(kernel: int, stride: int, padding: int) -> str:
    """Integer padding -> Keras' 'valid' / 'same', refusing what would differ from torch/MXNet.

    'same' pads (k - 1) / 2 on each side only when stride is 1 and k is odd; with stride > 1
    Keras pads asymmetrically, so the outputs would not match the other frameworks.
    """
    if padding == 0:
        return "valid"
    if stride == 1 and kernel % 2 == 1 and padding == (kernel - 1) // 2:
        return "same"
    raise ValueError(
        f"TensorFlow cannot express padding={padding} for a {kernel}x{kernel} conv with stride "
        f"{stride} the way torch and MXNet do: Keras offers 'valid' (padding 0) and 'same' "
        f"(padding (k-1)/2, stride 1, odd k). Change the spec's padding to 0 or "
        f"{(kernel - 1) // 2} with stride 1."
    )


class Ops:
    """The primitives `spec.build` makes any spec from (`spec.PRIMITIVES`)."""

    @staticmethod
    def conv(out_channels, kernel, stride, padding, relu, in_channels):
        if not isinstance(padding, str):  # the spec's integers; a string is Keras' own
            padding = keras_padding(kernel, stride, padding)
        conv = tf.keras.layers.Conv2D(out_channels, kernel, strides=stride, padding=padding)
        return [conv, tf.keras.layers.Activation("relu")] if relu else [conv]

    @staticmethod
    def max_pool(size, stride):
        return tf.keras.layers.MaxPool2D(pool_size=size, strides=stride)

    @staticmethod
    def dropout(rate):
        # a tf.random.Generator behind the mask: its state can be saved and restored
        return tf.keras.layers.Dropout(rate, force_generator=True)

    @staticmethod
    def global_avg_pool():
        return tf.keras.layers.GlobalAvgPool2D()

    @staticmethod
    def flatten():
        return tf.keras.layers.Flatten()

    @staticmethod
    def dense(units, relu):
        return tf.keras.layers.Dense(units, activation="relu" if relu else None)

    @staticmethod
    def sequential(layers):
        return tf.keras.models.Sequential(layers)


OPS = Ops()


def nin_block(out_channels, kernel_size, strides, padding, *, num_1x1=2, relu="all"):
    """The chapter's block; `padding` is Keras' 'valid' / 'same', as the chapter writes it
    (passed to Keras as given), or an integer, as in the spec."""
    keras = isinstance(padding, str)
    block = _spec.NiNBlock(out_channels, kernel_size, strides, 0 if keras else padding, num_1x1,
                           relu)  # fmt: skip
    if not keras:
        return block.build(OPS, None)
    layers = []
    for i, conv in enumerate(block.convs):
        first = padding if i == 0 else conv.padding
        layers += OPS.conv(conv.out_channels, conv.kernel, conv.stride, first, conv.relu, None)
    return OPS.sequential(layers)


def build(spec: _spec.NetSpec) -> tf.keras.Sequential:
    """The network for `spec` (built on first call): one top-level layer per spec layer."""
    return _spec.build(spec, OPS)


def count_params(net) -> int:
    try:
        return int(sum(np.prod(w.shape) for w in _weights(net)))
    except ValueError:  # Keras creates weights on the first call
        raise ValueError(
            "the network has no weights yet: Keras builds them on the first "
            "call; run an input through it first, e.g. "
            "layer_shapes(net, 224)"
        ) from None


def layer_outputs(net, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(class name, output) of each top-level layer, in inference mode; x is NHWC."""
    X, out = tf.constant(np.asarray(x, np.float32)), []
    for layer in net.layers:
        X = layer(X, training=False)
        out.append((type(layer).__name__, to_numpy(X)))
    return out


try_gpu = _common.make_try_gpu(gpu, cpu, num_gpus)
layer_shapes = _common.make_layer_shapes(layer_outputs, LAYOUT)


def predict(model, x: np.ndarray) -> np.ndarray:
    """Logits for a NumPy batch in NHWC, in inference mode."""
    return to_numpy(model(tf.constant(np.asarray(x, np.float32)), training=False))


def parameter_arrays(net) -> list[np.ndarray]:
    """Every parameter in spec order, Keras layout (conv HWIO, dense in x out)."""
    return [w.numpy() for w in _weights(net)]


def assign_parameter_arrays(net, arrays) -> None:
    for w, a in zip(_weights(net), arrays):
        w.assign(a)


def _weights(net):
    # per top-level layer: a Sequential called layer by layer is not itself "built"
    return [w for layer in net.layers for w in layer.weights]


def init_cnn(module):
    """Keras' default (Glorot-uniform kernels, zero biases) is already d2l's init_cnn."""
    return module


def leaf_layers(layer):
    children = getattr(layer, "layers", None)
    if not children:
        return [layer]
    return [leaf for child in children for leaf in leaf_layers(child)]


def compute_in_bf16(net, on: bool = True) -> None:
    """Make every layer of `net` compute in bf16 with fp32 variables (Keras' mixed_bfloat16
    policy), or in fp32 (`on=False`, which also undoes an earlier call). Keras reads a variable
    in bf16 only when it was made under the mixed policy (it wraps it then), so a layer built
    before gets its variables made again under the new one, their values kept."""
    policy = tf.keras.mixed_precision.Policy("mixed_bfloat16" if on else "float32")
    for layer in leaf_layers(net):
        if layer.dtype_policy.name == policy.name:
            continue
        layer._set_dtype_policy(policy)
        if layer.built and layer.weights:
            values = layer.get_weights()
            layer._trainable_weights.clear()  # in place: Keras tracks a list assigned anew
            layer._non_trainable_weights.clear()
            layer.built = False
            with warnings.catch_warnings():  # "initializer called twice": values set below
                warnings.simplefilter("ignore", UserWarning)
                layer.build(layer._build_input_shape)
            layer.set_weights(values)
