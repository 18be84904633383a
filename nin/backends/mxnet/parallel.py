"""Data-parallel MXNet: Gluon over several contexts with the `device` kvstore, or one process
per machine joined by a `dist_sync` kvstore (docs/distributed.md)."""

from __future__ import annotations

import os

import mxnet as mx
import numpy as onp
from mxnet import autograd, gluon, npx

from nin import distributed as _distributed
from nin.backends.mxnet import ops

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


class Parallel:
    """The Trainer's world (the hooks of nin.distributed.DataParallelMixin: `_process_rank`,
    `_setup_world`, `_parallel_step`, `_all_sum`) for MXNet."""

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
        count, on_gpu = self._local_devices(ops.num_gpus())
        self.ctxs = [(ops.gpu if on_gpu else ops.cpu)(i) for i in range(count)]
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

    def _parallel_optimizer(self, model, optimizer):
        """The model's optimizer over a kvstore that only sums gradients (each context, and
        each process, applies the same update itself: the lr schedule and the checkpoint's
        optimizer state stay where the Trainer can reach them)."""
        self._refuse_clipping_across_replicas()
        kv = self.engine or "device"
        optim = gluon.Trainer(
            ops.ordered_params(model), optimizer, kvstore=kv, update_on_kvstore=False
        )
        if self.world.size > 1:  # every worker holds the first one's weights before step 1
            optim._init_kvstore()
            optim._init_params()
            npx.waitall()
            optim._kvstore._barrier()
            self._metric_buffer = mx.nd.zeros(_METRIC_SLOTS, dtype="float64")
            optim._kvstore.init(_METRIC_KEY, self._metric_buffer)  # collective
        return optim

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
