"""uprobes and uretprobes (`SEC("uprobe/...")`, `SEC("uretprobe/...")`, `SEC("uprobe.multi/...")`).

A uprobe sits at a *file offset* of an executable or shared library, so one probe covers every process
that maps the file (PIE executables and libraries included, wherever they are loaded). The probe is a
perf event of the uprobe PMU (``/sys/bus/event_source/devices/uprobe``, Linux 4.17+): ``config1`` points
at the path, ``config2`` is the offset, a bit of ``config`` (``format/retprobe``) asks for a return
probe and the high bits (``format/ref_ctr_offset``, 4.20+) carry the offset of a USDT semaphore the
kernel counts up while the probe exists. Kernels without the PMU get a tracefs ``uprobe_events`` entry
instead, removed again on detach (and, for processes that died without detaching, by the next pybpf
process that makes a legacy probe). `uprobe_multi` links (Linux 6.6+) attach one program to many
offsets of one file at once.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.record import record
from pybpf._sys.syscall import bpf_errno, perf_event_open
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link._legacy_events import LegacyEvents
from pybpf.link.base import Link, prog_type_name
from pybpf.link.perf_event import attach_perf_event_fd, pmu_info
from pybpf.link.tracepoint import open_tracepoint, tracefs, tracepoint_id
from pybpf.symbols import ElfSymbols, SymbolNotFoundError, elf_symbols, read_maps, resolve_binary

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn

    from pybpf.program import Program

__all__ = [
    "UPROBE_GROUP",
    "UprobePMU",
    "attach_uprobe",
    "attach_uprobe_multi",
    "attach_uretprobe",
    "legacy_uprobes",
    "open_uprobe_event",
    "remove_stale_uprobes",
    "resolve_target",
    "uprobe_offsets",
    "uprobe_pmu",
]

_PMU = "/sys/bus/event_source/devices/uprobe"
UPROBE_GROUP = "pybpf_uprobes"  # tracefs group of the legacy uprobes this package creates


# ---- the uprobe PMU ------------------------------------------------------------------------------------


@record(frozen=True)
class UprobePMU:
    """The uprobe PMU as sysfs describes it: its perf type and where in ``attr.config`` the retprobe
    flag and the reference counter (USDT semaphore) offset go; `ref_ctr_shift` is None before 4.20."""

    type: int
    retprobe_bit: int
    ref_ctr_shift: int | None


def uprobe_pmu() -> UprobePMU | None:
    """The uprobe PMU of this kernel, or None (before 4.17 or without CONFIG_UPROBE_EVENTS)."""
    pmu = pmu_info("uprobe")
    if pmu is None:
        return None
    pmu_type, fields = pmu
    return UprobePMU(pmu_type, fields.get("retprobe", 0), fields.get("ref_ctr_offset"))


# ---- targets -------------------------------------------------------------------------------------------


def resolve_target(binary: str | os.PathLike[str], pid: int = -1) -> str:
    """Absolute path of the file to probe: a path, a program on PATH, or a library name ("c", "libc.so.6")
    found the way libbpf does (LD_LIBRARY_PATH, ld.so.cache, standard dirs), else among the files mapped
    by `pid`. Symlinks are resolved: the kernel probes the inode."""
    name = os.fspath(binary)
    try:
        path = resolve_binary(name)
    except SymbolNotFoundError:
        found = _mapped_library(name, pid) if pid > 0 else None
        if found is None:
            raise
        path = found
    return os.path.realpath(path)


def _mapped_library(name: str, pid: int) -> str | None:
    stem = name if name.startswith("lib") or ".so" in name else f"lib{name}"
    try:
        mappings = read_maps(pid)
    except OSError:
        return None
    for mapping in mappings:
        if not mapping.is_file:
            continue
        base = os.path.basename(mapping.path)
        if base == stem or base.startswith(stem + ".") or base.startswith(stem + "-"):
            return f"/proc/{pid}/root{mapping.path}"
    return None


def _symbols(path: str) -> ElfSymbols:
    try:
        return elf_symbols(path)
    except SymbolNotFoundError:
        raise
    except BPFError as exc:
        raise SymbolNotFoundError(f"cannot read symbols: {exc}", path=path) from None


def uprobe_offsets(path: str, symbols: str | Sequence[str]) -> list[tuple[str, int]]:
    """(symbol, file offset) for each function of `path`: names (``malloc``, ``func+0x10``) or one glob
    pattern (``"pthread_mutex_*"``). Raises SymbolNotFoundError for unknown names or empty matches."""
    table = _symbols(path)
    if isinstance(symbols, str) and any(c in symbols for c in "*?["):
        from fnmatch import fnmatchcase  # imports re: only for patterns

        found: dict[int, str] = {}
        for name, vaddr, _ in table:
            if fnmatchcase(name, symbols) and vaddr not in found:
                found[vaddr] = name
        out: list[tuple[str, int]] = []
        for vaddr, name in sorted(found.items()):
            offset = table.vaddr_to_file_offset(vaddr)
            if offset is not None:
                out.append((name, offset))
        if not out:
            raise SymbolNotFoundError(f"no function matches {symbols!r}", path=path)
        return out
    names = [symbols] if isinstance(symbols, str) else list(symbols)
    return [(name, table.file_offset(name)) for name in names]


# ---- opening the probe ---------------------------------------------------------------------------------


def _no_uprobe_events(path: str) -> Exception:
    return NotSupportedError("uprobes", "3.5", _errno.ENOENT,
                             detail=f"{path} is missing: the kernel is built without CONFIG_UPROBE_EVENTS")


# pybpfu_<pid>_<n>_<file>_<offset>
_LEGACY = LegacyEvents("uprobe_events", UPROBE_GROUP, "pybpfu", _no_uprobe_events)


def legacy_uprobes() -> list[str]:
    """The tracefs uprobe events this package's processes created (group ``pybpf_uprobes``), as event names."""
    return _LEGACY.owned()


def remove_stale_uprobes() -> list[str]:
    """Remove legacy uprobes that pybpf processes which no longer run left behind; returns their names."""
    return _LEGACY.remove_stale()


def _probe_pid_cpu(pid: int) -> tuple[int, int]:
    # All processes: one event on CPU 0 serves every CPU (trace events run their programs wherever they
    # fire); one process: follow its task on any CPU.
    return (-1, 0) if pid == -1 else (pid, -1)


def open_uprobe_event(
    path: str,
    offset: int,
    *,
    retprobe: bool = False,
    pid: int = -1,
    ref_ctr_offset: int = 0,
    legacy: bool | None = None,
) -> tuple[FD, list[Callable[[], None]]]:
    """Open the perf event of a uprobe at file `offset` of `path` (absolute). Returns the event fd and the
    steps that undo it once the fd is closed (removing a tracefs entry). `legacy` True forces tracefs,
    False the PMU; None picks the PMU when the kernel has it. On failure nothing is left behind."""
    kind = "uretprobe" if retprobe else "uprobe"
    target = f"{path}:{offset:#x}"
    pmu = uprobe_pmu()
    if legacy is None:
        legacy = pmu is None
    if not legacy:
        if pmu is None:
            raise NotSupportedError("the uprobe PMU", "4.17", _errno.ENOENT,
                                    detail=f"{_PMU} is missing; use the tracefs uprobe_events form (legacy=True)")
        return _open_pmu(pmu, path, offset, retprobe, pid, ref_ctr_offset, kind, target), []
    return _open_legacy(path, offset, retprobe, pid, ref_ctr_offset, kind, target)


def _open_pmu(pmu: UprobePMU, path: str, offset: int, retprobe: bool, pid: int, ref_ctr_offset: int,
              kind: str, target: str) -> FD:
    config = (1 << pmu.retprobe_bit) if retprobe else 0
    if ref_ctr_offset:
        if pmu.ref_ctr_shift is None:
            raise NotSupportedError("uprobe reference counters (USDT semaphores)", "4.20",
                                    detail=f"{_PMU}/format/ref_ctr_offset is missing")
        config |= ref_ctr_offset << pmu.ref_ctr_shift
    name = ctypes.create_string_buffer(path.encode())
    attr = T.PerfEventAttr(type=pmu.type, config=config)
    attr.uprobe_path = ctypes.addressof(name)
    attr.probe_offset = offset
    attr.sample_period = 1
    attr.wakeup_events = 1
    probe_pid, cpu = _probe_pid_cpu(pid)
    try:
        return perf_event_open(attr, probe_pid, cpu)
    except BPFError as exc:
        _raise_open_error(exc.errno or 0, kind, target, pid)


def _open_legacy(path: str, offset: int, retprobe: bool, pid: int, ref_ctr_offset: int, kind: str,
                 target: str) -> tuple[FD, list[Callable[[], None]]]:
    if any(c.isspace() for c in path):
        raise BPFError(f"tracefs uprobe_events cannot name a path with white space: {path!r}", _errno.EINVAL)
    event = _LEGACY.event_name(os.path.basename(path), f"_{offset:x}")
    where = f"{path}:{offset:#x}" + (f"({ref_ctr_offset:#x})" if ref_ctr_offset else "")
    probe = "r" if retprobe else "p"
    try:
        _LEGACY.add(probe, event, where)
    except OSError as exc:
        log = os.path.join(tracefs(), "error_log")
        _raise_open_error(exc.errno or 0, kind, target, pid, detail=f"tracefs uprobe_events refused "
                          f"'{probe} {where}'; see {log}")
    try:
        tp_id = tracepoint_id(UPROBE_GROUP, event, kind=f"{kind} event")
        try:
            pfd = open_tracepoint(tp_id, *_probe_pid_cpu(pid))
        except BPFError as exc:
            _raise_open_error(exc.errno or 0, kind, target, pid)
    except BaseException:
        _LEGACY.remove(event)
        raise
    return pfd, [lambda: _LEGACY.remove(event)]


def _raise_open_error(err: int, kind: str, target: str, pid: int, detail: str = "") -> NoReturn:
    hints = {
        _errno.ENOENT: "the file does not exist (or was replaced since it was resolved)",
        _errno.ESRCH: f"no process {pid}",
        _errno.EINVAL: "the offset is beyond the file or not at an instruction, or the reference counter "
                       "offset is bad",
        _errno.EACCES: "run as root (CAP_PERFMON/CAP_SYS_ADMIN)",
        _errno.EPERM: "run as root (CAP_PERFMON/CAP_SYS_ADMIN)",
    }
    text = f"opening {kind} {target}" + (f" for pid {pid}" if pid != -1 else "") + " failed"
    hint = detail or hints.get(err, "")
    if hint:
        text += f" ({hint})"
    raise BPFError(text, err, "perf_event_open")


# ---- attaching -----------------------------------------------------------------------------------------


def _check_program(program: Program, kind: str) -> None:
    if program.prog_type != T.BPF_PROG_TYPE_KPROBE:
        name = prog_type_name(program)
        raise BPFError(f"program {program.name!r} is a {name} program; a {kind} takes SEC(\"uprobe/...\"), "
                       "SEC(\"uretprobe/...\"), SEC(\"usdt/...\") or SEC(\"uprobe.multi/...\") programs",
                       _errno.EINVAL)


def attach_uprobe(
    program: Program,
    binary: str | os.PathLike[str],
    symbol: str | None = None,
    offset: int = 0,
    retprobe: bool = False,
    pid: int = -1,
    *,
    cookie: int = 0,
    ref_ctr_offset: int = 0,
    legacy: bool | None = None,
) -> Link:
    """Run `program` whenever a process executes `symbol` (+ `offset` bytes) of `binary`.

    `binary` is a path, a program on PATH or a library name ("c", "libc.so.6"); `symbol` a function name
    (``"malloc"``, ``"func+0x10"``). Without `symbol`, `offset` is the file offset itself. `retprobe`
    runs it when the function returns. `pid` restricts it to one process (thread); -1 is every process.
    `cookie` is what ``bpf_get_attach_cookie()`` returns (5.15+). `ref_ctr_offset` is the file offset of
    a USDT semaphore to count up while attached. `legacy` True forces the tracefs form.
    """
    kind = "uretprobe" if retprobe else "uprobe"
    _check_program(program, kind)
    path = resolve_target(binary, pid)
    if symbol is not None:
        file_offset = _symbols(path).file_offset(symbol) + offset  # one name: never a glob pattern
        target = f"{path}:{symbol}" + (f"+{offset:#x}" if offset else "")
    else:
        if offset <= 0:
            raise ValueError(f"{kind} on {path}: give a symbol or a file offset")
        file_offset = offset
        target = f"{path}:{offset:#x}"
    if pid != -1:
        target += f" (pid {pid})"
    if program.expected_attach_type == T.BPF_TRACE_UPROBE_MULTI:
        # Loaded for uprobe_multi links (SEC("uprobe.multi/...")): the perf-event form refuses it.
        return _attach_multi(program, path, [file_offset], [cookie], [ref_ctr_offset], pid, retprobe,
                             target)
    pfd, undo = open_uprobe_event(path, file_offset, retprobe=retprobe, pid=pid,
                                  ref_ctr_offset=ref_ctr_offset, legacy=legacy)
    try:
        return attach_perf_event_fd(program, pfd, cookie=cookie, kind=kind, target=target, what=f"{kind} {target}",
                                    undo=undo)
    except BaseException:
        for step in reversed(undo):  # the event fd is closed already
            step()
        raise


def attach_uretprobe(
    program: Program,
    binary: str | os.PathLike[str],
    symbol: str | None = None,
    offset: int = 0,
    pid: int = -1,
    **kwargs: object,
) -> Link:
    """`attach_uprobe(..., retprobe=True)`."""
    return attach_uprobe(program, binary, symbol, offset, True, pid, **kwargs)  # type: ignore[arg-type]


def attach_uprobe_multi(
    program: Program,
    binary: str | os.PathLike[str],
    symbols: str | Sequence[str] | None = None,
    pid: int = -1,
    retprobe: bool = False,
    *,
    offsets: Sequence[int] | None = None,
    cookies: Sequence[int] | None = None,
    ref_ctr_offsets: Sequence[int] | None = None,
) -> Link:
    """Attach one `uprobe.multi` program to many functions of one file with a single link (Linux 6.6+).

    `symbols` is a list of function names or one glob pattern (``"pthread_mutex_*"``); or give file
    `offsets` directly. `cookies` (one per probe) are what ``bpf_get_attach_cookie()`` returns.
    `pid` filters by process (all of its threads); -1 is every process.
    """
    kind = "uretprobe_multi" if retprobe else "uprobe_multi"
    _check_program(program, kind)
    path = resolve_target(binary, pid)
    if (symbols is None) == (offsets is None):
        raise ValueError(f"{kind} on {path}: give exactly one of symbols= or offsets=")
    if symbols is not None:
        resolved = uprobe_offsets(path, symbols)
        file_offsets = [off for _, off in resolved]
        what = symbols if isinstance(symbols, str) else ",".join(symbols)
    else:
        file_offsets = [int(off) for off in offsets or ()]
        what = ",".join(f"{off:#x}" for off in file_offsets)
    if not file_offsets:
        raise ValueError(f"{kind} on {path}: nothing to attach to")
    for name, values in (("cookies", cookies), ("ref_ctr_offsets", ref_ctr_offsets)):
        if values is not None and len(values) != len(file_offsets):
            raise ValueError(f"{kind}: {len(values)} {name} for {len(file_offsets)} probes")
    target = f"{path}:{what}" + (f" (pid {pid})" if pid != -1 else "")
    return _attach_multi(program, path, file_offsets, cookies, ref_ctr_offsets, pid, retprobe, target)


def _attach_multi(program: Program, path: str, offsets: Sequence[int], cookies: Sequence[int] | None,
                  ref_ctr_offsets: Sequence[int] | None, pid: int, retprobe: bool, target: str, *,
                  kind: str = "", undo: Sequence[Callable[[], None]] = ()) -> Link:
    """One uprobe_multi link; `undo` steps belong to the link once it exists (the caller's until then)."""
    kind = kind or ("uretprobe_multi" if retprobe else "uprobe_multi")
    count = len(offsets)
    path_buf = ctypes.create_string_buffer(path.encode())
    offset_arr = (ctypes.c_uint64 * count)(*offsets)
    cookie_arr = (ctypes.c_uint64 * count)(*cookies) if cookies is not None and any(cookies) else None
    ref_arr = (ctypes.c_uint64 * count)(*ref_ctr_offsets) if ref_ctr_offsets is not None and any(
        ref_ctr_offsets) else None
    attr = T.LinkCreateAttr(prog_fd=int(program.fd), target_fd=0,
                            attach_type=T.BPF_TRACE_UPROBE_MULTI)
    multi = attr.uprobe_multi
    multi.path = ctypes.addressof(path_buf)
    multi.offsets = ctypes.addressof(offset_arr)
    multi.cnt = count
    multi.flags = T.BPF_F_UPROBE_MULTI_RETURN if retprobe else 0
    multi.pid = pid if pid > 0 else 0
    if cookie_arr is not None:
        multi.cookies = ctypes.addressof(cookie_arr)
    if ref_arr is not None:
        multi.ref_ctr_offsets = ctypes.addressof(ref_arr)
    ret = bpf_errno(T.BPF_LINK_CREATE, attr)
    if ret >= 0:
        return Link(program, kind, target, fd=FD(ret), undo=undo)
    err = -ret
    if err in (_errno.EINVAL, _errno.EOPNOTSUPP):
        from pybpf.features import probe_link

        if not probe_link("uprobe_multi_link").supported:
            raise NotSupportedError("uprobe_multi links", "6.6", err,
                                    detail=f"cannot attach {program.name!r} to {target}; attach one uprobe per "
                                    "function instead (SEC(\"uprobe/...\"))")
        if program.expected_attach_type != T.BPF_TRACE_UPROBE_MULTI:
            raise BPFError(f"attaching {program.name!r} to {kind} {target} failed: the program was not loaded "
                           "for uprobe_multi links (use SEC(\"uprobe.multi/...\"))", err, "BPF_LINK_CREATE")
    hints = {_errno.ESRCH: f"no process {pid}", _errno.ENOENT: "no such file",
             _errno.EINVAL: "an offset is beyond the file or not at an instruction"}
    hint = hints.get(err)
    raise BPFError(f"attaching {program.name!r} to {kind} {target}" + (f" ({hint})" if hint else "") + " failed",
                   err, "BPF_LINK_CREATE")
