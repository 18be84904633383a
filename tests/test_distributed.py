"""Data parallelism (nin.distributed, docs/distributed.md): the split of the global batch,
each framework's engine against one device, one writer, resume, and the errors."""

import json
import os
import subprocess
import sys
import threading

import numpy as np
import pytest

from conftest import ROOT, needs
from nin import compare
from nin.data import BatchSource, Loader
from nin.distributed import (
    Layout,
    ShardedLoader,
    Shards,
    World,
    check_layout,
    free_port,
    parse_master,
    part_slices,
    rendezvous,
)

# the tolerances: losses to 1e-4, final weights to 1e-4 relative
LOSS_TOL, WEIGHT_TOL = 1e-4, 1e-4


def test_a_global_batch_is_cut_in_order_into_near_equal_parts():
    assert part_slices(10, 3) == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert part_slices(4, 4) == [slice(i, i + 1) for i in range(4)]
    world = World(rank=1, size=2, local=2)  # replicas 2 and 3 of 4
    assert world.my_parts(16) == [slice(8, 12), slice(12, 16)]
    assert world.my_share(16) == slice(8, 16)
    assert World(rank=0, size=3).my_share(7) == slice(0, 3)
    assert not World().parallel and World(size=2).parallel and World(local=2).parallel
    assert World(rank=0, size=2).is_writer and not World(rank=1, size=2).is_writer


def test_each_process_reads_its_parts_of_the_same_global_batches():
    images = np.arange(20 * 2 * 2, dtype=np.uint8).reshape(20, 2, 2)
    labels = np.arange(20)

    def loader():
        return Loader(BatchSource(images, labels, 8, shuffle=True, seed=3), lambda x, y: (x, y))

    whole = [y for _, y in loader()]
    seen = []
    for rank in range(2):
        world = World(rank=rank, size=2, local=2)
        batches = list(ShardedLoader(loader(), world, by_replica=True))
        assert all(isinstance(b, Shards) and len(b) == 2 for b in batches)
        assert [b.total for b in batches] == [8, 8, 4]
        assert batches[0].weights() == [0.25, 0.25]
        seen.append([np.concatenate([y for _, y in b]) for b in batches])
        val = list(ShardedLoader(loader(), world, by_replica=False))  # a share, one batch
        assert [len(y) for _, y in val] == [4, 4, 2]
    for i, batch in enumerate(whole):  # the processes' parts, in rank order, are the batch
        np.testing.assert_array_equal(np.concatenate([seen[0][i], seen[1][i]]), batch)


def test_a_batch_too_small_for_the_replicas_is_refused_by_name():
    source = BatchSource(np.zeros((9, 2, 2), np.uint8), np.zeros(9), 4, shuffle=False)
    sharded = ShardedLoader(Loader(source, None), World(size=2, local=2), by_replica=True)
    with pytest.raises(ValueError, match=r"batches of 1 example\(s\) cannot be split across 4"):
        sharded.check_splits("training")


def test_the_layout_of_machines_is_checked_before_anything_starts():
    with pytest.raises(ValueError, match="--node-rank 2 is not one of the 2 machines"):
        check_layout(1, 2, 2, "h:1")
    with pytest.raises(ValueError, match="give --master HOST:PORT"):
        check_layout(1, 2, 1, None)
    for bad in ("host", "host:", ":80", "host:port", "host:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_master(bad)
    assert parse_master("10.0.0.1:29500") == ("10.0.0.1", 29500)


def test_the_machines_learn_each_others_addresses_from_the_first():
    master, got = f"127.0.0.1:{free_port()}", {}

    def node(rank):
        got[rank] = rendezvous(master, rank, 3, 1000 + rank, timeout=30)

    threads = [threading.Thread(target=node, args=(r,)) for r in (2, 1, 0)]  # any order
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    expected = ["127.0.0.1:1000", "127.0.0.1:1001", "127.0.0.1:1002"]
    assert got == {0: expected, 1: expected, 2: expected}


def test_a_machine_that_never_comes_is_named_after_the_wait():
    with pytest.raises(RuntimeError, match="1 of the 2 machines did not reach"):
        rendezvous(f"127.0.0.1:{free_port()}", 0, 2, 1000, timeout=0.5)


def _records(args, root):
    """`python -m nin compare --data-parallel 2 ... --json`: one JSON record a line."""
    cmd = [sys.executable, "-m", "nin", "compare", "--data-parallel", "2", "--json"]
    cmd += ["--data-dir", str(root), *args]
    env = dict(os.environ)
    env.pop("NIN_QUICK", None)
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


ENGINES = {
    "torch": "DistributedDataParallel over gloo",
    "mxnet": "Gluon, kvstore device",
    "tensorflow": "MirroredStrategy",
    "jax": "jax.pmap",
}
MACHINE_ENGINES = {  # (JAX 0.4.23 sums nothing across processes on CPUs: one machine only)
    "torch": "DistributedDataParallel over gloo",
    "mxnet": "Gluon, kvstore dist_sync",
    "tensorflow": "MultiWorkerMirroredStrategy",
}


@pytest.mark.parametrize("machines", [False, True], ids=["one-machine", "two-machines"])
def test_two_replicas_train_what_one_device_trains(backend, machines, synthetic_root):
    """Each framework's engine (two processes for PyTorch, two CPU devices in one process for
    TensorFlow's MirroredStrategy and MXNet's contexts; as two machines on 127.0.0.1:
    torchrun's node ranks, MultiWorkerMirroredStrategy, MXNet's dist_sync with its scheduler
    and server) against one device, 10 steps on the same global batches."""
    expected = MACHINE_ENGINES if machines else ENGINES
    if backend not in expected:
        pytest.skip(f"{backend} trains one machine's devices only (its launch refuses --nnodes)")
    args = ["--backends", backend, "--train-steps", "10"]
    records = _records(args + (["--machines"] if machines else []), synthetic_root)
    assert [r["backend"] for r in records] == [backend]
    for r in records:
        assert set(r) == {
            "backend",
            "workers",
            "steps",
            "engine",
            "max_loss_diff",
            "max_weight_rel_diff",
            "worst_array",
            "worst_array_rel_diff",
            "val_loss_diff",
        }
        assert (r["workers"], r["steps"], r["engine"]) == (2, 10, expected[r["backend"]])
        assert r["max_loss_diff"] < LOSS_TOL, r
        assert r["max_weight_rel_diff"] < WEIGHT_TOL, r
        assert r["val_loss_diff"] < LOSS_TOL, r  # validation split and summed alike


def test_the_check_would_see_a_model_that_is_not_the_global_batch_s(synthetic_root, tmp_path):
    """The comparison is not blind: two runs on different batches (another seed) are far
    apart by the same measures."""
    out = {}
    for seed in (0, 1):
        env = dict(os.environ, OMP_NUM_THREADS="1")
        cmd = [sys.executable, "-m", "nin", "train", "--backend", "torch", "--epochs", "1"]
        cmd += ["--resize", "67", "--batch-size", "16", "--limit-train-batches", "10"]
        cmd += ["--limit-val-batches", "1", "--no-fast", "--dropout", "0", "--recipe", "book"]
        cmd += ["--lr", str(compare.DP_LR), "--class-block-relu", "none", "--seed", str(seed)]
        cmd += ["--data-dir", str(synthetic_root), "--out", str(tmp_path / str(seed))]
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        with np.load(tmp_path / str(seed) / "weights.npz") as f:
            out[seed] = {k: f[k] for k in f.files if f[k].dtype.kind == "f"}
    diff = max(np.linalg.norm(out[0][k] - out[1][k]) / np.linalg.norm(out[0][k]) for k in out[0])
    assert diff > 100 * WEIGHT_TOL


def _train(args, out, root, timeout=600):
    cmd = [sys.executable, "-m", "nin", "train", "--epochs", "1", "--resize", "67"]
    cmd += ["--batch-size", "16", "--limit-train-batches", "4", "--limit-val-batches", "2"]
    cmd += ["--data-dir", str(root), "--out", str(out), *args]
    env = dict(os.environ)
    env.pop("NIN_QUICK", None)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=env, timeout=timeout)


@needs("torch")
def test_train_devices_2_writes_one_run_and_resumes_on_another_count(synthetic_root, tmp_path):
    out = tmp_path / "run"
    constant = ["--schedule", "constant"]  # so that the run can go on for another epoch
    done = _train(["--backend", "torch", "--devices", "2", *constant], out, synthetic_root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["board.png", "checkpoint.npz", "history.json", "weights.npz"]
    )
    assert done.stdout.count("epoch 1: train_loss") == 1  # one writer prints
    assert done.stdout.count("nin: done.") == 1
    history = json.loads((out / "history.json").read_text())
    assert history["config"]["replicas"] == 2
    assert history["config"]["engine"] == "DistributedDataParallel over gloo"
    assert len(history["steps"]) == 4  # each step once, its loss summed over the workers
    # the same run, one more epoch, on one device: the global batch is what counts
    more = _train(
        ["--backend", "torch", "--epochs", "2", "--resume", *constant], out, synthetic_root
    )
    assert more.returncode == 0, more.stderr[-3000:]
    assert "resumed from" in more.stdout
    history = json.loads((out / "history.json").read_text())
    assert [e["epoch"] for e in history["epochs"]] == [1, 2]
    assert history["config"]["replicas"] == 1


@needs("torch")
def test_a_failing_worker_ends_the_run_with_its_error(synthetic_root, tmp_path):
    """A bad setting fails in every worker, and the launcher returns the failure (no hang)."""
    done = _train(
        ["--backend", "torch", "--devices", "2", "--batch-size", "1"],
        tmp_path / "run",
        synthetic_root,
        timeout=300,
    )
    assert done.returncode != 0
    assert "cannot be split across 2 replicas" in done.stdout + done.stderr


@needs("torch")
def test_pytorch_in_one_process_says_how_to_use_several_devices():
    from nin.backends import torch as B

    trainer = B.Trainer(max_epochs=1, devices=2, progress=False)
    with pytest.raises(ValueError, match="one process per device.*--devices 2.*torchrun"):
        trainer._setup_world()


@needs("tensorflow")
def test_tensorflow_refuses_a_model_built_outside_the_strategy(synthetic_root):
    code = (
        "from nin.backends import tensorflow as B\n"
        "B.use_cpu_devices(2)\n"
        f"data = B.FashionMNIST(batch_size=8, resize=(67, 67), root={str(synthetic_root)!r})\n"
        "model = B.NiN()\n"
        "model(B.normal((1, 67, 67, 1)))\n"
        "try:\n"
        "    B.Trainer(max_epochs=1, devices=2, progress=False).fit(model, data)\n"
        "except ValueError as err:\n"
        "    print('refused:', err)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    assert "refused: the model's variables already exist" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--nnodes", "2"], "give --master HOST:PORT"),
        (["--nnodes", "2", "--node-rank", "3", "--master", "h:1"], "--node-rank 3 is not"),
        (["--node-rank", "1"], "--node-rank 1 is not one of the 1 machines"),
        (["--master", "nowhere"], "HOST:PORT"),
    ],
)
def test_the_cli_names_a_bad_layout_before_any_work(argv, message, backend, tmp_path, capsys):
    from nin.cli import main

    rc = main(["train", "--backend", backend, "--out", str(tmp_path / "r"), *argv])
    assert rc == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def _refusal(backend, argv, tmp_path, capsys) -> str:
    from nin.cli import main

    rc = main(["train", "--backend", backend, "--out", str(tmp_path / "r"), *argv])
    assert rc == 2 and not (tmp_path / "r").exists()
    return capsys.readouterr().err


def test_a_backend_s_own_layout_limits_are_named_before_any_work(backend, tmp_path, capsys):
    """Each backend's launch hook (`Launch.check`) refuses what its engine cannot run; the
    command line only asks it. PyTorch's torchrun takes --master on one machine."""
    from nin.backends import get_backend

    err = _refusal(backend, ["--tta", "flip", "--devices", "2"], tmp_path, capsys)
    assert "--tta scores the model in one process after training" in err
    if backend == "torch":
        assert get_backend(backend).launch.Launch(Layout(master="h:1")).starts_workers()
        return
    err = _refusal(backend, ["--master", "127.0.0.1:1"], tmp_path, capsys)
    assert f"{backend} trains one machine's devices in one process: drop --master" in err
    if backend == "tensorflow" and not get_backend(backend).num_gpus():
        layout = ["--nnodes", "2", "--master", "127.0.0.1:1", "--devices", "2"]
        err = _refusal(backend, layout, tmp_path, capsys)
        assert "MultiWorkerMirroredStrategy runs one CPU replica a machine" in err
    if backend not in MACHINE_ENGINES:  # one machine only: --nnodes refused, saying why
        err = _refusal(backend, ["--nnodes", "2", "--master", "127.0.0.1:1"], tmp_path, capsys)
        assert "sums nothing across machines" in err


@pytest.mark.parametrize(
    "hint, says",
    [
        ("", "start every machine with the same --nnodes and --master"),  # the rendezvous's
        ("another worker ended before it", "another worker ended before it"),  # the end's
    ],
)
def test_a_wait_that_never_ends_ends_the_process_saying_why(hint, says):
    """`within`: the rendezvous and the workers' last barrier give up after their time,
    with exit code 3 and what to look at, instead of waiting for ever."""
    code = (
        "import time\n"
        "from nin.distributed import within\n"
        f"within(1, 'meet the others', time.sleep, 60, hint={hint!r})\n"
        "print('returned')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60
    )
    assert done.returncode == 3 and "returned" not in done.stdout
    assert f"error: could not meet the others within 1 s: {says}" in done.stderr


STOP_SCRIPT = """
import sys
from torch import distributed as dist
from nin.backends import torch as B
from nin.callbacks import Callback

class StopOnOneRank(Callback):  # one process asks to stop after the epoch's last sync
    def on_batch_end(self, trainer):
        if dist.get_rank() == 1 and trainer.train_batch_idx == trainer.num_train_batches:
            trainer.stop_training = True

dist.init_process_group("gloo")
B.set_seed(0)
data = B.FashionMNIST(batch_size=8, resize=(67, 67), root=sys.argv[1])
trainer = B.Trainer(max_epochs=3, devices=2, limit_train_batches=3, limit_val_batches=1,
                    progress=False, stuck_check=0, callbacks=[StopOnOneRank()])
history = trainer.fit(B.NiN(recipe="nin"), data)
print(f"rank {dist.get_rank()} trained {len(history.epochs)} epoch(s)", flush=True)
del trainer  # its DistributedDataParallel holds the process group
dist.barrier()  # docs/distributed.md's end of a torchrun script
dist.destroy_process_group()
"""


@needs("torch")
def test_a_stop_one_process_asks_for_ends_every_process(synthetic_root, tmp_path):
    """A callback on one rank stops the run at an epoch's end: all ranks stop there (before,
    the others went on into the next epoch and waited for it for ever)."""
    script = tmp_path / "stop.py"
    script.write_text(STOP_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2"]
    done = subprocess.run(
        [*cmd, str(script), str(synthetic_root)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "rank 0 trained 1 epoch(s)" in done.stdout
    assert "rank 1 trained 1 epoch(s)" in done.stdout


@needs("mxnet", "tensorflow")
@pytest.mark.parametrize("backend", ["mxnet", "tensorflow"])
def test_train_devices_2_on_the_fast_path(backend, synthetic_root, tmp_path):
    """MXNet's hybridized contexts and TensorFlow's compiled MirroredStrategy step (the
    default fast path; the equality checks run the plain fp32 step): one run's files."""
    done = _train(["--backend", backend, "--devices", "2"], tmp_path / "run", synthetic_root)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    history = json.loads((tmp_path / "run" / "history.json").read_text())
    assert history["config"]["replicas"] == 2 and history["config"]["fast"]
    assert len(history["steps"]) == 4 and all(np.isfinite(s[1]) for s in history["steps"])
    assert (tmp_path / "run" / "weights.npz").exists()
