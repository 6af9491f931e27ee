"""Where the toolchain keeps its cache and finds its tools and headers."""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import subprocess
import sysconfig
from pathlib import Path

from pybpf import _cache
from pybpf.errors import BPFError

__all__ = [
    "ClangNotFoundError",
    "cache_root",
    "clang_identity",
    "find_clang",
    "include_dirs",
    "target_arch",
    "target_arch_define",
]

# platform.machine() -> the arch name libbpf's bpf_tracing.h expects in __TARGET_ARCH_<name>.
_TARGET_ARCH: dict[str, str] = {
    "x86_64": "x86",
    "amd64": "x86",
    "i386": "x86",
    "i486": "x86",
    "i586": "x86",
    "i686": "x86",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv6l": "arm",
    "armv7l": "arm",
    "armv8l": "arm",
    "s390x": "s390",
    "ppc64": "powerpc",
    "ppc64le": "powerpc",
    "mips": "mips",
    "mips64": "mips",
    "mipsel": "mips",
    "mips64el": "mips",
    "riscv64": "riscv",
    "loongarch64": "loongarch",
    "sparc64": "sparc",
}

# Debian/Ubuntu multiarch triplets, used when Python was not built with MULTIARCH.
_MULTIARCH: dict[str, str] = {
    "x86_64": "x86_64-linux-gnu",
    "aarch64": "aarch64-linux-gnu",
    "armv7l": "arm-linux-gnueabihf",
    "s390x": "s390x-linux-gnu",
    "ppc64le": "powerpc64le-linux-gnu",
    "riscv64": "riscv64-linux-gnu",
    "loongarch64": "loongarch64-linux-gnu",
    "i686": "i386-linux-gnu",
}

_PACKAGE_INCLUDE = Path(__file__).resolve().parent.parent / "include"
_VERSIONED_CLANG = re.compile(r"^clang-(\d+)$")
_LLVM_DIR_VERSION = re.compile(r"(?:llvm|clang)-(\d+)")


class ClangNotFoundError(BPFError, FileNotFoundError):
    """No usable clang on PATH."""


def cache_root() -> Path:
    """`$PYBPF_CACHE`, else `$XDG_CACHE_HOME/pybpf`, else `~/.cache/pybpf`."""
    return Path(_cache.cache_root())


def target_arch() -> str:
    """The kernel arch name (x86, arm64, ...) of this machine, as bpf_tracing.h spells it."""
    machine = platform.machine()
    try:
        return _TARGET_ARCH[machine]
    except KeyError:
        raise BPFError(
            f"unknown machine {machine!r}: pass -D__TARGET_ARCH_<arch> in cflags yourself"
        ) from None


def target_arch_define() -> str:
    """`-D__TARGET_ARCH_x86` (or arm64, ...) for this machine; bpf_tracing.h's PT_REGS macros need it."""
    return f"-D__TARGET_ARCH_{target_arch()}"


def find_clang() -> str:
    """Path of the newest clang on PATH (`$PYBPF_CLANG` overrides); raises ClangNotFoundError."""
    explicit = os.environ.get("PYBPF_CLANG")
    if explicit:
        found = shutil.which(explicit)
        if found is None:
            raise ClangNotFoundError(f"PYBPF_CLANG={explicit!r} is not an executable")
        return found
    return _find_clang_on_path(os.environ.get("PATH", os.defpath))


@functools.lru_cache(maxsize=8)
def _find_clang_on_path(search_path: str) -> str:
    candidates: list[tuple[int, int, str]] = []  # (version, order, path); order keeps PATH precedence
    seen: set[str] = set()
    for directory in search_path.split(os.pathsep):
        try:
            names = os.listdir(directory or ".")
        except OSError:
            continue
        for name in names:
            if name != "clang" and not _VERSIONED_CLANG.match(name):
                continue
            path = os.path.join(directory, name)
            if not os.access(path, os.X_OK) or os.path.isdir(path):
                continue
            real = os.path.realpath(path)
            if real in seen:
                continue
            seen.add(real)
            candidates.append((_clang_version(name, real, path), -len(candidates), path))
    if not candidates:
        raise ClangNotFoundError(
            "clang was not found on PATH; install it (Debian/Ubuntu: `apt install clang`, "
            "Fedora: `dnf install clang`) or set PYBPF_CLANG to its path"
        )
    return max(candidates)[2]


def _clang_version(name: str, real: str, path: str) -> int:
    # Debian names and layouts (clang-14, /usr/lib/llvm-14/bin/clang) give the version without a subprocess.
    match = _VERSIONED_CLANG.match(name) or _LLVM_DIR_VERSION.search(real)
    if match:
        return int(match.group(1))
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return -1
    found = re.search(r"clang version (\d+)", out)
    return int(found.group(1)) if found else -1


def clang_identity(clang: str) -> str:
    """A string that changes whenever the clang binary does (for cache keys), without running it."""
    real = os.path.realpath(clang)
    st = os.stat(real)
    return f"{real}:{st.st_size}:{st.st_mtime_ns}"


def include_dirs() -> list[str]:
    """Include dirs every BPF compile needs: the multiarch dir (asm/types.h) and pybpf's own headers."""
    dirs: list[str] = []
    triplet = sysconfig.get_config_var("MULTIARCH") or _MULTIARCH.get(platform.machine(), "")
    if triplet:
        arch_dir = Path("/usr/include") / triplet
        if arch_dir.is_dir():
            dirs.append(str(arch_dir))
    if _PACKAGE_INCLUDE.is_dir():
        dirs.append(str(_PACKAGE_INCLUDE))
    return dirs
