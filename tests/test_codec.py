"""BTF value codec: object BTF (tests/bpf/events_seq.bpf.c) and kernel BTF types."""

from __future__ import annotations

import copy
import random
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pybpf.btf import Array, Composite, Int, Struct, Union, kernel_spec, sizeof
from pybpf.btf.codec import codec_for, decoder_at, enum_class, numpy_dtype, record_layout, struct_class
from pybpf.elf import read


@pytest.fixture(scope="module")
def btf(bpf_obj: Callable[[str], Path]) -> Any:
    return read(str(bpf_obj("events_seq"))).btf


def test_struct_roundtrip_all_forms(btf: Any) -> None:
    t = btf.find("event", Struct)
    enc, dec = codec_for(t)
    assert codec_for(t) is codec_for(t) or codec_for(t) == (enc, dec)
    Color = enum_class(btf.find("color"))
    assert Color is not None
    value = {"seq": 2**64 - 1, "neg": -5, "color": "BLUE", "in": {"a": 65535, "b": -128}, "arr": [1, 2, 3],
             "flag": 1, "level": 7, "sbf": -8, "name": "hello", "ok": True}
    raw = enc(value)
    assert len(raw) == sizeof(t) == 56
    ev = dec(raw)
    assert isinstance(ev, struct_class(t))
    assert (ev.seq, ev.neg, ev.color, ev.in_.a, ev.in_.b, ev.arr, ev.flag, ev.level, ev.sbf, ev.name, ev.ok) == (
        2**64 - 1, -5, Color.BLUE, 65535, -128, [1, 2, 3], 1, 7, -8, "hello", True)
    assert ev.color == 2 and ev.color.name == "BLUE"
    assert enc(ev) == raw  # the decoded object
    assert enc(tuple(ev)) == raw  # a plain tuple
    assert dec(enc(ev.asdict())) == ev  # a dict (nested dicts)
    assert ev == dec(raw) and ev != ev._replace(seq=1)
    assert "seq=18446744073709551615" in repr(ev) and "name='hello'" in repr(ev)
    assert ev.asdict()["in_"] == {"a": 65535, "b": -128}
    # Offsets decode in place from a larger buffer.
    assert decoder_at(t)(b"\xff" * 8 + raw, 8) == ev
    # Bitfields do not clobber each other.
    ev2 = dec(enc({"flag": 0, "level": 5, "sbf": 3}))
    assert (ev2.flag, ev2.level, ev2.sbf) == (0, 5, 3)


def test_layout_matches_c(btf: Any) -> None:
    t = btf.find("event", Struct)
    enc, _ = codec_for(t)
    raw = enc({"seq": 7, "neg": -1, "arr": [9, 8, 7], "name": b"ab", "flag": 1, "level": 2, "sbf": -1})
    assert struct.unpack_from("<Qi", raw) == (7, -1)
    assert struct.unpack_from("<3I", raw, 20) == (9, 8, 7)
    bits = raw[32]
    assert bits & 1 == 1 and (bits >> 1) & 7 == 2 and (bits >> 4) & 15 == 15
    assert raw[33:36] == b"ab\0"


def test_union_and_scalars(btf: Any) -> None:
    u = btf.find("num")
    enc, dec = codec_for(u)
    v = dec(struct.pack("<f", 1.5))
    assert v.f == 1.5 and v.u == struct.unpack("<I", struct.pack("<f", 1.5))[0]
    assert dec(enc(v)) == v and dec(enc({"u": 7})).u == 7
    for size in (1, 2, 4, 8):
        for signed in (False, True):
            t = Int(None, 1, "x", size, 1 if signed else 0, size * 8, 0)
            e, d = codec_for(t)
            lo, hi = (-(1 << (size * 8 - 1)), (1 << (size * 8 - 1)) - 1) if signed else (0, (1 << size * 8) - 1)
            assert d(e(lo)) == lo and d(e(hi)) == hi


def test_numpy_dtype(btf: Any) -> None:
    np = pytest.importorskip("numpy")
    t = btf.find("event", Struct)
    dt = numpy_dtype(t)
    assert dt.itemsize == 56 and dt.fields["name"][0] == np.dtype("S16") and dt.fields["name"][1] == 33
    enc, _ = codec_for(t)
    arr = np.frombuffer(enc({"seq": 3, "in": {"a": 4}, "arr": [1, 2, 3], "name": "zz"}) * 2, dt)
    assert arr["seq"].tolist() == [3, 3] and arr["in_"]["a"].tolist() == [4, 4]
    assert arr["arr"][0].tolist() == [1, 2, 3] and arr["name"][1] == b"zz"


def has_union(t: Any, depth: int = 0) -> bool:
    s = t.strip()
    while isinstance(s, Array):
        s = s.elem.strip()
    if isinstance(s, Union):
        return True
    return isinstance(s, Composite) and depth < 20 and any(has_union(m.type, depth + 1) for m in s.members)


def _sampled_types(kspec: Any, rng: random.Random, k: int, cls: type[Composite]) -> list[Any]:
    """`k` random kernel type ids; the sized ones of class `cls`."""
    sampled = (kspec.type(i) for i in rng.sample(range(1, kspec.next_id), k))
    return [t for t in sampled if isinstance(t, cls) and t.size]


def test_kernel_types_decode_and_roundtrip() -> None:
    kspec = kernel_spec()
    rng = random.Random(1)
    names = ["task_struct", "sk_buff", "file", "inode", "bpf_prog_aux", "perf_event_attr", "sock", "page"]
    types: list[Any] = [kspec.find(n, Struct) for n in names] + _sampled_types(kspec, rng, 3000, Composite)
    assert len(types) > 50
    checked = 0
    for t in types:
        enc, dec = codec_for(t)
        # Bytes 1..127: valid UTF-8 char arrays without NULs and no NaN floats, so values survive a round trip.
        raw = bytes(rng.randrange(1, 128) for _ in range(t.size))
        v = dec(raw)
        if not has_union(t):  # a union member holes can lose bytes other members covered
            assert dec(enc(v)) == v, t
            checked += 1
    assert checked > 20
    task = codec_for(kspec.find("task_struct", Struct))[1](bytes(sizeof(kspec.find("task_struct"))))
    assert task.pid == 0 and task.comm == ""


def test_record_layout_decodes_lazily(btf: Any) -> None:
    t = btf.find("event", Struct)
    enc, dec = codec_for(t)
    layout = record_layout(t)
    assert layout is not None and layout.cls is not None and record_layout(t) is layout
    value = {"seq": 7, "neg": -7, "color": "GREEN", "in": {"a": 1007, "b": -7}, "arr": [7, 14, 21], "flag": 1,
             "level": 7, "sbf": -3, "name": "ev7", "ok": False}
    raw = enc(value)
    # Records are `tuple.__new__(cls, unpacked values)`: several records from one buffer with iter_unpack.
    fmt = struct.Struct(layout.format)
    buf = b"".join(r.ljust(64, b"\0") for r in (raw, enc({**value, "seq": 8})))
    pad = struct.Struct(layout.format + f"{64 - fmt.size}x")
    ev, ev8 = (tuple.__new__(layout.cls, v) for v in pad.iter_unpack(buf))
    want = dec(raw)
    assert isinstance(ev, struct_class(t)) and type(ev) is not struct_class(t)
    assert (ev.seq, ev.neg, ev.color, ev.in_, ev.arr, ev.flag, ev.level, ev.sbf, ev.name, ev.ok) == tuple(want)
    assert ev.color.name == "GREEN" and ev.in_.b == -7 and ev8.seq == 8
    assert ev == want and want == ev and ev != ev8 and (ev != want) is False
    assert list(ev) == list(want) and len(ev) == 10 and ev[3] == want[3] and ev[-1] is False and ev[:2] == (7, -7)
    assert repr(ev) == repr(want) and ev.asdict() == want.asdict() and ev._asdict() == want._asdict()
    assert ev._replace(seq=9) == want._replace(seq=9) and ev._fields == want._fields
    assert copy.copy(ev) == want and copy.deepcopy(ev) == want
    assert enc(ev) == raw and layout.make(fmt.unpack_from(raw)) == want
    assert "name='ev7'" in repr(ev)
    # A struct of plain scalars decodes straight into its struct class.
    inner = btf.find("inner", Struct)
    il = record_layout(inner)
    assert il is not None and il.cls is struct_class(inner) and il.make(struct.unpack(il.format, b"\x01\x02\xff")) == (513, -1)
    assert record_layout(btf.find("num")) is None  # unions decode through codec_for


def test_record_layout_matches_decoder_on_kernel_types() -> None:
    kspec = kernel_spec()
    rng = random.Random(2)
    types: list[Any] = [kspec.find(n, Struct) for n in ("task_struct", "sk_buff", "perf_event_attr", "file")]
    types += _sampled_types(kspec, rng, 2000, Struct)
    checked = 0
    for t in types:
        layout = record_layout(t)
        if layout is None:
            continue
        raw = bytes(rng.randrange(1, 128) for _ in range(t.size))
        rec = layout.make(struct.unpack_from(layout.format, raw))
        want = codec_for(t)[1](raw)
        assert rec == want and repr(rec) == repr(want), t
        checked += 1
    assert checked > 50
