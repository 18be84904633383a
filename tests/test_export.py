"""The model out of the three frameworks: ONNX built from the spec and run by ONNX Runtime,
safetensors read by `safetensors` itself and loaded back by nin; `nin compare` with ONNX
Runtime as a fourth column."""

import json

import numpy as np
import pytest

from conftest import needs
from nin import export as E
from nin import spec as S
from nin import weights as W
from nin.backends import get_backend
from nin.cli import main


@pytest.fixture
def weight_file(tmp_path):
    """A trained-looking weight file: PyTorch's initialization of nin's recipe (a linear
    class block), exported to the canonical format."""
    B = get_backend("torch")
    B.set_seed(3)
    model = B.NiN(recipe="nin")
    path = tmp_path / "weights.npz"
    W.export("torch", model.net, model.spec, path)
    return path, model


def test_onnx_runs_in_onnx_runtime_as_pytorch_does(weight_file, tmp_path, capsys):
    import onnx
    import onnxruntime as ort

    path, model = weight_file
    assert (
        main(
            [
                "export",
                "--weights",
                str(path),
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "nin.onnx"),
            ]
        )
        == 0
    )
    assert "wrote" in capsys.readouterr().out
    proto = onnx.load(str(tmp_path / "nin.onnx"))
    onnx.checker.check_model(proto)
    assert json.loads(proto.doc_string) == S.spec_to_dict(model.spec)
    ops = [n.op_type for n in proto.graph.node]
    assert ops.count("Conv") == 12 and "Dropout" not in ops and ops.count("MaxPool") == 3
    x = np.random.default_rng(0).random((3, 1, 96, 96), dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "nin.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": x})
    expected = get_backend("torch").predict(model.net, x)
    scale = np.abs(expected).max()
    assert logits.shape == (3, 10) and np.abs(logits - expected).max() <= 1e-5 * scale


def test_onnx_can_standardize_its_input_as_the_nin_recipe_does(weight_file, tmp_path):
    import onnxruntime as ort
    import torch

    path, model = weight_file
    E.export_file(path, "onnx", tmp_path / "n.onnx", normalize=True)
    x = np.random.default_rng(2).random((2, 1, 67, 67), dtype=np.float32)
    session = ort.InferenceSession(str(tmp_path / "n.onnx"), providers=["CPUExecutionProvider"])
    (logits,) = session.run(["logits"], {"images": x})
    model.eval()
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()  # the model's forward standardizes
    # two fp32 implementations (onnxruntime, oneDNN): 4.5e-6 apart on an AVX2-only CPU;
    # without the standardization they differ by up to 1.2 (these weights, this batch)
    np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="safetensors holds the weights alone"):
        E.export_file(path, "safetensors", tmp_path / "n.safetensors", normalize=True)


def test_onnx_of_a_dense_head_keeps_the_flatten_order(tmp_path):
    spec = S.NetSpec(
        (S.NiNBlock(8, 3), S.MaxPool(3, 2), S.Flatten(), S.Dense(16), S.Dense(10, relu=False))
    )
    B = get_backend("torch")
    B.set_seed(0)
    net = B.build(spec)
    x = np.random.default_rng(1).random((2, 1, 15, 15), dtype=np.float32)
    B.layer_outputs(net, x)  # lazy layers made
    named = W.export_arrays("torch", net, spec, size=15)
    outputs = E.onnx_layer_outputs(named, spec, x, size=15)
    np.testing.assert_allclose(outputs[-1], B.predict(net, x), rtol=1e-5, atol=1e-6)


def test_safetensors_round_trip(weight_file, tmp_path):
    from safetensors.numpy import load_file

    path, model = weight_file
    out = tmp_path / "nin.safetensors"
    E.export_file(path, "safetensors", out)
    plain = load_file(str(out))  # safetensors itself reads it
    named, spec, size = W.read(out)  # and nin loads it back, spec and all
    original, file_spec, _ = W.read(path)
    assert spec == file_spec == model.spec and size is None
    assert sorted(plain) == sorted(named) == sorted(original)
    assert all(np.array_equal(named[k], original[k]) for k in original)
    other = get_backend("torch").NiN(recipe="nin")
    W.load("torch", other.net, other.spec, out)
    assert all(
        np.array_equal(a, b)
        for a, b in zip(
            get_backend("torch").parameter_arrays(other.net),
            get_backend("torch").parameter_arrays(model.net),
        )
    )


def test_export_refuses_what_it_cannot_write(weight_file, tmp_path, capsys):
    path, _ = weight_file
    assert (
        main(
            [
                "export",
                "--weights",
                str(tmp_path / "nope.npz"),
                "--format",
                "onnx",
                "--out",
                str(tmp_path / "x.onnx"),
            ]
        )
        == 2
    )
    assert "no weight file" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not safetensors")
    with pytest.raises(W.WeightFileError, match="not a readable nin weight file"):
        W.read(bad)


@needs("torch", "tensorflow")
def test_compare_shows_onnx_runtime_beside_the_frameworks(weight_file, synthetic_root, capsys):
    path, _ = weight_file
    assert (
        main(
            [
                "compare",
                "--backends",
                "torch,tensorflow,onnxruntime",
                "--size",
                "67",
                "--batch-size",
                "2",
                "--weights",
                str(path),
                "--data-dir",
                str(synthetic_root),
                "--json",
            ]
        )
        == 0
    )
    result = json.loads(capsys.readouterr().out)
    assert list(result["logits"]) == ["torch", "tensorflow", "onnxruntime"]
    assert all(row["max_rel_diff"]["onnxruntime"] < 1e-5 for row in result["layers"])
    assert result["layers"][0]["shape"]["onnxruntime"] == [2, 96, 15, 15]
    assert main(["compare", "--backends", "torch,onnxruntime", "--train-steps", "2"]) == 2
    assert "inference only" in capsys.readouterr().err
