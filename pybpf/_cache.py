"""Where pybpf keeps its caches (build products, kernel BTF indexes, load plans, kernels for vmtest)."""

from __future__ import annotations

import os


def cache_root() -> str:
    """`$PYBPF_CACHE`, else `$XDG_CACHE_HOME/pybpf`, else `~/.cache/pybpf` (read at each call: tests and tools
    change it within one process)."""
    explicit = os.environ.get("PYBPF_CACHE")
    if explicit:
        return os.path.expanduser(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".cache"), "pybpf")


def boot_id() -> str:
    """This boot's id: what is cached per boot (kernel BTF indexes, load plans) is keyed by it."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()
