"""Data parallelism on each framework's own engine: what is written once for all three.

A run on several devices trains the model one device would, on the same global batches:

- every global batch (the data module's `batch_size`) is cut into one contiguous part per
  replica, in order (`parts`); a worker process converts only its own parts;
- each replica's loss is its part's mean weighted by the part's share of the global batch
  (`n_part / n_global`), and the engine *sums* the replicas' gradients (PyTorch's
  DistributedDataParallel averages, so its weight is multiplied by the number of processes):
  the update is the one the whole batch would give, the last, smaller batch included;
- the lr and the recipe are defined on the global batch, so nothing else changes.

The engines (the backends own them): PyTorch `DistributedDataParallel`, one process per device
(`torchrun`); TensorFlow `MirroredStrategy` (one process) and `MultiWorkerMirroredStrategy`
(one process per machine); MXNet Gluon over a list of contexts with the `device` kvstore (one
process) and `dist_sync` (one process per machine, with a scheduler and a server).
`World` says where this process stands; `Shards` is the batch one process steps on.

`nin train --devices/--nnodes` starts a run through each backend's `Launch` (its
`nin/backends/<name>/launch.py`, a subclass of `Launch` here): the command line builds the
`Layout` it was asked for and calls the same hooks whatever the backend.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from nin.errors import ArgumentError, arg

__all__ = ["World", "Shards", "ShardedLoader", "DataParallelMixin", "part_slices", "SINGLE",
           "Layout", "Launch", "check_layout", "check_one_process_a_machine", "within"]  # fmt: skip


@dataclass(frozen=True)
class World:
    """Where this process stands: `rank` of `size` processes, each with `local` replicas
    (devices); `engine` names the framework's mechanism ('' for one device)."""

    rank: int = 0
    size: int = 1
    local: int = 1
    engine: str = ""

    @property
    def replicas(self) -> int:
        return self.size * self.local

    @property
    def parallel(self) -> bool:
        return self.replicas > 1

    @property
    def is_writer(self) -> bool:
        """Only the first process prints, draws and writes files."""
        return self.rank == 0

    def my_parts(self, n: int) -> list[slice]:
        """This process's parts of a global batch of `n` examples, one per local replica."""
        every = part_slices(n, self.replicas)
        return every[self.rank * self.local : (self.rank + 1) * self.local]

    def my_share(self, n: int) -> slice:
        """This process's contiguous share of `n` examples (all its replicas' parts)."""
        parts = self.my_parts(n)
        return slice(parts[0].start, parts[-1].stop)

    def describe(self) -> str:
        if not self.parallel:
            return ""
        procs = f"{self.size} processes" if self.size > 1 else "one process"
        per = f", {self.local} devices each" if self.size > 1 and self.local > 1 else ""
        return f"data-parallel on {self.replicas} replicas ({self.engine}; {procs}{per})"


SINGLE = World()


def part_slices(n: int, parts: int) -> list[slice]:
    """`n` examples cut into `parts` contiguous slices, in order, sizes differing by at most
    one (the first `n % parts` get one more)."""
    base, extra = divmod(n, parts)
    bounds = np.cumsum([0] + [base + (i < extra) for i in range(parts)])
    return [slice(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


class Shards(list):
    """One global batch as one process sees it: its replicas' parts (each a converted
    `(X, y)` batch, in replica order) and `total`, the global batch's size."""

    def __init__(self, parts, total: int):
        super().__init__(parts)
        self.total = total

    def weights(self) -> list[float]:
        """Each part's share of the global batch: the factor its mean loss is scaled by."""
        return [len(part[-1]) / self.total for part in self]


class ShardedLoader:
    """A data module's Loader as one process of `world` reads it: the same global batches in
    the same order (the source's seeded shuffle), of which it converts only its own parts.
    `by_replica` (training): a `Shards` per global batch, a part per local replica; otherwise
    (validation) the process's share as one batch."""

    def __init__(self, loader, world: World, by_replica: bool):
        self.loader, self.world, self.by_replica = loader, world, by_replica
        self.source = loader.source

    def __len__(self) -> int:
        return len(self.loader)

    def set_epoch(self, epoch: int) -> None:
        self.loader.set_epoch(epoch)

    def check_splits(self, name: str) -> None:
        """Refuse a split whose batches leave a replica (or a process) with no example."""
        n, b, count = len(self.source.labels), self.source.batch_size, len(self.source)
        last = min(b, n - (count - 1) * b)
        need = self.world.replicas if self.by_replica else self.world.size
        for size in {min(b, n), last}:
            if size < need:
                raise ArgumentError(
                    "the {name} batches of {size} example(s) cannot be split across {need} "
                    "{parts}: every part needs at least one; use a {batch_size} of at least "
                    "{need} (and a data set whose last batch has that many), or fewer devices",
                    name=name,
                    size=size,
                    need=need,
                    parts="replicas" if self.by_replica else "processes",
                    batch_size=arg("batch_size"),
                )

    def __iter__(self):
        convert = self.loader.convert
        for images, labels in self.source:
            if self.by_replica:
                parts = self.world.my_parts(len(labels))
                yield Shards([convert(images[s], labels[s]) for s in parts], len(labels))
            else:
                s = self.world.my_share(len(labels))
                yield convert(images[s], labels[s])


class DataParallelMixin:
    """The Trainer's data-parallel part that no framework changes (`TrainerBase` inherits
    it): which process writes, how many replicas are asked for, the loaders cut into each
    process's parts, the refusals; each backend's `Parallel` adds its engine
    (`_setup_world`, `_parallel_step`, `_all_sum`) and its own `_process_rank`.

    The Trainer's arguments for it (docs/distributed.md): `num_gpus=N` trains on N GPUs when
    there are N; `devices=N` asks for N replicas on whatever there is (N CPU replicas on a
    machine without GPUs), and `engine` hands over the framework's own engine object (a
    `tf.distribute.Strategy`; an MXNet kvstore or its name, e.g. 'dist_sync'); PyTorch uses
    the process group `torchrun` set up (one process per device). `rank` names this process
    among the workers, where the engine's own numbering should not decide which one writes
    (MXNet's scheduler numbers the workers as it likes). The global batch is split across
    replicas, the model trained is the one device's."""

    world: World
    rank: int | None
    devices: int | None
    num_gpus: int
    gradient_clip_val: float
    backend_name: str

    def _process_rank(self) -> int:  # this process among the workers, known before `fit`
        return 0 if self.rank is None else self.rank

    def _parallel_step(self, shards: Shards):  # -> this process's part of the global loss
        raise NotImplementedError(f"{self.backend_name} has no data-parallel step")

    def _all_sum(self, values: np.ndarray) -> np.ndarray:  # summed over the processes
        if self.world.size == 1:
            return values
        raise NotImplementedError(f"{self.backend_name} cannot reduce across processes")

    @property
    def is_writer(self) -> bool:
        """Whether this process prints, draws and writes the run's files (the first one)."""
        return self._process_rank() == 0

    def _replicas_asked(self, available: int) -> int:
        """How many replicas this process is asked for: `devices`, else d2l's `num_gpus`
        as far as there are GPUs (one at least)."""
        if self.devices is not None:
            return self.devices
        return max(1, min(self.num_gpus, available))

    def _local_devices(self, available: int) -> tuple[int, bool]:
        """(how many devices this process trains on, whether they are GPUs): `devices` GPUs
        when there are that many, else as many CPU replicas on a machine without GPUs; without
        `devices`, d2l's `num_gpus` GPUs as far as there are (the CPU when none)."""
        if self.devices is None:
            count = self._replicas_asked(available)
            return count, bool(available and self.num_gpus)
        if available >= self.devices:
            return self.devices, True
        if available:
            raise ArgumentError(
                "{devices} asks for {n} GPUs and this machine has {available}; ask for "
                "{available} or fewer",
                devices=arg("devices", self.devices),
                n=self.devices,
                available=available,
            )
        return self.devices, False

    def _refuse_clipping_across_replicas(self) -> None:
        """Clipping by the global norm needs the summed gradients, which these engines only
        form inside their update step."""
        if self.gradient_clip_val > 0 and self.world.parallel:
            raise ValueError(
                f"{self.backend_name} sums the replicas' gradients inside its update, so "
                f"`gradient_clip_val` cannot clip the global batch's gradient there; train "
                f"without clipping, or on one device (PyTorch clips data-parallel runs)"
            )

    def _shard_loaders(self) -> None:
        """Each process reads its parts of every global batch (nin.distributed)."""
        for name in ("train_dataloader", "val_dataloader"):
            loader = getattr(self, name)
            if loader is None:
                continue
            if isinstance(loader, ShardedLoader):
                loader = loader.loader  # a second `fit`: shard the plain loader again
            if not hasattr(loader, "source"):
                raise ValueError(
                    "data-parallel training splits the batches of nin's data module "
                    "(`FashionMNIST`); this data module's loaders cannot be split"
                )
            train = name == "train_dataloader"
            if not train and self.world.size == 1:
                setattr(self, name, loader)  # one process validates all of it
                continue
            sharded = ShardedLoader(loader, self.world, by_replica=train)
            sharded.check_splits("training" if train else "validation")
            setattr(self, name, sharded)


def parse_master(master: str) -> tuple[str, int]:
    """'HOST:PORT' (the first machine's address, which the others reach) as (host, port)."""
    host, sep, port = master.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(
            f"--master {master!r}: give the first machine's address as HOST:PORT, "
            f"e.g. 10.0.0.1:29500 (a port every machine can reach)"
        )
    return host, int(port)


def torchrun_command(module_argv: list[str], devices: int, nnodes: int, node_rank: int, master):
    """The `torchrun` (python -m torch.distributed.run) command line that starts `devices`
    processes on this machine, node `node_rank` of `nnodes`, each running
    `python -m <module_argv>`."""
    import sys

    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        f"--nproc-per-node={devices}",
        f"--nnodes={nnodes}",
        f"--node-rank={node_rank}",
    ]
    if master:
        host, port = parse_master(master)
        cmd += [f"--master-addr={host}", f"--master-port={port}"]
    else:
        cmd += ["--standalone"]  # one machine: torchrun picks a free port on localhost
    return cmd + ["-m", *module_argv]


def check_layout(devices: int, nnodes: int, node_rank: int, master) -> None:
    """Refuse a layout of machines that cannot start: the same errors for every backend."""
    if not 0 <= node_rank < nnodes:
        raise ValueError(
            f"--node-rank {node_rank} is not one of the {nnodes} machines' ranks "
            f"(0 to {nnodes - 1})"
        )
    if nnodes > 1 and not master:
        raise ValueError(
            f"--nnodes {nnodes}: give --master HOST:PORT, the address of the machine with "
            f"--node-rank 0, on every machine"
        )
    if master:
        parse_master(master)


def rendezvous(master: str, rank: int, nnodes: int, port: int, timeout: float = 300) -> list[str]:
    """Every machine's HOST:PORT for `port` (a port each one picked), in rank order, exchanged
    through the first machine, which listens on `master`'s port: what TensorFlow's TF_CONFIG
    needs, given only the first machine's address, as PyTorch and MXNet take it. Each host is
    the address the first machine sees the connection come from (its own: `master`'s)."""
    import json
    import socket
    import time

    host, master_port = parse_master(master)
    if rank == 0:
        got, conns = {0: f"{host}:{port}"}, []
        with socket.create_server(("", master_port)) as server:
            server.settimeout(timeout)
            try:
                while len(got) < nnodes:
                    conn, (peer, _) = server.accept()
                    conn.settimeout(timeout)
                    message = json.loads(conn.makefile().readline())
                    got[int(message["rank"])] = f"{peer}:{message['port']}"
                    conns.append(conn)
            except TimeoutError:
                raise RuntimeError(
                    f"{nnodes - len(got)} of the {nnodes} machines did not reach {master} "
                    f"within {timeout:.0f} s: start every machine with the same --nnodes and "
                    f"--master, each with its own --node-rank"
                ) from None
            every = [got[r] for r in range(nnodes)]
            for conn in conns:
                with conn:
                    conn.sendall((json.dumps(every) + "\n").encode())
        return every
    deadline = time.monotonic() + timeout
    while True:  # the first machine may not be listening yet
        try:
            conn = socket.create_connection((host, master_port), timeout=10)
            break
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"could not reach the first machine at {master} within {timeout:.0f} s"
                ) from None
            time.sleep(0.2)
    with conn:
        conn.settimeout(timeout)
        conn.sendall((json.dumps({"rank": rank, "port": port}) + "\n").encode())
        return json.loads(conn.makefile().readline())


def free_port() -> int:
    """A TCP port nothing listens on now (the OS's pick)."""
    import socket

    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


def check_one_process_a_machine(layout: Layout, backend: str) -> None:
    """Refuse --master on one machine, for an engine that trains a machine's devices in one
    process (it names the first of several machines)."""
    if layout.master and layout.nnodes == 1:
        raise ValueError(
            f"--master is the first machine's address, for --nnodes 2 or more; "
            f"{backend} trains one machine's devices in one process: drop --master"
        )


def within(seconds: float, what: str, fn, *fn_args, hint: str = ""):
    """`fn(*fn_args)`, or this process ended (exit code 3) with a message when it has not
    returned after `seconds`: a machine that never came leaves the others waiting for ever."""
    import os
    import sys
    import threading

    hint = hint or (
        "start every machine with the same --nnodes and --master, each with its own --node-rank"
    )

    def give_up():
        print(
            f"error: could not {what} within {seconds:.0f} s: {hint}",
            file=sys.stderr,
            flush=True,
        )
        os._exit(3)

    timer = threading.Timer(seconds, give_up)
    timer.daemon = True
    timer.start()
    try:
        return fn(*fn_args)
    finally:
        timer.cancel()


@dataclass(frozen=True)
class Layout:
    """The devices and machines a run asks for (`nin train --devices --nnodes --node-rank
    --master`), and whether this process is a worker that a launcher started (`--worker`)."""

    devices: int = 1
    nnodes: int = 1
    node_rank: int = 0
    master: str | None = None
    worker: bool = False

    @property
    def parallel(self) -> bool:
        """Several replicas: devices on this machine, or machines."""
        return self.devices > 1 or self.nnodes > 1

    @property
    def beyond_one_process(self) -> bool:
        """Whether any flag asks for more than this process alone."""
        return self.parallel or bool(self.master) or bool(self.node_rank)


class Launch:
    """How a backend runs `nin train` on a `Layout`: one hook per step, which the command
    line calls in this order, for every backend alike:

    1. `check()`: refuse a layout this backend cannot run, before any work (`check_layout`
       has refused what no backend runs);
    2. `starts_workers()`: whether this process only starts worker processes, each running
       the same command with --worker (`start_workers(argv)`, their exit code);
    3. `join()`: this process in its group of processes; True for the one that writes;
    4. `run(train, wording)`: `train(trainer_args)` on this process's engine (`engine()`:
       the Trainer's `devices`, `engine`, `rank`, `callbacks`), then `leave()`.

    This base is one process training a machine's devices; each backend's launch.py
    subclasses it as `Launch`."""

    def __init__(self, layout: Layout):
        self.layout = layout

    def check(self) -> None:
        """Refuse a layout this backend cannot run."""

    def starts_workers(self) -> bool:
        return False

    def start_workers(self, argv: list[str]) -> int:
        """Start this machine's workers, each running `python -m nin <argv> --worker`."""
        raise NotImplementedError(f"{type(self).__name__} trains in this process")

    def join(self) -> bool:
        """Join this process's group (none here); True where it writes the run's files."""
        return self.layout.node_rank == 0

    def engine(self) -> dict:
        """This process's part in a data-parallel run, as the Trainer's arguments (nothing
        for one device). Called once the run's folder is claimed, so that a refusal comes
        before any peer waits for this process."""
        return {"devices": self.layout.devices} if self.layout.parallel else {}

    def run(self, train, wording) -> None:
        """`train(self.engine())`, then `leave()`; `wording` says a library message (an
        error, a nin.errors Message) as the caller's user reads it, for a hook that must
        print one itself."""
        train(self.engine())
        self.leave()

    def leave(self) -> None:
        """This process's clean end in its group (none here)."""
