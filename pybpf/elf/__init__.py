"""Object files -> specs: `read("x.bpf.o")` gives a `CollectionSpec` of programs, maps, global variables
and externs, following libbpf's conventions, without touching the kernel.

Names are imported on first use, so that attaching (which needs only the section table of
`pybpf.elf.sections`) does not import the ELF reader."""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pybpf.elf.collection import CollectionSpec, ExternSpec, Relocation, RelocKind, VariableSpec
    from pybpf.elf.reader import internal_map_name, object_name_from_path, read
    from pybpf.elf.sections import SectionDef, SectionFlags, attach_target, find_section_def, section_defs

__all__ = [
    "CollectionSpec",
    "ExternSpec",
    "RelocKind",
    "Relocation",
    "SectionDef",
    "SectionFlags",
    "VariableSpec",
    "attach_target",
    "find_section_def",
    "internal_map_name",
    "object_name_from_path",
    "read",
    "section_defs",
]

_MODULE_OF = {
    **dict.fromkeys(("CollectionSpec", "ExternSpec", "Relocation", "RelocKind", "VariableSpec"), "collection"),
    **dict.fromkeys(("internal_map_name", "object_name_from_path", "read"), "reader"),
    **dict.fromkeys(("SectionDef", "SectionFlags", "attach_target", "find_section_def", "section_defs"), "sections"),
}


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'pybpf.elf' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"pybpf.elf.{module}"), name)
    globals()[name] = value
    return value
