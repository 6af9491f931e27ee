"""BPF iterators (`SEC("iter/task")`, `SEC("iter/bpf_map_elem")`, ...).

An iterator program is attached with BPF_LINK_CREATE (attach type TRACE_ITER); map, cgroup and task
iterators take their target in `iter_info` (``union bpf_iter_link_info``). Each BPF_ITER_CREATE on the
link gives a fresh file whose reads run the program over the kernel objects: `IterLink.read()` returns
the whole output, `.lines()` yields it line by line, `.open()` gives the file itself.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import io
import os

from pybpf._sys import int_constants
from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno, bpf_fd
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link.base import Link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

    from pybpf.program import Program

__all__ = ["IterLink", "attach_iter"]


_READ_CHUNK = 64 * 1024


class IterLink(Link):
    """An attached iterator. Every `read()`/`lines()`/`open()` runs the iteration afresh."""

    def open(self) -> io.FileIO:
        """A new iterator file (BPF_ITER_CREATE), positioned at the start; the caller closes it."""
        fd = self._link_fd("iterate")
        new = bpf_fd(T.BPF_ITER_CREATE, T.IterCreateAttr(link_fd=int(fd)), f"iterator {self.target}")
        return io.FileIO(new.detach(), "rb", closefd=True)

    def _chunks(self) -> Iterator[bytes]:
        with self.open() as f:
            while True:
                try:
                    chunk = f.read(_READ_CHUNK)
                except OSError as exc:
                    raise BPFError(f"reading iterator {self.target} failed", exc.errno or 0, "read") from None
                if not chunk:
                    return
                yield chunk

    def read(self) -> bytes:
        """The whole output of one iteration."""
        return b"".join(self._chunks())

    def lines(self, encoding: str = "utf-8") -> Iterator[str]:
        """The output of one iteration, line by line (without the newlines), decoded as it is read."""
        pending = b""
        for chunk in self._chunks():
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                yield line.decode(encoding, "replace")
        if pending:
            yield pending.decode(encoding, "replace")


def _fd_of(obj: Any) -> int:
    fd = getattr(obj, "fd", obj)
    return int(fd)


def attach_iter(
    program: Program,
    *,
    map: Any = None,
    cgroup: str | os.PathLike[str] | int | None = None,
    order: str | int = "descendants_pre",
    tid: int = 0,
    pid: int = 0,
    pid_fd: int = 0,
) -> IterLink:
    """Attach an iterator program. `map` (a Map or map fd) for map element iterators
    (``iter/bpf_map_elem``, ``iter/bpf_sk_storage_map``, ``iter/sockmap``); `cgroup` (path or fd) and
    `order` for ``iter/cgroup``; `tid`, `pid` or `pid_fd` to restrict ``iter/task*`` to one task or process.
    """
    if program.prog_type != T.BPF_PROG_TYPE_TRACING or program.expected_attach_type not in (T.BPF_TRACE_ITER, None):
        raise BPFError(f"program {program.name!r} is not an iterator program (SEC(\"iter/...\"))", _errno.EINVAL)
    info: T.IterLinkInfo | None = None
    cg_fd: FD | None = None
    # Program.attach_to, not the spec: a collection replayed from a plan reads its object only for specs.
    target = f"iter/{program.attach_to}" if program.attach_to else "iter"
    if map is not None:
        info = T.IterLinkInfo(map=T.IterLinkInfo_Map(map_fd=_fd_of(map)))
        target += f" map fd {_fd_of(map)}"
    elif cgroup is not None:
        if isinstance(order, str):  # bpftool's names: "self_only", "descendants_pre", ...
            # enum bpf_cgroup_iter_order, from its plain-int constants (no enum is built)
            orders = int_constants("BPF_CGROUP_ITER_")
            known = orders.get(order.upper())
            if known is None:
                names = ", ".join(name.lower() for name, value in orders.items() if value)
                raise ValueError(f"unknown cgroup iterator order {order!r}; one of {names}")
            order = known
        from pybpf.link.cgroup import open_cgroup

        cg_fd, _ = open_cgroup(cgroup)
        info = T.IterLinkInfo(cgroup=T.IterLinkInfo_Cgroup(order=int(order), cgroup_fd=int(cg_fd)))
        target += f" cgroup {cgroup}"
    elif tid or pid or pid_fd:
        info = T.IterLinkInfo(task=T.IterLinkInfo_Task(tid=tid, pid=pid, pid_fd=pid_fd))
        target += f" tid {tid}" if tid else (f" pid {pid}" if pid else f" pidfd {pid_fd}")
    attr = T.LinkCreateAttr(prog_fd=int(program.fd), attach_type=T.BPF_TRACE_ITER)
    if info is not None:
        attr.iter_info = ctypes.addressof(info)
        attr.iter_info_len = ctypes.sizeof(info)
    try:
        ret = bpf_errno(T.BPF_LINK_CREATE, attr)
    finally:
        if cg_fd is not None:
            cg_fd.close()
    if ret < 0:
        err = -ret
        if err == _errno.EINVAL and info is not None and (tid or pid or pid_fd):
            raise NotSupportedError("task iterator targets (tid/pid/pid_fd)", "6.1", err,
                                    detail=f"cannot attach {program.name!r}")
        if err == _errno.EINVAL and cgroup is not None:
            raise NotSupportedError("cgroup iterators", "6.1", err, detail=f"cannot attach {program.name!r}")
        hint = " (map iterators need map=, other iterators must not get one)" if err == _errno.EINVAL else ""
        raise BPFError(f"attaching iterator {program.name!r} to {target}{hint} failed", err, "BPF_LINK_CREATE")
    return IterLink(program, "iter", target, fd=FD(ret))
