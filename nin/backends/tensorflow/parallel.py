"""Data-parallel TensorFlow: MirroredStrategy over a machine's devices (logical CPU devices
where there is no GPU), MultiWorkerMirroredStrategy over machines (docs/distributed.md)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from nin import distributed as _distributed
from nin import machine as _machine
from nin import training as _training
from nin.backends.tensorflow import ops


def use_cpu_devices(count: int) -> None:
    """Split the CPU into `count` logical devices, for MirroredStrategy on a machine without
    GPUs; TensorFlow allows it only before it has run anything (the CLI does it first)."""
    cpu_device = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu_device) or ()) >= count:
        return  # (listing the logical devices would start TensorFlow)
    try:
        tf.config.set_logical_device_configuration(
            cpu_device, [tf.config.LogicalDeviceConfiguration()] * count
        )
    except RuntimeError:
        raise RuntimeError(
            f"TensorFlow has already started, and can no longer split the CPU into {count} "
            f"devices for MirroredStrategy: call `use_cpu_devices({count})` (from "
            f"nin.backends.tensorflow) before TensorFlow runs anything, e.g. in the first cell"
        ) from None


def multi_worker_strategy(workers: list[str], rank: int, gpus: int = 0, timeout: float = 600):
    """A MultiWorkerMirroredStrategy over `workers` (each HOST:PORT, in rank order), this
    process being worker `rank` with `gpus` GPUs (0: one CPU replica): from an explicit
    cluster, not the TF_CONFIG variable. A collective that waits longer than `timeout`
    seconds for a peer raises."""
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec({"worker": workers}),
        task_type="worker",
        task_id=rank,
        num_accelerators={"GPU": gpus} if gpus else None,
    )
    options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout)
    strategy = tf.distribute.MultiWorkerMirroredStrategy(
        cluster_resolver=resolver, communication_options=options
    )
    expected = len(workers) * max(1, gpus)
    if strategy.num_replicas_in_sync != expected:
        raise RuntimeError(
            f"MultiWorkerMirroredStrategy has {strategy.num_replicas_in_sync} replicas, not the "
            f"{expected} asked for ({len(workers)} machines x {max(1, gpus)})"
        )
    return strategy


def _strategy_world(strategy) -> "_distributed.World":
    """Where this process stands in `strategy`: a MultiWorkerMirroredStrategy's task among
    its workers, each with its share of the replicas."""
    resolver = getattr(strategy, "cluster_resolver", None)
    workers, rank = 1, 0
    if resolver is not None and set(resolver.cluster_spec().as_dict()) - {"worker"}:
        raise ValueError(
            f"a cluster of {sorted(resolver.cluster_spec().as_dict())} tasks: nin's Trainer "
            f"runs MultiWorkerMirroredStrategy over 'worker' tasks only (no chief), worker 0 "
            f"writing"
        )
    if resolver is not None and resolver.task_type:
        workers = max(1, len(resolver.cluster_spec().as_dict().get("worker", [])))
        rank = int(resolver.task_id or 0)
    local = max(1, strategy.num_replicas_in_sync // workers)
    name = type(strategy).__name__
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        name = "MultiWorkerMirroredStrategy"  # (its class is CollectiveAllReduceStrategy)
    return _distributed.World(rank, workers, local, name)


class Parallel:
    """The Trainer's world (the hooks of nin.distributed.DataParallelMixin: `_process_rank`,
    `_setup_world`, `_parallel_step`, `_all_sum`) for TensorFlow."""

    def _process_rank(self):
        if self.rank is not None or self.engine is None:
            return super()._process_rank()
        return _strategy_world(self.engine).rank

    def _setup_world(self):
        """The strategy (None for one device) and this process's world."""
        count, on_gpu = self._local_devices(ops.num_gpus())
        strategy = self.engine
        if strategy is None and count > 1:
            if not on_gpu:
                use_cpu_devices(count)
                found = len(tf.config.list_logical_devices("CPU"))
                if found < count:  # MirroredStrategy would put two replicas on one device
                    raise RuntimeError(  # and wait forever at the first sum
                        f"TensorFlow started with {found} CPU device(s), fewer than the "
                        f"{count} asked for: call `use_cpu_devices({count})` (from "
                        f"nin.backends.tensorflow) before TensorFlow runs anything"
                    )
            kind = "GPU" if on_gpu else "CPU"
            strategy = tf.distribute.MirroredStrategy([f"/{kind}:{i}" for i in range(count)])
        self.strategy = strategy
        self.world = _distributed.SINGLE if strategy is None else _strategy_world(strategy)
        if not self.world.parallel:
            self.strategy = None

    def _prepare_parallel(self, model, data):
        """Variables and optimizer made in the strategy's scope (mirrored on every replica,
        the first replica's values everywhere), then one step function over the replicas."""
        if model.built:
            raise ValueError(
                "the model's variables already exist, outside the strategy's scope: a "
                "data-parallel Trainer must build the model itself; fit a model that has not "
                "been called yet (a new `NiN()`)"
            )
        self._refuse_clipping_across_replicas()
        devices = self.strategy.extended.worker_devices
        self.device = devices[0]
        self.gpus = [d for d in devices if "GPU" in d.upper()]
        data.device = "/CPU:0"  # the batches are cut and placed by the strategy
        self.bf16 = self.fast and (bool(self.gpus) or _machine.cpu_has_bf16())
        ops.compute_in_bf16(model.net, self.bf16)
        X = _training.sample_batch(data)[0]
        with self.strategy.scope():
            model(X[:1], training=False)
            self._dropout_generators()
            optim = model.configure_optimizers()
            optim.build(model.trainable_variables)
        step = self._distributed_step
        self._step_fn = tf.function(step, reduce_retracing=True) if self.fast else step
        self._eval_fn = tf.function(self._eval, reduce_retracing=True) if self.fast else self._eval
        return optim

    def _replica_step(self, X, y, weight):
        with tf.GradientTape() as tape:
            loss = self.model.training_step((X, y)) * weight
        variables = self.model.trainable_variables
        grads = tape.gradient(loss, variables)
        self.optim.apply_gradients(zip(grads, variables))  # sums over the replicas
        return loss

    def _distributed_step(self, Xs, ys, ws):
        local = self.world.local

        def spread(values):
            return self.strategy.experimental_distribute_values_from_function(
                lambda ctx: values[ctx.replica_id_in_sync_group % local]
            )

        args = (spread(Xs), spread(ys), spread(ws))
        per_replica = self.strategy.run(self._replica_step, args=args)
        return tf.add_n(list(self.strategy.experimental_local_results(per_replica)))

    def _parallel_step(self, shards):
        """Each replica steps on its part, its mean loss weighted by the part's share of the
        global batch; the optimizer sums the replicas' gradients (over the workers too), so
        the update is the global batch's. Returns this process's part of the global loss."""
        Xs = [part[0] for part in shards]
        ys = [part[1] for part in shards]
        ws = [tf.constant(w, tf.float32) for w in shards.weights()]
        return self._step_fn(Xs, ys, ws)

    def _all_sum(self, values):
        if self.world.size == 1:
            return values
        local, v = self.world.local, tf.constant(np.asarray(values, np.float64))
        per_replica = self.strategy.experimental_distribute_values_from_function(
            lambda ctx: v if ctx.replica_id_in_sync_group % local == 0 else tf.zeros_like(v)
        )
        summed = self.strategy.reduce(tf.distribute.ReduceOp.SUM, per_replica, axis=None)
        return np.asarray(summed)
