"""The benchmark commands keep working (tiny sizes; nothing here is timed or compared)."""
import json

import pytest

from benchmarks import data as data_bench
from benchmarks import memory as memory_bench
from benchmarks import train as train_bench
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


def test_gpu_check_survives_a_crashing_backend(synthetic_root, tmp_path):
    """benchmarks/gpu.py on the CPU (`--device cpu --quick`): the first backend's process
    aborts after its probe; the next one's records are all written."""
    from benchmarks import gpu
    first, last = BACKENDS[0], BACKENDS[-1] if len(BACKENDS) > 1 else BACKENDS[0]
    code = gpu.main(["--backends", f"{first},{last}", "--device", "cpu", "--quick",
                     "--crash", first, "--out", str(tmp_path), "--data-dir",
                     str(synthetic_root)])
    records = [json.loads(line) for line in (tmp_path / gpu.RECORDS).read_text().splitlines()]
    kinds = [(r.get("backend"), r["kind"]) for r in records]
    assert code == 1                                   # a backend failed, and it says so
    assert kinds[:3] == [(None, "machine"), (first, "probe"), (first, "error")]
    assert "exit code" in records[2]["problem"]
    if last != first:
        assert [k for b, k in kinds if b == last] == ["probe", "speed", "speed", "time_to_0.90",
                                                      "chapter_epoch"]
        epoch = records[-1]
        assert epoch["seconds"] > 0 and 0 <= epoch["test_acc"] <= 1
