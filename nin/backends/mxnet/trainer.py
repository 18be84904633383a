"""d2l's Trainer for MXNet: the step, the fast path, the checkpoint's arrays."""

from __future__ import annotations

import os
import tempfile
import warnings

import mxnet as mx
import numpy as onp
from mxnet import autograd, np

from nin import machine as _machine
from nin import training as _training
from nin.backends.mxnet import amx, ops, threads
from nin.backends.mxnet.parallel import Parallel
from nin.runs import check_state_fits


class Trainer(Parallel, _training.TrainerBase):
    """d2l's Trainer for MXNet. Fast path (`fast=True`): convolutions in bf16 on a CPU that has
    it, and hybridize with static allocation and shapes."""

    backend_name = "mxnet"

    FAST_PATH = "hybridized"

    @property
    def FAST_BF16(self) -> str:  # type: ignore[override]  # the start line's words, as set up
        return "convolutions in bf16" + (" on oneDNN's AMX kernels" if amx.STATE == "on" else "")

    def _threads_note(self) -> str:  # on a GPU, the CPU's threads hardly matter
        return threads.STATE if self.ctx.device_type == "cpu" else ""

    def config(self) -> dict:
        return {**super().config(), "omp_threads": threads.COUNT}

    def _prepare(self, model, data):
        self.ctx = self.device = self._setup_world()
        self._rng_base = int(onp.random.randint(0, 2**31 - 1))  # see _start_epoch_rng
        if not self.world.parallel:
            _machine.note_device(self.num_gpus, ops.num_gpus())
        X = _training.sample_batch(data)[0]
        model(X[:1])  # finish deferred initialization
        model.collect_params().reset_ctx(self.ctxs if self.world.parallel else self.ctx)
        data.device = self.ctx
        self.bf16 = self.fast and self.ctx.device_type == "cpu" and _machine.cpu_has_bf16()
        ops.convolutions_in_bf16(model, self.bf16)  # also undoes an earlier fast trainer's
        with warnings.catch_warnings():  # the chapter's nn.Sequential hybridizes its children
            warnings.simplefilter("ignore", UserWarning)
            if self.fast:
                model.hybridize(static_alloc=True, static_shape=True)
            else:
                model.hybridize(False)  # plain: eager, fp32
        optim = model.configure_optimizers()
        if self.world.parallel:
            optim = self._parallel_optimizer(model, optim._optimizer)
        return optim

    def prepare_batch(self, batch):
        """d2l's: the batch on the training context."""
        return [a.as_in_ctx(self.ctx) if hasattr(a, "as_in_ctx") else a for a in batch]

    def clip_gradients(self, grad_clip_val, model):
        """d2l's: scale all gradients down together when their global norm passes the value."""
        grads = [p.grad(self.ctx) for p in model.collect_params().values() if p.grad_req != "null"]
        norm = float(sum((g**2).sum() for g in grads).item()) ** 0.5  # one sync
        if norm > grad_clip_val:
            for g in grads:
                g[:] *= grad_clip_val / norm

    def _train_step(self, batch):
        with autograd.record():
            loss = self.model.training_step(batch)
        loss.backward()
        if self.gradient_clip_val > 0:
            self.clip_gradients(self.gradient_clip_val, self.model)
        self.optim.step(1)  # the loss is already a batch mean
        return loss

    def _eval_step(self, batch):
        self.model.validation_step(batch)

    def _get_lr(self):
        return float(self.optim.learning_rate)

    def _set_lr(self, lr):
        self.optim.set_learning_rate(lr)

    def _optimizer_name(self):  # gluon.Trainer's optimizer, not the Trainer
        return type(self.optim._optimizer).__name__

    def _scale_momentum(self, ratio):
        optimizer = self.optim._optimizer
        if not (isinstance(optimizer, mx.optimizer.SGD) and optimizer.momentum):
            return
        for updater in self.optim._updaters:  # one per context
            for state in updater.states.values():
                momentum = state[0] if isinstance(state, (tuple, list)) else state
                if momentum is not None:
                    momentum[:] *= ratio

    def _to_float(self, value):
        return float(value.item()) if hasattr(value, "item") else float(value)

    def _rng_arrays(self):
        return {"mxnet_base_seed": onp.array([self._rng_base], dtype=onp.int64)}

    def _load_rng_arrays(self, arrays):
        if "mxnet_base_seed" in arrays:
            self._rng_base = int(arrays["mxnet_base_seed"][0])

    def _start_epoch_rng(self, epoch):
        """MXNet's generator state cannot be read back, so each epoch after the first starts
        from a seed of its own (the run's base seed, drawn from NumPy's seeded generator, plus
        the epoch): a resumed run draws the dropout masks an unbroken one would. The first
        epoch draws from the stream the caller seeded, as d2l's Trainer does."""
        if epoch:
            mx.random.seed(self._rng_base + epoch, ctx="all")

    def _state_arrays(self):
        arrays = {
            f"model/{k}": p.list_data()[0].asnumpy()
            for k, p in self.model._collect_params_with_prefix().items()
        }
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "states")
            self.optim.save_states(path)
            with open(path, "rb") as f:
                arrays["optim/states"] = onp.frombuffer(f.read(), dtype=onp.uint8)
        return arrays

    def _load_state_arrays(self, arrays):
        params = self.model._collect_params_with_prefix()
        check_state_fits(
            {k: p.shape for k, p in params.items()},
            {k[6:]: v for k, v in arrays.items() if k.startswith("model/")},
        )
        for k, p in params.items():
            p.set_data(np.array(arrays[f"model/{k}"], ctx=self.ctx))
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, "states")
            with open(path, "wb") as f:
                f.write(arrays["optim/states"].tobytes())
            self.optim.load_states(path)
