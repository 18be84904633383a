"""The chapter's TensorFlow tab: `from nin.backends import tensorflow as d2l` (tf.keras, NHWC)."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's start-up log quiet
import tensorflow as tf  # noqa: E402

from nin import data as _data  # noqa: E402
from nin import distributed as _distributed  # noqa: E402
from nin import spec as _spec  # noqa: E402
from nin import training as _training  # noqa: E402
from nin.backends import common as _common  # noqa: E402

# memory growth: TensorFlow would otherwise take all of a GPU's memory at its first use, and
# PyTorch or MXNet in the same process would find none left
for _gpu in tf.config.list_physical_devices("GPU"):
    try:
        tf.config.experimental.set_memory_growth(_gpu, True)
    except RuntimeError:  # the GPU was already initialized by the caller: theirs
        pass

__all__ = [*_common.SURFACE, "normal"]

normal = tf.random.normal
LAYOUT = "NHWC"
KERNEL_LAYOUT = "HWIO"


def num_gpus():
    return len(tf.config.experimental.list_physical_devices("GPU"))


def synchronize() -> None:
    """Wait until all queued work is done (GPU kernels run asynchronously)."""
    if num_gpus():
        tf.test.experimental.sync_devices()


def gpu(i=0):
    return tf.device(f"/GPU:{i}")


def cpu():
    return tf.device("/CPU:0")


def strict_fp32() -> None:
    """Turn off TF32 and reduced-precision shortcuts (on GPUs), for numbers that can be
    compared across frameworks."""
    tf.config.experimental.enable_tensor_float_32_execution(False)


def set_seed(seed: int) -> None:
    """Seed TensorFlow's generators (weights, dropout)."""
    tf.keras.utils.set_random_seed(seed)


def to_numpy(x) -> np.ndarray:
    return np.asarray(tf.cast(x, tf.float32))


def keras_padding(kernel: int, stride: int, padding: int) -> str:
    """Integer padding -> Keras' 'valid' / 'same', refusing what would differ from torch/MXNet.

    'same' pads (k - 1) / 2 on each side only when stride is 1 and k is odd; with stride > 1
    Keras pads asymmetrically, so the outputs would not match the other frameworks.
    """
    if padding == 0:
        return "valid"
    if stride == 1 and kernel % 2 == 1 and padding == (kernel - 1) // 2:
        return "same"
    raise ValueError(
        f"TensorFlow cannot express padding={padding} for a {kernel}x{kernel} conv with stride "
        f"{stride} the way torch and MXNet do: Keras offers 'valid' (padding 0) and 'same' "
        f"(padding (k-1)/2, stride 1, odd k). Change the spec's padding to 0 or "
        f"{(kernel - 1) // 2} with stride 1."
    )


class Ops:
    """The primitives `spec.build` makes any spec from (`spec.PRIMITIVES`)."""

    @staticmethod
    def conv(out_channels, kernel, stride, padding, relu, in_channels):
        if not isinstance(padding, str):  # the spec's integers; a string is Keras' own
            padding = keras_padding(kernel, stride, padding)
        conv = tf.keras.layers.Conv2D(out_channels, kernel, strides=stride, padding=padding)
        return [conv, tf.keras.layers.Activation("relu")] if relu else [conv]

    @staticmethod
    def max_pool(size, stride):
        return tf.keras.layers.MaxPool2D(pool_size=size, strides=stride)

    @staticmethod
    def dropout(rate):
        # a tf.random.Generator behind the mask: its state can be saved and restored
        return tf.keras.layers.Dropout(rate, force_generator=True)

    @staticmethod
    def global_avg_pool():
        return tf.keras.layers.GlobalAvgPool2D()

    @staticmethod
    def flatten():
        return tf.keras.layers.Flatten()

    @staticmethod
    def dense(units, relu):
        return tf.keras.layers.Dense(units, activation="relu" if relu else None)

    @staticmethod
    def sequential(layers):
        return tf.keras.models.Sequential(layers)


OPS = Ops()


def nin_block(out_channels, kernel_size, strides, padding, *, num_1x1=2, relu="all"):
    """The chapter's block; `padding` is Keras' 'valid' / 'same', as the chapter writes it
    (passed to Keras as given), or an integer, as in the spec."""
    keras = isinstance(padding, str)
    block = _spec.NiNBlock(out_channels, kernel_size, strides, 0 if keras else padding, num_1x1,
                           relu)  # fmt: skip
    if not keras:
        return block.build(OPS, None)
    layers = []
    for i, conv in enumerate(block.convs):
        first = padding if i == 0 else conv.padding
        layers += OPS.conv(conv.out_channels, conv.kernel, conv.stride, first, conv.relu, None)
    return OPS.sequential(layers)


def build(spec: _spec.NetSpec) -> tf.keras.Sequential:
    """The network for `spec` (built on first call): one top-level layer per spec layer."""
    return _spec.build(spec, OPS)


def count_params(net) -> int:
    try:
        return int(sum(np.prod(w.shape) for w in _weights(net)))
    except ValueError:  # Keras creates weights on the first call
        raise ValueError(
            "the network has no weights yet: Keras builds them on the first "
            "call; run an input through it first, e.g. "
            "layer_shapes(net, 224)"
        ) from None


def layer_outputs(net, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(class name, output) of each top-level layer, in inference mode; x is NHWC."""
    X, out = tf.constant(np.asarray(x, np.float32)), []
    for layer in net.layers:
        X = layer(X, training=False)
        out.append((type(layer).__name__, to_numpy(X)))
    return out


try_gpu = _common.make_try_gpu(gpu, cpu, num_gpus)
layer_shapes = _common.make_layer_shapes(layer_outputs, LAYOUT)


def predict(model, x: np.ndarray) -> np.ndarray:
    """Logits for a NumPy batch in NHWC, in inference mode."""
    return to_numpy(model(tf.constant(np.asarray(x, np.float32)), training=False))


def parameter_arrays(net) -> list[np.ndarray]:
    """Every parameter in spec order, Keras layout (conv HWIO, dense in x out)."""
    return [w.numpy() for w in _weights(net)]


def assign_parameter_arrays(net, arrays) -> None:
    for w, a in zip(_weights(net), arrays):
        w.assign(a)


def _weights(net):
    # per top-level layer: a Sequential called layer by layer is not itself "built"
    return [w for layer in net.layers for w in layer.weights]


def init_cnn(module):
    """Keras' default (Glorot-uniform kernels, zero biases) is already d2l's init_cnn."""
    return module


class Module(_training.ModuleMixin, tf.keras.Model):
    """d2l's Module for Keras: `self.net`, `loss`, `training_step`, `validation_step`.

    `self.training` is the mode the Trainer sets (True while training, False to validate).
    d2l 1.0.3 stores Keras' `training=None` (what Keras passes when the caller gives no flag)
    over it, so its nets never train with dropout; here only an explicit True or False
    changes the mode, and dropout runs in training as the chapter means (docs/training.md)."""

    def __init__(self, plot_train_per_epoch=2, plot_valid_per_epoch=1):
        super().__init__(plot_train_per_epoch, plot_valid_per_epoch)
        self.training = None

    def call(self, X, *args, **kwargs):
        if kwargs.get("training") is not None:
            self.training = kwargs["training"]
        return self.forward(X, *args)

    def apply_init(self, inputs, init=None):
        """d2l's (PyTorch tab's): build the weights with one forward pass, then `init` each
        layer. Keras' defaults already are the chapter's init, so `init_cnn` changes nothing."""
        self.forward(*inputs)
        if init is not None:
            for layer in _leaf_layers(self.net):
                init(layer)

    def forward(self, X):
        return self.net(X, training=self.training)

    def _optimizer(self, name, lr, momentum=0.0, weight_decay=0.0):
        if name == "adam":
            return tf.keras.optimizers.Adam(float(lr), weight_decay=weight_decay or None)
        return tf.keras.optimizers.SGD(
            float(lr), momentum=momentum, weight_decay=weight_decay or None
        )

    _random = staticmethod(tf.random.normal)
    _top_layers = staticmethod(lambda net: net.layers)


class Classifier(_training.ClassifierMixin, Module):
    """d2l's Classifier: sparse cross-entropy from logits, and accuracy."""

    def accuracy(self, Y_hat, Y, averaged=True):
        Y_hat = tf.reshape(Y_hat, (-1, Y_hat.shape[-1]))
        preds = tf.cast(tf.argmax(Y_hat, axis=1), Y.dtype)
        compare = tf.cast(preds == tf.reshape(Y, [-1]), tf.float32)
        return tf.reduce_mean(compare) if averaged else compare

    def loss(self, Y_hat, Y, averaged=True):
        Y_hat = tf.cast(tf.reshape(Y_hat, (-1, Y_hat.shape[-1])), tf.float32)  # fp32 under bf16
        smoothing = getattr(self, "label_smoothing", 0.0)
        if smoothing:  # Keras smooths one-hot targets only
            fn = tf.keras.losses.CategoricalCrossentropy(
                from_logits=True, label_smoothing=smoothing, reduction="none"
            )
            losses = fn(tf.one_hot(tf.reshape(Y, (-1,)), Y_hat.shape[-1]), Y_hat)
        else:
            fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="none")
            losses = fn(tf.reshape(Y, (-1,)), Y_hat)
        if not averaged:
            return losses
        # Keras' sum_over_batch_size, written out: tf.distribute refuses that reduction
        return tf.math.divide_no_nan(tf.reduce_sum(losses), tf.cast(tf.size(losses), tf.float32))


class NiN(_training.NiNMixin, Classifier):
    __doc__ = _training.NiNMixin.__doc__
    _build = staticmethod(build)

    def _initialize(self, init):
        """Keras' default (Glorot) is the chapter's; He init is set on the initializers."""
        if init == "kaiming":
            for layer in _leaf_layers(self.net):
                if isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense)):
                    layer.kernel_initializer = tf.keras.initializers.HeNormal()


def _leaf_layers(layer):
    children = getattr(layer, "layers", None)
    if not children:
        return [layer]
    return [leaf for child in children for leaf in _leaf_layers(child)]


class FashionMNIST(_data.FashionMNISTBase):
    """d2l's FashionMNIST: batches as float NHWC tensors in [0, 1], resized by two matmuls."""

    def convert_batch(self, images, labels):
        with tf.device(self.device or "/CPU:0"):
            rows, cols = self.resize_matrices(*images.shape[1:], convert=tf.constant)
            X = tf.cast(tf.constant(images), tf.float32) / 255
            X = tf.einsum("hi,nij,wj->nhw", rows, X, cols)  # bilinear, N x H x W
            return X[..., None], tf.constant(labels, dtype=tf.int32)

    def to_numpy(self, images):
        return to_numpy(images)[..., 0]


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


class Trainer(_training.TrainerBase):
    """d2l's Trainer for Keras. Fast path (`fast=True`): `tf.function` steps and a mixed bf16
    policy (on a GPU, or a CPU with native bf16). The device: see `training_device`.
    Several devices: `tf.distribute.MirroredStrategy` over them (logical CPU devices on a
    machine without GPUs), or the strategy given as `engine` (MultiWorkerMirroredStrategy
    for several machines)."""

    backend_name = "tensorflow"
    FAST_PATH = "tf.function steps, mixed bf16 policy"

    def _process_rank(self):
        if self.rank is not None or self.engine is None:
            return super()._process_rank()
        return _strategy_world(self.engine).rank

    def _setup_world(self):
        """The strategy (None for one device) and this process's world."""
        count, on_gpu = self._local_devices(num_gpus())
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

    def _prepare(self, model, data):
        self._setup_world()
        if self.strategy is not None:
            return self._prepare_parallel(model, data)
        self.gpus = [f"/GPU:{i}" for i in range(min(self.num_gpus, num_gpus()))]  # d2l's
        asked = self.num_gpus  # d2l's; `devices=1` asks for a GPU when there is one
        if self.devices is not None:
            asked = int(self._local_devices(num_gpus())[1])
        self.device = training_device(asked, num_gpus(), _scope_device())
        _training.note_device(self.num_gpus, num_gpus())
        data.device = self.device
        on_gpu = "GPU" in self.device.upper()
        self.bf16 = self.fast and (on_gpu or _training.cpu_has_bf16())
        if self.bf16 and not model.built:
            for layer in _leaf_layers(model.net):  # compute in bf16, keep fp32 variables
                layer._set_dtype_policy(tf.keras.mixed_precision.Policy("mixed_bfloat16"))
        X = _training.sample_batch(data)[0]
        with tf.device(self.device):
            model(X[:1], training=False)  # build the variables
            self._dropout_generators()  # and the dropout generators' state, eagerly
        optim = model.configure_optimizers()
        optim.build(model.trainable_variables)
        self._step_fn = tf.function(self._step, reduce_retracing=True) if self.fast else self._step
        self._eval_fn = tf.function(self._eval, reduce_retracing=True) if self.fast else self._eval
        return optim

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
        self.bf16 = self.fast and (bool(self.gpus) or _training.cpu_has_bf16())
        if self.bf16:
            for layer in _leaf_layers(model.net):
                layer._set_dtype_policy(tf.keras.mixed_precision.Policy("mixed_bfloat16"))
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

    def _to_float(self, value):
        return float(np.asarray(value))

    def _dropout_generators(self):
        """The tf.random.Generator of each Dropout built by `build` (force_generator=True);
        Keras' legacy dropout, as the chapter's own cells build it, has no state to save."""
        generators = []
        for layer in _leaf_layers(self.model.net):
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
        _training.check_state_fits(
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
