"""`vmlinux.h` for the running kernel, generated from its BTF and cached by the BTF's content hash."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

from pybpf._cache import write_atomically
from pybpf.errors import NotSupportedError
from pybpf.toolchain._paths import cache_root

__all__ = ["KERNEL_BTF", "ensure_vmlinux_h", "kernel_btf_hash"]

KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")

_lock = threading.Lock()
_memo: dict[str, Path] = {}


def _vmlinux_cache() -> Path:
    return cache_root() / "vmlinux"


def kernel_btf_hash(btf: Path = KERNEL_BTF) -> str:
    """Content hash of the kernel's BTF. Hashing 5.5 MB costs ~20 ms, so the result is remembered on disk
    under a key made of the kernel's uname and the file's size and time, which change with the kernel."""
    try:
        st = btf.stat()
    except FileNotFoundError:
        raise NotSupportedError(
            "kernel BTF (/sys/kernel/btf/vmlinux)",
            "5.4",
            detail="the kernel was built without CONFIG_DEBUG_INFO_BTF",
        ) from None
    uname = os.uname()
    stamp = f"{btf}|{uname.release}|{uname.version}|{st.st_size}|{st.st_mtime_ns}"
    pointer = _vmlinux_cache() / "by-kernel" / hashlib.blake2b(stamp.encode(), digest_size=16).hexdigest()
    try:
        cached = pointer.read_text().strip()
        if len(cached) == 40:
            return cached
    except OSError:
        pass
    digest = hashlib.blake2b(btf.read_bytes(), digest_size=20).hexdigest()
    write_atomically(pointer, [digest.encode()])
    return digest


def ensure_vmlinux_h() -> Path:
    """Path of a cached `vmlinux.h` for the running kernel (generated on first use)."""
    digest = kernel_btf_hash()
    key = f"{digest}-{_GENERATOR_TAG}"
    root = _vmlinux_cache()
    memo_key = f"{root}/{key}"  # the cache root can change (PYBPF_CACHE) within one process
    with _lock:
        path = _memo.get(memo_key)
        if path is not None and path.exists():
            return path
        path = root / key / "vmlinux.h"
        if not path.exists():
            write_atomically(path, [_generate_header().encode()])
        _memo[memo_key] = path
        return path


# Part of the cache key, so a changed generator regenerates: bump when pybpf.btf.cdump's output changes.
_GENERATOR_TAG = "pybpf1"


def _generate_header() -> str:
    from pybpf.btf.cdump import vmlinux_header  # imported only when a header must be written

    return vmlinux_header()


