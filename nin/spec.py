"""The NiN architecture as data: frozen dataclasses, shape inference and validation.

No framework is imported here. Every backend builds its network from a `NetSpec`, and
every number the library reports about a network (shapes, parameters, MACs) starts here.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator, Union

__all__ = [
    "Conv", "NiNBlock", "MaxPool", "Dropout", "GlobalAvgPool", "Flatten", "Dense",
    "Layer", "NetSpec", "LayerShape", "InputTooSmallError",
    "chapter_spec", "output_shapes", "min_input_size", "check_input_size",
    "conv_output_size", "layer_names", "with_class_block_relu", "class_block_relu", "spec_diff",
    "spec_to_dict",
    "spec_from_dict",
]


@dataclass(frozen=True)
class Conv:
    """One convolution followed by ReLU: `out_channels` filters of `kernel` x `kernel`."""
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0     # zeros added on each side, as an integer (torch/MXNet convention)
    relu: bool = True    # the chapter puts a ReLU after every conv, the last one included


@dataclass(frozen=True)
class NiNBlock:
    """The chapter's `nin_block`: a k x k conv, then `num_1x1` 1x1 convs, each with ReLU.

    `relu` says which convs get one: 'all' (the chapter), 'hidden' (all but the last) or
    'none' (a linear block, for the class-score block of the `nin` recipe).
    """
    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    num_1x1: int = 2     # the chapter uses two; exercise 1 varies it
    relu: str = "all"

    def __post_init__(self):
        if self.relu not in ("all", "hidden", "none"):
            raise ValueError(f"NiNBlock.relu must be 'all', 'hidden' or 'none', got {self.relu!r}")

    @property
    def convs(self) -> tuple[Conv, ...]:
        count = 1 + self.num_1x1
        relus = {"all": [True] * count, "hidden": [True] * (count - 1) + [False],
                 "none": [False] * count}[self.relu]
        sizes = [(self.kernel, self.stride, self.padding)] + [(1, 1, 0)] * self.num_1x1
        return tuple(Conv(self.out_channels, k, s, p, relu=r)
                     for (k, s, p), r in zip(sizes, relus))


@dataclass(frozen=True)
class MaxPool:
    """Max pooling over `size` x `size` windows, no padding (the chapter's 3, stride 2)."""
    size: int = 3
    stride: int = 2


@dataclass(frozen=True)
class Dropout:
    rate: float = 0.5


@dataclass(frozen=True)
class GlobalAvgPool:
    """Mean over all spatial positions: C x H x W -> C x 1 x 1."""


@dataclass(frozen=True)
class Flatten:
    """C x H x W -> C*H*W. After global average pooling this gives the logits."""


@dataclass(frozen=True)
class Dense:
    """A fully connected layer, for the dense heads of exercise 2; ReLU unless it is the last."""
    units: int
    relu: bool = True


Layer = Union[NiNBlock, MaxPool, Dropout, GlobalAvgPool, Flatten, Dense]
_KINDS = {cls.__name__: cls for cls in (NiNBlock, MaxPool, Dropout, GlobalAvgPool, Flatten, Dense)}


@dataclass(frozen=True)
class NetSpec:
    """A whole network: the top-level layers in order, plus its input and output sizes."""
    layers: tuple
    num_classes: int = 10
    in_channels: int = 1
    name: str = "nin"

    def __post_init__(self):
        if self.num_classes < 1 or self.in_channels < 1:
            raise ValueError(f"num_classes and in_channels must be >= 1, got "
                             f"{self.num_classes} and {self.in_channels}")
        for layer in self.layers:
            if type(layer).__name__ not in _KINDS:
                raise TypeError(f"{layer!r} is not a spec layer; use one of {sorted(_KINDS)}")

    def replace(self, **changes) -> "NetSpec":
        return dataclasses.replace(self, **changes)


def chapter_spec(num_classes: int = 10, in_channels: int = 1) -> NetSpec:
    """The chapter's NiN: blocks of 96/256/384/num_classes channels, kernels 11/5/3/3."""
    return NetSpec(
        layers=(
            NiNBlock(96, kernel=11, stride=4, padding=0),
            MaxPool(3, 2),
            NiNBlock(256, kernel=5, stride=1, padding=2),
            MaxPool(3, 2),
            NiNBlock(384, kernel=3, stride=1, padding=1),
            MaxPool(3, 2),
            Dropout(0.5),
            NiNBlock(num_classes, kernel=3, stride=1, padding=1),
            GlobalAvgPool(),
            Flatten(),
        ),
        num_classes=num_classes, in_channels=in_channels, name="nin")


class InputTooSmallError(ValueError):
    """The input image is smaller than the network can take: some layer would output nothing."""


@dataclass(frozen=True)
class LayerShape:
    """One top-level layer's output: `shape` is (C, H, W) for maps, (features,) after Flatten."""
    name: str
    kind: str
    shape: tuple


def conv_output_size(size: int, kernel: int, stride: int, padding: int = 0) -> int:
    """floor((size + 2 * padding - kernel) / stride) + 1: the rounding every framework uses."""
    return (size + 2 * padding - kernel) // stride + 1


def layer_names(spec: NetSpec) -> list[str]:
    """Stable names for the top-level layers, e.g. 'block1', 'pool1', 'dropout1', 'gap'."""
    counts: dict[str, int] = {}
    names = []
    short = {"NiNBlock": "block", "MaxPool": "pool", "Dropout": "dropout",
             "GlobalAvgPool": "gap", "Flatten": "flatten", "Dense": "dense"}
    for layer in spec.layers:
        base = short[type(layer).__name__]
        counts[base] = counts.get(base, 0) + 1
        names.append(base + str(counts[base]))
    return names


def _walk(spec: NetSpec, height: int, width: int) -> Iterator[tuple[str, object, tuple]]:
    """Yield (name, layer, output shape); a size below 1 is yielded as computed, not raised."""
    c, h, w = spec.in_channels, height, width
    flat = None
    for name, layer in zip(layer_names(spec), spec.layers):
        if isinstance(layer, NiNBlock):
            for conv in layer.convs:
                h = conv_output_size(h, conv.kernel, conv.stride, conv.padding)
                w = conv_output_size(w, conv.kernel, conv.stride, conv.padding)
            c = layer.out_channels
        elif isinstance(layer, MaxPool):
            h = conv_output_size(h, layer.size, layer.stride)
            w = conv_output_size(w, layer.size, layer.stride)
        elif isinstance(layer, GlobalAvgPool):
            h = w = 1 if min(h, w) >= 1 else min(h, w)
        elif isinstance(layer, Flatten):
            flat = c * h * w
        elif isinstance(layer, Dense):
            if flat is None:
                raise ValueError(f"{name}: a Dense layer needs a Flatten before it")
            flat = layer.units
        yield name, layer, ((flat,) if flat is not None else (c, h, w))


def min_input_size(spec: NetSpec) -> int:
    """The smallest square input for which every layer outputs at least 1 x 1 (67 for NiN)."""
    lo, hi = 1, 1
    while not _fits(spec, hi, hi):
        hi *= 2
        if hi > 1 << 16:
            raise ValueError(f"spec {spec.name!r} fits no input up to {hi} pixels")
    while lo < hi:  # output sizes grow with the input, so bisect
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if _fits(spec, mid, mid) else (mid + 1, hi)
    return lo


def _fits(spec: NetSpec, height: int, width: int) -> bool:
    return all(min(shape[-2:]) >= 1 if len(shape) == 3 else True
               for _, _, shape in _walk(spec, height, width))


def check_input_size(spec: NetSpec, height: int, width: int | None = None,
                     flag: str = "--size") -> None:
    """Raise InputTooSmallError naming the size given and the minimum, before any framework
    runs; `flag` is the option the caller sets the size with (the message names it)."""
    width = height if width is None else width
    if height < 1 or width < 1:
        raise InputTooSmallError(f"input size must be positive, got {height}x{width}")
    for name, _, shape in _walk(spec, height, width):
        if len(shape) == 3 and min(shape[1:]) < 1:
            least = min_input_size(spec)
            raise InputTooSmallError(
                f"input {height}x{width} is too small for {spec.name!r}: layer {name} would "
                f"output {shape[1]}x{shape[2]}. The minimum is {least}x{least}; "
                f"resize the images to at least that (e.g. {flag} {least}).")


def output_shapes(spec: NetSpec, height: int, width: int | None = None) -> list[LayerShape]:
    """Every top-level layer's output shape for one image, NCHW without the batch dimension."""
    width = height if width is None else width
    check_input_size(spec, height, width)
    return [LayerShape(name, type(layer).__name__, shape)
            for name, layer, shape in _walk(spec, height, width)]


def with_class_block_relu(spec: NetSpec, relu: str) -> NetSpec:
    """The same network with the class-score block's ReLUs set to `relu` ('all', 'hidden',
    'none'). The class block is the NiN block feeding global average pooling; a spec
    without one (a dense head) is returned unchanged."""
    layers = list(spec.layers)
    for i, layer in enumerate(layers):
        if isinstance(layer, GlobalAvgPool) and i and isinstance(layers[i - 1], NiNBlock):
            layers[i - 1] = dataclasses.replace(layers[i - 1], relu=relu)
    return spec.replace(layers=tuple(layers))


def class_block_relu(spec: NetSpec) -> str | None:
    """The `relu` of the class-score block (the NiN block feeding global average pooling);
    None for a spec without one (a dense head)."""
    for i, layer in enumerate(spec.layers):
        if isinstance(layer, GlobalAvgPool) and i and isinstance(spec.layers[i - 1], NiNBlock):
            return spec.layers[i - 1].relu
    return None


def spec_diff(a: NetSpec, b: NetSpec) -> list[str]:
    """What differs between two specs, one phrase per field: 'num_classes 10 vs 5',
    'block4 relu none vs all'. Empty when they are equal."""
    out = [f"{f} {getattr(a, f)!r} vs {getattr(b, f)!r}" for f in
           ("name", "num_classes", "in_channels") if getattr(a, f) != getattr(b, f)]
    if len(a.layers) != len(b.layers):
        out.append(f"{len(a.layers)} layers vs {len(b.layers)}")
    names = layer_names(a)
    for name, x, y in zip(names, a.layers, b.layers):
        if type(x) is not type(y):
            out.append(f"{name} {type(x).__name__} vs {type(y).__name__}")
            continue
        for f in dataclasses.fields(x):
            if getattr(x, f.name) != getattr(y, f.name):
                out.append(f"{name} {f.name} {getattr(x, f.name)!r} vs {getattr(y, f.name)!r}")
    return out


def spec_to_dict(spec: NetSpec) -> dict:
    """A JSON-ready description, stored in weight files and checkpoints to recognize the spec."""
    return {"name": spec.name, "num_classes": spec.num_classes, "in_channels": spec.in_channels,
            "layers": [{"kind": type(layer).__name__, **dataclasses.asdict(layer)}
                       for layer in spec.layers]}


def spec_from_dict(data: dict) -> NetSpec:
    layers = []
    for entry in data["layers"]:
        entry = dict(entry)
        layers.append(_KINDS[entry.pop("kind")](**entry))
    return NetSpec(tuple(layers), num_classes=data["num_classes"],
                   in_channels=data["in_channels"], name=data["name"])
