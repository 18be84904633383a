"""d2l's Trainer for Flax: the TrainState, the step, the fast path, the checkpoint's arrays."""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np
from flax.training import train_state
from jax import numpy as jnp

from nin import machine as _machine
from nin import training as _training
from nin.backends.jax import ops
from nin.backends.jax.model import Classifier
from nin.backends.jax.parallel import Parallel
from nin.runs import check_state_fits


class TrainState(train_state.TrainState):
    """d2l's: the weights, the optimizer and its state, the batch statistics (none in NiN)
    and the key of the next step's dropout masks."""

    batch_stats: Any
    dropout_rng: Any


class Trainer(Parallel, _training.TrainerBase):
    """d2l's Trainer for JAX: `fit(model, data, key=None)`; `key` (default: the next key of
    the stream `set_seed` starts) draws the weights of a model without them and the dropout
    masks. The weights train in `self.state` (a TrainState); nin's `NiN` gets them back after
    every step (`model.net`). Fast path (`fast=True`): the whole step (forward, gradient,
    update) compiled by XLA as one program (`jax.jit`); the plain step is d2l's, its loss
    compiled, its update not. Where bf16 is native (a GPU, a CPU with AVX-512 BF16 or AMX),
    the fast path computes nin's NiN in bf16 (its `compute_dtype`), the weights and the loss
    in fp32."""

    backend_name = "jax"
    FAST_PATH, FAST_BF16 = "jit-compiled step", "bf16 compute, fp32 weights"

    def fit(self, model, data, key=None):
        self._key = key
        return super().fit(model, data)

    def _prepare(self, model, data):
        self._setup_world()
        gpus = ops.num_gpus()
        self.gpus = [ops.gpu(i) for i in range(min(self.num_gpus, gpus))]  # d2l's
        if self.devices is not None:
            self.gpus = self.gpus[:1] if self._local_devices(gpus)[1] else []
        self.device = self.gpus[0] if self.gpus else ops.cpu()
        if self.world.parallel:  # the first replica holds the state
            self.device = self._replicas[0]
        else:
            _machine.note_device(self.num_gpus, gpus)
        data.device = self.device
        # bf16 where native, for a model that can compute in it (nin's NiN); a plain step
        # undoes an earlier fast trainer's
        can = "compute_dtype" in {f.name for f in dataclasses.fields(model)}
        native = self.device.platform == "gpu" or _machine.cpu_has_bf16()
        self.bf16 = bool(self.fast and can and native)
        if can:
            model.compute_dtype = "bfloat16" if self.bf16 else None
        key = getattr(self, "_key", None)
        params_key, dropout_key = jax.random.split(ops.get_key() if key is None else key)
        X = _training.sample_batch(data)[0]
        with jax.default_device(self.device):
            variables = model._initial_variables(
                (X[:1],), {"params": params_key, "dropout": dropout_key}
            )
            optim = model.configure_optimizers()
            self.state = TrainState.create(
                apply_fn=model.apply,
                params=jax.device_put(variables["params"], self.device),
                batch_stats=variables.get("batch_stats", {}),
                dropout_rng=dropout_key,
                tx=optim,
            )
        donate = (0,) if self.device.platform != "cpu" else ()  # (XLA's CPU keeps its buffers)
        self._step_fn = jax.jit(self._step, donate_argnums=donate) if self.fast else self._step
        self._eval_fn = jax.jit(self._eval) if self.fast else self._eval
        return optim

    def prepare_batch(self, batch):
        """d2l's: the batch on the training device."""
        return [jax.device_put(a, self.device) for a in batch]

    def clip_gradients(self, grad_clip_val, grads):
        """d2l's: every gradient scaled down together when their global norm passes the
        value."""
        norm = jnp.sqrt(sum(jnp.vdot(g, g) for g in jax.tree_util.tree_leaves(grads)))
        scale = jnp.where(norm < grad_clip_val, 1.0, grad_clip_val / norm)
        return jax.tree_util.tree_map(lambda g: g * scale, grads)

    def _step(self, state, X, y):
        """d2l's step: the model's `training_step`, the update, the next dropout key."""
        (loss, aux), grads = self.model.training_step(state.params, (X, y), state)
        if self.gradient_clip_val > 0:
            grads = self.clip_gradients(self.gradient_clip_val, grads)
        state = state.apply_gradients(grads=grads)
        if aux and "batch_stats" in aux:
            state = state.replace(batch_stats=aux["batch_stats"])
        state = state.replace(dropout_rng=jax.random.split(state.dropout_rng)[0])
        return state, loss

    def _eval(self, state, X, y):
        loss, _ = self.model.loss(state.params, (X,), y, state)
        return loss, self.model.accuracy(state.params, (X,), y, state)

    def _train_step(self, batch):
        self.state, loss = self._step_fn(self.state, *batch)
        self.model._trained(self.state.params)
        return loss

    def _eval_step(self, batch):
        if not self.fast or type(self.model).validation_step is not Classifier.validation_step:
            return self.model.validation_step(self.state.params, batch, self.state)
        loss, acc = self._eval_fn(self.state, *batch)  # compiled: metrics come back as values
        self.model.plot("loss", loss, train=False)
        self.model.plot("acc", acc, train=False)

    def _train_mode(self, on):
        self.model.training = on  # a field: Flax's `apply` makes the module with it

    def _get_lr(self):
        hyperparams = getattr(self.state.opt_state, "hyperparams", None)
        if hyperparams is None:  # an optax optimizer of the caller's, its lr inside
            return float(self.model.lr)
        return float(hyperparams["learning_rate"])

    def _set_lr(self, lr):
        opt_state = self.state.opt_state
        if getattr(opt_state, "hyperparams", None) is None:
            raise ValueError(
                "this optimizer's lr cannot be changed: build it with "
                "`optax.inject_hyperparams`, as nin's `_optimizer` does, to schedule it"
            )
        hyperparams = dict(opt_state.hyperparams, learning_rate=jnp.asarray(lr, jnp.float32))
        self.state = self.state.replace(opt_state=opt_state._replace(hyperparams=hyperparams))

    def _optimizer_name(self):
        return getattr(self.optim, "name", type(self.optim).__name__)

    def _to_float(self, value):
        return float(value)

    def _rng_arrays(self):
        """The key of the next dropout masks: restored, a resumed run draws what an unbroken
        one would."""
        return {"jax_dropout": np.asarray(jax.random.key_data(self.state.dropout_rng))}

    def _load_rng_arrays(self, arrays):
        if "jax_dropout" in arrays:
            key = jnp.asarray(arrays["jax_dropout"], jnp.uint32)
            self.state = self.state.replace(dropout_rng=jax.device_put(key, self.device))

    def _state_trees(self) -> dict:
        return {
            "model": self.state.params,
            "stats": self.state.batch_stats,
            "optim": (self.state.step, self.state.opt_state),
        }

    def _state_arrays(self):
        arrays = {}
        for group, tree in self._state_trees().items():
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
                arrays[f"{group}/{jax.tree_util.keystr(path)}"] = np.asarray(leaf)
        return arrays

    def _load_state_arrays(self, arrays):
        trees = self._state_trees()
        own = {
            f"{group}/{jax.tree_util.keystr(path)}": leaf
            for group, tree in trees.items()
            for path, leaf in jax.tree_util.tree_leaves_with_path(tree)
        }
        check_state_fits({k: np.shape(v) for k, v in own.items()}, arrays)
        loaded = {}
        for group, tree in trees.items():
            paths, treedef = jax.tree_util.tree_flatten_with_path(tree)
            leaves = [
                jax.device_put(
                    np.asarray(arrays[f"{group}/{jax.tree_util.keystr(p)}"], np.asarray(x).dtype),
                    self.device,
                )
                for p, x in paths
            ]
            loaded[group] = jax.tree_util.tree_unflatten(treedef, leaves)
        step, opt_state = loaded["optim"]
        self.state = self.state.replace(
            params=loaded["model"], batch_stats=loaded["stats"], step=step, opt_state=opt_state
        )
        self.model._trained(self.state.params)
