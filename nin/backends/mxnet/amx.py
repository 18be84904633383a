"""AMX for MXNet 1.9.1, whose oneDNN (v2.4.4) has AMX bf16 kernels but keeps them off.

Two things stop it: oneDNN 2.4 caps its instruction set below AMX unless `DNNL_MAX_CPU_ISA`
says `AVX512_CORE_AMX`, and Linux refuses AMX's tile registers to a process that has not asked
for them (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`), which that oneDNN does not
do: with the cap raised and no request, the first bf16 convolution dies of an illegal
instruction. On a CPU with AMX, `open_amx` asks Linux first and raises the cap only if Linux
said yes. Below AMX, the bf16 convolutions run on AVX-512 BF16 kernels (on an Intel Xeon
with AMX, capped below it, slower than fp32 ones: README, Speed). PyTorch and TensorFlow ship
newer oneDNNs that do both themselves. `release` then takes the cap out of the environment,
once oneDNN has read it, so that child processes do not inherit it without the tiles.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

from nin.machine import cpu_flags

__all__ = ["open_amx", "release", "AMX_ISA", "STATE"]

AMX_ISA = "AVX512_CORE_AMX"
_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA = 158, 0x1023, 18  # x86-64 Linux


def _request_tiles() -> bool:
    """Ask Linux for AMX's tile registers, for this process; whether it said yes."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


def open_amx(cpuinfo: str = "/proc/cpuinfo", environ=os.environ) -> str:
    """Let MXNet's oneDNN use AMX where the CPU has it; call before MXNet runs anything.
    Returns what was done, in words: 'on'; 'late' (MXNet was imported first, and oneDNN fixes
    its cap at its first operator: on only if none had run); 'set by you' (the caller's own
    DNNL_MAX_CPU_ISA or MKLDNN_MAX_CPU_ISA is kept); 'not on this CPU'; 'refused by the
    kernel'."""
    if platform.system() != "Linux" or platform.machine() != "x86_64":
        return "not on this CPU"
    if "amx_bf16" not in cpu_flags(cpuinfo):
        return "not on this CPU"
    granted = _request_tiles()  # also for a cap the caller set to AMX
    if environ.get("DNNL_MAX_CPU_ISA") or environ.get("MKLDNN_MAX_CPU_ISA"):
        return "set by you"
    if not granted:
        return "refused by the kernel"
    environ["DNNL_MAX_CPU_ISA"] = AMX_ISA
    return "late" if "mxnet" in sys.modules else "on"


def release(environ=os.environ) -> None:
    """Take the cap `open_amx` set out of the environment, once MXNet's oneDNN has read it: a
    child process would inherit it without the tiles, and die at its first AMX kernel."""
    if environ.get("DNNL_MAX_CPU_ISA") == AMX_ISA and STATE in ("on", "late"):
        del environ["DNNL_MAX_CPU_ISA"]


# at the package's first import, before MXNet's (nin/backends/mxnet/__init__.py imports this
# module first): what was done, for the Trainer's start line
STATE = open_amx()
