"""Parse BTF blobs lazily.

A `Spec` keeps the raw bytes and an index of where each type record starts; a type is decoded the
first time it is asked for. For the kernel's BTF the index (record offsets and names) is cached on disk
per BTF content hash, so a second process finds what CO-RE needs without scanning 130k records.
"""

from __future__ import annotations

import bisect
import hashlib
import marshal
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
_INDEX_VERSION = 3


def cache_dir() -> Path:
    base = os.environ.get("PYBPF_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "pybpf")
    return Path(base)


class Spec:
    """One BTF blob (optionally split on top of a base spec, as kernel module BTF is)."""

    next_id: int
    _str_end: int

    def __init__(
        self,
        data: bytes,
        base: Spec | None = None,
        *,
        name: str = "",
        _index: tuple[array[int], tuple[array[int], array[int]] | None] | None = None,
    ) -> None:
        self.name = name
        self.base = base
        self.data = bytes(data)
        if len(self.data) < HEADER.size:
            raise ObjectError("BTF blob shorter than its header", section=".BTF", offset=0)
        magic, version, _flags, hdr_len, type_off, type_len, str_off, str_len = HEADER.unpack_from(self.data)
        if magic != BTF_MAGIC:
            if magic == 0x9FEB:
                raise ObjectError("big-endian BTF is not supported", section=".BTF", offset=0)
            raise ObjectError(f"bad BTF magic {magic:#x}", section=".BTF", offset=0)
        if version != 1:
            raise ObjectError(f"unsupported BTF version {version}", section=".BTF", offset=2)
        end = len(self.data)
        if hdr_len < HEADER.size or hdr_len + type_off + type_len > end or hdr_len + str_off + str_len > end:
            raise ObjectError("BTF header points outside the blob", section=".BTF", offset=4)
        if type_len % 4:
            raise ObjectError("BTF type section length is not a multiple of 4", section=".BTF", offset=12)
        self.hdr_len = hdr_len
        self._types_start = hdr_len + type_off
        self._types_len = type_len
        self._strings = self.data[hdr_len + str_off : hdr_len + str_off + str_len]
        if str_len and self._strings[-1:] != b"\0":
            raise ObjectError("BTF string section is not NUL terminated", section=".BTF", offset=hdr_len + str_off)
        self._words = memoryview(self.data[self._types_start : self._types_start + type_len]).cast("I")
        if sys.byteorder != "little":
            raise ObjectError("pybpf only reads BTF on little-endian hosts", section=".BTF")
        # Ids of this spec start after the base's; string offsets after the base's string section.
        self.first_id = base.next_id if base is not None else 1
        self._str_base = base._str_end if base is not None else 0
        self._str_end = self._str_base + len(self._strings)
        self._names: dict[str, int | list[int]] | None = None
        self._name_order: tuple[array[int], array[int]] | None = None
        if _index is not None:
            self._offsets, self._name_order = _index
        else:
            self._offsets = self._scan()
        self.next_id = self.first_id + len(self._offsets)
        self._cache: dict[int, Type] = {}

    # ---- construction -------------------------------------------------------------------------

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], base: Spec | None = None) -> Spec:
        with open(path, "rb") as f:
            return cls(f.read(), base, name=str(path))

    def _scan(self) -> array[int]:
        """Word offsets of each type record; validates lengths and kinds as it goes."""
        words = self._words
        n = len(words)
        offsets = array("I")
        append = offsets.append
        extra = _EXTRA_WORDS
        pos = 0
        while pos < n:
            if pos + 3 > n:
                raise ObjectError("truncated BTF type record", section=".BTF", offset=self._types_start + pos * 4)
            info = words[pos + 1]
            kind = (info >> 24) & 0x1F
            if kind == 0 or kind > Kind.ENUM64:
                raise ObjectError(f"unknown BTF kind {kind}", section=".BTF", offset=self._types_start + pos * 4)
            fixed, per = extra.get(kind, _NO_EXTRA)
            append(pos)
            pos += 3 + fixed + per * (info & 0xFFFF)
        if pos != n:
            raise ObjectError("BTF type section ends inside a record", section=".BTF", offset=self._types_start + n * 4)
        return offsets

    # ---- strings ------------------------------------------------------------------------------

    def string(self, offset: int) -> str:
        if offset < self._str_base:
            assert self.base is not None
            return self.base.string(offset)
        rel = offset - self._str_base
        s = self._strings
        if rel >= len(s):
            raise ObjectError(f"BTF string offset {offset} out of range", section=".BTF")
        end = s.index(b"\0", rel)
        return s[rel:end].decode("utf-8", "replace")

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

    def ids_by_name(self, name: str) -> list[int]:
        """Ids of every type of this spec and its base with exactly this name."""
        found = self.base.ids_by_name(name) if self.base is not None else []
        if self._names is not None or self.next_id - self.first_id < 4096:
            hit = self._name_index().get(name)
            if hit is None:
                return found
            return [*found, *hit] if isinstance(hit, list) else [*found, hit]
        # Large specs (the kernel's): find the name's string offsets, then the records that use them,
        # instead of decoding 130k names into a dict.
        sorted_offs, order = self._name_order_index()
        needle = b"\0" + name.encode() + b"\0"
        strings = self._strings
        start = strings.find(needle)
        while start >= 0:
            off = self._str_base + start + 1
            lo = bisect.bisect_left(sorted_offs, off)
            hi = bisect.bisect_right(sorted_offs, off, lo)
            found.extend(sorted(self.first_id + i for i in order[lo:hi]))
            start = strings.find(needle, start + 1)
        return found

    def _name_order_index(self) -> tuple[array[int], array[int]]:
        """Type indexes sorted by name offset (and the sorted offsets), for bisecting."""
        if self._name_order is None:
            w = self._words
            pairs = sorted((w[pos], idx) for idx, pos in enumerate(self._offsets))
            self._name_order = (array("I", [p[0] for p in pairs]), array("I", [p[1] for p in pairs]))
        return self._name_order

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
        sorted_offs, order = self._name_order_index()
        return marshal.dumps((_INDEX_VERSION, self._offsets.tobytes(), sorted_offs.tobytes(), order.tobytes()))


_VOID = Void()


def _s32(v: int) -> int:
    return v - (1 << 32) if v & 0x80000000 else v


def _cache_key(path: str, data: bytes) -> str:
    # vmlinux BTF cannot change without a reboot: the boot id and size name it without hashing 5 MB.
    if path == KERNEL_BTF:
        try:
            with open("/proc/sys/kernel/random/boot_id") as f:
                return f"vmlinux-{f.read().strip()}-{len(data)}"
        except OSError:
            pass
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def load_cached(path: str, base: Spec | None = None) -> Spec:
    """Load a BTF file with its index from the disk cache (written on first use)."""
    with open(path, "rb") as f:
        data = f.read()
    key = _cache_key(path, data) + (f"-{_cache_key(base.name, base.data)}" if base is not None else "")
    cache_file = cache_dir() / "btf-index" / f"{key}.py{sys.version_info.major}{sys.version_info.minor}"
    try:
        version, *raw = marshal.loads(cache_file.read_bytes())
        if version == _INDEX_VERSION:
            offsets, sorted_offs, order = (array("I", r) for r in raw)
            return Spec(data, base, name=path, _index=(offsets, (sorted_offs, order)))
    except (OSError, ValueError, EOFError, TypeError):
        pass
    spec = Spec(data, base, name=path)
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_bytes(spec._index_state())
        os.replace(tmp, cache_file)
    except OSError:
        pass  # a read-only home only costs speed
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
