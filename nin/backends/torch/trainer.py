"""d2l's Trainer for PyTorch: the step, the fast path, the checkpoint's arrays."""

from __future__ import annotations

import contextlib

import numpy as np
import torch

from nin import machine as _machine
from nin import training as _training
from nin.backends.torch import ops
from nin.backends.torch.parallel import Parallel
from nin.runs import check_state_fits


class Trainer(Parallel, _training.TrainerBase):
    """d2l's Trainer for PyTorch. Fast path (`fast=True`): channels-last and bf16 autocast.
    Several devices: one process each, in the process group `torchrun` starts (`python -m nin
    train --devices N` launches it), trained through DistributedDataParallel."""

    backend_name = "torch"
    FAST_PATH, FAST_BF16 = "channels-last", "bf16 autocast"

    def _prepare(self, model, data):
        self.device = self._setup_world()
        if not self.world.parallel:
            _machine.note_device(self.num_gpus, ops.num_gpus())
        data.device = self.device
        self._materialize(model, data)
        model.to(self.device)
        self._autocast, self.bf16 = None, False
        if self.fast:
            if self.device.type == "cuda":  # fixed shapes: let cuDNN pick its kernels
                torch.backends.cudnn.benchmark = True
            model.to(memory_format=torch.channels_last)
            bf16 = (
                torch.cuda.is_bf16_supported()
                if self.device.type == "cuda"
                else torch.ops.mkldnn._is_mkldnn_bf16_supported()
            )
            self.bf16 = bool(bf16)
            if bf16:
                self._autocast = self.device.type
        else:
            model.to(memory_format=torch.contiguous_format)  # undo an earlier fast trainer's
        self._ddp = self._wrap_parallel(model)
        return model.configure_optimizers()

    def _materialize(self, model, data):
        """Run one batch through lazy layers so the optimizer sees every parameter."""
        lazy = torch.nn.parameter.UninitializedParameter
        if any(isinstance(p, lazy) for p in model.parameters()):
            X = _training.sample_batch(data)[0]
            with torch.no_grad():
                model(X[:1].cpu())

    def _context(self):
        if self._autocast:
            return torch.autocast(self._autocast, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def prepare_batch(self, batch):
        """d2l's: the batch on the training device (channels-last on the fast path)."""
        batch = [a.to(self.device, non_blocking=True) if torch.is_tensor(a) else a for a in batch]
        if self.fast and batch[0].dim() == 4:
            batch[0] = batch[0].contiguous(memory_format=torch.channels_last)
        return batch

    def clip_gradients(self, grad_clip_val, model):
        """d2l's: scale all gradients down together when their global norm passes the value."""
        params = [p for p in model.parameters() if p.requires_grad and p.grad is not None]
        norm = torch.sqrt(sum(torch.sum(p.grad**2) for p in params))
        if norm > grad_clip_val:
            for param in params:
                param.grad[:] *= grad_clip_val / norm

    def _train_step(self, batch):
        with self._context():
            loss = self.model.training_step(batch)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        if self.gradient_clip_val > 0:
            with torch.no_grad():
                self.clip_gradients(self.gradient_clip_val, self.model)
        self.optim.step()
        return loss.detach()

    def _eval_step(self, batch):
        with torch.inference_mode(), self._context():
            self.model.validation_step(batch)

    def _train_mode(self, on):
        self.model.train(on)

    def _get_lr(self):
        return float(self.optim.param_groups[0]["lr"])

    def _set_lr(self, lr):
        for group in self.optim.param_groups:
            group["lr"] = lr

    def _to_float(self, value):
        return float(value)

    def _rng_arrays(self):
        """PyTorch's generators (dropout draws from them): restored, a resumed run draws what
        an unbroken one would."""
        arrays = {"torch_cpu": torch.get_rng_state().numpy()}
        if torch.cuda.is_available():
            for i, state in enumerate(torch.cuda.get_rng_state_all()):
                arrays[f"torch_cuda{i}"] = state.cpu().numpy()
        return arrays

    def _load_rng_arrays(self, arrays):
        if "torch_cpu" in arrays:
            torch.set_rng_state(torch.from_numpy(arrays["torch_cpu"]))
        cuda = [
            arrays[f"torch_cuda{i}"]
            for i in range(torch.cuda.device_count())
            if f"torch_cuda{i}" in arrays
        ]
        if cuda:
            torch.cuda.set_rng_state_all([torch.from_numpy(a) for a in cuda])

    def _state_arrays(self):
        arrays = {
            f"model/{k}": ops.to_numpy(v) if v.is_floating_point() else v.cpu().numpy()
            for k, v in self.model.state_dict().items()
        }
        for i, state in self.optim.state_dict()["state"].items():
            for k, v in state.items():
                arrays[f"optim/{i}/{k}"] = ops.to_numpy(v) if torch.is_tensor(v) else np.asarray(v)
        return arrays

    def _load_state_arrays(self, arrays):
        model_state = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
        check_state_fits({k: v.shape for k, v in self.model.state_dict().items()}, model_state)
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in model_state.items()})
        state = self.optim.state_dict()
        for key, value in arrays.items():
            if key.startswith("optim/"):
                _, i, name = key.split("/")
                state["state"].setdefault(int(i), {})[name] = torch.from_numpy(value)
        self.optim.load_state_dict(state)
