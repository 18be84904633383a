"""The benchmark commands keep working (tiny sizes; nothing here is timed or compared)."""

import json

import pytest

from benchmarks import data as data_bench
from benchmarks import memory as memory_bench
from benchmarks import train as train_bench
from conftest import BACKENDS, ROOT
from nin.machine import cpu_has_bf16


def test_train_benchmark_records(backend, capsys):
    train_bench.main(
        ["--backend", backend, "--size", "67", "--batch-size", "2", "--steps", "1", "--json"]
    )
    records = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["mode"] for r in records] == ["train", "inference"]
    schema = {
        "backend": str,
        "mode": str,
        "size": int,
        "batch_size": int,
        "images_per_s": float,
        "baseline_images_per_s": float,
        "ratio": float,
        "gflop_per_s": float,
        "share_of_bf16_peak": float if cpu_has_bf16() else type(None),  # None: no bf16 peak
        "share_of_fp32_peak": float,
        "baseline_share_of_fp32_peak": float,
        "ceiling_ratio": float,
        "bf16": bool,
    }
    for r in records:
        assert {k: type(r[k]) for k in schema} == schema, r
        assert r["backend"] == backend and (r["size"], r["batch_size"]) == (67, 2)
        assert r["images_per_s"] > 0 and r["baseline_images_per_s"] > 0
        assert 0 < r["share_of_fp32_peak"] and 0 < r["ceiling_ratio"]
    assert isinstance(records[0]["peak_memory_bytes"], int) and records[0]["peak_memory_bytes"] > 0
    assert records[1]["peak_memory_bytes"] is None


def _known_run(monkeypatch, peaks: dict, bf16: bool, json_out=True):
    """`run` on fake clocks of known durations: baseline 0.4 s and nin 0.1 s a training step,
    0.2 s and 0.05 s an inference, batch 8 at 67x67, PyTorch, the step in bf16 or not."""
    clock = iter([0.4, 0.1] * 3 + [0.2, 0.05] * 3)  # (baseline, nin) per timed step
    monkeypatch.setattr(train_bench, "_seconds", lambda fn: next(clock))
    monkeypatch.setattr(train_bench, "machine_peak", lambda gpu, framework=None: peaks)
    nothing = lambda: None  # noqa: E731
    monkeypatch.setattr(train_bench, "BASELINES", {"torch": lambda *a: (nothing, nothing)})
    monkeypatch.setattr(train_bench, "nin_fast", lambda *a: (nothing, nothing, bf16))
    monkeypatch.setattr(train_bench.memory_bench, "measure", lambda *a: 123)
    return train_bench.run(["torch"], [67], 8, 3, json_out=json_out)


def test_train_benchmark_one_known_case(monkeypatch):
    """Fake clocks of known durations through the real `_paired` and `run`: baseline 0.4 s and
    nin 0.1 s a training step, 0.2 s and 0.05 s an inference, batch 8 at 67x67, peaks 100 and
    200 GFLOP/s: every derived figure is worked out by hand below."""
    from nin.resources import conv_macs
    from nin.spec import chapter_spec

    (train, infer), peaks = _known_run(monkeypatch, {"fp32": 100.0, "bf16": 200.0}, True)
    forward = 2 * conv_macs(chapter_spec(), 67) / 1e9  # GFLOP per image, forward
    assert train["images_per_s"] == pytest.approx(80) and train["baseline_images_per_s"] == 20
    assert infer["images_per_s"] == pytest.approx(160)
    assert train["ratio"] == pytest.approx(4.0) and infer["ratio"] == pytest.approx(4.0)
    assert train["gflop_per_s"] == pytest.approx(80 * 3 * forward)  # training: 3 x forward
    assert train["share_of_bf16_peak"] == pytest.approx(80 * 3 * forward / 200)
    assert train["ceiling_ratio"] == pytest.approx(200 / (20 * 3 * forward))
    assert train["peak_memory_bytes"] == 123 and infer["peak_memory_bytes"] is None
    assert peaks == {"fp32": 100.0, "bf16": 200.0} and train["bf16"] is True
    assert train["share_of_step_peak"] == train["share_of_bf16_peak"]


def test_train_benchmark_without_a_bf16_peak(monkeypatch, capsys):
    """A CPU without native bf16: no bf16 share; an fp32 step's share, printed, and the
    ceiling are the fp32 peak's (the case above, fp32 peak 100 GFLOP/s)."""
    from nin.resources import conv_macs
    from nin.spec import chapter_spec

    (train, _), _ = _known_run(monkeypatch, {"fp32": 100.0, "bf16": None}, False, json_out=False)
    gflops = 80 * 3 * 2 * conv_macs(chapter_spec(), 67) / 1e9
    assert train["share_of_bf16_peak"] is None
    assert train["share_of_step_peak"] == pytest.approx(gflops / 100)
    assert train["ceiling_ratio"] == pytest.approx(100 / (gflops / 4))  # baseline: 1/4 rate
    out = capsys.readouterr().out
    assert f"{100 * gflops / 100:3.0f}% of fp32 peak" in out and "; fp32" in out


@pytest.mark.skipif("torch" not in BACKENDS, reason="NIN_TEST_BACKENDS leaves out torch")
def test_the_peak_leaves_out_bf16_where_the_cpu_only_emulates_it(monkeypatch):
    """Emulated, a bf16 matmul takes minutes and is no peak: on such a CPU the benchmarks
    measure none and say so; a step's share is of its own precision's peak."""
    monkeypatch.setattr(train_bench, "cpu_has_bf16", lambda: False)
    monkeypatch.setattr(train_bench, "_seconds", lambda fn: 0.5)  # each kind's warm-up runs
    peaks = train_bench.machine_peak()
    assert peaks["bf16"] is None and peaks["fp32"] > 0
    assert train_bench.step_peak(peaks, True) == ("fp32", peaks["fp32"])  # none to compare with
    assert "bf16 not measured (no AVX-512 BF16 or AMX" in train_bench.peak_text(peaks)
    both = {"fp32": 100.0, "bf16": 300.0}
    assert train_bench.step_peak(both, True) == ("bf16", 300.0)
    assert train_bench.step_peak(both, False) == ("fp32", 100.0)
    assert train_bench.peak_text(both) == "bf16 300 GFLOP/s, fp32 100 GFLOP/s"
    assert [k for k, _ in train_bench._native(True, [("fp32", 0), ("bf16", 0)])] == [
        "fp32",
        "bf16",
    ]  # a GPU: both


def test_data_benchmark_records(backend, synthetic_root, capsys, monkeypatch):
    """The real pipelines on a fake clock that only the conversions move: the chapter's
    per-image resize takes 0.5 s a batch and the backend's 0.125 s, so over 2 batches of 8
    the rates are 16 / 1.0 and 16 / 0.25 images/s, the backend's 4x the baseline's."""
    from types import SimpleNamespace

    from nin.backends import get_backend

    clock = [0.0]
    monkeypatch.setattr(data_bench, "time", SimpleNamespace(perf_counter=lambda: clock[0]))

    def timed(fn, seconds):
        def run(*args):
            clock[0] += seconds
            return fn(*args)

        return run

    B = get_backend(backend)
    monkeypatch.setattr(data_bench, "chapter_batch", timed(data_bench.chapter_batch, 0.5))
    monkeypatch.setattr(B, "to_numpy", timed(B.to_numpy, 0.125))  # once a converted batch
    data_bench.main(
        ["--backend", backend, "--size", "67", "--batch-size", "8", "--batches", "2",
         "--data-dir", str(synthetic_root), "--json"]
    )  # fmt: skip
    (record,) = json.loads(capsys.readouterr().out)
    assert (record["backend"], record["size"], record["batch_size"]) == (backend, 67, 8)
    assert record["baseline_images_per_s"] == pytest.approx(16 / 1.0)
    assert record["images_per_s"] == pytest.approx(16 / 0.25)
    assert record["ratio"] == pytest.approx(4.0)


def test_memory_benchmark_records(synthetic_root, monkeypatch, capsys):
    from nin.resources import memory
    from nin.spec import chapter_spec

    monkeypatch.setenv("NIN_DATA_DIR", str(synthetic_root))
    memory_bench.main(["--backend", "torch", "--size", "67", "--batch-size", "2", "--json"])
    records = json.loads(capsys.readouterr().out)
    import torch

    fast_dtype = "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    assert [(r["fast"], r["dtype"]) for r in records] == [(False, "fp32"), (True, fast_dtype)]
    # the estimate for SGD: the parameters and their gradients in fp32, no optimizer state,
    # and the stored activations, which take half as many bytes in bf16
    blocks = [(1, 96, 11), (96, 256, 5), (256, 384, 3), (384, 10, 3)]  # (in, out, kernel)
    # each NiN block: its k x k conv, then two 1 x 1 convs; the chapter's NiN: 1,992,166
    params = sum(i * o * k * k + o + 2 * (o * o + o) for i, o, k in blocks)
    weights = 2 * 4 * params
    plain, fast = records
    assert plain["estimate_bytes"] == memory(chapter_spec(), 67, 2, "sgd", 4)["training"]
    activations = plain["estimate_bytes"] - weights
    assert activations > 0
    width = 2 if fast_dtype == "bf16" else 4
    assert fast["estimate_bytes"] == weights + activations * width // 4
    for r in records:
        assert r["ratio"] == r["measured_bytes"] / r["estimate_bytes"]
        # the first step allocates the gradients (4 bytes a parameter) and keeps them: a peak
        # below that is a unit slip (the kB of /proc/self/status read as bytes)
        assert r["measured_bytes"] >= 4 * params, r


def test_gpu_check_fails_when_a_stage_failed(tmp_path, monkeypatch):
    """A stage that fails is recorded and the next ones run, but the backend's process
    then exits non-zero and the check says which stage, instead of 'ok'."""
    from benchmarks import gpu

    records = gpu.Records(tmp_path / gpu.RECORDS)
    records.add({"backend": "torch", "kind": "speed", "images_per_s": 1.0})
    records.add({"backend": "torch", "kind": "probe", "ok": False})
    records.add({"backend": "torch", "kind": "scaling", "problem": ""})  # a silent kill
    records.add({"backend": "torch", "kind": "time_to_0.90", "problem": "Traceback\nValueError: x"})
    assert records.problems == [
        "probe: not ok",
        "scaling: (nothing said)",
        "time_to_0.90: ValueError: x",
    ]
    assert len((tmp_path / gpu.RECORDS).read_text().splitlines()) == 4  # all kept
    monkeypatch.setattr(gpu, "one_backend", lambda backend, args: records.problems)
    assert gpu.main(["--one", "torch", "--out", str(tmp_path), "--device", "cpu"]) == 3

    class Done:  # the child as the parent sees it
        returncode, stdout = 3, ""
        stderr = "a warning\n" + "".join(f"{gpu.STAGE_FAILED}{p}\n" for p in records.problems)

    monkeypatch.setattr(gpu.subprocess, "run", lambda *a, **k: Done())
    assert gpu.main(["--backends", "torch", "--out", str(tmp_path / "check")]) == 1
    error = json.loads((tmp_path / "check" / gpu.RECORDS).read_text().splitlines()[-1])
    assert error["problem"] == "failed stages: " + "; ".join(records.problems)


def _is_count(accuracy: float, images: int) -> bool:
    """Whether `accuracy` is k / images for a whole k from 0 to images (to float rounding)."""
    k = round(accuracy * images)
    return 0 <= k <= images and accuracy == pytest.approx(k / images, rel=0, abs=1e-9)


def test_gpu_check_survives_a_crashing_backend(synthetic_root, tmp_path):
    """benchmarks/gpu.py on the CPU (`--device cpu --quick`): the first backend's process
    aborts after its probe; the next one's records are all written."""
    from benchmarks import gpu

    first, last = BACKENDS[0], BACKENDS[-1] if len(BACKENDS) > 1 else BACKENDS[0]
    code = gpu.main(
        [
            "--backends",
            f"{first},{last}",
            "--device",
            "cpu",
            "--quick",
            "--crash",
            first,
            "--out",
            str(tmp_path),
            "--data-dir",
            str(synthetic_root),
        ]
    )
    records = [json.loads(line) for line in (tmp_path / gpu.RECORDS).read_text().splitlines()]
    kinds = [(r.get("backend"), r["kind"]) for r in records]
    assert code == 1  # a backend failed, and it says so
    assert kinds[:3] == [(None, "machine"), (first, "probe"), (first, "error")]
    assert "exit code" in records[2]["problem"]
    if last != first:
        assert [k for b, k in kinds if b == last] == [
            "probe",
            "speed",
            "speed",
            "chapter_epoch",
            "scaling",
            "scaling",
            "time_to_0.90",
        ]
        sprint = next(r for r in records if r["kind"] == "time_to_0.90")
        assert "problem" not in sprint, sprint.get("problem")
        assert (sprint["recipe"], sprint["resize"]) == ("sprint", 67)
        assert sprint["batches_per_epoch"] == 2
        # an accuracy is a count of images over their number: the whole synthetic test split
        # of 100 for the sprint (its score and its plain one), one batch of 8 for the
        # chapter's epoch (--quick: limit_val_batches=1); a mean over unequal batches, or
        # over other images, is not
        assert sprint["test_images"] == 100 and sprint["train_seconds"] > 0
        assert _is_count(sprint["test_acc"], 100) and _is_count(sprint["test_acc_plain"], 100)
        assert sprint["reached"] == (sprint["test_acc"] >= 0.90)
        assert "cpu" in sprint["device"].lower()  # where it trained: "cpu", "/CPU:0", "cpu(0)"
        assert sprint["seconds"] >= sprint["train_seconds"] and "setup_seconds" not in sprint
        epoch = next(r for r in records if r["kind"] == "chapter_epoch")
        assert epoch["seconds"] > 0 and _is_count(epoch["test_acc"], 8), epoch
        one, two = [r for r in records if r["kind"] == "scaling"]
        assert (one["devices"], one["efficiency"], one["engine"]) == (1, 1.0, None)
        assert two["devices"] == 2 and two["global_batch"] == 2 * one["global_batch"]
        assert two["images_per_s"] > 0 and two["engine"]


def test_time_to_accuracy_records(synthetic_root, capsys):
    """One tiny run per recipe, each in its own process: the record's schema, the whole test
    split evaluated once, set-up apart from training (no timing compared)."""
    from benchmarks import time_to_accuracy as tta

    tta.main(
        [
            "--backend",
            "torch",
            "--recipe",
            "nin,book",
            "--epochs",
            "1",
            "--resize",
            "67",
            "--batch-size",
            "8",
            "--limit-train-batches",
            "2",
            "--data-dir",
            str(synthetic_root),
            "--no-peak",
            "--json",
            "--target",
            "0.5",
            "--first-seed",
            "3",
        ]
    )
    records = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    schema = {
        "backend": str,
        "recipe": str,
        "seed": int,
        "target": float,
        "train_seconds": float,
        "setup_seconds": float,
        "process_seconds": float,
        "test_acc": float,
        "reached": bool,
        "images_per_s": float,
    }
    assert [(r["recipe"], r["seed"]) for r in records] == [("nin", 3), ("book", 3)]
    for r in records:
        assert {k: type(r[k]) for k in schema} == schema, r
        assert r["test_images"] == 100 and r["capped"] is False and r["epochs"] == 1
        assert 0 < r["train_seconds"] and 0 < r["setup_seconds"] < r["process_seconds"]
        assert r["reached"] == (r["test_acc"] >= 0.5)


def test_time_to_accuracy_refuses_seeds_it_cannot_add():
    from benchmarks import time_to_accuracy as tta

    with pytest.raises(SystemExit, match="--first-seed must be 0 or more, got -1"):
        tta.main(["--first-seed", "-1"])
    with pytest.raises(SystemExit, match="ran there with seed 0: add --compare none"):
        tta.main(["--recipe", "quality", "--first-seed", "1"])


def _records_script():
    """scripts/benchmark_records.py, which docs/benchmarks.md's tables come from."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmark_records", ROOT / "scripts" / "benchmark_records.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_records_page_shows_a_new_record_file(tmp_path):
    """A record file dropped into benchmarks/results/ becomes a table on the next docs build:
    one row per backend and recipe with the median of its seeds, a memory record in MiB, a
    held-out history's last epoch, and the pages that name each file."""
    records = _records_script()
    results, docs = tmp_path / "results", tmp_path / "docs"
    (results / "memory").mkdir(parents=True)
    (results / "held-out").mkdir()
    docs.mkdir()
    (docs / "training.md").write_text("see time_to_accuracy-2027-01-02-new.jsonl")
    run = {"backend": "torch", "recipe": "sprint", "target": 0.9, "capped": False, "epochs": 2}
    run |= {"resize": 67, "batch_size": 128, "batches_per_epoch": 469, "lr": 0.003}
    run |= {"peak_gflops": {"fp32": 100.0, "bf16": None}}
    runs = [  # seeds 0 to 2: medians of 20 s and 150 images/s (means: 30 and 183)
        dict(run, seed=s, train_seconds=t, images_per_s=i, test_acc=a, reached=a >= 0.9)
        for s, t, i, a in [(0, 10.0, 300.0, 0.91), (1, 60.0, 100.0, 0.89), (2, 20.0, 150.0, 0.9)]
    ]
    (results / "time_to_accuracy-2027-01-02-new.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in runs)
    )
    step = {"variant": "a step", "backend": "mxnet", "dtype": "fp32", "size": 224}
    step |= {"batch_size": 128, "measured_bytes": 3 * 2**20, "estimate_bytes": 2**21, "ratio": 1.5}
    (results / "memory" / "m-2027-01-02.jsonl").write_text(json.dumps(step) + "\n")
    recipe = {"name": "quality", "optimizer": "adam", "lr": 0.002}
    history = {"config": {"recipe": recipe, "optimizer": "Adam", "augment": "flip"}}
    history["epochs"] = [{"epoch": 10, "val_acc": 0.93456, "images_per_s": 500.4}]
    (results / "held-out" / "q.history.json").write_text(json.dumps(history))
    (results / "held-out" / "other.jsonl").write_text("{}\n{}\n")

    page = records.records_markdown(results, tmp_path)
    row = (
        "| torch | sprint | timed | 2 epochs (batch 128) at 67x67, lr 0.003, augment none "
        "| 0, 1, 2 | 20 | 150 | 0.9100, 0.8900, 0.9000 | 2 of 3 >= 0.9 |"
    )
    assert row in page.splitlines(), page
    assert "3 runs; machine peak in the same run: fp32 100 GFLOP/s, bf16 not measured; " in page
    assert "quoted in docs/training.md." in page
    assert "| a step | mxnet | fp32 | 224, batch 128 | 3 | 2 | 1.50 |" in page
    assert (
        "| `held-out/q.history.json` | quality | Adam, lr 0.002 | flip | not recorded | 10 " in page
    )
    assert "| 0.9346 | 500 | not quoted in the docs |" in page
    assert "- `held-out/other.jsonl`: 2 records; not quoted in the docs." in page


def test_the_records_page_lists_every_committed_record():
    page = _records_script().records_markdown()
    results = ROOT / "benchmarks" / "results"
    files = [p for p in results.rglob("*") if p.is_file()]
    assert len(files) > 20
    for path in files:
        assert path.name in page, path
