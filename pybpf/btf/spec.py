"""Parse BTF blobs lazily.

A `Spec` keeps the raw bytes and an index of where each type record starts; a type is decoded the
first time it is asked for. For the kernel's BTF the index (record offsets, and the named records sorted
by name) is cached on disk per boot, so a second process finds what CO-RE needs without scanning 130k
records.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
from array import array
from bisect import bisect_left

from pybpf._cache import boot_id, cache_root, write_atomically
from pybpf.btf.types import (
    Array,
    Const,
    Datasec,
    DeclTag,
    Enum,
    EnumValue,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    Kind,
    Member,
    Param,
    Pointer,
    Restrict,
    Struct,
    Type,
    Typedef,
    TypeTag,
    Union,
    Var,
    VarSecinfo,
    Void,
    Volatile,
)
from pybpf.errors import ObjectError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    # record offsets, named records, sorted?, FUNC records, sorted?, FUNC name offsets
    _Index = tuple[array[int], array[int], bool, array[int], bool, array[int] | None]

BTF_MAGIC = 0xEB9F
HEADER = struct.Struct("<HBBIIIII")  # magic, version, flags, hdr_len, type_off, type_len, str_off, str_len

# Extra u32 words after the 3-word common header, as (fixed, per-vlen) for each kind.
_EXTRA_WORDS: dict[int, tuple[int, int]] = {
    Kind.INT: (1, 0),
    Kind.ARRAY: (3, 0),
    Kind.STRUCT: (0, 3),
    Kind.UNION: (0, 3),
    Kind.ENUM: (0, 2),
    Kind.FUNC_PROTO: (0, 2),
    Kind.VAR: (1, 0),
    Kind.DATASEC: (0, 3),
    Kind.DECL_TAG: (1, 0),
    Kind.ENUM64: (0, 3),
}
_NO_EXTRA = (0, 0)
# Kinds whose records may carry a name (FUNC apart). The others (PTR, ARRAY, CONST, VOLATILE, RESTRICT,
# FUNC_PROTO) must be anonymous: the kernel rejects a name on them.
_NAMED_KINDS = frozenset({
    Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.FWD, Kind.TYPEDEF, Kind.VAR, Kind.DATASEC,
    Kind.FLOAT, Kind.DECL_TAG, Kind.TYPE_TAG, Kind.ENUM64,
})

_TypeClass = type[Type] | tuple[type[Type], ...]
KERNEL_BTF = "/sys/kernel/btf/vmlinux"
_INDEX_VERSION = 6
# Index file: magic, version, counts of records, named records (and whether sorted by name), FUNC records
# (and whether sorted) and FUNC name offsets; then those arrays (u32 each) in that order.
_INDEX_HEADER = struct.Struct("<4s7I")
_INDEX_MAGIC = b"PBTI"
# FUNC lookups in one process answered by string search (~1.5 ms each for vmlinux) before sorting every
# FUNC name pays off (~15-30 ms); the sorted names are then saved for later processes.
_FUNC_SEARCHES_BEFORE_SORT = 8
# Names are sorted by their first bytes (this many, the terminating NUL and what follows included): one
# slice of the string section per name instead of a search for its end. Longer names are told apart at
# lookup time.
_NAME_WINDOW = 64
# Specs with fewer types answer name lookups from a dict of every name; larger ones (vmlinux) bisect the
# name-sorted index.
_SMALL_SPEC = 4096


class Spec:
    """One BTF blob (optionally split on top of a base spec, as kernel module BTF is)."""

    next_id: int
    _str_end: int

    def __init__(
        self,
        data: bytes | bytearray | memoryview | mmap.mmap,
        base: Spec | None = None,
        *,
        name: str = "",
        _index: _Index | None = None,
    ) -> None:
        self.name = name
        self.base = base
        # bytes, or a read-only mmap of the kernel's BTF: then only the pages that are used are read.
        buf = data if isinstance(data, (bytes, mmap.mmap)) else bytes(data)
        self._buf = buf
        self._data: bytes | None = buf if isinstance(buf, bytes) else None
        if len(buf) < HEADER.size:
            raise ObjectError("BTF blob shorter than its header", section=".BTF", offset=0)
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = HEADER.unpack_from(buf)
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise ObjectError("big-endian BTF is not supported", section=".BTF", offset=0)
            raise ObjectError(f"bad BTF magic {magic:#x}", section=".BTF", offset=0)
        if version != 1:
            raise ObjectError(f"unsupported BTF version {version}", section=".BTF", offset=2)
        end = len(buf)
        if hdr_len < HEADER.size or hdr_len + type_off + type_len > end or hdr_len + str_off + str_len > end:
            raise ObjectError("BTF header points outside the blob", section=".BTF", offset=4)
        if type_len % 4:
            raise ObjectError("BTF type section length is not a multiple of 4", section=".BTF", offset=12)
        self.hdr_len = hdr_len
        self._types_start = hdr_len + type_off
        self._types_len = type_len
        self._str_start = hdr_len + str_off
        self._str_len = str_len
        self._strings_copy: bytes | None = None
        if str_len and buf[self._str_start + str_len - 1] != 0:
            raise ObjectError("BTF string section is not NUL terminated", section=".BTF", offset=hdr_len + str_off)
        self._words = memoryview(buf)[self._types_start : self._types_start + type_len].cast("I")
        if sys.byteorder != "little":
            raise ObjectError("pybpf only reads BTF on little-endian hosts", section=".BTF")
        # Ids of this spec start after the base's; string offsets after the base's string section.
        self.first_id = base.next_id if base is not None else 1
        self._str_base = base._str_end if base is not None else 0
        self._str_end = self._str_base + str_len
        self._names: dict[str, int | list[int]] | None = None
        # The named records, FUNCs apart (vmlinux has 56k FUNCs against 15k others, and CO-RE never looks
        # for a FUNC), as word offsets: in id order until sorted by name. The FUNC records: in id order
        # (with their name offsets once a FUNC is looked up) until enough FUNC lookups make sorting their
        # names pay off.
        self._named: array[int]
        self._named_sorted = False
        self._funcs: array[int]
        self._funcs_sorted = False
        self._func_name_offs: array[int] | None = None
        self._func_offs_sorted: tuple[list[int], list[int]] | None = None
        self._func_searches = 0
        self._cache_file: str | None = None  # where load_cached keeps the index
        if _index is not None:
            (self._offsets, self._named, self._named_sorted, self._funcs, self._funcs_sorted,
             self._func_name_offs) = _index
        else:
            self._offsets = self._scan()
        self.next_id = self.first_id + len(self._offsets)
        self._cache: dict[int, Type] = {}

    @property
    def data(self) -> bytes:
        """The raw BTF blob."""
        if self._data is None:
            self._data = bytes(self._buf)
        return self._data

    @property
    def _strings(self) -> bytes:
        """The string section (a copy when the blob is mapped)."""
        if self._strings_copy is None:
            self._strings_copy = bytes(self._buf[self._str_start : self._str_start + self._str_len])
        return self._strings_copy

    @property
    def _name_order(self) -> array[int] | None:
        """Word offsets of the named non-FUNC records sorted by name, once built."""
        return self._named if self._named_sorted else None

    @property
    def _func_order(self) -> array[int] | None:
        """Word offsets of the FUNC records sorted by name, once built."""
        return self._funcs if self._funcs_sorted else None

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], base: Spec | None = None) -> Spec:
        with open(path, "rb") as f:
            return cls(f.read(), base, name=str(path))

    def _scan(self) -> array[int]:
        """Word offsets of each type record; validates lengths and kinds as it goes, and notes the
        named records (FUNCs apart) and the FUNC records, for the name indexes.

        A record's length depends only on its info word (kind and vlen), and vmlinux has a few hundred
        distinct info words for 130k records: a dict of known lengths keeps the loop to an index, a lookup
        and an add. The length is stored negated for kinds that may be named and as 0 for FUNC (always 3
        words), so the common records take one branch. Unknown info words (KeyError) and the end of the
        section (IndexError) leave the loop by exception instead of a test per record.
        """
        words = self._words
        n = len(words)
        infos = words[1:]  # infos[pos] is the info word of the record at word `pos`
        offsets = array("I")
        append = offsets.append
        named = array("I")
        add_named = named.append
        funcs = array("I")
        add_func = funcs.append
        lengths: dict[int, int] = {}
        pos = 0
        while True:
            try:
                while True:
                    append(pos)
                    step = lengths[infos[pos]]
                    if step > 0:
                        pos += step
                    elif step:
                        if words[pos]:
                            add_named(pos)
                        pos -= step
                    else:
                        add_func(pos)
                        pos += 3
            except KeyError:
                offsets.pop()
                info = infos[pos]
                kind = (info >> 24) & 0x1F
                if kind == 0 or kind > Kind.ENUM64:
                    raise ObjectError(f"unknown BTF kind {kind}", section=".BTF",
                                      offset=self._types_start + pos * 4) from None
                fixed, per = _EXTRA_WORDS.get(kind, _NO_EXTRA)
                step = 3 + fixed + per * (info & 0xFFFF)
                lengths[info] = 0 if kind == Kind.FUNC else -step if kind in _NAMED_KINDS else step
            except IndexError:
                offsets.pop()  # `pos` is no record: the section ended there, or inside the last record
                break
        if pos < n:
            raise ObjectError("truncated BTF type record", section=".BTF", offset=self._types_start + pos * 4)
        if pos > n:
            raise ObjectError("BTF type section ends inside a record", section=".BTF",
                              offset=self._types_start + n * 4)
        self._named, self._funcs = named, funcs
        return offsets

    # ---- strings ------------------------------------------------------------------------------

    def string(self, offset: int) -> str:
        rel = offset - self._str_base
        if 0 <= rel < self._str_len:  # this spec's own strings inline (the hot path of _decode)
            start = self._str_start + rel
            buf = self._buf
            return buf[start : buf.find(b"\0", start)].decode("utf-8", "replace")
        return self._string_bytes(offset).decode("utf-8", "replace")  # the base's, or out of range

    def _string_bytes(self, offset: int) -> bytes:
        """The raw bytes of a string (no decoding), for name comparisons."""
        if offset < self._str_base:
            assert self.base is not None
            return self.base._string_bytes(offset)
        rel = offset - self._str_base
        if rel >= self._str_len:
            raise ObjectError(f"BTF string offset {offset} out of range", section=".BTF")
        start = self._str_start + rel
        buf = self._buf
        return buf[start : buf.find(b"\0", start)]

    # ---- types --------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of type ids addressable from this spec, void and the base's included."""
        return self.next_id

    def type(self, type_id: int) -> Type:
        if type_id < self.first_id:
            if type_id == 0:
                return _VOID
            if self.base is None:
                raise ObjectError(f"BTF type id {type_id} out of range", section=".BTF")
            return self.base.type(type_id)
        t = self._cache.get(type_id)
        if t is None:
            t = self._decode(type_id)
            self._cache[type_id] = t
        return t

    def __iter__(self) -> Iterator[Type]:
        """This spec's own types (not the base's), in id order."""
        for i in range(self.first_id, self.next_id):
            yield self.type(i)

    def raw_kind_and_name(self, type_id: int) -> tuple[int, int]:
        """Kind and name offset of a type without decoding it (cheap, for scans)."""
        pos = self._offsets[type_id - self.first_id]
        return (self._words[pos + 1] >> 24) & 0x1F, self._words[pos]

    def _decode(self, type_id: int) -> Type:
        idx = type_id - self.first_id
        if idx < 0 or idx >= len(self._offsets):
            raise ObjectError(f"BTF type id {type_id} out of range (max {self.next_id - 1})", section=".BTF")
        w = self._words
        pos = self._offsets[idx]
        name_off, info, size_type = w[pos], w[pos + 1], w[pos + 2]
        kind = (info >> 24) & 0x1F
        vlen = info & 0xFFFF
        kflag = bool(info >> 31)
        name = self.string(name_off) if name_off else ""
        p = pos + 3
        s32 = _s32
        if kind == Kind.INT:
            enc = w[p]
            return Int(self, type_id, name, size_type, (enc >> 24) & 0xF, enc & 0xFF, (enc >> 16) & 0xFF)
        if kind == Kind.PTR:
            return Pointer(self, type_id, name, size_type)
        if kind == Kind.ARRAY:
            return Array(self, type_id, w[p], w[p + 1], w[p + 2])
        if kind in (Kind.STRUCT, Kind.UNION):
            members = []
            for i in range(vlen):
                q = p + 3 * i
                moff = w[q + 2]
                if kflag:
                    bit_off, bf = moff & 0xFFFFFF, moff >> 24
                else:
                    bit_off, bf = moff, 0
                members.append(Member(self.string(w[q]) if w[q] else "", w[q + 1], bit_off, bf, self))
            cls = Struct if kind == Kind.STRUCT else Union
            return cls(self, type_id, name, size_type, members)
        if kind == Kind.ENUM:
            values = [EnumValue(self.string(w[p + 2 * i]), s32(w[p + 2 * i + 1]) if kflag else w[p + 2 * i + 1])
                      for i in range(vlen)]
            return Enum(self, type_id, name, size_type, values, kflag)
        if kind == Kind.ENUM64:
            values = []
            for i in range(vlen):
                q = p + 3 * i
                v = w[q + 1] | (w[q + 2] << 32)
                if kflag and v >= 1 << 63:
                    v -= 1 << 64
                values.append(EnumValue(self.string(w[q]), v))
            return Enum(self, type_id, name, size_type, values, kflag, is64=True)
        if kind == Kind.FWD:
            return Fwd(self, type_id, name, kflag)
        if kind == Kind.TYPEDEF:
            return Typedef(self, type_id, name, size_type)
        if kind == Kind.VOLATILE:
            return Volatile(self, type_id, name, size_type)
        if kind == Kind.CONST:
            return Const(self, type_id, name, size_type)
        if kind == Kind.RESTRICT:
            return Restrict(self, type_id, name, size_type)
        if kind == Kind.TYPE_TAG:
            return TypeTag(self, type_id, name, size_type)
        if kind == Kind.FUNC:
            return Func(self, type_id, name, size_type, vlen)
        if kind == Kind.FUNC_PROTO:
            params = [Param(self.string(w[p + 2 * i]) if w[p + 2 * i] else "", w[p + 2 * i + 1], self)
                      for i in range(vlen)]
            return FuncProto(self, type_id, size_type, params)
        if kind == Kind.VAR:
            return Var(self, type_id, name, size_type, w[p])
        if kind == Kind.DATASEC:
            secinfo = [VarSecinfo(w[p + 3 * i], w[p + 3 * i + 1], w[p + 3 * i + 2], self) for i in range(vlen)]
            return Datasec(self, type_id, name, size_type, secinfo)
        if kind == Kind.FLOAT:
            return Float(self, type_id, name, size_type)
        if kind == Kind.DECL_TAG:
            return DeclTag(self, type_id, name, size_type, s32(w[p]))
        raise ObjectError(f"unknown BTF kind {kind} for type {type_id}", section=".BTF")

    # ---- lookup by name -------------------------------------------------------------------------

    def _name_index(self) -> dict[str, int | list[int]]:
        if self._names is None:
            names: dict[str, int | list[int]] = {}
            w = self._words
            string = self.string
            first = self.first_id
            for idx, pos in enumerate(self._offsets):
                off = w[pos]
                if not off:
                    continue
                nm = string(off)
                prev = names.get(nm)
                tid = first + idx
                if prev is None:
                    names[nm] = tid
                elif isinstance(prev, list):
                    prev.append(tid)
                else:
                    names[nm] = [prev, tid]
            self._names = names
        return self._names

    def ids_by_name(self, name: str, *, funcs: bool = True) -> list[int]:
        """Ids of every type of this spec and its base with exactly this name (FUNCs left out of
        large specs when `funcs` is False: a cheaper search when no FUNC is wanted)."""
        found = self.base.ids_by_name(name, funcs=funcs) if self.base is not None else []
        if self._names is not None or self.next_id - self.first_id < _SMALL_SPEC:
            hit = self._name_index().get(name)
            if hit is None:
                return found
            return [*found, *hit] if isinstance(hit, list) else [*found, hit]
        # Large specs (the kernel's): bisect the name-sorted index instead of decoding 130k names.
        raw = name.encode()
        id_at = self._id_at
        own = [id_at(pos) for _name, pos in self._sorted_names_from(self._name_sorted_index(), raw, exact=True)]
        if funcs:
            own += [id_at(pos) for _name, pos in self._func_matches(raw, exact=True)]
        own.sort()
        found.extend(own)
        return found

    def ids_by_name_prefix(self, prefix: str, *, funcs: bool = True) -> list[tuple[str, int]]:
        """(name, id) of this spec's own types (not the base's) whose name starts with `prefix`."""
        raw = prefix.encode()
        if self.next_id - self.first_id < _SMALL_SPEC:
            first = self.first_id
            out = []
            for idx, pos in enumerate(self._offsets):
                off = self._words[pos]
                if off and self._string_bytes(off).startswith(raw):
                    out.append((self.string(off), first + idx))
            return out
        hits = sorted(self._sorted_names_from(self._name_sorted_index(), raw, exact=False))
        if funcs:
            hits += self._func_matches(raw, exact=False)
        return [(nm.decode("utf-8", "replace"), self._id_at(pos)) for nm, pos in hits]

    def _id_at(self, pos: int) -> int:
        """The id of the record starting at word `pos`."""
        return self.first_id + bisect_left(self._offsets, pos)

    def _name_key(self) -> Callable[[int], bytes]:
        """The sort key of the name-sorted indexes, from a record's word offset: the first bytes at its
        name offset (see _NAME_WINDOW), or for split specs (names also in the base's strings) the name."""
        w = self._words
        if self._str_base:
            name_of = self._string_bytes
            return lambda pos: name_of(w[pos])
        buf, start = self._buf, self._str_start  # slices of the blob itself: no copy of the strings

        def key(pos: int) -> bytes:
            at = start + w[pos]
            return buf[at : at + _NAME_WINDOW]

        return key

    def _sorted_names_from(self, order: array[int], raw: bytes, *, exact: bool) -> Iterator[tuple[bytes, int]]:
        """(name, record word offset) from a name-sorted index: names equal to `raw` (exact) or starting
        with it, by name (same names in no set order)."""
        key = self._name_key()
        if self._str_base:  # keys are the names
            for i in range(bisect_left(order, raw, key=key), len(order)):
                pos = order[i]
                nm = key(pos)
                if nm != raw and (exact or not nm.startswith(raw)):
                    return
                yield nm, pos
            return
        # Keys are the first bytes of the names and what follows: those starting with the probe are one
        # run of the index, and hold every match.
        name_of, w = self._string_bytes, self._words
        probe = (raw + b"\0" if exact else raw)[:_NAME_WINDOW]
        for i in range(bisect_left(order, probe, key=key), len(order)):
            pos = order[i]
            if not key(pos).startswith(probe):
                return
            nm = name_of(w[pos])
            if nm == raw if exact else nm.startswith(raw):
                yield nm, pos

    def _name_sorted_index(self) -> array[int]:
        """Word offsets of the named types other than FUNCs, sorted by name (built on the first lookup,
        then added to the on-disk index)."""
        if not self._named_sorted:
            self._named = self._sort_by_name(self._named)
            self._named_sorted = True
            self._save_index()
        return self._named

    def _func_sorted_index(self) -> array[int]:
        """Word offsets of the FUNC types sorted by name (built once FUNC lookups are frequent enough,
        then added to the on-disk index)."""
        if not self._funcs_sorted:
            self._funcs = self._sort_by_name(self._funcs)
            self._funcs_sorted = True
            self._func_name_offs = self._func_offs_sorted = None
            self._save_index()
        return self._funcs

    def _sort_by_name(self, positions: array[int]) -> array[int]:
        """The named ones of these records (given in id order) sorted by `_name_key`, same names by id."""
        w = self._words
        offs = [w[pos] for pos in positions]
        if self._str_base:
            name_of = self._string_bytes
            keys = [name_of(off) if off else b"" for off in offs]
        else:  # as _name_key does, inline: a call per name through _name_key costs ~20% more on vmlinux
            buf, start, end = self._buf, self._str_start, self._str_start + _NAME_WINDOW
            keys = [buf[start + off : end + off] for off in offs]
        perm = sorted(range(len(keys)), key=keys.__getitem__)  # stable: same keys stay in id order
        # Anonymous records (and empty names) sort first: their keys are empty or start with a NUL
        # (offset 0 is the empty string, unless a malformed section starts otherwise).
        keep = perm[bisect_left(perm, b"\1", key=keys.__getitem__) :]
        if not self._str_base and self._str_len and self._buf[self._str_start]:
            keep = [i for i in keep if offs[i]]
        return array("I", [positions[i] for i in keep])

    def _func_matches(self, raw: bytes, *, exact: bool) -> list[tuple[bytes, int]]:
        """(name, record word offset) of the FUNCs named `raw` (exact) or starting with it, by name then id.

        Until FUNC lookups are frequent, a lookup searches the string section for the name (~1.5 ms for
        vmlinux) and the FUNCs' name offsets for its offset, rather than sorting 56k names (~15 ms).
        """
        if not self._funcs_sorted and raw and self._func_searches < _FUNC_SEARCHES_BEFORE_SORT:
            offsets = self._string_offsets(raw, exact=exact)
            if offsets is not None:
                self._func_searches += 1
                out: list[tuple[bytes, int]] = []
                funcs = self._funcs
                if len(offsets) > 2:  # many strings (mostly tails of others): bisect the sorted offsets
                    sorted_offs, which = self._funcs_by_name_offset()
                    for off in offsets:
                        i = bisect_left(sorted_offs, off)
                        while i < len(sorted_offs) and sorted_offs[i] == off:
                            out.append((raw if exact else self._string_bytes(off), funcs[which[i]]))
                            i += 1
                elif offsets:  # search the name offsets (~0.2 ms each for vmlinux)
                    name_offs = self._func_name_offsets().tobytes()
                    for off in offsets:
                        needle = off.to_bytes(4, "little")
                        hit = name_offs.find(needle)
                        while hit >= 0:
                            if not hit & 3:
                                out.append((raw if exact else self._string_bytes(off), funcs[hit >> 2]))
                            hit = name_offs.find(needle, hit + 1)
                out.sort()
                return out
        return sorted(self._sorted_names_from(self._func_sorted_index(), raw, exact=exact))

    def _func_name_offsets(self) -> array[int]:
        """The name offset of each FUNC record of `_funcs` (in id order), kept in the on-disk index."""
        if self._func_name_offs is None:
            w = self._words
            self._func_name_offs = array("I", [w[pos] for pos in self._funcs])
            self._save_index()
        return self._func_name_offs

    def _funcs_by_name_offset(self) -> tuple[list[int], list[int]]:
        """The FUNC name offsets sorted, and for each its FUNC's index in `_funcs`."""
        if self._func_offs_sorted is None:
            offs = self._func_name_offsets().tolist()
            which = sorted(range(len(offs)), key=offs.__getitem__)  # nearly sorted already: fast
            self._func_offs_sorted = ([offs[i] for i in which], which)
        return self._func_offs_sorted

    def _string_offsets(self, raw: bytes, *, exact: bool, limit: int = 20000) -> list[int] | None:
        """Offsets of the strings equal to `raw` (exact) or starting with it, in this spec's string
        section and its base's; None when there are more than `limit`.

        Every occurrence counts, not only those after a NUL: a name may be the tail of another string.
        """
        if b"\0" in raw:
            return []
        pattern = raw + b"\0" if exact else raw
        out: list[int] = []
        spec: Spec | None = self
        while spec is not None:
            buf, start = spec._buf, spec._str_start  # searched in place: no copy of the strings
            end = start + spec._str_len
            find = buf.find
            append = out.append
            rebase = spec._str_base - start
            hit = find(pattern, start, end)
            while hit >= 0:
                append(rebase + hit)
                hit = find(pattern, hit + 1, end)
            if len(out) > limit:
                return None
            spec = spec.base
        return out

    def types_by_name(self, name: str, kind: _TypeClass | None = None) -> list[Type]:
        out = [self.type(i) for i in self.ids_by_name(name)]
        return [t for t in out if isinstance(t, kind)] if kind is not None else out

    def find(self, name: str, kind: _TypeClass | None = None) -> Type:
        """The one type with this name (and kind). KeyError when absent or ambiguous."""
        found = self.types_by_name(name, kind)
        if not found:
            raise KeyError(f"no BTF type named {name!r}" + (f" of kind {kind}" if kind else ""))
        if len(found) > 1:
            # Kernel BTF has duplicates for some names; identical candidates are interchangeable.
            found.sort(key=lambda t: t.id)
        return found[0]

    def names(self) -> Iterator[str]:
        return iter(self._name_index())

    # ---- the on-disk index cache for kernel BTF --------------------------------------------------

    def _save_index(self) -> None:
        """Write the index to the disk cache (when this spec came through load_cached): the arrays go
        to the file as they are, in one writev."""
        path = self._cache_file
        if path is None:
            return
        arrays = [self._offsets, self._named, self._funcs]
        if self._func_name_offs is not None:
            arrays.append(self._func_name_offs)
        header = _INDEX_HEADER.pack(_INDEX_MAGIC, _INDEX_VERSION, len(self._offsets), len(self._named),
                                    self._named_sorted, len(self._funcs), self._funcs_sorted,
                                    len(arrays[3]) if len(arrays) > 3 else 0)
        try:
            write_atomically(path, [header, *arrays])
        except OSError:
            pass  # a read-only home only costs speed


_VOID = Void()


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _cache_key(path: str, data: bytes | mmap.mmap) -> str:
    # vmlinux BTF cannot change without a reboot: the boot id and size name it without hashing 5 MB.
    if path == KERNEL_BTF:
        try:
            return f"vmlinux-{boot_id()}-{len(data)}"
        except OSError:
            pass
    import hashlib  # only for non-vmlinux BTF (modules): hashlib's OpenSSL import is slow

    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _read_btf(path: str) -> bytes | mmap.mmap:
    """The file's bytes; kernel BTF in sysfs is mapped instead where the kernel allows it (6.16+), as a
    read of vmlinux's 5.5 MB goes through sysfs one page per syscall (~10 ms)."""
    if path.startswith("/sys/kernel/btf/"):
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                size = os.fstat(fd).st_size
                if size:
                    return mmap.mmap(fd, size, flags=mmap.MAP_PRIVATE, prot=mmap.PROT_READ)
            finally:
                os.close(fd)
        except (OSError, ValueError):
            pass
    with open(path, "rb") as f:
        return f.read()


def _read_index(path: str, n_words: int) -> _Index | None:
    """The index saved by `Spec._save_index`, or None when missing, stale or damaged."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError:
        return None
    hsize = _INDEX_HEADER.size
    if len(raw) < hsize:
        return None
    magic, version, n_offsets, n_named, named_sorted, n_funcs, funcs_sorted, n_name_offs = (
        _INDEX_HEADER.unpack_from(raw))
    counts = (n_offsets, n_named, n_funcs, n_name_offs)
    if (magic != _INDEX_MAGIC or version != _INDEX_VERSION or len(raw) != hsize + 4 * sum(counts)
            or named_sorted > 1 or funcs_sorted > 1 or n_name_offs not in (0, n_funcs)
            or (funcs_sorted and n_name_offs)):
        return None
    view = memoryview(raw)
    arrays = []
    start = hsize
    for count in counts:
        a = array("I")
        a.frombytes(view[start : start + 4 * count])
        arrays.append(a)
        start += 4 * count
    offsets, named, funcs, name_offs = arrays
    if offsets and offsets[-1] >= n_words:
        return None
    return offsets, named, bool(named_sorted), funcs, bool(funcs_sorted), name_offs if n_name_offs else None


def load_cached(path: str, base: Spec | None = None) -> Spec:
    """Load a BTF file with its index from the disk cache (written on first use)."""
    data = _read_btf(path)
    key = _cache_key(path, data) + (f"-{_cache_key(base.name, base._buf)}" if base is not None else "")
    cache_file = os.path.join(cache_root(), "btf-index", f"{key}.idx{_INDEX_VERSION}")
    n_words = (len(data) - HEADER.size) // 4  # bounds any record offset
    index = _read_index(cache_file, n_words)
    spec = Spec(data, base, name=path, _index=index)
    if index is None and spec.next_id - spec.first_id >= _SMALL_SPEC:
        # Its first name lookup (CO-RE, attach by name) would sort the names and rewrite the index: sort them
        # now (no _cache_file yet: nothing written), so that the first write has them.
        spec._name_sorted_index()
    spec._cache_file = cache_file
    if index is None:
        spec._save_index()
    else:
        # A process that finds the cache sorts the FUNC names on its first FUNC lookup and saves them, so only
        # the cold process pays the per-lookup string search and every later one finds them sorted.
        spec._func_searches = _FUNC_SEARCHES_BEFORE_SORT
    return spec


_kernel_spec: Spec | None = None
_module_specs: dict[str, Spec] = {}


def kernel_spec() -> Spec:
    """The running kernel's vmlinux BTF (loaded once per process)."""
    global _kernel_spec
    if _kernel_spec is None:
        if not os.path.exists(KERNEL_BTF):
            from pybpf.errors import NotSupportedError

            raise NotSupportedError("kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF)", "5.4")
        _kernel_spec = load_cached(KERNEL_BTF)
    return _kernel_spec


def module_spec(module: str) -> Spec:
    """Split BTF of a loaded kernel module, on top of vmlinux."""
    spec = _module_specs.get(module)
    if spec is None:
        spec = load_cached(f"/sys/kernel/btf/{module}", base=kernel_spec())
        _module_specs[module] = spec
    return spec


def kernel_module_names() -> list[str]:
    try:
        return sorted(n for n in os.listdir("/sys/kernel/btf") if n != "vmlinux")
    except OSError:
        return []
