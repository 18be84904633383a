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

import math
import os
import platform
import re
import sys

__all__ = ["choose", "cores", "cpu_quota", "mxnet_default", "release", "STATE", "COUNT", "CHOSE"]

VARIABLE = "MXNET_OMP_MAX_THREADS"
_OMP, _LIMIT = "OMP_NUM_THREADS", "OMP_THREAD_LIMIT"


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
        fields = {
            key.strip(): value.strip()
            for key, _, value in (line.partition(":") for line in block.splitlines())
        }
        if "processor" not in fields:
            continue
        if "core id" not in fields or not fields["processor"].isdigit():
            return None
        if int(fields["processor"]) in cpus:
            found.add((fields.get("physical id", "0"), fields["core id"]))
    return len(found) or None


def _cgroup_paths(self_cgroup: str) -> tuple[str, str]:
    """This process's cgroup path in cgroup v2's hierarchy and in v1's cpu controller's,
    from /proc/self/cgroup ("/" where the file does not say)."""
    v2 = v1 = "/"
    try:
        with open(self_cgroup, errors="surrogateescape") as f:
            lines = f.read().splitlines()
    except (OSError, ValueError):
        return v2, v1
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        number, controllers, path = parts
        if number == "0" and controllers == "":
            v2 = path or "/"
        elif "cpu" in controllers.split(","):
            v1 = path or "/"
    return v2, v1


def _up_from(base: str, path: str) -> list[str]:
    """`base`/`path`, then each folder above it up to `base` itself; `base` alone for a path
    outside this namespace's cgroup ("/../x": it is not below `base`)."""
    parts = [p for p in path.split("/") if p and p != "."]
    if ".." in parts:
        parts = []
    return [os.path.join(base, *parts[:n]) for n in range(len(parts), -1, -1)]


def _cpus_allowed(quota_file: str, period_file: str | None) -> int | None | bool:
    """The CPUs one cgroup folder's files allow (quota over period, rounded up); None where
    they set no quota; False where the files are missing or unreadable."""
    try:
        with open(quota_file) as f:
            words = f.read().split()
        if period_file:
            with open(period_file) as f:
                words.append(f.read().strip())
        if words[:1] == ["max"]:  # v2's "max 100000": no quota
            return None
        quota, period = int(words[0]), int(words[1])
    except (OSError, ValueError, IndexError):
        return False
    return max(1, math.ceil(quota / period)) if quota > 0 and period > 0 else None


def cpu_quota(root: str = "/sys/fs/cgroup", self_cgroup: str = "/proc/self/cgroup") -> int | None:
    """The CPUs this process's cgroup may use (its quota over its period, rounded up), from
    cgroup v2's cpu.max or else v1's cpu.cfs_quota_us, in the process's own cgroup folder
    (named in `self_cgroup`) and every folder above it: the smallest quota among them counts.
    None where none sets a quota."""
    v2_path, v1_path = _cgroup_paths(self_cgroup)
    for folders, quota_name, period_name in (
        (_up_from(root, v2_path), "cpu.max", None),
        (_up_from(os.path.join(root, "cpu"), v1_path), "cpu.cfs_quota_us", "cpu.cfs_period_us"),
    ):
        found = [
            _cpus_allowed(
                os.path.join(folder, quota_name),
                period_name and os.path.join(folder, period_name),
            )
            for folder in folders
        ]
        read = [n for n in found if n is not False]
        if read:  # this hierarchy has the files: v2 first, v1 only where v2 has none
            quotas = [n for n in read if n is not None]
            return min(quotas) if quotas else None
    return None


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
        cpus = _cpus()
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
    cpus = _cpus() if cpus is None else cpus
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
