"""BPF ring buffer reader (BPF_MAP_TYPE_RINGBUF) and user ring buffer writer (BPF_MAP_TYPE_USER_RINGBUF).

Layout (kernel/bpf/ringbuf.c): page 0 holds the consumer position (mapped read-write), page 1 the producer position,
then the data area, which the kernel maps twice back to back so a record that wraps is still contiguous; user space
maps page 1 + 2 * max_entries read-only.  Every record starts with an 8-byte header: u32 length with BUSY (bit 31:
still being written) and DISCARD (bit 30) flags, u32 page offset; records are 8-byte aligned.

Lost records: a producer that cannot reserve space gets NULL from bpf_ringbuf_reserve() and nothing reaches user
space, so the reader cannot count them.  Programs count their own failures (conventionally a global `__u64 dropped`);
`dropped_count(collection)` reads it.
"""

from __future__ import annotations

import gc
import mmap
import select
import struct
from _operator import itemgetter, length_hint  # not `operator`, which is a Python module over this one
from itertools import chain

from pybpf._sys import types as T
from pybpf.errors import BPFError

# Opening a ring and reading raw records imports no enum, functools, re, typing or pybpf.btf: kernel constants
# are the plain ints of pybpf._sys.types, and pybpf.btf is imported only to resolve and decode a record type.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections import deque
    from collections.abc import AsyncIterator, Callable, Generator, Iterable, Iterator
    from types import TracebackType
    from typing import Any

    from pybpf.btf import Type
else:
    from _collections import deque  # the C type itself: the `collections` package costs ~2 ms of start-up

__all__ = ["EventIterator", "RingBuffer", "RingBufferGroup", "UserRingBuffer", "dropped_count", "poll_many"]

_U32 = struct.Struct("<I")
_BUSY = T.BPF_RINGBUF_BUSY_BIT
_DISCARD = T.BPF_RINGBUF_DISCARD_BIT
_HDR = T.BPF_RINGBUF_HDR_SZ
_LEN_MASK = ~(_BUSY | _DISCARD) & 0xFFFFFFFF
_PAGE = mmap.PAGESIZE
_WINDOW_MIN = 64  # headers compared at once by SameWords, adapting between these bounds
_WINDOW_MAX = 16384
_BATCH = 4096  # records decoded per step by the iterator, callback and asyncio forms (bounds memory and latency)
_first = itemgetter(0)
_exhaust: Callable[[Iterable[Any]], None] = deque(maxlen=0).extend


def _stride(size: int) -> int:
    """How far apart records of `size` bytes are in a BPF ring buffer: size + header, rounded up to 8."""
    return (size + _HDR + 7) & ~7


def _map_type(map_: Any) -> int | None:
    """The map's type as an int, None when it does not say.  A Map keeps it as the int `map_type`: its `type`
    property builds the MapType enum, which costs a tool's start-up more than opening the ring does."""
    mtype = getattr(map_, "map_type", None)
    return getattr(map_, "type", None) if mtype is None else mtype


def _map_type_name(mtype: int) -> str:
    return str(T.MapType(mtype).name)  # builds the enum: only for error messages


class _no_gc:  # lower case: used like the function it replaces, `with _no_gc():`
    """Pauses the cyclic garbage collector while a list of records is built: every record is a new tracked tuple
    that survives, so the collector would otherwise rescan the whole heap several times (it more than doubles the
    cost of reading a full ring).  Records hold no cycles, so nothing is missed.  (A class rather than a
    contextlib.contextmanager: contextlib imports functools and collections.)"""

    __slots__ = ("_paused",)

    def __enter__(self) -> None:
        self._paused = gc.isenabled()
        if self._paused:
            gc.disable()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._paused:
            gc.enable()


class SameWords:
    """Counts how many words in a row, `step` apart, equal a given one: one strided copy and one bytes comparison
    per window, then a bisection only when some word differs.  Event readers use it on record headers to find runs
    of identical records without Python work per record.  The window grows while whole windows match and shrinks
    to about the runs actually found."""

    __slots__ = ("_fmt", "_patterns", "_width", "window")

    def __init__(self, fmt: str) -> None:
        self._fmt = struct.Struct("<" + fmt)
        self._width = self._fmt.size
        self._patterns: dict[int, bytes] = {}
        self.window = _WINDOW_MIN

    def __call__(self, words: memoryview, first: int, step: int, n: int, word: int) -> int:
        """words[first], words[first + step], ... (n of them; the first equals `word`): the length of the run."""
        window = self.window
        m = n if n < window else window
        got = words[first:first + m * step:step].tobytes()
        pattern = self._patterns.get(word)
        if pattern is None:
            pattern = self._patterns[word] = self._fmt.pack(word) * _WINDOW_MAX
        if pattern.startswith(got):
            if m == window and window < _WINDOW_MAX:
                self.window = window * 2
            return m
        view = memoryview(got)
        width = self._width
        lo, hi = 1, m - 1
        while lo < hi:
            mid = (lo + hi + 1) >> 1
            if pattern.startswith(view[:mid * width]):
                lo = mid
            else:
                hi = mid - 1
        self.window = max(_WINDOW_MIN, 2 * lo)
        return lo


class EventIterator(chain):  # type: ignore[type-arg]
    """The iterator `RingBuffer.events()` returns: records one after another, walked in C (itertools.chain over
    runs of records), so no Python code runs per record.  `close()` (or dropping it) ends the iteration and
    consumes exactly the records it has yielded; until then the rest of the current run stays in the ring."""

    __slots__ = ("_runs",)
    _runs: Any

    @classmethod
    def over(cls, runs: Iterator[Iterator[Any]]) -> EventIterator:
        it: EventIterator = cls.from_iterable(runs)  # type: ignore[assignment]
        it._runs = runs
        return it

    def close(self) -> None:
        self._runs.close()

    def __enter__(self) -> EventIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _resolve_type(map_: Any, type_: Type | str | None) -> Type | None:
    if type_ is None:  # raw records: no BTF needed
        return None
    from pybpf.btf import Composite, Type

    if isinstance(type_, Type):
        return type_
    spec = getattr(map_, "spec", None)
    btf = getattr(spec, "btf", None)
    if btf is None:
        raise ValueError(f"map {getattr(map_, 'name', '?')!r} carries no BTF to look up type {type_!r}: "
                         "pass a pybpf.btf Type instead")
    try:
        found: Type = btf.find(type_, Composite)
    except KeyError:
        try:
            found = btf.find(type_)
        except KeyError:
            raise KeyError(f"the object's BTF has no type {type_!r}: clang emits only types reachable from globals "
                           f"or functions; add e.g. `struct {type_} *{type_}_btf_anchor;` to the program") from None
    return found


class RecordDecoder:
    """How the records of a ring decode, shared by RingBuffer and PerfBuffer: `run_reader()` builds the reader of
    a run of same-sized records, `one()` decodes a single record.  `decode` and `type` as RingBuffer."""

    __slots__ = ("decode_at", "decode_bytes", "layout", "skip", "type_size")

    def __init__(self, type_: Type | None, decode: bool | Callable[[bytes], Any], skip: int) -> None:
        self.skip = skip  # header bytes before each record's data
        self.decode_at: Callable[[Any, int], Any] | None = None
        self.decode_bytes: Callable[[bytes], Any] | None = None
        self.layout: Any = None  # codec.RecordLayout of the type, when it decodes in bulk
        self.type_size = 0
        if callable(decode):
            self.decode_bytes = decode
        elif decode and type_ is not None:
            from pybpf.btf import sizeof
            from pybpf.btf.codec import decoder_at, decoder_for, record_layout

            self.decode_at = decoder_at(type_)
            self.decode_bytes = decoder_for(type_)
            self.type_size = sizeof(type_)
            self.layout = record_layout(type_)

    def one(self, buffer: Any, off: int, size: int) -> Any:
        """The record of `size` bytes at buffer[off:]; shorter records than the type are zero-padded."""
        if self.decode_at is not None and size >= self.type_size:
            return self.decode_at(buffer, off)
        raw = bytes(buffer[off:off + size])
        if self.decode_bytes is not None:
            if self.type_size and size < self.type_size:
                raw = raw.ljust(self.type_size, b"\0")
            return self.decode_bytes(raw)
        return raw

    def run_reader(self, stride: int, size: int) -> Callable[[Any, int, int], tuple[Iterator[Any], Iterator[Any]]]:
        """reader(buffer, offset, n) -> (records, progress) for n records of `size` bytes whose headers start
        `stride` bytes apart at buffer[offset:].  `records` decodes lazily, straight from the buffer (so the space
        must stay until it is exhausted); length_hint(progress) is how many records it has not handed out yet."""
        skip = self.skip
        layout = self.layout
        reader: Callable[[Any, int, int], tuple[Iterator[Any], Iterator[Any]]]
        if layout is not None and size >= self.type_size:
            run: Callable[[Any, int], tuple[Iterator[Any], Iterator[Any]]] = layout.run_reader(skip, stride)

            def reader(buffer: Any, off: int, n: int) -> tuple[Iterator[Any], Iterator[Any]]:
                return run(buffer[off:off + n * stride], n)
        elif self.decode_at is not None:  # a type that does not decode in bulk, or records shorter than it
            one = self.one

            def reader(buffer: Any, off: int, n: int) -> tuple[Iterator[Any], Iterator[Any]]:
                it = iter([one(buffer, o, size) for o in range(off + skip, off + skip + n * stride, stride)])
                return it, it
        else:
            raw_iter = struct.Struct(f"<{skip}x{size}s{stride - skip - size}x").iter_unpack
            decode = self.decode_bytes

            def reader(buffer: Any, off: int, n: int) -> tuple[Iterator[Any], Iterator[Any]]:
                values = raw_iter(buffer[off:off + n * stride])
                records = map(_first, values)
                return (records if decode is None else map(decode, records)), values
        return reader


class RingBuffer:
    """Reads one BPF ring buffer map.

    `decode`: True decodes records through BTF `type` (a Type, or a type name looked up in the object's BTF) when
    given, else yields bytes; False always yields bytes; a callable is used as the decoder (gets bytes).
    Forms: `for ev in rb` (blocks; `rb.events(timeout=)`), `rb.poll(timeout, callback)`, `rb.consume(callback)`,
    `async for ev in rb.aiter()`, `rb.read()` (a list, no waiting), `rb.read_batch()` -> numpy structured array.

    All forms share one reader: a run of ready records of one size is found by comparing their length words in
    bulk, decoded with one `struct.iter_unpack` over the run (no Python code per record for structs), and the
    consumer position moves once per run.  Discarded records, records of another size and records that are still
    being written end a run and take the per-record path.
    """

    def __init__(self, map: Any, *, type: Type | str | None = None,  # noqa: A002 - mirrors the C naming
                 decode: bool | Callable[[bytes], Any] = True,
                 lost_counter: Callable[[], int | None] | None = None) -> None:
        mtype = _map_type(map)
        if mtype is not None and mtype != T.BPF_MAP_TYPE_RINGBUF:
            raise BPFError(f"map {getattr(map, 'name', '?')!r} is {_map_type_name(mtype)}, not a RINGBUF map")
        self.map = map
        self.name: str = getattr(map, "name", "")
        self.max_entries: int = int(map.max_entries)
        self.mask = self.max_entries - 1
        self.type = _resolve_type(map, type)
        self.records_read = 0
        self.records_discarded = 0
        self._lost_counter = lost_counter
        fd = int(map.fd)
        self._consumer = mmap.mmap(fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(fd, _PAGE + 2 * self.max_entries, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=_PAGE)
        self._cons_q = memoryview(self._consumer).cast("Q")
        self._prod_q = memoryview(self._producer)[:8].cast("Q")
        self._mv = memoryview(self._producer)
        self._words = self._mv.cast("I")  # record headers are 8-byte aligned: their length word is words[off // 4]
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)
        self._decoder = RecordDecoder(self.type, decode, _HDR)
        self._readers: dict[int, Callable[[Any, int, int], tuple[Iterator[Any], Iterator[Any]]]] = {}
        self._same = SameWords("I")
        self._dtype: Any = None
        self._closed = False

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._readers.clear()
        for view in (self._cons_q, self._prod_q, self._words, self._mv):
            view.release()
        for mm in (self._consumer, self._producer):
            try:
                mm.close()
            except BufferError:  # a caller still holds a view into the ring: the mapping goes when that does
                pass
        self._epoll.close()

    def __enter__(self) -> RingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def fileno(self) -> int:
        """The epoll fd: readable when the ring has data (for select/asyncio)."""
        return self._epoll.fileno()

    # ---- positions ----------------------------------------------------------------------------------------------
    @property
    def available(self) -> int:
        """Bytes between the consumer and producer positions."""
        return int(self._prod_q[0] - self._cons_q[0])

    # ---- the one header scanner ---------------------------------------------------------------------------------
    def _next_run(self, limit: int = 0) -> tuple[int, int, int] | None:
        """The next run of ready records of one size: (header offset in the producer mapping, count, size), at
        most `limit` records when > 0; None when the ring is empty or its next record is still being written.

        The records of a run are `_stride(size)` apart and contiguous, even across the ring's end (the data area
        is mapped twice).  Discarded records met first are consumed here; the run itself stays in the ring until
        the caller has copied it out and calls _commit."""
        words = self._words
        cons_q = self._cons_q
        mask = self.mask
        cons = cons_q[0]
        prod = self._prod_q[0]
        while cons < prod:
            off = _PAGE + (cons & mask)
            hdr = words[off >> 2]
            if hdr & _BUSY:
                return None
            size = hdr & _LEN_MASK
            stride = _stride(size)
            if hdr & _DISCARD:
                self.records_discarded += 1
                cons += stride
                cons_q[0] = cons
                continue
            n = (prod - cons) // stride
            if limit and n > limit:
                n = limit
            return off, (self._same(words, off >> 2, stride >> 2, n, hdr) if n > 1 else 1), size
        return None

    def _commit(self, n: int, size: int) -> None:
        """Consumes n records of `size` bytes at the consumer position (the kernel may reuse their space now)."""
        self._cons_q[0] += n * _stride(size)
        self.records_read += n

    # ---- decoding runs --------------------------------------------------------------------------------------------
    def _records(self, off: int, n: int, size: int) -> tuple[Iterator[Any], Iterator[Any]]:
        """(records, progress) for a run: `records` decodes lazily (straight from the ring: commit only after it is
        exhausted); length_hint(progress) is how many records it has not handed out yet."""
        reader = self._readers.get(size)
        if reader is None:
            reader = self._readers[size] = self._decoder.run_reader(_stride(size), size)
        return reader(self._mv, off, n)

    def _runs(self) -> Generator[Iterator[Any]]:
        """The decoded records of each ready run in turn (ends when none is ready); after each, commits what was
        handed out of it: all of it once exhausted, or as far as it got when the consumer stopped (close())."""
        while not self._closed and (run := self._next_run(_BATCH)) is not None:
            off, n, size = run
            records, progress = self._records(off, n, size)
            try:
                yield records  # resumed once the consumer is done with the run
            finally:
                if not self._closed:
                    self._commit(n - length_hint(progress), size)

    # ---- iterator form ------------------------------------------------------------------------------------------
    def read(self, max_records: int = 0) -> list[Any]:
        """All ready records (at most max_records when > 0), without waiting."""
        out: list[Any] = []
        with _no_gc():
            while (run := self._next_run(max_records - len(out) if max_records else 0)) is not None:
                off, n, size = run
                out.extend(self._records(off, n, size)[0])
                self._commit(n, size)
                if max_records and len(out) >= max_records:
                    break
        return out

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Yields records as they arrive; stops after `timeout` seconds with nothing new (None: never).

        Records decode as they are yielded, straight from the ring, and a run's space is freed once it has been
        iterated; stopping early (break, or dropping the iterator) consumes exactly the records already yielded."""
        return EventIterator.over(self._event_runs(timeout))

    def _event_runs(self, timeout: float | None) -> Iterator[Iterator[Any]]:
        while not self._closed:
            yield from self._runs()  # close() reaches _runs, which commits what was yielded
            if not self._closed and not self.wait(timeout) and not self.available:
                return

    def __iter__(self) -> Iterator[Any]:
        return self.events()

    # ---- callback form ------------------------------------------------------------------------------------------
    def consume(self, callback: Callable[[Any], Any] | None = None) -> int:
        """Hands every ready record to callback without waiting; returns how many.  A record whose callback
        raises counts as consumed (the exception propagates; the records after it stay in the ring)."""
        if callback is None:
            total = 0
            while (run := self._next_run(_BATCH)) is not None:
                self._commit(run[1], run[2])
                total += run[1]
            return total
        start = self.records_read
        runs = self._runs()
        try:
            for records in runs:
                _exhaust(map(callback, records))  # the loop runs in C
        finally:
            runs.close()  # commits the records of an interrupted run that were handed out
        return self.records_read - start

    def wait(self, timeout: float | None = None) -> bool:
        """Waits until the kernel signals data (or timeout seconds); True when woken by data."""
        return bool(self._epoll.poll(-1 if timeout is None else timeout))

    def poll(self, timeout: float | None = None, callback: Callable[[Any], Any] | None = None) -> int:
        """Consumes ready records; if none, waits up to timeout seconds (None: forever) and consumes again."""
        n = self.consume(callback)
        if n:
            return n
        self.wait(timeout)
        return self.consume(callback)

    # ---- asyncio form -------------------------------------------------------------------------------------------
    async def aiter(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """`async for ev in rb.aiter()`: wakes through the event loop (add_reader on the epoll fd)."""
        import asyncio  # here, not at the top: its import costs more than a whole tool's start-up

        loop = asyncio.get_running_loop()
        while not self._closed:
            runs = self._runs()
            try:
                for records in runs:
                    for ev in records:
                        yield ev
            finally:
                runs.close()
            if self._closed:
                return
            fut: asyncio.Future[None] = loop.create_future()
            fd = self.fileno()

            def wake(fut: asyncio.Future[None] = fut) -> None:
                if not fut.done():
                    fut.set_result(None)

            loop.add_reader(fd, wake)
            try:
                if self.available:
                    continue
                await asyncio.wait_for(fut, timeout)
            except TimeoutError:
                return
            finally:
                loop.remove_reader(fd)
            # Clear the edge so the next add_reader does not fire at once on a stale wake-up.
            self._epoll.poll(0)

    # ---- batch form ---------------------------------------------------------------------------------------------
    def dtype(self) -> Any:
        if self._dtype is None:
            if self.type is None:
                raise ValueError("read_batch needs the record type: RingBuffer(map, type='event')")
            from pybpf.btf.codec import numpy_dtype

            self._dtype = numpy_dtype(self.type)
        return self._dtype

    def read_batch(self, max_records: int = 0) -> Any:
        """The records ready when called (at most max_records when > 0) as one numpy structured array, copied out
        of the ring.

        Each run is one strided numpy copy (no Python work per record); records shorter than the type are
        zero-padded one at a time."""
        import numpy as np

        dt = self.dtype()
        itemsize = dt.itemsize
        void = np.dtype(f"V{itemsize}")  # copying as opaque items is a plain memcpy per record
        mv = self._mv
        # One output array for what is pending now (no per-run chunks to concatenate: fresh memory costs a page
        # fault per 4 KiB).  Records arriving meanwhile wait for the next call, so one call never chases a fast
        # producer; only records shorter than the type can outnumber the estimate and grow the array.
        budget = self.available
        limit = max(1, budget // _stride(itemsize))
        if max_records:
            limit = min(limit, max_records)
        out = np.empty(limit, void)
        used = 0
        while budget > 0 and (run := self._next_run(max_records - used if max_records else 0)) is not None:
            off, n, size = run
            stride = _stride(size)
            n = min(n, -(-budget // stride))
            budget -= n * stride
            if used + n > len(out):
                out = np.concatenate([out[:used], np.empty(max(n, len(out)), void)])
            if size >= itemsize:
                out[used:used + n] = np.ndarray((n,), void, buffer=mv, offset=off + _HDR, strides=(stride,))
            else:
                raw = b"".join(bytes(mv[o:o + size]).ljust(itemsize, b"\0")
                               for o in range(off + _HDR, off + _HDR + n * stride, stride))
                out[used:used + n] = np.frombuffer(raw, void)
            self._commit(n, size)
            used += n
            if max_records and used >= max_records:
                break
        if used < len(out):
            out = out[:used].copy() if used < len(out) // 2 else out[:used]
        return out.view(dt)

    def __repr__(self) -> str:
        return (f"RingBuffer({self.name!r}, size={self.max_entries}, read={self.records_read}, "
                f"discarded={self.records_discarded}, lost={self.lost})")

    @property
    def lost(self) -> int | None:
        """Records the program could not reserve because the ring was full, or None when unknown.

        The kernel does not count them for ring buffers (bpf_ringbuf_reserve just fails), so this reads the
        program's own counter: `lost_counter`, which Collection.ringbuf() points at a global `dropped`
        when the object has one."""
        return self._lost_counter() if self._lost_counter is not None else None


class RingBufferGroup:
    """Several ring buffers behind one epoll: `poll(timeout, callback)` gets (ring, record) pairs' records."""

    def __init__(self, rings: Iterable[RingBuffer]) -> None:
        self.rings = list(rings)
        self._epoll = select.epoll()
        for rb in self.rings:
            self._epoll.register(rb.fileno(), select.EPOLLIN)

    def fileno(self) -> int:
        return self._epoll.fileno()

    def consume(self, callback: Callable[[RingBuffer, Any], Any]) -> int:
        n = 0
        for rb in self.rings:
            n += rb.consume(lambda ev, rb=rb: callback(rb, ev))  # type: ignore[misc]
        return n

    def poll(self, timeout: float | None = None, callback: Callable[[RingBuffer, Any], Any] | None = None) -> int:
        cb: Callable[[RingBuffer, Any], Any] = callback or (lambda _rb, _ev: None)
        n = self.consume(cb)
        if n:
            return n
        self._epoll.poll(-1 if timeout is None else timeout)
        for rb in self.rings:
            rb._epoll.poll(0)  # clear the inner readiness
        return self.consume(cb)

    def events(self, timeout: float | None = None) -> Iterator[tuple[RingBuffer, Any]]:
        while True:
            out: list[tuple[RingBuffer, Any]] = []
            if not self.poll(timeout, lambda rb, ev, out=out: out.append((rb, ev))):  # type: ignore[misc]
                return
            yield from out

    def close(self) -> None:
        """Closes the group's epoll (the rings stay open: they belong to the caller)."""
        self._epoll.close()

    def __enter__(self) -> RingBufferGroup:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def poll_many(rings: Iterable[RingBuffer], timeout: float | None = None,
              callback: Callable[[RingBuffer, Any], Any] | None = None) -> int:
    """One-shot poll over several ring buffers."""
    with RingBufferGroup(rings) as group:
        return group.poll(timeout, callback)


def dropped_count(collection: Any, name: str = "dropped") -> int | None:
    """The program-maintained drop counter (a global variable `name`), or None when the object has none."""
    variables = getattr(collection, "variables", {})
    if name not in variables:
        return None
    return int(variables[name].value)


class UserRingBuffer:
    """Writer for BPF_MAP_TYPE_USER_RINGBUF: user space produces, a program drains with bpf_user_ringbuf_drain().

    Here the roles flip: the consumer page is read-only for us and the producer page + data are writable."""

    def __init__(self, map: Any) -> None:  # noqa: A002
        if _map_type(map) not in (None, T.BPF_MAP_TYPE_USER_RINGBUF):
            raise BPFError(f"map {getattr(map, 'name', '?')!r} is not a USER_RINGBUF map")
        self.map = map
        self.max_entries = int(map.max_entries)
        self.mask = self.max_entries - 1
        fd = int(map.fd)
        self._consumer = mmap.mmap(fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ, offset=0)
        self._producer = mmap.mmap(fd, _PAGE + 2 * self.max_entries, mmap.MAP_SHARED,
                                   mmap.PROT_READ | mmap.PROT_WRITE, offset=_PAGE)
        self._cons_q = memoryview(self._consumer)[:8].cast("Q")
        self._prod_q = memoryview(self._producer)[:8].cast("Q")
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLOUT)
        self.records_written = 0

    def write(self, data: bytes) -> bool:
        """Reserves, copies and submits one record; False when the ring is full."""
        size = len(data)
        total = _stride(size)
        if total > self.max_entries:
            raise ValueError(f"record of {size} bytes cannot fit a {self.max_entries}-byte ring")
        cons = self._cons_q[0]
        prod = self._prod_q[0]
        if prod + total - cons > self.max_entries:
            return False
        off = _PAGE + (prod & self.mask)
        # BUSY while copying, then publish the length and advance the producer position.
        _U32.pack_into(self._producer, off, size | _BUSY)
        _U32.pack_into(self._producer, off + 4, 0)
        self._producer[off + _HDR:off + _HDR + size] = data
        _U32.pack_into(self._producer, off, size)
        self._prod_q[0] = prod + total
        self.records_written += 1
        return True

    def wait_space(self, timeout: float | None = None) -> bool:
        return bool(self._epoll.poll(-1 if timeout is None else timeout))

    def close(self) -> None:
        self._cons_q.release()
        self._prod_q.release()
        self._consumer.close()
        self._producer.close()
        self._epoll.close()

    def __enter__(self) -> UserRingBuffer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
