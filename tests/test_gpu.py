"""Checks that need a CUDA GPU: skipped where there is none (this machine and CI have none;
a lent GPU runs them, docs/gpu.md). benchmarks/gpu.py is the measuring side."""

import pytest

from conftest import needs

torch = pytest.importorskip("torch")
pytestmark = [
    needs("torch"),
    pytest.mark.skipif(
        not torch.cuda.is_available(),
        reason="no CUDA GPU on this machine (CI has none; run on a lent GPU, docs/gpu.md)",
    ),
]


def _trainer(fast, root):
    from nin.backends import get_backend

    B = get_backend("torch")
    data = B.FashionMNIST(batch_size=16, resize=(67, 67), root=root)
    trainer = B.Trainer(
        max_epochs=1,
        num_gpus=1,
        fast=fast,
        limit_train_batches=4,
        limit_val_batches=1,
        progress=False,
        stuck_check=0,
    )
    return B, trainer, data


@pytest.mark.parametrize("fast", [False, True])
def test_no_host_round_trip_inside_the_step(fast, synthetic_root):
    """A batch's transfer and the step raise no implicit synchronization (reading the loss,
    every 10 steps, is the loop's only sync)."""
    B, trainer, data = _trainer(fast, synthetic_root)
    model = B.NiN()
    trainer.prepare(model, data)
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:  # the batch's conversion, its transfer and the step, all inside the window
        for i, batch in enumerate(data.train_dataloader()):
            trainer._train_step(trainer.prepare_batch(batch))
            if i == 2:
                break
    finally:
        torch.cuda.set_sync_debug_mode(0)
    torch.cuda.synchronize()
    assert trainer.device.type == "cuda" and next(model.parameters()).is_cuda


def test_fast_path_turns_on_cudnn_benchmark(synthetic_root):
    B, trainer, data = _trainer(True, synthetic_root)
    trainer.prepare(B.NiN(), data)
    assert torch.backends.cudnn.benchmark is True


def test_batches_arrive_on_the_gpu(synthetic_root):
    B, trainer, data = _trainer(False, synthetic_root)
    trainer.prepare(B.NiN(), data)
    X, y = next(iter(data.train_dataloader()))
    assert X.is_cuda and y.is_cuda and X.dtype == torch.float32
