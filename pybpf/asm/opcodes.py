"""BPF opcode constants: the project's single source for them.

An opcode byte is split three ways, depending on the instruction class (low three bits):

* ALU / ALU64 / JMP / JMP32: ``op (4 bits) | source (1 bit) | class (3 bits)``
* LD / LDX / ST / STX:       ``mode (3 bits) | size (2 bits) | class (3 bits)``

The names follow the kernel's ``BPF_*`` macros without the prefix (``BPF_ALU64`` -> ``ALU64``), so
``ALU64 | MOV | K`` reads like ``BPF_ALU64 | BPF_MOV | BPF_K``. Values that are not opcode bits (pseudo
``src`` register values, special ``off`` and ``imm`` values) keep a descriptive prefix.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Final

__all__ = [
    "ABS",
    "ADD",
    "ALU",
    "ALU64",
    "AND",
    "ARSH",
    "ATOMIC",
    "ATOMIC_LOAD",
    "ATOMIC_STORE",
    "CALL",
    "CMPXCHG",
    "DIV",
    "DW",
    "END",
    "EXIT",
    "FETCH",
    "IMM",
    "IND",
    "JA",
    "JCOND",
    "JEQ",
    "JGE",
    "JGT",
    "JLE",
    "JLT",
    "JMP",
    "JMP32",
    "JNE",
    "JSET",
    "JSGE",
    "JSGT",
    "JSLE",
    "JSLT",
    "LD",
    "LDX",
    "LOAD_ACQ",
    "LSH",
    "MAX_REGISTER",
    "MAY_GOTO",
    "MEM",
    "MEMSX",
    "MOD",
    "MOV",
    "MUL",
    "NEG",
    "NOSPEC",
    "OFF_ADDR_PERCPU",
    "OFF_ADDR_SPACE_CAST",
    "OFF_SIGNED",
    "OPCODE_CALL",
    "OPCODE_EXIT",
    "OPCODE_GOTOL",
    "OPCODE_JA",
    "OPCODE_LD_IMM64",
    "OPCODE_MAY_GOTO",
    "OR",
    "PSEUDO_BTF_ID",
    "PSEUDO_CALL",
    "PSEUDO_FUNC",
    "PSEUDO_KFUNC_CALL",
    "PSEUDO_MAP_FD",
    "PSEUDO_MAP_IDX",
    "PSEUDO_MAP_IDX_VALUE",
    "PSEUDO_MAP_VALUE",
    "R0",
    "R1",
    "R2",
    "R3",
    "R4",
    "R5",
    "R6",
    "R7",
    "R8",
    "R9",
    "R10",
    "RSH",
    "SIZE_BYTES",
    "ST",
    "STORE_REL",
    "STX",
    "SUB",
    "TO_BE",
    "TO_LE",
    "XCHG",
    "XOR",
    "B",
    "H",
    "K",
    "W",
    "X",
    "class_of",
    "is_alu",
    "is_jump_class",
    "is_load_store",
    "mode_of",
    "op_of",
    "size_bytes",
    "size_for_bytes",
    "size_of",
    "source_of",
]

# Instruction classes (code & 0x07).
LD: Final = 0x00
LDX: Final = 0x01
ST: Final = 0x02
STX: Final = 0x03
ALU: Final = 0x04
JMP: Final = 0x05
JMP32: Final = 0x06
ALU64: Final = 0x07

# Access sizes for load/store classes (code & 0x18).
W: Final = 0x00  # 32 bits
H: Final = 0x08  # 16 bits
B: Final = 0x10  # 8 bits
DW: Final = 0x18  # 64 bits

# Modes for load/store classes (code & 0xe0).
IMM: Final = 0x00
ABS: Final = 0x20
IND: Final = 0x40
MEM: Final = 0x60
MEMSX: Final = 0x80  # sign-extending load (ISA v4)
ATOMIC: Final = 0xC0
NOSPEC: Final = 0xC0  # ST class only; inserted by the verifier, never loaded

# Operand source for ALU/JMP classes (code & 0x08).
K: Final = 0x00  # 32-bit immediate
X: Final = 0x08  # source register
# Byte-order conversion direction for END (same bit as the source).
TO_LE: Final = 0x00
TO_BE: Final = 0x08

# ALU operations (code & 0xf0).
ADD: Final = 0x00
SUB: Final = 0x10
MUL: Final = 0x20
DIV: Final = 0x30
OR: Final = 0x40
AND: Final = 0x50
LSH: Final = 0x60
RSH: Final = 0x70
NEG: Final = 0x80
MOD: Final = 0x90
XOR: Final = 0xA0
MOV: Final = 0xB0
ARSH: Final = 0xC0
END: Final = 0xD0  # ALU: to_le/to_be; ALU64: unconditional bswap (ISA v4)

# Jump operations (code & 0xf0).
JA: Final = 0x00
JEQ: Final = 0x10
JGT: Final = 0x20
JGE: Final = 0x30
JSET: Final = 0x40
JNE: Final = 0x50
JSGT: Final = 0x60
JSGE: Final = 0x70
CALL: Final = 0x80
EXIT: Final = 0x90
JLT: Final = 0xA0
JLE: Final = 0xB0
JSLT: Final = 0xC0
JSLE: Final = 0xD0
JCOND: Final = 0xE0  # pseudo jump, src selects the condition (may_goto)

# Atomic operations (imm of STX|ATOMIC). ADD/AND/OR/XOR above are also valid there.
FETCH: Final = 0x01  # modifier: also return the old value in src
XCHG: Final = 0xE0 | FETCH
CMPXCHG: Final = 0xF0 | FETCH
ATOMIC_LOAD: Final = 0x10
ATOMIC_STORE: Final = 0x20
LOAD_ACQ: Final = ATOMIC_LOAD | 0x01  # load-acquire (Linux 6.15)
STORE_REL: Final = ATOMIC_STORE | 0x02  # store-release (Linux 6.15)

# Whole opcodes used often enough to name.
OPCODE_LD_IMM64: Final = LD | IMM | DW  # 0x18, the only two-slot instruction
OPCODE_CALL: Final = JMP | CALL  # 0x85
OPCODE_EXIT: Final = JMP | EXIT  # 0x95
OPCODE_JA: Final = JMP | JA  # 0x05
OPCODE_GOTOL: Final = JMP32 | JA  # 0x06, 32-bit offset in imm (ISA v4)
OPCODE_MAY_GOTO: Final = JMP | JCOND  # 0xe5

# src register values of ld_imm64: what the 64-bit constant means.
PSEUDO_MAP_FD: Final = 1  # imm = map fd
PSEUDO_MAP_VALUE: Final = 2  # imm = map fd, next imm = offset into the map value
PSEUDO_BTF_ID: Final = 3  # imm = BTF id of a kernel variable (ksym)
PSEUDO_FUNC: Final = 4  # imm = relative offset of a subprogram (callback pointer)
PSEUDO_MAP_IDX: Final = 5  # imm = index into fd_array
PSEUDO_MAP_IDX_VALUE: Final = 6  # imm = index into fd_array, next imm = offset

# src register values of a call.
PSEUDO_CALL: Final = 1  # bpf-to-bpf call, imm = relative offset
PSEUDO_KFUNC_CALL: Final = 2  # kernel function, imm = BTF id, off = index of the module BTF fd

# src register value of JMP|JCOND.
MAY_GOTO: Final = 0

# Special off values.
OFF_SIGNED: Final = 1  # DIV/MOD with off=1 are sdiv/smod (ISA v4)
OFF_ADDR_SPACE_CAST: Final = 1  # ALU64|MOV|X with off=1: addr_space_cast, imm = dst_as << 16 | src_as
OFF_ADDR_PERCPU: Final = -1  # ALU64|MOV|X with off=-1: per-CPU address (kernel internal)

# Registers.
R0: Final = 0
R1: Final = 1
R2: Final = 2
R3: Final = 3
R4: Final = 4
R5: Final = 5
R6: Final = 6
R7: Final = 7
R8: Final = 8
R9: Final = 9
R10: Final = 10  # read-only frame pointer
MAX_REGISTER: Final = 10


def class_of(opcode: int) -> int:
    """The instruction class (``LD`` ... ``ALU64``)."""
    return opcode & 0x07


def op_of(opcode: int) -> int:
    """The ALU or jump operation of an ALU/JMP-class opcode."""
    return opcode & 0xF0


def source_of(opcode: int) -> int:
    """``K`` or ``X`` for ALU/JMP classes (``TO_LE``/``TO_BE`` for ``END``)."""
    return opcode & 0x08


def mode_of(opcode: int) -> int:
    """The mode of a load/store-class opcode."""
    return opcode & 0xE0


def size_of(opcode: int) -> int:
    """The size field (``W``/``H``/``B``/``DW``) of a load/store-class opcode."""
    return opcode & 0x18


SIZE_BYTES: Final[dict[int, int]] = {W: 4, H: 2, B: 1, DW: 8}


def size_bytes(size: int) -> int:
    """Bytes accessed by a size field value: ``size_bytes(DW) == 8``."""
    return SIZE_BYTES[size & 0x18]


def size_for_bytes(nbytes: int) -> int:
    """The size field value for an access width in bytes: ``size_for_bytes(4) == W``."""
    for field, width in SIZE_BYTES.items():
        if width == nbytes:
            return field
    raise ValueError(f"BPF loads and stores are 1, 2, 4 or 8 bytes wide, not {nbytes}")


def is_alu(opcode: int) -> bool:
    return opcode & 0x07 in (ALU, ALU64)


def is_jump_class(opcode: int) -> bool:
    return opcode & 0x07 in (JMP, JMP32)


def is_load_store(opcode: int) -> bool:
    return opcode & 0x07 <= STX
