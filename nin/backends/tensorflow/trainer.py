"""d2l's Trainer for Keras: the device, the step, the fast path, the checkpoint's arrays."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nin import machine as _machine
from nin import training as _training
from nin.backends.tensorflow import ops
from nin.backends.tensorflow.parallel import Parallel
from nin.runs import check_state_fits


def _scope_device() -> str:
    """The device of the caller's `with tf.device(...)` scope ('' outside any scope)."""
    from tensorflow.python.eager import context

    return context.context().device_name or ""


def training_device(requested_gpus: int, available_gpus: int, scope: str = "") -> str:
    """Where the Trainer runs: the first GPU when one is asked for and present; else the
    caller's device scope (the chapter's `with d2l.try_gpu():`), else the CPU."""
    if requested_gpus and available_gpus:
        return "/GPU:0"
    return scope or "/CPU:0"


class Trainer(Parallel, _training.TrainerBase):
    """d2l's Trainer for Keras. Fast path (`fast=True`): `tf.function` steps and a mixed bf16
    policy (on a GPU, or a CPU with native bf16). The device: see `training_device`.
    Several devices: `tf.distribute.MirroredStrategy` over them (logical CPU devices on a
    machine without GPUs), or the strategy given as `engine` (MultiWorkerMirroredStrategy
    for several machines)."""

    backend_name = "tensorflow"
    FAST_PATH, FAST_BF16 = "tf.function steps", "mixed bf16 policy"

    def _prepare(self, model, data):
        self._setup_world()
        if self.strategy is not None:
            return self._prepare_parallel(model, data)
        self.gpus = [f"/GPU:{i}" for i in range(min(self.num_gpus, ops.num_gpus()))]  # d2l's
        asked = self.num_gpus  # d2l's; `devices=1` asks for a GPU when there is one
        if self.devices is not None:
            asked = int(self._local_devices(ops.num_gpus())[1])
        self.device = training_device(asked, ops.num_gpus(), _scope_device())
        _machine.note_device(self.num_gpus, ops.num_gpus())
        data.device = self.device
        on_gpu = "GPU" in self.device.upper()
        self.bf16 = self.fast and (on_gpu or _machine.cpu_has_bf16())
        X = _training.sample_batch(data)[0]
        with tf.device(self.device):
            # built or not: what `bf16` says is what the step computes in, and a plain trainer
            # undoes an earlier fast one's bf16
            ops.compute_in_bf16(model.net, self.bf16)
            model(X[:1], training=False)  # build the variables
            self._dropout_generators()  # and the dropout generators' state, eagerly
        optim = model.configure_optimizers()
        optim.build(model.trainable_variables)
        self._step_fn = tf.function(self._step, reduce_retracing=True) if self.fast else self._step
        self._eval_fn = tf.function(self._eval, reduce_retracing=True) if self.fast else self._eval
        return optim

    def clip_gradients(self, grad_clip_val, grads):
        """d2l's: the gradients scaled down together when their global norm passes the value."""
        return tf.clip_by_global_norm(grads, grad_clip_val)[0]

    def _step(self, X, y):
        with tf.GradientTape() as tape:
            loss = self.model.training_step((X, y))
        grads = tape.gradient(loss, self.model.trainable_variables)
        if self.gradient_clip_val > 0:
            grads = self.clip_gradients(self.gradient_clip_val, grads)
        self.optim.apply_gradients(zip(grads, self.model.trainable_variables))
        return loss

    def _eval(self, X, y):
        Y_hat = self.model(X, training=False)
        return self.model.loss(Y_hat, y), self.model.accuracy(Y_hat, y)

    def _train_mode(self, on):
        self.model.training = on

    def _train_step(self, batch):
        with tf.device(self.device):
            return self._step_fn(*batch)

    def _eval_step(self, batch):
        with tf.device(self.device):
            if not self.fast or _training.overrides_validation_step(self.model):
                return self.model.validation_step(batch)  # the user's, as written
            loss, acc = self._eval_fn(*batch)  # compiled: metrics come back as values
        self.model.plot("loss", loss, train=False)
        self.model.plot("acc", acc, train=False)

    def _get_lr(self):
        return float(self.optim.learning_rate.numpy())

    def _set_lr(self, lr):
        self.optim.learning_rate.assign(lr)

    def _scale_momentum(self, ratio):
        if isinstance(self.optim, tf.keras.optimizers.SGD) and self.optim.momentum:
            for momentum in getattr(self.optim, "momentums", ()):  # built at the first step
                momentum.assign(momentum * ratio)

    def _to_float(self, value):
        return float(np.asarray(value))

    def _dropout_generators(self):
        """The tf.random.Generator of each Dropout built by `build` (force_generator=True);
        Keras' legacy dropout, as the chapter's own cells build it, has no state to save."""
        generators = []
        for layer in ops.leaf_layers(self.model.net):
            rng = getattr(layer, "_random_generator", None)
            if isinstance(layer, tf.keras.layers.Dropout) and rng is not None:
                rng._maybe_init()
                if getattr(rng, "_generator", None) is not None:
                    generators.append(rng._generator)
        return generators

    def _rng_arrays(self):
        return {f"tf_dropout{i}": g.state.numpy() for i, g in enumerate(self._dropout_generators())}

    def _load_rng_arrays(self, arrays):
        for i, g in enumerate(self._dropout_generators()):
            if f"tf_dropout{i}" in arrays:
                g.state.assign(arrays[f"tf_dropout{i}"])

    def _state_arrays(self):
        arrays = {f"model/{i}": v.numpy() for i, v in enumerate(self.model.variables)}
        arrays.update({f"optim/{i}": v.numpy() for i, v in enumerate(self.optim.variables)})
        return arrays

    def _load_state_arrays(self, arrays):
        groups = (("model", self.model.variables), ("optim", self.optim.variables))
        check_state_fits(
            {f"{g} variable {i} ({v.name})": v.shape for g, vs in groups for i, v in enumerate(vs)},
            {
                f"{g} variable {i} ({v.name})": arrays[f"{g}/{i}"]
                for g, vs in groups
                for i, v in enumerate(vs)
                if f"{g}/{i}" in arrays
            },
        )
        for group, variables in groups:
            for i, v in enumerate(variables):
                v.assign(arrays[f"{group}/{i}"])
