"""The chapter's MXNet tab: `from nin.backends import mxnet as d2l` (NumPy mode, like d2l)."""

from __future__ import annotations

import functools
import os
import tempfile
import warnings

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, init, np, npx
from mxnet.contrib.amp.amp import bfloat16
from mxnet.gluon import nn

from nin import data as _data
from nin import distributed as _distributed
from nin import spec as _spec
from nin import training as _training
from nin.backends import common as _common

npx.set_np()

__all__ = [*_common.SURFACE, "randn"]

randn = np.random.randn
LAYOUT = "NCHW"
KERNEL_LAYOUT = "OIHW"
cpu, gpu = mx.cpu, mx.gpu


def num_gpus():
    return npx.num_gpus()


def synchronize() -> None:
    """Wait until MXNet's engine has run every queued operation: reading a loss waits only
    for the forward pass, while the backward pass and the update may still be running."""
    npx.waitall()


def strict_fp32() -> None:
    """Turn off TF32 and reduced-precision shortcuts (on GPUs), for numbers that can be
    compared across frameworks."""
    os.environ["MXNET_CUDA_ALLOW_TENSOR_CORE"] = "0"  # read by MXNet's GPU kernels


def set_seed(seed: int) -> None:
    """Seed MXNet's and NumPy's generators (weights, dropout)."""
    mx.random.seed(seed)
    onp.random.seed(seed)


def to_numpy(x) -> onp.ndarray:
    return x.asnumpy().astype(onp.float32, copy=False)


class Ops:
    """The primitives `spec.build` makes any spec from (`spec.PRIMITIVES`); the ReLU inside
    each Conv2D, as the chapter's MXNet tab writes it."""

    @staticmethod
    def conv(out_channels, kernel, stride, padding, relu, in_channels):
        return [
            nn.Conv2D(
                out_channels,
                kernel,
                stride,
                padding,
                activation="relu" if relu else None,
                in_channels=in_channels or 0,
            )
        ]

    @staticmethod
    def max_pool(size, stride):
        return nn.MaxPool2D(pool_size=size, strides=stride)

    @staticmethod
    def dropout(rate):
        return nn.Dropout(rate)

    @staticmethod
    def global_avg_pool():
        return nn.GlobalAvgPool2D()

    @staticmethod
    def flatten():
        return nn.Flatten()

    @staticmethod
    def dense(units, relu):
        return nn.Dense(units, activation="relu" if relu else None)

    @staticmethod
    def sequential(layers):
        net = nn.HybridSequential()
        net.add(*layers)
        return net


OPS = Ops()


def nin_block(num_channels, kernel_size, strides, padding, *, in_channels=0, num_1x1=2, relu="all"):
    """The chapter's block: ReLU inside each Conv2D, as the chapter writes it."""
    block = _spec.NiNBlock(num_channels, kernel_size, strides, padding, num_1x1, relu)
    return block.build(OPS, (in_channels,) if in_channels else None)


def build(spec: _spec.NetSpec) -> nn.HybridSequential:
    """The network for `spec` (not yet initialized): one top-level layer per spec layer."""
    return _spec.build(spec, OPS)


def count_params(net) -> int:
    _ensure_initialized(net)
    return sum(p.list_data()[0].size for p in net.collect_params().values())


def layer_outputs(net, x: onp.ndarray) -> list[tuple[str, onp.ndarray]]:
    """(class name, output) of each top-level layer, in inference mode and fp32; x is NCHW."""
    _ensure_initialized(net)
    X, out = np.array(x, dtype="float32", ctx=_ctx_of(net)), []
    for layer in net:
        X = layer(X)
        out.append((type(layer).__name__, to_numpy(X)))
    return out


try_gpu = _common.make_try_gpu(gpu, cpu, num_gpus)
layer_shapes = _common.make_layer_shapes(layer_outputs, LAYOUT)


def predict(model, x: onp.ndarray) -> onp.ndarray:
    """Logits for a NumPy batch in NCHW (outside autograd.record: inference mode)."""
    return to_numpy(model(np.array(x, dtype="float32", ctx=_ctx_of(model))))


def parameter_arrays(net) -> list[onp.ndarray]:
    """Every parameter in spec order, Gluon layout (conv OIHW, dense out x in)."""
    _ensure_initialized(net)
    return [p.list_data()[0].asnumpy() for p in net.collect_params().values()]


def assign_parameter_arrays(net, arrays) -> None:
    for p, a in zip(net.collect_params().values(), arrays):
        p.set_data(np.array(a, ctx=p.list_ctx()[0]))


def _ctx_of(net):
    params = [p for p in net.collect_params().values() if p._data is not None]
    return params[0].list_ctx()[0] if params else cpu()


def _ensure_initialized(net, initializer=None):
    if any(p._data is None and p._deferred_init == () for p in net.collect_params().values()):
        net.initialize(initializer or init.Xavier())


def _blocks(block):
    yield block
    for child in block._children.values():
        yield from _blocks(child)


def _cast(F, x, dtype):
    """amp_cast is a legacy operator: apply it to the NDArray view, then back to NumPy mode."""
    return F.amp_cast(x.as_nd_ndarray(), dtype=dtype).as_np_ndarray()


def _bf16_convolution(conv, F, x, weight, bias=None):
    low = [_cast(F, a, bfloat16) for a in (x, weight, bias) if a is not None]
    y = _cast(F, F.npx.convolution(*low, name="fwd", **conv._kwargs), "float32")
    return conv.act(y) if conv.act is not None else y


def convolutions_in_bf16(net, on: bool = True) -> int:
    """Make every Conv2D in `net` compute in bf16 (oneDNN) with fp32 weights, gradients and
    activations around it, or back in fp32 (`on=False`): MXNet's AMP lists do not cover
    NumPy-mode operators, so the casts are put in here. Call before `hybridize`. Returns the
    number of convolutions set."""
    convs = [b for b in _blocks(net) if isinstance(b, nn.Conv2D)]
    for conv in convs:
        if on:
            conv.hybrid_forward = functools.partial(_bf16_convolution, conv)
        else:
            vars(conv).pop("hybrid_forward", None)  # the class's fp32 forward again
    return len(convs)


def ordered_params(block) -> list:
    """The block's parameters in structural order (`net.0.0.weight`, ...). gluon.Trainer sorts
    a ParameterDict by global names (conv0, conv10, conv2, ...), which differ between two
    instances of one model in a process, so saved optimizer state would land on the wrong
    parameters; a list keeps the order the checkpoint was written in."""
    return list(block._collect_params_with_prefix().values())


def init_cnn(module):
    """Xavier initialization, as the chapter's MXNet tab uses (`net.initialize(init.Xavier())`)."""
    module.initialize(init.Xavier(), force_reinit=True)


class Module(_training.ModuleMixin, nn.Block):
    """d2l's Module for Gluon: `self.net`, `loss`, `training_step`, `validation_step`."""

    def _optimizer(self, name, lr, momentum=0.0, weight_decay=0.0):
        settings = {"learning_rate": lr, "wd": weight_decay}
        if name == "sgd":
            settings["momentum"] = momentum
        return gluon.Trainer(ordered_params(self), name, settings)

    _random = staticmethod(lambda shape: np.random.randn(*shape))
    _top_layers = staticmethod(lambda net: list(net))

    def apply_init(self, inputs, init=None):
        if init is not None:
            self.net.initialize(init)
        self.forward(*inputs)


class Classifier(_training.ClassifierMixin, Module):
    """d2l's Classifier: softmax cross-entropy and accuracy, averaged over the batch."""

    def accuracy(self, Y_hat, Y, averaged=True):
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        preds = Y_hat.argmax(axis=1).astype(Y.dtype)
        compare = (preds == Y.reshape(-1)).astype("float32")
        return compare.mean() if averaged else compare

    def loss(self, Y_hat, Y, averaged=True):
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1])).astype("float32")
        smoothing = getattr(self, "label_smoothing", 0.0)
        if smoothing:  # (1 - e) x the label's -log p, plus e x the mean -log p over classes
            logp = npx.log_softmax(Y_hat, axis=-1)
            nll = -npx.pick(logp, Y.reshape((-1,)), axis=-1)
            losses = (1 - smoothing) * nll - smoothing * logp.mean(axis=-1)
        else:
            losses = gluon.loss.SoftmaxCrossEntropyLoss()(Y_hat, Y.reshape((-1,)))
        return losses.mean() if averaged else losses


class NiN(_training.NiNMixin, Classifier):
    __doc__ = _training.NiNMixin.__doc__
    _build = staticmethod(build)

    def _initialize(self, how):
        self.net.initialize(
            init.Xavier() if how == "xavier" else init.MSRAPrelu(factor_type="in", slope=0.0)
        )


class FashionMNIST(_data.FashionMNISTBase):
    """d2l's FashionMNIST: batches as float NCHW arrays in [0, 1], resized by two matmuls."""

    def convert_batch(self, images, labels):
        ctx = self.device or cpu()
        rows, cols = self.resize_matrices(*images.shape[1:], convert=lambda m: np.array(m, ctx=ctx))
        X = np.array(images, ctx=ctx, dtype="float32") / 255
        X = np.dot(rows, X).transpose(1, 0, 2)  # N x H x 28
        X = np.dot(X, cols.T)  # N x H x W, bilinear
        return np.expand_dims(X, 1), np.array(labels, ctx=ctx, dtype="int32")

    def to_numpy(self, images):
        return to_numpy(images)[:, 0]


_METRIC_KEY, _METRIC_SLOTS = 1_000_000, 64  # the kvstore key losses and metrics are summed on


def start_parameter_server(host: str, port: int, workers: int) -> list:
    """MXNet's dist_sync scheduler and one server, as processes on this machine (the first
    one): each runs its loop on `import mxnet` and exits when the workers are done."""
    import subprocess
    import sys

    procs = []
    for role in ("scheduler", "server"):
        env = dict(os.environ, **_dist_env(host, port, workers), DMLC_ROLE=role)
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", "import mxnet"], env=env, start_new_session=True
            )
        )
    return procs


def _dist_env(host: str, port: int, workers: int) -> dict:
    return {
        "DMLC_PS_ROOT_URI": host,
        "DMLC_PS_ROOT_PORT": str(port),
        "DMLC_NUM_SERVER": "1",
        "DMLC_NUM_WORKER": str(workers),
    }


def join_dist_sync(host: str, port: int, workers: int):
    """This process as one worker of a dist_sync kvstore whose scheduler listens at
    host:port; its rank (`kv.rank`) is the scheduler's choice."""
    os.environ.update(_dist_env(host, port, workers), DMLC_ROLE="worker")
    return mx.kv.create("dist_sync")


class Trainer(_training.TrainerBase):
    """d2l's Trainer for MXNet. Fast path (`fast=True`): convolutions in bf16 on a CPU that has
    it, and hybridize with static allocation and shapes."""

    backend_name = "mxnet"
    FAST_PATH = "hybridized, convolutions in bf16"

    def _kvstore(self):
        """`engine` as a KVStore (a name such as 'dist_sync' joins the job here), or None."""
        if isinstance(self.engine, str):
            self.engine = mx.kv.create(self.engine)
        return self.engine

    def _process_rank(self):
        kv = self._kvstore()
        if self.rank is not None or kv is None:
            return super()._process_rank()
        return kv.rank

    def _setup_world(self):
        """The contexts this process trains on and its world: several contexts share one
        kvstore ('device' by default; `engine` may give 'dist_sync' or a KVStore for several
        machines, one process each)."""
        count, on_gpu = self._local_devices(num_gpus())
        self.ctxs = [(gpu if on_gpu else cpu)(i) for i in range(count)]
        self.gpus = self.ctxs if on_gpu else []
        kv = self._kvstore()
        processes = kv.num_workers if isinstance(kv, mx.kvstore.KVStore) else 1
        if count * processes == 1:
            self.world = _distributed.SINGLE
        else:
            name = kv.type if kv is not None else "device"
            self.world = _distributed.World(
                self._process_rank(), processes, count, f"Gluon, kvstore {name}"
            )
        return self.ctxs[0]

    def _prepare(self, model, data):
        self.ctx = self.device = self._setup_world()
        self._rng_base = int(onp.random.randint(0, 2**31 - 1))  # see _start_epoch_rng
        if not self.world.parallel:
            _training.note_device(self.num_gpus, num_gpus())
        X = _training.sample_batch(data)[0]
        model(X[:1])  # finish deferred initialization
        model.collect_params().reset_ctx(self.ctxs if self.world.parallel else self.ctx)
        data.device = self.ctx
        self.bf16 = self.fast and self.ctx.device_type == "cpu" and _training.cpu_has_bf16()
        convolutions_in_bf16(model, self.bf16)  # also undoes an earlier fast trainer's
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

    def _parallel_optimizer(self, model, optimizer):
        """The model's optimizer over a kvstore that only sums gradients (each context, and
        each process, applies the same update itself: the lr schedule and the checkpoint's
        optimizer state stay where the Trainer can reach them)."""
        self._refuse_clipping_across_replicas()
        kv = self.engine or "device"
        optim = gluon.Trainer(ordered_params(model), optimizer, kvstore=kv, update_on_kvstore=False)
        if self.world.size > 1:  # every worker holds the first one's weights before step 1
            optim._init_kvstore()
            optim._init_params()
            npx.waitall()
            optim._kvstore._barrier()
            self._metric_buffer = mx.nd.zeros(_METRIC_SLOTS, dtype="float64")
            optim._kvstore.init(_METRIC_KEY, self._metric_buffer)  # collective
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

    def _parallel_step(self, shards):
        """Each context steps on its part, its mean loss weighted by the part's share of the
        global batch; the kvstore sums the contexts' (and processes') gradients in
        `step(1)`, so the update is the global batch's."""
        parts = [[a.as_in_ctx(c) for a in part] for part, c in zip(shards, self.ctxs)]
        with autograd.record():
            losses = [self.model.training_step(p) * w for p, w in zip(parts, shards.weights())]
        autograd.backward(losses)
        self.optim.step(1)
        return sum(loss.as_in_ctx(self.ctx) for loss in losses)

    def _all_sum(self, values):
        if self.world.size == 1:
            return values
        values = onp.asarray(values, dtype=onp.float64)
        out = onp.empty_like(values)
        for i in range(0, len(values), _METRIC_SLOTS):  # a fixed-size key: chunks of it
            chunk = values[i : i + _METRIC_SLOTS]
            buf = onp.zeros(_METRIC_SLOTS)
            buf[: len(chunk)] = chunk
            self._metric_buffer[:] = buf
            self.optim._kvstore.pushpull(_METRIC_KEY, self._metric_buffer, out=self._metric_buffer)
            out[i : i + len(chunk)] = self._metric_buffer.asnumpy()[: len(chunk)]
        return out

    def _eval_step(self, batch):
        self.model.validation_step(batch)

    def _get_lr(self):
        return float(self.optim.learning_rate)

    def _set_lr(self, lr):
        self.optim.set_learning_rate(lr)

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
        _training.check_state_fits(
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
