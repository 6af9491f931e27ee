"""perf events: attach a program to an open perf event, and sampling (`SEC("perf_event")`) programs.

Every perf-event based hook (tracepoints, kprobes, uprobes, sampling) ends the same way: the program is
attached to a perf event fd, through a BPF perf link (`BPF_LINK_CREATE` with attach type `PERF_EVENT`,
Linux 5.15+) where the kernel has one, else with the `PERF_EVENT_IOC_SET_BPF` ioctl; then the event is
enabled. A BPF link can be pinned and queried; the ioctl form lives exactly as long as the perf event fd.
"""

from __future__ import annotations

import errno as _errno
import os

from pybpf._lazy import cache
from pybpf._sys import types as T
from pybpf._sys.cpus import online_cpu_list
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno, ioctl, perf_event_open
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link.base import Link, prog_type_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from pybpf.program import Program

__all__ = [
    "PerfEventLink",
    "attach_perf_event",
    "attach_perf_event_fd",
    "attach_to_perf_event",
    "perf_events",
    "pmu_info",
]

# None: not known yet; set by the first attachment (a refused BPF perf link falls back to the ioctl).
_perf_link: bool | None = None

_PMU_DIR = "/sys/bus/event_source/devices"


@cache
def pmu_info(name: str) -> tuple[int, dict[str, int]] | None:
    """The perf PMU `name` ("kprobe", "uprobe", ...) as sysfs describes it: its perf type, and the first
    bit within ``attr.config`` of each of its format fields (``format/retprobe`` "config:0" -> 0,
    ``format/ref_ctr_offset`` "config:32-63" -> 32). None when the kernel has no such PMU."""
    pmu = os.path.join(_PMU_DIR, name)
    try:
        with open(os.path.join(pmu, "type")) as f:
            pmu_type = int(f.read())
    except (OSError, ValueError):
        return None
    fields: dict[str, int] = {}
    try:
        names = os.listdir(os.path.join(pmu, "format"))
    except OSError:
        names = []
    for field in names:
        try:
            with open(os.path.join(pmu, "format", field)) as f:
                where, _, bits = f.read().strip().partition(":")
            if where == "config" and bits:
                fields[field] = int(bits.split("-")[0])
        except (OSError, ValueError):
            pass
    return pmu_type, fields


# perf(1)'s names for the generic events: (perf type, config), as ints (perf_events() has the enums).
_SW, _HW = T.PERF_TYPE_SOFTWARE, T.PERF_TYPE_HARDWARE
_EVENTS: dict[str, tuple[int, int]] = {
    "cpu-clock": (_SW, T.PERF_COUNT_SW_CPU_CLOCK),
    "task-clock": (_SW, T.PERF_COUNT_SW_TASK_CLOCK),
    "page-faults": (_SW, T.PERF_COUNT_SW_PAGE_FAULTS),
    "faults": (_SW, T.PERF_COUNT_SW_PAGE_FAULTS),
    "minor-faults": (_SW, T.PERF_COUNT_SW_PAGE_FAULTS_MIN),
    "major-faults": (_SW, T.PERF_COUNT_SW_PAGE_FAULTS_MAJ),
    "context-switches": (_SW, T.PERF_COUNT_SW_CONTEXT_SWITCHES),
    "cs": (_SW, T.PERF_COUNT_SW_CONTEXT_SWITCHES),
    "cpu-migrations": (_SW, T.PERF_COUNT_SW_CPU_MIGRATIONS),
    "alignment-faults": (_SW, T.PERF_COUNT_SW_ALIGNMENT_FAULTS),
    "emulation-faults": (_SW, T.PERF_COUNT_SW_EMULATION_FAULTS),
    "cycles": (_HW, T.PERF_COUNT_HW_CPU_CYCLES),
    "cpu-cycles": (_HW, T.PERF_COUNT_HW_CPU_CYCLES),
    "instructions": (_HW, T.PERF_COUNT_HW_INSTRUCTIONS),
    "cache-references": (_HW, T.PERF_COUNT_HW_CACHE_REFERENCES),
    "cache-misses": (_HW, T.PERF_COUNT_HW_CACHE_MISSES),
    "branch-instructions": (_HW, T.PERF_COUNT_HW_BRANCH_INSTRUCTIONS),
    "branches": (_HW, T.PERF_COUNT_HW_BRANCH_INSTRUCTIONS),
    "branch-misses": (_HW, T.PERF_COUNT_HW_BRANCH_MISSES),
    "bus-cycles": (_HW, T.PERF_COUNT_HW_BUS_CYCLES),
    "ref-cycles": (_HW, T.PERF_COUNT_HW_REF_CPU_CYCLES),
}


@cache
def perf_events() -> dict[str, tuple[T.PerfType, int]]:
    """perf(1)'s names for the generic events, as (PerfType, PerfSwId or PerfHwId) (built on first use: it
    needs three generated enums; attaching uses ints)."""
    return {name: (T.PerfType(kind), T.PerfSwId(config) if kind == _SW else T.PerfHwId(config))
            for name, (kind, config) in _EVENTS.items()}


def attach_to_perf_event(program: Program, pfd: FD, *, cookie: int = 0, what: str = "") -> FD | None:
    """Attach `program` to the open perf event `pfd` and enable the event.

    Returns the BPF link fd, or None when the kernel has no BPF perf links and the program hangs on the
    perf event itself (PERF_EVENT_IOC_SET_BPF). `pfd` stays the caller's: on failure nothing else is
    left behind, and the caller closes `pfd`.
    """
    global _perf_link
    target = what or "perf event"
    link_fd: FD | None = None
    if _perf_link is not False:
        attr = T.LinkCreateAttr(prog_fd=int(program.fd), target_fd=int(pfd), attach_type=T.BPF_PERF_EVENT)
        attr.perf_event.bpf_cookie = cookie
        ret = bpf_errno(T.BPF_LINK_CREATE, attr)
        if ret >= 0:
            link_fd = FD(ret)
            _perf_link = True
        elif -ret in (_errno.EINVAL, _errno.EOPNOTSUPP) and _perf_link is None:
            # A kernel before 5.15 refuses the attach type itself; retried below with the ioctl.
            pass
        else:
            _raise_attach_error(program, -ret, target, "BPF_LINK_CREATE")
    if link_fd is None:
        if cookie:
            raise NotSupportedError(
                "BPF cookies on perf events", "5.15", detail=f"cannot attach {program.name!r} to {target} with "
                "cookie; this kernel has no BPF perf links")
        try:
            ioctl(pfd, T.PERF_EVENT_IOC_SET_BPF, int(program.fd))
        except BPFError as exc:
            _raise_attach_error(program, exc.errno or 0, target, "PERF_EVENT_IOC_SET_BPF")
        if _perf_link is None:
            _perf_link = False
    try:
        ioctl(pfd, T.PERF_EVENT_IOC_ENABLE, 0)
    except BaseException:
        if link_fd is not None:
            link_fd.close()
        raise
    return link_fd


def _raise_attach_error(program: Program, err: int, target: str, command: str) -> None:
    hint = ""
    if err == _errno.EINVAL:
        hint = f" (is {program.name!r} of the right program type for {target}? it is {prog_type_name(program)})"
    elif err == _errno.EEXIST:
        hint = " (this program is already attached there: a tracepoint or probe runs each program once)"
    raise BPFError(f"attaching program {program.name!r} to {target}{hint} failed", err, command)


class PerfEventLink(Link):
    """A program attached to several perf events (one per CPU): `per_cpu` maps CPU -> (perf event fd,
    BPF link fd or None). Detaching releases all of them."""

    def __init__(self, program: Program, kind: str, target: str, parts: Sequence[tuple[int, FD, FD | None]]) -> None:
        owned: list[FD] = []
        for _, pfd, lfd in parts:
            owned.append(pfd)
            if lfd is not None:
                owned.append(lfd)  # closed before its perf event (owned fds close in reverse)
        self.per_cpu: dict[int, tuple[FD, FD | None]] = {cpu: (pfd, lfd) for cpu, pfd, lfd in parts}
        super().__init__(program, kind, target, owned=owned)


def _event_type(event: str | tuple[int, int]) -> tuple[int, int, str]:
    if isinstance(event, tuple):
        kind, config = event
        return int(kind), int(config), f"perf event type {int(kind)} config {int(config):#x}"
    try:
        kind, config = _EVENTS[event]
    except KeyError:
        raise ValueError(f"unknown perf event {event!r}; known: {', '.join(_EVENTS)} "
                         "(or pass (type, config))") from None
    return kind, config, event


def _open_sampling_event(kind: int, config: int, name: str, frequency: int | None, period: int | None,
                         pid: int, cpu: int) -> FD:
    attr = T.PerfEventAttr(type=kind, config=config)
    if frequency is not None:
        attr.freq = 1
        attr.sample_freq = frequency
    else:
        attr.sample_period = period or 1
    try:
        return perf_event_open(attr, pid, cpu)
    except BPFError as exc:
        err = exc.errno or 0
        if kind == T.PERF_TYPE_HARDWARE and err in (_errno.ENOENT, _errno.EOPNOTSUPP, _errno.ENODEV):
            raise NotSupportedError(
                f"hardware perf counter {name!r}", "", err,
                detail=f"this machine exposes no hardware PMU ({_PMU_DIR}/cpu is missing: virtual machines "
                "often have none); sample a software event such as 'cpu-clock' instead") from None
        if err == _errno.EINVAL and frequency is not None:
            raise BPFError(f"opening {name} at {frequency} Hz on CPU {cpu} failed (above "
                           "/proc/sys/kernel/perf_event_max_sample_rate?)", err, "perf_event_open") from None
        if err in (_errno.EACCES, _errno.EPERM):
            raise BPFError(f"opening {name} on CPU {cpu} failed (needs root or CAP_PERFMON; see "
                           "/proc/sys/kernel/perf_event_paranoid)", err, "perf_event_open") from None
        raise


def attach_perf_event(
    program: Program,
    event: str | tuple[int, int] = "cpu-clock",
    *,
    frequency: int | None = None,
    period: int | None = None,
    pid: int = -1,
    cpus: Iterable[int] | None = None,
    cookie: int = 0,
) -> PerfEventLink:
    """Run a `perf_event` program on every sample of `event`.

    `event` is a perf(1) name ("cpu-clock", "page-faults", "cycles", ... see `perf_events()`) or a
    ``(type, config)`` pair. Give either `frequency` (samples per second per CPU) or `period` (events
    between samples; nanoseconds for the clock events). With ``pid=-1`` (all processes) one perf event is
    opened per online CPU (or per CPU in `cpus`); with a pid, one event follows that task on any CPU.
    Raises NotSupportedError for hardware counters on machines without a PMU.
    """
    if (frequency is None) == (period is None):
        raise ValueError("attach_perf_event needs exactly one of frequency= (Hz) or period= (events per sample)")
    if (frequency is not None and frequency <= 0) or (period is not None and period <= 0):
        raise ValueError("frequency and period must be positive")
    kind, config, name = _event_type(event)
    # Without a pid, one event per CPU (a pid=-1/cpu=-1 event is invalid); with one, a single event.
    if cpus is not None:
        cpu_list = list(cpus)
    elif pid != -1:
        cpu_list = [-1]
    else:
        cpu_list = online_cpu_list()
    rate = f"{frequency} Hz" if frequency is not None else f"every {period}"
    where = f"pid {pid}" if pid != -1 else f"{len(cpu_list)} CPU{'s' if len(cpu_list) != 1 else ''}"
    target = f"{name} ({rate}, {where})"
    parts: list[tuple[int, FD, FD | None]] = []
    try:
        for cpu in cpu_list:
            pfd = _open_sampling_event(kind, config, name, frequency, period, pid, cpu)
            try:
                lfd = attach_to_perf_event(program, pfd, cookie=cookie, what=f"{name} on CPU {cpu}")
            except BaseException:
                pfd.close()
                raise
            parts.append((cpu, pfd, lfd))
    except BaseException:
        _close_parts(parts)
        raise
    return PerfEventLink(program, "perf_event", target, parts)


def _close_parts(parts: Sequence[tuple[int, FD, FD | None]]) -> None:
    for _, pfd, lfd in reversed(parts):
        if lfd is not None:
            lfd.close()
        pfd.close()


def attach_perf_event_fd(
    program: Program,
    pfd: FD | int,
    *,
    cookie: int = 0,
    kind: str = "perf_event",
    target: str = "",
    what: str = "",
    undo: Iterable[Callable[[], None]] = (),
) -> Link:
    """Attach to a perf event the caller opened. An `FD` is taken over (closed on detach, and when attaching
    fails); a raw int is duplicated. `target` is the link's target, `what` names the event in error messages
    (both default to the target, else the fd). `undo` steps run after the event is closed (e.g. removing a
    tracefs probe); when attaching fails they are the caller's to run."""
    owned = pfd if isinstance(pfd, FD) else FD(os.dup(pfd))
    target = target or f"perf event fd {int(owned)}"
    try:
        link_fd = attach_to_perf_event(program, owned, cookie=cookie, what=what or target)
    except BaseException:
        owned.close()
        raise
    return Link(program, kind, target, fd=link_fd, owned=[owned], undo=undo)
