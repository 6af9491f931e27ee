"""Pieces of the CLI checked in-process: call names in `prog dump`, --set values, trace_pipe events, render
helpers and the kernel choice of `pybpf vmtest`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NamedTuple

import pytest

import pybpf.collection as pc
from pybpf.asm import Instruction
from pybpf.asm import opcodes as op
from pybpf.cli import render
from pybpf.cli.runner import BadOption, apply_sets
from pybpf.events.trace_pipe import TracePipe

BPF_SRC_DIR = Path(__file__).resolve().parent / "bpf"

# ---- prog dump: kernel call names ----------------------------------------------------------------------


@pytest.mark.usefixtures("require_root")
def test_call_names_before_and_after_bpf_call_base() -> None:
    from pybpf.cli.inspect import _kernel_call_names
    from pybpf.symbols import kernel_symbols

    symbols = kernel_symbols()
    base = symbols.address_of("__bpf_call_base")
    if not base:
        pytest.skip("no __bpf_call_base in kallsyms")
    name = _kernel_call_names()
    assert name is not None
    for probe in (base - 1, base - 0x10000, base + 0x1000):  # functions below __bpf_call_base (imm < 0), above
        sym = symbols.lookup(probe)
        assert sym is not None
        start = probe - sym.offset
        assert -(1 << 31) <= start - base < 1 << 31
        insn = Instruction(op.OPCODE_CALL, imm=start - base)
        assert name(insn) == sym.name, (hex(start), start - base)


# ---- --set ---------------------------------------------------------------------------------------------

_GLOBALS = """\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

enum colour { RED = 1, GREEN = 2, BLUE = 7 };
const volatile enum colour colour = RED;
const volatile __u32 counts[4] = {};
const volatile char label[8] = {};
const volatile bool verbose = false;
const volatile __u8 letter = 0;
const volatile __u8 octets[4] = {};
const volatile __s32 offset = 0;

SEC("tracepoint/syscalls/sys_enter_getpid")
int use(void *ctx)
{
    return colour + counts[0] + label[0] + verbose + letter + offset + octets[0];
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def globals_obj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pybpf.toolchain import compile

    src = tmp_path_factory.mktemp("cli_globals") / "globals.bpf.c"
    src.write_text(_GLOBALS)
    return compile(src, include=[BPF_SRC_DIR])


def _set(obj_path: Path, *sets: str, pid: int | None = None) -> dict[str, Any]:
    obj = pc.open_object(obj_path)
    apply_sets(obj, sets, pid)
    rodata = obj.spec.maps[".rodata"].data
    assert rodata is not None
    out = {}
    for name, var in obj.variables.items():
        from pybpf.btf.codec import codec_for

        _, decode = codec_for(var.type)
        out[name] = decode(rodata[var.offset:var.offset + var.size])
    return out


def test_set_values(globals_obj: Path) -> None:
    got = _set(globals_obj, "colour=BLUE", "counts=1,0x10", "label=abc", "verbose=yes", "letter=A",
               "offset=-5")
    assert int(got["colour"]) == 7
    assert got["counts"] == [1, 16, 0, 0]
    assert got["label"] == "abc"
    assert bool(got["verbose"]) is True
    assert got["letter"] == ord("A")
    assert got["offset"] == -5
    assert int(_set(globals_obj, "colour=2")["colour"]) == 2


@pytest.mark.parametrize(("item", "words"), [
    ("nope=1", ["no global variable 'nope'", "colour", "counts"]),
    ("colour=PURPLE", ["colour=PURPLE", "has no value 'PURPLE'"]),
    ("counts=1,2,3,4,5", ["counts=1,2,3,4,5", "array of 4 elements cannot hold 5 values"]),
    ("octets=1,2,3,4,5", ["octets=1,2,3,4,5", "array of 4 elements cannot hold 5 values"]),
    ("offset=lots", ["offset=lots"]),
    ("letter=300", ["letter=300", "255"]),
    ("verbose=maybe", ["verbose=maybe", "true or false"]),
    ("colour", ["expected NAME=VALUE"]),
])
def test_set_errors(globals_obj: Path, item: str, words: list[str]) -> None:
    with pytest.raises(BadOption) as info:
        _set(globals_obj, item)
    assert info.value.option == "--set"
    for word in words:
        assert word in str(info.value)


# ---- trace_pipe ----------------------------------------------------------------------------------------


def test_trace_pipe_read_events(tmp_path: Path) -> None:
    fifo = tmp_path / "trace_pipe"
    os.mkfifo(fifo)
    writer = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # keeps the FIFO open for the reader
    try:
        with TracePipe(str(fifo)) as pipe:
            assert pipe.read_events(0) == []
            os.write(writer, b"  curl-42  [003] d..31  12.500000: bpf_trace_printk: hello\nnot a trace line\npart")
            first, second = pipe.read_events(1)
            assert (first.task, first.pid, first.cpu, first.timestamp, first.message) == ("curl", 42, 3, 12.5, "hello")
            assert (second.cpu, second.message) == (-1, "not a trace line")
            os.write(writer, b"ial\n")
            assert [e.message for e in pipe.events(0.1)] == ["partial"]
    finally:
        os.close(writer)


# ---- render --------------------------------------------------------------------------------------------


class _Pair(NamedTuple):
    a: int
    b: list[int]


def test_jsonable_records() -> None:
    assert render.jsonable(_Pair(1, [2, 3])) == {"a": 1, "b": [2, 3]}
    assert render.jsonable([_Pair(1, [])]) == [{"a": 1, "b": []}]
    assert render.jsonable(render.Column("x", 3, True)) == {"name": "x", "width": 3, "numeric": True}


# ---- vmtest --------------------------------------------------------------------------------------------


def test_resolve_kernel_choices(monkeypatch: pytest.MonkeyPatch) -> None:
    import pybpf.vmtest.runner as vr

    calls: list[tuple[Any, ...]] = []
    deb: Any = object()
    path: Any = object()

    def fake(kind: str, result: Any) -> Any:
        def call(*args: Any) -> Any:
            calls.append((kind, *args))
            return result
        return call

    monkeypatch.setattr(vr, "ensure_debian_kernel", fake("debian", deb))
    monkeypatch.setattr(vr, "kernel_from_vmlinuz", fake("path", path))
    assert vr.resolve_kernel(None, None) is deb
    assert vr.resolve_kernel(None, "6.12") is deb
    assert vr.resolve_kernel("/boot/vmlinuz", None, modules="/lib/modules/x") is path
    assert vr.resolve_kernel("/boot/vmlinuz", None) is path
    assert calls == [("debian",), ("debian", "6.12"), ("path", "/boot/vmlinuz", "/lib/modules/x"),
                     ("path", "/boot/vmlinuz", None)]
