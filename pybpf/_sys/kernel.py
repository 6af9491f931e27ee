"""The running kernel's release and version numbers."""

from __future__ import annotations

import os

from pybpf._lazy import cache

__all__ = ["kernel_release", "kernel_version", "kernel_version_code", "parse_version"]


def parse_version(text: str) -> tuple[int, int, int]:
    """``"6.18.44-fc-v657"`` -> ``(6, 18, 44)``; missing parts are 0."""
    numbers: list[int] = []
    for part in text.split(".", 3)[:3]:
        digits = len(part) - len(part.lstrip("0123456789"))
        if not digits:
            break
        numbers.append(int(part[:digits]))
        if digits < len(part):  # "44-fc-v657": the version ends inside this part
            break
    if not numbers:
        raise ValueError(f"not a kernel version: {text!r}")
    numbers += [0] * (3 - len(numbers))
    return numbers[0], numbers[1], numbers[2]


@cache
def kernel_release() -> str:
    """``uname -r``."""
    return os.uname().release


@cache
def kernel_version() -> tuple[int, int, int]:
    """(major, minor, patch) of the running kernel. Ubuntu kernels report their upstream base in
    /proc/version_signature, which is what LINUX_VERSION_CODE holds there."""
    try:
        with open("/proc/version_signature") as f:
            parts = f.read().split()
        if len(parts) >= 3:
            return parse_version(parts[2])
    except OSError:
        pass
    return parse_version(kernel_release())


@cache
def kernel_version_code() -> int:
    """LINUX_VERSION_CODE of the running kernel (kprobe programs on kernels before 5.0 must pass it)."""
    major, minor, patch = kernel_version()
    return (major << 16) | (minor << 8) | min(patch, 255)
