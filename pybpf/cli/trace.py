"""`pybpf trace`: stream the kernel's trace_pipe (bpf_printk output), parsed into columns."""

from __future__ import annotations

import errno
import json
import sys
import time

import click


@click.command(epilog="""
\b
Examples:
  pybpf trace                       # every bpf_printk line, until Ctrl-C
  pybpf trace --pid 1234 --json     # one JSON object per line
  pybpf trace --comm curl --duration 10

\b
Reading trace_pipe consumes its lines for every reader on the system. Ctrl-C, SIGTERM and the end of
--duration exit 0.
""")
@click.option("--pid", "pids", type=int, multiple=True, help="Only lines of this process (repeatable).")
@click.option("--comm", "comms", multiple=True, help="Only lines of tasks with this name (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON lines.")
@click.option("--duration", type=float, metavar="SECONDS", help="Stop after this long (default: Ctrl-C).")
def trace(pids: tuple[int, ...], comms: tuple[str, ...], as_json: bool, duration: float | None) -> None:
    """Follow bpf_printk output: task, PID, CPU, timestamp and message of every trace_pipe line."""
    from pybpf.cli.runner import Stopper, finish, say
    from pybpf.events.trace_pipe import TracePipe

    try:
        pipe = TracePipe()
    except OSError as exc:
        why = ("another process is reading it (trace_pipe takes one reader at a time)"
               if exc.errno == errno.EBUSY else "needs root and tracefs")
        say(f"cannot open trace_pipe: {exc.strerror} - {why}", "error:", "error")
        finish(1)
    stopper = Stopper().install()
    color = sys.stdout.isatty()
    out = sys.stdout
    if not as_json:
        header = f"{'TIME(s)':>14} {'CPU':>3} {'PID':>7} {'TASK':<16} MESSAGE"
        out.write(f"\x1b[1m{header}\x1b[0m\n" if color else header + "\n")
        out.flush()
    say(f"Tracing bpf_printk output{f' for {duration:g}s' if duration is not None else ', Ctrl-C to stop'}.")
    deadline = time.monotonic() + duration if duration is not None else None
    try:
        import select

        poller = select.epoll()
        poller.register(pipe.fileno(), select.EPOLLIN)
        poller.register(stopper.rfd, select.EPOLLIN)
        while not stopper.reason:
            timeout = None if deadline is None else max(deadline - time.monotonic(), 0.0)
            try:
                poller.poll(-1 if timeout is None else timeout)
            except InterruptedError:
                pass
            events = pipe.read_events(0)
            for ev in events:
                if pids and ev.pid not in pids:
                    continue
                if comms and ev.task not in comms:
                    continue
                if as_json:
                    out.write(json.dumps({"task": ev.task, "pid": ev.pid, "cpu": ev.cpu, "timestamp": ev.timestamp,
                                          "flags": ev.flags, "function": ev.function,
                                          "message": ev.message}) + "\n")
                else:
                    out.write(f"{ev.timestamp:>14.6f} {ev.cpu:>3} {ev.pid:>7} {ev.task:<16} {ev.message}\n")
            if events:
                out.flush()
            stopper.drain()
            if deadline is not None and time.monotonic() >= deadline:
                stopper.stop("duration")
        poller.close()
    except BrokenPipeError:
        pass
    finally:
        pipe.close()
        stopper.close()
    finish(0)
