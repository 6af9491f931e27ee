"""Raw tracepoints (`SEC("raw_tp/<name>")`, `SEC("raw_tracepoint/<name>")`, writable `raw_tp.w/`).

BPF_RAW_TRACEPOINT_OPEN takes the tracepoint's name (without category: ``sys_enter``, ``sched_switch``)
and returns a BPF link fd (Linux 5.7+), which can be pinned and queried like any link.
"""

from __future__ import annotations

import ctypes
import errno as _errno

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link.base import Link, prog_type_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.program import Program

__all__ = ["attach_raw_tracepoint", "raw_tracepoint_open"]

_RAW_TP_TYPES = (T.BPF_PROG_TYPE_RAW_TRACEPOINT, T.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE)


def raw_tracepoint_open(program: Program, name: str | None, *, cookie: int = 0, what: str = "") -> FD:
    """BPF_RAW_TRACEPOINT_OPEN. `name` None attaches a BTF-targeted program (tp_btf, fentry, lsm, ...)
    to the target it was loaded for."""
    buf = ctypes.create_string_buffer(name.encode()) if name is not None else None
    attr = T.RawTracepointOpenAttr(name=ctypes.addressof(buf) if buf is not None else 0, prog_fd=int(program.fd))
    attr.cookie = cookie
    ret = bpf_errno(T.BPF_RAW_TRACEPOINT_OPEN, attr)
    if ret >= 0:
        return FD(ret)
    err = -ret
    target = what or f"raw tracepoint {name}"
    if err == _errno.ENOENT and name is not None:
        raise BPFError(
            f"{target} does not exist in this kernel; list them with `pybpf probes 'rawtracepoint:*'` (raw "
            "tracepoints are named without their category: 'sys_enter', not 'raw_syscalls/sys_enter')",
            err, "BPF_RAW_TRACEPOINT_OPEN")
    if err in (_errno.E2BIG, _errno.EINVAL) and cookie:
        raise NotSupportedError("BPF cookies on raw tracepoints", "6.10", err,
                                detail=f"cannot attach {program.name!r} to {target} with a cookie")
    hint = ""
    if err == _errno.EINVAL:
        kind = prog_type_name(program)
        hint = f" (program {program.name!r} is {kind}; is it loaded for this hook?)"
    raise BPFError(f"attaching {program.name!r} to {target}{hint} failed", err, "BPF_RAW_TRACEPOINT_OPEN")


def attach_raw_tracepoint(program: Program, name: str, *, cookie: int = 0) -> Link:
    """Attach a raw tracepoint program to tracepoint `name` ("sys_enter", "sched_switch"; a
    "category/name" form is accepted and its category dropped)."""
    if program.prog_type not in _RAW_TP_TYPES:
        kind = prog_type_name(program)
        raise BPFError(f"program {program.name!r} is {kind}, not a raw tracepoint program "
                       "(SEC(\"raw_tp/...\"))", _errno.EINVAL)
    tp = name.rpartition("/")[2]
    if not tp:
        raise ValueError("attach_raw_tracepoint needs a tracepoint name, e.g. 'sys_enter'")
    fd = raw_tracepoint_open(program, tp, cookie=cookie)
    return Link(program, "raw_tracepoint", tp, fd=fd)
