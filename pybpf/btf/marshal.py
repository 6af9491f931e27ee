"""Write BTF blobs: encode types, fix up an object's DATASECs, sanitise for older kernels, load.

The type model (`pybpf.btf.types`) is read-only and refers to types by id, so rewriting goes through
`RawType`: one BTF record in wire form, mutable, with names held as Python strings. Its fields:

- `kind` (`Kind`), `name`, `kflag`, `vlen` (the info word's low 16 bits: member count, or a FUNC's linkage),
- `size_type`: the size for INT/STRUCT/UNION/ENUM/ENUM64/DATASEC/FLOAT, the referenced type id otherwise,
- `extra`: the u32 words after the common header, with every string slot held as a `str`:

  ========== =====================================================
  INT        [encoding << 24 | bit_offset << 16 | bits]
  ARRAY      [elem_type, index_type, nelems]
  STRUCT     [name, type, offset] per member (offset packs bitfield_size << 24 when kflag)
  UNION      as STRUCT
  ENUM       [name, value & 0xffffffff] per value
  ENUM64     [name, value low 32 bits, value high 32 bits] per value
  FUNC_PROTO [name, type] per parameter
  VAR        [linkage]
  DATASEC    [var_type, offset, size] per variable
  DECL_TAG   [component_idx & 0xffffffff]
  ========== =====================================================

A list of RawTypes is a BTF type section: record i has type id i + 1 and references are ids in that list.
`raw_types(spec)` reads a spec into that form without building the type model (fast enough for
vmlinux); `to_raw(t)` converts one model object. `encode()` writes a blob from either form.
"""

from __future__ import annotations

import ctypes
import struct
from itertools import accumulate

from pybpf._sys.record import field, field_names, record
from pybpf.btf.spec import _EXTRA_WORDS, BTF_MAGIC, HEADER, Spec
from pybpf.btf.types import (
    Array,
    Composite,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Type,
    Var,
    Void,
    _Ref,
)
from pybpf.errors import BPFError, ObjectError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterable, Mapping, Sequence

    from pybpf._sys.fd import FD

__all__ = [
    "BTFLoadError",
    "KernelBTFFeatures",
    "RawType",
    "StringTable",
    "encode",
    "fixup_datasecs",
    "for_kernel",
    "load_into_kernel",
    "raw_types",
    "raw_types_and_strings",
    "sanitize",
    "to_raw",
]

_U32 = 0xFFFFFFFF
_KCONFIG_SEC = ".kconfig"
_KSYMS_SEC = ".ksyms"

# Kinds whose size_type word is a type id (the others hold a size, or nothing for FWD).
_REF_KINDS = frozenset({
    Kind.PTR, Kind.TYPEDEF, Kind.VOLATILE, Kind.CONST, Kind.RESTRICT, Kind.FUNC, Kind.FUNC_PROTO,
    Kind.VAR, Kind.DECL_TAG, Kind.TYPE_TAG,
})
# (fixed extra words, words per vlen entry) of each kind, as the parser reads them; and which word of
# each entry is a string / a type id.
_LAYOUT = _EXTRA_WORDS
_ENTRY_NAME: dict[int, int] = {Kind.STRUCT: 0, Kind.UNION: 0, Kind.ENUM: 0, Kind.ENUM64: 0, Kind.FUNC_PROTO: 0}
_ENTRY_TYPE: dict[int, int] = {Kind.STRUCT: 1, Kind.UNION: 1, Kind.FUNC_PROTO: 1, Kind.DATASEC: 0}


@record(slots=True)
class RawType:
    """One BTF type record in wire form (see the module docstring for `extra`)."""

    kind: Kind
    name: str = ""
    size_type: int = 0
    vlen: int = 0
    kflag: bool = False
    extra: list[int | str] = field(default_factory=list)

    def copy(self) -> RawType:
        return RawType(self.kind, self.name, self.size_type, self.vlen, self.kflag, list(self.extra))

    def type_ids(self) -> list[int]:
        """Every type id this record refers to (void included)."""
        out = [self.size_type] if self.kind in _REF_KINDS else []
        if self.kind == Kind.ARRAY:
            out += [int(self.extra[0]), int(self.extra[1])]
        pos = _ENTRY_TYPE.get(self.kind)
        if pos is not None:
            step = _LAYOUT[self.kind][1]
            out += [int(x) for x in self.extra[pos::step]]
        return out

    def remap(self, new_id: Callable[[int], int]) -> None:
        """Rewrite every type id in place through `new_id` (which must map 0 to 0)."""
        if self.kind in _REF_KINDS:
            self.size_type = new_id(self.size_type)
        extra = self.extra
        if self.kind == Kind.ARRAY:
            extra[0] = new_id(int(extra[0]))
            extra[1] = new_id(int(extra[1]))
        pos = _ENTRY_TYPE.get(self.kind)
        if pos is not None:
            step = _LAYOUT[self.kind][1]
            for i in range(pos, len(extra), step):
                extra[i] = new_id(int(extra[i]))

    # ---- convenient readers for the entries of vlen kinds ------------------------------------------

    def entries(self) -> list[list[int | str]]:
        step = _LAYOUT.get(self.kind, (0, 0))[1]
        if not step:
            return []
        return [self.extra[i : i + step] for i in range(0, len(self.extra), step)]


# ---- strings ---------------------------------------------------------------------------------------


class StringTable:
    """A BTF string section being built. Starting from an existing section keeps every offset in it
    valid (.BTF.ext line info points into it), and new strings are appended once each."""

    def __init__(self, initial: bytes = b"\0", *, _by_offset: dict[int, str] | None = None) -> None:
        if not initial.startswith(b"\0") or not initial.endswith(b"\0"):
            raise ValueError("a BTF string section starts with an empty string and ends with NUL")
        self._buf = bytearray(initial)
        # Index the whole strings; first occurrence wins, as a deduplicated table has one of each
        # (built in reverse so earlier offsets overwrite later ones; all in C).  `_by_offset`: the section's
        # strings by offset, already split (_strings_by_offset(initial, 0)).
        by_offset = _by_offset if _by_offset is not None else _strings_by_offset(bytes(initial[1:-1]), 1)
        self._offsets: dict[str, int] = dict(zip(reversed(by_offset.values()), reversed(by_offset.keys()), strict=True))
        self._offsets[""] = 0

    @classmethod
    def of_spec(cls, spec: Spec) -> StringTable:
        """The string section of a spec, byte for byte."""
        if spec.base is not None:
            raise ValueError("split BTF (a spec with a base) cannot be re-encoded on its own")
        return cls(spec._strings or b"\0")

    def add(self, s: str) -> int:
        off = self._offsets.get(s)
        if off is None:
            off = len(self._buf)
            raw = s.encode()
            if b"\0" in raw:
                raise ValueError(f"BTF names cannot contain NUL: {s!r}")
            self._buf += raw + b"\0"
            self._offsets[s] = off
        return off

    def __len__(self) -> int:
        return len(self._buf)

    def __bytes__(self) -> bytes:
        return bytes(self._buf)


def _strings_by_offset(section: bytes, first: int) -> dict[int, str]:
    """Offset (from `first`) -> string for every string of a NUL-separated section, decoded in one go.
    The decoder never swallows a NUL, so the byte and text pieces line up."""
    pieces = section.split(b"\0")
    starts = accumulate(map((1).__add__, map(len, pieces)), initial=first)
    return dict(zip(starts, section.decode("utf-8", "replace").split("\0"), strict=False))


_KIND_OF: dict[int, Kind] = {int(k): k for k in Kind}


# ---- reading specs into raw records ----------------------------------------------------------------


def raw_types_and_strings(spec: Spec) -> tuple[list[RawType], StringTable]:
    """raw_types(spec) and StringTable.of_spec(spec), splitting and decoding the string section once."""
    if spec.base is not None:
        raise ValueError("split BTF (a spec with a base) cannot be re-encoded on its own")
    section = spec._strings
    if not section:
        return raw_types(spec), StringTable()
    names = _strings_by_offset(section, 0)
    table = StringTable(section, _by_offset=names)  # before raw_types adds offsets into the middle of strings
    return raw_types(spec, _names=names), table


def raw_types(spec: Spec, *, _names: dict[int, str] | None = None) -> list[RawType]:
    """This spec's own types as RawTypes, decoded straight from its bytes (kflags and all)."""
    if spec.base is not None:
        raise ValueError("split BTF (a spec with a base) cannot be re-encoded on its own")
    words = spec._words  # the type section
    names = _names if _names is not None else _strings_by_offset(spec._strings, 0)
    string = spec.string

    def name_of(off: int) -> str:
        s = names.get(off)
        if s is None:  # an offset into the middle of a string
            s = names[off] = string(off)
        return s

    out: list[RawType] = []
    append = out.append
    layout = _LAYOUT
    entry_name = _ENTRY_NAME
    kinds = _KIND_OF
    n = len(words)
    pos = 0
    while pos < n:
        name_off, info, size_type = words[pos], words[pos + 1], words[pos + 2]
        kind = kinds.get((info >> 24) & 0x1F)
        if kind is None:
            raise ValueError(f"unknown BTF kind {(info >> 24) & 0x1F}")
        vlen = info & 0xFFFF
        fixed, per = layout.get(kind, (0, 0))
        end = pos + 3 + fixed + per * vlen
        extra: list[int | str] = list(words[pos + 3 : end])
        npos = entry_name.get(kind)
        if npos is not None:
            for i in range(npos, len(extra), per):
                extra[i] = name_of(int(extra[i]))
        append(RawType(kind, name_of(name_off), size_type, vlen, bool(info >> 31), extra))
        pos = end
    return out


def to_raw(t: Type) -> RawType:
    """One model type as a RawType; its references keep the ids of its own spec."""
    kind = t.kind
    if isinstance(t, Int):
        return RawType(kind, t.name, t.size, 0, False, [(int(t.encoding) << 24) | (t.bit_offset << 16) | t.bits])
    if isinstance(t, Array):
        return RawType(kind, "", 0, 0, False, [t.elem_id, t.index_id, t.nelems])
    if isinstance(t, Composite):
        kflag = any(m.bitfield_size for m in t.members)
        extra: list[int | str] = []
        for m in t.members:
            off = (m.bitfield_size << 24) | m.bit_offset if kflag else m.bit_offset
            extra += [m.name, m.type_id, off]
        return RawType(kind, t.name, t.size, len(t.members), kflag, extra)
    if isinstance(t, Enum):
        extra = []
        if t.is64:
            for v in t.values:
                u = v.value & 0xFFFFFFFFFFFFFFFF
                extra += [v.name, u & _U32, u >> 32]
            return RawType(Kind.ENUM64, t.name, t.size, len(t.values), t.signed, extra)
        for v in t.values:
            extra += [v.name, v.value & _U32]
        return RawType(Kind.ENUM, t.name, t.size, len(t.values), t.signed, extra)
    if isinstance(t, Fwd):
        return RawType(kind, t.name, 0, 0, t.is_union)
    if isinstance(t, FuncProto):
        extra = []
        for p in t.params:
            extra += [p.name, p.type_id]
        return RawType(kind, "", t.return_id, len(t.params), False, extra)
    if isinstance(t, Func):
        return RawType(kind, t.name, t.type_id, int(t.linkage))
    if isinstance(t, Var):
        return RawType(kind, t.name, t.type_id, 0, False, [int(t.linkage)])
    if isinstance(t, Datasec):
        extra = []
        for sec_var in t.vars:
            extra += [sec_var.type_id, sec_var.offset, sec_var.size]
        return RawType(kind, t.name, t.size, len(t.vars), False, extra)
    if isinstance(t, Float):
        return RawType(kind, t.name, t.size)
    if isinstance(t, DeclTag):
        return RawType(kind, t.name, t.type_id, 0, False, [t.component_idx & _U32])
    if isinstance(t, _Ref):  # PTR, TYPEDEF, qualifiers, TYPE_TAG
        return RawType(kind, t.name, t.type_id)
    if isinstance(t, Void):
        raise ValueError("void (type id 0) is implicit in BTF and cannot be encoded")
    raise ValueError(f"cannot encode BTF type {t!r}")


def _raws_from_types(types: Sequence[Type]) -> list[RawType]:
    """Convert model types and renumber them 1..n in list order, remapping references."""
    new_ids: dict[tuple[int, int], int] = {}
    for i, t in enumerate(types, 1):
        new_ids[(id(t.spec), t.id)] = i
    out: list[RawType] = []
    for t in types:
        raw = to_raw(t)
        spec_key = id(t.spec)

        def new_id(old: int, spec_key: int = spec_key, owner: Type = t) -> int:
            if old == 0:
                return 0
            found = new_ids.get((spec_key, old))
            if found is None:
                raise ValueError(f"{owner!r} refers to type id {old}, which is not in the list being encoded")
            return found

        raw.remap(new_id)
        out.append(raw)
    return out


# ---- encoding --------------------------------------------------------------------------------------


def encode(
    types: Spec | Sequence[Type] | Sequence[RawType],
    *,
    strings: StringTable | bytes | None = None,
    extra_strings: Iterable[str] = (),
) -> bytes:
    """Write a BTF blob (header, type section, string section).

    `types` is a Spec (its own types, ids kept), model types (renumbered 1..n in list order, references
    remapped; each must refer only to types in the list), or RawTypes (taken as they are). `strings` is a
    string section to start from (kept verbatim, new names appended); without it the section is built
    fresh, deduplicated, in first-use order. `extra_strings` are added after the types' names.
    """
    if isinstance(types, Spec):
        raws: Sequence[RawType] = raw_types(types)
    elif types and isinstance(types[0], Type):
        if not all(isinstance(t, Type) for t in types):
            raise TypeError("encode() takes either model types or RawTypes, not a mix")
        raws = _raws_from_types(types)  # type: ignore[arg-type]
    else:
        if not all(isinstance(t, RawType) for t in types):
            raise TypeError("encode() takes either model types or RawTypes, not a mix")
        raws = types  # type: ignore[assignment]
    table = strings if isinstance(strings, StringTable) else StringTable(strings or b"\0")
    add = table.add
    words: list[int] = []
    push = words.append
    extend = words.extend
    str_type = str
    for raw in raws:
        info = (int(raw.kind) << 24) | raw.vlen | (0x80000000 if raw.kflag else 0)
        push(add(raw.name) if raw.name else 0)
        push(info)
        push(raw.size_type)
        if raw.extra:
            extend([add(w) if w.__class__ is str_type else w for w in raw.extra])  # type: ignore[misc,arg-type]
    for s in extra_strings:
        add(s)
    try:
        type_section = struct.pack(f"<{len(words)}I", *words)  # not array: its import brings collections
    except struct.error:
        _raise_bad_word(raws)
        raise
    str_section = bytes(table)
    header = HEADER.pack(BTF_MAGIC, 1, 0, HEADER.size, 0, len(type_section), len(type_section), len(str_section))
    return header + type_section + str_section


def _raise_bad_word(raws: Sequence[RawType]) -> None:
    for i, raw in enumerate(raws, 1):
        for w in (raw.size_type, raw.vlen, *raw.extra):
            if isinstance(w, int) and not 0 <= w <= _U32:
                raise ValueError(f"BTF type {i} ({raw.kind.name} {raw.name!r}) has a word out of u32 range: {w}")
        if raw.vlen > 0xFFFF:
            raise ValueError(f"BTF type {i} ({raw.kind.name} {raw.name!r}) has vlen {raw.vlen} > 65535")


def _raws_and_strings(source: Spec | Sequence[RawType], strings: StringTable | bytes | None) -> tuple[
    list[RawType], StringTable
]:
    if isinstance(source, Spec):
        if strings is None:
            return raw_types_and_strings(source)
        raws = raw_types(source)
        table = strings if isinstance(strings, StringTable) else StringTable(strings)
    else:
        raws = [r.copy() for r in source]
        table = strings if isinstance(strings, StringTable) else StringTable(strings or b"\0")
    return raws, table


# ---- DATASEC fix-ups (what libbpf does to every object before loading it) -----------------------------


def fixup_datasecs(
    spec: Spec,
    section_sizes: Mapping[str, int],
    symbol_offsets: Mapping[tuple[str, str], int],
    *,
    hidden_symbols: Collection[tuple[str, str]] = (),
) -> Spec:
    """An object's BTF with DATASEC sizes and VAR offsets filled in from its ELF file.

    clang leaves DATASEC sizes (and the offsets of non-static variables) at zero; the kernel rejects that.
    `section_sizes` maps ELF section name -> size, `symbol_offsets` maps (section, symbol) -> st_value,
    `hidden_symbols` lists (section, symbol) with STV_HIDDEN/INTERNAL visibility (their VARs become
    static, as in libbpf). DATASECs that already have a size (the static linker fixed them) keep their
    offsets. `.kconfig`/`.ksyms` belong to extern resolution: only what the caller passes is applied.
    Variables are then sorted by offset. Type ids and string offsets are unchanged (.BTF.ext stays valid).
    """
    raws, table = _raws_and_strings(spec, None)
    _fixup_raw_datasecs(raws, section_sizes, symbol_offsets, hidden_symbols)
    return Spec(encode(raws, strings=table), name=spec.name)


def _fixup_raw_datasecs(
    raws: list[RawType],
    section_sizes: Mapping[str, int],
    symbol_offsets: Mapping[tuple[str, str], int],
    hidden_symbols: Collection[tuple[str, str]] = (),
) -> None:
    hidden = set(hidden_symbols)
    for raw in raws:
        if raw.kind != Kind.DATASEC:
            continue
        sec = raw.name
        externs = sec in (_KCONFIG_SEC, _KSYMS_SEC)
        fix_offsets = False
        if raw.size_type == 0:
            size = section_sizes.get(sec)
            if size is None or (size == 0 and not externs):
                if not externs:
                    raise ObjectError(
                        f"BTF DATASEC {sec!r} has size 0 and the ELF file has no such section (or it is empty); "
                        "recompile the object, it does not match its BTF",
                        section=".BTF",
                    )
            else:
                raw.size_type = size
                fix_offsets = True
        entries = raw.entries()
        for entry in entries:
            var_id = int(entry[0])
            if not 1 <= var_id <= len(raws) or raws[var_id - 1].kind != Kind.VAR:
                raise ObjectError(f"BTF DATASEC {sec!r} lists type {var_id}, which is not a VAR", section=".BTF")
            var = raws[var_id - 1]
            linkage = int(var.extra[0])
            if not externs and linkage in (0, 2):  # static vars keep clang's offsets; externs have none
                continue
            off = symbol_offsets.get((sec, var.name))
            if off is None:
                if fix_offsets and not externs:
                    raise ObjectError(
                        f"no ELF symbol for variable {var.name!r} of section {sec!r}; "
                        "the object's symbol table does not match its BTF",
                        section=".BTF",
                    )
                continue
            if fix_offsets or externs:
                entry[1] = off
            if (sec, var.name) in hidden:
                var.extra[0] = 0
        entries.sort(key=lambda e: int(e[1]))
        raw.extra = [w for e in entries for w in e]


# ---- sanitising for older kernels ------------------------------------------------------------------


@record(slots=True)
class KernelBTFFeatures:
    """Which BTF kinds the kernel accepts (all True: a current kernel). Filled by pybpf.features."""

    func: bool = True  # FUNC, FUNC_PROTO as functions (4.20 / 5.0)
    global_func: bool = True  # FUNC with global linkage (5.6)
    datasec: bool = True  # VAR, DATASEC (5.2)
    float: bool = True  # FLOAT (5.13)
    decl_tag: bool = True  # DECL_TAG (5.16)
    type_tag: bool = True  # TYPE_TAG (5.17)
    enum64: bool = True  # ENUM64 and signed enums (6.0)

    def all_supported(self) -> bool:
        return all(getattr(self, f) for f in field_names(self))


_ENUM64_PLACEHOLDER = "enum64_placeholder"


def sanitize(raws: Sequence[RawType], features: KernelBTFFeatures) -> list[RawType]:
    """Rewrite kinds the kernel lacks into kinds it has, as libbpf's bpf_object__sanitize_btf does.

    Type ids are kept (programs' func_info and the maps refer to them); at most one type is appended
    (an INT for ENUM64 members). The input is not modified.
    """
    out = [r.copy() for r in raws]
    placeholder_id = 0
    for raw in out:
        kind = raw.kind
        if (kind == Kind.VAR and not features.datasec) or (kind == Kind.DECL_TAG and not features.decl_tag):
            # size 1: anything larger could exceed the variable it replaces and fail validation
            raw.kind, raw.size_type, raw.vlen, raw.kflag, raw.extra = Kind.INT, 1, 0, False, [8]
        elif kind == Kind.DATASEC and not features.datasec:
            members: list[int | str] = []
            for var_id, offset, _size in raw.entries():
                members += [out[int(var_id) - 1].name, int(var_id), int(offset) * 8]
            raw.kind, raw.name, raw.kflag, raw.extra = Kind.STRUCT, raw.name.replace(".", "_"), False, members
        elif kind == Kind.FUNC_PROTO and not features.func:
            # params (name, type) become enumerators (name, value): same record layout. Unlike libbpf we
            # name unnamed params, since kernels since 5.0 reject nameless enumerators.
            for i in range(0, len(raw.extra), 2):
                if not raw.extra[i]:
                    raw.extra[i] = f"param{i // 2}"
            raw.kind, raw.size_type, raw.kflag = Kind.ENUM, 4, False
        elif kind == Kind.FUNC and not features.func:
            raw.kind, raw.vlen = Kind.TYPEDEF, 0
        elif kind == Kind.FUNC and not features.global_func:
            raw.vlen = 0  # static linkage
        elif kind == Kind.FLOAT and not features.float:
            # an equally sized empty struct; anonymous, since "float" is no valid struct name
            raw.kind, raw.name, raw.vlen = Kind.STRUCT, "", 0
        elif kind == Kind.TYPE_TAG and not features.type_tag:
            raw.kind, raw.name = Kind.CONST, ""
        elif kind == Kind.ENUM and not features.enum64:
            raw.kflag = False  # signed enums came with ENUM64
        elif kind == Kind.ENUM64 and not features.enum64:
            if not placeholder_id:
                out.append(RawType(Kind.INT, _ENUM64_PLACEHOLDER, 1, 0, False, [8]))
                placeholder_id = len(out)
            members = []
            for name, _lo, _hi in raw.entries():
                members += [name, placeholder_id, 0]
            raw.kind, raw.kflag, raw.extra = Kind.UNION, False, members
    return out


def for_kernel(
    source: Spec | Sequence[RawType],
    features: KernelBTFFeatures | None = None,
    *,
    strings: StringTable | bytes | None = None,
    section_sizes: Mapping[str, int] | None = None,
    symbol_offsets: Mapping[tuple[str, str], int] | None = None,
) -> bytes:
    """An object's BTF re-encoded for BPF_BTF_LOAD on a kernel with `features`.

    DATASEC fix-ups run when `section_sizes` is given (see fixup_datasecs); variables are always sorted
    by offset. From a Spec the string section is kept byte for byte, so .BTF.ext offsets stay valid.
    """
    raws, table = _raws_and_strings(source, strings)
    if section_sizes is not None:
        _fixup_raw_datasecs(raws, section_sizes, symbol_offsets or {})
    else:
        _sort_datasec_vars(raws)
    if features is not None and not features.all_supported():
        raws = sanitize(raws, features)
    return encode(raws, strings=table)


def _sort_datasec_vars(raws: list[RawType]) -> None:
    for raw in raws:
        if raw.kind == Kind.DATASEC and raw.vlen > 1:
            entries = raw.entries()
            entries.sort(key=lambda e: int(e[1]))
            raw.extra = [w for e in entries for w in e]


# ---- loading -------------------------------------------------------------------------------------


class BTFLoadError(BPFError):
    """BPF_BTF_LOAD failed; `log` is the kernel's BTF verifier log."""

    def __init__(self, err: int, log: str) -> None:
        self.log = log
        lines = [ln for ln in log.splitlines() if ln.strip()]
        msg = "the kernel rejected the BTF blob (BPF_BTF_LOAD)"
        super().__init__(msg, err, "BPF_BTF_LOAD")
        if lines:
            self.message += "\n  --- end of the kernel's BTF log ---\n  " + "\n  ".join(lines[-8:])


_LOG_SIZE = 1 << 20


def load_into_kernel(blob: bytes, *, log_level: int = 0) -> FD:
    """BPF_BTF_LOAD: returns the owned BTF fd (`pybpf._sys.FD`). On failure retries with a log and raises
    BTFLoadError carrying it."""
    from pybpf._sys.syscall import btf_load

    log = ctypes.create_string_buffer(_LOG_SIZE) if log_level else None

    try:
        return btf_load(blob, log, log_level)
    except BPFError as first:
        err = first.errno or 0
    if log is None:
        log = ctypes.create_string_buffer(_LOG_SIZE)
        try:
            return btf_load(blob, log, 1)  # success here means the first failure was transient
        except BPFError as second:
            err = second.errno or 0
    raise BTFLoadError(err, log.value.decode("utf-8", "replace"))
