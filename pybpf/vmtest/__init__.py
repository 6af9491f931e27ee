"""The second-kernel runner: boot another kernel (Debian's 6.1 by default) under qemu and run a command in it
as root, on this machine's root filesystem (read-only, with a tmpfs overlay)."""

from __future__ import annotations

from pybpf.vmtest.kernels import (
    KernelImage,
    VMTestError,
    cache_dir,
    ensure_debian_kernel,
    kernel_from_vmlinuz,
)
from pybpf.vmtest.runner import GUEST_ENV_VAR, in_guest, resolve_kernel, run

__all__ = [
    "GUEST_ENV_VAR",
    "KernelImage",
    "VMTestError",
    "cache_dir",
    "ensure_debian_kernel",
    "in_guest",
    "kernel_from_vmlinuz",
    "resolve_kernel",
    "run",
]
