"""MXNet's primitives and devices (Gluon, NumPy mode like d2l): what `spec.build` makes a
network from, the d2l functions over a built network, and the bf16 convolutions of the fast
path."""

from __future__ import annotations

import functools
import os

import mxnet as mx
import numpy as onp
from mxnet import init, np, npx
from mxnet.contrib.amp.amp import bfloat16
from mxnet.gluon import nn

from nin import spec as _spec
from nin.backends import common as _common
from nin.backends.mxnet import amx, threads

threads.release()  # MXNet has read its threads at its import
npx.set_np()
if amx.STATE in ("on", "late"):  # oneDNN reads its cap at its first operator and keeps it:
    one = np.ones((1, 1, 1, 1))  # read it now, then take nin's cap out of the environment,
    npx.convolution(one, one, kernel=(1, 1), num_filter=1, no_bias=True).wait_to_read()
    amx.release()  # so that child processes, which have no tiles, do not inherit it

randn = np.random.randn
LAYOUT = "NCHW"
KERNEL_LAYOUT = "OIHW"
cpu, gpu = mx.cpu, mx.gpu


def num_gpus():
    return npx.num_gpus()


def synchronize() -> None:
    """Wait until MXNet's engine has run every queued operation: reading a loss waits only
    for the forward pass, while the backward pass and the update may still be running."""
    npx.waitall()


def strict_fp32() -> None:
    """Turn off TF32 and reduced-precision shortcuts (on GPUs), for numbers that can be
    compared across frameworks."""
    os.environ["MXNET_CUDA_ALLOW_TENSOR_CORE"] = "0"  # read by MXNet's GPU kernels


def set_seed(seed: int) -> None:
    """Seed MXNet's and NumPy's generators (weights, dropout)."""
    mx.random.seed(seed)
    onp.random.seed(seed)


def to_numpy(x) -> onp.ndarray:
    return x.asnumpy().astype(onp.float32, copy=False)


class Ops:
    """The primitives `spec.build` makes any spec from (`spec.PRIMITIVES`); the ReLU inside
    each Conv2D, as the chapter's MXNet tab writes it."""

    @staticmethod
    def conv(out_channels, kernel, stride, padding, relu, in_channels):
        return [
            nn.Conv2D(
                out_channels,
                kernel,
                stride,
                padding,
                activation="relu" if relu else None,
                in_channels=in_channels or 0,
            )
        ]

    @staticmethod
    def max_pool(size, stride):
        return nn.MaxPool2D(pool_size=size, strides=stride)

    @staticmethod
    def dropout(rate):
        return nn.Dropout(rate)

    @staticmethod
    def global_avg_pool():
        return nn.GlobalAvgPool2D()

    @staticmethod
    def flatten():
        return nn.Flatten()

    @staticmethod
    def dense(units, relu):
        return nn.Dense(units, activation="relu" if relu else None)

    @staticmethod
    def sequential(layers):
        net = nn.HybridSequential()
        net.add(*layers)
        return net


OPS = Ops()


def nin_block(num_channels, kernel_size, strides, padding, *, in_channels=0, num_1x1=2, relu="all"):
    """The chapter's block: ReLU inside each Conv2D, as the chapter writes it."""
    block = _spec.NiNBlock(num_channels, kernel_size, strides, padding, num_1x1, relu)
    return block.build(OPS, (in_channels,) if in_channels else None)


def build(spec: _spec.NetSpec) -> nn.HybridSequential:
    """The network for `spec` (not yet initialized): one top-level layer per spec layer."""
    return _spec.build(spec, OPS)


def count_params(net) -> int:
    _ensure_initialized(net)
    return sum(p.list_data()[0].size for p in net.collect_params().values())


def layer_outputs(net, x: onp.ndarray) -> list[tuple[str, onp.ndarray]]:
    """(class name, output) of each top-level layer, in inference mode and fp32; x is NCHW."""
    _ensure_initialized(net)
    X, out = np.array(x, dtype="float32", ctx=_ctx_of(net)), []
    for layer in net:
        X = layer(X)
        out.append((type(layer).__name__, to_numpy(X)))
    return out


try_gpu = _common.make_try_gpu(gpu, cpu, num_gpus)
layer_shapes = _common.make_layer_shapes(layer_outputs, LAYOUT)


def predict(model, x: onp.ndarray) -> onp.ndarray:
    """Logits for a NumPy batch in NCHW (outside autograd.record: inference mode)."""
    return to_numpy(model(np.array(x, dtype="float32", ctx=_ctx_of(model))))


def parameter_arrays(net) -> list[onp.ndarray]:
    """Every parameter in spec order, Gluon layout (conv OIHW, dense out x in)."""
    _ensure_initialized(net)
    return [p.list_data()[0].asnumpy() for p in net.collect_params().values()]


def assign_parameter_arrays(net, arrays) -> None:
    for p, a in zip(net.collect_params().values(), arrays):
        p.set_data(np.array(a, ctx=p.list_ctx()[0]))


def _ctx_of(net):
    params = [p for p in net.collect_params().values() if p._data is not None]
    return params[0].list_ctx()[0] if params else cpu()


def _ensure_initialized(net, initializer=None):
    if any(p._data is None and p._deferred_init == () for p in net.collect_params().values()):
        net.initialize(initializer or init.Xavier())


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)


def _cast(F, x, dtype):
    """amp_cast is a legacy operator: apply it to the NDArray view, then back to NumPy mode."""
    return F.amp_cast(x.as_nd_ndarray(), dtype=dtype).as_np_ndarray()


def _bf16_convolution(conv, F, x, weight, bias=None):
    low = [_cast(F, a, bfloat16) for a in (x, weight, bias) if a is not None]
    y = _cast(F, F.npx.convolution(*low, name="fwd", **conv._kwargs), "float32")
    return conv.act(y) if conv.act is not None else y


def convolutions_in_bf16(net, on: bool = True) -> int:
    """Make every Conv2D in `net` compute in bf16 (oneDNN) with fp32 weights, gradients and
    activations around it, or back in fp32 (`on=False`): MXNet's AMP lists do not cover
    NumPy-mode operators, so the casts are put in here. Call before `hybridize`. Returns the
    number of convolutions set."""
    convs = [b for b in _blocks(net) if isinstance(b, nn.Conv2D)]
    for conv in convs:
        if on:
            conv.hybrid_forward = functools.partial(_bf16_convolution, conv)
        else:
            vars(conv).pop("hybrid_forward", None)  # the class's fp32 forward again
    return len(convs)


def ordered_params(block) -> list:
    """The block's parameters in structural order (`net.0.0.weight`, ...). gluon.Trainer sorts
    a ParameterDict by global names (conv0, conv10, conv2, ...), which differ between two
    instances of one model in a process, so saved optimizer state would land on the wrong
    parameters; a list keeps the order the checkpoint was written in."""
    return list(block._collect_params_with_prefix().values())


def init_cnn(module):
    """Xavier initialization, as the chapter's MXNet tab uses (`net.initialize(init.Xavier())`)."""
    module.initialize(init.Xavier(), force_reinit=True)
