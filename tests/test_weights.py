"""The canonical weight format alone: layouts, what a file keeps beside its arrays, and the
files it refuses. Framework-free but for the round trip through a backend."""

import json
import sys

import numpy as np
import pytest

from nin import spec as S
from nin import weights as W

# a dense head: its dense layer's fan-in, so its weights' shapes, depend on the input size
HEAD = S.NetSpec((S.NiNBlock(2, 3, num_1x1=0), S.Flatten(), S.Dense(4, relu=False)), 4)


def _arrays(size):
    rng = np.random.default_rng(size)
    return {w.name: rng.random(w.shape, np.float32) for w in S.weight_table(HEAD, size)}


def test_activations_and_inputs_change_layout_only_where_the_backend_differs():
    """NHWC maps are transposed to NCHW and back; N x C outputs (GAP, logits) and NCHW
    backends' arrays pass as they are; every activation is compared in float32."""
    nchw = np.arange(2 * 3 * 4 * 5, dtype=np.float64).reshape(2, 3, 4, 5)
    nhwc = W.input_from_nchw(nchw, "NHWC")
    assert nhwc.shape == (2, 4, 5, 3) and nhwc.flags["C_CONTIGUOUS"]
    assert nhwc[1, 2, 3, 0] == nchw[1, 0, 2, 3]
    assert W.input_from_nchw(nchw, "NCHW") is nchw
    back = W.activation_to_nchw(nhwc, "NHWC")
    assert back.dtype == np.float32
    np.testing.assert_array_equal(back, nchw)
    np.testing.assert_array_equal(W.activation_to_nchw(nchw, "NCHW"), nchw)
    logits = np.arange(6.0).reshape(2, 3)
    np.testing.assert_array_equal(W.activation_to_nchw(logits, "NHWC"), logits)


def test_a_files_input_size_travels_with_it_and_decides_the_shapes(tmp_path):
    """A dense head's weights fit one input size: .npz and .safetensors keep it beside the
    spec, `check` holds the arrays to that size's shapes, and a safetensors file without
    the entry (one written by hand) reads as None."""
    from safetensors.numpy import save_file

    from nin.export import save_safetensors

    named = _arrays(9)  # dense1.weight: 4 x (2 x 7 x 7)
    W.save(tmp_path / "w.npz", named, HEAD, size=9)
    save_safetensors(tmp_path / "w.safetensors", named, HEAD, size=9)
    spec_json = json.dumps(S.spec_to_dict(HEAD))
    save_file(named, str(tmp_path / "plain.safetensors"), {"nin_spec": spec_json})
    for name in ("w.npz", "w.safetensors"):
        arrays, spec, size = W.read(tmp_path / name)
        assert (spec, size) == (HEAD, 9), name
        W.check(arrays, spec, HEAD, name, size)
    with pytest.raises(W.WeightFileError, match=r"dense1.weight has shape \(4, 98\).*\(4, 2\)"):
        W.check(named, HEAD, HEAD)  # the smallest input, 3 x 3: 2 x 1 x 1 inputs
    assert W.read(tmp_path / "plain.safetensors")[2] is None


def test_files_that_are_not_weight_files_are_refused_with_what_to_give(tmp_path, monkeypatch):
    """A missing path, a training checkpoint (the weights.npz beside it is the file to
    give), an .npz nin did not write, a .safetensors that is not one, and safetensors not
    installed: each a WeightFileError that says what to do."""
    from nin.files import save_npz

    with pytest.raises(W.WeightFileError, match=r"no weight file at .*: give the weights.npz"):
        W.read(tmp_path / "missing.npz")
    save_npz(tmp_path / "checkpoint.npz", {"x": np.zeros(2)}, "__meta__", {"epoch": 1})
    with pytest.raises(W.WeightFileError, match="is a training checkpoint, not a weight file"):
        W.read(tmp_path / "checkpoint.npz")
    np.savez(tmp_path / "other.npz", x=np.zeros(2))  # neither entry: someone else's arrays
    with pytest.raises(W.WeightFileError, match="other.npz is not a readable nin weight file"):
        W.read(tmp_path / "other.npz")
    junk = tmp_path / "w.safetensors"
    junk.write_bytes(b"not safetensors")
    with pytest.raises(W.WeightFileError, match="w.safetensors is not a readable nin weight"):
        W.read(junk)
    monkeypatch.setitem(sys.modules, "safetensors", None)  # `import safetensors` fails
    with pytest.raises(W.WeightFileError, match="install safetensors"):
        W.read(junk)


def test_a_dense_head_goes_through_a_file_at_its_size(backend, tmp_path):
    """export at 9 x 9 writes the dense layer's fan-in for 9 x 9 and the size; load reads
    both back into a fresh network of the backend, which then computes the same logits."""
    from nin.backends import get_backend

    B = get_backend(backend)
    B.set_seed(0)
    net, other = B.build(HEAD), B.build(HEAD)
    W.export(backend, net, HEAD, tmp_path / "w.npz", size=9)
    named, _, size = W.read(tmp_path / "w.npz")
    assert size == 9 and named["dense1.weight"].shape == (4, 2 * 7 * 7)
    W.load(backend, other, HEAD, tmp_path / "w.npz")
    x = np.random.default_rng(0).random((2, 1, 9, 9), dtype=np.float32)
    x = W.input_from_nchw(x, B.LAYOUT)
    np.testing.assert_array_equal(B.predict(net, x), B.predict(other, x))


@pytest.mark.parametrize("kernel_layout", ["OIHW", "HWIO"])
def test_a_backend_gets_contiguous_float32_whatever_it_is_given(kernel_layout):
    """Arrays built by hand or read from another tool may be float64; a backend's parameter
    list is float32 (and contiguous, after HWIO's transposes) either way."""
    named = {k: v.astype(np.float64) for k, v in _arrays(9).items()}
    arrays = W.from_canonical(named, HEAD, kernel_layout, size=9)
    assert [a.dtype for a in arrays] == [np.float32] * 4
    assert all(a.flags["C_CONTIGUOUS"] for a in arrays)


def test_check_refuses_an_array_too_many_or_too_few_by_name():
    named = _arrays(9)
    with pytest.raises(W.WeightFileError, match=r"hold arrays the spec does not name: \['x'\]"):
        W.check(dict(named, x=np.zeros(1, np.float32)), HEAD, HEAD, size=9)
    del named["dense1.bias"]
    with pytest.raises(W.WeightFileError, match="the weights have no dense1.bias"):
        W.check(named, HEAD, HEAD, size=9)
