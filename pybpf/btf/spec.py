"""Parse BTF blobs lazily.

A `Spec` keeps the raw bytes and an index of where each type record starts; a type is decoded the
first time it is asked for. Large specs (the kernel's 130k records) are also walked lazily: the record
index grows only as far as the ids asked for, and a name is found by searching the string section for
it and the type section for records that carry its offset, so a CO-RE load that needs a few kernel
types reads a few percent of vmlinux. Once lookups are frequent the names are sorted, and that index is
cached on disk per boot for later processes.
"""

from __future__ import annotations

import mmap
import os
import struct
import sys
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
    from collections.abc import Callable, Iterable, Iterator

    # Word offsets of records: a list while walked, a view of the index file's bytes once read from it
    # (without `array`, whose import brings collections: ~2 ms of a cold start).
    _Offsets = list[int] | memoryview
    # record offsets, [named non-FUNC records, FUNC records], [sorted by name?] for each
    _Index = tuple[_Offsets, list[_Offsets], list[bool]]

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
_INDEX_VERSION = 7
# Index file: magic, version, counts of records, named records (and whether sorted by name) and FUNC
# records (and whether sorted); then those arrays (u32 each) in that order.
_INDEX_HEADER = struct.Struct("<4s6I")
_INDEX_MAGIC = b"PBTI"
# Name lookups in one spec answered by search (~4 ms each for vmlinux: its string section, then its type
# section) before walking every record and sorting the names pays off (~40 ms); the sorted names are then
# saved for later processes.
_SEARCHES_BEFORE_SORT = 8
# A search that finds more names than this (a short prefix) goes to the sorted names instead: each name
# costs a pass over the type section.
_MAX_SEARCHED_OFFSETS = 4
# Names are sorted by their first bytes (this many, the terminating NUL and what follows included): one
# slice of the string section per name instead of a search for its end. Longer names are told apart at
# lookup time.
_NAME_WINDOW = 64
# Specs whose type section is at least this long (vmlinux: 3 MB) are walked lazily and answer name
# lookups by search or from the name-sorted index; smaller ones (objects, most kernel modules) are walked
# at once and answer by a scan of their names.
_LARGE_SPEC_BYTES = 64 * 1024


class Spec:
    """One BTF blob (optionally split on top of a base spec, as kernel module BTF is)."""

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
        self.large = type_len >= _LARGE_SPEC_BYTES
        # The walk: word offsets of the records walked so far, where it resumes (len(_words) once complete),
        # and the record length of each info word met (see _walk).
        self._offsets: _Offsets
        self._walk_at = 0
        self._lengths: dict[int, int] = {}
        # Indexed by "is FUNC": the named records other than FUNCs, and the FUNC records (vmlinux has 56k
        # FUNCs against 15k others, and CO-RE looks for a FUNC only for a local FUNC), as word offsets in id
        # order as walked, until sorted by name (`_sorted`).
        self._named: list[_Offsets]
        self._sorted: list[bool]
        self._searches = 0
        self._cache_file: str | None = None  # where load_cached keeps the index
        if _index is not None:
            self._offsets, self._named, self._sorted = _index
            self._walk_at = len(self._words)
        else:
            self._offsets, self._named, self._sorted = [], [[], []], [False, False]
            if not self.large:
                self._walk()
        self._cache: dict[int, Type] = {}
        # What other modules keep for this spec and drop with it (CO-RE: per target kernel BTF).
        self.caches: dict[object, object] = {}

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

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], base: Spec | None = None) -> Spec:
        with open(path, "rb") as f:
            return cls(f.read(), base, name=str(path))

    @property
    def next_id(self) -> int:
        """The id after this spec's last type (walks every record of a lazily walked spec)."""
        if self._walk_at < len(self._words):
            self._walk()
            self._save_index()  # a split spec (module BTF) needs this of its base: later processes skip the walk
        return self.first_id + len(self._offsets)

    def _walk(self, through: int | None = None) -> None:
        """Extend the record index over every record that starts at or before word `through` (None: every
        record), validating lengths and kinds as it goes, and note the named records (FUNCs apart) and the
        FUNC records, for the name indexes.

        A record's length depends only on its info word (kind and vlen), and vmlinux has a few hundred
        distinct info words for 130k records: a dict of known lengths keeps the loop to an index, a lookup
        and an add. The length is stored negated for kinds that may be named and as 0 for FUNC (always 3
        words), so the common records take one branch. Unknown info words (KeyError) and the end of the
        walk (IndexError: `infos` is cut where it must stop) leave the loop by exception instead of a test
        per record.
        """
        words = self._words
        n = len(words)
        pos = self._walk_at
        if pos >= n:
            return
        limit = n if through is None else min(n, through + 2)
        infos = words[1:limit]  # infos[pos] is the info word of the record at word `pos`
        offsets, named, funcs = self._offsets, self._named[False], self._named[True]
        # Lists until the walk is whole (an index read from disk is whole: the walk never resumes).
        assert isinstance(offsets, list) and isinstance(named, list) and isinstance(funcs, list)
        append, add_named, add_func = offsets.append, named.append, funcs.append
        lengths = self._lengths
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
                offsets.pop()  # `pos` is no record yet: the walk stops there, or the section ended
                break
        if pos > n:
            raise ObjectError("BTF type section ends inside a record", section=".BTF",
                              offset=self._types_start + n * 4)
        if pos < n and limit == n:
            raise ObjectError("truncated BTF type record", section=".BTF", offset=self._types_start + pos * 4)
        self._walk_at = pos

    def _walk_to_index(self, idx: int) -> None:
        """Walk until the record of index `idx` (id - first_id) is known, or every record is."""
        offsets, n = self._offsets, len(self._words)
        while len(offsets) <= idx and self._walk_at < n:
            # vmlinux records average ~6 words: a guess of where record `idx` starts, at least 16k words on
            self._walk(self._walk_at + max(16384, 8 * (idx - len(offsets) + 1)))

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
        idx = type_id - self.first_id
        if idx >= len(self._offsets):
            self._walk_to_index(idx)
        pos = self._offsets[idx]
        return (self._words[pos + 1] >> 24) & 0x1F, self._words[pos]

    def _decode(self, type_id: int) -> Type:
        idx = type_id - self.first_id
        if idx >= len(self._offsets):
            self._walk_to_index(idx)
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
            self._walk()
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
        if self._names is not None or not self.large:
            hit = self._name_index().get(name)
            if hit is None:
                return found
            return [*found, *hit] if isinstance(hit, list) else [*found, hit]
        found.extend(sorted(self._id_at(pos) for _name, pos in self._large_matches([(name.encode(), True)], funcs)))
        return found

    def ids_by_name_prefix(self, prefix: str, *, funcs: bool = True) -> list[tuple[str, int]]:
        """(name, id) of this spec's own types (not the base's) whose name starts with `prefix`."""
        return self.named((), (prefix,), funcs=funcs)

    def named(self, names: Iterable[str] = (), prefixes: Iterable[str] = (), *,
              funcs: bool = True) -> list[tuple[str, int]]:
        """(name, id) of this spec's own types (not the base's) named one of `names` or with a name that
        starts with one of `prefixes`, by name then id (FUNCs left out of large specs unless `funcs`).
        One search answers all of them (CO-RE asks for a name and its ``name___`` flavors at once)."""
        probes = [(n.encode(), True) for n in names] + [(p.encode(), False) for p in prefixes]
        if not self.large:
            self._walk()
            first, w, name_of = self.first_id, self._words, self._string_bytes
            out = []
            for idx, pos in enumerate(self._offsets):
                off = w[pos]
                if off:
                    nm = name_of(off)
                    if any(nm == raw if exact else nm.startswith(raw) for raw, exact in probes):
                        out.append((nm, first + idx))
            out.sort()
            return [(nm.decode("utf-8", "replace"), tid) for nm, tid in out]
        return [(nm.decode("utf-8", "replace"), self._id_at(pos)) for nm, pos in self._large_matches(probes, funcs)]

    def expect_lookups(self, count: int) -> None:
        """A caller is about to look up `count` names: when that is more than the searches left before the
        names are sorted, sort them at the first lookup instead (the searches would cost more)."""
        if count > _SEARCHES_BEFORE_SORT - self._searches:
            self._searches = _SEARCHES_BEFORE_SORT

    def _id_at(self, pos: int) -> int:
        """The id of the record starting at word `pos` (walked already)."""
        return self.first_id + bisect_left(self._offsets, pos)

    def _large_matches(self, probes: list[tuple[bytes, bool]], funcs: bool) -> list[tuple[bytes, int]]:
        """(name, record word offset) of a large spec's own records named as a probe says (raw name, and
        whether exact or a prefix), by name then id: from the name-sorted indexes once built, otherwise
        by search until searches are frequent enough that sorting pays off."""
        out: list[tuple[bytes, int]] = []
        unsorted: list[bool] = []  # which record sets (FUNCs or not) have no sorted index yet
        for is_func in (False, True) if funcs else (False,):
            if self._sorted[is_func]:
                out += self._sorted_matches(self._named[is_func], probes)
            else:
                unsorted.append(is_func)
        if unsorted:
            hits = self._search(probes, unsorted) if self._searches < _SEARCHES_BEFORE_SORT else None
            if hits is not None:
                self._searches += 1
                out += hits
            else:
                for is_func in unsorted:
                    out += self._sorted_matches(self._sorted_index(is_func), probes)
        out.sort()
        return out

    def _sorted_matches(self, order: _Offsets, probes: list[tuple[bytes, bool]]) -> list[tuple[bytes, int]]:
        out: list[tuple[bytes, int]] = []
        for raw, exact in probes:
            out += self._sorted_names_from(order, raw, exact=exact)
        return out

    def _search(self, probes: list[tuple[bytes, bool]], funcs: list[bool]) -> list[tuple[bytes, int]] | None:
        """Records named as the probes say, found without the name indexes: the string sections give the
        offsets of the names, and a search of the type section for each the records whose first word is
        one of them and whose info word has a wanted kind (FUNC if True in `funcs`, the named kinds if
        False). Only the records up to the last hit are walked. None when the probes match too many
        strings (a short prefix): the sorted index answers those."""
        offsets = self._string_offsets(probes, limit=_MAX_SEARCHED_OFFSETS)
        if offsets is None:
            return None
        if not offsets:
            return []
        # A record with that name offset starts at a word boundary with it, then its info word: vlen
        # (2 bytes), 0, the kind (with or without kflag). The search is for the offset's bytes without
        # their high zero bytes: find() runs at a third of the speed with a needle ending in a zero, as
        # the type section is mostly zeros (~3 ms over vmlinux's 3 MB of records, against ~8 ms for
        # importing `re` and one search).
        kinds = {Kind.FUNC} if True in funcs else set()
        if False in funcs:
            kinds |= _NAMED_KINDS
        wanted = bytes(k | kflag for k in kinds for kflag in (0, 0x80))
        buf, start = self._buf, self._types_start
        end = start + self._types_len
        w, walked = self._words, self._offsets
        out: list[tuple[bytes, int]] = []
        for off, name in offsets.items():
            word = off.to_bytes(4, "little")
            needle = word.rstrip(b"\0") or word
            at = buf.find(needle, start, end)
            while at >= 0:
                if (not (at - start) & 3 and at + 8 <= end and buf[at : at + 4] == word and buf[at + 6] == 0
                        and buf[at + 7] in wanted):
                    pos = (at - start) >> 2
                    self._walk(pos)
                    i = bisect_left(walked, pos)
                    if i < len(walked) and walked[i] == pos:  # a record starts there (not a word inside one)
                        out.append((name or self._string_bytes(w[pos]), pos))
                at = buf.find(needle, at + 1, end)
        return out

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

    def _sorted_names_from(self, order: _Offsets, raw: bytes, *, exact: bool) -> Iterator[tuple[bytes, int]]:
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

    def _sorted_index(self, is_func: bool) -> _Offsets:
        """Word offsets of the FUNC types (`is_func`) or of the other named types, sorted by name (built once
        lookups are frequent enough, walking every record, then added to the on-disk index)."""
        if not self._sorted[is_func]:
            self._walk()
            self._named[is_func] = self._sort_by_name(self._named[is_func])
            self._sorted[is_func] = True
            self._save_index()
        return self._named[is_func]

    def _sort_by_name(self, positions: _Offsets) -> list[int]:
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
        return [positions[i] for i in keep]

    def _string_offsets(self, probes: list[tuple[bytes, bool]], *, limit: int) -> dict[int, bytes | None] | None:
        """Name offset -> name (None for a prefix probe: read it at the offset) of the whole strings equal to a
        probe's raw name (exact) or starting with it, in this spec's string section and its base's; None when
        there are more than `limit`. Probes that share a stem (``task_struct`` and ``task_struct___``) are
        found in one pass over the strings (~1.5 ms for vmlinux's).

        Only whole strings count, not a name that is the tail of another string: BTF writers (libbpf's
        string set, which pahole uses, and LLVM) keep each string whole, so kernel BTF never points a
        name into the middle of another. Counting tails would multiply the searches of the type section.
        """
        patterns = {b"\0" + raw + (b"\0" if exact else b""): raw if exact else None
                    for raw, exact in probes if raw and b"\0" not in raw}
        stem = _common_prefix(list(patterns))
        groups = [(stem, list(patterns))] if len(stem) >= 4 else [(p, [p]) for p in patterns]
        out: dict[int, bytes | None] = {}
        for stem, group in groups:
            spec: Spec | None = self
            while spec is not None:
                buf, start = spec._buf, spec._str_start  # searched in place: no copy of the strings
                end = start + spec._str_len
                rebase = spec._str_base - start + 1
                hits = [start - 1] if buf[start : start + len(stem) - 1] == stem[1:] else []  # a first string
                hit = buf.find(stem, start, end)
                while hit >= 0:
                    hits.append(hit)
                    hit = buf.find(stem, hit + 1, end)
                for hit in hits:
                    for pattern in group:
                        if buf[hit + 1 : hit + len(pattern)] == pattern[1:]:
                            if len(out) == limit:
                                return None
                            out[rebase + hit] = patterns[pattern]
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
        """Write the index to the disk cache (when this spec came through load_cached), in one writev."""
        path = self._cache_file
        if path is None or self._walk_at < len(self._words):  # only a whole walk is worth keeping
            return
        from array import array  # only here: a whole walk costs far more than its import

        (named, funcs), (named_sorted, funcs_sorted) = self._named, self._sorted
        header = _INDEX_HEADER.pack(_INDEX_MAGIC, _INDEX_VERSION, len(self._offsets), len(named), named_sorted,
                                    len(funcs), funcs_sorted)
        chunks = [a if isinstance(a, memoryview) else array("I", a) for a in (self._offsets, named, funcs)]
        try:
            write_atomically(path, [header, *chunks])
        except OSError:
            pass  # a read-only home only costs speed


_VOID = Void()


def _common_prefix(items: list[bytes]) -> bytes:
    """The longest prefix the items share (that of the smallest and the largest)."""
    if not items:
        return b""
    low, high = min(items), max(items)
    n = 0
    while n < len(low) and low[n] == high[n]:
        n += 1
    return low[:n]


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
    magic, version, n_offsets, n_named, named_sorted, n_funcs, funcs_sorted = _INDEX_HEADER.unpack_from(raw)
    counts = (n_offsets, n_named, n_funcs)
    if (magic != _INDEX_MAGIC or version != _INDEX_VERSION or len(raw) != hsize + 4 * sum(counts)
            or named_sorted > 1 or funcs_sorted > 1):
        return None
    view = memoryview(raw)
    parts: list[memoryview] = []
    start = hsize
    for count in counts:
        parts.append(view[start : start + 4 * count].cast("I"))
        start += 4 * count
    offsets, named, funcs = parts
    if offsets and offsets[-1] >= n_words:
        return None
    return offsets, [named, funcs], [bool(named_sorted), bool(funcs_sorted)]


def load_cached(path: str, base: Spec | None = None) -> Spec:
    """Load a BTF file with its index from the disk cache. A small spec's index is written at once; a large
    one (vmlinux) is walked lazily, and its index written once its names are sorted (see `_large_matches`)."""
    data = _read_btf(path)
    key = _cache_key(path, data) + (f"-{_cache_key(base.name, base._buf)}" if base is not None else "")
    cache_file = os.path.join(cache_root(), "btf-index", f"{key}.idx{_INDEX_VERSION}")
    n_words = (len(data) - HEADER.size) // 4  # bounds any record offset
    index = _read_index(cache_file, n_words)
    spec = Spec(data, base, name=path, _index=index)
    spec._cache_file = cache_file
    if index is None:
        spec._save_index()  # written now if walked already (small specs)
    elif any(index[2]):
        # A process that finds names sorted sorts what is still unsorted (the FUNC names) on its first lookup
        # and saves it, so only the first process pays searches and every later one finds the names sorted.
        # (An index of a whole walk alone, saved for split specs' ids, leaves the lookups to searches.)
        spec._searches = _SEARCHES_BEFORE_SORT
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
