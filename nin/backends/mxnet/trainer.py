"""d2l's Trainer for MXNet: the step, the fast path, the checkpoint's arrays."""

from __future__ import annotations

import warnings

import mxnet as mx
import numpy as onp
from mxnet import autograd, np

from nin import machine as _machine
from nin import training as _training
from nin.backends.mxnet import amx, ops, threads
from nin.backends.mxnet.parallel import Parallel
from nin.errors import Message, arg
from nin.runs import CheckpointError, check_state_fits


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
        arrays.update(_optimizer_arrays(self.optim))
        return arrays

    def _load_state_arrays(self, arrays):
        if "optim/states" in arrays:  # version 1: the bytes of gluon's `save_states`
            where = self.out_dir / "checkpoint.npz" if self.out_dir else "the checkpoint"
            raise CheckpointError(
                Message(
                    "{where} was written by an older nin, which kept MXNet's optimizer state "
                    "as a Python pickle; reading a pickle can run any code, so nin no longer "
                    "does. Start the run again with {overwrite} (the weights.npz beside it "
                    "still loads: nin.weights.load)",
                    where=str(where),
                    overwrite=arg("overwrite", True),
                )
            )
        params = self.model._collect_params_with_prefix()
        check_state_fits(
            {k: p.shape for k, p in params.items()},
            {k[6:]: v for k, v in arrays.items() if k.startswith("model/")},
        )
        for k, p in params.items():
            p.set_data(np.array(arrays[f"model/{k}"], ctx=self.ctx))
        _load_optimizer_arrays(self.optim, arrays)


# The optimizer's state as plain named arrays, where gluon's `save_states` pickles the updater
# and the optimizer object (unpickling a file someone sent runs any code it holds). What a
# resume needs of them: each parameter's state arrays (Adam: mean, var; SGD: its momentum, or
# None) and the update counts (Adam's bias correction reads the per-index count). The lr, wd
# and momentum come from the optimizer the model configures, as in the other backends.


def _leaves(state) -> list:
    """A parameter's optimizer state as a flat list of NDArrays: None (plain SGD) -> [],
    an NDArray -> [it], a tuple or list -> its leaves in order (Adam: [mean, var])."""
    if state is None:
        return []
    if isinstance(state, (tuple, list)):
        return [leaf for part in state for leaf in _leaves(part)]
    if isinstance(state, mx.nd.NDArray):
        return [state]
    raise TypeError(f"an optimizer state of type {type(state).__name__} has no array form")


def _optimizer_arrays(trainer) -> dict[str, onp.ndarray]:
    """`optim/indices` (the parameters that have a state), `optim/state/<index>/<j>` (their
    arrays, the first context's: each context holds the same), `optim/num_update` and
    `optim/update_counts/<device id>` (rows of index, count)."""
    if trainer._update_on_kvstore:  # nin's gluon.Trainers update on each context
        raise NotImplementedError("a checkpoint of an optimizer that updates on the kvstore")
    optimizer, states = trainer._optimizer, trainer._updaters[0].states
    arrays = {"optim/indices": onp.array(sorted(states), dtype=onp.int64)}
    for index in sorted(states):
        for j, leaf in enumerate(_leaves(states[index])):
            arrays[f"optim/state/{index}/{j}"] = leaf.asnumpy()
    arrays["optim/num_update"] = onp.array([optimizer.num_update], dtype=onp.int64)
    for device, counts in optimizer._all_index_update_counts.items():
        rows = onp.array(sorted(counts.items()), dtype=onp.int64).reshape(-1, 2)
        arrays[f"optim/update_counts/{device}"] = rows
    return arrays


def _load_optimizer_arrays(trainer, arrays) -> None:
    """Back into each context's updater: a fresh state per index, on that context, then the
    file's arrays copied in (their shapes checked first, naming the first misfit)."""
    if not trainer._kv_initialized:  # what gluon's `load_states` does first
        trainer._init_kvstore()
    if trainer._params_to_init:
        trainer._init_params()
    optimizer = trainer._optimizer
    indices = [int(i) for i in arrays.get("optim/indices", ())]
    fresh: list[dict] = [{} for _ in trainer._updaters]  # per context: index -> state
    for index in indices:
        if not 0 <= index < len(trainer._params):
            raise CheckpointError(
                f"checkpoint does not fit this model: optimizer state for parameter {index}, "
                f"the model has {len(trainer._params)}"
            )
        for k, weight in enumerate(trainer._params[index].list_data()):
            weight = weight.as_nd_ndarray() if hasattr(weight, "as_nd_ndarray") else weight
            fresh[k][index] = optimizer.create_state_multi_precision(index, weight)
    check_state_fits(
        {
            f"optim/state/{i}/{j}": leaf.shape
            for i in indices
            for j, leaf in enumerate(_leaves(fresh[0][i]))
        },
        arrays,
    )
    for states in fresh:
        for index, state in states.items():
            for j, leaf in enumerate(_leaves(state)):
                leaf[:] = arrays[f"optim/state/{index}/{j}"]
    for updater, states in zip(trainer._updaters, fresh):
        updater.states, updater.states_synced = states, dict.fromkeys(states, True)
    if "optim/num_update" in arrays:
        optimizer.num_update = int(arrays["optim/num_update"][0])
    for key, rows in arrays.items():
        if key.startswith("optim/update_counts/"):
            counts = optimizer._all_index_update_counts.setdefault(int(key.split("/")[-1]), {})
            counts.clear()  # in place: `_index_update_count` is one of these dicts
            counts.update((int(i), int(n)) for i, n in rows.reshape(-1, 2))
