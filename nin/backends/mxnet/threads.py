"""MXNet 1.9.1's OpenMP threads: one per core, chosen before MXNet is imported.

At import, MXNet 1.9.1 (its engine's `OpenMP`) takes half the processors this process may
run on, as if each core were two hyperthreads, unless `OMP_NUM_THREADS` or
`MXNET_OMP_MAX_THREADS` says otherwise, and it sets that count in OpenMP for the whole
process: PyTorch's operators, in the same process, drop to it too. On a CPU with one thread
per core (many cloud machines: README, Speed) that is half the cores. Where neither variable
is set and the cores differ from MXNet's count, `choose` sets `MXNET_OMP_MAX_THREADS` to the
cores (MXNet then leaves OpenMP's own count alone); `release` takes it out of the
environment once MXNet has read it, so that a child process chooses for itself. `STATE` says
what was done, for the Trainer's start line; `COUNT` is the threads MXNet runs on (None where
not known), for history.json.
"""

from __future__ import annotations

import os
import platform
import sys

__all__ = ["choose", "cores", "mxnet_default", "release", "STATE", "COUNT", "CHOSE"]

VARIABLE = "MXNET_OMP_MAX_THREADS"
_SET_BY_YOU = ("OMP_NUM_THREADS", VARIABLE)


def _cpus() -> set[int]:
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


def cores(cpus: set[int], cpuinfo: str = "/proc/cpuinfo") -> int | None:
    """The physical cores among the processors `cpus`, from /proc/cpuinfo's `physical id` and
    `core id`; None where it does not say (not Linux, or a CPU that does not name them)."""
    try:
        with open(cpuinfo) as f:
            text = f.read()
    except OSError:
        return None
    found = set()
    for block in text.split("\n\n"):
        fields = dict(
            (key.strip(), value.strip())
            for key, _, value in (line.partition(":") for line in block.splitlines())
        )
        if "processor" not in fields:
            continue
        if "core id" not in fields:
            return None
        if int(fields["processor"]) in cpus:
            found.add((fields.get("physical id", "0"), fields["core id"]))
    return len(found) or None


def mxnet_default(cpus: set[int], machine: str | None = None) -> int:
    """The threads MXNet 1.9.1 takes when no variable says: half the processors on x86."""
    machine = (machine or platform.machine()).lower()
    x86 = machine in ("x86_64", "amd64", "i386", "i686", "x86")
    return max(1, len(cpus) // 2 if x86 else len(cpus))


def choose(
    environ=os.environ,
    cpuinfo: str = "/proc/cpuinfo",
    cpus: set[int] | None = None,
    machine: str | None = None,
    imported: bool | None = None,
) -> tuple[str, int | None]:
    """Set MXNet's threads to one per core where the caller set none; call before MXNet is
    imported. Returns what was done, in words, and the threads MXNet will run on."""
    for name in _SET_BY_YOU:
        if environ.get(name):
            count = environ.get(VARIABLE) or environ[name]
            return f"OpenMP threads as you set them ({name}={environ[name]})", _int(count)
    cpus = _cpus() if cpus is None else cpus
    default = mxnet_default(cpus, machine)
    if ("mxnet" in sys.modules) if imported is None else imported:
        return (
            f"MXNet's {_threads(default)}: MXNet was imported before nin, which chooses "
            "one per core; `OMP_NUM_THREADS` sets them",
            default,
        )
    found = cores(cpus, cpuinfo)
    if found is None:
        return f"MXNet's {_threads(default)} (`OMP_NUM_THREADS` sets them)", default
    if found == default:
        return f"{_threads(found)}, one per core", found
    environ[VARIABLE] = str(found)
    return (
        f"{_threads(found)}, one per core: nin's choice, where MXNet 1.9.1 alone takes "
        f"{default}; `OMP_NUM_THREADS` sets them",
        found,
    )


def _threads(count: int) -> str:
    return f"{count} OpenMP thread{'s' if count != 1 else ''}"


def _int(text: str) -> int | None:
    try:
        return int(str(text).split(",")[0])  # OMP_NUM_THREADS may list one count per level
    except ValueError:
        return None


def release(environ=os.environ) -> None:
    """Take the count `choose` set out of the environment, once MXNet has read it (at its
    import): a child process, perhaps on other processors, chooses for itself."""
    if CHOSE and environ.get(VARIABLE) == str(COUNT):
        del environ[VARIABLE]


# at the package's first import, before MXNet's (nin/backends/mxnet/__init__.py imports this
# module first)
_before = os.environ.get(VARIABLE)
STATE, COUNT = choose()
CHOSE = _before is None and os.environ.get(VARIABLE) is not None  # nin set it
