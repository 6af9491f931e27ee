"""Read a clang-compiled, libbpf-style BPF object file into a `CollectionSpec`.

The reader follows libbpf's `bpf_object__open` (elf_collect, collect_externs, init_maps, collect_relos,
relocate_calls) but stops where the kernel comes in: map fds, BTF ids of kernel symbols, kconfig values
and CO-RE are left to the loader, recorded on the instructions (`Instruction.reference` + `src`) and in
the spec.

Speed: the ELF header, section header table, symbols and relocations are read with `struct` (no
pyelftools, no numpy: both cost more to import than a whole load), and program bytes are patched in place before one `Instructions.decode` per
program, so only instructions that carry metadata (function starts, references, source lines) become
Python objects.
"""

from __future__ import annotations

import bisect
import mmap
import os
import struct

from pybpf import asm
from pybpf._sys import object_name
from pybpf._sys import types as T
from pybpf._sys.record import field, record
from pybpf.asm.instruction import byte_positions
from pybpf.btf import ext as btf_ext
from pybpf.btf.ext import BTFExt, CoreRelo
from pybpf.btf.spec import Spec
from pybpf.btf.types import (
    Array,
    Datasec,
    Enum,
    Func,
    FuncProto,
    Pointer,
    Struct,
    Type,
    Var,
    VarLinkage,
    Void,
    alignof,
    sizeof,
)
from pybpf.elf.collection import CollectionSpec, ExternSpec, Relocation, RelocKind, VariableSpec
from pybpf.elf.sections import SectionFlags, attach_target, find_section_def
from pybpf.errors import ObjectError
from pybpf.map import MapSpec
from pybpf.program import ProgramSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import Any, NoReturn

__all__ = ["internal_map_name", "object_name_from_path", "read"]

# ---- ELF constants (the ELF ABI; not kernel structs) ----------------------------------------------------

EM_BPF = 247
EM_NONE = 0
SHT_NULL, SHT_PROGBITS, SHT_SYMTAB, SHT_STRTAB, SHT_RELA = 0, 1, 2, 3, 4
SHT_NOBITS, SHT_REL = 8, 9
SHT_LLVM_ADDRSIG = 0x6FFF4C03
SHF_EXECINSTR = 0x4
STB_LOCAL, STB_GLOBAL, STB_WEAK = 0, 1, 2
STT_NOTYPE, STT_OBJECT, STT_FUNC, STT_SECTION = 0, 1, 2, 3
STV_INTERNAL, STV_HIDDEN = 1, 2
SHN_UNDEF = 0
SHN_LORESERVE = 0xFF00
SHN_XINDEX = 0xFFFF

# Section types defined by the ELF spec; OS- and processor-specific ones (0x60000000 and up) are allowed too.
_KNOWN_SHT = frozenset({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 14, 15, 16, 17, 18})
_SHT_LOOS = 0x60000000

# Elf64_Ehdr after e_ident: type, machine, version, entry, phoff, shoff, flags, ehsize, phentsize, phnum,
# shentsize, shnum, shstrndx.
_EHDR = struct.Struct("<16xHHIQQQIHHHHHH")
# Elf64_Shdr: name, type, flags, addr, offset, size, link, info, addralign, entsize.
_SHDR = struct.Struct("<IIQQQQIIQQ")
_SYM = struct.Struct("<IBBHQQ")  # Elf64_Sym: name, info, other, shndx, value, size
_REL = struct.Struct("<QQ")  # Elf64_Rel: offset, info
ET_REL = 1
_ET_NAMES = {0: "ET_NONE", 1: "ET_REL", 2: "ET_EXEC", 3: "ET_DYN", 4: "ET_CORE"}

_INSN = 8
_OP_LD_IMM64 = asm.OPCODE_LD_IMM64
_OP_CALL = asm.OPCODE_CALL
_BPF_MAP_DEF = struct.Struct(
    "<5I"
)  # legacy struct bpf_map_def: type, key_size, value_size, max_entries, flags
_FUNC_INFO = struct.Struct("<II")  # kernel struct bpf_func_info: insn_off (in instructions), type_id
_LINE_INFO = struct.Struct("<IIII")  # kernel struct bpf_line_info
_I32 = struct.Struct("<i")
_U32 = struct.Struct("<I")
_OBJ_NAME_LEN = T.BPF_OBJ_NAME_LEN  # 16, NUL included

_MAX_NOBITS = 1 << 30  # .bss larger than this cannot be a BPF array value; refuse instead of allocating
_MAPS_SEC = ".maps"
_LEGACY_MAPS_SEC = "maps"
_KCONFIG_SEC = ".kconfig"
_KSYMS_SEC = ".ksyms"
_TEXT_SEC = ".text"
_MAP_IN_MAP = (T.MapType.ARRAY_OF_MAPS, T.MapType.HASH_OF_MAPS)
_RINGBUFS = (T.MapType.RINGBUF, T.MapType.USER_RINGBUF)

# Whatever a malformed file can make the parsing code raise; turned into ObjectError.
_PARSE_ERRORS: tuple[type[BaseException], ...] = (
    struct.error,
    ValueError,
    IndexError,
    KeyError,
    UnicodeDecodeError,
    OverflowError,
    ZeroDivisionError,
    RecursionError,
    AssertionError,
)

# ---- public API -----------------------------------------------------------------------------------------


def read(
    source: str | os.PathLike[str] | bytes | bytearray | memoryview, *, name: str | None = None
) -> CollectionSpec:
    """Read a BPF object file (a path, or its bytes) into a `CollectionSpec`. Never touches the kernel.

    `name` is the object name used to prefix global data map names as libbpf does (default: the file
    name up to its first dot, e.g. "foo" for "foo.bpf.o"; empty for bytes). Raises `ObjectError` (naming
    the section and offset) for anything malformed.
    """
    path = ""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
    else:
        path = os.fspath(source)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise ObjectError(f"cannot read object file: {exc.strerror or exc}", path=path) from None
    if name is None:
        name = object_name_from_path(path) if path else ""
    reader = _Reader(data, path, name)
    try:
        return reader.read()
    except ObjectError as exc:
        if exc.path or not path:
            raise
        raise _with_path(exc, path) from None
    except _PARSE_ERRORS as exc:
        where = reader.where
        detail = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        raise ObjectError(
            f"malformed object file ({detail}); it is truncated or corrupt - recompile it",
            section=where,
            path=path,
        ) from None


def object_name_from_path(path: str) -> str:
    """libbpf's object name: the file name cut to 15 characters, then at its first dot ("foo.bpf.o" -> "foo")."""
    base = os.path.basename(path)[: _OBJ_NAME_LEN - 1]
    return base.split(".", 1)[0]


def internal_map_name(obj_name: str, section: str) -> str:
    """The kernel name libbpf gives the map of a global data section, e.g. ("my_object_name", ".rodata")
    -> "my_objec.rodata"; custom sections (".data.foo") drop the object prefix; 15 characters at most."""
    sfx_len = min(max(7, len(section)), _OBJ_NAME_LEN - 1)
    pfx_len = 0 if "." in section[1:] else min(_OBJ_NAME_LEN - sfx_len - 1, len(obj_name))
    return object_name(obj_name[:pfx_len] + section[:sfx_len])


def _with_path(exc: ObjectError, path: str) -> ObjectError:
    new = ObjectError(str(exc), path=path)
    new.section, new.offset = exc.section, exc.offset
    return new


# ---- internal model -------------------------------------------------------------------------------------


@record(frozen=True, slots=True)
class _Section:
    num: int
    name: str
    type: int
    flags: int
    offset: int
    size: int
    link: int
    info: int
    entsize: int


@record(frozen=True, slots=True)
class _Symbol:
    num: int
    name: str
    bind: int
    type: int
    visibility: int
    shndx: int
    value: int
    size: int

    @property
    def hidden(self) -> bool:
        return self.visibility in (STV_HIDDEN, STV_INTERNAL)


@record(slots=True, eq=False)
class _Func:
    """A function symbol: `nslots` 8-byte slots from `start` (a slot index) in exec section `sec`."""

    name: str
    sec: int
    start: int
    nslots: int
    entry: bool
    # Filled lazily: (slot relative to start, reloc) for every instruction that needs fixing up.
    fixups: list[tuple[int, _Reloc]] | None = None


@record(slots=True)
class _Reloc:
    kind: RelocKind
    target: str = ""  # map key, extern name or function name
    offset: int = 0  # map_value/kconfig: offset into the value
    func: _Func | None = None  # call/func: the callee
    src: int = 0  # src register value to set (ld_imm64 / call)


@record(slots=True)
class _DataSection:
    section: _Section
    key: str
    read_only: bool
    datasec: Datasec | None = None
    map: MapSpec | None = None


@record(slots=True)
class _Placed:
    func: _Func
    base: int  # slot where the function starts in the assembled program


@record(slots=True)
class _Assembly:
    code: bytearray
    placed: list[_Placed] = field(default_factory=list)
    relocs: list[tuple[int, _Reloc]] = field(default_factory=list)  # (slot in program, reloc)


# ---- the reader -----------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, path: str, name: str) -> None:
        self.data = data
        self.path = path
        self.name = name
        self.where = ""  # section being worked on, for error messages
        self.sections: list[_Section] = []
        self.symbols: list[_Symbol] = []
        self.btf: Spec | None = None
        self.ext: BTFExt | None = None
        self.license = ""
        self.kernel_version = 0
        self.funcs: dict[int, dict[int, _Func]] = {}  # exec section -> start slot -> function
        self.func_starts: dict[int, list[int]] = {}  # exec section -> sorted start slots
        self.reloc_slots: dict[int, list[int]] = {}  # exec section -> sorted relocated slots
        self.pseudo_calls: dict[int, list[int]] = {}  # exec section -> slots of bpf-to-bpf calls
        self.pseudo_funcs: dict[int, list[int]] = {}  # exec section -> slots of ld_imm64 src=PSEUDO_FUNC
        self.ext_index: dict[tuple[str, str], tuple[list[int], list[Any]]] = {}
        self.relocs: dict[int, dict[int, _Reloc]] = {}  # exec section -> slot -> relocation
        self.maps: dict[str, MapSpec] = {}
        self.map_at: dict[tuple[int, int], str] = {}  # (section, offset) -> map key (.maps and legacy maps)
        self.btf_map_vars: dict[str, tuple[int, int, Struct]] = {}  # map -> (offset, size, definition)
        self.data_secs: dict[int, _DataSection] = {}
        self.externs: dict[str, ExternSpec] = {}
        self.extern_syms: dict[int, ExternSpec] = {}  # symbol index -> extern
        self.section_sizes: dict[str, int] = {}
        self.symbol_offsets: dict[tuple[str, str], int] = {}
        self.hidden_symbols: set[tuple[str, str]] = set()
        self.hidden_functions: set[str] = set()

    # -- errors -----------------------------------------------------------------------------------------
    def fail(self, message: str, section: str | None = None, offset: int | None = None) -> NoReturn:
        raise ObjectError(
            message, section=self.where if section is None else section, offset=offset, path=self.path
        )

    # -- top level --------------------------------------------------------------------------------------
    def read(self) -> CollectionSpec:
        self._parse_elf()
        self._parse_symbols()
        exec_secs: list[_Section] = []
        rel_secs: list[_Section] = []
        maps_sec = legacy_sec = btf_sec = ext_sec = None
        for sec in self.sections:
            self.where = sec.name
            if sec.num == 0 or self._ignored(sec):
                continue
            if sec.type not in _KNOWN_SHT and sec.type < _SHT_LOOS:
                self.fail(f"unknown section type {sec.type:#x}", offset=None)
            name = sec.name
            # The loader's DATASEC fix-up needs every section's size (.maps, license, data sections).
            self.section_sizes.setdefault(name, sec.size)
            if name == "license":
                self.license = self._section_data(sec).split(b"\0", 1)[0].decode("utf-8", "replace")
            elif name == "version":
                raw = self._section_data(sec)
                if len(raw) != 4:
                    self.fail(f"the version section must hold one 4-byte integer, not {len(raw)} bytes")
                (self.kernel_version,) = _U32.unpack(raw)
            elif name == _LEGACY_MAPS_SEC:
                legacy_sec = sec
            elif name == _MAPS_SEC:
                maps_sec = sec
            elif name == ".BTF":
                btf_sec = sec
            elif name == ".BTF.ext":
                ext_sec = sec
            elif sec.type == SHT_SYMTAB:
                pass
            elif sec.type == SHT_PROGBITS and sec.size > 0:
                if sec.flags & SHF_EXECINSTR:
                    exec_secs.append(sec)
                elif name == ".data" or name.startswith(".data."):
                    self.data_secs[sec.num] = _DataSection(sec, name, False)
                elif name == ".rodata" or name.startswith(".rodata."):
                    self.data_secs[sec.num] = _DataSection(sec, name, True)
            elif sec.type == SHT_NOBITS and sec.size > 0 and (name == ".bss" or name.startswith(".bss.")):
                self.data_secs[sec.num] = _DataSection(sec, name, False)
            elif sec.type == SHT_REL:
                rel_secs.append(sec)
            elif (
                sec.type == SHT_RELA
                and sec.info < len(self.sections)
                and self.sections[sec.info].flags & SHF_EXECINSTR
            ):
                self.fail(
                    f"RELA relocations for {self.sections[sec.info].name!r} are not used by BPF objects (expected REL)"
                )
        for data_sec in self.data_secs.values():
            self.section_sizes[data_sec.key] = data_sec.section.size

        if btf_sec is not None:
            self.where = ".BTF"
            self.btf = Spec(self._section_data(btf_sec), name=f"{self.path or self.name}:.BTF")
            if ext_sec is not None:
                self.where = ".BTF.ext"
                self.ext = btf_ext.parse_ext(self._section_data(ext_sec), self.btf)
        self._collect_symbol_offsets()
        self._collect_externs()
        if maps_sec is not None:
            self._btf_maps(maps_sec)
        if legacy_sec is not None:
            self._legacy_maps(legacy_sec)
        self._data_maps()
        self._kconfig_map()
        func_syms: dict[int, list[_Symbol]] = {}
        for sym in self.symbols:
            if sym.type == STT_FUNC:
                func_syms.setdefault(sym.shndx, []).append(sym)
        for sec in exec_secs:
            self._functions(sec, func_syms.get(sec.num, []))
        for sec in rel_secs:
            self.where = sec.name
            if sec.info >= len(self.sections):
                self.fail(f"relocation section points at section {sec.info}, which does not exist")
            target = self.sections[sec.info]
            if target.flags & SHF_EXECINSTR and target.num in self.funcs:
                self._code_relocations(sec, target)
            elif maps_sec is not None and target.num == maps_sec.num:
                pass  # after programs: slots may name programs
        spec = CollectionSpec(
            name=self.name,
            path=self.path,
            maps=self.maps,
            externs=self.externs,
            license=self.license,
            kernel_version=self.kernel_version,
            btf=self.btf,
            btf_ext=self.ext,
        )
        self._programs(spec)
        if maps_sec is not None:
            for sec in rel_secs:
                if sec.info == maps_sec.num:
                    self.where = sec.name
                    self._map_slots(sec, maps_sec, spec)
        spec.variables = self._variables()
        spec.section_sizes = self.section_sizes
        spec.symbol_offsets = self.symbol_offsets
        spec.hidden_symbols = self.hidden_symbols
        spec.hidden_functions = self.hidden_functions
        return spec

    # -- ELF layout ------------------------------------------------------------------------------------
    def _parse_elf(self) -> None:
        data = self.data
        self.where = "ELF header"
        if len(data) < _EHDR.size:
            self.fail(f"file is {len(data)} bytes, too short for an ELF header", offset=0)
        if data[:4] != b"\x7fELF":
            self.fail("not an ELF file (bad magic)", offset=0)
        if data[4] != 2:  # EI_CLASS
            self.fail("not a 64-bit ELF file; BPF objects are ELF64", offset=4)
        if data[5] != 1:  # EI_DATA
            self.fail("not a little-endian ELF file; big-endian BPF objects are not supported", offset=5)
        (e_type, machine, _version, _entry, _phoff, shoff, _flags, _ehsize, _phentsize, _phnum, shentsize,
         shnum, shstrndx) = _EHDR.unpack_from(data)
        if e_type != ET_REL:
            self.fail(
                f"not a relocatable object (e_type {_ET_NAMES.get(e_type, e_type)}); pass the .o clang produced",
                offset=16,
            )
        if machine not in (EM_BPF, EM_NONE):
            self.fail(f"not a BPF object (e_machine {machine}); compile with clang -target bpf", offset=18)
        if shentsize != _SHDR.size and shoff:
            self.fail(f"section header entries are {shentsize} bytes, not {_SHDR.size}", offset=58)
        if shoff == 0:
            self.fail("the file has no section header table", offset=40)
        if shoff + _SHDR.size > len(data):
            self.fail(f"section header table at {shoff:#x} lies past the end of the file", offset=40)
        first = _SHDR.unpack_from(data, shoff)
        if shnum == 0:  # extended numbering: the count lives in section 0
            shnum = first[5]
        if shstrndx == SHN_XINDEX:
            shstrndx = first[6]
        if shoff + shnum * _SHDR.size > len(data):
            self.fail(
                f"section header table ({shnum} entries at {shoff:#x}) runs past the end of the file "
                f"({len(data)} bytes); the file is truncated",
                offset=shoff,
            )
        if not 0 < shstrndx < shnum:
            self.fail(f"section name table index {shstrndx} is out of range", offset=62)
        rows = list(_SHDR.iter_unpack(memoryview(data)[shoff : shoff + shnum * _SHDR.size]))
        names_hdr = rows[shstrndx]
        self.where = "section names"
        names = self._bytes_at(names_hdr[4], names_hdr[5], "section name table")
        sections = []
        for i, (name_off, sh_type, flags, _addr, offset, size, link, info, _align, entsize) in enumerate(rows):
            if name_off >= len(names) and i:
                self.fail(
                    f"section {i} has a name offset {name_off} past the section name table",
                    offset=shoff + i * 64,
                )
            end = names.find(b"\0", name_off)
            name = names[name_off : end if end >= 0 else len(names)].decode("utf-8", "replace")
            sections.append(_Section(i, name, sh_type, flags, offset, size, link, info, entsize))
        self.sections = sections

    def _bytes_at(self, offset: int, size: int, what: str) -> bytes:
        if offset + size > len(self.data):
            self.fail(
                f"{what} ({size} bytes at {offset:#x}) runs past the end of the file ({len(self.data)} bytes); "
                "the file is truncated",
                offset=offset,
            )
        return self.data[offset : offset + size]

    def _section_data(self, sec: _Section) -> bytes:
        if sec.type == SHT_NOBITS:
            if sec.size > _MAX_NOBITS:
                self.fail(
                    f"zero-filled section of {sec.size} bytes is implausibly large (no BPF map value can hold "
                    "it); the file is corrupt",
                    section=sec.name,
                )
            return bytes(sec.size)
        if sec.offset + sec.size > len(self.data):
            self.fail(
                f"section data ({sec.size} bytes at file offset {sec.offset:#x}) runs past the end of the file "
                f"({len(self.data)} bytes); the file is truncated",
                section=sec.name,
                offset=sec.offset,
            )
        return self.data[sec.offset : sec.offset + sec.size]

    @staticmethod
    def _ignored(sec: _Section) -> bool:
        name = sec.name
        if sec.type in (SHT_STRTAB, SHT_LLVM_ADDRSIG, SHT_NULL):
            return True
        if sec.type == SHT_PROGBITS and sec.size == 0 and name == _TEXT_SEC:
            return True
        if name.startswith(".debug_"):
            return True
        if name.startswith(".rel"):
            target = name[4:]
            if target.startswith(".debug_") or target in (".BTF", ".BTF.ext"):
                return True
        return False

    def _parse_symbols(self) -> None:
        symtabs = [s for s in self.sections if s.type == SHT_SYMTAB]
        self.where = ".symtab"
        if not symtabs:
            self.fail("no symbol table: the object was stripped; BPF objects need their symbols")
        if len(symtabs) > 1:
            self.fail("more than one symbol table")
        symtab = symtabs[0]
        self.where = symtab.name
        if symtab.entsize != _SYM.size:
            self.fail(f"symbol entries are {symtab.entsize} bytes, not {_SYM.size}")
        if symtab.size % _SYM.size:
            self.fail(f"symbol table size {symtab.size} is not a multiple of {_SYM.size}")
        raw = self._section_data(symtab)
        if not 0 < symtab.link < len(self.sections) or self.sections[symtab.link].type != SHT_STRTAB:
            self.fail(f"symbol table links to section {symtab.link}, which is not a string table")
        strtab = self._section_data(self.sections[symtab.link])
        rows = _SYM.iter_unpack(raw)
        symbols = []
        nsec = len(self.sections)
        for i, (name_off, info, other, shndx, value, size) in enumerate(rows):
            if name_off >= len(strtab) and name_off:
                self.fail(
                    f"symbol {i} has a name offset {name_off} past the string table", offset=i * _SYM.size
                )
            if shndx >= nsec and shndx < SHN_LORESERVE:
                self.fail(
                    f"symbol {i} points at section {shndx}, which does not exist", offset=i * _SYM.size
                )
            if name_off:
                end = strtab.find(b"\0", name_off)
                name = strtab[name_off : end if end >= 0 else len(strtab)].decode("utf-8", "replace")
            else:
                name = ""
            symbols.append(_Symbol(i, name, info >> 4, info & 0xF, other & 0x3, shndx, value, size))
        self.symbols = symbols

    def _collect_symbol_offsets(self) -> None:
        """(section, symbol) -> value for variables, as libbpf's DATASEC fix-up and map lookup need; the hidden
        variables and the hidden global functions."""
        secs = self.sections
        for sym in self.symbols:
            if sym.type == STT_FUNC and sym.bind != STB_LOCAL and sym.hidden and 0 < sym.shndx < len(secs):
                # libbpf loads hidden global functions (e.g. usdt.bpf.h's __weak __hidden helpers) as
                # static, so the verifier checks them in their caller's context.
                self.hidden_functions.add(sym.name)
                continue
            if sym.type not in (STT_OBJECT, STT_NOTYPE) or not sym.name or not 0 < sym.shndx < len(secs):
                continue
            key = (secs[sym.shndx].name, sym.name)
            self.symbol_offsets.setdefault(key, sym.value)
            if sym.bind != STB_LOCAL and sym.hidden:
                self.hidden_symbols.add(key)

    def _datasec(self, name: str) -> Datasec | None:
        if self.btf is None:
            return None
        found = self.btf.types_by_name(name, Datasec)
        return found[0] if found else None  # type: ignore[return-value]

    # -- externs ---------------------------------------------------------------------------------------
    def _collect_externs(self) -> None:
        externs = [
            s
            for s in self.symbols
            if s.shndx == SHN_UNDEF and s.bind in (STB_GLOBAL, STB_WEAK) and s.type == STT_NOTYPE and s.name
        ]
        if not externs:
            return
        self.where = ".BTF"
        if self.btf is None:
            self.fail(
                f"the object uses extern {externs[0].name!r} but has no BTF; compile with -g",
                section=".symtab",
            )
        btf = self.btf
        kconfig = self._datasec(_KCONFIG_SEC)
        ksyms = self._datasec(_KSYMS_SEC)
        kconfig_ids = {v.type_id for v in kconfig.vars} if kconfig else set()
        ksym_ids = {v.type_id for v in ksyms.vars} if ksyms else set()
        for sym in externs:
            candidates = [t for t in btf.types_by_name(sym.name, (Var, Func))]
            if not candidates:
                self.fail(f"extern {sym.name!r} has no BTF VAR or FUNC; the object's BTF is incomplete")
            t = candidates[0]
            assert isinstance(t, (Var, Func))
            if isinstance(t, Var) and t.linkage != VarLinkage.EXTERN:
                self.fail(f"extern {sym.name!r}: its BTF VAR is not declared extern")
            weak = sym.bind == STB_WEAK
            if t.id in kconfig_ids:
                if isinstance(t, Func):
                    self.fail(f"extern function {sym.name!r} cannot live in {_KCONFIG_SEC}")
                size = sizeof(t)
                if size <= 0:
                    self.fail(f"kconfig extern {sym.name!r} has no size")
                ext = ExternSpec(sym.name, "kconfig", t, weak, size=size)
            elif t.id in ksym_ids or isinstance(t, Func):
                if isinstance(t, Func):
                    ext = ExternSpec(sym.name, "kfunc", t, weak, typed=True)
                else:
                    typed = not isinstance(t.type.strip(), Void)
                    ext = ExternSpec(sym.name, "ksym", t, weak, typed=typed)
            else:
                self.fail(
                    f"extern {sym.name!r} is in no known extern section (use __kconfig or __ksym)",
                )
            self.externs[sym.name] = ext
            self.extern_syms[sym.num] = ext
        # Lay out .kconfig as libbpf does: by alignment (largest first), then size, then name.
        kcfg = [e for e in self.externs.values() if e.kind == "kconfig"]
        kcfg.sort(key=lambda e: (-_align(e.type), e.size, e.name))
        off = 0
        for e in kcfg:
            align = _align(e.type)
            e.offset = (off + align - 1) // align * align
            off = e.offset + e.size
            self.symbol_offsets[(_KCONFIG_SEC, e.name)] = e.offset
        if kcfg:
            self.section_sizes[_KCONFIG_SEC] = off

    # -- maps ------------------------------------------------------------------------------------------
    def _btf_maps(self, sec: _Section) -> None:
        self.where = sec.name
        if self.btf is None:
            self.fail("BTF-defined maps need the object's .BTF section; compile with -g")
        datasec = self._datasec(_MAPS_SEC)
        if datasec is None:
            self.fail("the object's BTF has no DATASEC '.maps'", section=".BTF")
        data_size = sec.size
        for i, vsi in enumerate(datasec.vars):
            var = vsi.var
            if not isinstance(var, Var):
                self.fail(f"map #{i}: DATASEC '.maps' entry is a {var.kind.name}, not a VAR", section=".BTF")
            name = var.name
            if not name:
                self.fail(f"map #{i} has no name", section=".BTF")
            if var.linkage != VarLinkage.GLOBAL:
                self.fail(
                    f"map {name!r} is declared static or extern (BTF linkage {int(var.linkage)}); libbpf-style "
                    "maps must be global: drop 'static'/'extern'",
                    section=".BTF",
                )
            offset = self.symbol_offsets.get((sec.name, name), vsi.offset)
            if offset + vsi.size > data_size:
                self.fail(
                    f"map {name!r}: its definition ({vsi.size} bytes at {offset}) lies past the section end "
                    f"({data_size} bytes)",
                    offset=offset,
                )
            definition = var.type.strip()
            if not isinstance(definition, Struct):
                self.fail(
                    f"map {name!r}: definition is a {definition.kind.name}, not a struct", section=".BTF"
                )
            spec = self._map_from_btf(name, definition, inner=False)
            self.maps[name] = spec
            self.map_at[(sec.num, offset)] = name
            self.btf_map_vars[name] = (offset, vsi.size, definition)

    def _map_from_btf(self, name: str, definition: Struct, *, inner: bool) -> MapSpec:
        assert self.btf is not None
        map_type = key_size = value_size = max_entries = flags = numa = pinning = 0
        map_extra = 0
        key_type: Type | None = None
        value_type: Type | None = None
        inner_spec: MapSpec | None = None
        members = definition.members
        for i, m in enumerate(members):
            field_name = m.name
            if field_name == "type":
                map_type = self._map_int(name, m.name, m.type)
            elif field_name == "max_entries":
                max_entries = self._map_int(name, m.name, m.type)
            elif field_name == "map_flags":
                flags = self._map_int(name, m.name, m.type)
            elif field_name == "numa_node":
                numa = self._map_int(name, m.name, m.type)
            elif field_name == "key_size":
                size = self._map_int(name, m.name, m.type)
                if key_size and key_size != size:
                    self.fail(f"map {name!r}: conflicting key size {key_size} != {size}", section=".BTF")
                key_size = size
            elif field_name == "key":
                key_type = self._map_pointee(name, "key", m.type)
                size = sizeof(key_type)
                if key_size and key_size != size:
                    self.fail(f"map {name!r}: conflicting key size {key_size} != {size}", section=".BTF")
                key_size = size
            elif field_name == "value_size":
                size = self._map_int(name, m.name, m.type)
                if value_size and value_size != size:
                    self.fail(f"map {name!r}: conflicting value size {value_size} != {size}", section=".BTF")
                value_size = size
            elif field_name == "value":
                value_type = self._map_pointee(name, "value", m.type)
                size = sizeof(value_type)
                if value_size and value_size != size:
                    self.fail(f"map {name!r}: conflicting value size {value_size} != {size}", section=".BTF")
                value_size = size
            elif field_name == "values":
                if inner:
                    self.fail(f"map {name!r}: inner maps cannot have inner maps of their own", section=".BTF")
                if i != len(members) - 1:
                    self.fail(f"map {name!r}: 'values' must be the last member", section=".BTF")
                is_prog_array = map_type == T.MapType.PROG_ARRAY
                if map_type not in _MAP_IN_MAP and not is_prog_array:
                    self.fail(f"map {name!r}: 'values' needs a map-in-map or prog-array map", section=".BTF")
                if value_size and value_size != 4:
                    self.fail(f"map {name!r}: conflicting value size {value_size} != 4", section=".BTF")
                value_size = 4
                arr = m.type
                if not isinstance(arr, Array) or arr.nelems:
                    self.fail(f"map {name!r}: 'values' must be a zero-length array", section=".BTF")
                ptr = arr.elem.strip()
                if not isinstance(ptr, Pointer):
                    self.fail(f"map {name!r}: 'values' must be an array of pointers", section=".BTF")
                target = ptr.type.strip()
                if is_prog_array:
                    if not isinstance(target, FuncProto):
                        self.fail(
                            f"map {name!r}: prog-array 'values' must point to functions", section=".BTF"
                        )
                    continue
                if not isinstance(target, Struct):
                    self.fail(
                        f"map {name!r}: map-in-map 'values' must point to a map definition", section=".BTF"
                    )
                inner_spec = self._map_from_btf(f"{name}.inner", target, inner=True)
            elif field_name == "pinning":
                if inner:
                    self.fail(f"map {name!r}: inner maps cannot be pinned", section=".BTF")
                pinning = self._map_int(name, m.name, m.type)
                if pinning not in (0, 1):
                    self.fail(
                        f"map {name!r}: invalid pinning value {pinning} (0: none, 1: by name)", section=".BTF"
                    )
            elif field_name == "map_extra":
                map_extra = self._map_long(name, m.name, m.type)
            else:
                self.fail(f"map {name!r}: unknown field {field_name!r}", section=".BTF")
        if map_type == 0:
            self.fail(f"map {name!r}: map type is not specified", section=".BTF")
        mtype = self._map_type(name, map_type)
        if mtype in _RINGBUFS:
            max_entries = _ringbuf_size(max_entries)
        return _make_map(
            name=name,
            type=mtype,
            key_size=key_size,
            value_size=value_size,
            max_entries=max_entries,
            flags=flags,
            inner=inner_spec,
            pinning=pinning,
            numa_node=numa,
            map_extra=map_extra,
            btf=self.btf,
            key_type=key_type,
            value_type=value_type,
        )

    def _map_type(self, map_name: str, value: int, offset: int | None = None) -> T.MapType:
        try:
            return T.MapType(value)
        except ValueError:
            self.fail(
                f"map {map_name!r}: unknown map type {value} (not in this pybpf's bpf_map_type)",
                offset=offset,
            )

    def _map_int(self, map_name: str, attr: str, t: Type) -> int:
        """`int (*name)[N]` encodes N."""
        ptr = t.strip()
        if not isinstance(ptr, Pointer):
            self.fail(f"map {map_name!r}: attribute {attr!r} must be declared with __uint()", section=".BTF")
        arr = ptr.type
        if not isinstance(arr, Array):
            self.fail(f"map {map_name!r}: attribute {attr!r} must be declared with __uint()", section=".BTF")
        return arr.nelems

    def _map_long(self, map_name: str, attr: str, t: Type) -> int:
        stripped = t.strip()
        if isinstance(stripped, Pointer):
            return self._map_int(map_name, attr, t)
        if isinstance(stripped, Enum) and len(stripped.values) == 1:
            return stripped.values[0].value & 0xFFFFFFFFFFFFFFFF
        self.fail(f"map {map_name!r}: attribute {attr!r} must be __uint() or __ulong()", section=".BTF")

    def _map_pointee(self, map_name: str, attr: str, t: Type) -> Type:
        if not isinstance(t, Pointer):
            self.fail(f"map {map_name!r}: {attr} must be declared with __type()", section=".BTF")
        return t.type

    def _legacy_maps(self, sec: _Section) -> None:
        self.where = sec.name
        data = self._section_data(sec)
        syms = sorted(
            (s for s in self.symbols if s.shndx == sec.num and s.type in (STT_OBJECT, STT_NOTYPE) and s.name),
            key=lambda s: s.value,
        )
        if not syms:
            return
        default_size = len(data) // len(syms)
        for sym in syms:
            size = sym.size or default_size
            if size < 16:
                self.fail(
                    f"legacy map {sym.name!r}: definition is {size} bytes, too small for struct bpf_map_def",
                    offset=sym.value,
                )
            if sym.value + size > len(data):
                self.fail(f"legacy map {sym.name!r}: definition runs past the section end", offset=sym.value)
            raw = data[sym.value : sym.value + min(size, _BPF_MAP_DEF.size)].ljust(_BPF_MAP_DEF.size, b"\0")
            map_type, key_size, value_size, max_entries, flags = _BPF_MAP_DEF.unpack(raw)
            mtype = self._map_type(sym.name, map_type, offset=sym.value)
            if mtype in _RINGBUFS:
                max_entries = _ringbuf_size(max_entries)
            if sym.name in self.maps:
                self.fail(f"map {sym.name!r} is defined twice", offset=sym.value)
            self.maps[sym.name] = _make_map(
                name=sym.name,
                type=mtype,
                key_size=key_size,
                value_size=value_size,
                max_entries=max_entries,
                flags=flags,
            )
            self.map_at[(sec.num, sym.value)] = sym.name

    def _data_maps(self) -> None:
        for data_sec in self.data_secs.values():
            sec = data_sec.section
            self.where = sec.name
            datasec = self._datasec(sec.name)
            if datasec is not None:
                self._fixup_datasec(datasec, sec.name, sec.size)
            data_sec.datasec = datasec
            flags = T.BPF_F_RDONLY_PROG if data_sec.read_only else 0
            if datasec is not None and any(self._var_exposed(sec.name, v.var) for v in datasec.vars):
                flags |= T.BPF_F_MMAPABLE
            spec = _make_map(
                name=internal_map_name(self.name, sec.name),
                type=T.MapType.ARRAY,
                key_size=4,
                value_size=sec.size,
                max_entries=1,
                flags=flags,
                btf=self.btf,
                value_type=datasec,
                data=self._section_data(sec),
                freeze=data_sec.read_only,
            )
            data_sec.map = spec
            self.maps[data_sec.key] = spec

    def _fixup_datasec(self, datasec: Datasec, section: str, size: int) -> None:
        """libbpf's DATASEC fix-up, applied to the decoded type (the one MapSpec.value_type and codecs
        see): clang leaves the size and the offsets of non-static variables at zero. The raw BTF bytes
        are unchanged; `pybpf.btf.marshal.for_kernel` does the same from CollectionSpec.section_sizes
        and symbol_offsets."""
        if datasec.size:
            return  # the static linker already did it
        datasec.size = size
        for vsi in datasec.vars:
            var = vsi.var
            if isinstance(var, Var) and (var.linkage != VarLinkage.STATIC or section == _KCONFIG_SEC):
                vsi.offset = self.symbol_offsets.get((section, var.name), vsi.offset)
        datasec.vars.sort(key=lambda v: v.offset)

    def _var_exposed(self, section: str, var: Type) -> bool:
        """libbpf's map_is_mmapable test for one variable: global and not hidden."""
        if not isinstance(var, Var) or var.linkage == VarLinkage.STATIC:
            return False
        return (section, var.name) not in self.hidden_symbols

    def _kconfig_map(self) -> None:
        size = self.section_sizes.get(_KCONFIG_SEC)
        if not size:
            return
        datasec = self._datasec(_KCONFIG_SEC)
        if datasec is not None:
            self._fixup_datasec(datasec, _KCONFIG_SEC, size)
        self.maps[_KCONFIG_SEC] = _make_map(
            name=internal_map_name(self.name, _KCONFIG_SEC),
            type=T.MapType.ARRAY,
            key_size=4,
            value_size=size,
            max_entries=1,
            flags=T.BPF_F_RDONLY_PROG | T.BPF_F_MMAPABLE,
            btf=self.btf,
            value_type=datasec,
            data=bytes(size),
            freeze=True,
        )

    # -- code ------------------------------------------------------------------------------------------
    def _functions(self, sec: _Section, func_syms: list[_Symbol]) -> None:
        self.where = sec.name
        data = self._section_data(sec)
        if len(data) % _INSN:
            self.fail(f"code size {len(data)} is not a multiple of 8 bytes", offset=len(data) & ~7)
        funcs: dict[int, _Func] = {}
        is_text = sec.name == _TEXT_SEC
        for sym in func_syms:
            if sym.value % _INSN or sym.size % _INSN or sym.size == 0 or sym.value + sym.size > len(data):
                self.fail(
                    f"function {sym.name!r} ({sym.size} bytes at {sym.value:#x}) is corrupt or crosses the "
                    f"section end ({len(data)} bytes)",
                    offset=sym.value,
                )
            start = sym.value // _INSN
            if start in funcs:
                continue  # an alias of a function already seen
            entry = not is_text and sym.bind != STB_LOCAL
            funcs[start] = _Func(sym.name, sec.num, start, sym.size // _INSN, entry)
        self.funcs[sec.num] = funcs
        self.func_starts[sec.num] = sorted(funcs)
        self.relocs[sec.num] = {}
        self.pseudo_calls[sec.num], self.pseudo_funcs[sec.num] = _scan_code(data, self.fail)

    def _code_relocations(self, rel_sec: _Section, target: _Section) -> None:
        rows = self._rel_rows(rel_sec)
        code = self._section_data(target)
        relocs = self.relocs[target.num]
        nsyms = len(self.symbols)
        for i, (r_offset, r_info) in enumerate(rows):
            sym_idx = r_info >> 32
            if r_offset % _INSN or r_offset >= len(code):
                self.fail(
                    f"relocation #{i} (in {rel_sec.name}) points at offset {r_offset:#x}, past the end of "
                    f"the section ({len(code)} bytes) or into the middle of an instruction",
                    section=target.name,
                    offset=r_offset,
                )
            if sym_idx >= nsyms:
                self.fail(
                    f"relocation #{i} names symbol {sym_idx}, which does not exist", offset=i * _REL.size
                )
            sym = self.symbols[sym_idx]
            slot = r_offset // _INSN
            if self._func_at(target.num, slot) is None:
                continue  # not inside any function (libbpf: an overridden weak function)
            relocs[slot] = self._classify(code, slot, sym, target)

    def _rel_rows(self, rel_sec: _Section) -> list[tuple[int, int]]:
        if rel_sec.entsize != _REL.size:
            self.fail(f"relocation entries are {rel_sec.entsize} bytes, not {_REL.size}")
        raw = self._section_data(rel_sec)
        if len(raw) % _REL.size:
            self.fail(f"relocation section size {len(raw)} is not a multiple of {_REL.size}")
        return list(_REL.iter_unpack(raw))

    def _func_at(self, sec: int, slot: int) -> _Func | None:
        """The function of exec section `sec` containing `slot`."""
        starts = self.func_starts.get(sec)
        if not starts:
            return None
        k = bisect.bisect_right(starts, slot) - 1
        if k < 0:
            return None
        f = self.funcs[sec][starts[k]]
        return f if slot < f.start + f.nslots else None

    def _classify(self, code: bytes, slot: int, sym: _Symbol, sec: _Section) -> _Reloc:
        pos = slot * _INSN
        opcode = code[pos]
        off = pos
        what = sym.name or (self.sections[sym.shndx].name if 0 < sym.shndx < len(self.sections) else "?")
        if opcode not in (_OP_LD_IMM64, _OP_CALL):
            self.fail(
                f"relocation against {what!r} applies to instruction with opcode {opcode:#04x}, which is "
                "neither ld_imm64 nor call",
                section=sec.name,
                offset=off,
            )
        (imm,) = _I32.unpack_from(code, pos + 4)
        ext = self.extern_syms.get(sym.num)
        if ext is not None:
            if opcode == _OP_CALL:
                if ext.kind != "kfunc":
                    self.fail(
                        f"call to extern {what!r}, which is not a function", section=sec.name, offset=off
                    )
                return _Reloc("kfunc", ext.name, src=asm.PSEUDO_KFUNC_CALL)
            if ext.kind == "kconfig":
                return _Reloc("kconfig", _KCONFIG_SEC, ext.offset, src=asm.PSEUDO_MAP_VALUE)
            if ext.kind == "kfunc":  # address of a kernel function
                return _Reloc("ksym", ext.name, src=asm.PSEUDO_BTF_ID)
            return _Reloc("ksym", ext.name, src=asm.PSEUDO_BTF_ID if ext.typed else 0)
        if opcode == _OP_CALL:
            src = code[pos + 1] >> 4
            if src != asm.PSEUDO_CALL:
                self.fail(
                    f"relocated call against {what!r} is not a bpf-to-bpf call (src {src})",
                    section=sec.name,
                    offset=off,
                )
            if sym.value % _INSN:
                self.fail(
                    f"call against {what!r} at a misaligned offset {sym.value}", section=sec.name, offset=off
                )
            callee = self._func_starting(sym.shndx, sym.value // _INSN + imm + 1, what, sec, off)
            return _Reloc("call", callee.name, func=callee, src=asm.PSEUDO_CALL)
        shndx = sym.shndx
        if shndx == SHN_UNDEF or shndx >= SHN_LORESERVE:
            self.fail(
                f"relocation against {what!r}, which is not defined in this object (an uninitialised "
                "global variable? give it an initial value, or mark it extern with __kconfig/__ksym)",
                section=sec.name,
                offset=off,
            )
        target = self.sections[shndx]
        if target.flags & SHF_EXECINSTR and (
            sym.type == STT_FUNC or (sym.type == STT_SECTION and sym.bind == STB_LOCAL)
        ):
            if sym.value % _INSN or imm % _INSN:
                self.fail(
                    f"function address of {what!r} at a misaligned offset", section=sec.name, offset=off
                )
            callee = self._func_starting(shndx, (sym.value + imm) // _INSN, what, sec, off)
            return _Reloc("func", callee.name, func=callee, src=asm.PSEUDO_FUNC)
        map_key = self.map_at.get((shndx, sym.value))
        if map_key is not None:
            return _Reloc("map", map_key, src=asm.PSEUDO_MAP_FD)
        data_sec = self.data_secs.get(shndx)
        if data_sec is not None:
            offset = sym.value + imm
            if not 0 <= offset <= target.size:
                self.fail(
                    f"reference to {what!r}+{imm} points outside section {target.name} ({target.size} bytes)",
                    section=sec.name,
                    offset=off,
                )
            return _Reloc("map_value", data_sec.key, offset, src=asm.PSEUDO_MAP_VALUE)
        if target.name in (_MAPS_SEC, _LEGACY_MAPS_SEC):
            self.fail(
                f"no map starts at offset {sym.value} of {target.name} (symbol {what!r})",
                section=sec.name,
                offset=off,
            )
        self.fail(
            f"relocation against {what!r} in section {target.name!r}, which is neither code, a map nor global data",
            section=sec.name,
            offset=off,
        )

    def _func_starting(self, shndx: int, slot: int, what: str, sec: _Section, off: int) -> _Func:
        funcs = self.funcs.get(shndx)
        callee = funcs.get(slot) if funcs else None
        if callee is None:
            where = self.sections[shndx].name if 0 < shndx < len(self.sections) else f"#{shndx}"
            self.fail(
                f"call or function pointer via {what!r} targets instruction {slot} of {where!r}, where no "
                "function starts",
                section=sec.name,
                offset=off,
            )
        return callee

    def _fixups(self, func: _Func) -> list[tuple[int, _Reloc]]:
        """Every instruction of `func` the assembler must touch: relocations plus same-section calls."""
        if func.fixups is not None:
            return func.fixups
        sec = self.sections[func.sec]
        self.where = sec.name
        relocs = self.relocs.get(func.sec, {})
        slots = self.reloc_slots.get(func.sec)
        if slots is None:
            slots = self.reloc_slots[func.sec] = sorted(relocs)
        lo, hi = func.start, func.start + func.nslots
        out = [
            (s - lo, relocs[s]) for s in slots[bisect.bisect_left(slots, lo) : bisect.bisect_left(slots, hi)]
        ]
        calls = self.pseudo_calls.get(func.sec, [])
        for slot in calls[bisect.bisect_left(calls, lo) : bisect.bisect_left(calls, hi)]:
            if slot in relocs:
                continue
            code = self._section_data(sec)
            (imm,) = _I32.unpack_from(code, slot * _INSN + 4)
            callee = self._func_starting(func.sec, slot + imm + 1, f"call in {func.name}", sec, slot * _INSN)
            out.append((slot - lo, _Reloc("call", callee.name, func=callee, src=asm.PSEUDO_CALL)))
        ptrs = self.pseudo_funcs.get(func.sec, [])
        for slot in ptrs[bisect.bisect_left(ptrs, lo) : bisect.bisect_left(ptrs, hi)]:
            if slot not in relocs:
                self.fail(f"function pointer load in {func.name!r} has no relocation", offset=slot * _INSN)
        out.sort(key=lambda x: x[0])
        func.fixups = out
        return out

    # -- programs --------------------------------------------------------------------------------------
    def _programs(self, spec: CollectionSpec) -> None:
        for sec_idx, funcs in self.funcs.items():
            sec = self.sections[sec_idx]
            for func in sorted(funcs.values(), key=lambda f: f.start):
                if not func.entry:
                    continue
                self.where = sec.name
                if func.name in spec.programs:
                    self.fail(f"program {func.name!r} is defined twice")
                prog, core, relocations = self._program(func, sec)
                spec.programs[func.name] = prog
                spec.core_relos[func.name] = core
                spec.relocations[func.name] = relocations

    def _assemble(self, main: _Func) -> _Assembly:
        asm_state = _Assembly(bytearray(self._func_bytes(main)))
        placed: dict[int, int] = {id(main): 0}
        asm_state.placed.append(_Placed(main, 0))
        self._place(main, 0, asm_state, placed, depth=0)
        return asm_state

    def _func_bytes(self, func: _Func) -> bytes:
        code = self._section_data(self.sections[func.sec])
        return code[func.start * _INSN : (func.start + func.nslots) * _INSN]

    def _place(self, func: _Func, base: int, state: _Assembly, placed: dict[int, int], depth: int) -> None:
        # libbpf's order: a callee is appended when first met and processed before the caller continues.
        if depth > 1000:
            self.fail(f"subprogram calls nest too deeply below {func.name!r}")
        code = state.code
        for rel, reloc in self._fixups(func):
            slot = base + rel
            pos = slot * _INSN
            if reloc.kind in ("call", "func"):
                callee = reloc.func
                assert callee is not None
                where = placed.get(id(callee))
                if where is None:
                    where = len(code) // _INSN
                    placed[id(callee)] = where
                    code += self._func_bytes(callee)
                    state.placed.append(_Placed(callee, where))
                    self._place(callee, where, state, placed, depth + 1)
                _set_src(code, pos, reloc.src)
                _I32.pack_into(code, pos + 4, where - slot - 1)
                if reloc.kind == "func":
                    _U32.pack_into(code, pos + 12, 0)
            elif reloc.kind == "kfunc":
                _set_src(code, pos, reloc.src)
                struct.pack_into("<hi", code, pos + 2, 0, 0)
            else:  # ld_imm64: map, map_value, kconfig, ksym
                _set_src(code, pos, reloc.src)
                _U32.pack_into(code, pos + 4, 0)
                _U32.pack_into(code, pos + 12, reloc.offset)
            state.relocs.append((slot, reloc))

    def _program(
        self, main: _Func, sec: _Section
    ) -> tuple[ProgramSpec, list[tuple[int, CoreRelo]], list[Relocation]]:
        state = self._assemble(main)
        insns = asm.Instructions.decode(bytes(state.code))
        starts = insns.slot_offsets()

        def index(slot: int) -> int:
            return bisect.bisect_left(starts, slot)

        for p in state.placed:
            insns[index(p.base)].symbol = p.func.name
        relocations = []
        for slot, reloc in state.relocs:
            k = index(slot)
            insns[k].reference = reloc.target
            relocations.append(Relocation(k, reloc.kind, reloc.target, reloc.offset))
        relocations.sort(key=lambda r: r.index)

        func_info, line_info, line_sources, core = self._ext_info(state, insns, starts)
        sec_def = find_section_def(sec.name)
        flags = 0
        sleepable = False
        if sec_def is not None:
            if sec_def.flags & SectionFlags.SLEEPABLE:
                flags |= T.BPF_F_SLEEPABLE
                sleepable = True
            if sec_def.flags & SectionFlags.XDP_FRAGS:
                flags |= T.BPF_F_XDP_HAS_FRAGS
        prog = ProgramSpec(
            name=main.name,
            type=sec_def.prog_type if sec_def is not None else T.ProgType.UNSPEC,
            instructions=insns,
            license=self.license,
            section=sec.name,
            attach_type=sec_def.attach_type if sec_def is not None else None,
            attach_to=attach_target(sec.name, sec_def),
            kernel_version=self.kernel_version,
            flags=flags,
            btf=self.btf,
            func_info=func_info,
            func_info_rec_size=_FUNC_INFO.size,
            line_info=line_info,
            line_info_rec_size=_LINE_INFO.size,
            line_sources=line_sources,
            autoload=not sec.name.startswith("?"),
            sleepable=sleepable,
        )
        return prog, core, relocations

    def _ext_info(
        self, state: _Assembly, insns: asm.Instructions, starts: Sequence[int]
    ) -> tuple[bytes, bytes, list[str], list[tuple[int, CoreRelo]]]:
        """func_info, line_info (kernel layout, program-relative), line texts and CO-RE relocations of
        every function placed in the program, each shifted to where the function landed."""

        def index(slot: int) -> int:
            return bisect.bisect_left(starts, slot)

        ext = self.ext
        core: list[tuple[int, CoreRelo]] = []
        if ext is None:
            return b"", b"", [], core
        func_info = bytearray()
        line_info = bytearray()
        sources: list[str] = []
        main_has_func_info = main_has_line_info = False
        for n, p in enumerate(state.placed):
            sec_name = self.sections[p.func.sec].name
            lo, hi = p.func.start, p.func.start + p.func.nslots
            adj = p.base - lo
            fis: list[btf_ext.FuncInfo] = self._ext_range("func", sec_name, lo, hi)
            if n == 0:
                main_has_func_info = bool(fis)
            if main_has_func_info:
                for fi in fis:
                    func_info += _FUNC_INFO.pack(fi.insn_off_bytes // _INSN + adj, fi.type_id)
            lis: list[btf_ext.LineInfo] = self._ext_range("line", sec_name, lo, hi)
            if n == 0:
                main_has_line_info = bool(lis)
            if main_has_line_info:
                for li in lis:
                    slot = li.insn_off_bytes // _INSN + adj
                    line_info += _LINE_INFO.pack(slot, li.file_name_off, li.line_off, li.line_col)
                    sources.append(li.line_text)
                    if li.insn_off_bytes % _INSN == 0:
                        k = index(slot)
                        if k < len(insns) and int(starts[k]) == slot:
                            insns[k].source = li.line_text
            crs: list[CoreRelo] = self._ext_range("core", sec_name, lo, hi)
            for cr in crs:
                core.append((index(cr.insn_off_bytes // _INSN + adj), cr))
        core.sort(key=lambda x: x[0])
        return bytes(func_info), bytes(line_info), sources, core

    def _ext_range(self, what: str, sec_name: str, lo: int, hi: int) -> list[Any]:
        """.BTF.ext records of one kind for section `sec_name` whose instruction lies in [lo, hi)."""
        key = (what, sec_name)
        entry = self.ext_index.get(key)
        if entry is None:
            assert self.ext is not None
            ext = self.ext
            found: list[Any] = list(
                (
                    ext.func_infos if what == "func" else ext.line_infos if what == "line" else ext.core_relos
                ).get(sec_name, ())
            )
            records = sorted(found, key=lambda r: r.insn_off_bytes)
            entry = self.ext_index[key] = ([r.insn_off_bytes // _INSN for r in records], records)
        offsets, records = entry
        return records[bisect.bisect_left(offsets, lo) : bisect.bisect_left(offsets, hi)]

    # -- initial map slots -----------------------------------------------------------------------------
    def _map_slots(self, rel_sec: _Section, maps_sec: _Section, spec: CollectionSpec) -> None:
        assert self.btf is not None
        rows = self._rel_rows(rel_sec)
        nsyms = len(self.symbols)
        for i, (r_offset, r_info) in enumerate(rows):
            sym_idx = r_info >> 32
            if sym_idx >= nsyms:
                self.fail(
                    f"relocation #{i} names symbol {sym_idx}, which does not exist", offset=i * _REL.size
                )
            if r_offset + 8 > maps_sec.size:
                self.fail(
                    f"relocation #{i} (in {rel_sec.name}) at offset {r_offset:#x} points past the end of the "
                    f"section ({maps_sec.size} bytes)",
                    section=maps_sec.name,
                    offset=r_offset,
                )
            sym = self.symbols[sym_idx]
            owner = None
            for name, (offset, size, definition) in self.btf_map_vars.items():
                if offset <= r_offset and r_offset + 8 <= offset + size:
                    owner = (name, offset, definition)
                    break
            if owner is None:
                self.fail(
                    f"relocation at offset {r_offset:#x} is inside no map definition",
                    section=maps_sec.name,
                    offset=r_offset,
                )
            name, offset, definition = owner
            outer = self.maps[name]
            if outer.type in _MAP_IN_MAP:
                if sym.shndx != maps_sec.num or (maps_sec.num, sym.value) not in self.map_at:
                    self.fail(
                        f"map {name!r}: slot value {sym.name!r} is not a BTF-defined map",
                        section=maps_sec.name,
                        offset=r_offset,
                    )
                value = self.map_at[(maps_sec.num, sym.value)]
            elif outer.type == T.MapType.PROG_ARRAY:
                prog = spec.programs.get(sym.name)
                if prog is None:
                    self.fail(
                        f"map {name!r}: slot value {sym.name!r} is not a program of this object",
                        section=maps_sec.name,
                        offset=r_offset,
                    )
                value = sym.name
            else:
                self.fail(
                    f"map {name!r}: only map-in-map and prog-array maps can have initial values",
                    section=maps_sec.name,
                    offset=r_offset,
                )
            last = definition.members[-1] if definition.members else None
            if last is None or last.name != "values":
                self.fail(
                    f"map {name!r}: initial values need a 'values' member",
                    section=maps_sec.name,
                    offset=r_offset,
                )
            start = offset + last.bit_offset // 8
            if r_offset < start or (r_offset - start) % 8:
                self.fail(
                    f"map {name!r}: relocation at {r_offset:#x} is not a slot of 'values'",
                    section=maps_sec.name,
                    offset=r_offset,
                )
            slot = (r_offset - start) // 8
            outer.contents.append((slot, value))
        for m in self.maps.values():
            if m.contents:
                m.contents.sort(key=lambda kv: kv[0])

    # -- variables -------------------------------------------------------------------------------------
    def _variables(self) -> dict[str, VariableSpec]:
        out: dict[str, VariableSpec] = {}
        for data_sec in self.data_secs.values():
            datasec = data_sec.datasec
            if datasec is None:
                continue
            sec = data_sec.section
            self.where = sec.name
            for vsi in datasec.vars:
                var = vsi.var
                if not isinstance(var, Var) or not var.name:
                    continue
                offset = self.symbol_offsets.get((sec.name, var.name), vsi.offset)
                if offset + vsi.size > sec.size:
                    self.fail(
                        f"variable {var.name!r} ({vsi.size} bytes at {offset}) lies past the section end ({sec.size} bytes)",
                        offset=offset,
                    )
                if var.name in out:
                    continue
                out[var.name] = VariableSpec(
                    name=var.name,
                    section=data_sec.key,
                    offset=offset,
                    size=vsi.size,
                    type=var.type,
                    read_only=data_sec.read_only,
                    static=not self._var_exposed(sec.name, var),
                )
        return out


# ---- helpers --------------------------------------------------------------------------------------------


def _align(t: Type) -> int:
    """Alignment of a VAR's type (1 at least)."""
    return alignof(t.type if isinstance(t, Var) else t) or 1


def _set_src(code: bytearray, pos: int, src: int) -> None:
    code[pos + 1] = (code[pos + 1] & 0x0F) | (src << 4)


def _ringbuf_size(size: int) -> int:
    """libbpf's adjust_ringbuf_sz: the next power-of-2 multiple of the page size."""
    page = mmap.PAGESIZE
    if size == 0 or (size % page == 0 and ((size // page) & (size // page - 1)) == 0):
        return size
    mul = 1
    while mul * page <= 0xFFFFFFFF:
        if mul * page > size:
            return mul * page
        mul <<= 1
    return size


def _scan_code(code: bytes, fail: Callable[..., NoReturn]) -> tuple[list[int], list[int]]:
    """Slots of bpf-to-bpf calls and of function-pointer loads in a code section; checks that every
    ld_imm64 has a second half whose code, registers and offset are zero."""
    nslots = len(code) // _INSN
    if nslots <= 24:  # small sections (half the test objects' have 1-2 slots): a plain loop beats
        # the fixed cost of the strided slices below (~0.8 us at 4 slots; they win from ~25 slots on)
        calls: list[int] = []
        ptrs: list[int] = []
        slot = 0
        while slot < nslots:
            pos = slot * _INSN
            op = code[pos]
            if op == _OP_CALL and code[pos + 1] >> 4 == asm.PSEUDO_CALL:
                calls.append(slot)
            elif op == _OP_LD_IMM64:
                if slot + 1 >= nslots:
                    fail("ld_imm64 at the end of the section is missing its second half", offset=pos)
                if code[pos + 8 : pos + 12] != b"\0\0\0\0":
                    fail(_BAD_SECOND_HALF, offset=pos + 8)
                if code[pos + 1] >> 4 == asm.PSEUDO_FUNC:
                    ptrs.append(slot)
                slot += 1
            slot += 1
        return calls, ptrs
    # Bigger sections: byte-strided slices give every slot's opcode and registers byte at C speed; only
    # the slots holding a call or ld_imm64 opcode are looked at in Python.
    codes = code[0::_INSN]
    regs = code[1::_INSN]
    calls = [slot for slot in byte_positions(codes, _OP_CALL) if regs[slot] >> 4 == asm.PSEUDO_CALL]
    ptrs = []
    for slot in byte_positions(codes, _OP_LD_IMM64):
        if slot + 1 >= nslots:
            fail("ld_imm64 at the end of the section is missing its second half", offset=slot * _INSN)
        pos = (slot + 1) * _INSN
        if code[pos : pos + 4] != b"\0\0\0\0":
            fail(_BAD_SECOND_HALF, offset=pos)
        if regs[slot] >> 4 == asm.PSEUDO_FUNC:
            ptrs.append(slot)
    return calls, ptrs


_BAD_SECOND_HALF = (
    "ld_imm64 is followed by a slot with code/registers/offset set (only the upper 32 bits of the constant "
    "may be there)"
)


def _make_map(**kwargs: Any) -> MapSpec:
    return MapSpec(**kwargs)
