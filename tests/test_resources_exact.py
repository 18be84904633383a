"""nin.resources to the number: the JSON `nin resources --json` prints, memory worked out by
hand for a network small enough to count, and the memory check's answers. No framework."""

import pytest

from nin import resources as R
from nin import spec as S


def test_summary_names_every_field_and_keeps_its_defaults():
    """The JSON's keys are an interface (scripts read them); the defaults are the chapter's
    224 x 224, batch 128, plain SGD."""
    spec = S.chapter_spec()
    result = R.summary(spec)
    assert {k: result[k] for k in ("spec", "size", "batch_size", "optimizer")} == {
        "spec": "nin",
        "size": 224,
        "batch_size": 128,
        "optimizer": "sgd",
    }
    block1 = 96 * 54 * 54  # elements of each of block1's three conv outputs
    assert result["layers"][:2] == [
        {
            "name": "block1",
            "kind": "NiNBlock",
            "shape": [96, 54, 54],
            "params": 30_336,
            "macs": 87_619_968,
            "pool_ops": 0,
            "relu_ops": 3 * block1,
            "activations": 6 * block1,  # each conv's output and its ReLU's
        },
        {
            "name": "pool1",
            "kind": "MaxPool",
            "shape": [96, 26, 26],
            "params": 0,
            "macs": 0,
            "pool_ops": 96 * 26 * 26 * 8,  # 3 x 3 windows: 8 comparisons per output
            "relu_ops": 0,
            "activations": 96 * 26 * 26,
        },
    ]
    assert result["memory"] == {
        "fp32": R.memory(spec, 224, 128, "sgd", activation_bytes=4),
        "bf16": R.memory(spec, 224, 128, "sgd", activation_bytes=2),
    }


def test_memory_of_a_network_small_enough_to_count_by_hand():
    """One 3 x 3 conv to 2 channels without ReLU, GAP, Flatten, on a 1 x 5 x 5 image: the
    ops' outputs are 25 (the input), 18 (the conv), 2 (GAP). Inference's peak is the largest
    input + output of one op, 25 + 18 = 43. Training keeps the input (25), the conv's output
    (18) and the peak's gradients in flight (43): 86. Parameters 2 x (9 + 1) = 20, stored,
    their gradients, and one momentum slot each."""
    spec = S.NetSpec(
        (S.NiNBlock(2, 3, num_1x1=0, relu="none"), S.GlobalAvgPool(), S.Flatten()),
        num_classes=2,
    )
    batch, fp32 = 3, 4
    assert R.memory(spec, 5, batch, "momentum", fp32) == {
        "inference": 43 * batch * fp32 + 20 * 4,
        "inference_activations": 43 * batch * fp32,
        "training": 86 * batch * fp32 + 3 * 20 * 4,
        "training_parts": {
            "activations": 86 * batch * fp32,
            "parameters": 20 * 4,
            "gradients": 20 * 4,
            "optimizer_state": 20 * 4,
        },
    }
    assert R.memory(spec, 5, batch) == R.memory(spec, 5, batch, "sgd", fp32)  # unless told


def test_the_memory_check_answers_for_the_optimizer_the_mode_and_the_machine(monkeypatch):
    """The budget is the machine's unless given (none known: no check); Adam's two slots
    per parameter and inference's smaller need count; the batch it suggests is the largest
    that fits, found here by trying each; the figures are in GiB."""
    spec = S.chapter_spec()
    ten = int(R.memory(spec, 224, 10, "sgd")["training"] * R.MEMORY_MARGIN)  # 0.2 GiB
    R.check_fits_in_memory(spec, 224, 10, "sgd", available=ten)
    R.check_fits_in_memory(spec, 224, 30, "sgd", training=False, available=ten)
    adam = max(
        n
        for n in range(1, 11)
        if R.memory(spec, 224, n, "adam")["training"] * R.MEMORY_MARGIN <= ten
    )
    with pytest.raises(MemoryError, match=rf"use a batch of at most {adam} "):
        R.check_fits_in_memory(spec, 224, 10, "adam", available=ten)
    with pytest.raises(
        MemoryError,
        match=r"^batch 40 at 224x224 needs about 0\.7 GiB for training \(.*\), and 0\.2 GiB "
        r"are available; use a batch of at most 10 ",
    ):
        R.check_fits_in_memory(spec, 224, 40, "sgd", available=ten)
    with pytest.raises(MemoryError, match="even one image at 224x224 does not fit"):
        R.check_fits_in_memory(spec, 224, 1, "sgd", available=2**20)

    monkeypatch.setattr(R, "available_memory", lambda: ten)
    with pytest.raises(MemoryError, match="at most 10 "):
        R.check_fits_in_memory(spec, 224, 11)
    monkeypatch.setattr(R, "available_memory", lambda: None)
    R.check_fits_in_memory(spec, 224, 10_000)
