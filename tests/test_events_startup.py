"""Start-up cost of the event readers: opening a ring buffer on a (replayed) collection and reading raw records
imports no enum and no pybpf.btf (real kernel, tests/bpf/events_seq.bpf.c)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from child_process import fresh_python, print_imported

import pybpf

pytestmark = pytest.mark.usefixtures("require_root")

# What reading raw records must not import: the enums of pybpf._sys.types (enum), BTF (pybpf.btf, needed only
# to decode a record type) and the modules those bring in.
_HEAVY = ("enum", "functools", "re", "typing", "dataclasses", "pybpf.btf")


def test_raw_ringbuf_read_imports_no_enum_or_btf(cache: Path, bpf_obj: Callable[[str], Path]) -> None:
    obj = bpf_obj("events_seq")
    pybpf.load(obj, set={"count": 1}).close()  # saves the load plan the fresh process replays
    code = (
        "import sys\n"
        "import pybpf\n"
        "with pybpf.load(sys.argv[1], set={'count': 1}) as c:\n"
        "    assert c.plan, 'not replayed'\n"
        "    with c.ringbuf('rb') as rb:\n"  # no type: records are bytes
        "        c.programs['emit_ringbuf'].test_run(ctx=bytes(8))\n"  # one event, seq 0
        "        got = []\n"
        "        print(rb.poll(5.0, got.append))\n"
        "        print(*(f'{type(r).__name__}:{len(r)}:{int.from_bytes(r[:8], \"little\")}' for r in got))\n"
        + print_imported(_HEAVY, indent="    ")
    )
    out = fresh_python(code, cache, obj)
    # One 56-byte struct event arrived, as bytes; nothing heavy was imported on the way.
    assert out == ["1", "bytes:56:0", ""], out
