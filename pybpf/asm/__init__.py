"""BPF instructions: opcode constants, `Instruction`/`Instructions` (encode, decode, slot arithmetic),
the kernel-syntax disassembler and a small assembler (`Builder`) for hand-written programs.

Everything public is re-exported here, so ``from pybpf import asm`` then ``asm.mov64_imm(asm.R0, 0)``,
``asm.ALU64 | asm.MOV | asm.K`` and ``asm.Instructions.decode(data)`` all work.
"""

from pybpf.asm import builder as _builder
from pybpf.asm import opcodes as _opcodes
from pybpf.asm.builder import *  # noqa: F403  (the builder functions are this package's API)
from pybpf.asm.disasm import NameCallback, class_name, disassemble_lines, format_instruction
from pybpf.asm.helpers import helper_id, helper_name, helper_names
from pybpf.asm.instruction import ByteOrder, Instruction, Instructions
from pybpf.asm.opcodes import *  # noqa: F403  (the constants are this package's API)

__all__ = [  # noqa: RUF022  (grouped by kind)
    # data model
    "ByteOrder",
    "Instruction",
    "Instructions",
    # disassembler
    "NameCallback",
    "class_name",
    "disassemble_lines",
    "format_instruction",
    # helper names
    "helper_id",
    "helper_name",
    "helper_names",
]
__all__ += _builder.__all__
__all__ += _opcodes.__all__
