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


def test_available_memory_reads_memavailable_in_kib(tmp_path):
    """/proc/meminfo's MemAvailable, in kB (KiB), as bytes; the machine's own is read when no
    file is given. A cgroup limit lower than 1 MiB would win, and no machine runs on one."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:        2048 kB\nMemAvailable:    1024 kB\nCached: 9 kB\n")
    assert R.available_memory(str(meminfo)) == 1024 * 1024
    assert R.available_memory() > 1 << 20


MiB = 1 << 20
V1 = ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")


@pytest.mark.parametrize(
    "cgroup, expected, without_meminfo",
    [
        ({}, 8 * MiB, None),  # no cgroup files: MemAvailable alone
        ({"memory.max": "3145728\n", "memory.current": "1048576\n"}, 2 * MiB, 2 * MiB),
        ({"memory.max": "max\n", "memory.current": "1048576\n"}, 8 * MiB, None),
        ({"memory.max": "67108864\n", "memory.current": "0\n"}, 8 * MiB, 64 * MiB),
        (dict(zip(V1, ["4194304", "1048576"])), 3 * MiB, 3 * MiB),
        (dict(zip(V1, [str(2**63 - 4096), "0"])), 8 * MiB, None),  # v1's "no limit"
    ],
)
def test_available_memory_takes_a_cgroups_limit_when_it_is_lower(
    cgroup, expected, without_meminfo, monkeypatch, tmp_path
):
    """In a container, the cgroup's limit less its usage is what this process may use (v2's
    memory.max, "max" for none; v1's limit_in_bytes, a number near 2**63 for none), when it
    is below MemAvailable. The cgroup files are read under tmp_path here."""
    meminfo = tmp_path / "meminfo"
    meminfo.write_text(f"MemAvailable: {8 * 1024} kB\n")
    for name, text in cgroup.items():
        path = tmp_path / "sys" / "fs" / "cgroup" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    monkeypatch.setattr(R, "Path", lambda p: tmp_path / p.lstrip("/"))
    assert R.available_memory(str(meminfo)) == expected
    assert R.available_memory(str(tmp_path / "no-meminfo")) == without_meminfo


def test_costs_follow_both_sides_of_a_non_square_input_and_default_to_224():
    """224 high, 96 wide: block1 outputs 54 x 22 (widths as in test_spec), and a dense
    head's fan-in is 384 x 5 x 1 there against 384 x 5 x 5 at 224 x 224; the totals'
    default input is 224 x 224."""
    from nin.variants import variant

    spec, head = S.chapter_spec(), variant("dense-head")
    block1 = R.layer_costs(spec, 224, 96)[0]
    assert (block1.shape, block1.macs) == ((96, 54, 22), 54 * 22 * 96 * (11 * 11 + 2 * 96))
    fan_in = (384 * 5 * 1, 384 * 5 * 5)
    assert R.num_params(head, 224, 96) - R.num_params(head, 224) == 4096 * (fan_in[0] - fan_in[1])
    # one 3 x 3 conv (stride 1, so every input size counts) and a dense layer after it
    tiny = S.NetSpec((S.NiNBlock(2, 3, num_1x1=0), S.Flatten(), S.Dense(3)), num_classes=3)
    assert R.conv_macs(tiny) == 222 * 222 * 2 * 9 + 3 * 2 * 222 * 222
    assert R.conv_macs(tiny, 10, 5) == 8 * 3 * 2 * 9 + 3 * 2 * 8 * 3
    assert R.num_params(tiny) == 2 * (9 + 1) + 3 * (2 * 222 * 222 + 1)
    with pytest.raises(S.InputTooSmallError, match="224x40"):
        R.layer_costs(spec, 224, 40)
