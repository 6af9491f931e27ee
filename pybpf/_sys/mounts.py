"""Mount bpffs, tracefs and debugfs when they are missing (as root), so users never have to."""

from __future__ import annotations

import ctypes
import os

from pybpf.errors import BPFError

BPFFS = "/sys/fs/bpf"
TRACEFS = "/sys/kernel/tracing"
DEBUGFS = "/sys/kernel/debug"
BPF_FS_MAGIC = 0xCAFE4A11
TRACEFS_MAGIC = 0x74726163
DEBUGFS_MAGIC = 0x64626720

_libc = ctypes.CDLL(None, use_errno=True)


def _mounts() -> list[tuple[str, str]]:
    """(mount point, filesystem type) of every mount in /proc/self/mounts, in mount order."""
    try:
        with open("/proc/self/mounts") as f:
            return [(parts[1], parts[2]) for parts in map(str.split, f) if len(parts) >= 3]
    except OSError:
        return []


def _fs_type(path: str) -> str | None:
    """The filesystem type mounted exactly at path, from /proc/self/mounts."""
    found = None
    for point, fstype in _mounts():
        if point == path:
            found = fstype  # the last mount at a path wins
    return found


def mount_point(fstype: str) -> str | None:
    """Where a filesystem of type `fstype` ("cgroup2", "bpf") is mounted first (None: nowhere)."""
    return next((point for point, kind in _mounts() if kind == fstype), None)


def _mount(fstype: str, target: str) -> None:
    os.makedirs(target, exist_ok=True)
    if _libc.mount(fstype.encode(), target.encode(), fstype.encode(), 0, None) != 0:
        err = ctypes.get_errno()
        raise BPFError(f"mounting {fstype} at {target} failed (mount -t {fstype} none {target} as root)", err, "mount")


def ensure_bpffs(path: str = BPFFS) -> str:
    """Make sure a bpf filesystem is mounted at path; returns path."""
    if _fs_type(path) != "bpf":
        _mount("bpf", path)
    return path


def ensure_tracefs() -> str:
    """Return the tracefs directory, mounting tracefs when it is missing."""
    if _fs_type(TRACEFS) == "tracefs":
        return TRACEFS
    legacy = os.path.join(DEBUGFS, "tracing")
    if _fs_type(legacy) == "tracefs":
        return legacy
    _mount("tracefs", TRACEFS)
    return TRACEFS


def ensure_debugfs() -> str:
    if _fs_type(DEBUGFS) != "debugfs":
        _mount("debugfs", DEBUGFS)
    return DEBUGFS


def is_bpffs(path: str) -> bool:
    """Whether path lies on a bpf filesystem (statfs magic)."""

    class _Statfs(ctypes.Structure):
        _fields_ = [("f_type", ctypes.c_long), ("_rest", ctypes.c_byte * 120)]

    buf = _Statfs()
    if _libc.statfs(os.path.dirname(path) or ".", ctypes.byref(buf)) != 0:
        return False
    return bool((buf.f_type & 0xFFFFFFFF) == BPF_FS_MAGIC)
