"""The raw system calls: bpf(), perf_event_open() and ioctl(), through ctypes on libc's syscall()."""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf.errors import BPFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_ioctl = _libc.ioctl
_ioctl.restype = ctypes.c_int
_ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]

_NR: dict[str, tuple[int, int]] = {  # machine -> (bpf, perf_event_open)
    "x86_64": (321, 298),
    "aarch64": (280, 241),
    "riscv64": (280, 241),
    "ppc64le": (361, 319),
    "s390x": (351, 331),
}
try:
    NR_BPF, NR_PERF_EVENT_OPEN = _NR[os.uname().machine]
except KeyError as exc:  # pragma: no cover - other architectures are untested
    raise ImportError(f"pybpf does not know the syscall numbers of {os.uname().machine}") from exc

def command_name(cmd: int) -> str:
    try:
        return f"BPF_{T.Cmd(cmd).name}"  # builds the enum: only errors and displays ask
    except ValueError:
        return f"bpf cmd {int(cmd)}"


def bpf(cmd: int, attr: ctypes.Structure | ctypes.Union, what: str = "") -> int:
    """Call bpf(cmd, &attr, sizeof(attr)); the size is the command's struct size (per-command truncation).

    Retries EINTR, and EAGAIN a few times for program loads as libbpf does. Raises BPFError.
    """
    size = ctypes.sizeof(attr)
    ref = ctypes.byref(attr)
    tries = 0
    while True:
        ret: int = _syscall(NR_BPF, ctypes.c_int(int(cmd)), ref, ctypes.c_uint(size))
        if ret >= 0:
            return ret
        err = ctypes.get_errno()
        tries += 1
        if err == _errno.EINTR or (err == _errno.EAGAIN and cmd == T.BPF_PROG_LOAD and tries < 5):
            continue
        name = command_name(cmd)
        raise BPFError(f"{name}{' (' + what + ')' if what else ''} failed", err, name)


def bpf_fd(cmd: int, attr: ctypes.Structure | ctypes.Union, what: str = "") -> FD:
    """bpf() for commands that return a new file descriptor."""
    return FD(bpf(cmd, attr, what))


def bpf_errno(cmd: int, attr: ctypes.Structure | ctypes.Union) -> int:
    """bpf() returning -errno instead of raising: for hot paths (map lookups) where ENOENT is normal."""
    ret: int = _syscall(NR_BPF, ctypes.c_int(int(cmd)), ctypes.byref(attr), ctypes.c_uint(ctypes.sizeof(attr)))
    return ret if ret >= 0 else -ctypes.get_errno()


def btf_load(blob: bytes, log: ctypes.Array[ctypes.c_char] | None = None, log_level: int = 1) -> FD:
    """BPF_BTF_LOAD of `blob` (with the kernel's log written into `log` when given); raises BPFError."""
    data = ctypes.create_string_buffer(blob, len(blob))
    attr = T.BtfLoadAttr()
    attr.btf = ctypes.addressof(data)
    attr.btf_size = len(blob)
    if log is not None:
        attr.btf_log_buf = ctypes.addressof(log)
        attr.btf_log_size = len(log)
        attr.btf_log_level = log_level
    return bpf_fd(T.BPF_BTF_LOAD, attr, "BTF")


def object_ids(cmd: int) -> Iterator[int]:
    """Ids of every live program/map/link/BTF object (a BPF_*_GET_NEXT_ID command), ascending."""
    current = 0
    while True:
        attr = T.GetIdAttr(start_id=current)
        ret = bpf_errno(cmd, attr)
        if ret == -_errno.ENOENT:
            return
        if ret < 0:
            raise BPFError(f"cannot list ids ({os.strerror(-ret)}); needs CAP_SYS_ADMIN", -ret, command_name(cmd))
        current = attr.next_id
        yield current


def perf_event_open(attr: T.PerfEventAttr, pid: int, cpu: int, group_fd: int = -1, flags: int = 0) -> FD:
    if not attr.size:
        attr.size = ctypes.sizeof(attr)
    ret = _syscall(NR_PERF_EVENT_OPEN, ctypes.byref(attr), ctypes.c_int(pid), ctypes.c_int(cpu),
                   ctypes.c_int(group_fd), ctypes.c_ulong(flags | T.PERF_FLAG_FD_CLOEXEC))
    if ret < 0:
        err = ctypes.get_errno()
        raise BPFError(f"perf_event_open(type={attr.type}, config={attr.config}, pid={pid}, cpu={cpu}) failed",
                       err, "perf_event_open")
    return FD(ret)


def ioctl(fd: int | FD, request: int, arg: int | ctypes._CData | None = 0) -> int:
    if isinstance(arg, int) or arg is None:
        ptr: ctypes.c_void_p | ctypes._CArgObject = ctypes.c_void_p(arg or 0)
    else:
        ptr = ctypes.byref(arg)
    ret: int = _ioctl(int(fd), ctypes.c_ulong(request), ptr)
    if ret < 0:
        err = ctypes.get_errno()
        raise BPFError(f"ioctl({request:#x}) on fd {int(fd)} failed", err, "ioctl")
    return ret


def address_of(buf: ctypes.Array[ctypes.c_char] | ctypes.Array[ctypes.c_uint8] | ctypes._CData | None) -> int:
    """A user pointer for a bpf_attr __aligned_u64 field (0 for None)."""
    return 0 if buf is None else ctypes.addressof(buf)


def c_string(value: str | bytes) -> ctypes.Array[ctypes.c_char]:
    """A NUL-terminated buffer kept alive by the caller (pass address_of() to the kernel)."""
    raw = value.encode() if isinstance(value, str) else value
    return ctypes.create_string_buffer(raw)


def page_size() -> int:
    return os.sysconf("SC_PAGE_SIZE")
