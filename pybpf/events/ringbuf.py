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

import asyncio
import mmap
import select
import struct
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from typing import Any

from pybpf._sys.types import BPF_RINGBUF_BUSY_BIT, BPF_RINGBUF_DISCARD_BIT, BPF_RINGBUF_HDR_SZ, MapType
from pybpf.btf import Type
from pybpf.errors import BPFError

__all__ = ["RingBuffer", "RingBufferGroup", "UserRingBuffer", "dropped_count", "poll_many"]

_U32 = struct.Struct("<I")
_LEN_MASK = ~(BPF_RINGBUF_BUSY_BIT | BPF_RINGBUF_DISCARD_BIT) & 0xFFFFFFFF
_PAGE = mmap.PAGESIZE


def _resolve_type(map_: Any, type_: Type | str | None) -> Type | None:
    if type_ is None or isinstance(type_, Type):
        return type_
    spec = getattr(map_, "spec", None)
    btf = getattr(spec, "btf", None)
    if btf is None:
        raise ValueError(f"map {getattr(map_, 'name', '?')!r} carries no BTF to look up type {type_!r}: "
                         "pass a pybpf.btf Type instead")
    from pybpf.btf import Composite

    try:
        found: Type = btf.find(type_, Composite)
    except KeyError:
        try:
            found = btf.find(type_)
        except KeyError:
            raise KeyError(f"the object's BTF has no type {type_!r}: clang emits only types reachable from globals "
                           f"or functions; add e.g. `struct {type_} *{type_}_btf_anchor;` to the program") from None
    return found


class RingBuffer:
    """Reads one BPF ring buffer map.

    `decode`: True decodes records through BTF `type` (a Type, or a type name looked up in the object's BTF) when
    given, else yields bytes; False always yields bytes; a callable is used as the decoder (gets bytes).
    Forms: `for ev in rb` (blocks; `rb.events(timeout=)`), `rb.poll(timeout, callback)`, `rb.consume(callback)`,
    `async for ev in rb.aiter()`, `rb.read_batch()` -> numpy structured array.
    """

    def __init__(self, map: Any, *, type: Type | str | None = None,  # noqa: A002 - mirrors the C naming
                 decode: bool | Callable[[bytes], Any] = True) -> None:
        mtype = getattr(map, "type", None)
        if mtype is not None and mtype != MapType.RINGBUF:
            raise BPFError(f"map {getattr(map, 'name', '?')!r} is {MapType(mtype).name}, not a RINGBUF map")
        self.map = map
        self.name: str = getattr(map, "name", "")
        self.max_entries: int = int(map.max_entries)
        self.mask = self.max_entries - 1
        self.type = _resolve_type(map, type)
        self.records_read = 0
        self.records_discarded = 0
        fd = int(map.fd)
        self._consumer = mmap.mmap(fd, _PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        self._producer = mmap.mmap(fd, _PAGE + 2 * self.max_entries, mmap.MAP_SHARED, mmap.PROT_READ,
                                   offset=_PAGE)
        self._cons_q = memoryview(self._consumer).cast("Q")
        self._prod_q = memoryview(self._producer)[:8].cast("Q")
        self._epoll = select.epoll()
        self._epoll.register(fd, select.EPOLLIN)
        self._decode_at: Callable[[Any, int], Any] | None = None
        self._decode_bytes: Callable[[bytes], Any] | None = None
        self._type_size = 0
        if callable(decode):
            self._decode_bytes = decode
        elif decode and self.type is not None:
            from pybpf.btf import sizeof
            from pybpf.btf.codec import decoder_at, decoder_for

            self._decode_at = decoder_at(self.type)
            self._decode_bytes = decoder_for(self.type)
            self._type_size = sizeof(self.type)
        self._dtype: Any = None
        self._flat: tuple[struct.Struct, Callable[[tuple[Any, ...]], Any]] | bool | None = None
        self._closed = False

    # ---- lifecycle ----------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._cons_q.release()
        self._prod_q.release()
        self._consumer.close()
        self._producer.close()
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

    def _decode_record(self, off: int, size: int) -> Any:
        if self._decode_at is not None and size >= self._type_size:
            return self._decode_at(self._producer, off)
        raw = self._producer[off:off + size]
        if self._decode_bytes is not None:
            if self._type_size and size < self._type_size:
                raw = raw.ljust(self._type_size, b"\0")
            return self._decode_bytes(raw)
        return raw

    def _runs(self, max_records: int = 0) -> Iterator[tuple[int, int, int]]:
        """Yields (offset, count, stride) runs of ready records of the decoded type's size, found with numpy over
        the headers; odd records come as count 1 with their own stride (discarded ones are skipped).  The consumer
        position advances after the caller has taken each run."""
        import numpy as np

        itemsize = self._type_size
        stride = (itemsize + BPF_RINGBUF_HDR_SZ + 7) & ~7
        data = self._producer
        mask = self.mask
        cons = int(self._cons_q[0])
        total = 0
        while not max_records or total < max_records:
            prod = int(self._prod_q[0])
            if cons >= prod:
                break
            off = _PAGE + (cons & mask)
            n = (prod - cons) // stride
            if max_records:
                n = min(n, max_records - total)
            if n > 1:
                hdrs = np.ndarray((n,), "<u4", buffer=data, offset=off, strides=(stride,))
                bad = np.flatnonzero(hdrs != itemsize)
                good = int(bad[0]) if len(bad) else n
                if good:
                    yield off + BPF_RINGBUF_HDR_SZ, good, stride
                    total += good
                    cons += good * stride
                    self._cons_q[0] = cons
                    continue
            hdr = _U32.unpack_from(data, off)[0]
            if hdr & BPF_RINGBUF_BUSY_BIT:
                break
            size = hdr & _LEN_MASK
            rec_stride = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
            if hdr & BPF_RINGBUF_DISCARD_BIT:
                self.records_discarded += 1
            else:
                yield off + BPF_RINGBUF_HDR_SZ, 1, -size  # negative: an odd-sized record of that many bytes
                total += 1
            cons += rec_stride
            self._cons_q[0] = cons

    def _read_fast(self, out: list[Any], max_records: int) -> int:
        """Decodes runs of fixed-size records with one struct.iter_unpack (flat types) or one comprehension."""
        from pybpf.btf.codec import flat_layout

        if self._flat is None:
            layout = flat_layout(self.type) if self.type is not None else None
            stride = (self._type_size + BPF_RINGBUF_HDR_SZ + 7) & ~7
            if layout is not None:
                fmt, from_values = layout
                pad = stride - struct.calcsize(fmt)  # the next record's header ends each stride
                rec = struct.Struct(fmt + (f"{pad}x" if pad else ""))
                self._flat = (rec, from_values)
            else:
                self._flat = False
        data = self._producer
        dec_at = self._decode_at
        assert dec_at is not None
        n = 0
        for off, count, stride in self._runs(max_records):
            if stride < 0:
                out.append(self._decode_record(off, -stride))
            elif isinstance(self._flat, tuple):
                rec, from_values = self._flat
                # Each stride is record + padding + the next header; the last one reads past the run into the
                # doubly-mapped area, which is always mapped (8 bytes of header at most).
                chunk = data[off:off + count * stride]
                if len(chunk) == count * stride:
                    out.extend(map(from_values, rec.iter_unpack(chunk)))
                else:
                    out.extend([from_values(rec.unpack_from(data, o))
                                for o in range(off, off + count * stride, stride)])
            else:
                out.extend([dec_at(data, o) for o in range(off, off + count * stride, stride)])
            n += count
        self.records_read += n
        return n

    def _drain(self, sink: Callable[[Any], Any], limit: int = 0) -> int:
        """Hands every ready record to sink; advances the consumer position once per batch. Returns count."""
        cons_q = self._cons_q
        prod_q = self._prod_q
        data = self._producer
        mask = self.mask
        unpack = _U32.unpack_from
        decode = self._decode_record
        n = 0
        discarded = 0
        cons = cons_q[0]
        busy = False
        while not busy and not (limit and n >= limit):
            prod = prod_q[0]
            if cons >= prod:
                break
            while cons < prod:
                off = _PAGE + (cons & mask)
                hdr = unpack(data, off)[0]
                if hdr & BPF_RINGBUF_BUSY_BIT:
                    busy = True  # the producer is still writing this one: stop here
                    break
                size = hdr & _LEN_MASK
                cons += (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
                if hdr & BPF_RINGBUF_DISCARD_BIT:
                    discarded += 1
                    continue
                sink(decode(off + BPF_RINGBUF_HDR_SZ, size))
                n += 1
                if limit and n >= limit:
                    break
            cons_q[0] = cons
        self.records_read += n
        self.records_discarded += discarded
        return n

    # ---- callback form ------------------------------------------------------------------------------------------
    def consume(self, callback: Callable[[Any], Any] | None = None) -> int:
        """Processes every ready record without waiting; returns how many."""
        if self._decode_at is not None and self._type_size:
            batch = self.read()
            if callback is not None:
                for ev in batch:
                    callback(ev)
            return len(batch)
        if callback is None:
            return self._drain(lambda _ev: None)
        return self._drain(callback)

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

    # ---- iterator form ------------------------------------------------------------------------------------------
    def read(self, max_records: int = 0) -> list[Any]:
        """All ready records (at most max_records when > 0), without waiting."""
        out: list[Any] = []
        if self._decode_at is not None and self._type_size:
            self._read_fast(out, max_records)
        else:
            self._drain(out.append, max_records)
        return out

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """Yields records as they arrive; stops after `timeout` seconds with nothing new (None: never)."""
        while not self._closed:
            batch = self.read()
            if batch:
                yield from batch
                continue
            if not self.wait(timeout) and not self.available:
                return

    def __iter__(self) -> Iterator[Any]:
        return self.events()

    # ---- asyncio form -------------------------------------------------------------------------------------------
    async def aiter(self, timeout: float | None = None) -> AsyncIterator[Any]:
        """`async for ev in rb.aiter()`: wakes through the event loop (add_reader on the epoll fd)."""
        loop = asyncio.get_running_loop()
        while not self._closed:
            batch = self.read()
            if batch:
                for ev in batch:
                    yield ev
                continue
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
        """All ready records as one numpy structured array (copied out of the ring).

        Runs of records of the record type's size are checked and copied with numpy (strided views over the
        doubly-mapped data area), so there is no Python work per record; discarded or odd-sized records are
        handled one at a time between runs."""
        import numpy as np

        dt = self.dtype()
        itemsize = dt.itemsize
        stride = (itemsize + BPF_RINGBUF_HDR_SZ + 7) & ~7
        expect = itemsize  # a ready, kept record of the right size has exactly this header word
        chunks: list[Any] = []
        total = 0
        data = self._producer
        mask = self.mask
        cons = int(self._cons_q[0])
        discarded = 0
        while not max_records or total < max_records:
            prod = int(self._prod_q[0])
            if cons >= prod:
                break
            off = _PAGE + (cons & mask)
            n = (prod - cons) // stride
            if max_records:
                n = min(n, max_records - total)
            if n:
                hdrs = np.ndarray((n,), "<u4", buffer=data, offset=off, strides=(stride,))
                bad = np.flatnonzero(hdrs != expect)
                good = int(bad[0]) if len(bad) else n
                if good:
                    recs = np.ndarray((good,), dt, buffer=data, offset=off + BPF_RINGBUF_HDR_SZ, strides=(stride,))
                    chunks.append(recs.copy())
                    total += good
                    cons += good * stride
                    self._cons_q[0] = cons
                    continue
            hdr = _U32.unpack_from(data, off)[0]
            if hdr & BPF_RINGBUF_BUSY_BIT:
                break
            size = hdr & _LEN_MASK
            if not hdr & BPF_RINGBUF_DISCARD_BIT:
                raw = bytes(data[off + BPF_RINGBUF_HDR_SZ:off + BPF_RINGBUF_HDR_SZ + min(size, itemsize)])
                chunks.append(np.frombuffer(raw.ljust(itemsize, b"\0"), dt).copy())
                total += 1
            else:
                discarded += 1
            cons += (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
            self._cons_q[0] = cons
        self.records_read += total
        self.records_discarded += discarded
        if not chunks:
            return np.zeros(0, dt)
        return chunks[0] if len(chunks) == 1 else np.concatenate(chunks)

    def __repr__(self) -> str:
        return (f"RingBuffer({self.name!r}, size={self.max_entries}, read={self.records_read}, "
                f"discarded={self.records_discarded})")


class RingBufferGroup:
    """Several ring buffers behind one epoll: `poll(timeout, callback)` gets (ring, record) pairs' records."""

    def __init__(self, rings: Iterable[RingBuffer]) -> None:
        self.rings = list(rings)
        self._epoll = select.epoll()
        for i, rb in enumerate(self.rings):
            self._epoll.register(rb.fileno(), select.EPOLLIN)
            del i

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
        if getattr(map, "type", None) not in (None, MapType.USER_RINGBUF):
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
        total = (size + BPF_RINGBUF_HDR_SZ + 7) & ~7
        if total > self.max_entries:
            raise ValueError(f"record of {size} bytes cannot fit a {self.max_entries}-byte ring")
        cons = self._cons_q[0]
        prod = self._prod_q[0]
        if prod + total - cons > self.max_entries:
            return False
        off = _PAGE + (prod & self.mask)
        # BUSY while copying, then publish the length and advance the producer position.
        _U32.pack_into(self._producer, off, size | BPF_RINGBUF_BUSY_BIT)
        _U32.pack_into(self._producer, off + 4, 0)
        self._producer[off + BPF_RINGBUF_HDR_SZ:off + BPF_RINGBUF_HDR_SZ + size] = data
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
