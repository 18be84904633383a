"""PyTorch's primitives and devices: what `spec.build` makes a network from, and the d2l
functions over a built network (shapes, parameters, predictions)."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from nin import spec as _spec
from nin.backends import common as _common

randn = torch.randn
LAYOUT = "NCHW"
KERNEL_LAYOUT = "OIHW"


def cpu():
    return torch.device("cpu")


def gpu(i=0):
    return torch.device(f"cuda:{i}")


def num_gpus():
    return torch.cuda.device_count()


def synchronize() -> None:
    """Wait until all queued work is done (CUDA runs asynchronously; the CPU does not)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def strict_fp32() -> None:
    """Turn off TF32 and reduced-precision shortcuts (on GPUs), for numbers that can be
    compared across frameworks."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def set_seed(seed: int) -> None:
    """Seed PyTorch's generators (weights, dropout)."""
    torch.manual_seed(seed)


def to_numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class Ops:
    """The primitives `spec.build` makes any spec from (`spec.PRIMITIVES`)."""

    @staticmethod
    def conv(out_channels, kernel, stride, padding, relu, in_channels):
        conv = (
            nn.LazyConv2d(out_channels, kernel, stride, padding)
            if in_channels is None
            else nn.Conv2d(in_channels, out_channels, kernel, stride, padding)
        )
        return [conv, nn.ReLU()] if relu else [conv]

    @staticmethod
    def max_pool(size, stride):
        return nn.MaxPool2d(size, stride=stride)

    @staticmethod
    def dropout(rate):
        return nn.Dropout(rate)

    @staticmethod
    def global_avg_pool():
        return nn.AdaptiveAvgPool2d((1, 1))

    @staticmethod
    def flatten():
        return nn.Flatten()

    @staticmethod
    def dense(units, relu):
        dense = nn.LazyLinear(units)
        return nn.Sequential(dense, nn.ReLU()) if relu else dense

    @staticmethod
    def sequential(layers):
        return nn.Sequential(*layers)


OPS = Ops()


def nin_block(
    out_channels, kernel_size, strides, padding, *, in_channels=None, num_1x1=2, relu="all"
):
    """The chapter's block; lazy convs like the chapter unless `in_channels` is given."""
    block = _spec.NiNBlock(out_channels, kernel_size, strides, padding, num_1x1, relu)
    return block.build(OPS, None if in_channels is None else (in_channels,))


def build(spec: _spec.NetSpec) -> nn.Sequential:
    """The network for `spec`: one top-level layer per spec layer, as in the chapter."""
    return _spec.build(spec, OPS)


def count_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def layer_outputs(net, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(class name, output) of each top-level layer, in inference mode and fp32; x is NCHW."""
    was_training, out = net.training, []
    net.eval()
    X = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(_device_of(net))
    with torch.no_grad():
        for layer in net:
            X = layer(X)
            out.append((type(layer).__name__, to_numpy(X)))
    net.train(was_training)
    return out


try_gpu = _common.make_try_gpu(gpu, cpu, num_gpus)
layer_shapes = _common.make_layer_shapes(layer_outputs, LAYOUT)


def predict(model, x: np.ndarray) -> np.ndarray:
    """Logits for a NumPy batch in NCHW, in inference mode and fp32."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(_device_of(model)))
    model.train(was_training)
    return to_numpy(logits)


def parameter_arrays(net) -> list[np.ndarray]:
    """Every parameter in spec order, torch layout (conv OIHW, linear out x in)."""
    return [to_numpy(p) for p in net.parameters()]


def assign_parameter_arrays(net, arrays) -> None:
    with torch.no_grad():
        for p, a in zip(net.parameters(), arrays):
            p.copy_(torch.from_numpy(a))


def _device_of(net):
    return next(net.parameters()).device


def init_cnn(module):
    """d2l's init_cnn: Xavier-uniform weights for Linear and Conv2d layers."""
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)


def init_kaiming(module):
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        nn.init.zeros_(module.bias)
