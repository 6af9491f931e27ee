"""Object files -> specs: `read("x.bpf.o")` gives a `CollectionSpec` of programs, maps, global variables
and externs, following libbpf's conventions, without touching the kernel."""

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
