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
from _operator import length_hint
from itertools import chain

from pybpf._sys import perf_event_open
from pybpf._sys import types as T
from pybpf._sys.cpus import possible_cpus
from pybpf.errors import BPFError
from pybpf.events.ringbuf import (
    RecordDecoder,
    SameWords,
    _exhaust,
    _map_type,
    _map_type_name,
    _no_gc,
    _resolve_type,
)

# Kernel constants are the plain ints of pybpf._sys.types (its enums cost start-up); pybpf.btf is imported only
# to resolve and decode a record type.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import Any

    from pybpf.btf import Type

__all__ = ["PerfBuffer"]

_PAGE = mmap.PAGESIZE
_U32 = struct.Struct("<I")
_LOST = struct.Struct("<QQ")
_HEAD_OFF = T.PerfEventMmapPage.data_head.offset  # type: ignore[attr-defined]
_SAMPLE = T.PERF_RECORD_SAMPLE
_LOST_T = T.PERF_RECORD_LOST


class _CpuRing:
    __slots__ = ("cpu", "fd", "mm", "pos", "same", "size", "view", "words")

    def __init__(self, cpu: int, fd: Any, pages: int) -> None:
        self.cpu = cpu
        self.fd = fd
        self.size = pages * _PAGE
        self.mm = mmap.mmap(int(fd), _PAGE + self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        # data_head and data_tail are adjacent u64s in the metadata page.
        self.pos = memoryview(self.mm)[_HEAD_OFF:_HEAD_OFF + 16].cast("Q")
        self.view = memoryview(self.mm)
        self.words = self.view.cast("Q")  # record headers are 8-byte aligned u32 type, u16 misc, u16 size
        self.same = SameWords("Q")

    def close(self) -> None:
        for view in (self.pos, self.words, self.view):
            view.release()
        try:
            self.mm.close()
        except BufferError:  # a caller still holds a view: the mapping goes when that does
            pass
        self.fd.close()


class PerfBuffer:
    """Reads a perf event array map: `for ev in pb`, `pb.poll(timeout, callback)`, `pb.consume()`.

    `pages`: data pages per CPU (power of two).  `wakeup_events`: wake the reader every N samples; or
    `watermark`: wake once that many bytes are pending (overrides wakeup_events).  `type`/`decode` as RingBuffer."""

    def __init__(self, map: Any, *, pages: int = 64, wakeup_events: int = 1, watermark: int = 0,  # noqa: A002
                 type: Type | str | None = None, decode: bool | Callable[[bytes], Any] = True) -> None:  # noqa: A002
        if pages <= 0 or pages & (pages - 1):
            raise ValueError(f"pages must be a power of two, got {pages}")
        mtype = _map_type(map)
        if mtype is not None and mtype != T.BPF_MAP_TYPE_PERF_EVENT_ARRAY:
            raise BPFError(f"map {getattr(map, 'name', '?')!r} is {_map_type_name(mtype)}, not a PERF_EVENT_ARRAY")
        self.map = map
        self.name: str = getattr(map, "name", "")
        self.type = _resolve_type(map, type)
        self.records_read = 0
        self.lost = 0
        self._decoder = RecordDecoder(self.type, decode, 12)  # 12: perf_event_header and the u32 raw size
        self._readers: dict[tuple[int, int], Callable[[Any, int, int], tuple[Iterator[Any], Iterator[Any]]]] = {}
        self._epoll = select.epoll()
        self._rings: list[_CpuRing] = []
        ncpu = min(possible_cpus(), int(map.max_entries))
        try:
            for cpu in range(ncpu):
                attr = T.PerfEventAttr()
                attr.type = T.PERF_TYPE_SOFTWARE
                attr.config = T.PERF_COUNT_SW_BPF_OUTPUT
                attr.sample_type = T.PERF_SAMPLE_RAW
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

    def _drain_ring(self, ring: _CpuRing, emit: Callable[[Iterable[Any]], Any] | None) -> int:
        """Hands the ready samples of one CPU's ring to emit (an iterable per run, consumed at once; None: drops
        them undecoded); counts lost samples.  Runs of samples with identical headers that do not cross the ring's
        end decode with one struct.iter_unpack; the rest (other records, samples that wrap) go one at a time.  When
        emit raises, the samples it was handed count as consumed."""
        pos = ring.pos
        head = pos[0]
        tail = pos[1]
        if head == tail:
            return 0
        mm = ring.mm
        size = ring.size
        mask = size - 1
        words = ring.words
        n = 0
        try:
            while tail < head:
                off = tail & mask
                base = _PAGE + off  # headers are 8-byte aligned, so they never wrap
                word = words[base >> 3]
                rtype = word & 0xFFFFFFFF
                rsize = word >> 48
                if rsize < 8:  # not a record: stop rather than spin
                    break
                if rtype == _SAMPLE and off + rsize <= size:
                    raw_size = _U32.unpack_from(mm, base + 8)[0]
                    if 12 + raw_size <= rsize:
                        count = min((head - tail) // rsize, (size - off) // rsize)
                        if count > 1:
                            count = ring.same(words, base >> 3, rsize >> 3, count, word)
                        if emit is None:
                            tail += count * rsize
                            n += count
                            continue
                        reader = self._readers.get((rsize, raw_size))
                        if reader is None:
                            reader = self._readers[(rsize, raw_size)] = self._decoder.run_reader(rsize, raw_size)
                        records, progress = reader(ring.view, base, count)
                        try:
                            emit(records)
                        finally:
                            done = count - length_hint(progress)
                            tail += done * rsize
                            n += done
                        continue
                rec = mm[base:base + rsize] if off + rsize <= size else self._copy(mm, off, rsize, size)
                tail += rsize
                if rtype == _SAMPLE:
                    n += 1
                    if emit is not None:
                        raw_size = min(_U32.unpack_from(rec, 8)[0], rsize - 12)
                        emit((self._decoder.one(rec, 12, raw_size),))
                elif rtype == _LOST_T:
                    self.lost += _LOST.unpack_from(rec, 8)[1]
        finally:
            pos[1] = tail
            self.records_read += n
        return n

    @staticmethod
    def _copy(mm: mmap.mmap, off: int, length: int, size: int) -> bytes:
        first = min(length, size - off)
        return mm[_PAGE + off:_PAGE + off + first] + mm[_PAGE:_PAGE + length - first]

    def consume(self, callback: Callable[[Any], Any] | None = None) -> int:
        """Processes the ready records of every CPU without waiting."""
        emit: Callable[[Iterable[Any]], Any] | None = None if callback is None else (
            lambda records: _exhaust(map(callback, records)))
        return sum(self._drain_ring(r, emit) for r in self._rings)

    def poll(self, timeout: float | None = None, callback: Callable[[Any], Any] | None = None) -> int:
        n = self.consume(callback)
        if n:
            return n
        self._epoll.poll(-1 if timeout is None else timeout)
        return self.consume(callback)

    def read(self) -> list[Any]:
        """The ready samples of every CPU, without waiting."""
        out: list[Any] = []
        emit = out.extend
        with _no_gc():
            for r in self._rings:
                self._drain_ring(r, emit)
        return out

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Yields samples as they arrive; stops after `timeout` seconds with nothing new (None: never)."""
        return chain.from_iterable(self._batches(timeout))  # walks each batch in C

    def _batches(self, timeout: float | None) -> Iterator[list[Any]]:
        while not self._closed:
            batch = self.read()
            if not batch:
                self._epoll.poll(-1 if timeout is None else timeout)
                batch = self.read()
                if not batch:
                    return
            yield batch

    def __iter__(self) -> Iterator[Any]:
        return self.events()

    @property
    def cpus(self) -> list[int]:
        return [r.cpu for r in self._rings]

    def __repr__(self) -> str:
        return f"PerfBuffer({self.name!r}, cpus={len(self._rings)}, read={self.records_read}, lost={self.lost})"



