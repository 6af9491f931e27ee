"""CPU counts as the kernel sees them: per-CPU maps hold one value slot per *possible* CPU."""

from __future__ import annotations

import os

from pybpf._lazy import cache

POSSIBLE = "/sys/devices/system/cpu/possible"
ONLINE = "/sys/devices/system/cpu/online"


def parse_cpu_list(text: str) -> list[int]:
    """Parse the kernel's cpulist format ("0-3,5,7-8") into sorted CPU numbers."""
    cpus: set[int] = set()
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            first, last = part.split("-", 1)
            cpus.update(range(int(first), int(last) + 1))
        else:
            cpus.add(int(part))
    return sorted(cpus)


def _read_cpu_list(path: str) -> list[int]:
    try:
        with open(path) as f:
            return parse_cpu_list(f.read())
    except (OSError, ValueError):
        # No sysfs (containers without /sys): os.cpu_count() is the best guess left.
        return list(range(os.cpu_count() or 1))


@cache
def possible_cpu_list() -> tuple[int, ...]:
    """The possible CPUs; fixed for the life of the system, so read once."""
    return tuple(_read_cpu_list(POSSIBLE))


def possible_cpus() -> int:
    """How many value slots a per-CPU map value has (the kernel's num_possible_cpus())."""
    return len(possible_cpu_list())


def online_cpu_list() -> list[int]:
    """The CPUs online right now (read each time: CPUs can be hot-plugged)."""
    return _read_cpu_list(ONLINE)


def online_cpus() -> int:
    return len(online_cpu_list())
