"""Hand-written BPF programs: one function per instruction form, and a `Builder` with labels.

The functions mirror the kernel's ``BPF_*`` macros (``BPF_LDX_MEM(BPF_W, dst, src, off)`` is
``ldx_mem(W, dst, src, off)``), with the same argument order. Each returns a new `Instruction`.

`Builder` appends the same forms and lets jumps and calls target labels::

    b = Builder()
    b.mov64_imm(R0, 0)
    b.jmp_imm(JEQ, R1, 0, "out")
    b.mov64_imm(R0, 1)
    b.label("out")
    b.exit()
    insns = b.instructions()   # the jump now has off=1
"""

from __future__ import annotations

from pybpf.asm import opcodes as op
from pybpf.asm.helpers import helper_id
from pybpf.asm.instruction import Instruction, Instructions

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Self

__all__ = [
    "Builder",
    "alu32_imm",
    "alu32_reg",
    "alu64_imm",
    "alu64_reg",
    "atomic_cmpxchg",
    "atomic_op",
    "atomic_xchg",
    "bswap",
    "call_helper",
    "call_kfunc",
    "call_rel",
    "endian",
    "exit_insn",
    "gotol",
    "ja",
    "jmp32_imm",
    "jmp32_reg",
    "jmp_imm",
    "jmp_reg",
    "ld_abs",
    "ld_btf_id",
    "ld_func",
    "ld_imm64",
    "ld_ind",
    "ld_map_fd",
    "ld_map_idx",
    "ld_map_idx_value",
    "ld_map_value",
    "ldx_mem",
    "ldx_memsx",
    "load_acquire",
    "may_goto",
    "mov32_imm",
    "mov32_reg",
    "mov64_imm",
    "mov64_reg",
    "movsx32_reg",
    "movsx64_reg",
    "neg32",
    "neg64",
    "st_mem",
    "store_release",
    "stx_mem",
]


def _imm32(value: int) -> int:
    """Signed 32-bit form of an immediate given signed or unsigned."""
    if not -0x80000000 <= value <= 0xFFFFFFFF:
        raise ValueError(f"immediate {value} does not fit in 32 bits")
    return value - 0x100000000 if value > 0x7FFFFFFF else value


def _imm64(value: int) -> int:
    if not -(1 << 63) <= value < (1 << 64):
        raise ValueError(f"constant {value} does not fit in 64 bits")
    return value - (1 << 64) if value >= (1 << 63) else value


def _reg(reg: int) -> int:
    if not 0 <= reg <= op.MAX_REGISTER:
        raise ValueError(f"register r{reg} does not exist (r0..r10)")
    return reg


def _off16(off: int) -> int:
    if not -0x8000 <= off <= 0x7FFF:
        raise ValueError(f"offset {off} does not fit in 16 bits")
    return off


def _size(size: int) -> int:
    if size not in (op.W, op.H, op.B, op.DW):
        raise ValueError(f"size must be one of W, H, B, DW (got {size:#x})")
    return size


def _bits(bits: int, allowed: tuple[int, ...]) -> int:
    if bits not in allowed:
        raise ValueError(f"width must be one of {allowed}, not {bits}")
    return bits


# -- ALU ---------------------------------------------------------------------------------------------
def alu64_imm(alu_op: int, dst: int, imm: int, *, signed: bool = False) -> Instruction:
    """``dst op= imm`` on 64 bits; ``signed=True`` makes DIV/MOD signed (sdiv/smod, ISA v4)."""
    return Instruction(op.ALU64 | alu_op | op.K, _reg(dst), 0, op.OFF_SIGNED if signed else 0, _imm32(imm))


def alu64_reg(alu_op: int, dst: int, src: int, *, signed: bool = False) -> Instruction:
    """``dst op= src`` on 64 bits."""
    return Instruction(op.ALU64 | alu_op | op.X, _reg(dst), _reg(src), op.OFF_SIGNED if signed else 0, 0)


def alu32_imm(alu_op: int, dst: int, imm: int, *, signed: bool = False) -> Instruction:
    """``wdst op= imm`` on 32 bits (upper half of dst zeroed)."""
    return Instruction(op.ALU | alu_op | op.K, _reg(dst), 0, op.OFF_SIGNED if signed else 0, _imm32(imm))


def alu32_reg(alu_op: int, dst: int, src: int, *, signed: bool = False) -> Instruction:
    return Instruction(op.ALU | alu_op | op.X, _reg(dst), _reg(src), op.OFF_SIGNED if signed else 0, 0)


def mov64_imm(dst: int, imm: int) -> Instruction:
    """``dst = imm`` (sign-extended to 64 bits)."""
    return alu64_imm(op.MOV, dst, imm)


def mov64_reg(dst: int, src: int) -> Instruction:
    return alu64_reg(op.MOV, dst, src)


def mov32_imm(dst: int, imm: int) -> Instruction:
    return alu32_imm(op.MOV, dst, imm)


def mov32_reg(dst: int, src: int) -> Instruction:
    return alu32_reg(op.MOV, dst, src)


def movsx64_reg(dst: int, src: int, bits: int) -> Instruction:
    """``dst = (s<bits>)src`` sign-extended to 64 bits; bits is 8, 16 or 32 (ISA v4)."""
    return Instruction(op.ALU64 | op.MOV | op.X, _reg(dst), _reg(src), _bits(bits, (8, 16, 32)), 0)


def movsx32_reg(dst: int, src: int, bits: int) -> Instruction:
    """``wdst = (s<bits>)wsrc``; bits is 8 or 16 (ISA v4)."""
    return Instruction(op.ALU | op.MOV | op.X, _reg(dst), _reg(src), _bits(bits, (8, 16)), 0)


def neg64(dst: int) -> Instruction:
    return Instruction(op.ALU64 | op.NEG | op.K, _reg(dst))


def neg32(dst: int) -> Instruction:
    return Instruction(op.ALU | op.NEG | op.K, _reg(dst))


def endian(order: int, dst: int, bits: int) -> Instruction:
    """Convert dst between host order and ``TO_LE``/``TO_BE`` order, ``bits`` 16, 32 or 64."""
    if order not in (op.TO_LE, op.TO_BE):
        raise ValueError("order must be TO_LE or TO_BE")
    return Instruction(op.ALU | op.END | order, _reg(dst), 0, 0, _bits(bits, (16, 32, 64)))


def bswap(dst: int, bits: int) -> Instruction:
    """Unconditional byte swap of the low ``bits`` (16, 32, 64) of dst (ISA v4)."""
    return Instruction(op.ALU64 | op.END | op.TO_LE, _reg(dst), 0, 0, _bits(bits, (16, 32, 64)))


# -- 64-bit immediates -------------------------------------------------------------------------------
def ld_imm64(dst: int, value: int, *, src: int = 0) -> Instruction:
    """``dst = value`` (64-bit constant, two slots). ``src`` is a pseudo value (``PSEUDO_MAP_FD``...)."""
    return Instruction(op.OPCODE_LD_IMM64, _reg(dst), src, 0, _imm64(value))


def _lo_hi(lo: int, hi: int) -> int:
    return _imm64(((hi & 0xFFFFFFFF) << 32) | (lo & 0xFFFFFFFF))


def ld_map_fd(dst: int, fd: int) -> Instruction:
    """``dst = &map`` for the map behind ``fd``."""
    return Instruction(op.OPCODE_LD_IMM64, _reg(dst), op.PSEUDO_MAP_FD, 0, _lo_hi(fd, 0))


def ld_map_value(dst: int, fd: int, off: int = 0) -> Instruction:
    """``dst = &value + off`` of a single-element array map (global data)."""
    return Instruction(op.OPCODE_LD_IMM64, _reg(dst), op.PSEUDO_MAP_VALUE, 0, _lo_hi(fd, off))


def ld_map_idx(dst: int, index: int) -> Instruction:
    """Like `ld_map_fd`, naming the map by its index in the program's ``fd_array``."""
    return Instruction(op.OPCODE_LD_IMM64, _reg(dst), op.PSEUDO_MAP_IDX, 0, _lo_hi(index, 0))


def ld_map_idx_value(dst: int, index: int, off: int = 0) -> Instruction:
    return Instruction(op.OPCODE_LD_IMM64, _reg(dst), op.PSEUDO_MAP_IDX_VALUE, 0, _lo_hi(index, off))


def ld_btf_id(dst: int, btf_id: int, btf_fd: int = 0) -> Instruction:
    """``dst = &ksym`` for a kernel variable by BTF id (``btf_fd`` selects module BTF; 0 is vmlinux)."""
    return Instruction(op.OPCODE_LD_IMM64, _reg(dst), op.PSEUDO_BTF_ID, 0, _lo_hi(btf_id, btf_fd))


def ld_func(dst: int, off: int) -> Instruction:
    """``dst = &subprog`` where the subprogram starts at ``slot + 1 + off`` (the kernel counts from this
    instruction's second slot)."""
    return Instruction(op.OPCODE_LD_IMM64, _reg(dst), op.PSEUDO_FUNC, 0, _imm32(off))


# -- legacy packet access ----------------------------------------------------------------------------
def ld_abs(size: int, imm: int) -> Instruction:
    """``r0 = *(size *)skb[imm]`` (socket filters; r6 must hold the skb)."""
    return Instruction(op.LD | op.ABS | _size(size), 0, 0, 0, _imm32(imm))


def ld_ind(size: int, src: int, imm: int) -> Instruction:
    """``r0 = *(size *)skb[src + imm]``."""
    return Instruction(op.LD | op.IND | _size(size), 0, _reg(src), 0, _imm32(imm))


# -- memory ------------------------------------------------------------------------------------------
def ldx_mem(size: int, dst: int, src: int, off: int) -> Instruction:
    """``dst = *(size *)(src + off)``."""
    return Instruction(op.LDX | op.MEM | _size(size), _reg(dst), _reg(src), _off16(off), 0)


def ldx_memsx(size: int, dst: int, src: int, off: int) -> Instruction:
    """``dst = *(signed size *)(src + off)`` sign-extended (ISA v4); size is B, H or W."""
    if size == op.DW:
        raise ValueError("sign-extending loads are 1, 2 or 4 bytes wide (B, H, W)")
    return Instruction(op.LDX | op.MEMSX | _size(size), _reg(dst), _reg(src), _off16(off), 0)


def stx_mem(size: int, dst: int, src: int, off: int) -> Instruction:
    """``*(size *)(dst + off) = src``."""
    return Instruction(op.STX | op.MEM | _size(size), _reg(dst), _reg(src), _off16(off), 0)


def st_mem(size: int, dst: int, off: int, imm: int) -> Instruction:
    """``*(size *)(dst + off) = imm``."""
    return Instruction(op.ST | op.MEM | _size(size), _reg(dst), 0, _off16(off), _imm32(imm))


def atomic_op(size: int, atomic: int, dst: int, src: int, off: int, *, fetch: bool = False) -> Instruction:
    """``lock *(size *)(dst + off) atomic= src`` for ADD/AND/OR/XOR; ``fetch`` also returns the old
    value in src. size is W or DW."""
    if atomic not in (op.ADD, op.AND, op.OR, op.XOR):
        raise ValueError("atomic_op takes ADD, AND, OR or XOR; use atomic_xchg/atomic_cmpxchg for the others")
    imm = atomic | (op.FETCH if fetch else 0)
    return Instruction(op.STX | op.ATOMIC | _size(size), _reg(dst), _reg(src), _off16(off), imm)


def atomic_xchg(size: int, dst: int, src: int, off: int) -> Instruction:
    """``src = xchg((size *)(dst + off), src)``."""
    return Instruction(op.STX | op.ATOMIC | _size(size), _reg(dst), _reg(src), _off16(off), op.XCHG)


def atomic_cmpxchg(size: int, dst: int, src: int, off: int) -> Instruction:
    """``r0 = cmpxchg((size *)(dst + off), r0, src)``."""
    return Instruction(op.STX | op.ATOMIC | _size(size), _reg(dst), _reg(src), _off16(off), op.CMPXCHG)


def load_acquire(size: int, dst: int, src: int, off: int) -> Instruction:
    """``dst = load_acquire((size *)(src + off))`` (Linux 6.15)."""
    return Instruction(op.STX | op.ATOMIC | _size(size), _reg(dst), _reg(src), _off16(off), op.LOAD_ACQ)


def store_release(size: int, dst: int, src: int, off: int) -> Instruction:
    """``store_release((size *)(dst + off), src)`` (Linux 6.15)."""
    return Instruction(op.STX | op.ATOMIC | _size(size), _reg(dst), _reg(src), _off16(off), op.STORE_REL)


# -- jumps and calls ---------------------------------------------------------------------------------
def jmp_imm(jmp_op: int, dst: int, imm: int, off: int) -> Instruction:
    """``if dst op imm goto pc+off`` (64-bit compare)."""
    return Instruction(op.JMP | jmp_op | op.K, _reg(dst), 0, _off16(off), _imm32(imm))


def jmp_reg(jmp_op: int, dst: int, src: int, off: int) -> Instruction:
    """``if dst op src goto pc+off`` (64-bit compare)."""
    return Instruction(op.JMP | jmp_op | op.X, _reg(dst), _reg(src), _off16(off), 0)


def jmp32_imm(jmp_op: int, dst: int, imm: int, off: int) -> Instruction:
    """``if wdst op imm goto pc+off`` (32-bit compare)."""
    return Instruction(op.JMP32 | jmp_op | op.K, _reg(dst), 0, _off16(off), _imm32(imm))


def jmp32_reg(jmp_op: int, dst: int, src: int, off: int) -> Instruction:
    return Instruction(op.JMP32 | jmp_op | op.X, _reg(dst), _reg(src), _off16(off), 0)


def ja(off: int) -> Instruction:
    """``goto pc+off``."""
    return Instruction(op.OPCODE_JA, 0, 0, _off16(off), 0)


def gotol(off: int) -> Instruction:
    """``gotol pc+off`` with a 32-bit offset (ISA v4)."""
    return Instruction(op.OPCODE_GOTOL, 0, 0, 0, _imm32(off))


def may_goto(off: int) -> Instruction:
    """``may_goto pc+off``: bounded-loop escape the verifier may take (Linux 6.9)."""
    return Instruction(op.OPCODE_MAY_GOTO, 0, op.MAY_GOTO, _off16(off), 0)


def call_helper(helper: int | str) -> Instruction:
    """Call a helper by id or name (``14``, ``BpfFuncId.get_current_pid_tgid``, ``"get_current_pid_tgid"``)."""
    helper_number = helper_id(helper) if isinstance(helper, str) else int(helper)
    return Instruction(op.OPCODE_CALL, 0, 0, 0, _imm32(helper_number))


def call_rel(off: int) -> Instruction:
    """bpf-to-bpf call of the subprogram ``off`` slots after the next instruction."""
    return Instruction(op.OPCODE_CALL, 0, op.PSEUDO_CALL, 0, _imm32(off))


def call_kfunc(btf_id: int, btf_fd_index: int = 0) -> Instruction:
    """Call a kernel function by BTF id; ``btf_fd_index`` picks module BTF from ``fd_array`` (0: vmlinux)."""
    return Instruction(op.OPCODE_CALL, 0, op.PSEUDO_KFUNC_CALL, _off16(btf_fd_index), _imm32(btf_id))


def exit_insn() -> Instruction:
    """``exit``: return r0."""
    return Instruction(op.OPCODE_EXIT)


# -- builder -----------------------------------------------------------------------------------------
class Builder:
    """Collects instructions; jumps, calls and function-pointer loads may target labels by name.

    Methods append one instruction and return the builder, so calls can be chained. `label` names the
    next instruction; `function` also marks it as a function start (``symbol``), which is what
    bpf-to-bpf calls in a loaded program need. `instructions` resolves label targets to offsets.
    """

    def __init__(self) -> None:
        self._insns: list[Instruction] = []
        self._labels: dict[str, int] = {}
        self._pending: list[str] = []
        self._pending_symbol: str | None = None
        self._functions: set[str] = set()
        self._label_users: list[int] = []  # instructions whose reference is a label name

    def __len__(self) -> int:
        return len(self._insns)

    def emit(self, *insns: Instruction) -> Self:
        """Append ready-made instructions."""
        for insn in insns:
            index = len(self._insns)
            for name in self._pending:
                self._labels[name] = index
            self._pending.clear()
            if self._pending_symbol is not None:
                insn.symbol = self._pending_symbol
                self._pending_symbol = None
            self._insns.append(insn)
        return self

    def label(self, name: str) -> Self:
        """Name the next instruction appended."""
        if name in self._labels or name in self._pending:
            raise ValueError(f"label {name!r} is defined twice")
        self._pending.append(name)
        return self

    def function(self, name: str) -> Self:
        """Start a function (subprogram) here: a label that also sets the next instruction's symbol."""
        if self._pending_symbol is not None:
            raise ValueError(f"function {self._pending_symbol!r} has no instructions before {name!r}")
        self.label(name)
        self._pending_symbol = name
        self._functions.add(name)
        return self

    def _target(self, insn: Instruction, target: int | str) -> Self:
        if isinstance(target, str):
            insn.reference = target
            self._label_users.append(len(self._insns))
        return self.emit(insn)

    def instructions(self) -> Instructions:
        """The program, with label targets turned into offsets. The builder can keep going after."""
        if self._pending:
            raise ValueError(
                f"label(s) {', '.join(self._pending)} at the end are not followed by an instruction"
            )
        insns = Instructions(insn.copy() for insn in self._insns)
        insns.resolve_references(self._labels)
        for index in self._label_users:
            # Plain labels are local to the builder. Only function names stay as references (the
            # loader re-resolves calls after linking); a stale label would make that fail.
            insn = insns[index]
            if insn.reference not in self._functions:
                insn.reference = None
        return insns

    # ALU
    def alu64_imm(self, alu_op: int, dst: int, imm: int, *, signed: bool = False) -> Self:
        return self.emit(alu64_imm(alu_op, dst, imm, signed=signed))

    def alu64_reg(self, alu_op: int, dst: int, src: int, *, signed: bool = False) -> Self:
        return self.emit(alu64_reg(alu_op, dst, src, signed=signed))

    def alu32_imm(self, alu_op: int, dst: int, imm: int, *, signed: bool = False) -> Self:
        return self.emit(alu32_imm(alu_op, dst, imm, signed=signed))

    def alu32_reg(self, alu_op: int, dst: int, src: int, *, signed: bool = False) -> Self:
        return self.emit(alu32_reg(alu_op, dst, src, signed=signed))

    def mov64_imm(self, dst: int, imm: int) -> Self:
        return self.emit(mov64_imm(dst, imm))

    def mov64_reg(self, dst: int, src: int) -> Self:
        return self.emit(mov64_reg(dst, src))

    def mov32_imm(self, dst: int, imm: int) -> Self:
        return self.emit(mov32_imm(dst, imm))

    def mov32_reg(self, dst: int, src: int) -> Self:
        return self.emit(mov32_reg(dst, src))

    def movsx64_reg(self, dst: int, src: int, bits: int) -> Self:
        return self.emit(movsx64_reg(dst, src, bits))

    def movsx32_reg(self, dst: int, src: int, bits: int) -> Self:
        return self.emit(movsx32_reg(dst, src, bits))

    def neg64(self, dst: int) -> Self:
        return self.emit(neg64(dst))

    def neg32(self, dst: int) -> Self:
        return self.emit(neg32(dst))

    def endian(self, order: int, dst: int, bits: int) -> Self:
        return self.emit(endian(order, dst, bits))

    def bswap(self, dst: int, bits: int) -> Self:
        return self.emit(bswap(dst, bits))

    # 64-bit immediates
    def ld_imm64(self, dst: int, value: int, *, src: int = 0) -> Self:
        return self.emit(ld_imm64(dst, value, src=src))

    def ld_map_fd(self, dst: int, fd: int) -> Self:
        return self.emit(ld_map_fd(dst, fd))

    def ld_map_value(self, dst: int, fd: int, off: int = 0) -> Self:
        return self.emit(ld_map_value(dst, fd, off))

    def ld_map_idx(self, dst: int, index: int) -> Self:
        return self.emit(ld_map_idx(dst, index))

    def ld_map_idx_value(self, dst: int, index: int, off: int = 0) -> Self:
        return self.emit(ld_map_idx_value(dst, index, off))

    def ld_btf_id(self, dst: int, btf_id: int, btf_fd: int = 0) -> Self:
        return self.emit(ld_btf_id(dst, btf_id, btf_fd))

    def ld_func(self, dst: int, target: int | str) -> Self:
        return self._target(ld_func(dst, target if isinstance(target, int) else 0), target)

    def ld_abs(self, size: int, imm: int) -> Self:
        return self.emit(ld_abs(size, imm))

    def ld_ind(self, size: int, src: int, imm: int) -> Self:
        return self.emit(ld_ind(size, src, imm))

    # memory
    def ldx_mem(self, size: int, dst: int, src: int, off: int) -> Self:
        return self.emit(ldx_mem(size, dst, src, off))

    def ldx_memsx(self, size: int, dst: int, src: int, off: int) -> Self:
        return self.emit(ldx_memsx(size, dst, src, off))

    def stx_mem(self, size: int, dst: int, src: int, off: int) -> Self:
        return self.emit(stx_mem(size, dst, src, off))

    def st_mem(self, size: int, dst: int, off: int, imm: int) -> Self:
        return self.emit(st_mem(size, dst, off, imm))

    def atomic_op(self, size: int, atomic: int, dst: int, src: int, off: int, *, fetch: bool = False) -> Self:
        return self.emit(atomic_op(size, atomic, dst, src, off, fetch=fetch))

    def atomic_xchg(self, size: int, dst: int, src: int, off: int) -> Self:
        return self.emit(atomic_xchg(size, dst, src, off))

    def atomic_cmpxchg(self, size: int, dst: int, src: int, off: int) -> Self:
        return self.emit(atomic_cmpxchg(size, dst, src, off))

    def load_acquire(self, size: int, dst: int, src: int, off: int) -> Self:
        return self.emit(load_acquire(size, dst, src, off))

    def store_release(self, size: int, dst: int, src: int, off: int) -> Self:
        return self.emit(store_release(size, dst, src, off))

    # jumps and calls (targets: a slot offset or a label name)
    def jmp_imm(self, jmp_op: int, dst: int, imm: int, target: int | str) -> Self:
        return self._target(jmp_imm(jmp_op, dst, imm, _int(target)), target)

    def jmp_reg(self, jmp_op: int, dst: int, src: int, target: int | str) -> Self:
        return self._target(jmp_reg(jmp_op, dst, src, _int(target)), target)

    def jmp32_imm(self, jmp_op: int, dst: int, imm: int, target: int | str) -> Self:
        return self._target(jmp32_imm(jmp_op, dst, imm, _int(target)), target)

    def jmp32_reg(self, jmp_op: int, dst: int, src: int, target: int | str) -> Self:
        return self._target(jmp32_reg(jmp_op, dst, src, _int(target)), target)

    def ja(self, target: int | str) -> Self:
        return self._target(ja(_int(target)), target)

    def gotol(self, target: int | str) -> Self:
        return self._target(gotol(_int(target)), target)

    def may_goto(self, target: int | str) -> Self:
        return self._target(may_goto(_int(target)), target)

    def call_helper(self, helper: int | str) -> Self:
        return self.emit(call_helper(helper))

    def call_rel(self, target: int | str) -> Self:
        """Call a function defined with `function` (by name) or at a slot offset."""
        return self._target(call_rel(_int(target)), target)

    def call_kfunc(self, btf_id: int, btf_fd_index: int = 0) -> Self:
        return self.emit(call_kfunc(btf_id, btf_fd_index))

    def exit(self) -> Self:
        return self.emit(exit_insn())


def _int(target: int | str) -> int:
    return 0 if isinstance(target, str) else target
