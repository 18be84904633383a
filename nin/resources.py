"""Parameters, multiply-accumulates and memory of a spec, per top-level layer, in plain Python.

Conventions: a conv layer's MACs are out_h * out_w * out_channels * in_channels * k * k
(bias additions not counted); FLOPs = 2 x MACs. Pooling and ReLU are counted apart, as
comparisons / element operations, since they are not multiply-accumulates.

Memory, for a batch: inference needs, at its peak, one op's input and output alive at once
(max over ops of in + out). Training keeps, for the backward pass, the input and one tensor
per conv (a ReLU keeps its output, which the next op also uses; the pre-activation is
freed), each pool's and dense layer's output, and dropout's mask; on top of that, the
gradients in flight at the peak (the largest op's input and output again), the parameters,
their gradients and the optimizer state (SGD 0, momentum 1, Adam 2 per parameter).
Activations take 4 bytes in fp32, 2 in bf16; parameters, gradients
and optimizer state stay fp32 under mixed precision.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from nin import spec as _spec
from nin.errors import Message, arg

__all__ = [
    "LayerCost",
    "layer_costs",
    "num_params",
    "conv_macs",
    "memory",
    "summary",
    "available_memory",
    "check_fits_in_memory",
    "MEMORY_MARGIN",
]


@dataclass(frozen=True)
class LayerCost:
    name: str
    kind: str
    shape: tuple  # output, (C, H, W) or (features,)
    params: int
    macs: int  # conv and dense multiply-accumulates, per image
    pool_ops: int  # comparisons (max) or additions (average), per image
    relu_ops: int  # ReLU evaluations, per image
    op_outputs: tuple  # elements of each op's output inside this layer, per image
    kept: int  # elements kept for the backward pass, per image


def layer_costs(spec: _spec.NetSpec, height: int, width: int | None = None) -> list[LayerCost]:
    """Per-layer parameters and operations for one height x width image (each layer kind's
    `cost`, from the spec's one walk)."""
    width = height if width is None else width
    _spec.check_input_size(spec, height, width)
    return [
        LayerCost(
            step.name, type(step.layer).__name__, step.out_shape, *step.layer.cost(step.in_shape)
        )
        for step in _spec.walk(spec, height, width)
    ]


OPTIMIZER_SLOTS = {"sgd": 0, "momentum": 1, "adam": 2}


def memory(
    spec: _spec.NetSpec,
    size: int,
    batch_size: int,
    optimizer: str = "sgd",
    activation_bytes: int = 4,
) -> dict:
    """Bytes for inference (peak live activations) and for one training step, by part."""
    rows = layer_costs(spec, size)
    image = spec.in_channels * size * size
    sizes = [image] + [n for r in rows for n in r.op_outputs]
    peak = max(a + b for a, b in zip(sizes, sizes[1:]))
    params = sum(r.params for r in rows)
    kept = image + sum(r.kept for r in rows) + peak  # stored, plus gradients in flight
    parts = {
        "activations": kept * batch_size * activation_bytes,
        "parameters": params * 4,
        "gradients": params * 4,
        "optimizer_state": params * 4 * OPTIMIZER_SLOTS[optimizer],
    }
    return {
        "inference": peak * batch_size * activation_bytes + params * 4,
        "inference_activations": peak * batch_size * activation_bytes,
        "training": sum(parts.values()),
        "training_parts": parts,
    }


def summary(
    spec: _spec.NetSpec, size: int = 224, batch_size: int = 128, optimizer: str = "sgd"
) -> dict:
    """Everything `python -m nin resources` prints, as one JSON-ready dict."""
    rows = layer_costs(spec, size)
    macs = sum(r.macs for r in rows)
    return {
        "spec": spec.name,
        "size": size,
        "batch_size": batch_size,
        "optimizer": optimizer,
        "min_input_size": _spec.min_input_size(spec),
        "params": sum(r.params for r in rows),
        "macs_per_image": macs,
        "flops_per_image": 2 * macs,
        "pool_ops_per_image": sum(r.pool_ops for r in rows),
        "relu_ops_per_image": sum(r.relu_ops for r in rows),
        "layers": [
            {
                "name": r.name,
                "kind": r.kind,
                "shape": list(r.shape),
                "params": r.params,
                "macs": r.macs,
                "pool_ops": r.pool_ops,
                "relu_ops": r.relu_ops,
                "activations": sum(r.op_outputs),
            }
            for r in rows
        ],
        "memory": {
            "fp32": memory(spec, size, batch_size, optimizer, 4),
            "bf16": memory(spec, size, batch_size, optimizer, 2),
        },
    }


def num_params(spec: _spec.NetSpec, height: int = 224, width: int | None = None) -> int:
    """Total parameters (a dense head's count depends on the input size; convs' do not)."""
    return sum(r.params for r in layer_costs(spec, height, width))


def conv_macs(spec: _spec.NetSpec, height: int = 224, width: int | None = None) -> int:
    """Total multiply-accumulates of the conv and dense layers for one image."""
    return sum(r.macs for r in layer_costs(spec, height, width))


# measured step memory over this estimate: up to 1.74 (MXNet fp32, benchmarks/memory.py);
# the check below doubles the estimate so that a batch it lets through does fit
MEMORY_MARGIN = 2.0


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """Bytes this process may still use: MemAvailable, or the cgroup's limit if lower; None
    where neither can be read."""
    found = []
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except OSError:
        pass
    for path, used in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        try:
            limit = Path(path).read_text().strip()
            if limit != "max" and int(limit) < 1 << 60:
                found.append(int(limit) - int(Path(used).read_text().strip()))
        except (OSError, ValueError):
            continue
    return min(found) if found else None


def check_fits_in_memory(
    spec: _spec.NetSpec,
    size: int,
    batch_size: int,
    optimizer: str = "sgd",
    training: bool = True,
    available: int | None = None,
) -> None:
    """Refuse, before any work, a batch whose step cannot fit in the memory left: the
    message gives both figures and the largest batch that fits."""
    available = available_memory() if available is None else available
    if available is None:
        return
    kind = "training" if training else "inference"
    per_batch = memory(spec, size, batch_size, optimizer)[kind] * MEMORY_MARGIN
    if per_batch <= available:
        return
    one, two = (memory(spec, size, n, optimizer)[kind] * MEMORY_MARGIN for n in (1, 2))
    per_image, fixed = two - one, 2 * one - two  # the estimate is linear in the batch
    fits = max(0, int((available - fixed) // per_image))
    what = f"batch {batch_size} at {size}x{size}"
    advice = (
        Message("use a batch of at most {fits} ({arg})", fits=fits, arg=arg("batch_size", fits))
        if fits
        else f"even one image at {size}x{size} does not fit; use a smaller input"
    )
    raise MemoryError(
        Message(
            "{what} needs about {need:.1f} GiB for {kind} (nin.resources' estimate, doubled for "
            "the frameworks' workspace), and {available:.1f} GiB are available; {advice}",
            what=what,
            need=per_batch / 2**30,
            kind=kind,
            available=available / 2**30,
            advice=advice,
        )
    )
