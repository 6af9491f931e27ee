"""Pinning kernel objects (maps, programs, links) in a bpf filesystem, and opening them from their pins.

One place for BPF_OBJ_PIN / BPF_OBJ_GET, so every kind of object gets the same mount handling and the same
errors that say what to do.
"""

from __future__ import annotations

import ctypes
import errno
import os

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.mounts import BPFFS, ensure_bpffs, is_bpffs
from pybpf._sys.syscall import bpf, bpf_fd
from pybpf.errors import BPFError

__all__ = ["open_pinned", "pin_fd"]


def pin_fd(fd: FD | int, path: str | os.PathLike[str], what: str) -> str:
    """Pin the object behind `fd` at `path` (mounting /sys/fs/bpf first when it is missing); returns the path.
    `what` names the object in errors, e.g. "map 'counts'"."""
    where = os.fspath(path)
    if where.startswith(BPFFS + "/"):
        ensure_bpffs()
    buf = ctypes.create_string_buffer(where.encode())
    attr = T.ObjPinAttr(pathname=ctypes.addressof(buf), bpf_fd=int(fd))
    try:
        bpf(T.BPF_OBJ_PIN, attr, where)
    except BPFError as exc:
        if exc.errno == errno.EPERM and not is_bpffs(where):
            raise BPFError(f"pinning {what} at {where} failed: the directory is not on a bpf filesystem "
                           f"(pin under {BPFFS})", errno.EPERM, "BPF_OBJ_PIN") from None
        if exc.errno == errno.EEXIST:
            raise BPFError(f"pinning {what} failed: {where} already exists (unpin or remove it)",
                           errno.EEXIST, "BPF_OBJ_PIN") from None
        raise
    return where


def open_pinned(path: str | os.PathLike[str], flags: int = 0) -> FD:
    """A new fd for the object pinned at `path` (flags: BPF_F_RDONLY / BPF_F_WRONLY for maps)."""
    where = os.fspath(path)
    buf = ctypes.create_string_buffer(where.encode())
    attr = T.ObjPinAttr(pathname=ctypes.addressof(buf), file_flags=flags)
    try:
        return bpf_fd(T.BPF_OBJ_GET, attr, where)
    except BPFError as exc:
        if exc.errno == errno.ENOENT:
            raise BPFError(f"nothing is pinned at {where}", errno.ENOENT, "BPF_OBJ_GET") from None
        raise
