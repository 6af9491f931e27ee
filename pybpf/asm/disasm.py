"""Disassembler producing the kernel's instruction syntax (what ``bpftool prog dump xlated`` prints).

The formats follow the kernel's ``kernel/bpf/disasm.c`` so output can be compared with bpftool and with
verifier logs line by line; the ``ld_imm64`` operand texts follow bpftool (``map[id:5]``).
"""

from __future__ import annotations

from pybpf.asm import opcodes as op
from pybpf.asm.helpers import helper_name
from pybpf.asm.instruction import Instruction

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from typing import TypeAlias

    NameCallback: TypeAlias = Callable[[Instruction], str | None]
else:
    NameCallback = object  # a type alias: type checkers see the Callable above

__all__ = ["NameCallback", "class_name", "disassemble_lines", "format_instruction"]

_ALU_OPS = {
    op.ADD: "+=",
    op.SUB: "-=",
    op.MUL: "*=",
    op.DIV: "/=",
    op.OR: "|=",
    op.AND: "&=",
    op.LSH: "<<=",
    op.RSH: ">>=",
    op.NEG: "neg",
    op.MOD: "%=",
    op.XOR: "^=",
    op.MOV: "=",
    op.ARSH: "s>>=",
    op.END: "endian",
}
_SIGNED_ALU_OPS = {op.DIV: "s/=", op.MOD: "s%="}
_MOVSX_CASTS = {8: "(s8)", 16: "(s16)", 32: "(s32)"}
_ATOMIC_OPS = {op.ADD: "add", op.AND: "and", op.OR: "or", op.XOR: "xor"}
_LDST = {op.W: "u32", op.H: "u16", op.B: "u8", op.DW: "u64"}
_LDSX = {op.W: "s32", op.H: "s16", op.B: "s8", op.DW: "s64"}
_JMP_OPS = {
    op.JA: "jmp",
    op.JEQ: "==",
    op.JGT: ">",
    op.JLT: "<",
    op.JGE: ">=",
    op.JLE: "<=",
    op.JSET: "&",
    op.JNE: "!=",
    op.JSGT: "s>",
    op.JSLT: "s<",
    op.JSGE: "s>=",
    op.JSLE: "s<=",
    op.CALL: "call",
    op.EXIT: "exit",
}
_CLASS_NAMES = {
    op.LD: "ld",
    op.LDX: "ldx",
    op.ST: "st",
    op.STX: "stx",
    op.ALU: "alu",
    op.JMP: "jmp",
    op.JMP32: "jmp32",
    op.ALU64: "alu64",
}


def _s32(value: int) -> int:
    value &= 0xFFFFFFFF
    return value - 0x100000000 if value & 0x80000000 else value


def _u32(value: int) -> int:
    return value & 0xFFFFFFFF


def _imm64_text(insn: Instruction) -> str:
    """bpftool's text for an ld_imm64 operand; a ``reference`` (symbol name) replaces the number."""
    src = insn.src
    lo = _u32(insn.imm)
    hi = _u32(insn.imm >> 32)
    ref = insn.reference
    if src == op.PSEUDO_MAP_FD:
        return f"map[name:{ref}]" if ref else f"map[id:{lo}]"
    if src == op.PSEUDO_MAP_VALUE:
        return f"map[name:{ref}][0]+{hi}" if ref else f"map[id:{lo}][0]+{hi}"
    if src == op.PSEUDO_MAP_IDX:
        return f"map[name:{ref}]" if ref else f"map[idx:{lo}]"
    if src == op.PSEUDO_MAP_IDX_VALUE:
        return f"map[name:{ref}]+{hi}" if ref else f"map[idx:{lo}]+{hi}"
    if src == op.PSEUDO_FUNC:
        return f"subprog[{ref}]" if ref else f"subprog[{_s32(lo):+d}]"
    if src == op.PSEUDO_BTF_ID and ref:
        return f"ksym[{ref}]"
    if ref:
        # Not yet relocated (an object file's view): show the symbol it will point to.
        return f"&{ref}" if insn.imm == 0 else f"&{ref}+{insn.imm:#x}"
    return f"{insn.imm & 0xFFFFFFFFFFFFFFFF:#x}"


def _call_text(insn: Instruction, call_name: NameCallback | None) -> str:
    name = call_name(insn) if call_name is not None else None
    if name is None:
        name = insn.reference
    imm = _s32(insn.imm)
    if insn.src == op.PSEUDO_CALL:
        # bpftool: "call pc+5", or "call pc+5#name" when it knows the callee
        return f"call pc{imm:+d}#{name}" if name else f"call pc{imm:+d}"
    if name is None:
        if insn.src == 0:
            name = helper_name(imm) or "unknown"
        elif insn.src == op.PSEUDO_KFUNC_CALL:
            name = "kernel-function"
        else:
            name = "unknown"
    return f"call {name}#{imm}"


def format_instruction(
    insn: Instruction,
    *,
    imm_name: NameCallback | None = None,
    call_name: NameCallback | None = None,
) -> str:
    """One instruction in the kernel's syntax, e.g. ``(61) r1 = *(u32 *)(r2 +4)``.

    ``imm_name(insn)`` may return the operand text of an ``ld_imm64``; ``call_name(insn)`` the name of a
    call target (helper, kfunc or subprogram). Either returning None falls back to the default.
    """
    code = insn.opcode
    cls = code & 0x07
    dst = insn.dst
    src = insn.src
    off = insn.off
    if cls == op.ALU or cls == op.ALU64:
        alu = code & 0xF0
        reg = "r" if cls == op.ALU64 else "w"
        if alu == op.END:
            if cls == op.ALU64:
                return f"({code:02x}) r{dst} = bswap{insn.imm} r{dst}"
            order = "be" if code & op.TO_BE else "le"
            return f"({code:02x}) r{dst} = {order}{insn.imm} r{dst}"
        if alu == op.NEG:
            return f"({code:02x}) {reg}{dst} = -{reg}{dst}"
        if code == op.ALU64 | op.MOV | op.X and off == op.OFF_ADDR_SPACE_CAST:
            imm = _u32(insn.imm)
            return f"({code:02x}) r{dst} = addr_space_cast(r{src}, {imm >> 16}, {imm & 0xFFFF})"
        if code == op.ALU64 | op.MOV | op.X and off == op.OFF_ADDR_PERCPU:
            return f"({code:02x}) r{dst} = &(void __percpu *)(r{src})"
        if off == op.OFF_SIGNED and alu in _SIGNED_ALU_OPS:
            text = _SIGNED_ALU_OPS[alu]
        else:
            text = _ALU_OPS.get(alu, f"<alu op {alu:#x}>")
        if code & op.X:
            cast = _MOVSX_CASTS.get(off, "") if alu == op.MOV else ""
            return f"({code:02x}) {reg}{dst} {text} {cast}{reg}{src}"
        return f"({code:02x}) {reg}{dst} {text} {_s32(insn.imm)}"

    if cls == op.JMP or cls == op.JMP32:
        jop = code & 0xF0
        if jop == op.CALL:
            return f"({code:02x}) {_call_text(insn, call_name)}"
        if code == op.OPCODE_JA:
            return f"({code:02x}) goto pc{off:+d}"
        if code == op.OPCODE_MAY_GOTO and src == op.MAY_GOTO:
            return f"({code:02x}) may_goto pc{off:+d}"
        if code == op.OPCODE_GOTOL:
            return f"({code:02x}) gotol pc{_s32(insn.imm):+d}"
        if code == op.OPCODE_EXIT:
            return f"({code:02x}) exit"
        reg = "w" if cls == op.JMP32 else "r"
        text = _JMP_OPS.get(jop, f"<jmp op {jop:#x}>")
        if code & op.X:
            return f"({code:02x}) if {reg}{dst} {text} {reg}{src} goto pc{off:+d}"
        return f"({code:02x}) if {reg}{dst} {text} {_u32(insn.imm):#x} goto pc{off:+d}"

    mode = code & 0xE0
    size = _LDST[code & 0x18]
    if cls == op.LDX:
        if mode == op.MEM:
            return f"({code:02x}) r{dst} = *({size} *)(r{src} {off:+d})"
        if mode == op.MEMSX:
            return f"({code:02x}) r{dst} = *({_LDSX[code & 0x18]} *)(r{src} {off:+d})"
        return f"BUG_ldx_{code:02x}"

    if cls == op.STX:
        if mode == op.MEM:
            return f"({code:02x}) *({size} *)(r{dst} {off:+d}) = r{src}"
        if mode == op.ATOMIC:
            imm = insn.imm
            wide = "64" if code & 0x18 == op.DW else ""
            if imm in _ATOMIC_OPS:
                return f"({code:02x}) lock *({size} *)(r{dst} {off:+d}) {_ALU_OPS[imm]} r{src}"
            if imm & op.FETCH and imm & ~op.FETCH in _ATOMIC_OPS:
                return (
                    f"({code:02x}) r{src} = atomic{wide}_fetch_{_ATOMIC_OPS[imm & ~op.FETCH]}"
                    f"(({size} *)(r{dst} {off:+d}), r{src})"
                )
            if imm == op.CMPXCHG:
                return f"({code:02x}) r0 = atomic{wide}_cmpxchg(({size} *)(r{dst} {off:+d}), r0, r{src})"
            if imm == op.XCHG:
                return f"({code:02x}) r{src} = atomic{wide}_xchg(({size} *)(r{dst} {off:+d}), r{src})"
            if imm == op.LOAD_ACQ:
                return f"({code:02x}) r{dst} = load_acquire(({size} *)(r{src} {off:+d}))"
            if imm == op.STORE_REL:
                return f"({code:02x}) store_release(({size} *)(r{dst} {off:+d}), r{src})"
        return f"BUG_{code:02x}"

    if cls == op.ST:
        if mode == op.MEM:
            return f"({code:02x}) *({size} *)(r{dst} {off:+d}) = {_s32(insn.imm)}"
        if mode == op.NOSPEC:
            return f"({code:02x}) nospec"
        return f"BUG_st_{code:02x}"

    # cls == LD
    if mode == op.ABS:
        return f"({code:02x}) r0 = *({size} *)skb[{_s32(insn.imm)}]"
    if mode == op.IND:
        return f"({code:02x}) r0 = *({size} *)skb[r{src} + {_s32(insn.imm)}]"
    if code == op.OPCODE_LD_IMM64:
        operand = imm_name(insn) if imm_name is not None else None
        return f"({code:02x}) r{dst} = {operand if operand is not None else _imm64_text(insn)}"
    return f"BUG_ld_{code:02x}"


def disassemble_lines(
    insns: Iterable[Instruction],
    *,
    numbered: bool = True,
    source: bool = True,
    symbols: bool = True,
    imm_name: NameCallback | None = None,
    call_name: NameCallback | None = None,
) -> Iterator[str]:
    """Lines of a whole program, numbered by slot like bpftool (``%4d: ``).

    With ``symbols``, a ``<name>:`` line precedes each instruction that starts a function; with
    ``source``, a ``; <source line>`` precedes each instruction that carries source metadata.
    """
    slot = 0
    for insn in insns:
        if symbols and insn.symbol is not None:
            yield f"{insn.symbol}:"
        if source and insn.source is not None:
            yield f"; {insn.source.strip()}"
        text = format_instruction(insn, imm_name=imm_name, call_name=call_name)
        yield f"{slot:4d}: {text}" if numbered else text
        slot += insn.size


def class_name(opcode: int) -> str:
    """Name of the instruction class of an opcode (``"alu64"``)."""
    return _CLASS_NAMES[opcode & 0x07]
