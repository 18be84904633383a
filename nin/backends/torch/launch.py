"""`nin train` on several PyTorch devices or machines: torchrun starts one worker process per
device, each running the same command with --worker, in the process group it sets up; the
first machine's launcher claims the run's folder first (docs/distributed.md)."""

from __future__ import annotations

import subprocess

import torch
from torch import distributed as dist

from nin import distributed as _distributed
from nin.callbacks import StallWatchdog


class Launch(_distributed.Launch):
    """PyTorch's hooks (`nin.distributed.Launch`): a launcher process and its workers."""

    def check(self) -> None:
        gpus, asked = torch.cuda.device_count(), self.layout.devices
        if 0 < gpus < asked:
            raise ValueError(
                f"--devices {asked} asks for {asked} GPUs and this machine has {gpus}; ask "
                f"for {gpus} or fewer"
            )

    def starts_workers(self) -> bool:
        return self.layout.beyond_one_process and not self.layout.worker

    def start_workers(self, argv: list[str]) -> int:
        # torchrun has --master (and would take it for its --master-addr / --master-port);
        # the workers find the group through torchrun
        layout = self.layout
        cmd = _distributed.torchrun_command(
            ["nin", *_without_flag(argv, "--master"), "--worker"],
            layout.devices,
            layout.nnodes,
            layout.node_rank,
            layout.master,
        )
        print(f"nin: starting {layout.devices} PyTorch worker(s) on this machine: {' '.join(cmd)}")
        return subprocess.call(cmd)

    def join(self) -> bool:
        """A worker torchrun started joins the process group it set up; True on rank 0."""
        if not self.layout.worker:
            return super().join()
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return dist.get_rank() == 0

    def engine(self) -> dict:
        if not self.layout.parallel:
            return {}
        # several processes: none waits for ever on a failed one
        return {"devices": self.layout.devices, "callbacks": [StallWatchdog()]}

    def leave(self) -> None:
        """A worker's clean end, as torch.distributed asks: every process past its last
        collective (a peer that failed after it does not keep this one waiting past 10
        minutes), then the process group destroyed before the interpreter exits."""
        if not self.layout.worker:
            return
        hint = "another worker ended before it (its error is above)"
        _distributed.within(600, "meet the other workers after training", dist.barrier, hint=hint)
        dist.destroy_process_group()


def _without_flag(argv: list[str], flag: str) -> list[str]:
    """`argv` less `flag VALUE` and `flag=VALUE`."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == flag:
            skip = True
        elif not a.startswith(flag + "="):
            out.append(a)
    return out
