"""Function symbols of ELF files (executables, shared libraries, the vDSO), and uprobe offsets."""

from __future__ import annotations

import io
import mmap
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, NamedTuple, cast

import numpy as np
import numpy.typing as npt
from elftools.elf.elffile import ELFFile

from pybpf.errors import ObjectError

__all__ = [
    "DEBUG_DIR",
    "ElfSymbols",
    "LoadSegment",
    "Symbol",
    "SymbolNotFoundError",
    "read_build_id",
    "resolve_uprobe_offset",
]

DEBUG_DIR = "/usr/lib/debug"

_STT_FUNC = 2
_STT_GNU_IFUNC = 10
_STB_LOCAL, _STB_GLOBAL, _STB_WEAK = 0, 1, 2
_PT_LOAD = 1
_PT_NOTE = 4
_NT_GNU_BUILD_ID = 3
_NO_END = np.uint64(2**64 - 1)

_SYM_DTYPES = {
    (64, True): np.dtype(
        [
            ("name", "<u4"),
            ("info", "u1"),
            ("other", "u1"),
            ("shndx", "<u2"),
            ("value", "<u8"),
            ("size", "<u8"),
        ]
    ),
    (64, False): np.dtype(
        [
            ("name", ">u4"),
            ("info", "u1"),
            ("other", "u1"),
            ("shndx", ">u2"),
            ("value", ">u8"),
            ("size", ">u8"),
        ]
    ),
    (32, True): np.dtype(
        [
            ("name", "<u4"),
            ("value", "<u4"),
            ("size", "<u4"),
            ("info", "u1"),
            ("other", "u1"),
            ("shndx", "<u2"),
        ]
    ),
    (32, False): np.dtype(
        [
            ("name", ">u4"),
            ("value", ">u4"),
            ("size", ">u4"),
            ("info", "u1"),
            ("other", "u1"),
            ("shndx", ">u2"),
        ]
    ),
}


class Symbol(NamedTuple):
    """A resolved address: `name+offset` inside `module` (a file path, `[vdso]`, or a kernel module name;
    empty for the kernel image)."""

    name: str
    offset: int
    module: str = ""

    def __str__(self) -> str:
        return f"{self.name}+{self.offset:#x}" if self.offset else self.name


class SymbolNotFoundError(ObjectError, LookupError):
    """A symbol or library was not found, or a name is ambiguous."""


@dataclass(frozen=True)
class LoadSegment:
    vaddr: int
    offset: int
    filesz: int
    memsz: int
    executable: bool


def read_build_id(path: str | os.PathLike[str] | None = None, *, data: bytes | None = None) -> bytes | None:
    """The GNU build-id of an ELF file (from its PT_NOTE segments), or None. Reads only the headers and notes,
    without pyelftools, because BuildIdSymbols calls it for every mapped file."""
    try:
        if data is not None:
            return _build_id_from(io.BytesIO(data))
        assert path is not None
        with open(path, "rb") as f:
            return _build_id_from(f)
    except (OSError, struct.error, ValueError):
        return None


def _build_id_from(f: IO[bytes]) -> bytes | None:
    ident = f.read(64)
    if len(ident) < 52 or ident[:4] != b"\x7fELF":
        return None
    is64 = ident[4] == 2
    end = "<" if ident[5] == 1 else ">"
    if is64:
        phoff, phentsize, phnum = (
            struct.unpack_from(f"{end}Q", ident, 0x20)[0],
            *struct.unpack_from(f"{end}HH", ident, 0x36),
        )
    else:
        phoff, phentsize, phnum = (
            struct.unpack_from(f"{end}I", ident, 0x1C)[0],
            *struct.unpack_from(f"{end}HH", ident, 0x2A),
        )
    f.seek(phoff)
    table = f.read(phentsize * phnum)
    for i in range(phnum):
        base = i * phentsize
        if is64:
            p_type, _, p_offset, _, _, p_filesz = struct.unpack_from(f"{end}IIQQQQ", table, base)
        else:
            p_type, p_offset, _, _, p_filesz = struct.unpack_from(f"{end}IIIII", table, base)
        if p_type != _PT_NOTE or p_filesz > 1 << 16:
            continue
        f.seek(p_offset)
        notes = f.read(p_filesz)
        pos = 0
        while pos + 12 <= len(notes):
            namesz, descsz, n_type = struct.unpack_from(f"{end}III", notes, pos)
            name_at = pos + 12
            desc_at = name_at + ((namesz + 3) & ~3)
            if n_type == _NT_GNU_BUILD_ID and notes[name_at : name_at + namesz] == b"GNU\0":
                return notes[desc_at : desc_at + descsz]
            pos = desc_at + ((descsz + 3) & ~3)
    return None


def _debug_file_for(build_id: bytes | None, path: str, debuglink: str | None) -> str | None:
    """A separate debug-info file (Debian's *-dbgsym packages), located the way gdb does."""
    candidates: list[str] = []
    if build_id and len(build_id) > 1:
        hexid = build_id.hex()
        candidates.append(os.path.join(DEBUG_DIR, ".build-id", hexid[:2], hexid[2:] + ".debug"))
    if debuglink and path and not path.startswith("["):
        directory = os.path.dirname(os.path.realpath(path))
        candidates += [
            os.path.join(directory, debuglink),
            os.path.join(directory, ".debug", debuglink),
            DEBUG_DIR + os.path.join(directory, debuglink),
        ]
    for candidate in candidates:
        if os.path.isfile(candidate) and os.path.realpath(candidate) != os.path.realpath(path or "/"):
            return candidate
    return None


class ElfSymbols:
    """The function symbols (.symtab, else .dynsym, plus a separate debug file when one is installed) of
    one ELF file, sorted for address lookup.

    Addresses given to `lookup` are ELF virtual addresses (what `nm` prints). For a running process use
    `lookup_file_offset`: the file offset is the same whether the file is PIE/ET_DYN or ET_EXEC, and the
    program headers map it back to a virtual address.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, data: bytes | None = None, name: str | None = None
    ) -> None:
        self.path = os.fspath(path)
        self.name = name if name is not None else self.path  # what Symbol.module says
        if data is not None:
            self._parse(data)
            return
        try:
            with open(self.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
                # mmap, not read(): only the headers and symbol tables of a big binary are touched
                self._parse(mapped)
        except (OSError, ValueError) as exc:
            raise ObjectError(f"cannot read ELF symbols: {exc}", path=self.path) from exc

    def _parse(self, data: bytes | mmap.mmap) -> None:
        if data[:4] != b"\x7fELF":
            raise ObjectError("not an ELF file", path=self.path)
        # an mmap has read/seek/tell, which is all pyelftools needs from a stream
        stream = cast(IO[bytes], io.BytesIO(data) if isinstance(data, bytes) else data)
        elf = ELFFile(stream)
        self.elf_type: str = elf["e_type"]
        self.machine: str = elf["e_machine"]
        self.segments: list[LoadSegment] = [
            LoadSegment(s["p_vaddr"], s["p_offset"], s["p_filesz"], s["p_memsz"], bool(s["p_flags"] & 1))
            for s in elf.iter_segments()
            if s["p_type"] == "PT_LOAD"
        ]
        stream.seek(0)
        self.build_id: bytes | None = _build_id_from(stream)
        tables = _symbol_tables(elf, data)
        debuglink = _debuglink(elf)
        has_symtab = any(table.kind == "SHT_SYMTAB" for table in tables)
        self.debug_file: str | None = None
        if not has_symtab:
            self.debug_file = _debug_file_for(self.build_id, self.path, debuglink)
            if self.debug_file is not None:
                try:
                    with open(self.debug_file, "rb") as f:
                        debug_data = f.read()
                    tables += _symbol_tables(ELFFile(io.BytesIO(debug_data)), debug_data)
                except (OSError, ValueError):
                    self.debug_file = None
        self._load(tables, elf.elfclass, elf.little_endian)

    def _load(self, tables: list[_SymbolTable], elfclass: int, little: bool) -> None:
        dtype = _SYM_DTYPES[(elfclass, little)]
        values: list[npt.NDArray[np.uint64]] = []
        ends: list[npt.NDArray[np.uint64]] = []
        ranks: list[npt.NDArray[np.int64]] = []
        names: list[str] = []
        for _, symdata, strtab, section_ends in tables:
            syms = np.frombuffer(symdata, dtype=dtype, count=len(symdata) // dtype.itemsize)
            kind = syms["info"] & 0xF
            keep = (
                ((kind == _STT_FUNC) | (kind == _STT_GNU_IFUNC)) & (syms["shndx"] != 0) & (syms["value"] != 0)
            )
            syms = syms[keep]
            table_names = [_cstring(strtab, int(off)) for off in syms["name"]]
            bind = syms["info"] >> 4
            # At one address several names may exist (malloc/__libc_malloc, getpid/__getpid): prefer
            # global or weak over local, then fewer leading underscores, then the shorter name.
            bind_rank = ((bind == _STB_GLOBAL) | (bind == _STB_WEAK)).astype(np.int64)
            name_rank = np.array(
                [-(len(n) - len(n.lstrip("_"))) * 1000 - len(n) for n in table_names], dtype=np.int64
            )
            start = syms["value"].astype(np.uint64)
            size = syms["size"].astype(np.uint64)
            # A symbol without a size (_init, hand-written asm) extends to the end of its section, not into
            # the next section (.plt after .init would otherwise read as _init+0x65).
            shndx = syms["shndx"].astype(np.int64)
            in_section = shndx < len(section_ends)
            section_end = np.where(
                in_section, section_ends[np.minimum(shndx, len(section_ends) - 1)], _NO_END
            )
            values.append(start)
            ends.append(np.where(size > 0, start + size, section_end))
            ranks.append(bind_rank * 1_000_000 + name_rank)
            names += table_names
        if values:
            all_values = np.concatenate(values)
            all_ends = np.concatenate(ends)
            all_ranks = np.concatenate(ranks)
        else:
            all_values = np.zeros(0, np.uint64)
            all_ends = np.zeros(0, np.uint64)
            all_ranks = np.zeros(0, np.int64)
        order = np.lexsort((all_ranks, all_values))  # by address, preferred name last among equals
        self._values = all_values[order]
        self._ends = all_ends[order]
        self._names = [names[i] for i in order.tolist()]
        self._by_name: dict[str, list[int]] | None = None

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return f"ElfSymbols({self.path!r}, {len(self)} functions, {self.elf_type})"

    def __iter__(self) -> Iterator[tuple[str, int, int]]:
        """(name, vaddr, end) in address order; end is the section's end for symbols without a size."""
        yield from zip(self._names, self._values.tolist(), self._ends.tolist(), strict=True)

    def lookup(self, vaddr: int) -> Symbol | None:
        """The function containing an ELF virtual address, or None (outside every sized function)."""
        i = int(np.searchsorted(self._values, np.uint64(vaddr), side="right")) - 1
        # a symbol that ends before vaddr may sit inside a bigger one starting earlier, so look back a little
        for j in range(i, max(i - 8, -1), -1):
            start = int(self._values[j])
            if start <= vaddr < int(self._ends[j]):
                return Symbol(self._names[j], vaddr - start, self.name)
        return None

    def lookup_file_offset(self, offset: int) -> Symbol | None:
        vaddr = self.file_offset_to_vaddr(offset)
        return None if vaddr is None else self.lookup(vaddr)

    def file_offset_to_vaddr(self, offset: int) -> int | None:
        for seg in self.segments:
            if seg.offset <= offset < seg.offset + seg.filesz:
                return offset - seg.offset + seg.vaddr
        return None

    def vaddr_to_file_offset(self, vaddr: int) -> int | None:
        for seg in self.segments:
            if seg.vaddr <= vaddr < seg.vaddr + seg.filesz:
                return vaddr - seg.vaddr + seg.offset
        return None

    def addresses(self, name: str) -> list[int]:
        """Distinct virtual addresses of the functions called `name` (several for static functions)."""
        if self._by_name is None:
            by_name: dict[str, list[int]] = {}
            for index, symbol_name in enumerate(self._names):
                by_name.setdefault(symbol_name, []).append(index)
            self._by_name = by_name
        return sorted({int(self._values[i]) for i in self._by_name.get(name, [])})

    def file_offset(self, symbol: str) -> int:
        """File offset of a function, as uprobes want it. `symbol` may be `name`, `name+0x10`, or carry
        a version (`malloc@@GLIBC_2.2.5`, matched by its base name)."""
        name, extra = _split_symbol_offset(symbol)
        base_name = name.split("@", 1)[0]
        found = self.addresses(base_name)
        if not found:
            raise SymbolNotFoundError(f"no function {base_name!r}", path=self.path)
        if len(found) > 1:
            where = ", ".join(f"{a:#x}" for a in found)
            raise SymbolNotFoundError(
                f"function name {base_name!r} is ambiguous (at {where}); attach by offset instead",
                path=self.path,
            )
        offset = self.vaddr_to_file_offset(found[0])
        if offset is None:
            raise SymbolNotFoundError(f"function {base_name!r} is not in a loadable segment", path=self.path)
        return offset + extra


def _split_symbol_offset(symbol: str) -> tuple[str, int]:
    match = re.fullmatch(r"(.+?)\+(0[xX][0-9a-fA-F]+|\d+)", symbol)
    if match is None:
        return symbol, 0
    return match.group(1), int(match.group(2), 0)


class _SymbolTable(NamedTuple):
    kind: str  # SHT_SYMTAB or SHT_DYNSYM
    symbols: bytes
    strings: bytes
    section_ends: npt.NDArray[np.uint64]  # sh_addr + sh_size per section index


def _symbol_tables(elf: ELFFile, data: bytes | mmap.mmap) -> list[_SymbolTable]:
    """.symtab and .dynsym of a file, raw."""
    tables: list[_SymbolTable] = []
    sections = list(elf.iter_sections())
    section_ends = np.array([s["sh_addr"] + s["sh_size"] for s in sections], dtype=np.uint64)
    for section in sections:
        kind = section["sh_type"]
        if kind not in ("SHT_SYMTAB", "SHT_DYNSYM"):
            continue
        strtab = sections[section["sh_link"]]
        if strtab["sh_type"] == "SHT_NOBITS" or section["sh_type"] == "SHT_NOBITS":
            continue
        symbols = data[section["sh_offset"] : section["sh_offset"] + section["sh_size"]]
        strings = data[strtab["sh_offset"] : strtab["sh_offset"] + strtab["sh_size"]]
        tables.append(_SymbolTable(kind, symbols, strings, section_ends))
    return tables


def _debuglink(elf: ELFFile) -> str | None:
    section = elf.get_section_by_name(".gnu_debuglink")
    if section is None:
        return None
    raw: bytes = section.data()
    return raw.split(b"\0", 1)[0].decode(errors="replace") or None


def _cstring(table: bytes, offset: int) -> str:
    end = table.find(b"\0", offset)
    return table[offset : end if end >= 0 else len(table)].decode(errors="replace")


def resolve_uprobe_offset(binary: str, symbol: str) -> int:
    """File offset of `symbol` (`name` or `name+0xN`) in `binary` (a path, a program on PATH, or a library
    name like "c" / "libc.so.6"), for attaching a uprobe. Raises SymbolNotFoundError."""
    from pybpf.symbols.libs import resolve_binary

    return _elf_symbols_cached(resolve_binary(binary)).file_offset(symbol)


def _elf_symbols_cached(path: str) -> ElfSymbols:
    from pybpf.symbols.process import elf_symbols

    return elf_symbols(path)
