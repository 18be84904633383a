"""Data-parallel PyTorch: one process per device, in the process group `torchrun` starts,
trained through DistributedDataParallel (docs/distributed.md)."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import distributed as dist
from torch import nn

from nin import distributed as _distributed
from nin.backends.torch import ops
from nin.errors import ArgumentError, arg


def _grouped() -> bool:
    """Whether this process is one of several in a torch.distributed process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _TrainingStep(nn.Module):
    """The model's own `training_step` as a module's forward, for DistributedDataParallel to
    wrap: its gradients are then averaged across processes, whatever the step computes."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, X, y):
        return self.model.training_step((X, y))


class Parallel:
    """The Trainer's world (the hooks of nin.distributed.DataParallelMixin: `_process_rank`,
    `_setup_world`, `_parallel_step`, `_all_sum`) for PyTorch."""

    def _process_rank(self):
        return dist.get_rank() if _grouped() else super()._process_rank()

    def _setup_world(self):
        """The process group's world, and this process's device (its local rank's GPU)."""
        available = ops.num_gpus()
        asked = self._replicas_asked(available)
        if not _grouped():
            if asked > 1:
                raise ArgumentError(
                    "PyTorch trains on {asked} devices with one process per device "
                    "(DistributedDataParallel): run `python -m nin train --devices {asked}`, "
                    "or start your script with `torchrun --nproc-per-node {asked}` and call "
                    "`torch.distributed.init_process_group()` before training; one process "
                    "trains on one device ({one})",
                    asked=asked,
                    one=arg("num_gpus", 1),
                )
            self.world = _distributed.SINGLE
            if self.devices is not None:  # one device asked for: a GPU when there is one
                self.gpus = [ops.gpu(0)] if self._local_devices(available)[1] else []
            else:
                self.gpus = [ops.gpu(i) for i in range(min(self.num_gpus, available))]  # d2l's
            return self.gpus[0] if self.gpus else ops.cpu()
        rank, size = dist.get_rank(), dist.get_world_size()
        engine = f"DistributedDataParallel over {dist.get_backend()}"
        self.world = _distributed.World(rank, size, 1, engine)
        if not available:
            self.gpus = []
            return ops.cpu()
        local = int(os.environ.get("LOCAL_RANK", rank % available))  # torchrun's contract
        if local >= available:
            raise ArgumentError(
                "this worker's local rank is {local}, and the machine has {available} GPU(s): "
                "start at most {available} workers a machine ({devices})",
                local=local,
                available=available,
                devices=arg("devices", available),
            )
        torch.cuda.set_device(local)  # NCCL's collectives run on this worker's GPU
        self.gpus = [ops.gpu(local)]
        return self.gpus[0]

    def _wrap_parallel(self, model):
        """DistributedDataParallel around the model's step (None for one process); it
        broadcasts the first process's weights to the others."""
        if not self.world.parallel:
            return None
        on_gpu = self.device.type == "cuda"
        return nn.parallel.DistributedDataParallel(
            _TrainingStep(model), device_ids=[self.device] if on_gpu else None
        )

    def _parallel_step(self, shards):
        """This process's part of a global batch through DistributedDataParallel, which
        averages the gradients over the processes during `backward`: the part's mean loss is
        weighted by its share of the global batch times the number of processes, so that the
        update is the global batch's. Returns this process's part of the global mean loss."""
        (part,) = shards  # one device per process
        X, y = self.prepare_batch(part)
        weight = shards.weights()[0] * self.world.size
        with self._context():
            loss = self._ddp(X, y) * weight
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        if self.gradient_clip_val > 0:  # on the averaged gradients: the global batch's norm
            with torch.no_grad():
                self.clip_gradients(self.gradient_clip_val, self.model)
        self.optim.step()
        return loss.detach() / self.world.size

    def _all_sum(self, values):
        if self.world.size == 1:
            return values
        t = torch.as_tensor(np.asarray(values, dtype=np.float64)).to(self.device)
        dist.all_reduce(t)
        return t.cpu().numpy()
