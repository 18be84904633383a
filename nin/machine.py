"""The machine's facts, read from Linux where a run needs them: the CPU's feature flags (native
bf16, AMX), the processors this process may run on, their physical cores, the cgroup's CPU
quota; and the one line said when a GPU was asked for and there is none. No framework is
imported here: the backends read these facts, each for its own choices."""

from __future__ import annotations

import math
import os

__all__ = ["note_device", "cpu_flags", "cpu_has_bf16", "process_cpus", "cores", "cpu_quota"]


def note_device(requested_gpus: int, available_gpus: int) -> None:
    """Print one line when a GPU was asked for and none is there."""
    if requested_gpus > 0 and available_gpus == 0:
        print("nin: no GPU found; training on the CPU.", flush=True)


def cpu_flags(cpuinfo: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them (empty where the file is missing)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_bf16(cpuinfo: str = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): where it does not, a
    bf16 fast path would be emulated and slower than fp32, so TensorFlow and MXNet keep fp32.
    (PyTorch asks oneDNN the same question through its own check.)"""
    return bool(cpu_flags(cpuinfo) & {"avx512_bf16", "amx_bf16"})


def process_cpus() -> set[int]:
    """The processors this process may run on (its affinity; all of them where the system
    does not say)."""
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
