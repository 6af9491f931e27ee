"""Start-up benchmark: from process start to "attached", and from SIGINT to a clean exit.

Two precompiled objects: bench/bpf/startup.bpf.c (a CO-RE tracepoint sending exec events through a
ring buffer) and bench/bpf/three.bpf.c (a three-probe tool: three syscall tracepoints counting into a
map). Peers, run in the same session, interleaved iteration by iteration so they share the machine's load:

* pybpf: a tiny Python script (load, attach_all, print "attached <CLOCK_MONOTONIC ns>", sleep until SIGINT
  raises KeyboardInterrupt, close the collection);
* pybpf run (CLI): the command-line tool on the same object; "attached" is when its "Attached N link(s)" line
  arrives (printed just after attaching);
* libbpf: bench/c/loader.c built with gcc (`loader OBJ attach`, same protocol);
* bpftrace: an equivalent one-liner; "attached" is when its "Attaching N probes..." line arrives (bpftrace
  prints it just before attaching, so this slightly favours bpftrace);
* BCC: an equivalent Python program, when the `bcc` module imports and can compile (it needs kernel
  headers; skipped with a note otherwise).

"Attached" is measured from just before fork/exec to the timestamp the tool prints (same clock);
"exit" from sending SIGINT to reaping the process. Medians over the iterations (after a warm-up run that
fills the page cache, .pyc files and the BTF index cache), with ratios to libbpf and a markdown table.

    python3 bench/startup.py [--iterations 7] [--tools pybpf,cli,libbpf,bpftrace,bcc]
"""

from __future__ import annotations

import argparse
import os
import selectors
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
from _bcc import bcc_runtime  # noqa: E402
from _common import add_interpreter_option, c_loader, python, python_env  # noqa: E402

ROOT = BENCH.parent

# What a user writes: Ctrl-C (SIGINT) raises KeyboardInterrupt, and leaving the `with` block detaches.
# (`import signal` alone would cost ~5 ms here: it imports enum.)
PYBPF_RUNNER = """\
import sys, time
import pybpf

with pybpf.load(sys.argv[1]) as obj:
    failures = obj.attach_all()
    if failures:
        sys.exit(f"attach failed: {failures}")
    print("attached", time.monotonic_ns(), flush=True)
    try:
        time.sleep(3600)
    except KeyboardInterrupt:
        pass
"""

BPFTRACE = {
    "startup": 'tracepoint:syscalls:sys_enter_execve { printf("%d %d %s\\n", pid, curtask->real_parent->tgid, comm); }',
    "three": "tracepoint:syscalls:sys_enter_openat { @c[0] = count(); } "
    "tracepoint:syscalls:sys_enter_read { @c[1] = count(); } "
    "tracepoint:syscalls:sys_enter_write { @c[2] = count(); }",
}

BCC_RUNNER = """\
import signal, sys, time
from bcc import BPF

signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
TEXT = {
    "startup": r'''
#include <linux/sched.h>
struct event { u32 pid; u32 ppid; char comm[16]; };
BPF_RINGBUF_OUTPUT(events, 64);
TRACEPOINT_PROBE(syscalls, sys_enter_execve) {
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) return 0;
    e->pid = task->tgid;
    e->ppid = task->real_parent->tgid;
    bpf_get_current_comm(e->comm, sizeof(e->comm));
    events.ringbuf_submit(e, 0);
    return 0;
}
''',
    "three": r'''
BPF_ARRAY(counts, u64, 3);
TRACEPOINT_PROBE(syscalls, sys_enter_openat) { counts.atomic_increment(0); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_read) { counts.atomic_increment(1); return 0; }
TRACEPOINT_PROBE(syscalls, sys_enter_write) { counts.atomic_increment(2); return 0; }
''',
}
b = BPF(text=TEXT[sys.argv[1]])
print("attached", time.monotonic_ns(), flush=True)
signal.sigwait({signal.SIGINT, signal.SIGTERM})
b.cleanup()
"""


@dataclass
class Tool:
    name: str
    argv: Callable[[str], list[str]]  # object name ("startup"/"three") -> command line
    marker: str  # the stdout line prefix that means "attached"
    stamped: bool  # the marker line carries a CLOCK_MONOTONIC timestamp
    note: str = ""
    env: dict[str, str] | None = None
    marker_on_stderr: bool = False  # the marker line goes to stderr: read stderr with stdout (as 2>&1)


@dataclass
class Result:
    attach_ms: list[float] = field(default_factory=list)
    exit_ms: list[float] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


def _read_until(proc: subprocess.Popen[bytes], marker: str, timeout: float) -> tuple[str, int]:
    """The first stdout line starting with `marker` and when it was read (monotonic ns)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    pending = b""
    tail = b""  # the last output, for the report when the tool fails
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no {marker!r} line within {timeout:.0f}s")
            if not sel.select(left):
                continue
            chunk = os.read(proc.stdout.fileno(), 65536)
            now = time.monotonic_ns()
            if not chunk:
                said = tail.decode(errors="replace").strip()
                raise RuntimeError(f"exited (status {proc.wait()}) before printing {marker!r}"
                                   + (f" after {said!r}" if said else ""))
            tail = (tail + chunk)[-300:]
            pending += chunk
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                text = line.decode(errors="replace")
                if text.startswith(marker):
                    return text, now
    finally:
        sel.close()


def _drain(proc: subprocess.Popen[bytes], deadline: float) -> None:
    """Read stdout to EOF (bpftrace prints its maps while exiting) until `deadline` (monotonic s)."""
    assert proc.stdout is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("did not exit after SIGINT")
            if sel.select(left) and not os.read(proc.stdout.fileno(), 65536):
                return
    finally:
        sel.close()


def run_once(tool: Tool, obj: str, settle: float, timeout: float) -> tuple[float, float]:
    """(attach ms, exit ms) of one run."""
    with tempfile.TemporaryFile() as errors:  # a failing tool's complaint, for the report
        start = time.monotonic_ns()
        proc = subprocess.Popen(tool.argv(obj), stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT if tool.marker_on_stderr else errors,
                                stdin=subprocess.DEVNULL, env=tool.env)
        try:
            try:
                line, read_at = _read_until(proc, tool.marker, timeout)
            except RuntimeError as exc:
                proc.wait()
                errors.seek(0)
                raise RuntimeError(f"{exc}: {errors.read().decode(errors='replace').strip()[-300:]}") from None
            attached = int(line.split()[1]) if tool.stamped else read_at
            time.sleep(settle)
            stop = time.monotonic_ns()
            proc.send_signal(signal.SIGINT)
            _drain(proc, time.monotonic() + timeout)
            status = proc.wait(timeout=timeout)
            ended = time.monotonic_ns()
            if status != 0:
                raise RuntimeError(f"exit status {status}")
            return (attached - start) / 1e6, (ended - stop) / 1e6
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def _compile_objects(work: Path) -> dict[str, str]:
    from pybpf.toolchain import compile as compile_bpf

    objs = {}
    for name in ("startup", "three"):
        out = work / f"{name}.bpf.o"
        shutil.copyfile(compile_bpf(BENCH / "bpf" / f"{name}.bpf.c"), out)
        objs[name] = str(out)
    return objs


def _build_loader() -> str | None:
    try:
        return str(c_loader())
    except (OSError, subprocess.CalledProcessError) as exc:
        print(f"# libbpf loader did not build: {exc}", file=sys.stderr)
        return None


def make_tools(work: Path, objs: dict[str, str], wanted: set[str]) -> tuple[list[Tool], list[str]]:
    tools: list[Tool] = []
    notes: list[str] = []
    pyenv = python_env(work / "pycache")
    interpreter = python()
    if "pybpf" in wanted:
        pybpf_runner = work / "pybpf_runner.py"  # a name of its own: the lambdas bind late
        pybpf_runner.write_text(PYBPF_RUNNER)
        tools.append(Tool("pybpf", lambda o: [interpreter, str(pybpf_runner), objs[o]], "attached", True,
                          env=pyenv))
    if "cli" in wanted:
        # the command-line tool: `pybpf run OBJ`, started directly (no shell); its "Attached ..." line goes to stderr
        tools.append(Tool("pybpf run (CLI)", lambda o: [interpreter, "-m", "pybpf.cli.main", "run", objs[o]],
                          "Attached", False, "attached = its 'Attached N link(s)' line (printed just after attaching)",
                          env=pyenv, marker_on_stderr=True))
    if "libbpf" in wanted:
        loader = _build_loader()
        if loader is None:
            notes.append("libbpf C loader skipped: it did not build (gcc and libbpf-dev needed)")
        else:
            tools.append(Tool("libbpf (C)", lambda o: [loader, objs[o], "attach"], "attached", True))
    if "bpftrace" in wanted:
        bpftrace = shutil.which("bpftrace")
        if bpftrace is None:
            notes.append("bpftrace skipped: not installed")
        else:
            tools.append(Tool("bpftrace", lambda o: [bpftrace, "-e", BPFTRACE[o]], "Attaching", False,
                              "attached = its 'Attaching N probes' line (printed just before attaching)"))
    if "bcc" in wanted:
        bcc_python, env_or_why = bcc_runtime()
        if bcc_python is None:
            notes.append(f"BCC skipped: {env_or_why}")
        else:
            assert isinstance(env_or_why, dict)
            bcc_runner = work / "bcc_runner.py"
            bcc_runner.write_text(BCC_RUNNER)
            bcc_env = dict(env_or_why, PYTHONPYCACHEPREFIX=str(work / "pycache"))
            bcc_env.pop("PYTHONDONTWRITEBYTECODE", None)
            tools.append(Tool("BCC", lambda o: [bcc_python, str(bcc_runner), o], "attached", True,
                              "compiles its C with clang at start-up (against Debian 6.1's headers)", env=bcc_env))
    return tools, notes


def main() -> int:
    # Every tool starts with SIGINT's default action, whatever this driver inherited: started with SIGINT
    # ignored (nohup, `&` without job control), Python children would keep ignoring it, and the library
    # script, which ends on KeyboardInterrupt as users' scripts do, would never exit. A handled signal is
    # reset to the default at exec.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--settle", type=float, default=0.2, help="seconds attached before SIGINT")
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--tools", default="pybpf,cli,libbpf,bpftrace,bcc")
    add_interpreter_option(parser)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root", file=sys.stderr)
        return 2
    wanted = {t.strip() for t in args.tools.split(",") if t.strip()}
    with tempfile.TemporaryDirectory(prefix="pybpf-bench-") as tmp:
        work = Path(tmp)
        objs = _compile_objects(work)
        tools, notes = make_tools(work, objs, wanted)
        results: dict[tuple[str, str], Result] = {(t.name, o): Result() for t in tools for o in objs}
        for iteration in range(args.warmup + args.iterations):
            for obj in objs:
                for tool in tools:
                    res = results[(tool.name, obj)]
                    try:
                        attach_ms, exit_ms = run_once(tool, obj, args.settle, args.timeout)
                    except Exception as exc:  # a peer failing must not stop the others
                        res.failures.append(str(exc))
                        continue
                    if iteration >= args.warmup:
                        res.attach_ms.append(attach_ms)
                        res.exit_ms.append(exit_ms)
            print(f"# iteration {iteration + 1}/{args.warmup + args.iterations} done", file=sys.stderr)
        report(tools, objs, results, notes, args.iterations)
    return 0


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(ms: float | None) -> str:
    return "n/a" if ms is None else f"{ms:.1f}"


def _ratio(ms: float | None, base: float | None) -> str:
    return "n/a" if ms is None or not base else f"{ms / base:.2f}x"


def report(tools: list[Tool], objs: dict[str, str], results: dict[tuple[str, str], Result], notes: list[str],
           iterations: int) -> None:
    base_name = "libbpf (C)"
    rows = []
    for obj in objs:
        base = results.get((base_name, obj))
        base_attach = _median(base.attach_ms) if base else None
        base_exit = _median(base.exit_ms) if base else None
        for tool in tools:
            res = results[(tool.name, obj)]
            att, ext = _median(res.attach_ms), _median(res.exit_ms)
            rows.append((obj, tool.name, att, _ratio(att, base_attach), ext, _ratio(ext, base_exit),
                         len(res.attach_ms), res.failures))
    print(f"\nStart-up (process start -> attached) and exit (SIGINT -> reaped), medians of {iterations} runs, ms")
    print(f"{'object':8} {'tool':12} {'attach':>8} {'vs C':>7} {'exit':>8} {'vs C':>7} {'runs':>5}")
    for obj, name, att, att_r, ext, ext_r, n, failures in rows:
        print(f"{obj:8} {name:12} {_fmt(att):>8} {att_r:>7} {_fmt(ext):>8} {ext_r:>7} {n:>5}")
        for failure in dict.fromkeys(failures):
            print(f"    failed: {failure[:200]}")
    pybpf_startup = _median(results[("pybpf", "startup")].attach_ms) if ("pybpf", "startup") in results else None
    c_startup = (_median(results[(base_name, "startup")].attach_ms)
                 if (base_name, "startup") in results else None)
    pybpf_three_exit = _median(results[("pybpf", "three")].exit_ms) if ("pybpf", "three") in results else None
    print()
    if pybpf_startup is not None and c_startup:
        verdict = "met" if pybpf_startup <= 2 * c_startup else "NOT met"
        print(f"target: pybpf attached within 2x the C loader: {pybpf_startup / c_startup:.2f}x -> {verdict}")
    if pybpf_three_exit is not None:
        verdict = "met" if pybpf_three_exit < 150 else "NOT met"
        print(f"target: three-probe tool exits in under 150 ms: {pybpf_three_exit:.1f} ms -> {verdict}")
    for tool in tools:
        if tool.note:
            print(f"note: {tool.name}: {tool.note}")
    for note in notes:
        print(f"note: {note}")
    print("\n| object | tool | attached (ms) | vs libbpf | exit (ms) | vs libbpf |")
    print("|---|---|---:|---:|---:|---:|")
    for obj, name, att, att_r, ext, ext_r, _n, _f in rows:
        print(f"| {obj} | {name} | {_fmt(att)} | {att_r} | {_fmt(ext)} | {ext_r} |")


if __name__ == "__main__":
    sys.exit(main())
