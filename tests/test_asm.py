"""pybpf.asm: opcode constants, encode/decode round trips, disassembly text, the Builder, speed, and a
comparison with clang + llvm-objdump on a compiled object (tests/bpf/asm_sample.bpf.c)."""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from elftools.elf.constants import SH_FLAGS
from elftools.elf.elffile import ELFFile
from elftools.elf.relocation import RelocationSection
from elftools.elf.sections import SymbolTableSection

from pybpf import asm
from pybpf.asm import (
    ADD,
    AND,
    ARSH,
    DIV,
    DW,
    JEQ,
    JGE,
    JGT,
    JLE,
    JLT,
    JNE,
    JSET,
    JSGE,
    JSGT,
    JSLE,
    JSLT,
    LSH,
    MOD,
    MUL,
    OR,
    R0,
    R1,
    R2,
    R3,
    R6,
    R10,
    RSH,
    SUB,
    TO_BE,
    TO_LE,
    XOR,
    B,
    Builder,
    ByteOrder,
    H,
    Instruction,
    Instructions,
    W,
)
from pybpf.errors import ObjectError

ALU_OPS = [ADD, SUB, MUL, DIV, OR, AND, LSH, RSH, MOD, XOR, asm.MOV, ARSH]
JMP_OPS = [JEQ, JGT, JGE, JSET, JNE, JSGT, JSGE, JLT, JLE, JSLT, JSLE]


def every_form() -> list[Instruction]:
    """At least one instruction of every class, op, mode and size the ISA (v4 + load-acquire) has."""
    insns: list[Instruction] = []
    for alu_op in ALU_OPS:
        insns += [
            asm.alu64_imm(alu_op, R1, -7),
            asm.alu64_reg(alu_op, R2, R3),
            asm.alu32_imm(alu_op, R1, 0x7FFFFFFF),
            asm.alu32_reg(alu_op, R2, R3),
        ]
    for signed_op in (DIV, MOD):
        insns += [
            asm.alu64_imm(signed_op, R1, 3, signed=True),
            asm.alu64_reg(signed_op, R1, R2, signed=True),
            asm.alu32_imm(signed_op, R1, -3, signed=True),
            asm.alu32_reg(signed_op, R1, R2, signed=True),
        ]
    insns += [asm.neg64(R1), asm.neg32(R2)]
    insns += [asm.movsx64_reg(R1, R2, bits) for bits in (8, 16, 32)]
    insns += [asm.movsx32_reg(R1, R2, bits) for bits in (8, 16)]
    for bits in (16, 32, 64):
        insns += [asm.endian(TO_LE, R1, bits), asm.endian(TO_BE, R1, bits), asm.bswap(R1, bits)]
    insns += [
        asm.ld_imm64(R1, 0x1122334455667788),
        asm.ld_imm64(R2, -1),
        asm.ld_imm64(R3, 1 << 63),
        asm.ld_map_fd(R1, 7),
        asm.ld_map_value(R1, 7, 16),
        asm.ld_map_idx(R1, 2),
        asm.ld_map_idx_value(R1, 2, 8),
        asm.ld_btf_id(R1, 1234),
        asm.ld_func(R2, 5),
    ]
    for size in (B, H, W):
        insns += [asm.ld_abs(size, 12), asm.ld_ind(size, R3, -4), asm.ldx_memsx(size, R1, R2, -2)]
    for size in (B, H, W, DW):
        insns += [
            asm.ldx_mem(size, R1, R2, 4),
            asm.stx_mem(size, R10, R1, -8),
            asm.st_mem(size, R10, -16, -1),
            asm.load_acquire(size, R1, R2, 8),
            asm.store_release(size, R1, R2, 8),
        ]
    for size in (W, DW):
        for atomic in (ADD, AND, OR, XOR):
            insns += [
                asm.atomic_op(size, atomic, R1, R2, 0),
                asm.atomic_op(size, atomic, R1, R2, 8, fetch=True),
            ]
        insns += [asm.atomic_xchg(size, R1, R2, 0), asm.atomic_cmpxchg(size, R1, R2, -8)]
    for jmp_op in JMP_OPS:
        insns += [
            asm.jmp_imm(jmp_op, R1, -1, 3),
            asm.jmp_reg(jmp_op, R1, R2, -3),
            asm.jmp32_imm(jmp_op, R1, 5, 0),
            asm.jmp32_reg(jmp_op, R1, R2, 32767),
        ]
    insns += [
        asm.ja(-32768),
        asm.gotol(100000),
        asm.may_goto(2),
        asm.call_helper(1),
        asm.call_rel(-20),
        asm.call_kfunc(50000, 1),
        asm.exit_insn(),
    ]
    return insns


# ----- constants -------------------------------------------------------------------------------------------


def _uapi_defines() -> dict[str, int]:
    values: dict[str, int] = {}
    for header in ("/usr/include/linux/bpf_common.h", "/usr/include/linux/bpf.h"):
        path = Path(header)
        if not path.is_file():
            continue
        for name, value in re.findall(
            r"^#define\s+(BPF_\w+)\s+(0x[0-9a-fA-F]+|\d+)\b", path.read_text(), re.M
        ):
            values.setdefault(name, int(value, 0))
    return values


def test_opcode_constants_match_uapi_headers() -> None:
    defines = _uapi_defines()
    if not defines:
        pytest.skip("no UAPI headers in /usr/include/linux (Debian package linux-libc-dev)")
    checked = 0
    for name in asm.opcodes.__all__:
        value = getattr(asm, name)
        if not isinstance(value, int) or f"BPF_{name}" not in defines:
            continue
        assert value == defines[f"BPF_{name}"], name
        checked += 1
    # Classes, sizes, modes, ALU/JMP ops, sources, pseudo values and FETCH are all literals there.
    assert checked >= 55
    assert (0xE0 | defines["BPF_FETCH"], 0xF0 | defines["BPF_FETCH"]) == (asm.XCHG, asm.CMPXCHG)
    assert asm.OPCODE_LD_IMM64 == 0x18 and asm.OPCODE_CALL == 0x85 and asm.OPCODE_EXIT == 0x95


def test_pseudo_values_agree_with_generated_sys_types() -> None:
    types = pytest.importorskip("pybpf._sys.types")
    for name in ("MAP_FD", "MAP_VALUE", "BTF_ID", "FUNC", "MAP_IDX", "MAP_IDX_VALUE", "CALL", "KFUNC_CALL"):
        theirs = getattr(types, f"BPF_PSEUDO_{name}", None)
        if theirs is not None:
            assert getattr(asm, f"PSEUDO_{name}") == theirs, name


# ----- encoding --------------------------------------------------------------------------------------------


def test_known_encodings() -> None:
    assert asm.mov64_imm(R0, 0).encode() == bytes.fromhex("b700000000000000")
    assert asm.ldx_mem(W, R1, R2, 4).encode() == bytes.fromhex("6121040000000000")
    assert asm.jmp_imm(JEQ, R1, 0, 3).encode() == bytes.fromhex("1501030000000000")
    assert asm.stx_mem(DW, R10, R1, -8).encode() == bytes.fromhex("7b1af8ff00000000")
    assert asm.alu64_imm(ADD, R2, -4).encode() == bytes.fromhex("07020000fcffffff")
    assert asm.call_helper(14).encode() == bytes.fromhex("850000000e000000")
    assert asm.ld_imm64(R1, 0x1122334455667788).encode() == bytes.fromhex("18010000887766550000000044332211")
    assert asm.ld_map_value(R2, 3, 16).encode() == bytes.fromhex("18220000030000000000000010000000")
    # big-endian objects swap the register nibbles and the multi-byte fields
    assert asm.ldx_mem(W, R1, R2, 4).encode("big") == bytes.fromhex("6112000400000000")


def test_round_trip_every_form() -> None:
    insns = Instructions(every_form())
    data = insns.encode()
    assert len(data) == 8 * insns.slot_count()
    decoded = Instructions.decode(data)
    assert len(decoded) == len(insns)
    for original, back in zip(insns, decoded, strict=True):
        assert back == original, f"{original!r} decoded as {back!r}"
        assert back.encode() == original.encode()
        assert (back.opcode, back.dst, back.src, back.off) == (
            original.opcode,
            original.dst,
            original.src,
            original.off,
        )
    assert decoded.encode() == data
    assert {i.opcode & 0x07 for i in decoded} == set(range(8)), "every instruction class is covered"
    big = insns.encode(byteorder="big")
    assert big != data
    assert Instructions.decode(big, byteorder="big").encode() == data


def test_ld_imm64_is_one_instruction_in_two_slots() -> None:
    insn = asm.ld_imm64(R3, -2)
    assert insn.size == 2 and len(insn.encode()) == 16
    decoded = Instructions.decode(insn.encode())
    assert len(decoded) == 1 and decoded.slot_count() == 2
    assert decoded[0].imm == -2  # the 64-bit constant, sign preserved
    assert Instruction.decode(asm.ld_imm64(R1, 0xFFFF_FFFF_0000_0001).encode()).imm == -0xFFFFFFFF
    # unsigned and signed spellings of one constant are the same instruction
    assert asm.ld_imm64(R1, 2**64 - 1) == asm.ld_imm64(R1, -1)


def test_random_programs_round_trip() -> None:
    rng = random.Random(7)
    forms = every_form()
    for _ in range(20):
        picked = [rng.choice(forms).copy() for _ in range(rng.randrange(1, 300))]
        data = Instructions(picked).encode()
        decoded = Instructions.decode(data)
        assert decoded.encode() == data
        assert list(decoded) == picked


def test_decode_rejects_malformed_bytes() -> None:
    with pytest.raises(ObjectError, match="multiple of 8"):
        Instructions.decode(b"\x00" * 12)
    with pytest.raises(ObjectError, match="missing its second slot"):
        Instructions.decode(asm.exit_insn().encode() + asm.ld_imm64(R1, 1).encode()[:8])
    bad = bytearray(asm.ld_imm64(R1, 1).encode())
    bad[8] = 0x95
    with pytest.raises(ObjectError, match="second half") as info:
        Instructions.decode(bytes(bad))
    assert info.value.offset == 8


def test_encode_rejects_out_of_range_fields() -> None:
    with pytest.raises(ValueError, match="32 bits"):
        Instruction(0xB7, 0, 0, 0, 1 << 32).encode()
    with pytest.raises(ValueError, match="register"):
        Instructions([Instruction(0xB7, 16)]).encode()
    with pytest.raises(ValueError, match="16 bits"):
        Instructions([Instruction(0x05, off=40000)]).encode()
    with pytest.raises(ValueError):
        asm.mov64_imm(11, 0)
    # an unsigned 32-bit spelling is accepted and encodes like the signed one
    assert Instructions([Instruction(0xB7, 1, 0, 0, 0xFFFFFFFF)]).encode() == asm.mov64_imm(R1, -1).encode()


# ----- the sequence --------------------------------------------------------------------------------------


def program() -> Instructions:
    b = Builder()
    b.mov64_imm(R0, 0).ld_map_fd(R1, 4).ldx_mem(W, R2, R1, 0).ld_imm64(R3, 99).exit()
    return b.instructions()


def test_slot_and_index_mapping() -> None:
    insns = Instructions.decode(program().encode())
    assert insns.slot_offsets() == [0, 1, 3, 4, 6]
    assert insns.slot_count() == 7
    assert [insns.slot_of(i) for i in range(5)] == [0, 1, 3, 4, 6]
    assert [insns.index_of(s) for s in (0, 1, 3, 4, 6)] == [0, 1, 2, 3, 4]
    assert insns.slot_of(-1) == 6
    with pytest.raises(ValueError, match="second half"):
        insns.index_of(2)
    with pytest.raises(IndexError):
        insns.index_of(7)
    assert insns.at_slot(4).imm == 99
    assert [s for s, _ in insns.iter_slots()] == [0, 1, 3, 4, 6]


def test_decoded_instructions_are_live_and_lazy() -> None:
    data = program().encode()
    insns = Instructions.decode(data)
    assert insns.encode() is not None and insns.encode() == data
    insns[1].imm = 9  # loader-style patch of a map fd
    insns[2].off = 4
    patched = insns.encode()
    assert Instructions.decode(patched)[1].imm == 9
    assert Instructions.decode(patched)[2].off == 4
    assert patched[:8] == data[:8] and patched[-8:] == data[-8:]
    assert insns.opcodes() == bytes([0xB7, 0x18, 0x61, 0x18, 0x95])
    assert Instructions.decode(data).opcodes() == bytes([0xB7, 0x18, 0x61, 0x18, 0x95])


def test_in_place_size_change_updates_layout() -> None:
    insns = Instructions.decode(program().encode())
    assert insns.slot_of(4) == 6
    insns[1].opcode = asm.ALU64 | asm.MOV | asm.K  # two slots become one
    insns[1].src = 0
    assert insns.slot_of(4) == 5
    assert insns.slot_count() == 6
    assert Instructions.decode(insns.encode())[1] == asm.mov64_imm(R1, 4)


def test_list_operations() -> None:
    a = Instructions.decode(program().encode())
    other = Instructions.decode(Instructions([asm.mov64_imm(R6, 1), asm.exit_insn()]).encode())
    a.insert(0, asm.mov64_reg(R6, R1))
    del a[-1]
    a += other  # different byte buffers: concatenated without decoding
    a[2:3] = [asm.mov64_imm(R2, 2), asm.mov64_imm(R3, 3)]
    expected = [
        asm.mov64_reg(R6, R1),
        asm.mov64_imm(R0, 0),
        asm.mov64_imm(R2, 2),
        asm.mov64_imm(R3, 3),
        asm.ldx_mem(W, R2, R1, 0),
        asm.ld_imm64(R3, 99),
        asm.mov64_imm(R6, 1),
        asm.exit_insn(),
    ]
    assert a == expected
    assert Instructions.decode(a.encode()) == Instructions(expected)
    assert a[1:3] == expected[1:3] and isinstance(a[1:3], Instructions)
    backwards = Instructions.decode(Instructions(expected).encode())[::-1]  # undecoded, out of order
    assert backwards.encode() == b"".join(i.encode() for i in reversed(expected))
    copy = a.copy()
    copy[0].imm = 5
    assert a[0].imm == 0
    with pytest.raises(TypeError):
        a.append("exit")  # type: ignore[arg-type]


def test_symbols_and_reference_resolution() -> None:
    main = Instructions([asm.call_rel(0), asm.exit_insn()])
    main[0].reference = "helper_fn"
    sub = [asm.mov64_imm(R0, 7), asm.exit_insn()]
    sub[0].symbol = "helper_fn"
    main.extend(sub)
    assert main.symbols() == {"helper_fn": 2}
    main.resolve_references()
    assert main[0].imm == 1  # from the slot after the call to the callee
    main.insert(1, asm.ld_imm64(R1, 5))
    main.resolve_references()  # re-run after the layout changed
    assert main[0].imm == 3
    orphan = Instructions([asm.call_rel(0)])
    orphan[0].reference = "missing_fn"
    with pytest.raises(ObjectError, match="missing_fn"):
        orphan.resolve_references()


# ----- builder ---------------------------------------------------------------------------------------------


def test_builder_labels_and_functions() -> None:
    b = Builder()
    b.mov64_imm(R0, 0)
    b.jmp_imm(JEQ, R1, 0, "out")  # forward, over an ld_imm64 (two slots)
    b.label("loop").ld_imm64(R2, 1)
    b.alu64_imm(SUB, R2, 1).jmp_imm(JNE, R2, 0, "loop")  # backward
    b.call_rel("double").ld_func(R3, "double")
    b.label("out").exit()
    b.function("double").alu64_reg(ADD, R1, R1).mov64_reg(R0, R1).exit()
    insns = b.instructions()
    text = insns.disassemble(numbered=False, symbols=False)
    assert text.splitlines() == [
        "(b7) r0 = 0",
        "(15) if r1 == 0x0 goto pc+7",
        "(18) r2 = 0x1",
        "(17) r2 -= 1",
        "(55) if r2 != 0x0 goto pc-4",
        "(85) call pc+3#double",
        "(18) r3 = subprog[double]",
        "(95) exit",
        "(0f) r1 += r1",
        "(bf) r0 = r1",
        "(95) exit",
    ]
    # "double" is at slot 10: call at slot 6 -> 6 + 1 + 3; ld_imm64 at slot 7 -> 7 + 1 + 2 (the kernel
    # counts from the ld_imm64's second slot)
    assert insns[5].imm == 3 and insns[6].imm == 2
    assert insns[8].symbol == "double"
    assert insns[1].reference is None  # plain labels do not leak into the program
    assert insns[5].reference == "double"
    assert insns.symbols() == {"double": 8}
    insns.resolve_references()  # function references survive for the loader's re-linking


def test_builder_errors() -> None:
    b = Builder().ja("nowhere").exit()
    with pytest.raises(ObjectError, match="nowhere"):
        b.instructions()
    with pytest.raises(ValueError, match="twice"):
        Builder().label("x").mov64_imm(R0, 0).label("x")
    with pytest.raises(ValueError, match="not followed"):
        Builder().exit().label("end").instructions()
    far = Builder().jmp_imm(JEQ, R1, 0, "far")
    for _ in range(40000):
        far.mov64_imm(R0, 0)
    far.label("far").exit()
    with pytest.raises(ValueError, match="gotol"):
        far.instructions()
    long = Builder().gotol("far")
    for _ in range(40000):
        long.mov64_imm(R0, 0)
    assert long.label("far").exit().instructions()[0].imm == 40000


def test_helper_names_come_from_generated_enum() -> None:
    pytest.importorskip("pybpf._sys.types")
    assert asm.helper_name(1) == "bpf_map_lookup_elem"
    assert asm.helper_id("get_current_pid_tgid") == 14
    assert asm.helper_id("bpf_map_lookup_elem") == asm.helper_id("BPF_FUNC_map_lookup_elem") == 1
    assert asm.call_helper("ktime_get_ns") == asm.call_helper(5)
    with pytest.raises(LookupError):
        asm.helper_id("no_such_helper")


def test_helper_names_fall_back_without_enum(monkeypatch: pytest.MonkeyPatch) -> None:
    from pybpf.asm import helpers

    helpers.helper_names.cache_clear()
    helpers._ids_by_name.cache_clear()
    monkeypatch.setitem(sys.modules, "pybpf._sys.types", None)  # makes the import fail
    try:
        assert str(asm.call_helper(14)) == "(85) call unknown#14"
        with pytest.raises(LookupError, match="numeric"):
            asm.helper_id("get_current_pid_tgid")
    finally:
        helpers.helper_names.cache_clear()
        helpers._ids_by_name.cache_clear()


# ----- disassembler ----------------------------------------------------------------------------------------

# Expected texts follow kernel/bpf/disasm.c (checked by hand against it); ld_imm64 operands follow bpftool.
DISASSEMBLY = [
    (asm.mov64_imm(R0, 0), "(b7) r0 = 0"),
    (asm.mov32_imm(R1, -1), "(b4) w1 = -1"),
    (asm.mov64_reg(R1, R6), "(bf) r1 = r6"),
    (asm.mov32_reg(R1, R6), "(bc) w1 = w6"),
    (asm.alu64_imm(ADD, R2, -4), "(07) r2 += -4"),
    (asm.alu64_imm(ARSH, R2, 3), "(c7) r2 s>>= 3"),
    (asm.alu32_reg(XOR, R2, R3), "(ac) w2 ^= w3"),
    (asm.alu64_imm(DIV, R1, 3, signed=True), "(37) r1 s/= 3"),
    (asm.alu32_reg(MOD, R1, R2, signed=True), "(9c) w1 s%= w2"),
    (asm.neg64(R1), "(87) r1 = -r1"),
    (asm.movsx64_reg(R1, R2, 32), "(bf) r1 = (s32)r2"),
    (asm.movsx32_reg(R1, R2, 8), "(bc) w1 = (s8)w2"),
    (asm.endian(TO_BE, R1, 16), "(dc) r1 = be16 r1"),
    (asm.endian(TO_LE, R1, 64), "(d4) r1 = le64 r1"),
    (asm.bswap(R1, 32), "(d7) r1 = bswap32 r1"),
    (asm.ld_imm64(R1, 0x1122334455667788), "(18) r1 = 0x1122334455667788"),
    (asm.ld_imm64(R1, -1), "(18) r1 = 0xffffffffffffffff"),
    (asm.ld_map_fd(R1, 5), "(18) r1 = map[id:5]"),
    (asm.ld_map_value(R1, 5, 8), "(18) r1 = map[id:5][0]+8"),
    (asm.ld_map_idx_value(R1, 2, 4), "(18) r1 = map[idx:2]+4"),
    (asm.ld_func(R2, 6), "(18) r2 = subprog[+6]"),
    (asm.ld_abs(H, 12), "(28) r0 = *(u16 *)skb[12]"),
    (asm.ld_ind(B, R3, 4), "(50) r0 = *(u8 *)skb[r3 + 4]"),
    (asm.ldx_mem(W, R1, R2, 4), "(61) r1 = *(u32 *)(r2 +4)"),
    (asm.ldx_mem(DW, R0, R10, -8), "(79) r0 = *(u64 *)(r10 -8)"),
    (asm.ldx_memsx(H, R1, R2, 0), "(89) r1 = *(s16 *)(r2 +0)"),
    (asm.stx_mem(B, R10, R1, -1), "(73) *(u8 *)(r10 -1) = r1"),
    (asm.st_mem(W, R10, -4, 7), "(62) *(u32 *)(r10 -4) = 7"),
    (asm.atomic_op(DW, ADD, R1, R2, 0), "(db) lock *(u64 *)(r1 +0) += r2"),
    (asm.atomic_op(W, OR, R1, R2, 8), "(c3) lock *(u32 *)(r1 +8) |= r2"),
    (asm.atomic_op(DW, AND, R1, R2, 0, fetch=True), "(db) r2 = atomic64_fetch_and((u64 *)(r1 +0), r2)"),
    (asm.atomic_op(W, XOR, R1, R2, 0, fetch=True), "(c3) r2 = atomic_fetch_xor((u32 *)(r1 +0), r2)"),
    (asm.atomic_xchg(DW, R1, R2, 0), "(db) r2 = atomic64_xchg((u64 *)(r1 +0), r2)"),
    (asm.atomic_cmpxchg(W, R1, R2, -4), "(c3) r0 = atomic_cmpxchg((u32 *)(r1 -4), r0, r2)"),
    (asm.load_acquire(B, R1, R2, 0), "(d3) r1 = load_acquire((u8 *)(r2 +0))"),
    (asm.store_release(DW, R1, R2, 0), "(db) store_release((u64 *)(r1 +0), r2)"),
    (asm.jmp_imm(JEQ, R1, 0, 3), "(15) if r1 == 0x0 goto pc+3"),
    (asm.jmp_imm(JSGT, R1, -1, -2), "(65) if r1 s> 0xffffffff goto pc-2"),
    (asm.jmp_reg(JSET, R1, R2, 1), "(4d) if r1 & r2 goto pc+1"),
    (asm.jmp32_imm(JLT, R3, 10, 0), "(a6) if w3 < 0xa goto pc+0"),
    (asm.jmp32_reg(JGE, R3, R1, 4), "(3e) if w3 >= w1 goto pc+4"),
    (asm.ja(-5), "(05) goto pc-5"),
    (asm.gotol(70000), "(06) gotol pc+70000"),
    (asm.may_goto(3), "(e5) may_goto pc+3"),
    (asm.call_helper(14), "(85) call bpf_get_current_pid_tgid#14"),
    (asm.call_helper(1), "(85) call bpf_map_lookup_elem#1"),
    (asm.call_rel(5), "(85) call pc+5"),
    (asm.call_kfunc(12345), "(85) call kernel-function#12345"),
    (asm.exit_insn(), "(95) exit"),
]


@pytest.mark.parametrize(("insn", "text"), DISASSEMBLY, ids=[t for _, t in DISASSEMBLY])
def test_disassembly_text(insn: Instruction, text: str) -> None:
    if "bpf_" in text:
        pytest.importorskip("pybpf._sys.types")
    assert str(insn) == text
    assert str(Instruction.decode(insn.encode())) == text


def test_disassemble_numbering_source_and_names() -> None:
    insns = program()
    insns[0].symbol = "handle"
    insns[0].source = "    int x = 0;"
    insns[1].source = "return lookup(&counts);"
    text = insns.disassemble()
    assert text.splitlines() == [
        "handle:",
        "; int x = 0;",
        "   0: (b7) r0 = 0",
        "; return lookup(&counts);",
        "   1: (18) r1 = map[id:4]",
        "   3: (61) r2 = *(u32 *)(r1 +0)",
        "   4: (18) r3 = 0x63",
        "   6: (95) exit",
    ]
    bare = insns.disassemble(source=False, symbols=False, numbered=False)
    assert bare.splitlines()[0] == "(b7) r0 = 0"
    named = insns.disassemble(imm_name=lambda i: "map[counts]" if i.is_map_load() else None)
    assert "   1: (18) r1 = map[counts]" in named and "   4: (18) r3 = 0x63" in named
    insns[1].reference = "counts"
    assert "(18) r1 = map[name:counts]" in insns.disassemble()
    calls = Instructions([asm.call_helper(5), asm.call_kfunc(77), asm.call_rel(2)])
    text = calls.disassemble(
        numbered=False, call_name=lambda i: "bpf_task_acquire" if i.is_kfunc_call() else None
    )
    assert "(85) call bpf_task_acquire#77" in text and "(85) call pc+2" in text


# ----- speed -----------------------------------------------------------------------------------------------


def _best_ms(fn: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best * 1e3


def test_decode_and_encode_100k_instructions_fast() -> None:
    rng = random.Random(3)
    forms = every_form()
    data = Instructions([rng.choice(forms).copy() for _ in range(100_000)]).encode()
    decode_ms = _best_ms(lambda: Instructions.decode(data))
    assert decode_ms < 50, f"decoding 100k instructions took {decode_ms:.1f} ms"

    def patch_and_encode() -> None:
        insns = Instructions.decode(data)
        for k in range(0, len(insns), 50):  # a loader patching 2% of the program
            insns[k].off = insns[k].off
        assert insns.encode() == data

    patch_ms = _best_ms(patch_and_encode, 3)
    assert patch_ms < 200, f"decode + patch 2k + encode took {patch_ms:.1f} ms"
    insns = Instructions.decode(data)
    map_ms = _best_ms(lambda: [insns.index_of(insns.slot_of(k)) for k in range(0, 100_000, 100)], 3)
    assert map_ms < 50, f"1000 slot/index look-ups took {map_ms:.1f} ms"


# ----- against clang and llvm-objdump --------------------------------------------------------------------


def _program_sections(obj: Path) -> dict[str, bytes]:
    with obj.open("rb") as f:
        elf = ELFFile(f)
        return {
            s.name: s.data()
            for s in elf.iter_sections()
            if s["sh_type"] == "SHT_PROGBITS" and s["sh_flags"] & SH_FLAGS.SHF_EXECINSTR and s.data_size
        }


_OBJDUMP_LINE = re.compile(r"^\s*(\d+):\t([0-9a-f]{2}(?: [0-9a-f]{2})*)\s*\t(.*)$")


def _objdump(obj: Path) -> dict[str, list[tuple[int, bytes, str]]]:
    """section -> [(slot, instruction bytes, llvm's text)] from `llvm-objdump -d`."""
    tool = shutil.which("llvm-objdump") or shutil.which("llvm-objdump-14")
    if tool is None:
        pytest.skip("llvm-objdump is not installed (Debian package llvm)")
    out = subprocess.run([tool, "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    sections: dict[str, list[tuple[int, bytes, str]]] = {}
    current: list[tuple[int, bytes, str]] = []
    for line in out.splitlines():
        if line.startswith("Disassembly of section "):
            current = sections.setdefault(line.removeprefix("Disassembly of section ").rstrip(":"), [])
            continue
        m = _OBJDUMP_LINE.match(line)
        if m:
            current.append((int(m.group(1)), bytes.fromhex(m.group(2).replace(" ", "")), m.group(3).strip()))
    return sections


def _llvm_to_kernel_syntax(text: str) -> str | None:
    """llvm-objdump's text rewritten to the kernel's spelling, or None where llvm 14 cannot say."""
    if text == "<unknown>":  # llvm 14 does not know 32-bit atomic and/or/xor
        return None
    text = re.sub(r"\s*<[^>]*>$", "", text)  # jump target label
    text = re.sub(r"\((r\d+) ([+-]) (\d+)\)", r"(\1 \2\3)", text)  # (r2 + 4) -> (r2 +4)
    text = re.sub(r"goto ([+-]\d+)", r"goto pc\1", text)
    m = re.fullmatch(r"(r\d+) = (-?\d+) ll", text)
    if m:
        return f"{m.group(1)} = {int(m.group(2)) & 0xFFFFFFFFFFFFFFFF:#x}"
    m = re.fullmatch(r"(r\d+) = (xchg|cmpxchg)(32)?_(32|64)\((r\d+) ([+-]) (\d+), (.*)\)", text)
    if m:
        reg, kind, _, bits, base, sign, off, rest = m.groups()
        size = "u64" if bits == "64" else "u32"
        return f"{reg} = atomic{'64' if bits == '64' else ''}_{kind}(({size} *)({base} {sign}{off}), {rest})"
    m = re.fullmatch(r"(r\d+) = atomic_fetch_(\w+)\(\((u64|u32) \*\)(.*)", text)
    if m:
        wide = "64" if m.group(3) == "u64" else ""
        return f"{m.group(1)} = atomic{wide}_fetch_{m.group(2)}(({m.group(3)} *){m.group(4)}"
    return text


def _kernel_to_comparable(text: str) -> str:
    text = re.sub(r"^\([0-9a-f]{2}\) ", "", text)
    text = re.sub(r"call pc([+-]\d+)(#.*)?$", lambda m: f"call {int(m.group(1))}", text)
    text = re.sub(r"call \S*#(-?\d+)$", r"call \1", text)
    # kernel prints jump immediates as u32 hex, llvm as signed decimal
    return re.sub(
        r"(if [rw]\d+ \S+ )0x([0-9a-f]+)",
        lambda m: m.group(1) + str(int(m.group(2), 16) - (1 << 32) * (int(m.group(2), 16) >> 31)),
        text,
    )


@pytest.mark.parametrize("target", ["bpf", "bpfeb"])
def test_matches_llvm_objdump(target: str, bpf_obj: Callable[[str], Path], tmp_path: Path) -> None:
    if target == "bpf":
        obj = bpf_obj("asm_sample")
    else:
        from pybpf.toolchain import compile

        obj = compile(Path(__file__).parent / "bpf" / "asm_sample.bpf.c", cflags=["-target", "bpfeb"])
    byteorder: ByteOrder = "little" if target == "bpf" else "big"
    sections = _program_sections(obj)
    reference = _objdump(obj)
    assert {"tracepoint/syscalls/sys_enter_getpid", "socket", ".text"} <= set(sections)
    compared_text = 0
    for name, data in sections.items():
        insns = Instructions.decode(data, byteorder=byteorder)
        theirs = reference[name]
        assert len(insns) == len(theirs), name
        assert insns.encode(byteorder=byteorder) == data
        for index, (slot, raw, llvm_text) in enumerate(theirs):
            insn = insns[index]
            assert insns.slot_of(index) == slot
            assert insn.opcode == raw[0], f"{name}+{slot}: {insn} vs {llvm_text}"
            assert insn.encode(byteorder) == raw
            ours = format_ours = _kernel_to_comparable(str(insn))
            expected = _llvm_to_kernel_syntax(llvm_text)
            assert not format_ours.startswith("BUG"), format_ours
            if expected is not None:
                assert ours == expected, f"{name}+{slot}: ours {str(insn)!r}, llvm {llvm_text!r}"
                compared_text += 1
    assert compared_text > 100
    # the forms the C file is there to produce all showed up
    opcodes = {i.opcode for data in sections.values() for i in Instructions.decode(data, byteorder=byteorder)}
    assert {0x18, 0x85, 0x95, 0xDB, 0xC3, 0x28, 0x30, 0x20, 0x16} <= opcodes
    if target == "bpf":  # on a big-endian target bpf_htonl() needs no byte swap
        assert 0xDC in opcodes


def test_sample_object_relocated_instructions(bpf_obj: Callable[[str], Path]) -> None:
    """The instructions libbpf would patch are where the ELF relocations say, as the loader expects."""
    obj = bpf_obj("asm_sample")
    with obj.open("rb") as f:
        elf = ELFFile(f)
        symtab = elf.get_section_by_name(".symtab")
        relocs = elf.get_section_by_name(".reltracepoint/syscalls/sys_enter_getpid")
        section = elf.get_section_by_name("tracepoint/syscalls/sys_enter_getpid")
        assert isinstance(symtab, SymbolTableSection)
        assert isinstance(relocs, RelocationSection)
        assert section is not None
        section_data = section.data()
        insns = Instructions.decode(section_data)
        targets = {}
        for rel in relocs.iter_relocations():
            sym = symtab.get_symbol(rel["r_info_sym"])
            # calls to static functions relocate against the section symbol, which has no name
            name = sym.name or elf.get_section(sym["st_shndx"]).name
            targets[rel["r_offset"] // 8] = name
    assert targets
    kinds = set()
    for slot, name in targets.items():
        insn = insns.at_slot(slot)
        assert insn.is_ld_imm64() or insn.is_pseudo_call(), (slot, name, str(insn))
        insn.reference = name
        kinds.add("call" if insn.is_pseudo_call() else "ld_imm64")
    assert kinds == {"call", "ld_imm64"}
    text = insns.disassemble()
    assert re.search(r"\(18\) r\d = &counts$", text, re.M), text  # object files leave src unset
    assert re.search(r"\(85\) call pc[+-]\d+#\.text$", text, re.M), text
    assert re.search(r"\(18\) r\d = &\.text$", text, re.M), text  # the bpf_loop callback
    assert insns.encode() == section_data  # metadata is never encoded
