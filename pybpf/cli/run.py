"""`pybpf run FILE`: compile (cached), load, attach everything, stream events, print the maps at the end.

Shutdown: SIGINT (Ctrl-C), SIGTERM and the end of --duration all end a run the same way: drain the
readers, detach every link, print the maps and exit 0. After the output is flushed and the links are gone
the process leaves through os._exit, skipping interpreter teardown (it only frees memory).
"""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NoReturn

import click

if TYPE_CHECKING:
    from pybpf.btf import Type
    from pybpf.collection import Collection, ObjectFile

# Global variables that --pid fills when the user did not --set them (the libbpf-tools convention).
PID_VARIABLES = ("target_pid", "targ_pid", "targ_tgid")

EXAMPLES = """
\b
Examples:
  pybpf run examples/execsnoop.bpf.c                  # one row per exec(), Ctrl-C to stop
  pybpf run examples/tracepoint_counter.bpf.c --duration 5
  pybpf run examples/read_histogram.bpf.c --interval 1 --duration 10
  pybpf run examples/uprobe_malloc.bpf.c --pid 1234
  pybpf run examples/xdp_counter.bpf.c --iface eth0 --json
  pybpf run filter.bpf.c --set target_pid=1234 --set min_bytes=4096

\b
Events: every ring buffer and perf buffer map is read and its records are decoded through BTF as the
struct named like the map ("events" -> struct event), or the one given with --type MAP=STRUCT (the struct
must be in the object's BTF: a global like `struct event *unused_event;` keeps it there). bpf_printk
output is followed when a program calls it. Maps are printed at the end: scalars, tables sorted by value,
and log2 histograms (maps named *hist*/*dist*/*slot* with integer keys and values, maps keyed by a
struct with a `slot` member, or values holding a `slots` array; bucket i counts [2^i, 2^(i+1))).

\b
Exit: Ctrl-C (SIGINT), SIGTERM and the end of --duration print the maps, detach and exit 0;
a compile, load (verifier) or attach failure exits 1 with the reason.
"""


# ---- shutdown --------------------------------------------------------------------------------------------


class Stopper:
    """Turns SIGINT/SIGTERM into a flag plus a readable fd, so a blocking epoll wakes and the run ends
    cleanly between two batches of events (never in the middle of one)."""

    def __init__(self) -> None:
        self.reason = ""
        self.rfd, self.wfd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._old: dict[int, Any] = {}
        self._old_wakeup = -1

    def install(self) -> Stopper:
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handler)
        self._old_wakeup = signal.set_wakeup_fd(self.wfd, warn_on_full_buffer=False)
        return self

    def _handler(self, signum: int, frame: Any) -> None:
        if not self.reason:
            self.reason = signal.Signals(signum).name

    def stop(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        with contextlib.suppress(BlockingIOError):
            os.write(self.wfd, b"\0")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.rfd, 512):
                pass

    def close(self) -> None:
        if self._old:
            signal.set_wakeup_fd(self._old_wakeup)
            for sig, handler in self._old.items():
                signal.signal(sig, handler)
            self._old.clear()
        for fd in (self.rfd, self.wfd):
            with contextlib.suppress(OSError):
                os.close(fd)


def finish(code: int) -> NoReturn:
    """Flush and exit. A real process leaves through os._exit (interpreter teardown only frees memory and
    costs tens of ms); in-process callers (click's CliRunner swaps sys.stdout) get a normal SystemExit."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    if sys.stdout is sys.__stdout__ and not os.environ.get("PYBPF_NO_FAST_EXIT"):
        os._exit(code)
    sys.exit(code)


# ---- option parsing --------------------------------------------------------------------------------------


def parse_typed(raw: str, t: Type, name: str) -> Any:
    """A command-line string as a value for a global of BTF type t (ints in any base, enum names,
    true/false, floats, strings for char arrays, comma-separated lists for arrays of numbers)."""
    from pybpf.btf import types as bt

    s = t.strip()
    try:
        if isinstance(s, bt.Int):
            if s.encoding & bt.IntEncoding.BOOL:
                low = raw.lower()
                if low in ("1", "true", "yes", "on", "y"):
                    return True
                if low in ("0", "false", "no", "off", "n"):
                    return False
                raise ValueError("expected true or false")
            if s.size == 1 and len(raw) == 1 and not raw.isdigit():
                return ord(raw)
            return int(raw, 0)
        if isinstance(s, bt.Enum):
            try:
                return s.value_of(raw)
            except KeyError:
                return int(raw, 0)
        if isinstance(s, bt.Float):
            return float(raw)
        if isinstance(s, bt.Pointer):
            return int(raw, 0)
        if isinstance(s, bt.Array):
            elem = s.elem.strip()
            if isinstance(elem, bt.Int) and elem.size == 1 and (elem.encoding & bt.IntEncoding.CHAR
                                                                  or elem.name == "char"):
                return raw
            values = [parse_typed(x.strip(), s.elem, name) for x in raw.split(",")]
            if len(values) > s.nelems:
                raise ValueError(f"{len(values)} values for {s.nelems} elements")
            return values + [0] * (s.nelems - len(values))
    except ValueError as exc:
        raise click.BadParameter(f"{name}={raw}: {exc}", param_hint="--set") from None
    raise click.BadParameter(f"{name} has type {t!r}, which cannot be set from the command line",
                             param_hint="--set")


def apply_sets(obj: ObjectFile, sets: tuple[str, ...], pid: int | None) -> None:
    explicit: dict[str, str] = {}
    for item in sets:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--set")
        name, raw = item.split("=", 1)
        explicit[name.strip()] = raw
    if pid is not None:
        for name in PID_VARIABLES:
            if name in obj.variables and name not in explicit:
                explicit[name] = str(pid)
    for name, raw in explicit.items():
        var = obj.variables.get(name)
        if var is None:
            known = ", ".join(sorted(obj.variables)) or "none"
            raise click.BadParameter(f"no global variable {name!r} (variables: {known})", param_hint="--set")
        value = parse_typed(raw, var.type, name)
        try:
            obj.set(name, value)
        except (ValueError, TypeError, OverflowError) as exc:
            raise click.BadParameter(f"{name}={raw}: {exc}", param_hint="--set") from None


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise click.BadParameter(f"{item!r}: expected MAP=NAME", param_hint=option)
        out[key] = value
    return out


# ---- the run ---------------------------------------------------------------------------------------------


class Fail(Exception):
    """A failure to report (already formatted) before exiting 1."""


def _spinner(console: Any, text: str) -> Any:
    return console.status(text) if console.is_terminal else contextlib.nullcontext()


def _record_type(m: Any, explicit: str | None) -> Type | None:
    """The BTF struct records of ring/perf buffer `m` decode as (see the help), or None (raw bytes)."""
    from pybpf.btf import Composite

    btf = getattr(getattr(m, "spec", None), "btf", None)
    name = getattr(m, "name", "")
    if explicit is not None:
        if btf is None:
            raise Fail(f"--type {name}={explicit}: the object has no BTF")
        try:
            found: Type = btf.find(explicit, Composite)
        except KeyError:
            raise Fail(f"--type {name}={explicit}: the object's BTF has no struct {explicit!r}; clang keeps only "
                       f"types that globals or functions use: add `struct {explicit} *unused_{explicit};`") from None
        return found
    if btf is None:
        return None
    candidates = [name, name[:-1] if name.endswith("s") else "", f"{name}_event", "event"]
    for cand in filter(None, candidates):
        with contextlib.suppress(KeyError):
            found = btf.find(cand, Composite)
            return found
    return None


def _uses_printk(coll: Collection) -> bool:
    from pybpf._sys import types as T

    printk = {int(T.BpfFuncId.trace_printk), int(T.BpfFuncId.trace_vprintk)}
    for name in coll.programs:
        for insn in coll.spec.programs[name].instructions:
            if insn.is_helper_call() and insn.imm in printk:
                return True
    return False


# Which option gives each hook family its target, for "not attached" messages.
_HOOK_OPTION = {"xdp": "--iface", "tc": "--iface", "uprobe": "--binary", "usdt": "--binary",
                "perf_event": "--frequency", "cgroup": "--cgroup", "lsm_cgroup": "--cgroup",
                "netns": "--netns"}


def attach(coll: Collection, targets: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Attach every program that can be; returns (what was attached, programs left unattached and why).
    Raises Fail when a program could not be attached. --binary replaces the binary named in a uprobe/USDT
    section and keeps its function or probe."""
    from pybpf.errors import BPFError
    from pybpf.link.auto import attach_all, auto_attachable, hook_of

    links, failures = attach_all(coll.programs.values(), **targets)
    coll.links.extend(links)
    if failures:
        lines = []
        for name, failure in failures.items():
            section = coll.spec.programs[name].section if name in coll.spec.programs else "?"
            lines.append(f"cannot attach program {name!r} (section {section!r}): {failure}")
        raise Fail("\n".join(lines))
    attached_progs = {lk.program.name for lk in links if lk.program is not None}
    skipped = []
    for prog in coll.programs.values():
        if prog.name in attached_progs:
            continue
        try:
            hook, _, _ = hook_of(prog)
        except BPFError:
            continue
        if not auto_attachable(prog):
            option = _HOOK_OPTION.get(hook, "a target")
            skipped.append(f"{prog.name} ({hook}) needs {option}")
    done = [f"{lk.program.name if lk.program else '?'} → {lk.kind} {lk.target}" for lk in links]
    return done, skipped


class Readers:
    """Every ring buffer and perf buffer of the collection (and trace_pipe when programs print), behind one
    epoll together with the stop fd."""

    def __init__(self, coll: Collection, printer: Any, record_types: dict[str, str], printk: bool,
                 stop_fd: int) -> None:
        from pybpf._sys import types as T
        from pybpf.cli.render import columns_for

        self.coll = coll
        self.printer = printer
        self.rings: list[Any] = []
        self.perfs: list[Any] = []
        self.trace: Any = None
        self.epoll = select.epoll()
        self.epoll.register(stop_fd, select.EPOLLIN)
        self._drains: dict[int, Callable[[], int]] = {}
        self.notes: list[str] = []
        unknown = set(record_types) - set(coll.maps)
        if unknown:
            raise Fail(f"--type names no map of the object: {', '.join(sorted(unknown))}")
        sources = [(n, m) for n, m in coll.maps.items()
                   if m.type in (T.MapType.RINGBUF, T.MapType.PERF_EVENT_ARRAY)]
        many = len(sources) > 1
        try:
            for name, m in sources:
                rtype = _record_type(m, record_types.get(name))
                if rtype is None:
                    self.notes.append(f"{name}: no record type found, showing raw bytes (--type {name}=STRUCT)")
                cols = columns_for(rtype)

                def sink(ev: Any, name: str = name, cols: list[Any] = cols) -> None:
                    printer.event(name, ev, cols, many=many)

                if m.type == T.MapType.RINGBUF:
                    from pybpf.events.ringbuf import RingBuffer

                    rb = RingBuffer(m, type=rtype)
                    self.rings.append(rb)
                    # The map fd itself polls readable while records are pending (level-triggered).
                    self._add(int(m.fd), functools.partial(rb.consume, sink))
                else:
                    from pybpf.events.perfbuf import PerfBuffer

                    pb = PerfBuffer(m, type=rtype)
                    self.perfs.append(pb)
                    self._add(pb.fileno(), functools.partial(pb.consume, sink))
            if printk:
                from pybpf.events.trace_pipe import TracePipe

                try:
                    self.trace = TracePipe()
                except OSError as exc:  # EBUSY: trace_pipe takes one reader at a time
                    self.notes.append(f"bpf_printk output is not shown: cannot open trace_pipe ({exc.strerror}; "
                                      "another `pybpf trace` or `cat trace_pipe` may be reading it)")
                else:
                    self._add(self.trace.fileno(), self._drain_trace)
        except BaseException:
            self.close()
            raise

    def _add(self, fd: int, drain: Callable[[], int]) -> None:
        self.epoll.register(fd, select.EPOLLIN)
        self._drains[fd] = drain

    def _drain_trace(self) -> int:
        from pybpf.events.trace_pipe import TraceEvent, parse_line

        lines = self.trace.read_lines(0)
        for line in lines:
            self.printer.printk(parse_line(line) or TraceEvent("", 0, -1, "", 0.0, line))
        return len(lines)

    def wait(self, timeout: float | None) -> None:
        """Wait for events (or the stop fd) up to timeout seconds, then hand everything ready to the printer."""
        with contextlib.suppress(InterruptedError):
            self.epoll.poll(-1 if timeout is None else max(timeout, 0.0))
        self.drain()

    def drain(self) -> int:
        n = sum(drain() for drain in self._drains.values())
        if n:
            self.printer.flush()
        return n

    def counts(self) -> tuple[dict[str, int], dict[str, int]]:
        """(records read, records lost) per map. Ring buffer losses are what the program counted in its
        global `dropped` (the kernel does not count them); perf buffer losses come from the kernel."""
        read = {rb.name: rb.records_read for rb in self.rings}
        lost = {pb.name: pb.lost for pb in self.perfs}
        read.update({pb.name: pb.records_read for pb in self.perfs})
        if self.rings:
            from pybpf.events.ringbuf import dropped_count

            dropped = dropped_count(self.coll)
            if dropped:
                lost[",".join(rb.name for rb in self.rings)] = dropped
        return read, lost

    def close(self) -> None:
        for r in [*self.rings, *self.perfs]:
            with contextlib.suppress(Exception):
                r.close()
        if self.trace is not None:
            self.trace.close()
        self.epoll.close()


@contextlib.contextmanager
def _stdout_guard(stopper: Stopper) -> Iterator[None]:
    """A closed stdout (`pybpf run ... | head`) ends the run like Ctrl-C."""
    try:
        yield
    except BrokenPipeError:
        stopper.stop("EPIPE")
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@click.command(epilog=EXAMPLES, context_settings={"max_content_width": 110})
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="NAME=VALUE",
              help="Set a global variable before load (.rodata too); typed through BTF.")
@click.option("--pid", type=int, help="Process for uprobes/USDT/perf events; also fills a global named "
              "target_pid/targ_pid/targ_tgid.")
@click.option("--binary", metavar="PATH", help="Binary or library for uprobes/USDT (replaces the section's).")
@click.option("--iface", metavar="NAME", help="Network interface for XDP and tc programs.")
@click.option("--netns", metavar="NAME|PATH", help="Network namespace of --iface (ip netns name or path).")
@click.option("--cgroup", metavar="PATH", help="cgroup v2 directory for cgroup programs.")
@click.option("--frequency", type=int, metavar="HZ", help="Samples per second for perf_event programs.")
@click.option("--duration", type=float, metavar="SECONDS", help="Stop after this long (default: Ctrl-C).")
@click.option("--interval", type=float, metavar="SECONDS", help="Also print the maps every SECONDS.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines (events, printk, maps) instead of text.")
@click.option("--type", "record_types", multiple=True, metavar="MAP=STRUCT",
              help="Decode the records of ring/perf buffer MAP as STRUCT.")
@click.option("--hist", "hist_maps", multiple=True, metavar="MAP", help="Draw MAP as a log2 histogram.")
@click.option("--top", type=int, default=0, metavar="N", help="Show at most N rows per map table.")
@click.option("-I", "--include", "includes", multiple=True, metavar="DIR", help="Include directory for clang.")
@click.option("--log-level", type=int, default=0, help="Verifier log level (1 or 2) for every program.")
def run(file: str, sets: tuple[str, ...], pid: int | None, binary: str | None, iface: str | None,
        netns: str | None, cgroup: str | None, frequency: int | None, duration: float | None,
        interval: float | None, as_json: bool, record_types: tuple[str, ...], hist_maps: tuple[str, ...],
        top: int, includes: tuple[str, ...], log_level: int) -> None:
    """Load FILE (.bpf.c compiled on the fly and cached, or .bpf.o), attach every program, stream its
    events and print its maps at the end."""
    from rich.console import Console

    err = Console(stderr=True, highlight=False, soft_wrap=True)
    if duration is not None and duration < 0:
        raise click.BadParameter("must be >= 0", param_hint="--duration")
    if interval is not None and interval <= 0:
        raise click.BadParameter("must be > 0", param_hint="--interval")
    types = _pairs(record_types, "--type")
    targets: dict[str, Any] = {k: v for k, v in (("pid", pid), ("binary", binary), ("iface", iface),
                                                   ("netns", netns), ("cgroup", cgroup),
                                                   ("frequency", frequency)) if v is not None}
    try:
        code = _run(file, sets, pid, targets, duration, interval, as_json, types, hist_maps, top, includes,
                    log_level, err)
    except Fail as exc:
        from rich.markup import escape

        err.print(f"[bold red]error:[/] {escape(str(exc))}")
        code = 1
    finish(code)


def _load(file: str, sets: tuple[str, ...], pid: int | None, includes: tuple[str, ...], log_level: int,
          err: Any) -> Collection:
    from pybpf.collection import open_object
    from pybpf.errors import BPFError

    path = file
    if file.endswith(".c"):
        from pybpf.toolchain import ClangNotFoundError, CompileError, compile

        try:
            with _spinner(err, f"compiling {file}"):
                path = str(compile(file, include=list(includes)))
        except CompileError as exc:
            raise Fail(f"clang failed to compile {file}:\n{exc.diagnostics.rstrip()}") from None
        except ClangNotFoundError as exc:
            raise Fail(str(exc)) from None
    try:
        obj = open_object(path)
    except (BPFError, OSError) as exc:
        raise Fail(f"cannot read {path}: {exc}") from None
    apply_sets(obj, sets, pid)
    try:
        with _spinner(err, "loading"):
            return obj.load(log_level=log_level)
    except BPFError as exc:
        raise Fail(f"cannot load {file}: {exc}") from None


def _run(file: str, sets: tuple[str, ...], pid: int | None, targets: dict[str, Any], duration: float | None,
         interval: float | None, as_json: bool, record_types: dict[str, str], hist_maps: tuple[str, ...],
         top: int, includes: tuple[str, ...], log_level: int, err: Any) -> int:
    from rich.console import Console

    from pybpf.cli.render import EventPrinter, print_maps
    from pybpf.link.base import detach_all

    coll = _load(file, sets, pid, includes, log_level, err)
    unknown_hist = set(hist_maps) - set(coll.maps)
    if unknown_hist:
        coll.close()
        raise Fail(f"--hist names no map of the object: {', '.join(sorted(unknown_hist))}")
    stopper = Stopper().install()
    out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
    printer = EventPrinter(sys.stdout, json_lines=as_json, color=sys.stdout.isatty())
    readers: Readers | None = None
    try:
        readers = Readers(coll, printer, record_types, _uses_printk(coll), stopper.rfd)
        for note in readers.notes:
            err.print(f"[yellow]note:[/] {note}")
        done, skipped = attach(coll, targets)
        for why in skipped:
            err.print(f"[yellow]warning:[/] not attached: {why}")
        if not done:
            raise Fail("no program was attached" + (f" ({'; '.join(skipped)})" if skipped else ""))
        until = f"for {duration:g}s" if duration is not None else "Ctrl-C to stop"
        err.print(f"[green]Attached[/] {len(done)} link(s): {', '.join(done)}. Running, {until}.")
        _loop(readers, stopper, duration, interval,
              lambda: print_maps(coll.maps, coll.variables, out, json_lines=as_json, out=sys.stdout,
                                 force_hist=hist_maps, top=top, title=time.strftime("%H:%M:%S")))
    except BaseException:
        if readers is not None:
            readers.close()
        detach_all(coll.links)
        coll.close()
        stopper.close()
        raise

    # Shutdown: release the links (the kernel takes ~80 ms per syscall tracepoint) while printing the maps.
    detacher = threading.Thread(target=detach_all, args=(list(coll.links),), daemon=True)
    detacher.start()
    with _stdout_guard(stopper):
        readers.drain()
        print_maps(coll.maps, coll.variables, out, json_lines=as_json, out=sys.stdout, force_hist=hist_maps,
                   top=top)
    read, lost = readers.counts()
    if as_json:
        with _stdout_guard(stopper):
            import json

            sys.stdout.write(json.dumps({"kind": "summary", "read": read, "lost": lost,
                                         "stopped_by": stopper.reason}) + "\n")
    total_lost = sum(lost.values())
    if total_lost:
        detail = ", ".join(f"{name}: {n}" for name, n in lost.items() if n)
        err.print(f"[bold yellow]warning:[/] {total_lost} events lost ({detail}); the reader fell behind the "
                  "producer")
    if read:
        err.print(f"[dim]{sum(read.values())} events read[/]")
    detacher.join()
    readers.close()
    coll.close()
    stopper.close()
    return 0


def _loop(readers: Readers, stopper: Stopper, duration: float | None, interval: float | None,
          print_maps: Callable[[], None]) -> None:
    start = time.monotonic()
    deadline = start + duration if duration is not None else None
    next_print = start + interval if interval else None
    while not stopper.reason:
        now = time.monotonic()
        waits = [t - now for t in (deadline, next_print) if t is not None]
        with _stdout_guard(stopper):
            readers.wait(min(waits) if waits else None)
        stopper.drain()
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            stopper.stop("duration")
        elif next_print is not None and interval and now >= next_print:
            with _stdout_guard(stopper):
                print_maps()
            next_print += interval * max(1, int((now - next_print) // interval) + 1)
