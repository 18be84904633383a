"""Named variants of the chapter's NiN, for the chapter's exercises. Each is a NetSpec, so
it builds in every backend and `resources` can cost it.

    nin              the chapter's network
    nin-1x1-0/1/3    0, 1 or 3 1x1 convs per block instead of 2 (exercise 1)
    gap-to-dense     the class block's 10 x 5 x 5 output flattened into a dense layer
                     instead of averaged (exercise 2, the minimal swap)
    dense-head       AlexNet's kind of head: flatten 384 x 5 x 5, dense 4096, dropout,
                     dense num_classes; no class block, no GAP (exercise 2)
    two-step         384 -> 96 -> num_classes in two blocks instead of one (exercise 4)
    nin-vgg11/16/19  a NiN family on VGG's plan: five stages, widths doubling from 32 to
                     256 (half VGG's 64..512, to fit a CPU budget), stage s a 3x3 conv
                     followed by as many 1x1 convs as VGG-11/16/19 has convs in that stage,
                     a max-pool after each, then the class block and GAP (exercise 5)
"""

from __future__ import annotations

import dataclasses

from nin import spec as S

__all__ = ["VARIANTS", "variant", "variant_names"]

# convs per stage in VGG-11, -16 and -19 (Simonyan & Zisserman, configurations A, D, E)
_VGG_STAGES = {
    "nin-vgg11": (1, 1, 2, 2, 2),
    "nin-vgg16": (2, 2, 3, 3, 3),
    "nin-vgg19": (2, 2, 4, 4, 4),
}
_VGG_CHANNELS = (32, 64, 128, 256, 256)  # half of VGG's widths


def _num_1x1(n: int):
    def make(num_classes: int) -> S.NetSpec:
        spec = S.chapter_spec(num_classes)
        layers = tuple(
            dataclasses.replace(layer, num_1x1=n) if isinstance(layer, S.NiNBlock) else layer
            for layer in spec.layers
        )
        return spec.replace(layers=layers, name=f"nin-1x1-{n}")

    return make


def _gap_to_dense(num_classes: int) -> S.NetSpec:
    spec = S.chapter_spec(num_classes)
    layers = spec.layers[:8] + (S.Flatten(), S.Dense(num_classes, relu=False))
    return spec.replace(layers=layers, name="gap-to-dense")


def _dense_head(num_classes: int) -> S.NetSpec:
    spec = S.chapter_spec(num_classes)
    layers = spec.layers[:6] + (
        S.Flatten(),
        S.Dense(4096),
        S.Dropout(0.5),
        S.Dense(num_classes, relu=False),
    )
    return spec.replace(layers=layers, name="dense-head")


def _two_step(num_classes: int) -> S.NetSpec:
    spec = S.chapter_spec(num_classes)
    layers = spec.layers[:7] + (
        S.NiNBlock(96, 3, 1, 1),
        S.NiNBlock(num_classes, 3, 1, 1),
        S.GlobalAvgPool(),
        S.Flatten(),
    )
    return spec.replace(layers=layers, name="two-step")


def _vgg_like(name: str):
    def make(num_classes: int) -> S.NetSpec:
        layers = []
        for channels, convs in zip(_VGG_CHANNELS, _VGG_STAGES[name]):
            layers += [S.NiNBlock(channels, 3, 1, 1, num_1x1=convs), S.MaxPool(3, 2)]
        layers += [S.Dropout(0.5), S.NiNBlock(num_classes, 3, 1, 1), S.GlobalAvgPool(), S.Flatten()]
        return S.NetSpec(tuple(layers), num_classes=num_classes, name=name)

    return make


VARIANTS = {
    "nin": S.chapter_spec,
    "nin-1x1-0": _num_1x1(0),
    "nin-1x1-1": _num_1x1(1),
    "nin-1x1-3": _num_1x1(3),
    "gap-to-dense": _gap_to_dense,
    "dense-head": _dense_head,
    "two-step": _two_step,
    **{name: _vgg_like(name) for name in _VGG_STAGES},
}


def variant_names() -> list[str]:
    return list(VARIANTS)


def variant(name: str, num_classes: int = 10) -> S.NetSpec:
    """The named variant's spec; an unknown name lists the valid ones."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; choose one of {', '.join(VARIANTS)}")
    return VARIANTS[name](num_classes)
