"""The canonical weight format alone: layouts, what a file keeps beside its arrays, and the
files it refuses. Framework-free but for the round trip through a backend."""

import numpy as np

from nin import weights as W


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
