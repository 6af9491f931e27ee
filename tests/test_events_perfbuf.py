"""Perf buffer progress when a callback raises mid-run, and consume() without a callback (real kernel,
tests/bpf/events_seq.bpf.c)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

pytestmark = pytest.mark.usefixtures("require_root")

CTX = bytes(8)  # raw_tp test_run context (unused by the program)


@pytest.fixture
def coll(events_seq: Callable[..., Any]) -> Any:
    return events_seq(count=100)


def _seq(ev: Any) -> int:
    return ev if isinstance(ev, int) else int.from_bytes(ev[:8], "little") if isinstance(ev, bytes) else ev.seq


@pytest.mark.parametrize("decode", ["event", "raw", "custom"])
def test_perfbuf_callback_raising_consumes_what_was_delivered(coll: Any, decode: str) -> None:
    options: dict[str, dict[str, Any]] = {"event": {"type": "event"}, "raw": {"decode": False},
                              "custom": {"decode": lambda b: int.from_bytes(b[:8], "little")}}
    kwargs = options[decode]
    with coll.perfbuf("pb", **kwargs) as pb:
        coll.programs["emit_perf"].test_run(ctx=CTX)  # 100 samples on this CPU's ring: one run
        seen: list[int] = []

        def fail_at_20(ev: Any) -> None:
            seen.append(_seq(ev))
            if seen[-1] == 20:
                raise RuntimeError("stop")

        with pytest.raises(RuntimeError, match="stop"):
            pb.consume(fail_at_20)
        assert seen == list(range(21))
        assert pb.records_read == 21
        # The record whose callback raised counts as consumed, like RingBuffer.consume: none is delivered twice.
        assert pb.consume(lambda ev: seen.append(_seq(ev))) == 79
        assert seen == list(range(100))
        assert pb.records_read == 100


def test_perfbuf_consume_without_callback(coll: Any) -> None:
    with coll.perfbuf("pb", type="event") as pb:
        prog = coll.programs["emit_perf"]
        prog.test_run(ctx=CTX)
        assert pb.consume() == 100 and pb.records_read == 100
        assert pb.read() == []
        prog.test_run(ctx=CTX)
        assert [ev.seq for ev in pb.read()] == list(range(100))


def test_perfbuf_consume_without_callback_skips_decoding(coll: Any) -> None:
    calls: list[bytes] = []

    def decode(b: bytes) -> bytes:
        calls.append(b)
        return b

    with coll.perfbuf("pb", decode=decode) as pb:
        coll.programs["emit_perf"].test_run(ctx=CTX)
        assert pb.consume(None) == 100
        assert calls == []


def test_perfbuf_wrapped_records_after_a_raising_callback(coll: Any) -> None:
    """pages=1: runs stop at the ring's end and wrapped samples go one at a time; progress holds on both paths."""
    with coll.perfbuf("pb", type="event", pages=1) as pb:
        prog = coll.programs["emit_perf"]
        for _ in range(4):
            prog.test_run(ctx=CTX)
            seen: list[int] = []

            def fail_at_5(ev: Any, seen: list[int] = seen) -> None:
                seen.append(ev.seq)
                if ev.seq == 5:
                    raise RuntimeError("stop")

            with pytest.raises(RuntimeError, match="stop"):
                pb.consume(fail_at_5)
            rest = pb.consume(lambda ev, seen=seen: seen.append(ev.seq))
            # 0..5 came with the raising callback; the rest follow in order, not lost and not repeated.
            assert rest > 0 and seen == list(range(6 + rest))
