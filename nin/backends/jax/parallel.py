"""Data-parallel JAX: `jax.pmap` over this process's devices (CPU devices where there is no
GPU, as many as `--xla_force_host_platform_device_count` makes, set before JAX starts). One
machine: JAX 0.4.23 sums nothing across processes on CPUs (docs/distributed.md)."""

from __future__ import annotations

import os

import jax
from jax import numpy as jnp

from nin import distributed as _distributed
from nin.backends.jax import ops
from nin.errors import ArgumentError, Placeholder, arg

_COUNT_FLAG = "--xla_force_host_platform_device_count"


def use_cpu_devices(count: int) -> None:
    """Make JAX's CPU `count` devices, for pmap on a machine without GPUs; JAX reads it when
    it starts (its first array), so call this before anything runs (the CLI does it first). A
    larger count the caller already set in XLA_FLAGS stays."""
    flags = os.environ.get("XLA_FLAGS", "").split()
    given = [int(f.split("=", 1)[1]) for f in flags if f.startswith(_COUNT_FLAG + "=")]
    if given and max(given) >= count:
        return
    kept = [f for f in flags if not f.startswith(_COUNT_FLAG)]
    os.environ["XLA_FLAGS"] = " ".join(kept + [f"{_COUNT_FLAG}={count}"])


def _padded(a, n: int):
    """`a` with zeros after its rows, to `n` rows (pmap takes parts of one size)."""
    return jnp.pad(a, [(0, n - a.shape[0])] + [(0, 0)] * (a.ndim - 1))


class Parallel:
    """The Trainer's world (the hooks of nin.distributed.DataParallelMixin: `_setup_world`,
    `_parallel_step`; one process, so `_all_sum` sums nothing) for JAX."""

    _replicas: list | None = None

    def _setup_world(self):
        """The devices this process trains on (None: one device) and its world."""
        count, on_gpu = self._local_devices(ops.num_gpus())
        if self.engine is not None:
            raise ArgumentError(
                "JAX's engine is jax.pmap over this process's devices: pass {devices}, "
                "not `engine`",
                devices=arg("devices", Placeholder("N")),
            )
        self._replicas = None
        self.world = _distributed.SINGLE
        if count <= 1:
            return
        found = jax.devices("gpu" if on_gpu else "cpu")
        if len(found) < count:
            raise RuntimeError(
                f"JAX started with {len(found)} CPU device(s), fewer than the {count} asked "
                f"for: call `use_cpu_devices({count})` (from nin.backends.jax) before JAX runs "
                f"anything (or set XLA_FLAGS={_COUNT_FLAG}={count}), e.g. in the first cell"
            )
        self._replicas = found[:count]
        self.world = _distributed.World(0, 1, count, "jax.pmap")
        self._pmapped = jax.pmap(
            self._replica_gradients,
            axis_name="replicas",
            in_axes=(None, 0, 0, 0, None),
            devices=self._replicas,
        )

    def _replica_gradients(self, state, X, y, mask, total):
        """One replica's part: the sum of its examples' losses over the global batch's size
        (its padding masked out), and its gradient; both summed over the replicas, so that
        each holds the global batch's mean loss and gradient. Each replica draws its own
        dropout masks (the key folded with its index)."""
        index = jax.lax.axis_index("replicas")
        mine = state.replace(dropout_rng=jax.random.fold_in(state.dropout_rng, index))

        def part_loss(params):
            losses, aux = self.model.loss(params, (X,), y, mine, False)
            return jnp.sum(losses * mask) / total, aux

        (loss, _), grads = jax.value_and_grad(part_loss, has_aux=True)(state.params)
        return jax.lax.psum(loss, "replicas"), jax.lax.psum(grads, "replicas")

    def _parallel_step(self, shards):
        """The global batch's parts on the replicas (`_replica_gradients`), then one update
        with their summed gradient, clipped by its global norm where asked. Returns the
        global batch's mean loss."""
        n = max(len(part[-1]) for part in shards)
        X = jnp.stack([_padded(part[0], n) for part in shards])
        y = jnp.stack([_padded(part[1], n) for part in shards])
        mask = jnp.stack([_padded(jnp.ones(len(part[-1]), jnp.float32), n) for part in shards])
        losses, grads = self._pmapped(self.state, X, y, mask, jnp.float32(shards.total))
        grads = jax.tree_util.tree_map(lambda g: g[0], grads)  # the same on every replica
        if self.gradient_clip_val > 0:
            grads = self.clip_gradients(self.gradient_clip_val, grads)
        state = self.state.apply_gradients(grads=grads)
        self.state = state.replace(dropout_rng=jax.random.split(state.dropout_rng)[0])
        self.model._trained(self.state.params)
        return losses[0]
