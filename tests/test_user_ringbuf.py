"""BPF_MAP_TYPE_USER_RINGBUF (Linux 6.1): pybpf.events.UserRingBuffer writes records, a syscall program drains
them with bpf_user_ringbuf_drain() (run through BPF_PROG_TEST_RUN) and the test checks what the callback saw."""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pybpf
from pybpf.errors import BPFError, NotSupportedError
from pybpf.events import UserRingBuffer

pytestmark = pytest.mark.usefixtures("require_root")
kernel2 = pytest.mark.kernel2  # 6.1 is the first kernel with user ring buffers

COMMAND = struct.Struct("=IIQ")  # struct command: op, tag, value
OP_ADD, OP_STOP = 1, 2
RING_BYTES = 4096
RECORD_BYTES = (8 + COMMAND.size + 7) // 8 * 8  # header + payload, 8-byte aligned


@pytest.fixture
def ring_obj(bpf_obj: Callable[[str], Path]) -> Iterator[Any]:
    try:
        obj = pybpf.load(bpf_obj("user_ringbuf"))
    except NotSupportedError as exc:
        pytest.skip(f"the kernel has no user ring buffer (BPF_MAP_TYPE_USER_RINGBUF, Linux 6.1): {exc}")
    with obj:
        yield obj


def drain(obj: Any) -> int:
    """Run the draining program once; returns what bpf_user_ringbuf_drain() returned."""
    assert obj.programs["drain"].test_run().retval == 0
    return int(obj.variables["last_drain"].value)


def seen(obj: Any, *names: str) -> dict[str, Any]:
    return {name: obj.variables[name].value for name in names}


@kernel2
def test_written_records_reach_the_program_in_order(ring_obj: Any) -> None:
    values = [7, 1 << 40, 0, 123456789, 2**64 - 1]
    with UserRingBuffer(ring_obj.maps["commands"]) as ring:
        for tag, value in enumerate(values, start=1):
            assert ring.write(COMMAND.pack(OP_ADD, tag, value)) is True
        assert ring.records_written == len(values)
        assert drain(ring_obj) == len(values)
        assert drain(ring_obj) == 0  # drained means gone
    got = seen(ring_obj, "records", "short_records", "sum")
    assert got == {"records": len(values), "short_records": 0, "sum": sum(values) % 2**64}
    assert list(ring_obj.variables["values"].value)[: len(values)] == values
    assert list(ring_obj.variables["tags"].value)[: len(values)] == [1, 2, 3, 4, 5]


@kernel2
def test_callback_can_stop_the_drain_and_short_records_arrive_short(ring_obj: Any) -> None:
    with UserRingBuffer(ring_obj.maps["commands"]) as ring:
        assert ring.write(COMMAND.pack(OP_ADD, 1, 10))
        assert ring.write(COMMAND.pack(OP_STOP, 2, 20))
        assert ring.write(COMMAND.pack(OP_ADD, 3, 30))
        assert ring.write(b"\x01\x02\x03")  # shorter than struct command: bpf_dynptr_read fails
        assert drain(ring_obj) == 2  # the callback returned 1 on the second record
        assert seen(ring_obj, "records", "sum") == {"records": 2, "sum": 30}
        assert drain(ring_obj) == 2  # the rest
    assert seen(ring_obj, "records", "short_records", "sum") == {"records": 4, "short_records": 1, "sum": 60}
    assert list(ring_obj.variables["tags"].value)[:3] == [1, 2, 3]


@kernel2
def test_full_ring_is_reported_and_space_comes_back_after_a_drain(ring_obj: Any) -> None:
    fits = RING_BYTES // RECORD_BYTES
    with UserRingBuffer(ring_obj.maps["commands"]) as ring:
        accepted = 0
        while ring.write(COMMAND.pack(OP_ADD, accepted, accepted)):
            accepted += 1
            assert accepted <= fits, "the writer accepted more than the ring holds"
        assert accepted == fits
        assert ring.records_written == fits
        assert ring.write(COMMAND.pack(OP_ADD, 0, 0)) is False  # still full: nothing was drained
        with pytest.raises(ValueError, match="cannot fit"):
            ring.write(bytes(RING_BYTES))

        assert drain(ring_obj) == fits
        assert ring.wait_space(timeout=1.0)
        assert ring.write(COMMAND.pack(OP_ADD, 0, 1000))
        assert drain(ring_obj) == 1
    assert seen(ring_obj, "records", "short_records") == {"records": fits + 1, "short_records": 0}
    assert ring_obj.variables["sum"].value == sum(range(fits)) + 1000


def test_writer_refuses_other_maps(bpf_obj: Callable[[str], Path]) -> None:
    with pybpf.load(bpf_obj("stacks")) as other, pytest.raises(BPFError, match="USER_RINGBUF"):
        UserRingBuffer(other.maps["events"])
