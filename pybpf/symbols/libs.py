"""Find shared libraries and programs by name, the way libbpf does for uprobes."""

from __future__ import annotations

import functools
import os
import platform
import re
import shutil
import struct
import sys
import sysconfig

from pybpf.symbols.elf import SymbolNotFoundError

__all__ = ["LD_SO_CACHE", "find_library", "ld_so_cache", "resolve_binary"]

LD_SO_CACHE = "/etc/ld.so.cache"
_CACHE_MAGIC = b"glibc-ld.so.cache1.1"
_HEADER = struct.Struct("=20sIIB3xI12x")  # magic+version, nlibs, len_strings, flags, extension_offset
_ENTRY = struct.Struct("=iIIIQ")  # flags, key, value, osversion, hwcap


@functools.lru_cache(maxsize=4)
def ld_so_cache(path: str = LD_SO_CACHE) -> tuple[tuple[str, str], ...]:
    """(soname, path) pairs from glibc's ld.so.cache (what `ldconfig -p` prints), in the cache's order."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError:
        return ()
    base = data.find(_CACHE_MAGIC)
    if base < 0:
        return ()
    _, nlibs, _, _, _ = _HEADER.unpack_from(data, base)
    entries: list[tuple[str, str]] = []
    offset = base + _HEADER.size
    for _ in range(nlibs):
        if offset + _ENTRY.size > len(data):
            break
        _, key, value, _, _ = _ENTRY.unpack_from(data, offset)
        offset += _ENTRY.size
        entries.append((_cstr(data, base + key), _cstr(data, base + value)))
    return tuple(entries)


def _cstr(data: bytes, offset: int) -> str:
    end = data.find(b"\0", offset)
    return data[offset:end].decode(errors="replace")


@functools.lru_cache(maxsize=1)
def _own_elf_kind() -> bytes:
    """ELF class, data encoding and machine of this Python, to skip other-arch libraries (lib32, x32)."""
    try:
        with open(sys.executable, "rb") as f:
            return _elf_kind(f.read(20))
    except OSError:
        return b""


def _elf_kind(header: bytes) -> bytes:
    return header[4:6] + header[18:20] if header[:4] == b"\x7fELF" else b""


def _matches_arch(path: str) -> bool:
    own = _own_elf_kind()
    try:
        with open(path, "rb") as f:
            kind = _elf_kind(f.read(20))
    except OSError:
        return False
    return bool(kind) and (not own or kind == own)


def _standard_dirs() -> list[str]:
    triplet = sysconfig.get_config_var("MULTIARCH") or f"{platform.machine()}-linux-gnu"
    return [
        f"/lib/{triplet}",
        f"/usr/lib/{triplet}",
        "/lib64",
        "/usr/lib64",
        "/lib",
        "/usr/lib",
        "/usr/local/lib",
    ]


def find_library(name: str) -> str:
    """Path of a shared library: "c", "libc", "libc.so" or "libc.so.6" (an exact file name is matched
    exactly). Searches LD_LIBRARY_PATH, then ld.so.cache, then the standard lib dirs, keeping only
    libraries of this machine's architecture. Raises SymbolNotFoundError."""
    if "/" in name:
        if os.path.isfile(name):
            return name
        raise SymbolNotFoundError(f"no such library file {name!r}")
    if name.endswith(".so"):  # the unversioned dev name is often a linker script: accept libX.so.N too
        pattern = re.compile(re.escape(name) + r"(\.[0-9.]+)?$")
    elif ".so" in name:
        pattern = re.compile(re.escape(name) + "$")
    else:
        stem = name if name.startswith("lib") else f"lib{name}"
        pattern = re.compile(re.escape(stem) + r"\.so(\.[0-9.]+)?$")

    for directory in filter(None, os.environ.get("LD_LIBRARY_PATH", "").split(":")):
        found = _search_dir(directory, pattern)
        if found:
            return found
    for soname, path in ld_so_cache():
        if pattern.match(soname) and _matches_arch(path):
            return path
    for directory in _standard_dirs():
        found = _search_dir(directory, pattern)
        if found:
            return found
    raise SymbolNotFoundError(
        f"library {name!r} not found in LD_LIBRARY_PATH, {LD_SO_CACHE} or the standard lib dirs; pass its path"
    )


def _search_dir(directory: str, pattern: re.Pattern[str]) -> str | None:
    try:
        names = sorted(os.listdir(directory), key=_version_key, reverse=True)
    except OSError:
        return None
    for entry in names:
        path = os.path.join(directory, entry)
        if pattern.match(entry) and os.path.isfile(path) and _matches_arch(path):
            return path
    return None


def _version_key(filename: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", filename))


def resolve_binary(binary: str) -> str:
    """A path for `binary`: kept if it contains '/', else a library ("libc.so.6", "c") or a program on PATH."""
    if "/" in binary:
        if not os.path.exists(binary):
            raise SymbolNotFoundError(f"no such file {binary!r}")
        return binary
    if ".so" not in binary:
        program = shutil.which(binary)
        if program is not None:
            return program
    return find_library(binary)
