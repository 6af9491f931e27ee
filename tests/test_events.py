"""Ring buffer, perf buffer and trace_pipe readers against the real kernel (tests/bpf/events_seq.bpf.c)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from pybpf.errors import BPFError
from pybpf.events import RingBuffer, RingBufferGroup, TracePipe, dropped_count
from pybpf.events.trace_pipe import parse_line

pytestmark = pytest.mark.usefixtures("require_root")

CTX = bytes(8)  # raw_tp test_run context (unused by the programs)


def expected(i: int) -> dict[str, Any]:
    return {"seq": i, "neg": -i, "color": ["RED", "GREEN", "BLUE"][i % 3], "in_": {"a": 1000 + i, "b": -(i & 0x7F)},
            "arr": [i, 2 * i, 3 * i], "flag": i & 1, "level": i & 7, "sbf": i % 8 - 4, "name": f"ev{i % 10}",
            "ok": i % 2 == 0}


def check(ev: Any, i: int) -> None:
    want = expected(i)
    got = ev.asdict()
    assert got["color"] == ev.color
    assert ev.color.name == want.pop("color") and ev.color == i % 3
    got.pop("color")
    assert got == want


def test_ringbuf_iterator_skips_discarded(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=12, discard_every=4)
    with coll.ringbuf("rb", type="event") as rb:
        assert list(rb.events(timeout=0)) == []
        coll.programs["emit_ringbuf"].test_run(ctx=CTX)
        evs = list(rb.events(timeout=0.05))
        kept = [i for i in range(12) if i % 4 != 3]
        assert [e.seq for e in evs] == kept
        for ev, i in zip(evs, kept, strict=True):
            check(ev, i)
        assert rb.records_read == len(kept) and rb.records_discarded == 3
        assert rb.available == 0


def test_ringbuf_callback_and_raw(events_seq: Callable[[], Any]) -> None:
    coll = events_seq()
    seen: list[Any] = []
    with coll.ringbuf("rb", type="event") as rb:
        coll.programs["emit_ringbuf"].test_run(ctx=CTX)
        assert rb.poll(1.0, seen.append) == 10
        assert [e.seq for e in seen] == list(range(10))
        assert rb.poll(0.01, seen.append) == 0
    with coll.ringbuf("rb") as raw:  # no type: bytes
        coll.programs["emit_ringbuf"].test_run(ctx=CTX)
        recs = raw.read()
        assert len(recs) == 10 and all(isinstance(r, bytes) and len(r) == 56 for r in recs)
        assert int.from_bytes(recs[3][:8], "little") == 3


def test_ringbuf_async(events_seq: Callable[[], Any]) -> None:
    coll = events_seq()

    async def main() -> list[int]:
        with coll.ringbuf("rb", type="event") as rb:
            loop = asyncio.get_running_loop()
            # Emit after the consumer is already waiting, so the wake-up goes through the event loop.
            loop.call_later(0.05, lambda: coll.programs["emit_ringbuf"].test_run(ctx=CTX))
            out: list[int] = []
            async for ev in rb.aiter(timeout=0.5):
                check(ev, len(out))
                out.append(ev.seq)
            return out

    assert asyncio.run(main()) == list(range(10))


def test_ringbuf_batch_numpy(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=20, discard_every=5)
    with coll.ringbuf("rb", type="event") as rb:
        coll.programs["emit_ringbuf"].test_run(ctx=CTX)
        arr = rb.read_batch()
        kept = [i for i in range(20) if i % 5 != 4]
        assert arr["seq"].tolist() == kept
        assert arr["neg"].tolist() == [-i for i in kept]
        assert arr["in_"]["a"].tolist() == [1000 + i for i in kept]
        assert arr["arr"][:, 2].tolist() == [3 * i for i in kept]
        assert arr["name"].tolist() == [f"ev{i % 10}".encode() for i in kept]
        assert rb.records_discarded == 4
        assert len(rb.read_batch()) == 0


def test_ringbuf_overfill_counts_drops(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=200)
    with coll.ringbuf("small_rb", type="event") as rb:
        coll.programs["emit_small"].test_run(ctx=CTX)
        got = rb.read()
        dropped = dropped_count(coll)
        assert dropped is not None and dropped > 0
        assert len(got) + dropped == 200
        assert rb.lost == dropped and rb.records_read == len(got)  # the reader's own accounting
        # 64 bytes per record with its header; the kernel never lets the ring fill completely.
        assert len(got) == 4096 // 64 - 1
        assert [e.seq for e in got] == list(range(len(got)))


def test_ringbuf_group(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=3)
    with coll.ringbuf("rb", type="event") as a, coll.ringbuf("small_rb", type="event") as b, \
            RingBufferGroup([a, b]) as group:
        coll.programs["emit_ringbuf"].test_run(ctx=CTX)
        coll.programs["emit_small"].test_run(ctx=CTX)
        seen = [(rb.name, ev.seq) for rb, ev in group.events(timeout=0.05)]
        assert sorted(seen) == [("rb", i) for i in range(3)] + [("small_rb", i) for i in range(3)]


RING = 256 * 1024  # tests/bpf/events_seq.bpf.c: `rb`
STRIDE = 64  # a 56-byte event plus its 8-byte header


def read_form(rb: Any, form: str) -> list[int]:
    """Reads every ready record with one form; checks each record's values; returns the seqs."""
    if form == "iterator":
        evs = list(rb.events(timeout=0))
    elif form == "read":
        evs = rb.read()
    elif form == "callback":
        evs = []
        assert rb.consume(evs.append) == len(evs)
    elif form == "async":
        async def collect() -> list[Any]:
            return [ev async for ev in rb.aiter(timeout=0.05)]
        evs = asyncio.run(collect())
    else:
        arr = rb.read_batch()
        seqs = arr["seq"].tolist()
        assert arr["in_"]["a"].tolist() == [1000 + i for i in seqs]
        assert arr["arr"][:, 1].tolist() == [2 * i for i in seqs]
        assert arr["name"].tolist() == [f"ev{i % 10}".encode() for i in seqs]
        return [int(i) for i in seqs]
    for ev in evs:
        check(ev, ev.seq)
    return [ev.seq for ev in evs]


def test_ringbuf_runs_across_the_ring_end(events_seq: Callable[..., Any]) -> None:
    # 3000 records (192000 bytes) per program run in a 256 KiB ring: runs 1, 2, 4 and 5 cross the ring's end,
    # which the reader takes as one contiguous run through the second mapping of the data area.
    coll = events_seq(count=3000)
    prog = coll.programs["emit_ringbuf"]
    with coll.ringbuf("rb", type="event") as rb:
        crossed = []
        for form in ["iterator", "iterator", "batch", "callback", "async", "read"]:
            start = rb.records_read * STRIDE
            prog.test_run(ctx=CTX)
            assert read_form(rb, form) == list(range(3000)), form
            crossed.append(start // RING != (start + 3000 * STRIDE - 1) // RING)
            assert rb.available == 0
        assert crossed == [False, True, True, False, True, True]
        assert rb.records_read == 6 * 3000 and rb.records_discarded == 0


@pytest.mark.parametrize("every", [2, 7, 50])
def test_ringbuf_discards_inside_runs(events_seq: Callable[..., Any], every: int) -> None:
    coll = events_seq(count=3000, discard_every=every)
    kept = [i for i in range(3000) if i % every != every - 1]
    with coll.ringbuf("rb", type="event") as rb:
        for rounds, form in enumerate(["iterator", "batch", "callback", "read"], 1):
            coll.programs["emit_ringbuf"].test_run(ctx=CTX)
            assert read_form(rb, form) == kept, form
            assert rb.records_discarded == rounds * (3000 - len(kept))
            assert rb.records_read == rounds * len(kept)


def test_ringbuf_mixed_record_sizes(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=400)
    prog = coll.programs["emit_sizes"]

    def size(i: int) -> int:
        return 16 if i % 5 == 4 else 64 if i % 7 == 6 else 56

    with coll.ringbuf("rb", type="event") as rb:
        for form in ("iterator", "callback"):
            prog.test_run(ctx=CTX)
            evs: list[Any] = []
            if form == "iterator":
                evs = list(rb.events(timeout=0))
            else:
                rb.consume(evs.append)
            assert [e.seq for e in evs] == list(range(400))
            for i, ev in enumerate(evs):
                if size(i) == 16:  # a short record decodes zero-padded
                    assert (ev.neg, ev.color, ev.in_.a, ev.arr, ev.name, ev.ok) == (-i, i % 3, 0, [0, 0, 0], "", False)
                else:
                    check(ev, i)
        prog.test_run(ctx=CTX)
        arr = rb.read_batch()
        assert arr["seq"].tolist() == list(range(400))
        assert arr["in_"]["a"].tolist() == [0 if size(i) == 16 else 1000 + i for i in range(400)]
    with coll.ringbuf("rb", decode=False) as raw:
        prog.test_run(ctx=CTX)
        recs = list(raw.events(timeout=0))
        assert [len(r) for r in recs] == [size(i) for i in range(400)]
        assert [int.from_bytes(r[:8], "little") for r in recs] == list(range(400))
        assert all(int.from_bytes(r[56:], "little") == 0xabcdef00 + i for i, r in enumerate(recs) if len(r) == 64)
    with coll.ringbuf("rb", decode=lambda b: (len(b), b[:8])) as custom:
        prog.test_run(ctx=CTX)
        assert [n for n, _ in custom.read()] == [size(i) for i in range(400)]


def test_ringbuf_early_stop_consumes_what_was_seen(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=100)
    with coll.ringbuf("rb", type="event") as rb:
        coll.programs["emit_ringbuf"].test_run(ctx=CTX)
        for ev in rb.events(timeout=0):
            if ev.seq == 9:
                break
        it = rb.events(timeout=0)
        assert [next(it).seq for _ in range(3)] == [10, 11, 12]
        it.close()
        seen: list[int] = []

        def fail_at_20(ev: Any) -> None:
            seen.append(ev.seq)
            if ev.seq == 20:
                raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"):
            rb.consume(fail_at_20)
        assert seen == list(range(13, 21))
        assert [ev.seq for ev in rb.read(max_records=5)] == list(range(21, 26))
        assert len(rb.read_batch(max_records=10)) == 10
        assert [ev.seq for ev in rb.read()] == list(range(36, 100))
        assert rb.records_read == 100


def test_ringbuf_rejects_other_maps(events_seq: Callable[[], Any]) -> None:
    coll = events_seq()
    with pytest.raises(BPFError, match="not a RINGBUF"):
        RingBuffer(coll.maps["pb"])


def test_perfbuf_iterator_and_callback(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=10)
    with coll.perfbuf("pb", type="event") as pb:
        coll.programs["emit_perf"].test_run(ctx=CTX)
        evs = list(pb.events(timeout=0.05))
        assert [e.seq for e in evs] == list(range(10))
        for ev, i in zip(evs, range(10), strict=True):
            check(ev, i)
        seen: list[Any] = []
        coll.programs["emit_perf"].test_run(ctx=CTX)
        assert pb.poll(1.0, seen.append) == 10 and [e.seq for e in seen] == list(range(10))
        assert pb.records_read == 20 and pb.lost == 0


def test_perfbuf_runs_raw_and_custom(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=2000)
    prog = coll.programs["emit_perf"]
    with coll.perfbuf("pb", type="event", pages=64) as pb:
        prog.test_run(ctx=CTX)
        evs = list(pb.events(timeout=0.05))
        assert [e.seq for e in evs] == list(range(2000))
        for ev in evs:
            check(ev, ev.seq)
        prog.test_run(ctx=CTX)
        seen: list[Any] = []
        assert pb.consume(seen.append) == 2000 and [e.seq for e in seen] == list(range(2000))
    with coll.perfbuf("pb", decode=False) as raw:
        prog.test_run(ctx=CTX)
        recs = raw.read()
        # bpf_perf_event_output pads the sample so that its u32 size and data end on 8 bytes: 56 -> 60.
        assert len(recs) == 2000 and all(isinstance(r, bytes) and len(r) == 60 for r in recs)
        assert [int.from_bytes(r[:8], "little") for r in recs] == list(range(2000))
    with coll.perfbuf("pb", decode=lambda b: int.from_bytes(b[:8], "little")) as custom:
        prog.test_run(ctx=CTX)
        assert custom.read() == list(range(2000))


def test_perfbuf_lost_and_wraparound(events_seq: Callable[..., Any]) -> None:
    coll = events_seq(count=300)
    with coll.perfbuf("pb", type="event", pages=1) as pb:
        prog = coll.programs["emit_perf"]
        total = 0
        for _ in range(5):  # several fills wrap the 4 KiB ring at different offsets
            prog.test_run(ctx=CTX)
            evs = pb.read()
            assert [e.seq for e in evs] == list(range(len(evs)))
            for ev in evs:
                check(ev, ev.seq)
            total += len(evs)
        # The kernel reports a ring's losses with its next successful output.
        assert pb.lost > 0
        assert total + pb.lost <= 5 * 300


def test_trace_pipe(events_seq: Callable[[], Any]) -> None:
    coll = events_seq()
    with TracePipe() as tp:
        coll.programs["emit_printk"].test_run(ctx=CTX)
        found = [ev for ev in tp.events(timeout=1.0) if "pybpf-trace-test" in ev.message]
        assert found and found[0].message.endswith("pybpf-trace-test 4242")
        assert found[0].pid > 0 and found[0].timestamp > 0


def test_trace_line_parsing() -> None:
    ev = parse_line("   python3-1234  [001] d..31  1234.567890: bpf_trace_printk: hello world")
    assert ev is not None
    assert (ev.task, ev.pid, ev.cpu, ev.flags, ev.timestamp, ev.function, ev.message) == (
        "python3", 1234, 1, "d..31", 1234.56789, "bpf_trace_printk", "hello world")
    ev = parse_line("  kworker/0:1-a-99 [000] 5.000001: bpf_trace_printk: x")
    assert ev is not None and ev.task == "kworker/0:1-a" and ev.pid == 99 and ev.flags == ""
