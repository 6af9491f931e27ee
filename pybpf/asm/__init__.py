"""BPF instructions: opcode constants, `Instruction`/`Instructions` (encode, decode, slot arithmetic),
the kernel-syntax disassembler and a small assembler (`Builder`) for hand-written programs.

Everything public is re-exported here, so ``from pybpf import asm`` then ``asm.mov64_imm(asm.R0, 0)``,
``asm.ALU64 | asm.MOV | asm.K`` and ``asm.Instructions.decode(data)`` all work. The assembler and the
disassembler are imported on first use: loading an object needs neither (~2 ms of a cold start).
"""

from __future__ import annotations

import sys

from pybpf.asm import opcodes as _opcodes
from pybpf.asm.helpers import helper_id as helper_id
from pybpf.asm.helpers import helper_name as helper_name
from pybpf.asm.helpers import helper_names as helper_names
from pybpf.asm.instruction import ByteOrder as ByteOrder
from pybpf.asm.instruction import Instruction as Instruction
from pybpf.asm.instruction import Instructions as Instructions
from pybpf.asm.opcodes import *  # noqa: F403  (the constants are this package's API)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pybpf.asm.builder import *  # noqa: F403  (the builder functions are this package's API)
    from pybpf.asm.disasm import NameCallback as NameCallback
    from pybpf.asm.disasm import class_name as class_name
    from pybpf.asm.disasm import disassemble_lines as disassemble_lines
    from pybpf.asm.disasm import format_instruction as format_instruction

_EAGER = ["ByteOrder", "Instruction", "Instructions", "helper_id", "helper_name", "helper_names", *_opcodes.__all__]
_LAZY_MODULES = ("pybpf.asm.builder", "pybpf.asm.disasm")


def __getattr__(name: str) -> Any:
    if name == "__all__":  # read by `from pybpf.asm import *`
        from pybpf.asm import builder, disasm

        names = [*_EAGER, *disasm.__all__, *builder.__all__]
        globals()["__all__"] = names
        return names
    if not name.startswith("__"):
        for module_name in _LAZY_MODULES:
            __import__(module_name)
            module = sys.modules[module_name]
            if name in module.__all__:
                value = getattr(module, name)
                globals()[name] = value
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__getattr__("__all__")))
