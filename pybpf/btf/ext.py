"""Parse the `.BTF.ext` section: function info, line info and CO-RE relocations.

The section is a header followed by up to three info blocks. Each block starts with the record size the
compiler used, then per ELF section: ``{sec_name_off, num_info, records...}``. All names are offsets into the
object's `.BTF` string table, so parsing needs the object's `Spec`. Records larger than the ones known here
(newer compilers) are accepted and their extra bytes skipped; smaller ones are an error.
"""

from __future__ import annotations

import ctypes
import struct

from pybpf._sys.record import field, record
from pybpf._sys.types import CoreReloKind
from pybpf._sys.types import FuncInfo as _KernelFuncInfo
from pybpf._sys.types import LineInfo as _KernelLineInfo
from pybpf.btf.spec import Spec
from pybpf.errors import ObjectError

__all__ = ["BTFExt", "CoreRelo", "CoreReloKind", "FuncInfo", "LineInfo", "parse_ext"]

SECTION = ".BTF.ext"
BTF_EXT_MAGIC = 0xEB9F
# magic, version, flags, hdr_len, func_info_off, func_info_len, line_info_off, line_info_len
_HEADER = struct.Struct("<HBBIIIII")
_CORE_HEADER = struct.Struct("<II")  # core_relo_off, core_relo_len: present when hdr_len covers them
_U32 = struct.Struct("<I")
_SEC_HEADER = struct.Struct("<II")  # sec_name_off, num_info

# Record layouts as the compiler writes them; func/line info match the kernel's structs.
_FUNC_INFO = struct.Struct("<II")  # insn_off, type_id
_LINE_INFO = struct.Struct("<IIII")  # insn_off, file_name_off, line_off, line_col
_CORE_RELO = struct.Struct("<IIII")  # insn_off, type_id, access_str_off, kind (libbpf's struct bpf_core_relo)
assert ctypes.sizeof(_KernelFuncInfo) == _FUNC_INFO.size
assert ctypes.sizeof(_KernelLineInfo) == _LINE_INFO.size

_LINE_SHIFT = 10  # line_col packs line << 10 | column
_COL_MASK = (1 << _LINE_SHIFT) - 1


@record(frozen=True, slots=True)
class FuncInfo:
    """A function starts at `insn_off_bytes` (from its ELF section's start); `type_id` is its BTF FUNC."""

    insn_off_bytes: int
    type_id: int

    @property
    def insn_index(self) -> int:
        return self.insn_off_bytes // 8


@record(frozen=True, slots=True)
class LineInfo:
    """Source position of the instruction at `insn_off_bytes`. The raw string offsets are kept so the
    record can be handed to the kernel unchanged (they index the same `.BTF` string table)."""

    insn_off_bytes: int
    file_name: str
    line_text: str
    line: int
    col: int
    file_name_off: int = 0
    line_off: int = 0

    @property
    def insn_index(self) -> int:
        return self.insn_off_bytes // 8

    @property
    def line_col(self) -> int:
        return (self.line << _LINE_SHIFT) | (self.col & _COL_MASK)


@record(frozen=True, slots=True)
class CoreRelo:
    """One CO-RE relocation: the instruction at `insn_off_bytes` uses `access_str` into local type `type_id`."""

    insn_off_bytes: int
    type_id: int
    access_str: str
    kind: CoreReloKind
    access_str_off: int = 0
    section: str = ""

    @property
    def insn_index(self) -> int:
        return self.insn_off_bytes // 8


@record(slots=True)
class BTFExt:
    """Parsed `.BTF.ext`: records per ELF section name, in the order the compiler wrote them."""

    func_infos: dict[str, list[FuncInfo]] = field(default_factory=dict)
    line_infos: dict[str, list[LineInfo]] = field(default_factory=dict)
    core_relos: dict[str, list[CoreRelo]] = field(default_factory=dict)
    func_info_rec_size: int = _FUNC_INFO.size
    line_info_rec_size: int = _LINE_INFO.size
    core_relo_rec_size: int = _CORE_RELO.size
    version: int = 1
    flags: int = 0


class _Strings:
    """Name lookups through the object's BTF, cached (line info repeats file names thousands of times)."""

    __slots__ = ("_cache", "_spec")

    def __init__(self, spec: Spec) -> None:
        self._spec = spec
        self._cache: dict[int, str] = {}

    def get(self, offset: int, what: str, at: int) -> str:
        s = self._cache.get(offset)
        if s is None:
            try:
                s = self._spec.string(offset)
            except (ObjectError, ValueError, IndexError):
                raise ObjectError(
                    f"{what} name offset {offset} is outside the .BTF string table; the object file is "
                    "corrupt or its .BTF and .BTF.ext do not belong together",
                    section=SECTION,
                    offset=at,
                ) from None
            self._cache[offset] = s
        return s


def _blocks(
    data: bytes, start: int, length: int, min_rec: int, what: str, header_len: int
) -> tuple[int, list[tuple[int, int, int]]]:
    """Validate one info block; return its record size and (sec_name_off, num_info, first_record_pos)."""
    if length == 0:
        return min_rec, []
    if start & 3:
        raise ObjectError(f"{what} block is not 4-byte aligned", section=SECTION, offset=start)
    end = start + length
    if start < header_len or end > len(data):
        raise ObjectError(
            f"{what} block ({length} bytes at {start:#x}) lies outside the section ({len(data)} bytes)",
            section=SECTION,
            offset=start,
        )
    if length < _U32.size:
        raise ObjectError(f"{what} block has no record size", section=SECTION, offset=start)
    (rec_size,) = _U32.unpack_from(data, start)
    if rec_size < min_rec or rec_size & 3:
        raise ObjectError(
            f"{what} record size {rec_size} is invalid (at least {min_rec}, multiple of 4)",
            section=SECTION,
            offset=start,
        )
    pos = start + _U32.size
    if pos == end:
        raise ObjectError(f"{what} block has a record size but no records", section=SECTION, offset=start)
    out: list[tuple[int, int, int]] = []
    while pos < end:
        if end - pos < _SEC_HEADER.size:
            raise ObjectError(f"{what} block ends inside a section header", section=SECTION, offset=pos)
        name_off, count = _SEC_HEADER.unpack_from(data, pos)
        if count == 0:
            raise ObjectError(f"{what} section header has zero records", section=SECTION, offset=pos)
        first = pos + _SEC_HEADER.size
        if first + count * rec_size > end:
            raise ObjectError(
                f"{what} section claims {count} records of {rec_size} bytes, more than the block holds",
                section=SECTION,
                offset=pos,
            )
        out.append((name_off, count, first))
        pos = first + count * rec_size
    return rec_size, out


def _records(data: bytes, layout: struct.Struct, rec_size: int, first: int, count: int) -> list[tuple[int, ...]]:
    if rec_size == layout.size:
        return list(layout.iter_unpack(data[first : first + count * rec_size]))
    return [layout.unpack_from(data, first + i * rec_size) for i in range(count)]


def parse_ext(data: bytes, spec: Spec) -> BTFExt:
    """Parse a `.BTF.ext` section; `spec` is the same object's `.BTF` (names are its strings)."""
    data = bytes(data)
    if len(data) < _HEADER.size:
        raise ObjectError(
            f"section is {len(data)} bytes, shorter than the {_HEADER.size}-byte header", section=SECTION, offset=0
        )
    magic, version, flags, hdr_len, fi_off, fi_len, li_off, li_len = _HEADER.unpack_from(data)
    if magic != BTF_EXT_MAGIC:
        if magic == 0x9FEB:
            raise ObjectError("big-endian .BTF.ext is not supported", section=SECTION, offset=0)
        raise ObjectError(f"bad magic {magic:#x} (expected {BTF_EXT_MAGIC:#x})", section=SECTION, offset=0)
    if version != 1:
        raise ObjectError(f"unsupported .BTF.ext version {version}", section=SECTION, offset=2)
    if flags:
        raise ObjectError(f"unsupported .BTF.ext flags {flags:#x}", section=SECTION, offset=3)
    if hdr_len < _HEADER.size or hdr_len > len(data):
        raise ObjectError(f"header length {hdr_len} is invalid", section=SECTION, offset=4)
    core_off = core_len = 0
    if hdr_len >= _HEADER.size + _CORE_HEADER.size:
        core_off, core_len = _CORE_HEADER.unpack_from(data, _HEADER.size)

    strings = _Strings(spec)
    ext = BTFExt(version=version, flags=flags)

    rec, blocks = _blocks(data, hdr_len + fi_off, fi_len, _FUNC_INFO.size, "func_info", hdr_len)
    ext.func_info_rec_size = rec
    for name_off, count, first in blocks:
        sec = strings.get(name_off, "func_info section", first - _SEC_HEADER.size)
        ext.func_infos.setdefault(sec, []).extend(
            FuncInfo(r[0], r[1]) for r in _records(data, _FUNC_INFO, rec, first, count)
        )

    rec, blocks = _blocks(data, hdr_len + li_off, li_len, _LINE_INFO.size, "line_info", hdr_len)
    ext.line_info_rec_size = rec
    for name_off, count, first in blocks:
        sec = strings.get(name_off, "line_info section", first - _SEC_HEADER.size)
        lines = ext.line_infos.setdefault(sec, [])
        for i, (insn_off, file_off, line_off, line_col) in enumerate(_records(data, _LINE_INFO, rec, first, count)):
            at = first + i * rec
            lines.append(
                LineInfo(
                    insn_off,
                    strings.get(file_off, "line_info file", at),
                    strings.get(line_off, "line_info source line", at),
                    line_col >> _LINE_SHIFT,
                    line_col & _COL_MASK,
                    file_off,
                    line_off,
                )
            )

    rec, blocks = _blocks(data, hdr_len + core_off, core_len, _CORE_RELO.size, "core_relo", hdr_len)
    ext.core_relo_rec_size = rec
    for name_off, count, first in blocks:
        sec = strings.get(name_off, "core_relo section", first - _SEC_HEADER.size)
        relos = ext.core_relos.setdefault(sec, [])
        for i, (insn_off, type_id, access_off, kind) in enumerate(_records(data, _CORE_RELO, rec, first, count)):
            at = first + i * rec
            try:
                relo_kind = CoreReloKind(kind)
            except ValueError:
                raise ObjectError(
                    f"unknown CO-RE relocation kind {kind} in section {sec!r} (the compiler is newer than "
                    "pybpf; known kinds are 0-12)",
                    section=SECTION,
                    offset=at,
                ) from None
            if insn_off % 8:
                raise ObjectError(
                    f"CO-RE relocation in section {sec!r} points into the middle of an instruction "
                    f"(byte {insn_off})",
                    section=SECTION,
                    offset=at,
                )
            relos.append(
                CoreRelo(insn_off, type_id, strings.get(access_off, "CO-RE access string", at), relo_kind,
                         access_off, sec)
            )
    return ext
