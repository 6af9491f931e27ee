"""Shared machinery of the feature probes: tiny programs and maps loaded and closed at once.

Probes talk to bpf() directly (not through `Program`/`Map`): they expect to fail and need the raw errno
and verifier log, and they run a few thousand times when every helper is probed.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
import threading
from dataclasses import dataclass

from pybpf import asm
from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno
from pybpf.errors import ENOTSUPP

__all__ = ["ProbeResult", "create_map", "errno_name", "load_program", "try_load"]

GPL_LICENSE = ctypes.create_string_buffer(b"GPL")
_LOG_SIZE = 16 * 1024  # probe programs are one or two instructions: their logs are short
_log_buf = ctypes.create_string_buffer(_LOG_SIZE)
_log_lock = threading.Lock()


def errno_name(err: int) -> str:
    if err == ENOTSUPP:
        return "ENOTSUPP"
    return _errno.errorcode.get(err, f"errno {err}")


@dataclass(frozen=True)
class ProbeResult:
    """Whether the kernel has a feature. `errno`/`detail` say why not (or how the answer was reached).

    Truthy when supported, so ``if have_map_type(MapType.RINGBUF):`` reads naturally.
    """

    supported: bool
    errno: int = 0
    detail: str = ""

    def __bool__(self) -> bool:
        return self.supported

    def reason(self) -> str:
        """A short explanation for tables: the detail, or the errno name."""
        if self.detail:
            return self.detail
        return errno_name(self.errno) if self.errno else ""


def _encode(insns: asm.Instructions | bytes) -> bytes:
    return insns if isinstance(insns, bytes) else insns.encode()


def load_program(
    prog_type: int,
    insns: asm.Instructions | bytes,
    *,
    expected_attach_type: int = 0,
    attach_btf_id: int = 0,
    flags: int = 0,
    kern_version: int = 0,
    name: bytes = b"",
    log: bool = False,
) -> tuple[FD | None, int, str]:
    """BPF_PROG_LOAD of a probe program: (fd or None, errno, verifier log if asked for)."""
    raw = _encode(insns)
    buf = ctypes.create_string_buffer(raw, len(raw))
    attr = T.ProgLoadAttr(
        prog_type=prog_type,
        insn_cnt=len(raw) // 8,
        insns=ctypes.addressof(buf),
        license=ctypes.addressof(GPL_LICENSE),
        kern_version=kern_version,
        prog_flags=flags,
        expected_attach_type=expected_attach_type,
        attach_btf_id=attach_btf_id,
    )
    if name:
        ctypes.memmove(attr.prog_name, name, min(len(name), T.BPF_OBJ_NAME_LEN - 1))
    if not log:
        ret = bpf_errno(T.BPF_PROG_LOAD, attr)
        return (FD(ret), 0, "") if ret >= 0 else (None, -ret, "")
    with _log_lock:
        _log_buf[0] = b"\0"
        attr.log_level = 1
        attr.log_size = _LOG_SIZE
        attr.log_buf = ctypes.addressof(_log_buf)
        ret = bpf_errno(T.BPF_PROG_LOAD, attr)
        text = _log_buf.value.decode("utf-8", "replace")
    return (FD(ret), 0, text) if ret >= 0 else (None, -ret, text)


def try_load(prog_type: int, insns: asm.Instructions | bytes, **kwargs: int | bool | bytes) -> tuple[int, str]:
    """Load and close at once: (0 on success else errno, log)."""
    fd, err, text = load_program(prog_type, insns, **kwargs)  # type: ignore[arg-type]
    if fd is not None:
        fd.close()
    return err, text


def create_map(
    map_type: int,
    key_size: int = 4,
    value_size: int = 4,
    max_entries: int = 1,
    *,
    flags: int = 0,
    inner_map_fd: int = 0,
    btf_fd: int = 0,
    btf_key_type_id: int = 0,
    btf_value_type_id: int = 0,
    btf_vmlinux_value_type_id: int = 0,
    map_extra: int = 0,
    name: bytes = b"",
) -> tuple[FD | None, int]:
    """BPF_MAP_CREATE of a probe map: (fd or None, errno)."""
    attr = T.MapCreateAttr(
        map_type=map_type,
        key_size=key_size,
        value_size=value_size,
        max_entries=max_entries,
        map_flags=flags,
        inner_map_fd=inner_map_fd,
        btf_fd=btf_fd,
        btf_key_type_id=btf_key_type_id,
        btf_value_type_id=btf_value_type_id,
        btf_vmlinux_value_type_id=btf_vmlinux_value_type_id,
        map_extra=map_extra,
    )
    if name:
        ctypes.memmove(attr.map_name, name, min(len(name), T.BPF_OBJ_NAME_LEN - 1))
    ret = bpf_errno(T.BPF_MAP_CREATE, attr)
    return (FD(ret), 0) if ret >= 0 else (None, -ret)


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")
