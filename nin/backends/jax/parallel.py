"""Data-parallel JAX: not yet. The hooks of nin.distributed.DataParallelMixin are here, and
the one that sets the world up refuses several replicas with what to do instead."""

from __future__ import annotations

from nin import distributed as _distributed


class Parallel:
    """The Trainer's world (nin.distributed.DataParallelMixin's hooks) for JAX: one device."""

    def _setup_world(self):
        count, on_gpu = self._local_devices(0)
        if count > 1 or self.engine is not None:
            raise ValueError(
                f"nin's JAX Trainer trains on one device; data parallelism over "
                f"{count} {'GPUs' if on_gpu else 'replicas'} is not written yet: train with "
                f"`devices=1` (--devices 1), or on another backend (torch, tensorflow, mxnet)"
            )
        self.world = _distributed.SINGLE
