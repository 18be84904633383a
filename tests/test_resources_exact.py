"""nin.resources to the number: the JSON `nin resources --json` prints, memory worked out by
hand for a network small enough to count, and the memory check's answers. No framework."""

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
