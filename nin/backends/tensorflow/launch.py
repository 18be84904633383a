"""`nin train` on several TensorFlow devices or machines: MirroredStrategy over a machine's
devices in this process (logical CPU devices where there is no GPU), MultiWorkerMirroredStrategy
over machines, one process each, their addresses exchanged through the first
(docs/distributed.md)."""

from __future__ import annotations

from nin import distributed as _distributed
from nin.backends.tensorflow import ops
from nin.backends.tensorflow.parallel import multi_worker_strategy, use_cpu_devices
from nin.callbacks import StallWatchdog


class Launch(_distributed.Launch):
    """TensorFlow's hooks (`nin.distributed.Launch`): this process trains."""

    def check(self) -> None:
        _distributed.check_one_process_a_machine(self.layout, "tensorflow")
        if self.layout.nnodes > 1 and self.layout.devices > 1 and not ops.num_gpus():
            raise ValueError(
                "TensorFlow's MultiWorkerMirroredStrategy runs one CPU replica a machine: "
                "give --devices 1 on a machine without GPUs"
            )

    def engine(self) -> dict:
        layout = self.layout
        if not layout.parallel:
            return {}
        if layout.nnodes == 1:  # MirroredStrategy
            if not ops.num_gpus():
                use_cpu_devices(layout.devices)  # before TensorFlow starts
            return {"devices": layout.devices}
        port = _distributed.free_port()
        workers = _distributed.rendezvous(
            layout.master or "", layout.node_rank, layout.nnodes, port
        )
        strategy = multi_worker_strategy(
            workers, layout.node_rank, gpus=ops.num_gpus() and layout.devices
        )
        return {"devices": layout.devices, "engine": strategy, "callbacks": [StallWatchdog()]}
