"""The model out of Python's three frameworks: ONNX and safetensors, from a weight file.

ONNX is built from the spec itself, with the `onnx` package, not through one framework's
exporter: the same walk that builds the three networks (`spec.build`'s layer kinds) gives
the graph here, through `OnnxOps`, one more set of the primitives in `spec.PRIMITIVES`. So
every spec a backend builds exports the same way, no framework has to be installed, and the
graph's nodes carry the spec's layer names (each top-level layer's output is named after it:
block1, pool1, ..., and `logits`). Dropout is the identity (an inference graph).

safetensors holds the canonical arrays with the spec's JSON in its metadata (`nin_spec`,
`nin_size`, `nin_format_version`): `safetensors` reads it as it is, and `nin.weights.read`
loads it back.

    python -m nin export --weights runs/X/weights.npz --format onnx --out nin.onnx
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nin import spec as _spec
from nin import weights as _weights
from nin.errors import ArgumentError, arg
from nin.files import atomic_write
from nin.recipes import PIXEL_MEAN, PIXEL_STD

__all__ = [
    "OPSET",
    "OnnxOps",
    "to_onnx",
    "save_onnx",
    "save_safetensors",
    "export_file",
    "onnx_layer_outputs",
    "FORMATS",
]

OPSET = 13
FORMATS = ("onnx", "safetensors")


class OnnxOps:
    """The primitives `spec.build` asks for, as ONNX nodes. Each primitive returns a function
    from an input tensor name to its output name, which adds the layer's nodes when called;
    the parameters are taken, in spec order, from the canonical arrays."""

    def __init__(self, named: dict[str, np.ndarray], table: list):
        from onnx import numpy_helper

        self._params = iter(table)
        self.nodes: list = []
        self.initializers = [
            numpy_helper.from_array(named[w.name].astype(np.float32), w.name) for w in table
        ]
        self._count = 0

    def _node(self, op: str, inputs: list[str], output: str | None = None, **attrs) -> str:
        from onnx import helper

        self._count += 1
        output = output or f"{op.lower()}_{self._count}"
        self.nodes.append(helper.make_node(op, inputs, [output], name=output, **attrs))
        return output

    def _relu(self, x: str, relu: bool) -> str:
        return self._node("Relu", [x]) if relu else x

    def conv(self, out_channels, kernel, stride, padding, relu, in_channels):
        weight, bias = next(self._params), next(self._params)

        def conv(x):
            y = self._node(
                "Conv",
                [x, weight.name, bias.name],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[padding] * 4,
            )
            return self._relu(y, relu)

        return [conv]

    def max_pool(self, size, stride):
        return lambda x: self._node(
            "MaxPool", [x], kernel_shape=[size, size], strides=[stride, stride]
        )

    def dropout(self, rate):
        return lambda x: x  # inference

    def global_avg_pool(self):
        return lambda x: self._node("GlobalAveragePool", [x])

    def flatten(self):
        return lambda x: self._node("Flatten", [x], axis=1)

    def dense(self, units, relu):
        weight, bias = next(self._params), next(self._params)
        return lambda x: self._relu(self._node("Gemm", [x, weight.name, bias.name], transB=1), relu)

    def sequential(self, layers):
        def run(x):
            for layer in layers:
                x = layer(x)
            return x

        return run


def to_onnx(
    named: dict[str, np.ndarray],
    spec: _spec.NetSpec,
    size: int | None = None,
    layer_outputs: bool = False,
    normalize: bool = False,
):
    """The ModelProto for `spec` with the canonical arrays `named` (checked against the spec
    first). Input `images`: N x C x H x W float32 in [0, 1] (the spec's input; N, H and W
    free); output `logits`, and with `layer_outputs` every top-level layer's output too.
    `normalize` puts the `nin` recipe's input standardization (its model's `forward` does it,
    outside the network) at the graph's start."""
    import onnx
    from onnx import TensorProto, helper

    _weights.check(named, spec, spec, "the weights", size)
    ops = OnnxOps(named, _spec.weight_table(spec, size))
    x, outputs = "images", []
    if normalize:
        from onnx import numpy_helper

        for value, name in ((PIXEL_MEAN, "pixel_mean"), (PIXEL_STD, "pixel_std")):
            ops.initializers.append(numpy_helper.from_array(np.array(value, np.float32), name))
        x = ops._node("Div", [ops._node("Sub", [x, "pixel_mean"]), "pixel_std"])
    steps = list(_spec.walk(spec, size or _spec.min_input_size(spec)))
    for i, step in enumerate(steps):
        y = step.layer.build(ops, step.in_shape)(x)
        x = ops._node("Identity", [y], "logits" if i == len(steps) - 1 else step.name)
        c = step.out_shape[0]  # maps: N x C x H x W with H, W free; features: N x F
        dims = ["N", c] if len(step.out_shape) == 1 else ["N", c, f"{x}_h", f"{x}_w"]
        outputs.append(helper.make_tensor_value_info(x, TensorProto.FLOAT, dims))
    images = helper.make_tensor_value_info(
        "images", TensorProto.FLOAT, ["N", spec.in_channels, "H", "W"]
    )
    shown = outputs if layer_outputs else outputs[-1:]
    graph = helper.make_graph(ops.nodes, spec.name, [images], shown, ops.initializers)
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="nin",
        doc_string=json.dumps(_spec.spec_to_dict(spec)),
    )
    model.ir_version = min(model.ir_version, 8)  # what ONNX Runtime 1.19 reads
    onnx.checker.check_model(model)
    return model


def save_onnx(path, named, spec, size=None, normalize=False) -> None:
    atomic_write(Path(path), to_onnx(named, spec, size, normalize=normalize).SerializeToString())


def save_safetensors(path, named, spec, size=None) -> None:
    """The canonical arrays, the spec's JSON and the input size in the metadata."""
    from safetensors.numpy import save

    meta = {
        "nin_spec": json.dumps(_spec.spec_to_dict(spec)),
        "nin_size": json.dumps(size),
        "nin_format_version": json.dumps(_weights.FORMAT_VERSION),
    }
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in named.items()}
    atomic_write(Path(path), save(arrays, metadata=meta))


def export_file(weights_path, fmt: str, out, normalize: bool = False) -> Path:
    """A nin weight file (.npz or .safetensors) written as `fmt` ('onnx', 'safetensors');
    `normalize`: the ONNX graph standardizes its input as the `nin` recipe's model does."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if normalize and fmt != "onnx":
        raise ArgumentError(
            "{normalize} puts the standardization in an ONNX graph; safetensors holds the "
            "weights alone",
            normalize=arg("normalize"),
        )
    named, spec, size = _weights.read(weights_path)
    _weights.check(named, spec, spec, str(weights_path), size)
    out = Path(out).expanduser()
    if fmt == "onnx":
        save_onnx(out, named, spec, size, normalize)
    else:
        save_safetensors(out, named, spec, size)
    return out


def onnx_layer_outputs(named, spec, x: np.ndarray, size=None) -> list[np.ndarray]:
    """Every top-level layer's output for the NCHW batch `x`, run by ONNX Runtime on the CPU."""
    import onnxruntime as ort

    model = to_onnx(named, spec, size, layer_outputs=True)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return session.run(names, {"images": np.ascontiguousarray(x, dtype=np.float32)})
