"""The NiN architecture as data: frozen dataclasses, shape inference and validation.

No framework is imported here. Every backend builds its network from a `NetSpec`, and
every number the library reports about a network (shapes, parameters, MACs) starts here.

Each layer kind is one dataclass that declares, in one place, everything the library knows
about it: `output_shape`, `cost` (parameters, multiply-accumulates, memory), `weights` (the
canonical names, shapes and layout kinds of its parameters) and `build` (the network layer,
made from a backend's primitives, `PRIMITIVES`). `walk` goes over a spec once with them;
shapes, `nin.resources`, `nin.weights` and every backend's `build` use that walk.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from math import prod
from typing import Iterator, NamedTuple, Union

from nin.errors import Message, arg

Shape = tuple  # (C, H, W) for feature maps, (features,) after Flatten; no batch dimension

# what each backend supplies to build any spec: same names, same arguments, in every backend
PRIMITIVES = {
    "conv": "conv(out_channels, kernel, stride, padding, relu, in_channels) -> list of layers "
    "(in_channels None: inferred on the first call)",
    "max_pool": "max_pool(size, stride) -> layer",
    "dropout": "dropout(rate) -> layer",
    "global_avg_pool": "global_avg_pool() -> layer",
    "flatten": "flatten() -> layer",
    "dense": "dense(units, relu) -> layer",
    "sequential": "sequential(layers) -> container layer",
}


class Cost(NamedTuple):
    """What one layer costs per image; `nin.resources` adds these up."""

    params: int = 0
    macs: int = 0  # conv and dense multiply-accumulates
    pool_ops: int = 0  # comparisons (max) or additions (average)
    relu_ops: int = 0  # ReLU evaluations
    op_outputs: tuple = ()  # elements of each op's output inside the layer
    kept: int = 0  # elements kept for the backward pass


class Weight(NamedTuple):
    """One parameter in the canonical format: `kind` says its layout ('conv': OIHW, 'dense':
    out x in, 'bias'); `flattened` is the (C, H, W) a dense layer right after Flatten reads,
    whose input order a channels-last backend differs in."""

    name: str
    shape: tuple
    kind: str
    flattened: tuple | None = None


__all__ = [
    "Conv",
    "NiNBlock",
    "MaxPool",
    "Dropout",
    "GlobalAvgPool",
    "Flatten",
    "Dense",
    "Layer",
    "LayerKind",
    "NetSpec",
    "LayerShape",
    "InputTooSmallError",
    "Cost",
    "Weight",
    "Step",
    "PRIMITIVES",
    "walk",
    "build",
    "weight_table",
    "chapter_spec",
    "output_shapes",
    "min_input_size",
    "check_input_size",
    "conv_output_size",
    "layer_names",
    "with_class_block_relu",
    "class_block_relu",
    "spec_diff",
    "spec_to_dict",
    "spec_from_dict",
]


class LayerKind:
    """What every layer kind declares (each dataclass below overrides these): its output shape
    for an input shape, its cost per image, its parameters in the canonical format, and how a
    backend builds it from primitives. A kind without parameters keeps `weights` as it is."""

    def output_shape(self, shape: Shape) -> Shape:
        raise NotImplementedError

    def cost(self, shape: Shape) -> Cost:
        raise NotImplementedError

    def weights(self, name: str, shape: Shape, before: Shape | None = None) -> list[Weight]:
        return []

    def build(self, ops, shape: Shape | None):
        raise NotImplementedError


@dataclass(frozen=True)
class Conv:
    """One convolution followed by ReLU: `out_channels` filters of `kernel` x `kernel`."""

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0  # zeros added on each side, as an integer (torch/MXNet convention)
    relu: bool = True  # the chapter puts a ReLU after every conv, the last one included


@dataclass(frozen=True)
class NiNBlock(LayerKind):
    """The chapter's `nin_block`: a k x k conv, then `num_1x1` 1x1 convs, each with ReLU.

    `relu` says which convs get one: 'all' (the chapter), 'hidden' (all but the last) or
    'none' (a linear block, for the class-score block of the `nin` recipe).
    """

    out_channels: int
    kernel: int
    stride: int = 1
    padding: int = 0
    num_1x1: int = 2  # the chapter uses two; exercise 1 varies it
    relu: str = "all"

    def __post_init__(self):
        if self.relu not in ("all", "hidden", "none"):
            raise ValueError(f"NiNBlock.relu must be 'all', 'hidden' or 'none', got {self.relu!r}")

    @property
    def convs(self) -> tuple[Conv, ...]:
        count = 1 + self.num_1x1
        relus = {
            "all": [True] * count,
            "hidden": [True] * (count - 1) + [False],
            "none": [False] * count,
        }[self.relu]
        sizes = [(self.kernel, self.stride, self.padding)] + [(1, 1, 0)] * self.num_1x1
        return tuple(Conv(self.out_channels, k, s, p, relu=r) for (k, s, p), r in zip(sizes, relus))

    def output_shape(self, shape: Shape) -> Shape:
        _, h, w = shape
        for conv in self.convs:
            h = conv_output_size(h, conv.kernel, conv.stride, conv.padding)
            w = conv_output_size(w, conv.kernel, conv.stride, conv.padding)
        return (self.out_channels, h, w)

    def cost(self, shape: Shape) -> Cost:
        c, h, w = shape
        params = macs = relu = kept = 0
        ops = []
        for conv in self.convs:
            h = conv_output_size(h, conv.kernel, conv.stride, conv.padding)
            w = conv_output_size(w, conv.kernel, conv.stride, conv.padding)
            params += conv.out_channels * (c * conv.kernel**2 + 1)
            macs += h * w * conv.out_channels * c * conv.kernel**2
            relu += h * w * conv.out_channels if conv.relu else 0
            c = conv.out_channels
            ops += [c * h * w] * (2 if conv.relu else 1)  # a ReLU is an op of its own
            kept += c * h * w
        return Cost(params, macs, 0, relu, tuple(ops), kept)

    def weights(self, name: str, shape: Shape, before: Shape | None = None) -> list[Weight]:
        out, c = [], shape[0]
        for j, conv in enumerate(self.convs, 1):
            out += [
                Weight(
                    f"{name}.conv{j}.weight",
                    (conv.out_channels, c, conv.kernel, conv.kernel),
                    "conv",
                ),
                Weight(f"{name}.conv{j}.bias", (conv.out_channels,), "bias"),
            ]
            c = conv.out_channels
        return out

    def build(self, ops, shape: Shape | None):
        """A `sequential` of the convs; `shape` None leaves the input channels to be inferred
        (the chapter's lazy `nin_block`)."""
        layers, c = [], None if shape is None else shape[0]
        for conv in self.convs:
            layers += ops.conv(
                conv.out_channels, conv.kernel, conv.stride, conv.padding, conv.relu, c
            )
            c = None if c is None else conv.out_channels
        return ops.sequential(layers)


@dataclass(frozen=True)
class MaxPool(LayerKind):
    """Max pooling over `size` x `size` windows, no padding (the chapter's 3, stride 2)."""

    size: int = 3
    stride: int = 2

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        return (
            c,
            conv_output_size(h, self.size, self.stride),
            conv_output_size(w, self.size, self.stride),
        )

    def cost(self, shape: Shape) -> Cost:
        out = prod(self.output_shape(shape))
        return Cost(pool_ops=out * (self.size**2 - 1), op_outputs=(out,), kept=out)

    def build(self, ops, shape: Shape | None):
        return ops.max_pool(self.size, self.stride)


@dataclass(frozen=True)
class Dropout(LayerKind):
    rate: float = 0.5

    def output_shape(self, shape: Shape) -> Shape:
        return shape

    def cost(self, shape: Shape) -> Cost:
        return Cost(op_outputs=(prod(shape),), kept=prod(shape))  # the mask

    def build(self, ops, shape: Shape | None):
        return ops.dropout(self.rate)


@dataclass(frozen=True)
class GlobalAvgPool(LayerKind):
    """Mean over all spatial positions: C x H x W -> C x 1 x 1."""

    def output_shape(self, shape: Shape) -> Shape:
        c, h, w = shape
        return (c, 1, 1) if min(h, w) >= 1 else (c, min(h, w), min(h, w))

    def cost(self, shape: Shape) -> Cost:
        return Cost(pool_ops=prod(shape), op_outputs=(shape[0],))

    def build(self, ops, shape: Shape | None):
        return ops.global_avg_pool()


@dataclass(frozen=True)
class Flatten(LayerKind):
    """C x H x W -> C*H*W. After global average pooling this gives the logits."""

    def output_shape(self, shape: Shape) -> Shape:
        return (prod(shape),)

    def cost(self, shape: Shape) -> Cost:
        return Cost()  # a view: no op, nothing kept

    def build(self, ops, shape: Shape | None):
        return ops.flatten()


@dataclass(frozen=True)
class Dense(LayerKind):
    """A fully connected layer, for the dense heads of exercise 2; ReLU unless it is the last."""

    units: int
    relu: bool = True

    def output_shape(self, shape: Shape) -> Shape:
        if len(shape) != 1:
            raise ValueError("a Dense layer needs a Flatten before it")
        return (self.units,)

    def cost(self, shape: Shape) -> Cost:
        fan_in = prod(shape)
        return Cost(
            params=self.units * (fan_in + 1),
            macs=self.units * fan_in,
            relu_ops=self.units if self.relu else 0,
            op_outputs=(self.units,) * (2 if self.relu else 1),
            kept=self.units,
        )

    def weights(self, name: str, shape: Shape, before: Shape | None = None) -> list[Weight]:
        """`before`: the input of the layer before this one; a (C, H, W) there means a
        Flatten of a feature map feeds this layer."""
        flattened = tuple(before) if before is not None and len(before) == 3 else None
        return [
            Weight(f"{name}.weight", (self.units, shape[0]), "dense", flattened),
            Weight(f"{name}.bias", (self.units,), "bias"),
        ]

    def build(self, ops, shape: Shape | None):
        return ops.dense(self.units, self.relu)


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
            raise ValueError(
                f"num_classes and in_channels must be >= 1, got "
                f"{self.num_classes} and {self.in_channels}"
            )
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
        num_classes=num_classes,
        in_channels=in_channels,
        name="nin",
    )


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
    short = {
        "NiNBlock": "block",
        "MaxPool": "pool",
        "Dropout": "dropout",
        "GlobalAvgPool": "gap",
        "Flatten": "flatten",
        "Dense": "dense",
    }
    for layer in spec.layers:
        base = short[type(layer).__name__]
        counts[base] = counts.get(base, 0) + 1
        names.append(base + str(counts[base]))
    return names


class Step(NamedTuple):
    """One top-level layer on a walk over a spec: its input and output shapes."""

    name: str
    layer: Layer
    in_shape: Shape
    out_shape: Shape


def walk(spec: NetSpec, height: int, width: int | None = None) -> Iterator[Step]:
    """Every top-level layer with its input and output shapes for one height x width image;
    a size below 1 is yielded as computed, not raised (`check_input_size` raises)."""
    shape: Shape = (spec.in_channels, height, height if width is None else width)
    for name, layer in zip(layer_names(spec), spec.layers):
        try:
            out = layer.output_shape(shape)
        except ValueError as err:
            raise ValueError(f"{name}: {err}") from None
        yield Step(name, layer, shape, out)
        shape = out


def _walk(spec: NetSpec, height: int, width: int) -> Iterator[tuple[str, object, tuple]]:
    for step in walk(spec, height, width):
        yield step.name, step.layer, step.out_shape


def build(spec: NetSpec, ops):
    """The network for `spec` from a backend's primitives (`PRIMITIVES`): one top-level
    layer per spec layer, in a `sequential`."""
    steps = walk(spec, min_input_size(spec))
    return ops.sequential([step.layer.build(ops, step.in_shape) for step in steps])


def weight_table(spec: NetSpec, size: int | None = None) -> list[Weight]:
    """Every parameter in spec order, canonical name, shape and layout kind, for inputs of
    size x size (a dense head's fan-in depends on it; the default is the smallest input)."""
    steps = list(walk(spec, size or min_input_size(spec)))
    table = []
    for i, step in enumerate(steps):
        before = steps[i - 1].in_shape if i else None
        table += step.layer.weights(step.name, step.in_shape, before)
    return table


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
    return all(
        min(shape[-2:]) >= 1 if len(shape) == 3 else True
        for _, _, shape in _walk(spec, height, width)
    )


def check_input_size(
    spec: NetSpec, height: int, width: int | None = None, name: str = "size"
) -> None:
    """Raise InputTooSmallError naming the size given and the minimum, before any framework
    runs; `name` is the argument the caller sets the size with (the message names it)."""
    width = height if width is None else width
    if height < 1 or width < 1:
        raise InputTooSmallError(f"input size must be positive, got {height}x{width}")
    for layer, _, shape in _walk(spec, height, width):
        if len(shape) == 3 and min(shape[1:]) < 1:
            least = min_input_size(spec)
            raise InputTooSmallError(
                Message(
                    "input {height}x{width} is too small for {net!r}: layer {layer} would output "
                    "{out_h}x{out_w}. The minimum is {least}x{least}; resize the images to at "
                    "least that (e.g. {size}).",
                    height=height,
                    width=width,
                    net=spec.name,
                    layer=layer,
                    out_h=shape[1],
                    out_w=shape[2],
                    least=least,
                    size=arg(name, least),
                )
            )


def output_shapes(spec: NetSpec, height: int, width: int | None = None) -> list[LayerShape]:
    """Every top-level layer's output shape for one image, NCHW without the batch dimension."""
    width = height if width is None else width
    check_input_size(spec, height, width)
    return [
        LayerShape(name, type(layer).__name__, shape)
        for name, layer, shape in _walk(spec, height, width)
    ]


def with_class_block_relu(spec: NetSpec, relu: str) -> NetSpec:
    """The same network with the class-score block's ReLUs set to `relu` ('all', 'hidden',
    'none'). The class block is the NiN block feeding global average pooling; a spec
    without one (a dense head) is returned unchanged."""
    layers = list(spec.layers)
    for i, layer in enumerate(layers):
        if isinstance(layer, GlobalAvgPool) and i and isinstance(layers[i - 1], NiNBlock):
            layers[i - 1] = dataclasses.replace(layers[i - 1], relu=relu)
    return spec.replace(layers=tuple(layers))


def with_dropout(spec: NetSpec, rate: float) -> NetSpec:
    """The same network with every Dropout layer at `rate` (0 turns dropout off)."""
    if not 0 <= rate < 1:
        raise ValueError(f"a dropout rate is >= 0 and < 1, got {rate!r}")
    swap = (dataclasses.replace(x, rate=rate) if isinstance(x, Dropout) else x for x in spec.layers)
    return spec.replace(layers=tuple(swap))


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
    out = [
        f"{f} {getattr(a, f)!r} vs {getattr(b, f)!r}"
        for f in ("name", "num_classes", "in_channels")
        if getattr(a, f) != getattr(b, f)
    ]
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
    return {
        "name": spec.name,
        "num_classes": spec.num_classes,
        "in_channels": spec.in_channels,
        "layers": [
            {"kind": type(layer).__name__, **dataclasses.asdict(layer)} for layer in spec.layers
        ],
    }


def spec_from_dict(data: dict) -> NetSpec:
    layers = []
    for entry in data["layers"]:
        entry = dict(entry)
        layers.append(_KINDS[entry.pop("kind")](**entry))
    return NetSpec(
        tuple(layers),
        num_classes=data["num_classes"],
        in_channels=data["in_channels"],
        name=data["name"],
    )
