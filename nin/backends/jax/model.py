"""d2l's Module, Classifier and FashionMNIST for Flax, and the chapter's NiN.

As in the chapter's JAX tab, a model is a Flax module (a dataclass: its hyperparameters are
fields, its layers made in `setup`) and holds no weights: the Trainer keeps them in a
`TrainState`, and d2l's methods take them as arguments (`loss(params, X, Y, state)`).
nin's `NiN` also carries its weights outside Flax, as `model.net` (an ops.Net), so that the
functions every tab shares (`predict`, `nin.weights.export`) find them as elsewhere.
"""

from __future__ import annotations

import dataclasses
import types
from functools import partial
from typing import Any, NamedTuple

import jax
import numpy as np
import optax
from flax import linen as nn
from jax import numpy as jnp

from nin import data as _data
from nin import training as _training
from nin.backends.jax.ops import (
    build,
    build_module,
    cpu,
    drawn,
    get_key,
    normal,
    to_numpy,
)
from nin.history import Board
from nin.spec import min_input_size


class Optimizer(NamedTuple):
    """An optax optimizer with its name and settings: `init` and `update` are optax's
    (a TrainState takes it as `tx`); the lr is injected (`optax.inject_hyperparams`), so
    that a schedule sets it and a checkpoint keeps it in the optimizer's state."""

    init: Any
    update: Any
    name: str
    learning_rate: float
    momentum: float
    weight_decay: float


def _sgd_or_adam(learning_rate, name, momentum, weight_decay):
    """PyTorch's update rules: weight decay added to the gradient before the step (coupled,
    as torch.optim and MXNet apply it), SGD's momentum as a sum of gradients (`b = mu b + g`,
    `w -= lr b`), Adam with eps 1e-8 outside the square root."""
    step = (
        optax.adam(learning_rate, b1=0.9, b2=0.999, eps=1e-8)
        if name == "adam"
        else optax.sgd(learning_rate, momentum=momentum or None)
    )
    return optax.chain(optax.add_decayed_weights(weight_decay), step) if weight_decay else step


def optimizer(name: str, lr: float, momentum: float = 0.0, weight_decay: float = 0.0):
    """nin's SGD or Adam (`Optimizer`), its lr held in the optimizer's state."""
    make = optax.inject_hyperparams(_sgd_or_adam, static_args=("name", "momentum", "weight_decay"))
    tx = make(learning_rate=float(lr), name=name, momentum=momentum, weight_decay=weight_decay)
    return Optimizer(tx.init, tx.update, name, float(lr), float(momentum), float(weight_decay))


class Module(_training.ModuleMixin, nn.Module):
    """d2l's Module for Flax: a dataclass whose fields are its hyperparameters (no
    `save_hyperparameters`), `setup` makes `self.net`; the weights are passed in
    (`params`), as the Trainer's `state` holds them. `training` (the chapter's field) is
    the mode the Trainer sets: True while training, False to validate."""

    plot_train_per_epoch: int = dataclasses.field(default=2, init=False)
    plot_valid_per_epoch: int = dataclasses.field(default=1, init=False)
    board: Board = dataclasses.field(default_factory=lambda: Board(points_per_epoch=2), init=False)

    def forward(self, X, *args, **kwargs):
        return self.net(X, *args, **kwargs)

    def __call__(self, X, *args, **kwargs):
        return self.forward(X, *args, **kwargs)

    def training_step(self, params, batch, state):
        """d2l's: the loss and its gradient with respect to `params`, ((loss, aux), grads)."""
        value, grads = jax.value_and_grad(self.loss, has_aux=True)(
            params, batch[:-1], batch[-1], state
        )
        self.plot("loss", value[0], train=True)
        return value, grads

    def validation_step(self, params, batch, state):
        loss, _ = self.loss(params, batch[:-1], batch[-1], state)
        self.plot("loss", loss, train=False)

    def apply_init(self, dummy_input, key):
        """d2l's: the variables for inputs like `dummy_input` (a tuple), from `key` (a key or
        a dict of them: 'params', 'dropout')."""
        return self.init(key, *dummy_input)

    def _initial_variables(self, dummy_input, key) -> dict:
        """The variables training starts from: d2l's `apply_init` (nin's NiN: its own)."""
        return self.apply_init(dummy_input, key)

    def _trained(self, params) -> None:
        """The Trainer's new weights after a step (nin's NiN keeps them; d2l's Module
        leaves them in the Trainer's state)."""

    def _infer(self, X, params=None):
        """Logits for `X` in inference mode, with `params` (the Trainer's `state.params`)."""
        if params is None:
            raise ValueError(
                f"{type(self).__name__} holds no weights (a Flax module keeps them apart): "
                f"pass them, e.g. `predict(model, x, params=trainer.state.params)`"
            )
        return _inference(self).apply({"params": params}, X)

    def layer_summary(self, X_shape, key=None):
        """d2l's: each top-level layer's class and output shape for an `X_shape` input (the
        chapter's model with `training=False`; dropout draws from a key otherwise)."""
        X = jnp.zeros(X_shape)
        params_key, dropout_key = jax.random.split(get_key() if key is None else key)
        variables = self.init({"params": params_key, "dropout": dropout_key}, X)
        bound = self.clone().bind(variables, rngs={"dropout": dropout_key})
        for layer in bound.net.layers:
            X = layer(X)
            print(layer.__class__.__name__, "output shape:\t", X.shape)

    def _optimizer(self, name, lr, momentum=0.0, weight_decay=0.0):
        return optimizer(name, lr, momentum, weight_decay)

    _random = staticmethod(normal)
    _top_layers = staticmethod(lambda net: list(net.layers))


def _inference(model):
    """`model` with its `training` field False (dropout off) and fp32 compute, where it has
    those fields."""
    fields = {f.name for f in dataclasses.fields(model)}
    changes = {"training": False, "compute_dtype": None}
    return model.clone(**{k: v for k, v in changes.items() if k in fields})


def _variables(params, state) -> dict:
    """What Flax's `apply` takes: the weights, and the batch statistics where the state has."""
    stats = getattr(state, "batch_stats", None)
    return {"params": params, "batch_stats": stats} if stats else {"params": params}


class Classifier(Module):
    """d2l's Classifier: softmax cross-entropy and accuracy, averaged over the batch; the
    loss returns (loss, aux) as d2l's does (aux: the updated batch statistics, if any)."""

    @partial(jax.jit, static_argnums=(0, 5))
    def loss(self, params, X, Y, state, averaged=True):
        variables = _variables(params, state)
        Y_hat, updates = state.apply_fn(
            variables, *X, mutable=["batch_stats"], rngs={"dropout": state.dropout_rng}
        )
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1])).astype(jnp.float32)  # fp32 loss
        Y = Y.reshape((-1,))
        smoothing = getattr(self, "label_smoothing", 0.0)
        if smoothing:  # (1 - e) on the label, e spread over every class, as PyTorch's
            targets = optax.smooth_labels(jax.nn.one_hot(Y, Y_hat.shape[-1]), smoothing)
            losses = optax.softmax_cross_entropy(Y_hat, targets)
        else:
            losses = optax.softmax_cross_entropy_with_integer_labels(Y_hat, Y)
        return (losses.mean() if averaged else losses), updates

    @partial(jax.jit, static_argnums=(0, 5))
    def accuracy(self, params, X, Y, state, averaged=True):
        variables = _variables(params, state)
        Y_hat = state.apply_fn(variables, *X)
        Y_hat = Y_hat.reshape((-1, Y_hat.shape[-1]))
        compare = (Y_hat.argmax(axis=1).astype(Y.dtype) == Y.reshape(-1)).astype(jnp.float32)
        return compare.mean() if averaged else compare

    def validation_step(self, params, batch, state):
        loss, _ = self.loss(params, batch[:-1], batch[-1], state)
        self.plot("loss", loss, train=False)
        self.plot("acc", self.accuracy(params, batch[:-1], batch[-1], state), train=False)


_NIN_FIELDS = {"lr", "num_classes", "recipe", "spec", "training", "overrides", "compute_dtype",
               "parent", "name"}  # fmt: skip


class NiN(_training.NiNMixin, Classifier):
    """The chapter's NiN from a spec and a recipe. By default the chapter's model and
    training (recipe 'book'); `recipe='nin'` opts in to nin's. `lr` and any Recipe field
    passed as a keyword (optimizer, momentum, schedule, ...) win over the recipe's
    defaults. Flax fields: `lr`, `num_classes`, `recipe` and `spec` (as resolved), the
    keywords given (`overrides`), the chapter's `training`, and `compute_dtype` (None:
    fp32; 'bfloat16' where the Trainer's fast path sets it).

    `model.net` is the network with its weights (an ops.Net: Xavier or He init as the
    recipe says, made on the first call when the spec has a dense layer); inside Flax's
    `apply` it is the Flax submodule the weights go into (`params['net']`)."""

    lr: Any = None
    num_classes: int = 10
    recipe: Any = "book"
    spec: Any = None
    training: bool = True
    overrides: tuple = ()
    compute_dtype: Any = None

    def __init__(
        self,
        lr=None,
        num_classes=10,
        recipe="book",
        spec=None,
        training=True,
        overrides=(),
        compute_dtype=None,
        parent=nn.module._unspecified_parent,
        name=None,
        **recipe_fields,
    ):
        # a dataclass __init__ of our own: Flax's would take no recipe keywords; Flax's
        # `clone` calls it with the resolved fields, which resolve to themselves. A
        # subclass's own fields are set from their keywords or defaults, as the fields
        # no caller passes (init=False: the board) from theirs.
        for f in dataclasses.fields(self):
            if f.name not in _NIN_FIELDS:
                if f.init and f.name in recipe_fields:
                    value = recipe_fields.pop(f.name)
                elif f.default is not dataclasses.MISSING:
                    value = f.default
                elif f.default_factory is not dataclasses.MISSING:
                    value = f.default_factory()
                else:
                    raise TypeError(f"{type(self).__name__} needs its field {f.name!r}")
                object.__setattr__(self, f.name, value)
        overrides = tuple(sorted({**dict(overrides), **recipe_fields}.items()))
        resolved = types.SimpleNamespace(hparams={})
        _training.NiNMixin._setup(resolved, lr, num_classes, recipe, spec, dict(overrides))
        fields = dict(
            lr=resolved.lr,
            num_classes=num_classes,
            recipe=resolved.recipe,
            spec=resolved.spec,
            training=training,
            overrides=overrides,
            compute_dtype=compute_dtype,
            parent=parent,
            name=name,
        )
        for key, value in fields.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "normalize", resolved.normalize)
        object.__setattr__(self, "label_smoothing", resolved.label_smoothing)
        object.__setattr__(self, "hparams", {"lr": resolved.lr, "num_classes": num_classes})
        top_level = parent is nn.module._unspecified_parent
        self.__post_init__()
        if top_level and self.parent is None:  # made by the caller, not a Flax clone
            object.__setattr__(self, "net", build(self.spec))
            if not any(type(layer).__name__ == "Dense" for layer in self.spec.layers):
                side = min_input_size(self.spec)
                blank = jnp.zeros((1, side, side, self.spec.in_channels))
                self.net.materialize(blank, self.recipe.init)

    def __init_subclass__(cls, **kwargs):
        """A subclass keeps this __init__ (Flax's dataclass transform would write one that
        takes no recipe keywords), unless it writes its own."""
        own = "__init__" in cls.__dict__
        super().__init_subclass__(**kwargs)
        if not own:
            cls.__init__ = NiN.__init__

    def setup(self):
        self.net = build_module(self.spec, self.training, self.compute_dtype)

    @staticmethod
    def _build(spec):
        return build(spec)

    def _initialize(self, init):
        """The recipe's init drawn over Flax's: Xavier-uniform kernels (the book's) or He
        normal ones (fan-in, not truncated, as PyTorch's kaiming_normal_); zero biases."""
        self.net.variables = {"params": drawn(self.net.params, get_key(), init)}

    def _initial_variables(self, dummy_input, key) -> dict:
        """The weights `model.net` holds (made for `dummy_input` if it has none yet)."""
        if self.net.variables is None:
            self.net.materialize(jnp.asarray(dummy_input[0], jnp.float32), self.recipe.init)
        return {"params": {"net": self.net.params}}

    def _trained(self, params) -> None:
        self.net.variables = {"params": params["net"]}

    def _infer(self, X, params=None):
        if params is None:
            self.net.materialize(X, self.recipe.init)
            params = {"net": self.net.params}
        return super()._infer(X, params)


@jax.jit
def _resized(rows, images, cols):
    """uint8 N x h x w -> float N x H x W in [0, 1], bilinear: rows @ X @ cols^T."""
    return rows @ (images.astype(jnp.float32) / 255) @ cols.T


class FashionMNIST(_data.FashionMNISTBase):
    """d2l's FashionMNIST: batches as float NHWC arrays in [0, 1], resized by two matmuls."""

    def convert_batch(self, images, labels):
        device = self.device or cpu()
        rows, cols = self.resize_matrices(
            *images.shape[1:], convert=lambda m: jax.device_put(m, device)
        )
        X = _resized(rows, jax.device_put(images, device), cols)
        return X[..., None], jax.device_put(np.asarray(labels, np.int32), device)

    def to_numpy(self, images):
        return to_numpy(images)[..., 0]
