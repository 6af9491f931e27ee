"""Perf buffer reader (BPF_MAP_TYPE_PERF_EVENT_ARRAY + bpf_perf_event_output).

One PERF_COUNT_SW_BPF_OUTPUT event per CPU, its fd stored in the map at the CPU index, each with an mmap'd ring
(1 metadata page + `pages` data pages, a power of two).  Records: PERF_RECORD_SAMPLE carries the raw data
(u32 size + bytes, the size padded to 8 together with it); PERF_RECORD_LOST carries how many samples the kernel
dropped because the ring was full (added to `lost`).
"""

from __future__ import annotations

import errno as _errno
import mmap
import select
import struct
from collections.abc import Callable, Iterator
from typing import Any

from pybpf._sys import perf_event_open
from pybpf._sys.cpus import possible_cpus
from pybpf._sys.types import (
    MapType,
    PerfEventAttr,
    PerfEventMmapPage,
    PerfRecordType,
    PerfSampleFormat,
    PerfSwId,
    PerfType,
)
from pybpf.btf import Type
from pybpf.errors import BPFError
from pybpf.events.ringbuf import _resolve_type

__all__ = ["PerfBuffer"]

_PAGE = mmap.PAGESIZE
_HDR = struct.Struct("<IHH")
_U32 = struct.Struct("<I")
_LOST = struct.Struct("<QQ")
_HEAD_OFF = PerfEventMmapPage.data_head.offset  # type: ignore[attr-defined]
_SAMPLE = int(PerfRecordType.SAMPLE)
_LOST_T = int(PerfRecordType.LOST)


class _CpuRing:
    __slots__ = ("cpu", "fd", "mm", "pos", "size")

    def __init__(self, cpu: int, fd: Any, pages: int) -> None:
        self.cpu = cpu
        self.fd = fd
        self.size = pages * _PAGE
        self.mm = mmap.mmap(int(fd), _PAGE + self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        # data_head and data_tail are adjacent u64s in the metadata page.
        self.pos = memoryview(self.mm)[_HEAD_OFF:_HEAD_OFF + 16].cast("Q")

    def close(self) -> None:
        self.pos.release()
        self.mm.close()
        self.fd.close()


class PerfBuffer:
    """Reads a perf event array map: `for ev in pb`, `pb.poll(timeout, callback)`, `pb.consume()`.

    `pages`: data pages per CPU (power of two).  `wakeup_events`: wake the reader every N samples; or
    `watermark`: wake once that many bytes are pending (overrides wakeup_events).  `type`/`decode` as RingBuffer."""

    def __init__(self, map: Any, *, pages: int = 64, wakeup_events: int = 1, watermark: int = 0,  # noqa: A002
                 type: Type | str | None = None, decode: bool | Callable[[bytes], Any] = True) -> None:  # noqa: A002
        if pages <= 0 or pages & (pages - 1):
            raise ValueError(f"pages must be a power of two, got {pages}")
        mtype = getattr(map, "type", None)
        if mtype is not None and mtype != MapType.PERF_EVENT_ARRAY:
            raise BPFError(f"map {getattr(map, 'name', '?')!r} is {MapType(mtype).name}, not a PERF_EVENT_ARRAY")
        self.map = map
        self.name: str = getattr(map, "name", "")
        self.type = _resolve_type(map, type)
        self.records_read = 0
        self.lost = 0
        self._decode: Callable[[bytes], Any] | None = None
        self._type_size = 0
        if callable(decode):
            self._decode = decode
        elif decode and self.type is not None:
            from pybpf.btf import sizeof
            from pybpf.btf.codec import decoder_for

            self._decode = decoder_for(self.type)
            self._type_size = sizeof(self.type)
        self._epoll = select.epoll()
        self._rings: list[_CpuRing] = []
        ncpu = min(possible_cpus(), int(map.max_entries))
        try:
            for cpu in range(ncpu):
                attr = PerfEventAttr()
                attr.type = PerfType.SOFTWARE
                attr.config = PerfSwId.BPF_OUTPUT
                attr.sample_type = PerfSampleFormat.RAW
                attr.sample_period = 1
                if watermark:
                    attr.watermark = 1
                    attr.wakeup_watermark = watermark
                else:
                    attr.wakeup_events = max(1, wakeup_events)
                try:
                    fd = perf_event_open(attr, -1, cpu)
                except BPFError as e:
                    if e.errno == _errno.ENODEV:  # offline CPU
                        continue
                    raise
                ring = _CpuRing(cpu, fd, pages)
                self._rings.append(ring)
                map.update(struct.pack("<I", cpu), struct.pack("<I", int(fd)))
                self._epoll.register(int(fd), select.EPOLLIN)
        except BaseException:
            self.close()
            raise
        self._by_fd = {int(r.fd): r for r in self._rings}
        self._closed = False

    def close(self) -> None:
        if getattr(self, "_closed", False):
            return
        self._closed = True
        for ring in self._rings:
            try:
                self.map.delete(struct.pack("<I", ring.cpu))
            except (BPFError, OSError, KeyError):
                pass
            ring.close()
        self._rings = []
        self._epoll.close()

    def __enter__(self) -> PerfBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        return self._epoll.fileno()

    def _drain_ring(self, ring: _CpuRing, sink: Callable[[Any], Any]) -> int:
        pos = ring.pos
        head = pos[0]
        tail = pos[1]
        if head == tail:
            return 0
        mm = ring.mm
        size = ring.size
        mask = size - 1
        decode = self._decode
        tsize = self._type_size
        n = 0
        while tail < head:
            off = tail & mask
            if off + 8 <= size:
                rtype, _misc, rsize = _HDR.unpack_from(mm, _PAGE + off)
            else:
                rtype, _misc, rsize = _HDR.unpack(self._copy(mm, off, 8, size))
            if off + rsize <= size:
                rec = mm[_PAGE + off:_PAGE + off + rsize]
            else:  # wraps around the end of the ring
                rec = self._copy(mm, off, rsize, size)
            tail += rsize
            if rtype == _SAMPLE:
                raw_size = _U32.unpack_from(rec, 8)[0]
                raw = rec[12:12 + raw_size]
                if decode is not None:
                    if tsize:
                        raw = raw[:tsize] if len(raw) >= tsize else raw.ljust(tsize, b"\0")
                    sink(decode(raw))
                else:
                    sink(raw)
                n += 1
            elif rtype == _LOST_T:
                self.lost += _LOST.unpack_from(rec, 8)[1]
        pos[1] = tail
        self.records_read += n
        return n

    @staticmethod
    def _copy(mm: mmap.mmap, off: int, length: int, size: int) -> bytes:
        first = min(length, size - off)
        return mm[_PAGE + off:_PAGE + off + first] + mm[_PAGE:_PAGE + length - first]

    def consume(self, callback: Callable[[Any], Any] | None = None) -> int:
        """Processes the ready records of every CPU without waiting."""
        sink: Callable[[Any], Any] = callback or (lambda _ev: None)
        return sum(self._drain_ring(r, sink) for r in self._rings)

    def poll(self, timeout: float | None = None, callback: Callable[[Any], Any] | None = None) -> int:
        n = self.consume(callback)
        if n:
            return n
        ready = self._epoll.poll(-1 if timeout is None else timeout)
        sink: Callable[[Any], Any] = callback or (lambda _ev: None)
        return sum(self._drain_ring(self._by_fd[fd], sink) for fd, _ in ready) + self.consume(callback)

    def read(self) -> list[Any]:
        out: list[Any] = []
        self.consume(out.append)
        return out

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Yields samples as they arrive; stops after `timeout` seconds with nothing new (None: never)."""
        while not self._closed:
            out: list[Any] = []
            if not self.poll(timeout, out.append):
                return
            yield from out

    def __iter__(self) -> Iterator[Any]:
        return self.events()

    @property
    def cpus(self) -> list[int]:
        return [r.cpu for r in self._rings]

    def __repr__(self) -> str:
        return f"PerfBuffer({self.name!r}, cpus={len(self._rings)}, read={self.records_read}, lost={self.lost})"



