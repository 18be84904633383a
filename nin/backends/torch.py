"""The chapter's PyTorch tab: `from nin.backends import torch as d2l`."""

from __future__ import annotations

import os

import numpy as np
import torch
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

from nin import data as _data
from nin import distributed as _distributed
from nin import spec as _spec
from nin import training as _training
from nin.backends import common as _common

__all__ = [*_common.SURFACE, "randn"]

randn = torch.randn
LAYOUT = "NCHW"
KERNEL_LAYOUT = "OIHW"


def cpu():
    return torch.device("cpu")


def gpu(i=0):
    return torch.device(f"cuda:{i}")


def num_gpus():
    return torch.cuda.device_count()


def synchronize() -> None:
    """Wait until all queued work is done (CUDA runs asynchronously; the CPU does not)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def strict_fp32() -> None:
    """Turn off TF32 and reduced-precision shortcuts (on GPUs), for numbers that can be
    compared across frameworks."""
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False


def set_seed(seed: int) -> None:
    """Seed PyTorch's generators (weights, dropout)."""
    torch.manual_seed(seed)


def to_numpy(x) -> np.ndarray:
    return x.detach().float().cpu().numpy()


class Ops:
    """The primitives `spec.build` makes any spec from (`spec.PRIMITIVES`)."""

    @staticmethod
    def conv(out_channels, kernel, stride, padding, relu, in_channels):
        conv = (
            nn.LazyConv2d(out_channels, kernel, stride, padding)
            if in_channels is None
            else nn.Conv2d(in_channels, out_channels, kernel, stride, padding)
        )
        return [conv, nn.ReLU()] if relu else [conv]

    @staticmethod
    def max_pool(size, stride):
        return nn.MaxPool2d(size, stride=stride)

    @staticmethod
    def dropout(rate):
        return nn.Dropout(rate)

    @staticmethod
    def global_avg_pool():
        return nn.AdaptiveAvgPool2d((1, 1))

    @staticmethod
    def flatten():
        return nn.Flatten()

    @staticmethod
    def dense(units, relu):
        dense = nn.LazyLinear(units)
        return nn.Sequential(dense, nn.ReLU()) if relu else dense

    @staticmethod
    def sequential(layers):
        return nn.Sequential(*layers)


OPS = Ops()


def nin_block(
    out_channels, kernel_size, strides, padding, *, in_channels=None, num_1x1=2, relu="all"
):
    """The chapter's block; lazy convs like the chapter unless `in_channels` is given."""
    block = _spec.NiNBlock(out_channels, kernel_size, strides, padding, num_1x1, relu)
    return block.build(OPS, None if in_channels is None else (in_channels,))


def build(spec: _spec.NetSpec) -> nn.Sequential:
    """The network for `spec`: one top-level layer per spec layer, as in the chapter."""
    return _spec.build(spec, OPS)


def count_params(net) -> int:
    return sum(p.numel() for p in net.parameters())


def layer_outputs(net, x: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(class name, output) of each top-level layer, in inference mode and fp32; x is NCHW."""
    was_training, out = net.training, []
    net.eval()
    X = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(_device_of(net))
    with torch.no_grad():
        for layer in net:
            X = layer(X)
            out.append((type(layer).__name__, to_numpy(X)))
    net.train(was_training)
    return out


try_gpu = _common.make_try_gpu(gpu, cpu, num_gpus)
layer_shapes = _common.make_layer_shapes(layer_outputs, LAYOUT)


def predict(model, x: np.ndarray) -> np.ndarray:
    """Logits for a NumPy batch in NCHW, in inference mode and fp32."""
    was_training = model.training
    model.eval()
    with torch.no_grad():
        logits = model(torch.from_numpy(np.ascontiguousarray(x, np.float32)).to(_device_of(model)))
    model.train(was_training)
    return to_numpy(logits)


def parameter_arrays(net) -> list[np.ndarray]:
    """Every parameter in spec order, torch layout (conv OIHW, linear out x in)."""
    return [to_numpy(p) for p in net.parameters()]


def assign_parameter_arrays(net, arrays) -> None:
    with torch.no_grad():
        for p, a in zip(net.parameters(), arrays):
            p.copy_(torch.from_numpy(a))


def _device_of(net):
    return next(net.parameters()).device


def init_cnn(module):
    """d2l's init_cnn: Xavier-uniform weights for Linear and Conv2d layers."""
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.xavier_uniform_(module.weight)


def _init_kaiming(module):
    if type(module) in (nn.Linear, nn.Conv2d):
        nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        nn.init.zeros_(module.bias)


class Module(_training.ModuleMixin, nn.Module):
    """d2l's Module: `self.net`, `loss`, `training_step`, `validation_step`, SGD at `self.lr`."""

    def _optimizer(self, name, lr, momentum=0.0, weight_decay=0.0):
        if name == "adam":
            return torch.optim.Adam(self.parameters(), lr=lr, weight_decay=weight_decay)
        return torch.optim.SGD(
            self.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay
        )

    _random = staticmethod(lambda shape: torch.randn(*shape))
    _top_layers = staticmethod(lambda net: list(net))

    def apply_init(self, inputs, init=None):
        self.forward(*inputs)
        if init is not None:
            self.net.apply(init)


class Classifier(_training.ClassifierMixin, Module):
    """d2l's Classifier: cross-entropy loss and accuracy, both averaged over the batch."""

    def accuracy(self, Y_hat, Y, averaged=True):
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        compare = (Y_hat.argmax(dim=1).type(Y.dtype) == Y.reshape(-1)).float()
        return compare.mean() if averaged else compare

    def loss(self, Y_hat, Y, averaged=True):
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1])).float()  # fp32 loss under autocast
        return F.cross_entropy(
            Y_hat,
            Y.reshape((-1,)),
            reduction="mean" if averaged else "none",
            label_smoothing=getattr(self, "label_smoothing", 0.0),
        )


class NiN(_training.NiNMixin, Classifier):
    __doc__ = _training.NiNMixin.__doc__
    _build = staticmethod(build)

    def _initialize(self, init):
        self.net.apply(init_cnn if init == "xavier" else _init_kaiming)


def _to_device(a: np.ndarray, device):
    """A NumPy batch on `device`: uint8 images and int64 labels cross as they are (a quarter of
    float32's bytes), from pinned memory and without blocking on a GPU, so that the step that
    follows is not held up by a host round trip."""
    t = torch.from_numpy(a if a.flags.writeable else a.copy())  # a read-only view: copied
    if device.type == "cuda":
        return t.pin_memory().to(device, non_blocking=True)
    return t.to(device)


class FashionMNIST(_data.FashionMNISTBase):
    """d2l's FashionMNIST: batches as float NCHW tensors in [0, 1], resized by two matmuls."""

    def convert_batch(self, images, labels):
        device = self.device or cpu()
        rows, cols = self.resize_matrices(
            *images.shape[1:], convert=lambda m: torch.from_numpy(m).to(device)
        )
        X, y = (_to_device(a, device) for a in (images, labels))
        X = X.float().div_(255)
        X = rows @ X @ cols.T  # N x 28 x 28 -> N x H x W, bilinear, on the device
        return X.unsqueeze(1), y

    def to_numpy(self, images):
        return to_numpy(images)[:, 0]


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


class Trainer(_training.TrainerBase):
    """d2l's Trainer for PyTorch. Fast path (`fast=True`): channels-last and bf16 autocast.
    Several devices: one process each, in the process group `torchrun` starts (`python -m nin
    train --devices N` launches it), trained through DistributedDataParallel."""

    backend_name = "torch"
    FAST_PATH = "channels-last, bf16 autocast"

    def _process_rank(self):
        return dist.get_rank() if _grouped() else super()._process_rank()

    def _setup_world(self):
        """The process group's world, and this process's device (its local rank's GPU)."""
        asked = self._replicas_asked(num_gpus())
        if not _grouped():
            if asked > 1:
                raise ValueError(
                    f"PyTorch trains on {asked} devices with one process per device "
                    f"(DistributedDataParallel): run `python -m nin train --devices {asked}`, "
                    f"or start your script with `torchrun --nproc-per-node {asked}` and call "
                    f"`torch.distributed.init_process_group()` before training; one process "
                    f"trains on one device (`num_gpus=1`)"
                )
            self.world = _distributed.SINGLE
            if self.devices is not None:  # one device asked for: a GPU when there is one
                self.gpus = [gpu(0)] if self._local_devices(num_gpus())[1] else []
            else:
                self.gpus = [gpu(i) for i in range(min(self.num_gpus, num_gpus()))]  # d2l's
            return self.gpus[0] if self.gpus else cpu()
        rank, size = dist.get_rank(), dist.get_world_size()
        engine = f"DistributedDataParallel over {dist.get_backend()}"
        self.world = _distributed.World(rank, size, 1, engine)
        if not num_gpus():
            self.gpus = []
            return cpu()
        local = int(os.environ.get("LOCAL_RANK", rank % num_gpus()))  # torchrun's contract
        if local >= num_gpus():
            raise ValueError(
                f"this worker's local rank is {local}, and the machine has {num_gpus()} GPU(s): "
                f"start at most {num_gpus()} workers a machine (`devices={num_gpus()}`)"
            )
        torch.cuda.set_device(local)  # NCCL's collectives run on this worker's GPU
        self.gpus = [gpu(local)]
        return self.gpus[0]

    def _prepare(self, model, data):
        self.device = self._setup_world()
        if not self.world.parallel:
            _training.note_device(self.num_gpus, num_gpus())
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
        self._ddp = None
        if self.world.parallel:  # broadcasts the first process's weights to the others
            on_gpu = self.device.type == "cuda"
            self._ddp = nn.parallel.DistributedDataParallel(
                _TrainingStep(model), device_ids=[self.device] if on_gpu else None
            )
        return model.configure_optimizers()

    def _materialize(self, model, data):
        """Run one batch through lazy layers so the optimizer sees every parameter."""
        if any(isinstance(p, nn.parameter.UninitializedParameter) for p in model.parameters()):
            X = _training.sample_batch(data)[0]
            with torch.no_grad():
                model(X[:1].cpu())

    def _context(self):
        if self._autocast:
            return torch.autocast(self._autocast, dtype=torch.bfloat16)
        import contextlib

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
            f"model/{k}": to_numpy(v) if v.is_floating_point() else v.cpu().numpy()
            for k, v in self.model.state_dict().items()
        }
        for i, state in self.optim.state_dict()["state"].items():
            for k, v in state.items():
                arrays[f"optim/{i}/{k}"] = to_numpy(v) if torch.is_tensor(v) else np.asarray(v)
        return arrays

    def _load_state_arrays(self, arrays):
        model_state = {k[6:]: v for k, v in arrays.items() if k.startswith("model/")}
        _training.check_state_fits(
            {k: v.shape for k, v in self.model.state_dict().items()}, model_state
        )
        self.model.load_state_dict({k: torch.from_numpy(v) for k, v in model_state.items()})
        state = self.optim.state_dict()
        for key, value in arrays.items():
            if key.startswith("optim/"):
                _, i, name = key.split("/")
                state["state"].setdefault(int(i), {})[name] = torch.from_numpy(value)
        self.optim.load_state_dict(state)
