"""`nin train` on several MXNet devices or machines: Gluon over a machine's contexts in this
process, or one process per machine joined by a dist_sync kvstore whose scheduler and server
the first machine starts (docs/distributed.md)."""

from __future__ import annotations

import gc
import os
import sys
import traceback

from nin import distributed as _distributed
from nin.backends.mxnet.parallel import join_dist_sync, start_parameter_server
from nin.callbacks import StallWatchdog


class Launch(_distributed.Launch):
    """MXNet's hooks (`nin.distributed.Launch`): this process trains; on several machines,
    as a dist_sync worker."""

    servers: tuple | list = ()  # the scheduler and server processes, on the first machine
    kvstore = None  # this worker's dist_sync kvstore

    def check(self) -> None:
        _distributed.check_one_process_a_machine(self.layout, "mxnet")

    def engine(self) -> dict:
        layout = self.layout
        if layout.nnodes == 1:  # Gluon over this machine's contexts (or one device)
            return super().engine()
        host, port = _distributed.parse_master(layout.master or "")  # the scheduler's address
        if layout.node_rank == 0:
            self.servers = start_parameter_server(host, port, layout.nnodes)
        what = "join MXNet's dist_sync job at --master"
        self.kvstore = _distributed.within(600, what, join_dist_sync, host, port, layout.nnodes)
        # the scheduler numbers the workers as it likes: the first machine writes, and the
        # data's parts follow the machines' ranks
        return {
            "devices": layout.devices,
            "engine": self.kvstore,
            "rank": layout.node_rank,
            "callbacks": [StallWatchdog()],
        }

    def run(self, train, wording) -> None:
        """A dist_sync worker: a failure ends this process at once (a worker that returned
        would wait forever for the others at the kvstore's exit barrier), a run that stops
        making progress ends too (a peer that failed leaves the others waiting in a sum that
        never completes; `StallWatchdog`), and the kvstore is let go before the interpreter
        ends; the first machine then waits for its scheduler and server."""
        if self.layout.nnodes == 1:
            return super().run(train, wording)
        try:
            super().run(train, wording)
        except BaseException as err:  # noqa: BLE001  (any failure: the others must not wait)
            if not isinstance(err, (ValueError, OSError, RuntimeError)):
                traceback.print_exc()
            print(f"error: {wording(err)}", file=sys.stderr, flush=True)
            for proc in self.servers:
                proc.kill()
            os._exit(2)
        for proc in self.servers:
            try:
                proc.wait(timeout=60)
            except Exception:  # noqa: BLE001
                proc.kill()

    def leave(self) -> None:
        """The kvstore let go: its destructor is the workers' exit barrier."""
        if self.kvstore is not None:
            self.kvstore = None  # the last reference (the Trainer that held it has gone)
            gc.collect()
