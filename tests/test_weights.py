"""The canonical weight format alone: layouts, what a file keeps beside its arrays, and the
files it refuses. Framework-free but for the round trip through a backend."""

import json

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
