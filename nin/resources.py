"""Parameters and multiply-accumulates of a spec, per top-level layer, in plain Python.

Conventions: a conv layer's MACs are out_h * out_w * out_channels * in_channels * k * k
(bias additions not counted); FLOPs = 2 x MACs. Pooling and ReLU are counted apart, as
comparisons / element operations, since they are not multiply-accumulates.
"""
from __future__ import annotations

from dataclasses import dataclass

from nin import spec as _spec

__all__ = ["LayerCost", "layer_costs", "num_params", "conv_macs"]


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    shape: tuple     # output, (C, H, W) or (features,)
    params: int
    macs: int        # conv and dense multiply-accumulates, per image
    pool_ops: int    # comparisons (max) or additions (average), per image
    relu_ops: int    # ReLU evaluations, per image


def layer_costs(spec: _spec.NetSpec, height: int, width: int | None = None) -> list[LayerCost]:
    """Per-layer parameters and operations for one height x width image."""
    width = height if width is None else width
    rows = []
    c, h, w = spec.in_channels, height, width
    for out in _spec.output_shapes(spec, height, width):
        layer = spec.layers[len(rows)]
        params = macs = pool = relu = 0
        if isinstance(layer, _spec.NiNBlock):
            for conv in layer.convs:
                h = _spec.conv_output_size(h, conv.kernel, conv.stride, conv.padding)
                w = _spec.conv_output_size(w, conv.kernel, conv.stride, conv.padding)
                params += conv.out_channels * (c * conv.kernel ** 2 + 1)
                macs += h * w * conv.out_channels * c * conv.kernel ** 2
                relu += h * w * conv.out_channels if conv.relu else 0
                c = conv.out_channels
        elif isinstance(layer, _spec.MaxPool):
            h, w = out.shape[1:]
            pool = c * h * w * (layer.size ** 2 - 1)
        elif isinstance(layer, _spec.GlobalAvgPool):
            pool = c * h * w
            h = w = 1
        elif isinstance(layer, _spec.Dense):
            fan_in = c * h * w
            params = layer.units * (fan_in + 1)
            macs = layer.units * fan_in
            relu = layer.units if layer.relu else 0
            c, h, w = layer.units, 1, 1
        elif isinstance(layer, _spec.Flatten):
            c, h, w = c * h * w, 1, 1
        rows.append(LayerCost(out.name, out.kind, out.shape, params, macs, pool, relu))
    return rows


def num_params(spec: _spec.NetSpec, height: int = 224, width: int | None = None) -> int:
    """Total parameters (a dense head's count depends on the input size; convs' do not)."""
    return sum(r.params for r in layer_costs(spec, height, width))


def conv_macs(spec: _spec.NetSpec, height: int = 224, width: int | None = None) -> int:
    """Total multiply-accumulates of the conv and dense layers for one image."""
    return sum(r.macs for r in layer_costs(spec, height, width))
