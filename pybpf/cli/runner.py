"""The engine of `pybpf run` (the click command is in pybpf.cli.run): load, attach, stream events, print maps.

Start-up matters here (time to "Attached"), so this module imports neither click nor rich: `fast_run`
parses the usual command lines itself (anything unusual goes to click), messages before attaching are plain
text, and the event readers, renderer and rich start only once the links are in place.

Shutdown: SIGINT (Ctrl-C), SIGTERM and the end of --duration all end a run the same way: drain the
readers, detach every link, print the maps and exit 0. After the output is flushed and the links are gone
the process leaves through os._exit, skipping interpreter teardown (it only frees memory).
"""

from __future__ import annotations

import os
import select
import sys
import time

TYPE_CHECKING = False
if TYPE_CHECKING:
    import signal
else:  # the C module `signal` wraps: `import signal` builds its enums (~5 ms of start-up)
    import _signal as signal
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, NoReturn

    from pybpf.btf import Type
    from pybpf.collection import Collection, ObjectFile

# Global variables that --pid fills when the user did not --set them (the libbpf-tools convention).
PID_VARIABLES = ("target_pid", "targ_pid", "targ_tgid")

# The options of `pybpf run`: (flags, destination, kind, metavar, default, help). pybpf.cli.run builds the
# click command from this table and fast_run parses it without click, so the two cannot disagree.
# kind: "str", "int", "float", "flag" or "multiple" (a repeatable string).
OPTIONS: tuple[tuple[tuple[str, ...], str, str, str | None, object, str], ...] = (
    (("--set",), "sets", "multiple", "NAME=VALUE", (),
     "Set a global variable before load (.rodata too); typed through BTF."),
    (("--pid",), "pid", "int", None, None,
     "Process for uprobes/USDT/perf events; also fills a global named target_pid/targ_pid/targ_tgid."),
    (("--binary",), "binary", "str", "PATH", None, "Binary or library for uprobes/USDT (replaces the section's)."),
    (("--iface",), "iface", "str", "NAME", None, "Network interface for XDP and tc programs."),
    (("--netns",), "netns", "str", "NAME|PATH", None, "Network namespace of --iface (ip netns name or path)."),
    (("--cgroup",), "cgroup", "str", "PATH", None, "cgroup v2 directory for cgroup programs."),
    (("--frequency",), "frequency", "int", "HZ", None, "Samples per second for perf_event programs."),
    (("--duration",), "duration", "float", "SECONDS", None, "Stop after this long (default: Ctrl-C)."),
    (("--interval",), "interval", "float", "SECONDS", None, "Also print the maps every SECONDS."),
    (("--json",), "as_json", "flag", None, False, "Print JSON lines (events, printk, maps) instead of text."),
    (("--type",), "record_types", "multiple", "MAP=STRUCT", (), "Decode the records of ring/perf buffer MAP as STRUCT."),
    (("--hist",), "hist_maps", "multiple", "MAP", (), "Draw MAP as a log2 histogram."),
    (("--top",), "top", "int", "N", 0, "Show at most N rows per map table."),
    (("-I", "--include"), "includes", "multiple", "DIR", (), "Include directory for clang."),
    (("--log-level",), "log_level", "int", None, 0, "Verifier log level (1 or 2) for every program."),
)


class BadOption(Exception):
    """A bad option value; the click command reports it as click.BadParameter (usage error, exit 2)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class Fail(Exception):
    """A failure to report (already formatted) before exiting 1."""


# ---- plain stderr messages -------------------------------------------------------------------------------

_STYLES = {"error": "1;31", "warning": "33", "alarm": "1;33", "note": "33", "ok": "32", "dim": "2"}


def _colour_stderr() -> bool:
    env = os.environ
    if env.get("FORCE_COLOR"):
        return True
    if "NO_COLOR" in env or env.get("TERM") == "dumb":
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def say(text: str, lead: str = "", style: str = "") -> None:
    """One line of stderr: `lead` and `text`, the lead (or the text, without one) in `style` on a terminal."""
    if style and _colour_stderr():
        if lead:
            lead = f"\x1b[{_STYLES[style]}m{lead}\x1b[0m"
        else:
            text = f"\x1b[{_STYLES[style]}m{text}\x1b[0m"
    sys.stderr.write(f"{lead} {text}\n" if lead else text + "\n")
    sys.stderr.flush()


class _Status:
    """A one-line "doing X..." on a terminal's stderr, erased when done (nothing when not a terminal)."""

    def __init__(self, text: str) -> None:
        self.shown = sys.stderr.isatty() and os.environ.get("TERM") != "dumb"
        if self.shown:
            sys.stderr.write(f"{text}...\r")
            sys.stderr.flush()

    def __enter__(self) -> _Status:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.shown:
            sys.stderr.write("\x1b[2K\r")
            sys.stderr.flush()


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
            self.reason = {int(signal.SIGINT): "SIGINT", int(signal.SIGTERM): "SIGTERM"}.get(signum, f"signal {signum}")

    def stop(self, reason: str) -> None:
        if not self.reason:
            self.reason = reason
        try:
            os.write(self.wfd, b"\0")
        except BlockingIOError:
            pass

    def drain(self) -> None:
        try:
            while os.read(self.rfd, 512):
                pass
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self._old:
            signal.set_wakeup_fd(self._old_wakeup)
            for sig, handler in self._old.items():
                signal.signal(sig, handler)
            self._old.clear()
        for fd in (self.rfd, self.wfd):
            try:
                os.close(fd)
            except OSError:
                pass


def finish(code: int) -> NoReturn:
    """Flush and exit. A real process leaves through os._exit (interpreter teardown only frees memory and
    costs tens of ms); in-process callers (click's CliRunner swaps sys.stdout) get a normal SystemExit."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001, S110 - a closed or broken stream has nothing left to flush
            pass
    if sys.stdout is sys.__stdout__ and not os.environ.get("PYBPF_NO_FAST_EXIT"):
        os._exit(code)
    sys.exit(code)


# ---- option parsing --------------------------------------------------------------------------------------


def parse_typed(raw: str, t: Type, name: str) -> Any:
    """A command-line string as a value for a global of BTF type t (ints in any base, true/false, one
    character for a 1-byte int, comma-separated lists for arrays other than char arrays). What is not
    parsed here (enum names, floats, strings) goes to ObjectFile.set as the string, for the BTF encoder to
    take or reject."""
    from pybpf.btf import types as bt

    s = t.strip()
    if isinstance(s, bt.Int) and s.encoding & bt.IntEncoding.BOOL:
        low = raw.lower()
        if low in ("1", "true", "yes", "on", "y"):
            return True
        if low in ("0", "false", "no", "off", "n"):
            return False
        raise BadOption(f"{name}={raw}: expected true or false", "--set")
    if isinstance(s, bt.Int | bt.Enum | bt.Pointer):
        if isinstance(s, bt.Int) and s.size == 1 and len(raw) == 1 and not raw.isdigit():
            return ord(raw)
        try:
            return int(raw, 0)
        except ValueError:
            return raw  # an enum name, else the encoder's error
    if isinstance(s, bt.Float):
        return raw
    if isinstance(s, bt.Array):
        elem = s.elem.strip()
        if isinstance(elem, bt.Int) and elem.size == 1 and (elem.encoding & bt.IntEncoding.CHAR
                                                              or elem.name == "char"):
            return raw
        # The encoder checks the length and zero-fills the elements not given.
        return [parse_typed(x.strip(), s.elem, name) for x in raw.split(",")]
    raise BadOption(f"{name} has type {t!r}, which cannot be set from the command line", "--set")


def apply_sets(obj: ObjectFile, sets: tuple[str, ...], pid: int | None) -> None:
    import struct  # the encoder's error for an int out of range

    explicit: dict[str, str] = {}
    for item in sets:
        if "=" not in item:
            raise BadOption(f"{item!r}: expected NAME=VALUE", "--set")
        name, raw = item.split("=", 1)
        explicit[name.strip()] = raw
    if pid is not None:
        for name in PID_VARIABLES:
            if name in obj.variables and name not in explicit:
                explicit[name] = str(pid)
    for name, raw in explicit.items():
        var = obj.variables.get(name)
        try:
            obj.set(name, raw if var is None else parse_typed(raw, var.type, name))
        except KeyError as exc:  # no such variable, or no such enum value
            why = exc.args[0] if exc.args else exc
            raise BadOption(str(why) if var is None else f"{name}={raw}: {why}", "--set") from None
        except (ValueError, TypeError, OverflowError, struct.error) as exc:
            raise BadOption(f"{name}={raw}: {exc}", "--set") from None


def _pairs(items: tuple[str, ...], option: str) -> dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise BadOption(f"{item!r}: expected MAP=NAME", option)
        out[key] = value
    return out


def _fast_parse(argv: list[str]) -> dict[str, Any] | None:
    """The arguments of `pybpf run` (after "run") as the click command would pass them, or None for
    anything this strict parser is not sure about (help, unknown or malformed options, a missing or
    unreadable FILE...): click then parses the line and reports the problem in its own words."""
    by_flag = {flag: (dest, kind) for flags, dest, kind, _, _, _ in OPTIONS for flag in flags}
    values: dict[str, Any] = {dest: default for _, dest, _, _, default, _ in OPTIONS}
    files: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        i += 1
        if not arg.startswith("-") or arg == "-":
            files.append(arg)
            continue
        flag, eq, inline = arg.partition("=") if arg.startswith("--") else (arg, "", "")
        spec = by_flag.get(flag)
        if spec is None:
            return None  # --help, -h, --, an unknown option, -Ifoo...
        dest, kind = spec
        if kind == "flag":
            if eq:
                return None
            values[dest] = True
            continue
        if eq:
            raw = inline
        elif i < len(argv):
            raw = argv[i]
            i += 1
        else:
            return None
        try:
            if kind == "multiple":
                values[dest] = (*values[dest], raw)
            elif kind == "int":
                values[dest] = int(raw)
            elif kind == "float":
                values[dest] = float(raw)
            else:
                values[dest] = raw
        except ValueError:
            return None
    if len(files) != 1:
        return None
    file = files[0]
    # click.Path(exists=True, dir_okay=False): an existing, readable non-directory.
    if not os.path.exists(file) or os.path.isdir(file) or not os.access(file, os.R_OK):
        return None
    values["file"] = file
    return values


def fast_run(argv: list[str]) -> None:
    """Run `pybpf run ARGV` without click when the command line is an ordinary one, otherwise return for
    click to handle it. It also returns on a bad option value (BadOption), which may come after side
    effects: a bad --set is found once the file is compiled and opened, and click then compiles and
    opens it again to report the error. Never returns once the run started."""
    if any(k.startswith("_") and k.endswith("_COMPLETE") for k in os.environ):
        return  # shell completion is click's business
    params = _fast_parse(argv)
    if params is None:
        return
    try:
        execute(**params)
    except BadOption:
        return  # click runs the line again and reports it as a usage error
    except KeyboardInterrupt:  # before the Stopper is installed; as click does
        sys.stderr.write("\nAborted!\n")
        finish(1)
    except BrokenPipeError:  # as click does
        finish(1)


# ---- the run ---------------------------------------------------------------------------------------------


def execute(file: str, sets: tuple[str, ...], pid: int | None, binary: str | None, iface: str | None,
            netns: str | None, cgroup: str | None, frequency: int | None, duration: float | None,
            interval: float | None, as_json: bool, record_types: tuple[str, ...], hist_maps: tuple[str, ...],
            top: int, includes: tuple[str, ...], log_level: int) -> NoReturn:
    """Everything `pybpf run` does once its arguments are parsed. Raises BadOption for bad option values."""
    if duration is not None and duration < 0:
        raise BadOption("must be >= 0", "--duration")
    if interval is not None and interval <= 0:
        raise BadOption("must be > 0", "--interval")
    types = _pairs(record_types, "--type")
    targets: dict[str, Any] = {k: v for k, v in (("pid", pid), ("binary", binary), ("iface", iface),
                                                   ("netns", netns), ("cgroup", cgroup),
                                                   ("frequency", frequency)) if v is not None}
    try:
        code = _run(file, sets, pid, targets, duration, interval, as_json, types, hist_maps, top, includes,
                    log_level)
    except Fail as exc:
        say(str(exc), "error:", "error")
        code = 1
    finish(code)


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
        try:
            found = btf.find(cand, Composite)
        except KeyError:
            continue
        return found
    return None


def _uses_printk(coll: Collection) -> bool:
    from pybpf._sys import types as T

    printk = {T.BPF_FUNC_trace_printk, T.BPF_FUNC_trace_vprintk}
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
    from pybpf.link.auto import attach_all, hook_of

    links, failures = attach_all(coll.programs.values(), **targets)
    coll.links.extend(links)
    if failures:
        lines = []
        for name, failure in failures.items():
            section = coll.programs[name].section if name in coll.programs else "?"
            lines.append(f"cannot attach program {name!r} (section {section!r}): {failure}")
        raise Fail("\n".join(lines))
    attached_progs = {lk.program.name for lk in links if lk.program is not None}
    skipped = []
    for prog in coll.programs.values():
        if prog.name in attached_progs:
            continue
        # attach_all attached every program it could (or failed above): this one needs a target.
        try:
            hook, _, _ = hook_of(prog)
        except BPFError:
            continue  # not attached through a link (struct_ops, syscall...)
        skipped.append(f"{prog.name} ({hook}) needs {_HOOK_OPTION.get(hook, 'a target')}")
    done = [f"{lk.program.name if lk.program else '?'} → {lk.kind} {lk.target}" for lk in links]
    return done, skipped


class Readers:
    """Every ring buffer and perf buffer of the collection (and trace_pipe when programs print), behind one
    epoll together with the stop fd.

    Two steps around attaching: the constructor checks --type and opens the perf buffers (a perf event
    output with no reader is lost); `start`, once attached, opens the ring buffers (records wait in the map
    until read) and trace_pipe, so the modules reading them load only once the programs run."""

    def __init__(self, coll: Collection, record_types: dict[str, str], stop_fd: int) -> None:
        from pybpf._sys import types as T

        self.coll = coll
        self.printer: Any = None
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
        # (name, map, record type, perf buffer or None for a ring buffer); a ring buffer's type is None until
        # start() looks it up, unless --type named it (which gives a type or fails)
        self._sources: list[tuple[str, Any, Type | None, Any]] = []
        try:
            for name, m in coll.maps.items():
                if m.map_type not in (T.BPF_MAP_TYPE_RINGBUF, T.BPF_MAP_TYPE_PERF_EVENT_ARRAY):
                    continue
                explicit = record_types.get(name)
                if m.map_type == T.BPF_MAP_TYPE_RINGBUF and explicit is None:
                    # Found in start(): with a cached load plan, the object's BTF is then read after
                    # attaching rather than before.
                    self._sources.append((name, m, None, None))
                    continue
                rtype = self._record_type(name, m, explicit)
                perf = None
                if m.map_type == T.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
                    from pybpf.events.perfbuf import PerfBuffer

                    perf = PerfBuffer(m, type=rtype)
                    self.perfs.append(perf)
                    # Into the epoll now, while empty: perf fds report readiness once per wakeup, and the
                    # nested-epoll check at registration would take it, so a ring that filled before
                    # registration would never wake this epoll again.
                    self.epoll.register(perf.fileno(), select.EPOLLIN)
                self._sources.append((name, m, rtype, perf))
        except BaseException:
            self.close()
            raise

    def start(self, printer: Any, printk: bool) -> None:
        """Start reading every source into `printer` (a pybpf.cli.render.EventPrinter)."""
        from pybpf.cli.render import columns_for

        self.printer = printer
        many = len(self._sources) > 1
        for name, m, found, perf in self._sources:
            rtype = self._record_type(name, m, None) if perf is None and found is None else found
            sink = _sink(printer, name, columns_for(rtype), many)
            if perf is None:
                from pybpf.events.ringbuf import RingBuffer

                rb = RingBuffer(m, type=rtype)
                self.rings.append(rb)
                # The map fd itself polls readable while records are pending (level-triggered).
                self._add(int(m.fd), _bind(rb.consume, sink))
            else:
                self._drains[perf.fileno()] = _bind(perf.consume, sink)  # registered in __init__
        if printk:
            from pybpf.events.trace_pipe import TracePipe

            try:
                self.trace = TracePipe()
            except OSError as exc:  # EBUSY: trace_pipe takes one reader at a time
                self.notes.append(f"bpf_printk output is not shown: cannot open trace_pipe ({exc.strerror}; "
                                  "another `pybpf trace` or `cat trace_pipe` may be reading it)")
            else:
                self._add(self.trace.fileno(), self._drain_trace)
        self.drain()  # what arrived between attaching and now

    def _record_type(self, name: str, m: Any, explicit: str | None) -> Type | None:
        rtype = _record_type(m, explicit)
        if rtype is None:
            self.notes.append(f"{name}: no record type found, showing raw bytes (--type {name}=STRUCT)")
        return rtype

    def _add(self, fd: int, drain: Callable[[], int]) -> None:
        self.epoll.register(fd, select.EPOLLIN)
        self._drains[fd] = drain

    def _drain_trace(self) -> int:
        events = self.trace.read_events(0)
        for ev in events:
            self.printer.printk(ev)
        return len(events)

    def wait(self, timeout: float | None) -> None:
        """Wait for events (or the stop fd) up to timeout seconds, then hand what the ready sources hold to
        the printer. Every source is level-triggered but the perf buffers, whose nested epoll reports a
        wakeup once: a reported fd is drained now, and one not reported has had no wakeup since its last
        drain."""
        try:
            ready = self.epoll.poll(-1 if timeout is None else max(timeout, 0.0))
        except InterruptedError:
            return
        drains = self._drains
        n = 0
        for fd, _ in ready:
            drain = drains.get(fd)  # None for the stop fd
            if drain is not None:
                n += drain()
        if n:
            self.printer.flush()

    def drain(self) -> int:
        """Hand what every source holds to the printer (whether or not its fd was reported)."""
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
            try:
                r.close()
            except Exception:  # noqa: BLE001, S110 - closing the rest matters more
                pass
        if self.trace is not None:
            self.trace.close()
        self.epoll.close()


def _sink(printer: Any, name: str, columns: list[Any], many: bool) -> Callable[[Any], None]:
    def sink(ev: Any) -> None:
        printer.event(name, ev, columns, many=many)
    return sink


def _bind(consume: Callable[[Callable[[Any], None]], int], sink: Callable[[Any], None]) -> Callable[[], int]:
    return lambda: consume(sink)


def _guarded(stopper: Stopper, action: Callable[..., object], *args: Any) -> None:
    """Call `action`; a closed stdout (`pybpf run ... | head`) ends the run like Ctrl-C."""
    try:
        action(*args)
    except BrokenPipeError:
        stopper.stop("EPIPE")
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass


def _load(file: str, sets: tuple[str, ...], pid: int | None, includes: tuple[str, ...],
          log_level: int) -> Collection:
    from pybpf.collection import load_file, open_object
    from pybpf.errors import BPFError

    path = file
    if file.endswith(".c"):
        from pybpf.toolchain import ClangNotFoundError, CompileError, compile

        try:
            with _Status(f"compiling {file}"):
                path = str(compile(file, include=list(includes)))
        except CompileError as exc:
            raise Fail(f"clang failed to compile {file}:\n{exc.diagnostics.rstrip()}") from None
        except ClangNotFoundError as exc:
            raise Fail(str(exc)) from None

    def read() -> ObjectFile:
        try:
            obj = open_object(path)
        except (BPFError, OSError) as exc:
            raise Fail(f"cannot read {path}: {exc}") from None
        apply_sets(obj, sets, pid)
        return obj

    try:
        with _Status("loading"):
            # A cached plan when this object was run before with the same --set/--pid (pybpf.plan).
            return load_file(path, read, ("run", sets, pid), log_level=log_level)
    except BPFError as exc:
        raise Fail(f"cannot load {file}: {exc}") from None


def _run(file: str, sets: tuple[str, ...], pid: int | None, targets: dict[str, Any], duration: float | None,
         interval: float | None, as_json: bool, record_types: dict[str, str], hist_maps: tuple[str, ...],
         top: int, includes: tuple[str, ...], log_level: int) -> int:
    from pybpf.link.base import detach_all

    coll = _load(file, sets, pid, includes, log_level)
    unknown_hist = set(hist_maps) - set(coll.maps)
    if unknown_hist:
        coll.close()
        raise Fail(f"--hist names no map of the object: {', '.join(sorted(unknown_hist))}")
    stopper = Stopper().install()
    readers: Readers | None = None
    try:
        readers = Readers(coll, record_types, stopper.rfd)
        for note in readers.notes:
            say(note, "note:", "note")
        done, skipped = attach(coll, targets)
        for why in skipped:
            say(f"not attached: {why}", "warning:", "warning")
        if not done:
            raise Fail("no program was attached" + (f" ({'; '.join(skipped)})" if skipped else ""))
        until = f"for {duration:g}s" if duration is not None else "Ctrl-C to stop"
        say(f"{len(done)} link(s): {', '.join(done)}. Running, {until}.", "Attached", "ok")

        # Attached: now the renderer, rich (text maps only; loaded now rather than when stopping, which
        # must be quick) and the readers.
        from pybpf.cli.render import EventPrinter, print_maps

        out: Any = None
        if not as_json:
            from rich.console import Console

            out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
        printer = EventPrinter(sys.stdout, json_lines=as_json, color=sys.stdout.isatty())
        notes = len(readers.notes)
        _guarded(stopper, readers.start, printer, _uses_printk(coll))
        for note in readers.notes[notes:]:
            say(note, "note:", "note")

        def show_maps(title: str | None = None) -> None:
            print_maps(coll.maps, coll.variables, out, json_lines=as_json, out=sys.stdout, force_hist=hist_maps,
                       top=top, title=title)

        _loop(readers, stopper, duration, interval, lambda: show_maps(time.strftime("%H:%M:%S")))
    except BaseException:
        if readers is not None:
            readers.close()
        detach_all(coll.links)
        coll.close()
        stopper.close()
        raise

    # Shutdown: release the links (the kernel takes ~80 ms per syscall tracepoint) while printing the maps.
    import threading

    detacher = threading.Thread(target=detach_all, args=(list(coll.links),), daemon=True)
    detacher.start()

    def final_maps() -> None:
        assert readers is not None
        readers.drain()
        show_maps()

    _guarded(stopper, final_maps)
    read, lost = readers.counts()
    if as_json:
        import json

        summary = json.dumps({"kind": "summary", "read": read, "lost": lost, "stopped_by": stopper.reason})
        _guarded(stopper, sys.stdout.write, summary + "\n")
    total_lost = sum(lost.values())
    if total_lost:
        detail = ", ".join(f"{name}: {n}" for name, n in lost.items() if n)
        say(f"{total_lost} events lost ({detail}); the reader fell behind the producer", "warning:", "alarm")
    if read:
        say(f"{sum(read.values())} events read", style="dim")
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
        timeout = min(waits) if waits else None
        _guarded(stopper, readers.wait, timeout)
        stopper.drain()
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            stopper.stop("duration")
        elif next_print is not None and interval and now >= next_print:
            _guarded(stopper, print_maps)
            next_print += interval * max(1, int((now - next_print) // interval) + 1)
