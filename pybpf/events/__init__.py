"""Event readers: BPF ring buffers, perf buffers and the tracefs trace_pipe."""

from __future__ import annotations

from pybpf._lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.events.perfbuf import PerfBuffer
    from pybpf.events.ringbuf import RingBuffer, RingBufferGroup, UserRingBuffer, dropped_count, poll_many
    from pybpf.events.trace_pipe import TraceEvent, TracePipe

__all__ = ["PerfBuffer", "RingBuffer", "RingBufferGroup", "TraceEvent", "TracePipe", "UserRingBuffer",
           "dropped_count", "poll_many"]

# Each reader loads on first use: most users need only one (trace_pipe alone imports re and dataclasses).
_LAZY = {
    "RingBuffer": ".ringbuf", "RingBufferGroup": ".ringbuf", "UserRingBuffer": ".ringbuf",
    "dropped_count": ".ringbuf", "poll_many": ".ringbuf", "PerfBuffer": ".perfbuf", "TracePipe": ".trace_pipe",
    "TraceEvent": ".trace_pipe",
}

__getattr__ = lazy_attributes(__name__, _LAZY, globals())
