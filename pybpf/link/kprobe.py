"""kprobes and kretprobes (`SEC("kprobe/func+0x10")`, `SEC("kretprobe/func")`) and kprobe_multi.

Single probes use the kprobe PMU (Linux 4.17+): a perf event of the PMU's type whose `config1` points at
the symbol name and `config2` holds the offset; the retprobe bit's position is read from the PMU's
``format/retprobe``. Kernels without the PMU (or a kretprobe with `maxactive`, which only tracefs can
express) fall back to tracefs ``kprobe_events``: a probe with a pybpf-owned name (group ``pybpf``, name
with the pid) is created, opened as a tracepoint, and removed again on detach and at exit. Probes left
behind by pybpf processes that died are removed the first time this process creates one.

kprobe_multi (Linux 5.18+, CONFIG_FPROBE) attaches one program to many functions at once with
BPF_LINK_CREATE; glob patterns are resolved through tracefs ``available_filter_functions``.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno, perf_event_open
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link._legacy_events import LegacyEvents
from pybpf.link.base import Link, prog_type_name
from pybpf.link.perf_event import attach_perf_event_fd, pmu_info
from pybpf.link.tracepoint import attach_tracepoint_id, tracefs, tracepoint_id

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import NoReturn

    from pybpf.program import Program

__all__ = [
    "KPROBE_GROUP",
    "attach_kprobe",
    "attach_kprobe_multi",
    "kprobe_pmu",
    "parse_kprobe_target",
    "resolve_kprobe_multi",
]

_PMU = "/sys/bus/event_source/devices/kprobe"
KPROBE_GROUP = "pybpf"  # tracefs group of the legacy probes this package creates
_NO_KPROBES = ("CONFIG_KPROBES is off: there is no kprobe PMU (/sys/bus/event_source/devices/kprobe) and "
               "tracefs has no kprobe_events; use a tracepoint or fentry/fexit instead")


def kprobe_pmu() -> tuple[int, int] | None:
    """(PMU type, retprobe config bit) of the kprobe PMU, or None when the kernel has none."""
    pmu = pmu_info("kprobe")
    return None if pmu is None else (pmu[0], pmu[1].get("retprobe", 0))


def parse_kprobe_target(target: str) -> tuple[str, int]:
    """"func+0x10" -> ("func", 16); "func" -> ("func", 0) (libbpf's kprobe section syntax)."""
    func, sep, off = target.partition("+")
    if not func:
        raise ValueError(f"kprobe target {target!r} has no function name")
    try:
        offset = int(off, 0) if sep else 0
    except ValueError:
        raise ValueError(f"kprobe target {target!r}: bad offset {off!r} (expected e.g. func+0x10)") from None
    return func, offset


def attach_kprobe(
    program: Program,
    symbol: str | int,
    offset: int = 0,
    *,
    retprobe: bool = False,
    maxactive: int = 0,
    cookie: int = 0,
    legacy: bool | None = None,
) -> Link:
    """Attach a kprobe (or, with `retprobe`, a kretprobe) program to kernel function `symbol` + `offset`.

    `symbol` may also be an address (int). `maxactive` bounds the concurrent kretprobe instances (legacy
    tracefs only). `legacy` forces (True) or forbids (False) the tracefs path; by default the kprobe PMU
    is used when the kernel has one. Raises NotSupportedError on kernels without kprobes.
    """
    if program.prog_type != T.BPF_PROG_TYPE_KPROBE:
        kind = prog_type_name(program)
        raise BPFError(f"program {program.name!r} is {kind}, not a kprobe program (SEC(\"kprobe/...\"))",
                       _errno.EINVAL)
    if isinstance(symbol, str) and "+" in symbol and not offset:
        symbol, offset = parse_kprobe_target(symbol)
    kind = "kretprobe" if retprobe else "kprobe"
    target = f"{symbol:#x}" if isinstance(symbol, int) else (f"{symbol}+{offset:#x}" if offset else symbol)
    pmu = kprobe_pmu()
    use_legacy = legacy if legacy is not None else (pmu is None or (retprobe and maxactive > 0))
    if not use_legacy:
        if pmu is None:
            raise NotSupportedError(kind, "4.17", _errno.ENOENT, detail="no kprobe PMU "
                                    f"({_PMU}); {'CONFIG_KPROBES is off' if _LEGACY.path() is None else 'try legacy=True'}")
        return _attach_pmu(program, pmu, symbol, offset, retprobe, cookie, kind, target)
    if _LEGACY.path() is None:
        raise NotSupportedError(kind, "", _errno.ENOENT, detail=_NO_KPROBES)
    if isinstance(symbol, int):
        raise ValueError("legacy (tracefs) kprobes take a symbol name, not an address")
    return _attach_legacy(program, symbol, offset, retprobe, maxactive, cookie, kind, target)


def _attach_pmu(program: Program, pmu: tuple[int, int], symbol: str | int, offset: int, retprobe: bool,
                cookie: int, kind: str, target: str) -> Link:
    pmu_type, retprobe_bit = pmu
    attr = T.PerfEventAttr(type=pmu_type)
    name_buf = None
    if isinstance(symbol, int):
        attr.kprobe_addr = symbol  # config2 = address when config1 is 0
    else:
        name_buf = ctypes.create_string_buffer(symbol.encode())
        attr.kprobe_func = ctypes.addressof(name_buf)
        attr.probe_offset = offset
    if retprobe:
        attr.config |= 1 << retprobe_bit
    attr.sample_period = 1
    attr.wakeup_events = 1
    try:
        pfd = perf_event_open(attr, -1, 0)
    except BPFError as exc:
        _raise_open_error(exc.errno or 0, kind, target)
    finally:
        del name_buf  # the kernel copied the name during the call
    return attach_perf_event_fd(program, pfd, cookie=cookie, kind=kind, target=target, what=f"{kind} {target}")


def _raise_open_error(err: int, kind: str, target: str, detail: str = "") -> NoReturn:
    if err in (_errno.ENOENT, _errno.EADDRNOTAVAIL):
        msg = (f"{kind} {target}: no such kernel function (or it is not probe-able); list them with "
               f"`pybpf probes 'kprobe:{target.partition('+')[0]}*'`")
    elif err == _errno.EINVAL:
        msg = (f"{kind} {target}: the kernel refused the probe (the offset is not an instruction boundary, "
               "or the function is on the kprobe blacklist / marked notrace)")
    elif err == _errno.EILSEQ:
        msg = f"{kind} {target}: the offset is not at an instruction boundary"
    else:
        msg = f"creating {kind} {target} failed"
    raise BPFError(msg + (f" [{detail}]" if detail else ""), err, "perf_event_open")


# ---- legacy tracefs probes ----------------------------------------------------------------------------------


def _no_kprobe_events(path: str) -> Exception:
    return NotSupportedError("kprobe", "", _errno.ENOENT, detail=_NO_KPROBES)


# pybpf_<pid>_<n>_<symbol>[_<offset>]
_LEGACY = LegacyEvents("kprobe_events", KPROBE_GROUP, "pybpf", _no_kprobe_events)


def legacy_kprobes() -> list[str]:
    """The tracefs kprobe events this package's processes created (group ``pybpf``), as event names."""
    return _LEGACY.owned()


def remove_stale_kprobes() -> list[str]:
    """Remove legacy kprobes that pybpf processes which no longer run left behind; returns their names."""
    return _LEGACY.remove_stale()


def _attach_legacy(program: Program, symbol: str, offset: int, retprobe: bool, maxactive: int, cookie: int,
                   kind: str, target: str) -> Link:
    event = _LEGACY.event_name(symbol, f"_{offset:x}" if offset else "")
    probe = ("r" + (str(maxactive) if maxactive else "")) if retprobe else "p"
    where = f"{symbol}+{offset}" if offset else symbol
    try:
        _LEGACY.add(probe, event, where)
    except OSError as exc:
        err = exc.errno or 0
        _raise_open_error(err, kind, target, detail=f"tracefs kprobe_events refused '{probe} {where}'; see "
                          f"{os.path.join(tracefs(), 'error_log')}")
    try:
        tp_id = tracepoint_id(KPROBE_GROUP, event, kind=f"{kind} event")
        return attach_tracepoint_id(program, tp_id, target, cookie=cookie, kind=kind,
                                    undo=[lambda: _LEGACY.remove(event)])
    except BaseException:
        _LEGACY.remove(event)
        raise


# ---- kprobe_multi --------------------------------------------------------------------------------------------


def _available_filter_functions() -> list[str]:
    """Traceable kernel functions: tracefs available_filter_functions, or kallsyms' text symbols when
    that file is missing or unreadable (lockdown)."""
    from pybpf.probes import kernel_functions

    try:
        return [name for _, name in kernel_functions("ftrace")]
    except OSError:
        return _kallsyms_functions()


def _kallsyms_functions() -> list[str]:
    try:
        with open("/proc/kallsyms") as f:
            text = f.read()
    except OSError as exc:
        raise BPFError("cannot list kernel functions to resolve a kprobe.multi pattern (neither "
                       "available_filter_functions nor /proc/kallsyms is readable); pass symbols=",
                       exc.errno or 0) from None
    names = []
    for line in text.splitlines():
        parts = line.split()
        # "ffffffff81234560 T vfs_read"; compiler clones ("foo.isra.0") cannot be traced by name.
        if len(parts) >= 3 and parts[1] in ("t", "T") and "." not in parts[2]:
            names.append(parts[2])
    return names


def resolve_kprobe_multi(pattern: str) -> list[str]:
    """The kernel functions matching a glob pattern ("vfs_*", "tcp_v4_*"), sorted and unique."""
    if not any(c in pattern for c in "*?["):
        return [pattern]
    import fnmatch

    return sorted(set(fnmatch.filter(_available_filter_functions(), pattern)))


def attach_kprobe_multi(
    program: Program,
    pattern: str | None = None,
    *,
    symbols: Sequence[str] | None = None,
    addresses: Sequence[int] | None = None,
    cookies: Sequence[int] | None = None,
    retprobe: bool = False,
) -> Link:
    """Attach a `kprobe.multi` program to many kernel functions with one link (Linux 5.18+).

    Give a glob `pattern`, or explicit `symbols` or `addresses`; `cookies` pair up with them. Raises
    NotSupportedError naming CONFIG_FPROBE when the kernel cannot do it; nothing is left attached.
    """
    if (pattern is not None) + (symbols is not None) + (addresses is not None) != 1:
        raise ValueError("attach_kprobe_multi needs exactly one of pattern, symbols= or addresses=")
    if (program.expected_attach_type not in (T.BPF_TRACE_KPROBE_MULTI, None)
            or program.prog_type != T.BPF_PROG_TYPE_KPROBE):
        raise BPFError(f"program {program.name!r} is not a kprobe.multi program (SEC(\"kprobe.multi/...\"), "
                       "loaded with expected attach type TRACE_KPROBE_MULTI)", _errno.EINVAL)
    kind = "kretprobe.multi" if retprobe else "kprobe.multi"
    names: list[str] = []
    if pattern is not None:
        names = resolve_kprobe_multi(pattern)
        if not names:
            raise BPFError(f"{kind} pattern {pattern!r} matches no traceable kernel function "
                           "(available_filter_functions)", _errno.ENOENT)
    elif symbols is not None:
        names = list(symbols)
    count = len(names) if addresses is None else len(addresses)
    if not count:
        raise ValueError(f"{kind}: nothing to attach to")
    if cookies is not None and len(cookies) != count:
        raise ValueError(f"{kind}: {len(cookies)} cookies for {count} functions")
    keep: list[object] = []
    attr = T.LinkCreateAttr(prog_fd=int(program.fd), attach_type=T.BPF_TRACE_KPROBE_MULTI)
    attr.kprobe_multi.flags = T.BPF_F_KPROBE_MULTI_RETURN if retprobe else 0
    attr.kprobe_multi.cnt = count
    if addresses is not None:
        addrs = (ctypes.c_uint64 * count)(*addresses)
        keep.append(addrs)
        attr.kprobe_multi.addrs = ctypes.addressof(addrs)
    else:
        bufs = [ctypes.create_string_buffer(n.encode()) for n in names]
        syms = (ctypes.c_uint64 * count)(*(ctypes.addressof(b) for b in bufs))
        keep.extend((bufs, syms))
        attr.kprobe_multi.syms = ctypes.addressof(syms)
    if cookies is not None:
        cks = (ctypes.c_uint64 * count)(*cookies)
        keep.append(cks)
        attr.kprobe_multi.cookies = ctypes.addressof(cks)
    ret = bpf_errno(T.BPF_LINK_CREATE, attr)
    del keep
    target = pattern if pattern is not None else (f"{count} functions" if count > 1 else (names or ["?"])[0])
    if ret >= 0:
        return Link(program, kind, target, fd=FD(ret))
    err = -ret
    if err in (_errno.EOPNOTSUPP, 524):
        raise NotSupportedError(
            "kprobe_multi", "5.18", err,
            detail="CONFIG_FPROBE is off in this kernel; attach one kprobe per function instead")
    if err == _errno.EINVAL:
        from pybpf.features import probe_link

        if not probe_link("kprobe_multi_link").supported:
            raise NotSupportedError("kprobe_multi", "5.18", err,
                                    detail="BPF_LINK_CREATE does not know kprobe_multi links (needs CONFIG_FPROBE)")
    if err in (_errno.ENOENT, _errno.ESRCH):
        raise BPFError(f"{kind} {target}: a function is not in kallsyms or not traceable", err, "BPF_LINK_CREATE")
    raise BPFError(f"attaching {program.name!r} to {kind} {target} failed", err, "BPF_LINK_CREATE")
