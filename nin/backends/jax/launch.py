"""`nin train` on JAX: one device in this process (data parallelism is not written yet:
`check` refuses several devices or machines before any work)."""

from __future__ import annotations

from nin import distributed as _distributed


class Launch(_distributed.Launch):
    """JAX's hooks (`nin.distributed.Launch`): this process trains on one device."""

    def check(self) -> None:
        if self.layout.beyond_one_process:
            raise ValueError(
                "nin's JAX Trainer trains on one device in one process: drop --devices, "
                "--nnodes, --node-rank and --master (or give --devices 1), or train on "
                "several devices with --backend torch, tensorflow or mxnet"
            )
