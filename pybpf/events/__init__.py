"""Event readers: BPF ring buffers, perf buffers and the tracefs trace_pipe."""

from __future__ import annotations

from pybpf.events.ringbuf import RingBuffer, RingBufferGroup, UserRingBuffer, dropped_count, poll_many

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.events.perfbuf import PerfBuffer
    from pybpf.events.trace_pipe import TraceEvent, TracePipe

__all__ = ["PerfBuffer", "RingBuffer", "RingBufferGroup", "TraceEvent", "TracePipe", "UserRingBuffer",
           "dropped_count", "poll_many"]


def __getattr__(name: str) -> object:
    # perfbuf and trace_pipe load lazily: most users need only one reader.
    if name == "PerfBuffer":
        from pybpf.events.perfbuf import PerfBuffer
        return PerfBuffer
    if name in ("TracePipe", "TraceEvent"):
        from pybpf.events import trace_pipe
        return getattr(trace_pipe, name)
    raise AttributeError(name)
