"""Syscall kprobes (`SEC("ksyscall/<name>")`, `SEC("kretsyscall/<name>")`).

The kernel function behind a syscall depends on the architecture and on whether the kernel wraps
syscalls (4.17+ on x86_64: ``__x64_sys_openat`` takes a `pt_regs *` holding the user's registers). As
libbpf does, the wrapper is detected once from kallsyms (``__<arch>_sys_bpf``); without it the plain
``sys_<name>`` is probed. Programs written with libbpf's ``BPF_KSYSCALL`` read their arguments
according to the ``LINUX_HAS_SYSCALL_WRAPPER`` kconfig extern: `has_syscall_wrapper()` gives its value.
"""

from __future__ import annotations

import os

from pybpf._lazy import cache
from pybpf.link.base import Link
from pybpf.link.kprobe import attach_kprobe

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.program import Program

__all__ = ["attach_ksyscall", "has_syscall_wrapper", "syscall_function", "syscall_prefix"]

# libbpf's arch_specific_syscall_pfx(), by uname machine.
_ARCH_PREFIX = {
    "x86_64": "x64",
    "i386": "ia32",
    "i686": "ia32",
    "aarch64": "arm64",
    "arm64": "arm64",
    "s390x": "s390x",
    "s390": "s390",
    "armv7l": "arm",
    "armv6l": "arm",
    "ppc64le": "powerpc",
    "ppc64": "powerpc",
    "riscv64": "riscv",
    "loongarch64": "loongarch",
    "mips": "mips",
}
KALLSYMS = "/proc/kallsyms"


def _arch_prefix() -> str:
    return _ARCH_PREFIX.get(os.uname().machine, "")


@cache
def syscall_prefix() -> str:
    """"__x64_sys_" on wrapped x86_64 kernels, "sys_" where syscalls are not wrapped."""
    arch = _arch_prefix()
    if arch and _in_kallsyms(f"__{arch}_sys_bpf"):
        return f"__{arch}_sys_"
    return "sys_"


def has_syscall_wrapper() -> bool:
    """The value libbpf gives the ``LINUX_HAS_SYSCALL_WRAPPER`` kconfig extern."""
    return syscall_prefix() != "sys_"


def _in_kallsyms(symbol: str) -> bool:
    # A byte search over the whole file: parsing 150k lines would cost far more.
    needle = b" " + symbol.encode() + b"\n"
    try:
        with open(KALLSYMS, "rb") as f:
            data = f.read()
    except OSError:
        return False
    return needle in data or (b" " + symbol.encode() + b"\t") in data


def syscall_function(name: str) -> str:
    """The kernel function to probe for syscall `name` ("openat" -> "__x64_sys_openat")."""
    name = name.removeprefix("sys_")
    return syscall_prefix() + name


def attach_ksyscall(program: Program, syscall: str, *, retprobe: bool = False, cookie: int = 0) -> Link:
    """Attach a ksyscall (or, with `retprobe`, kretsyscall) program to syscall `syscall` ("openat")."""
    link = attach_kprobe(program, syscall_function(syscall), retprobe=retprobe, cookie=cookie)
    link.kind = "kretsyscall" if retprobe else "ksyscall"
    return link
