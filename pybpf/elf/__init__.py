"""Object files -> specs: `read("x.bpf.o")` gives a `CollectionSpec` of programs, maps, global variables
and externs, following libbpf's conventions, without touching the kernel.

Names are imported on first use, so that attaching (which needs only the section table of
`pybpf.elf.sections`) does not import the ELF reader."""

from __future__ import annotations

from pybpf._lazy import lazy_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.elf.collection import CollectionSpec, ExternSpec, Relocation, RelocKind, VariableSpec
    from pybpf.elf.reader import internal_map_name, object_name_from_path, read
    from pybpf.elf.sections import (
        SectionDef,
        SectionFlags,
        attach_target,
        find_section_def,
        section_defs,
        section_split,
    )

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
    "section_split",
]

_MODULE_OF = {
    **dict.fromkeys(("CollectionSpec", "ExternSpec", "Relocation", "RelocKind", "VariableSpec"), ".collection"),
    **dict.fromkeys(("internal_map_name", "object_name_from_path", "read"), ".reader"),
    **dict.fromkeys(("SectionDef", "SectionFlags", "attach_target", "find_section_def", "section_defs",
                      "section_split"), ".sections"),
}


__getattr__ = lazy_attributes(__name__, _MODULE_OF, globals())
