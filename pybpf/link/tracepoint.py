"""Tracepoints (`SEC("tracepoint/<category>/<name>")`, `SEC("tp/...")`).

A tracepoint program hangs on a perf event of type PERF_TYPE_TRACEPOINT whose config is the tracepoint's
id (tracefs ``events/<category>/<name>/id``); see `perf_event.attach_to_perf_event` for the link itself.
"""

from __future__ import annotations

import errno as _errno
import os

from pybpf._lazy import cache
from pybpf._sys import types as T
from pybpf._sys.mounts import ensure_tracefs
from pybpf._sys.syscall import perf_event_open
from pybpf.errors import BPFError
from pybpf.link.base import prog_type_name
from pybpf.link.perf_event import attach_perf_event_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from pybpf._sys.fd import FD
    from pybpf.link.base import Link
    from pybpf.program import Program

__all__ = ["attach_tracepoint", "attach_tracepoint_id", "open_tracepoint", "split_tracepoint", "tracefs",
           "tracepoint_id"]


@cache
def tracefs() -> str:
    """The tracefs directory (mounted on first use when missing)."""
    return ensure_tracefs()


def split_tracepoint(category: str, name: str | None = None) -> tuple[str, str]:
    """("syscalls", "sys_enter_openat") from "syscalls/sys_enter_openat" or from both parts."""
    if name is None:
        category, sep, name = category.partition("/")
        if not sep or not category or not name:
            raise ValueError(f"tracepoint {category!r}: expected '<category>/<name>', e.g. 'syscalls/sys_enter_openat'")
    if "/" in name or ".." in category or ".." in name:
        raise ValueError(f"bad tracepoint name {category}/{name}")
    return category, name


def tracepoint_id(category: str, name: str, *, kind: str = "tracepoint") -> int:
    """The perf id of a tracepoint (tracefs ``events/<category>/<name>/id``)."""
    path = os.path.join(tracefs(), "events", category, name, "id")
    try:
        with open(path, "rb") as f:
            return int(f.read())
    except FileNotFoundError:
        raise BPFError(
            f"{kind} {category}/{name} does not exist in this kernel (no {path}); list the available ones with "
            f"`pybpf probes 'tracepoint:{category}:*'`", _errno.ENOENT, "tracefs") from None
    except PermissionError:
        raise BPFError(f"reading {path} failed (run as root)", _errno.EACCES, "tracefs") from None


def attach_tracepoint(program: Program, category: str, name: str | None = None, *, cookie: int = 0) -> Link:
    """Attach a tracepoint program: ``attach_tracepoint(prog, "syscalls/sys_enter_openat")`` or
    ``attach_tracepoint(prog, "syscalls", "sys_enter_openat")``. `cookie` is what
    ``bpf_get_attach_cookie()`` returns in the program (Linux 5.15+)."""
    category, name = split_tracepoint(category, name)
    target = f"{category}/{name}"
    if program.prog_type not in (T.BPF_PROG_TYPE_TRACEPOINT, T.BPF_PROG_TYPE_PERF_EVENT, T.BPF_PROG_TYPE_KPROBE):
        raise BPFError(
            f"program {program.name!r} is a {prog_type_name(program)} program; tracepoint "
            f"{target} takes SEC(\"tracepoint/...\") programs (raw_tp/ and tp_btf/ ones attach by name)",
            _errno.EINVAL)
    tp_id = tracepoint_id(category, name)
    return attach_tracepoint_id(program, tp_id, target, cookie=cookie)


def open_tracepoint(tp_id: int, pid: int = -1, cpu: int = 0, *, what: str = "") -> FD:
    """Open the perf event of the tracepoint (or trace event) with perf id `tp_id`, for `pid` on `cpu`
    (default: every process, its programs running on whichever CPU the event fires). `what` names it in
    the BPFError raised on failure."""
    attr = T.PerfEventAttr(type=T.PERF_TYPE_TRACEPOINT, config=tp_id)
    attr.sample_period = 1
    attr.wakeup_events = 1
    try:
        return perf_event_open(attr, pid, cpu)
    except BPFError as exc:
        raise BPFError(f"opening {what or 'tracepoint'} (perf id {tp_id}) failed", exc.errno or 0,
                       "perf_event_open") from None


def attach_tracepoint_id(program: Program, tp_id: int, target: str, *, cookie: int = 0,
                         kind: str = "tracepoint", undo: Iterable[Callable[[], None]] = ()) -> Link:
    """Attach to the tracepoint (or trace event) with perf id `tp_id`; `target` names it in messages.
    `undo` steps run when the link is detached, after the perf event is closed; on failure the caller
    undoes its own steps."""
    pfd = open_tracepoint(tp_id, what=f"{kind} {target}")
    return attach_perf_event_fd(program, pfd, cookie=cookie, kind=kind, target=target, what=f"{kind} {target}",
                                undo=undo)
