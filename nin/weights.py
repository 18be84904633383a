"""One framework-neutral weight format, and every layout conversion the project makes.

A weight file is an .npz holding the spec (JSON, entry `__spec__`) and one array per
parameter, named after the spec's layers: `block1.conv1.weight` (OIHW), `block1.conv1.bias`,
`dense1.weight` (out x in, inputs in C, H, W order). Activations are compared in NCHW.
Backends hand over their parameters in their own layout and in spec order
(`parameter_arrays`); only this module knows how to turn them into the canonical one.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nin import spec as _spec
from nin.files import format_version, json_entry, load_npz, save_npz

FORMAT_VERSION = 2  # a weight file's `format_version`; 1: files from before it was written

__all__ = [
    "WeightFileError",
    "FORMAT_VERSION",
    "canonical_names",
    "to_canonical",
    "from_canonical",
    "export_arrays",
    "load_arrays",
    "save",
    "read",
    "export",
    "load",
    "activation_to_nchw",
    "input_from_nchw",
    "check",
    "check_values",
]


class WeightFileError(ValueError):
    """A weight file that does not fit the spec or the model; the model is left unchanged."""


def canonical_names(spec: _spec.NetSpec) -> list[str]:
    """Parameter names in spec order: block<i>.conv<j>.weight/bias, dense<i>.weight/bias."""
    return [w.name for w in _spec.weight_table(spec)]


def _to_canonical(a: np.ndarray, w: _spec.Weight, kernel_layout: str) -> np.ndarray:
    """One parameter from a backend's layout to the canonical one (the layout kinds of
    `spec.Weight`: OIHW convs, out x in dense layers; HWIO backends differ in both)."""
    if kernel_layout != "HWIO" or w.kind == "bias":
        return a
    if w.kind == "conv":
        return a.transpose(3, 2, 0, 1)  # HWIO -> OIHW
    a = a.T  # dense (in, out) -> (out, in)
    if w.flattened:  # inputs flattened H, W, C -> C, H, W
        c, h, wd = w.flattened
        a = a.reshape(-1, h, wd, c).transpose(0, 3, 1, 2).reshape(a.shape[0], -1)
    return a


def _from_canonical(a: np.ndarray, w: _spec.Weight, kernel_layout: str) -> np.ndarray:
    if kernel_layout != "HWIO" or w.kind == "bias":
        return a
    if w.kind == "conv":
        return a.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if w.flattened:  # inputs C, H, W -> H, W, C
        c, h, wd = w.flattened
        a = a.reshape(-1, c, h, wd).transpose(0, 2, 3, 1).reshape(a.shape[0], -1)
    return a.T  # (out, in) -> dense (in, out)


def to_canonical(
    arrays: list[np.ndarray], spec: _spec.NetSpec, kernel_layout: str, size: int | None = None
) -> dict[str, np.ndarray]:
    """A backend's parameters (spec order, its layout) -> canonical names and layouts."""
    table = _spec.weight_table(spec, size)
    if len(arrays) != len(table):
        raise WeightFileError(
            f"the network has {len(arrays)} parameter arrays, the spec "
            f"{spec.name!r} expects {len(table)}"
        )
    return {
        w.name: np.ascontiguousarray(
            _to_canonical(np.asarray(a, dtype=np.float32), w, kernel_layout)
        )
        for w, a in zip(table, arrays)
    }


def from_canonical(
    named: dict[str, np.ndarray], spec: _spec.NetSpec, kernel_layout: str, size: int | None = None
) -> list[np.ndarray]:
    """Canonical names and layouts -> a backend's parameter list (spec order, its layout)."""
    return [
        np.ascontiguousarray(_from_canonical(named[w.name], w, kernel_layout), dtype=np.float32)
        for w in _spec.weight_table(spec, size)
    ]


def activation_to_nchw(a: np.ndarray, layout: str) -> np.ndarray:
    """A layer output in the backend's layout -> NCHW (NHWC -> NCHW: transpose 0, 3, 1, 2)."""
    a = np.asarray(a, dtype=np.float32)
    if layout == "NHWC" and a.ndim == 4:
        return a.transpose(0, 3, 1, 2)
    if layout == "NHWC" and a.ndim == 2:
        return a  # logits and GAP outputs: N x C already
    return a


def input_from_nchw(x: np.ndarray, layout: str) -> np.ndarray:
    """An NCHW NumPy batch -> the backend's layout (NCHW -> NHWC: transpose 0, 2, 3, 1)."""
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if layout == "NHWC" else x)


def save(path, named: dict[str, np.ndarray], spec: _spec.NetSpec, size: int | None = None):
    """Write canonical arrays with their spec (and the input size a dense head needs)."""
    meta = {"spec": _spec.spec_to_dict(spec), "size": size, "format_version": FORMAT_VERSION}
    save_npz(path, named, "__spec__", meta)  # temporary file, then rename


def read(path) -> tuple[dict[str, np.ndarray], _spec.NetSpec, int | None]:
    """(canonical arrays, spec, input size or None) from a weight file; its values checked
    (`check_values`)."""
    path = Path(path)
    if not path.is_file():
        raise WeightFileError(
            f"no weight file at {path}: give the weights.npz a run wrote "
            f"(runs/<run>/weights.npz) or one nin.weights.export made"
        )
    unreadable = (
        f"{path} is not a readable nin weight file ({{}}); export it again with nin.weights.export"
    )
    read_file = _read_safetensors if path.suffix == ".safetensors" else _read_npz
    named, spec, size = read_file(path, unreadable)
    check_values(named, str(path))
    return named, spec, size


def _read_npz(path: Path, unreadable: str):
    """What `save` wrote: the arrays, and the spec and input size in its `__spec__` entry."""
    try:
        named = load_npz(path)
    except Exception as err:  # not a zip, truncated
        raise WeightFileError(unreadable.format(err)) from None
    if "__meta__" in named and "__spec__" not in named:
        raise WeightFileError(
            f"{path} is a training checkpoint, not a weight file: use the weights.npz beside it"
        )
    try:
        meta = json_entry(named, "__spec__")
        if not isinstance(meta, dict):
            raise ValueError("its __spec__ entry is not a JSON object")
    except Exception as err:  # a missing entry, bad JSON
        raise WeightFileError(unreadable.format(err)) from None
    format_version(meta, path, FORMAT_VERSION, "nin weight file", WeightFileError)
    try:
        spec = _spec.spec_from_dict(meta["spec"])
    except Exception as err:  # a spec nin does not know
        raise WeightFileError(unreadable.format(err)) from None
    return named, spec, meta.get("size")


def _read_safetensors(path: Path, unreadable: str):
    """What `nin export --format safetensors` wrote: the arrays, and the spec and input size
    in the file's metadata."""
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="np") as f:
            meta = f.metadata() or {}
            named = {k: f.get_tensor(k) for k in f.keys()}
        version = {"format_version": json.loads(meta.get("nin_format_version", "1"))}
    except ImportError:
        raise WeightFileError(
            f"{path} is a safetensors file: install safetensors (pip install safetensors, or "
            f"the project's export extra) to read it"
        ) from None
    except Exception as err:  # not safetensors
        raise WeightFileError(unreadable.format(err)) from None
    format_version(version, path, FORMAT_VERSION, "nin weight file", WeightFileError)
    try:
        spec = _spec.spec_from_dict(json.loads(meta["nin_spec"]))
        size = json.loads(meta.get("nin_size", "null"))
    except Exception as err:  # no nin_spec in its metadata
        raise WeightFileError(unreadable.format(err)) from None
    return named, spec, size


def check_values(named: dict[str, np.ndarray], source: str = "the weights") -> None:
    """Refuse, naming the first such array, weights that are not floating point (nin writes
    float32) or that hold NaN or infinite values (a run that diverged, or a damaged file)."""
    for name, a in named.items():
        if a.dtype.kind != "f":
            raise WeightFileError(
                f"{source}: {name} holds {a.dtype} values, not floating point; a nin weight "
                f"file holds float32 weights: export it again with nin.weights.export"
            )
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise WeightFileError(
                f"{source}: {name} holds {bad} NaN or infinite value(s) of {a.size}; these "
                f"weights come from a run that diverged or a damaged file: use other weights"
            )


def check(
    named: dict[str, np.ndarray],
    file_spec: _spec.NetSpec,
    spec: _spec.NetSpec,
    source: str = "the weights",
    size: int | None = None,
) -> None:
    """Refuse another spec, a missing or extra name, or a wrong shape, naming the layer."""
    if file_spec != spec:
        raise WeightFileError(
            f"{source} were made for another spec than the model's ({_describe(file_spec)} "
            f"vs {_describe(spec)}; file vs model: {'; '.join(_spec.spec_diff(file_spec, spec))})"
            f"; build the model from the file's spec or use matching weights"
        )
    expected = _expected_shapes(spec, size)
    for name in expected:
        if name not in named:
            raise WeightFileError(f"{source} have no {name}")
        if tuple(named[name].shape) != expected[name]:
            raise WeightFileError(
                f"{source}: {name} has shape {tuple(named[name].shape)}, the "
                f"model expects {expected[name]}"
            )
    extra = sorted(set(named) - set(expected))
    if extra:
        raise WeightFileError(f"{source} hold arrays the spec does not name: {extra[:3]}")


def _expected_shapes(spec: _spec.NetSpec, size: int | None = None) -> dict[str, tuple]:
    return {w.name: w.shape for w in _spec.weight_table(spec, size)}


def _describe(spec: _spec.NetSpec) -> str:
    return f"{spec.name!r}, {spec.num_classes} classes, {len(spec.layers)} layers"


def export_arrays(backend: str, net, spec: _spec.NetSpec, size: int | None = None):
    """The network's parameters as canonical named arrays."""
    B = _materialized(backend, net, spec, size)
    return to_canonical(B.parameter_arrays(net), spec, B.KERNEL_LAYOUT, size)


def load_arrays(
    backend: str,
    net,
    spec: _spec.NetSpec,
    named: dict[str, np.ndarray],
    file_spec: _spec.NetSpec | None = None,
    size: int | None = None,
    source: str = "the weights",
) -> None:
    """Check everything first, then assign: on any mismatch the network is unchanged."""
    check(named, spec if file_spec is None else file_spec, spec, source, size)
    B = _materialized(backend, net, spec, size)
    B.assign_parameter_arrays(net, from_canonical(named, spec, B.KERNEL_LAYOUT, size))


def _materialized(backend: str, net, spec: _spec.NetSpec, size: int | None):
    """Run one blank image through `net` so lazy layers exist; returns the backend module."""
    from nin.backends import get_backend

    B = get_backend(backend)
    side = size or _spec.min_input_size(spec)
    blank = np.zeros((1, spec.in_channels, side, side), np.float32)
    B.layer_outputs(net, input_from_nchw(blank, B.LAYOUT))
    return B


def export(backend: str, net, spec: _spec.NetSpec, path, size: int | None = None) -> None:
    save(path, export_arrays(backend, net, spec, size), spec, size)


def load(backend: str, net, spec: _spec.NetSpec, path) -> None:
    named, file_spec, size = read(path)
    load_arrays(backend, net, spec, named, file_spec, size, source=str(path))
