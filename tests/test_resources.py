"""Resources and variants: analytic counts against every framework, errors, the CLI."""

import json

import pytest

from nin import spec as S
from nin.backends import get_backend
from nin.cli import main
from nin.resources import conv_macs, layer_costs, memory, num_params, summary
from nin.variants import variant, variant_names


@pytest.mark.parametrize("name", variant_names())
def test_variant_params_match_every_backend(backend, name):
    spec = variant(name)
    size = 96
    B = get_backend(backend)
    net = B.build(spec)
    rows = B.layer_shapes(net, size)  # builds lazy layers (dense heads)
    assert len(rows) == len(spec.layers)
    assert B.count_params(net) == num_params(spec, size)


@pytest.mark.parametrize("name", variant_names())
def test_macs_match_torch_flop_counter(name):
    torch = pytest.importorskip("torch")
    from torch.utils.flop_counter import FlopCounterMode

    B = get_backend("torch")
    spec = variant(name)
    net = B.build(spec)
    B.layer_shapes(net, 96)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net.eval()(torch.zeros(1, 1, 96, 96))
    # the counter counts conv and matmul FLOPs as 2 x MACs, biases not included: the same
    # convention as nin.resources, so the counts are equal exactly, layer by layer (a
    # tolerance would hide a layer: the smallest is 0.0001% to 0.05% of the total)
    per_module = counter.get_flop_counts()
    top = type(net).__name__
    counted = [sum(per_module.get(f"{top}.{i}", {}).values()) // 2 for i in range(len(net))]
    assert counted == [row.macs for row in layer_costs(spec, 96)]
    assert counter.get_total_flops() == 2 * conv_macs(spec, 96)


def test_chapter_numbers():
    result = summary(S.chapter_spec(), 224, 128)
    assert result["params"] == 1_992_166
    assert result["macs_per_image"] == 762_297_352
    assert result["flops_per_image"] == 2 * 762_297_352


def test_memory_parts_add_up_and_scale():
    m = memory(S.chapter_spec(), 224, 64, "adam", 4)
    parts = m["training_parts"]
    assert sum(parts.values()) == m["training"]
    assert parts["optimizer_state"] == 2 * parts["parameters"] == 2 * 1_992_166 * 4
    half = memory(S.chapter_spec(), 224, 32, "adam", 4)["training_parts"]["activations"]
    assert parts["activations"] == 2 * half
    bf16 = memory(S.chapter_spec(), 224, 64, "adam", 2)["training_parts"]["activations"]
    assert bf16 * 2 == parts["activations"]


def test_variant_too_small_names_both_sizes(capsys):
    assert main(["resources", "--variant", "nin-vgg11", "--size", "40"]) == 2
    err = capsys.readouterr().err
    assert "input 40x40 is too small for 'nin-vgg11'" in err and "63x63" in err


def test_unknown_variant():
    with pytest.raises(ValueError, match="unknown variant 'nin-9'.*nin-1x1-0"):
        variant("nin-9")


def test_resources_json(capsys):
    assert main(["resources", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["params"] == 1_992_166 and result["macs_per_image"] == 762_297_352
    assert [row["name"] for row in result["layers"]][0] == "block1"


def test_class_block_is_the_one_before_gap():
    assert S.with_class_block_relu(variant("dense-head"), "none") == variant("dense-head")
    two = S.with_class_block_relu(variant("two-step"), "none")
    assert two.layers[7].relu == "all" and two.layers[8].relu == "none"


def test_experiment_command_writes_table_and_plot(synthetic_root, tmp_path, capsys):
    assert (
        main(
            [
                "experiment",
                "--variants",
                "nin,nin-1x1-0",
                "--resize",
                "67",
                "--batch-size",
                "16",
                "--limit-train-batches",
                "2",
                "--data-dir",
                str(synthetic_root),
                "--out",
                str(tmp_path),
                "--quiet",
            ]
        )
        == 0
    )
    rows = json.loads((tmp_path / "results.json").read_text())
    assert [r["variant"] for r in rows] == ["nin", "nin-1x1-0"]
    assert rows[1]["params"] < rows[0]["params"]
    assert (tmp_path / "results.png").read_bytes()[:4] == b"\x89PNG"
    assert "| nin-1x1-0 |" in (tmp_path / "results.md").read_text()
