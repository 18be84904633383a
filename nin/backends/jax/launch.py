"""`nin train` on several JAX devices: `jax.pmap` over a machine's devices in this process
(as many CPU devices as asked for, where there is no GPU, made before JAX starts). Several
machines are refused: JAX 0.4.23 sums nothing across processes on CPUs
(docs/distributed.md)."""

from __future__ import annotations

from nin import distributed as _distributed
from nin.backends.jax.parallel import use_cpu_devices


class Launch(_distributed.Launch):
    """JAX's hooks (`nin.distributed.Launch`): this process trains, on one machine."""

    def check(self) -> None:
        """Refuse several machines; for several devices, make JAX's CPU devices now, the
        first hook, before anything (the command line's GPU count) starts JAX."""
        _distributed.check_one_process_a_machine(self.layout, "jax")
        if self.layout.nnodes > 1:
            raise ValueError(
                "nin's JAX Trainer trains one machine's devices (jax.pmap): JAX 0.4.23 sums "
                "nothing across machines on CPUs; give --nnodes 1, or train on several "
                "machines with --backend torch, tensorflow or mxnet"
            )
        if self.layout.devices > 1:
            use_cpu_devices(self.layout.devices)  # no GPU is counted here: that starts JAX

    def engine(self) -> dict:
        if not self.layout.parallel:
            return {}
        return {"devices": self.layout.devices}
