"""The benchmark commands keep working (tiny sizes; nothing here is timed or compared)."""
import json

import pytest

from benchmarks import data as data_bench, memory as memory_bench, train as train_bench
from conftest import BACKENDS


def test_train_benchmark_records(backend, capsys):
    train_bench.main(["--backend", backend, "--size", "67", "--batch-size", "2", "--steps",
                      "1", "--json"])
    records = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["mode"] for r in records] == ["train", "inference"]
    for r in records:
        assert {"backend", "mode", "size", "batch_size", "images_per_s",
                "baseline_images_per_s", "ratio"} <= set(r)
        assert r["backend"] == backend and r["images_per_s"] > 0
        assert r["ratio"] == r["images_per_s"] / r["baseline_images_per_s"]
        # the ceiling is the bf16 peak over the baseline's own GFLOP/s
        assert r["ceiling_ratio"] * r["baseline_images_per_s"] == pytest.approx(
            r["images_per_s"] / r["share_of_bf16_peak"])
        assert isinstance(r["bf16"], bool)


def test_data_benchmark_records(backend, synthetic_root, capsys):
    data_bench.main(["--backend", backend, "--size", "67", "--batch-size", "8", "--batches",
                     "2", "--data-dir", str(synthetic_root), "--json"])
    (record,) = json.loads(capsys.readouterr().out)
    assert record["backend"] == backend and record["ratio"] > 0


def test_memory_benchmark_records(synthetic_root, monkeypatch, capsys):
    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    memory_bench.main(["--backend", "torch", "--size", "67", "--batch-size", "2", "--json"])
    records = json.loads(capsys.readouterr().out)
    assert [r["dtype"] for r in records] == ["fp32", "bf16"]
    assert all(r["measured_bytes"] > 0 and r["estimate_bytes"] > 0 for r in records)


@pytest.mark.skipif("torch" not in BACKENDS, reason="NIN_TEST_BACKENDS leaves out torch")
def test_torch_step_profile_records(capsys):
    from benchmarks import torch_step
    torch_step.main(["--size", "67", "--batch-size", "2", "--steps", "1", "--json"])
    record = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    parts = record["parts"]
    assert {"convolution forward", "convolution backward", "relu"} <= set(parts)
    assert sum(p["share"] for p in parts.values()) == pytest.approx(1.0)
    assert parts["convolution backward"]["gflop_per_s"] > 0
