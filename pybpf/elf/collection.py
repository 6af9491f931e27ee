"""What reading an object file produces: plain data, no file descriptors, nothing kernel-specific."""

from __future__ import annotations

from pybpf._sys.record import field, record
from pybpf.btf.ext import BTFExt, CoreRelo
from pybpf.btf.spec import Spec
from pybpf.btf.types import Type

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Literal, TypeAlias

    from pybpf.map import MapSpec
    from pybpf.program import ProgramSpec

__all__ = ["CollectionSpec", "ExternSpec", "RelocKind", "Relocation", "VariableSpec"]

# What an instruction's `reference` names, and so what the loader has to put into it:
#   "map"       ld_imm64 src=PSEUDO_MAP_FD: the map's fd (reference: key in CollectionSpec.maps)
#   "map_value" ld_imm64 src=PSEUDO_MAP_VALUE: the map's fd in the low 32 bits; the upper 32 bits already
#               hold the offset into the value (global variables: reference is ".data", ".rodata", ...)
#   "kconfig"   like map_value, into the ".kconfig" map, at the extern's offset
#   "ksym"      ld_imm64 of a kernel variable: typed ones have src=PSEUDO_BTF_ID (imm: BTF id | btf fd << 32),
#               typeless ones src=0 (imm: the address from kallsyms); reference: the extern's name
#   "kfunc"     call src=PSEUDO_KFUNC_CALL: imm = BTF id, off = fd_array index of module BTF (0: vmlinux)
#   "call"      call src=PSEUDO_CALL to a subprogram, already resolved (reference: the subprogram's name)
#   "func"      ld_imm64 src=PSEUDO_FUNC (callback address), already resolved
if TYPE_CHECKING:
    RelocKind: TypeAlias = Literal["map", "map_value", "kconfig", "ksym", "kfunc", "call", "func"]
else:
    RelocKind = str  # a type alias: type checkers see the Literal above


@record(frozen=True, slots=True)
class Relocation:
    """One instruction of a program that refers to a symbol. `index` counts instructions (not slots) of
    `ProgramSpec.instructions`; `offset` is the byte offset into the target for map_value/kconfig."""

    index: int
    kind: RelocKind
    target: str
    offset: int = 0


@record(slots=True)
class VariableSpec:
    """A global variable: `size` bytes at `offset` in the value of map `section` (a key of
    CollectionSpec.maps: ".data", ".rodata", ".bss", ".data.foo"...). `type` is the variable's BTF type
    (not the VAR itself). `read_only` for .rodata* (set them before load); `static` for variables with
    static linkage or hidden visibility, which libbpf does not expose through skeletons."""

    name: str
    section: str
    offset: int
    size: int
    type: Type
    read_only: bool = False
    static: bool = False

    def initial_value(self, spec: CollectionSpec) -> bytes:
        """The variable's bytes in the object file (zeros for .bss)."""
        data = spec.maps[self.section].data
        if data is None:
            return bytes(self.size)
        return bytes(data[self.offset : self.offset + self.size])


@record(slots=True)
class ExternSpec:
    """An `extern` the loader resolves against the running kernel.

    kind "kconfig": a `__kconfig` variable; its value goes at `offset` (size `size`) into the ".kconfig"
    map. kind "ksym": a `__ksym` kernel variable (`typed`: has a BTF type, resolved by BTF id; otherwise
    by kallsyms address). kind "kfunc": a `__ksym` kernel function called from BPF. `weak` externs may stay
    unresolved (value 0 / call poisoned) instead of failing the load. `type` is the BTF VAR or FUNC.
    """

    name: str
    kind: Literal["kconfig", "ksym", "kfunc"]
    type: Type
    weak: bool = False
    offset: int = 0
    size: int = 0
    typed: bool = False


@record(slots=True)
class CollectionSpec:
    """Everything in one BPF object file.

    `maps` keys are map names for BTF-defined and legacy maps, and the ELF section name for global data
    (".data", ".rodata", ".bss", ".rodata.foo", ".kconfig"); `MapSpec.name` holds the name libbpf would
    give the kernel object (e.g. "myobj.rodata").

    `core_relos[program]` lists the CO-RE relocations of a program and of every subprogram appended to it,
    as (instruction index in `ProgramSpec.instructions`, relocation); the loader applies them against the
    kernel's BTF. `relocations[program]` indexes every instruction whose `reference` the loader must fill
    (the same information is on the instructions themselves: `Instruction.reference` and `src`).
    """

    name: str = ""
    path: str = ""
    programs: dict[str, ProgramSpec] = field(default_factory=dict)
    maps: dict[str, MapSpec] = field(default_factory=dict)
    variables: dict[str, VariableSpec] = field(default_factory=dict)
    externs: dict[str, ExternSpec] = field(default_factory=dict)
    core_relos: dict[str, list[tuple[int, CoreRelo]]] = field(default_factory=dict)
    relocations: dict[str, list[Relocation]] = field(default_factory=dict)
    license: str = ""
    kernel_version: int = 0
    btf: Spec | None = None
    btf_ext: BTFExt | None = None
    # What pybpf.btf.marshal.fixup_datasecs needs to make `btf` loadable (libbpf's DATASEC fix-up):
    # ELF section sizes, (section, symbol) -> offset, and (section, symbol) pairs with hidden visibility.
    # ".kconfig" entries carry the extern layout computed here.
    section_sizes: dict[str, int] = field(default_factory=dict)
    symbol_offsets: dict[tuple[str, str], int] = field(default_factory=dict)
    hidden_symbols: set[tuple[str, str]] = field(default_factory=set)
    # Global functions with hidden visibility: static in the BTF given to the kernel, as libbpf loads them.
    hidden_functions: set[str] = field(default_factory=set)
