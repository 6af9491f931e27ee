"""Reader of the tracefs `trace_pipe` (bpf_printk / bpf_trace_printk output)."""

from __future__ import annotations

import os
import re
import select
from collections.abc import Iterator
from dataclasses import dataclass

from pybpf._sys.mounts import ensure_tracefs

__all__ = ["TraceEvent", "TracePipe", "parse_line"]

# "           <...>-1234    [001] d..31  1234.567890: bpf_trace_printk: hello"
# The irq-flags column is absent when the tracer's irq-info option is off.
_LINE = re.compile(
    r"^\s*(?P<task>.+?)-(?P<pid>\d+)\s+(?:\(\s*[-\d]+\)\s+)?\[(?P<cpu>\d+)\]\s+(?:(?P<flags>[^\s]{4,5})\s+)?"
    r"(?P<ts>\d+\.\d+):\s+(?:(?P<fn>[^:\s]+):\s)?(?P<msg>.*)$")


@dataclass(frozen=True, slots=True)
class TraceEvent:
    task: str
    pid: int
    cpu: int
    flags: str
    timestamp: float
    message: str
    function: str = ""


def parse_line(line: str) -> TraceEvent | None:
    m = _LINE.match(line)
    if m is None:
        return None
    return TraceEvent(m["task"], int(m["pid"]), int(m["cpu"]), m["flags"] or "", float(m["ts"]), m["msg"],
                      m["fn"] or "")


class TracePipe:
    """Iterates trace_pipe lines as TraceEvents (lines that do not parse come back with only `message` set).

    Reading trace_pipe consumes the lines, for every reader system-wide."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.path.join(ensure_tracefs(), "trace_pipe")
        self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        self._poll = select.poll()
        self._poll.register(self._fd, select.POLLIN)
        self._buf = b""

    def read_lines(self, timeout: float | None = None) -> list[str]:
        """Complete lines available now, waiting up to timeout seconds (None: forever) for the first."""
        if b"\n" not in self._buf and not self._poll.poll(None if timeout is None else int(timeout * 1000)):
            return []
        while True:
            try:
                chunk = os.read(self._fd, 65536)
            except BlockingIOError:
                break
            if not chunk:
                break
            self._buf += chunk
            if len(chunk) < 65536:
                break
        *lines, self._buf = self._buf.split(b"\n")
        return [ln.decode("utf-8", "replace") for ln in lines if ln]

    def read_events(self, timeout: float | None = None) -> list[TraceEvent]:
        """`read_lines` as TraceEvents; a line that does not parse comes back with only `message` set
        (and cpu -1)."""
        return [parse_line(ln) or TraceEvent("", 0, -1, "", 0.0, ln) for ln in self.read_lines(timeout)]

    def events(self, timeout: float | None = None) -> Iterator[TraceEvent]:
        """Yields events; stops after `timeout` seconds without a line (None: never)."""
        while True:
            events = self.read_events(timeout)
            if not events:
                return
            yield from events

    def __iter__(self) -> Iterator[TraceEvent]:
        return self.events()

    def fileno(self) -> int:
        return self._fd

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> TracePipe:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
