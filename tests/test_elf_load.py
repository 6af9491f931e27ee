"""Specs from pybpf.elf accepted and run by the kernel: the proof that subprogram linking, callback
offsets, func/line info and global-data relocations are right is that the verifier takes them and the
program computes what the C source says.

This wires the pieces by hand (BTF fix-up and load, the .bss map, fds into instructions, CO-RE), the way
the collection loader does, so it exercises exactly what pybpf.elf produced.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pybpf import elf
from pybpf._sys import types as T
from pybpf.elf import CollectionSpec

# Loading CO-RE, kconfig and ksym objects on another kernel matters: these run on the second kernel too.
pytestmark = pytest.mark.kernel2

ETH_PACKET = bytes(14) + bytes(50)


@pytest.fixture
def loaded_btf(require_root: None, bpf_obj: Callable[[str], Path]) -> Iterator[tuple[CollectionSpec, object]]:
    from pybpf.btf import marshal

    spec = elf.read(bpf_obj("elf_subprogs"))
    assert spec.btf is not None
    blob = marshal.for_kernel(spec.btf, section_sizes=spec.section_sizes, symbol_offsets=spec.symbol_offsets)
    fd = marshal.load_into_kernel(blob)
    try:
        yield spec, fd
    finally:
        fd.close()


def _prepare(spec: CollectionSpec, prog: str, map_fds: dict[str, int]):  # type: ignore[no-untyped-def]
    from pybpf.btf import core

    p = spec.programs[prog].copy()
    for r in spec.relocations[prog]:
        insn = p.instructions[r.index]
        if r.kind in ("map", "map_value"):
            insn.imm = (r.offset << 32) | map_fds[r.target]
    assert spec.btf is not None
    targets = core.TargetBTF.running()
    for index, relo in spec.core_relos[prog]:
        core.apply(p.instructions, index, core.resolve(relo, spec.btf, targets))
    return p


def test_subprograms_callbacks_and_globals_run_in_the_kernel(
    loaded_btf: tuple[CollectionSpec, object],
) -> None:
    from pybpf.map import Map
    from pybpf.program import Program

    spec, btf_fd = loaded_btf
    bss_spec = spec.maps[".bss"]
    assert bss_spec.value_type is not None
    with Map.create(bss_spec, btf_fd=btf_fd, btf_value_type_id=bss_spec.value_type.id) as bss:  # type: ignore[arg-type]
        p = _prepare(spec, "compute", {".bss": int(bss.fd)})
        assert p.type == T.ProgType.SOCKET_FILTER
        with Program.load(p, btf_fd=btf_fd) as prog:  # type: ignore[arg-type]
            info = prog.info()
            # The kernel kept the func info of all 6 functions and every line info record.
            assert info.nr_func_info == len(p.func_info) // p.func_info_rec_size == 6
            assert info.nr_line_info == len(p.line_info) // p.line_info_rec_size
            result = prog.test_run(ETH_PACKET)
        # 28 (bpf_loop callback) + 17 (global_helper) + 2 (weak_helper) + 4 (CO-RE field size)
        assert result.retval == 51
        raw = bss.lookup(0)
        value = raw if isinstance(raw, (bytes, bytearray)) else bytes(raw)
        assert struct.unpack_from("<Q", value)[0] == 51


@pytest.mark.parametrize("prog", ["uses_subprogs", "other_prog", "no_subprogs"])
def test_tracepoint_programs_pass_the_verifier(loaded_btf: tuple[CollectionSpec, object], prog: str) -> None:
    from pybpf.map import Map
    from pybpf.program import Program

    spec, btf_fd = loaded_btf
    bss_spec = spec.maps[".bss"]
    assert bss_spec.value_type is not None
    with Map.create(bss_spec, btf_fd=btf_fd, btf_value_type_id=bss_spec.value_type.id) as bss:  # type: ignore[arg-type]
        p = _prepare(spec, prog, {".bss": int(bss.fd)})
        with Program.load(p, btf_fd=btf_fd) as loaded:  # type: ignore[arg-type]
            assert loaded.info().nr_func_info == len(p.instructions.symbols())
