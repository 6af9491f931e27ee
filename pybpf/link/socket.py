"""Socket filters (`SEC("socket")`) and reuseport selectors (`SEC("sk_reuseport")`) on one socket.

``setsockopt(SO_ATTACH_BPF)`` hangs a socket filter program on a socket: it sees every packet the socket
receives and returns how many bytes to keep (0 drops it). ``SO_ATTACH_REUSEPORT_EBPF`` hangs an
sk_reuseport program on a reuseport group. The attachment belongs to the socket: it ends when the
socket closes, or on detach (``SO_DETACH_BPF``/``SO_DETACH_REUSEPORT_BPF``) while the socket is open.
"""

from __future__ import annotations

import _socket  # `socket` itself imports enum (~3 ms of start-up); an int fd needs none of it
import errno as _errno
import os

from pybpf._sys import types as T
from pybpf.errors import BPFError
from pybpf.link.base import Link, prog_type_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    from typing import Protocol, TypeAlias

    from pybpf.program import Program

    class _HasFileno(Protocol):
        def fileno(self) -> int: ...

    SocketLike: TypeAlias = socket.socket | _HasFileno | int

__all__ = ["attach_socket"]

# Socket options (asm-generic/socket.h; the same on every architecture pybpf runs on).
SO_ATTACH_BPF = 50
SO_DETACH_BPF = 27  # = SO_DETACH_FILTER
SO_ATTACH_REUSEPORT_EBPF = 52
SO_DETACH_REUSEPORT_BPF = 68


def _fileno(sock: SocketLike) -> int:
    return sock if isinstance(sock, int) else sock.fileno()


def _setsockopt(fd: int, option: int, value: int) -> None:
    # A temporary socket object over a dup: works for any socket fd without taking the caller's.
    new = os.dup(fd)
    try:
        dup = _socket.socket(fileno=new)
    except BaseException:
        os.close(new)  # not a socket (ENOTSOCK): the socket object never owned it
        raise
    try:
        dup.setsockopt(_socket.SOL_SOCKET, option, value)
    finally:
        dup.close()


def attach_socket(program: Program, sock: SocketLike) -> Link:
    """Attach a socket filter (or sk_reuseport) program to `sock` (a socket, anything with fileno(), or an
    fd). Detaching removes it if the socket is still open; closing the socket removes it anyway."""
    if program.prog_type == T.BPF_PROG_TYPE_SOCKET_FILTER:
        kind, attach_opt, detach_opt, what = "socket_filter", SO_ATTACH_BPF, SO_DETACH_BPF, "SO_ATTACH_BPF"
    elif program.prog_type == T.BPF_PROG_TYPE_SK_REUSEPORT:
        kind, attach_opt, detach_opt, what = ("sk_reuseport", SO_ATTACH_REUSEPORT_EBPF, SO_DETACH_REUSEPORT_BPF,
                                              "SO_ATTACH_REUSEPORT_EBPF")
    else:
        raise BPFError(f"program {program.name!r} is a {prog_type_name(program)} program; sockets take "
                       "SEC(\"socket\") or SEC(\"sk_reuseport\") programs", _errno.EINVAL)
    fd = _fileno(sock)
    if fd < 0:
        raise BPFError(f"attaching {program.name!r}: the socket is closed", _errno.EBADF)
    try:
        inode = os.fstat(fd).st_ino
        _setsockopt(fd, attach_opt, int(program.fd))
    except OSError as exc:
        hint = " (not a socket)" if exc.errno == _errno.ENOTSOCK else ""
        raise BPFError(f"attaching {program.name!r} to socket fd {fd}{hint} failed", exc.errno or 0, what) from None
    target = f"socket fd {fd}"

    def detach() -> None:
        current = _fileno(sock)
        try:
            if current < 0 or os.fstat(current).st_ino != inode:
                return  # the socket is gone, and its filter with it
            _setsockopt(current, detach_opt, 0)
        except OSError as exc:
            if exc.errno not in (_errno.EBADF, _errno.ENOENT, _errno.ENOTSOCK):  # ENOENT: no filter attached
                raise BPFError(f"detaching {program.name!r} from {target} failed", exc.errno or 0, what) from None

    return Link(program, kind, target, undo=[detach])
