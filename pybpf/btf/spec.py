"""Parse BTF blobs lazily.

A `Spec` keeps the raw bytes and an index of where each type record starts; a type is decoded the
first time it is asked for. For the kernel's BTF the index (record offsets and names) is cached on disk
per BTF content hash, so a second process finds what CO-RE needs without scanning 130k records.
"""

from __future__ import annotations

import bisect
import marshal
import mmap
import os
import struct
import sys
from array import array
from collections.abc import Iterator
from pathlib import Path

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

_TypeClass = type[Type] | tuple[type[Type], ...]
KERNEL_BTF = "/sys/kernel/btf/vmlinux"
_INDEX_VERSION = 5


def cache_dir() -> Path:
    base = os.environ.get("PYBPF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pybpf")
    return Path(base)


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
        _index: tuple[array[int], array[int], array[int] | None] | None = None,
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
        # Name-sorted indexes (type index = id - first_id) of the named types, FUNCs apart: vmlinux has
        # 56k FUNCs against 15k other named types, and CO-RE never looks for a FUNC.
        self._name_order: array[int] | None = None
        self._func_order: array[int] | None = None
        self._named: array[int] | None = None  # named non-FUNC types, in id order (from the scan)
        self._funcs: array[int] | None = None  # FUNC types, in id order (from the scan)
        self._cache_file: Path | None = None  # where load_cached keeps the index
        if _index is not None:
            self._offsets, self._name_order, self._func_order = _index
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

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], base: Spec | None = None) -> Spec:
        with open(path, "rb") as f:
            return cls(f.read(), base, name=str(path))

    def _scan(self) -> array[int]:
        """Word offsets of each type record; validates lengths and kinds as it goes, and notes which
        records are FUNCs and which other records have a name (for the name indexes).

        A record's length depends only on its info word (kind and vlen), and vmlinux has a few thousand
        distinct info words for 130k records: a dict of known lengths keeps the loop to a lookup and an add
        (FUNC lengths are stored negated to tell them apart without decoding the kind).
        """
        words = self._words
        n = len(words)
        offsets = array("I")
        append = offsets.append
        named = array("I")
        add_named = named.append
        funcs = array("I")
        add_func = funcs.append
        lengths: dict[int, int] = {}
        known = lengths.get
        pos = idx = 0
        while pos < n:
            if pos + 3 > n:
                raise ObjectError("truncated BTF type record", section=".BTF", offset=self._types_start + pos * 4)
            info = words[pos + 1]
            step = known(info)
            if step is None:
                kind = (info >> 24) & 0x1F
                if kind == 0 or kind > Kind.ENUM64:
                    raise ObjectError(f"unknown BTF kind {kind}", section=".BTF", offset=self._types_start + pos * 4)
                fixed, per = _EXTRA_WORDS.get(kind, _NO_EXTRA)
                step = 3 + fixed + per * (info & 0xFFFF)
                lengths[info] = -step if kind == Kind.FUNC else step
            append(pos)
            if step > 0:
                if words[pos]:
                    add_named(idx)
                pos += step
            else:
                add_func(idx)
                pos -= step
            idx += 1
        if pos != n:
            raise ObjectError("BTF type section ends inside a record", section=".BTF", offset=self._types_start + n * 4)
        self._named, self._funcs = named, funcs
        return offsets

    # ---- strings ------------------------------------------------------------------------------

    def string(self, offset: int) -> str:
        if offset < self._str_base:
            assert self.base is not None
            return self.base.string(offset)
        rel = offset - self._str_base
        if rel >= self._str_len:
            raise ObjectError(f"BTF string offset {offset} out of range", section=".BTF")
        start = self._str_start + rel
        buf = self._buf
        return buf[start : buf.find(b"\0", start)].decode("utf-8", "replace")

    # ---- types --------------------------------------------------------------------------------

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
        if self._names is not None or self.next_id - self.first_id < 4096:
            hit = self._name_index().get(name)
            if hit is None:
                return found
            return [*found, *hit] if isinstance(hit, list) else [*found, hit]
        # Large specs (the kernel's): bisect the name-sorted indexes instead of decoding 130k names.
        first = self.first_id
        raw = name.encode()
        own = [first + idx for _name, idx in self._sorted_names_from(self._name_sorted_index(), raw, exact=True)]
        if funcs:
            own += [first + idx for _name, idx in self._sorted_names_from(self._func_sorted_index(), raw, exact=True)]
            own.sort()
        found.extend(own)
        return found

    def ids_by_name_prefix(self, prefix: str, *, funcs: bool = True) -> list[tuple[str, int]]:
        """(name, id) of this spec's own types (not the base's) whose name starts with `prefix`."""
        raw = prefix.encode()
        if self.next_id - self.first_id < 4096:
            first = self.first_id
            out = []
            for idx, pos in enumerate(self._offsets):
                off = self._words[pos]
                if off and self._string_bytes(off).startswith(raw):
                    out.append((self.string(off), first + idx))
            return out
        hits = list(self._sorted_names_from(self._name_sorted_index(), raw, exact=False))
        if funcs:
            hits += self._sorted_names_from(self._func_sorted_index(), raw, exact=False)
        return [(nm.decode("utf-8", "replace"), self.first_id + idx) for nm, idx in hits]

    def _sorted_names_from(self, order: array[int], raw: bytes, *, exact: bool) -> Iterator[tuple[bytes, int]]:
        """(name, type index) from a name-sorted index: names equal to `raw` (exact) or starting with it."""
        w, offsets, name_of = self._words, self._offsets, self._string_bytes

        def key(idx: int) -> bytes:
            return name_of(w[offsets[idx]])

        start = bisect.bisect_left(order, raw, key=key)
        for i in range(start, len(order)):
            idx = order[i]
            nm = key(idx)
            if nm != raw and (exact or not nm.startswith(raw)):
                return
            yield nm, idx

    def _name_sorted_index(self) -> array[int]:
        """Indexes (id - first_id) of the named types other than FUNCs, sorted by name bytes then id."""
        if self._name_order is None:
            if self._named is None:
                self._classify()
            assert self._named is not None
            self._name_order = self._sort_by_name(self._named)
        return self._name_order

    def _func_sorted_index(self) -> array[int]:
        """Indexes of the FUNC types, sorted by name bytes then id (built on the first FUNC lookup, and
        then added to the on-disk index)."""
        if self._func_order is None:
            if self._funcs is None:
                self._classify()
            assert self._funcs is not None
            self._func_order = self._sort_by_name(self._funcs)
            self._save_index()
        return self._func_order

    def _sort_by_name(self, indexes: array[int]) -> array[int]:
        w, offsets, name_of = self._words, self._offsets, self._string_bytes
        return array("I", sorted(indexes, key=lambda idx: name_of(w[offsets[idx]])))

    def _classify(self) -> None:
        """Named non-FUNC and FUNC type indexes, when the spec came from the cache without them."""
        w = self._words
        named, funcs = array("I"), array("I")
        for idx, pos in enumerate(self._offsets):
            if (w[pos + 1] >> 24) & 0x1F == Kind.FUNC:
                funcs.append(idx)
            elif w[pos]:
                named.append(idx)
        self._named, self._funcs = named, funcs

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

    def _index_state(self) -> bytes:
        funcs = self._func_order.tobytes() if self._func_order is not None else None
        return marshal.dumps((_INDEX_VERSION, self._offsets.tobytes(), self._name_sorted_index().tobytes(), funcs))

    def _save_index(self) -> None:
        """Write the index to the disk cache (when this spec came through load_cached)."""
        cache_file = self._cache_file
        if cache_file is None:
            return
        try:
            cache_file.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
            tmp.write_bytes(self._index_state())
            os.replace(tmp, cache_file)
        except OSError:
            pass  # a read-only home only costs speed


_VOID = Void()


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _cache_key(path: str, data: bytes | mmap.mmap) -> str:
    # vmlinux BTF cannot change without a reboot: the boot id and size name it without hashing 5 MB.
    if path == KERNEL_BTF:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                return f"vmlinux-{f.read().strip()}-{len(data)}"
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


def load_cached(path: str, base: Spec | None = None) -> Spec:
    """Load a BTF file with its index from the disk cache (written on first use)."""
    data = _read_btf(path)
    key = _cache_key(path, data) + (f"-{_cache_key(base.name, base._buf)}" if base is not None else "")
    cache_file = cache_dir() / "btf-index" / f"{key}.py{sys.version_info.major}{sys.version_info.minor}"
    try:
        version, raw_offsets, raw_order, raw_funcs = marshal.loads(cache_file.read_bytes())
        if version == _INDEX_VERSION:
            funcs = array("I", raw_funcs) if raw_funcs is not None else None
            spec = Spec(data, base, name=path, _index=(array("I", raw_offsets), array("I", raw_order), funcs))
            spec._cache_file = cache_file
            return spec
    except (OSError, ValueError, EOFError, TypeError):
        pass
    spec = Spec(data, base, name=path)
    spec._cache_file = cache_file
    spec._save_index()
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
