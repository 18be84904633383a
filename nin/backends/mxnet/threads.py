"""MXNet 1.9.1's OpenMP threads: one per core, chosen before MXNet is imported.

At import, MXNet 1.9.1 (its engine's `OpenMP`) takes half the processors this process may
run on, as if each core were two hyperthreads, unless `OMP_NUM_THREADS` or
`MXNET_OMP_MAX_THREADS` says otherwise, and it sets that count in OpenMP for the whole
process: PyTorch's operators, in the same process, drop to it too. On a CPU with one thread
per core (many cloud machines: README, Speed) that is half the cores. Where neither variable
is set and the cores differ from MXNet's count, `choose` sets `MXNET_OMP_MAX_THREADS` to the
cores (at most `OMP_THREAD_LIMIT` and the cgroup's CPU quota; MXNet then leaves OpenMP's own
count alone); `release` puts the variable back as it was once MXNet has read it, so that a
child process chooses for itself. A value MXNet cannot read (it aborts the process on
anything but a whole number) is refused first, with the fix. `STATE` says what runs, for
the Trainer's start line; `COUNT` is the threads MXNet's oneDNN kernels run on, for
history.json.
"""

from __future__ import annotations

import os
import platform
import re
import sys

from nin.machine import cores, cpu_quota, process_cpus

__all__ = ["choose", "mxnet_default", "release", "STATE", "COUNT", "CHOSE"]

VARIABLE = "MXNET_OMP_MAX_THREADS"
_OMP, _LIMIT = "OMP_NUM_THREADS", "OMP_THREAD_LIMIT"


def mxnet_default(cpus: set[int], machine: str | None = None) -> int:
    """The threads MXNet 1.9.1 takes when no variable says: half the processors on x86."""
    machine = (machine or platform.machine()).lower()
    x86 = machine in ("x86_64", "amd64", "i386", "i686", "x86")
    return max(1, len(cpus) // 2 if x86 else len(cpus))


_INT_MAX = 2**31 - 1
_WHOLE = re.compile(r"[ \t\n\v\f\r]*\+?[0-9]+[ \t\n\v\f\r]*")  # as MXNet reads an int


def _whole(environ, name: str) -> int | None:
    """The variable's count; None where unset or empty (MXNet reads "" as unset). MXNet 1.9.1
    aborts the process on anything but a whole number (blanks alone too): refused here
    first, with the fix."""
    value = environ.get(name, "")
    if value == "":
        return None
    if not _WHOLE.fullmatch(value) or not 1 <= int(value) <= _INT_MAX:
        cpus = process_cpus()
        raise ValueError(
            f"{name}={value!r}: MXNet 1.9.1 takes one whole number of threads, at least 1 "
            f"(on anything else it stops the process, or runs a count of its own); set it to "
            f"a number such as {cores(cpus) or len(cpus)}, or unset it for nin's choice, one "
            f"thread per core"
        )
    return int(value)


def _limit(environ) -> tuple[int | None, str]:
    """OpenMP's `OMP_THREAD_LIMIT` (MXNet does not read it); OpenMP ignores a value that is
    not a positive whole number, and so does nin, saying so."""
    value = environ.get(_LIMIT, "")
    if value.strip() == "":
        return None, ""
    if _WHOLE.fullmatch(value) and 1 <= int(value) <= _INT_MAX:
        return int(value), ""
    return None, f"; {_LIMIT}={value!r} ignored, as OpenMP ignores it"


def choose(
    environ=os.environ,
    cpuinfo: str = "/proc/cpuinfo",
    cpus: set[int] | None = None,
    machine: str | None = None,
    imported: bool | None = None,
    quota: int | None | bool = True,
) -> tuple[str, int, bool]:
    """Set MXNet's threads to one per core where the caller set none; call before MXNet is
    imported. Returns what runs, in words; the threads MXNet's oneDNN kernels run on; and
    whether `MXNET_OMP_MAX_THREADS` was set here. `quota`: the cgroup's CPU quota (True:
    read it)."""
    omp, mine = _whole(environ, _OMP), _whole(environ, VARIABLE)
    limit, ignored = _limit(environ)
    cpus = process_cpus() if cpus is None else cpus
    if omp or mine:
        given = ", ".join(
            f"{n}={environ[n].strip()}" for n in (_OMP, VARIABLE) if environ.get(n, "")
        ) + (f", {_LIMIT}={limit}" if limit else "")
        # with OMP_NUM_THREADS set, MXNet runs on OpenMP's count, that one; without, on its
        # own count, at most OpenMP's (one thread a processor)
        count = omp if omp else min(mine or 1, len(cpus))
        count = min(count, limit) if limit else count
        return f"MXNet on {_threads(count)}, as you set them ({given}{ignored})", count, False
    default = mxnet_default(cpus, machine)
    default = min(default, limit) if limit else default
    how = f"`{_OMP}` sets another count{ignored}"
    if ("mxnet" in sys.modules) if imported is None else imported:
        return (
            f"MXNet on its own {_threads(default)} (imported before nin: import "
            f"nin.backends.mxnet first for one thread per core; {how})",
            default,
            False,
        )
    found = cores(cpus, cpuinfo)
    if found is None:
        return f"MXNet on its own {_threads(default)} ({how})", default, False
    caps = []
    quota = cpu_quota() if quota is True else quota or None
    if quota and quota < found:
        found = quota
        caps.append(f"the cgroup's CPU quota, {quota}")
    if limit and limit < found:
        found = limit
        caps.append(f"{_LIMIT}={limit}")
    per_core = "one per core" + (f", at most {' and '.join(caps)}" if caps else "")
    if found == default:
        return f"MXNet on {_threads(found)} ({per_core}; {how})", found, False
    environ[VARIABLE] = str(found)
    return (
        f"MXNet on {_threads(found)} ({per_core}: nin's choice, where MXNet 1.9.1 alone takes "
        f"{default}; {how})",
        found,
        True,
    )


def _threads(count: int) -> str:
    return f"{count} OpenMP thread{'s' if count != 1 else ''}"


def release(environ=os.environ) -> None:
    """Put `MXNET_OMP_MAX_THREADS` back as it was before `choose` set it, once MXNet has read
    it (at its import): a child process, perhaps on other processors, chooses for itself."""
    if CHOSE and environ.get(VARIABLE) == str(COUNT):
        if _BEFORE is None:
            del environ[VARIABLE]
        else:
            environ[VARIABLE] = _BEFORE  # an empty value, which MXNet reads as unset


# at the package's first import, before MXNet's (nin/backends/mxnet/__init__.py imports this
# module first)
_BEFORE = os.environ.get(VARIABLE)
STATE, COUNT, CHOSE = choose()
