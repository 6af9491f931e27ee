"""BPF maps: create and open them, read and write them like dicts, iterate safely, batch, pin, mmap.

Keys and values go through a small codec protocol (`Codec`: `size`, `encode(value) -> bytes`,
`decode(buffer) -> value`) so raw bytes, struct formats ("I", "<Q", "=I4s"), ctypes types and BTF types
(through `pybpf.btf.codec.codec_for` when it exists) all plug in the same way. Raw bytes of the right size
are accepted by every codec. Per-CPU maps take and return lists with one value per possible CPU.

The element operations reuse one preallocated `bpf_attr` and key/value buffers per map, so a lookup or
update costs little more than the system call itself. They are serialised by a lock per map; iterators
and batch calls use buffers of their own.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import gc
import os
import struct
import sys
from _thread import allocate_lock

from pybpf._lazy import build_deferred, defer, lazy_attributes
from pybpf._sys import FD, bpf, bpf_fd, enum_or_int, object_name
from pybpf._sys import types as T
from pybpf._sys.cpus import possible_cpus
from pybpf._sys.kernel import kernel_version, parse_version
from pybpf._sys.pin import open_pinned, pin_fd
from pybpf._sys.record import field, record, replace
from pybpf._sys.syscall import NR_BPF, command_name, page_size
from pybpf.errors import ENOTSUPP, BPFError, NotSupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins  # `type` is a property in the classes below
    import mmap as _mmap
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType
    from typing import Any

    from pybpf._codec_protocol import Codec
    from pybpf._sys.types import MapType
    from pybpf.btf import Spec
    from pybpf.btf import Type as BtfType

__all__ = [
    "Codec",
    "CtypesCodec",
    "FdValueCodec",
    "FuncCodec",
    "Map",
    "MapInfo",
    "MapSpec",
    "MapType",
    "RawCodec",
    "StructCodec",
    "make_codec",
    "sanitize_name",
]

Buffer = bytes | bytearray | memoryview


# Codec, a typing.Protocol, is built on demand (see pybpf._codec_protocol).
# MapType, an enum, is built on first use too: code here compares with the T.BPF_MAP_TYPE_* ints.
__getattr__ = lazy_attributes(__name__, {"Codec": "pybpf._codec_protocol", "MapType": "pybpf._sys.types"},
                              globals())

# ---- the hot-path system call ------------------------------------------------------------------------------
# pybpf._sys.bpf_errno wraps its arguments in ctypes objects on every call (~1.5 us); calling libc's
# syscall() with plain ints and a prebuilt byref() of a long-lived attr halves the cost of a map lookup
# (pointers must never be passed as plain ints: without argtypes ctypes truncates them to C int).
_libc = ctypes.CDLL(None, use_errno=True)
_syscall = _libc.syscall
_syscall.restype = ctypes.c_long
_get_errno = ctypes.get_errno

_LOOKUP = T.BPF_MAP_LOOKUP_ELEM
_UPDATE = T.BPF_MAP_UPDATE_ELEM
_DELETE = T.BPF_MAP_DELETE_ELEM
_NEXT_KEY = T.BPF_MAP_GET_NEXT_KEY
_LOOKUP_AND_DELETE = T.BPF_MAP_LOOKUP_AND_DELETE_ELEM
_ELEM_SIZE = ctypes.sizeof(T.MapElemAttr)
_BATCH_SIZE = ctypes.sizeof(T.MapBatchAttr)

ENOENT = _errno.ENOENT
DEFAULT_BATCH_CHUNK = 65536

# ---- map type facts ----------------------------------------------------------------------------------------

PERCPU_TYPES = frozenset({T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_PERCPU_ARRAY,
                          T.BPF_MAP_TYPE_LRU_PERCPU_HASH, T.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE})
# Keys are u32 indices 0..max_entries-1 that always exist; get_next_key can never restart.
ARRAY_TYPES = frozenset({T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_ARRAY, T.BPF_MAP_TYPE_PROG_ARRAY,
                         T.BPF_MAP_TYPE_PERF_EVENT_ARRAY, T.BPF_MAP_TYPE_CGROUP_ARRAY, T.BPF_MAP_TYPE_ARRAY_OF_MAPS,
                         T.BPF_MAP_TYPE_DEVMAP, T.BPF_MAP_TYPE_CPUMAP, T.BPF_MAP_TYPE_XSKMAP, T.BPF_MAP_TYPE_SOCKMAP,
                         T.BPF_MAP_TYPE_REUSEPORT_SOCKARRAY})
# Values written from user space are file descriptors; lookups return object ids.
FD_VALUE_TYPES = frozenset({T.BPF_MAP_TYPE_PROG_ARRAY, T.BPF_MAP_TYPE_PERF_EVENT_ARRAY, T.BPF_MAP_TYPE_CGROUP_ARRAY,
                            T.BPF_MAP_TYPE_ARRAY_OF_MAPS, T.BPF_MAP_TYPE_HASH_OF_MAPS})
KEYLESS_TYPES = frozenset({T.BPF_MAP_TYPE_QUEUE, T.BPF_MAP_TYPE_STACK, T.BPF_MAP_TYPE_BLOOM_FILTER,
                           T.BPF_MAP_TYPE_RINGBUF, T.BPF_MAP_TYPE_USER_RINGBUF, T.BPF_MAP_TYPE_ARENA})
MAP_IN_MAP_TYPES = frozenset({T.BPF_MAP_TYPE_ARRAY_OF_MAPS, T.BPF_MAP_TYPE_HASH_OF_MAPS})
STORAGE_TYPES = frozenset({T.BPF_MAP_TYPE_SK_STORAGE, T.BPF_MAP_TYPE_INODE_STORAGE, T.BPF_MAP_TYPE_TASK_STORAGE,
                           T.BPF_MAP_TYPE_CGRP_STORAGE})

# What the kernel demands of each type's parameters (appended to EINVAL messages at creation).
_CREATE_RULES: dict[int, str] = {
    T.BPF_MAP_TYPE_ARRAY: "key_size must be 4, value_size > 0, max_entries > 0",
    T.BPF_MAP_TYPE_PERCPU_ARRAY: "key_size must be 4, value_size > 0, max_entries > 0",
    T.BPF_MAP_TYPE_PROG_ARRAY: "key_size and value_size must be 4",
    T.BPF_MAP_TYPE_PERF_EVENT_ARRAY: "key_size and value_size must be 4",
    T.BPF_MAP_TYPE_CGROUP_ARRAY: "key_size and value_size must be 4",
    T.BPF_MAP_TYPE_ARRAY_OF_MAPS: "key_size and value_size must be 4 and an inner map fd is required",
    T.BPF_MAP_TYPE_HASH_OF_MAPS: "value_size must be 4 and an inner map fd is required",
    T.BPF_MAP_TYPE_LPM_TRIE: "key is {u32 prefixlen; u8 data[]} (key_size 5..260), BPF_F_NO_PREALLOC is required",
    T.BPF_MAP_TYPE_QUEUE: "key_size must be 0",
    T.BPF_MAP_TYPE_STACK: "key_size must be 0",
    T.BPF_MAP_TYPE_BLOOM_FILTER: "key_size must be 0, value_size > 0; map_extra's low 4 bits = number of hashes",
    T.BPF_MAP_TYPE_RINGBUF: "key_size and value_size must be 0, max_entries a power of 2 and a multiple of the page size",
    T.BPF_MAP_TYPE_USER_RINGBUF: "key_size and value_size must be 0, max_entries a power of 2 and a multiple of the page size",
    T.BPF_MAP_TYPE_STACK_TRACE: "key_size must be 4, value_size a multiple of 8 (or of sizeof(struct bpf_stack_build_id))",
    T.BPF_MAP_TYPE_CGROUP_STORAGE: "max_entries must be 0, key_size 8 (cgroup id) or 16 (struct bpf_cgroup_storage_key)",
    T.BPF_MAP_TYPE_PERCPU_CGROUP_STORAGE: "max_entries must be 0, key_size 8 or 16",
    T.BPF_MAP_TYPE_TASK_STORAGE: "needs BTF key (int) and value types, BPF_F_NO_PREALLOC and max_entries 0",
    T.BPF_MAP_TYPE_CGRP_STORAGE: "needs BTF key (int) and value types, BPF_F_NO_PREALLOC and max_entries 0",
    T.BPF_MAP_TYPE_SK_STORAGE: "needs BTF key (int) and value types, BPF_F_NO_PREALLOC and max_entries 0",
    T.BPF_MAP_TYPE_INODE_STORAGE: "needs BTF key (int) and value types, BPF_F_NO_PREALLOC and max_entries 0",
}


def _noop(_: Any) -> None:
    pass


def _scalar_decoder(codec: Codec) -> Callable[[Buffer], Any] | None:
    """For one-number struct codecs: a decoder without the generic method's attribute lookups."""
    if not isinstance(codec, StructCodec) or not codec.single:
        return None
    unpack_from = codec.struct.unpack_from

    def decode(data: Buffer) -> Any:
        return unpack_from(data)[0]

    return decode


def _round8(n: int) -> int:
    return (n + 7) & ~7


def _type_name(t: int) -> str:
    kind = enum_or_int(T.MapType, t)
    return kind.name.lower().removesuffix("_deprecated") if isinstance(kind, T.MapType) else f"type {t}"


def _older_than(version: str) -> bool:
    return kernel_version() < parse_version(version)


def sanitize_name(name: str) -> str:
    """A name the kernel accepts: only [A-Za-z0-9_.] (others dropped), at most 15 characters."""
    return object_name(name, fill="")


# ---- codecs ------------------------------------------------------------------------------------------------


def _raw_bytes(value: Any, size: int) -> bytes | None:
    """value as bytes when it is a bytes-like object of exactly `size` bytes (raw bytes always work)."""
    if isinstance(value, bytes):
        return value if len(value) == size else None
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value) if len(value) == size else None
    return None


class _BaseCodec:
    size: int

    def encode(self, value: Any) -> bytes:  # pragma: no cover - overridden
        raise NotImplementedError

    def decode(self, data: Buffer) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError

    def encode_many(self, values: Iterable[Any]) -> bytes:
        return b"".join(map(self.encode, values))

    def decode_many(self, data: Buffer, count: int) -> list[Any]:
        view = memoryview(data)
        size = self.size
        decode = self.decode
        return [decode(view[i * size:(i + 1) * size]) for i in range(count)]

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size})"


class RawCodec(_BaseCodec):
    """bytes in, bytes out."""

    def __init__(self, size: int) -> None:
        self.size = size

    def encode(self, value: Any) -> bytes:
        raw = _raw_bytes(value, self.size)
        if raw is None:
            if isinstance(value, ctypes.Structure | ctypes.Union | ctypes.Array) and ctypes.sizeof(value) == self.size:
                return bytes(value)
            got = f"{len(value)} bytes" if isinstance(value, (bytes, bytearray, memoryview)) else repr(value)
            raise TypeError(f"expected {self.size} raw bytes, got {got} (give the map a key=/value= codec "
                            "such as a struct format or a ctypes type to use other Python values)")
        return raw

    def decode(self, data: Buffer) -> bytes:
        return bytes(data)

    def encode_many(self, values: Iterable[Any]) -> bytes:
        return b"".join(map(self.encode, values))

    def decode_many(self, data: Buffer, count: int) -> list[Any]:
        raw = bytes(memoryview(data)[: count * self.size])
        size = self.size
        return [raw[i:i + size] for i in range(0, count * size, size)]


_CAST_CODES = "bBhHiIlLqQfd"


class StructCodec(_BaseCodec):
    """A `struct` format: one field gives a scalar, several a tuple."""

    def __init__(self, fmt: str) -> None:
        self.format = fmt
        self.struct = struct.Struct(fmt)
        self.size = self.struct.size
        self._pack = self.struct.pack
        self._unpack_from = self.struct.unpack_from
        self.single = len(self.struct.unpack(bytes(self.size))) == 1
        self._cast = self._native_code(fmt)

    @staticmethod
    def _native_code(fmt: str) -> str:
        """The memoryview/array type code when fmt is one native-layout number (enables bulk decoding)."""
        order = fmt[0] if fmt and fmt[0] in "@=<>!" else ""
        code = fmt[len(order):].lstrip("1")
        if len(code) != 1 or code not in _CAST_CODES:
            return ""
        native_order = order in ("", "@", "=") or (order == "<") == (sys.byteorder == "little")
        if not native_order or struct.calcsize(fmt) != struct.calcsize("@" + code):
            return ""
        return code

    def encode(self, value: Any) -> bytes:
        try:
            if self.single and not isinstance(value, (tuple, bytes)):
                return self._pack(value)
            if isinstance(value, (bytes, bytearray, memoryview)):
                raw = _raw_bytes(value, self.size)
                if raw is not None:
                    return raw
                if self.single:
                    return self._pack(value)  # e.g. a short string for "16s"
            return self._pack(*value)
        except (struct.error, TypeError) as exc:
            raw = _raw_bytes(value, self.size)
            if raw is not None:
                return raw
            raise TypeError(f"cannot encode {value!r} with struct format {self.format!r}: {exc}") from None

    def decode(self, data: Buffer) -> Any:
        values = self._unpack_from(data)
        return values[0] if self.single else values

    def encode_many(self, values: Iterable[Any]) -> bytes:
        if self._cast:
            from array import array  # not at module level: it imports collections (~2 ms of start-up)

            try:
                return array(self._cast, values).tobytes()
            except TypeError:
                pass
        return b"".join(map(self.encode, values))

    def decode_many(self, data: Buffer, count: int) -> list[Any]:
        view = memoryview(data)[: count * self.size]
        if self._cast:
            return list(view.cast(self._cast).tolist())  # type: ignore[call-overload]
        if self.single:
            return [t[0] for t in self.struct.iter_unpack(view)]
        return list(self.struct.iter_unpack(view))

    def __repr__(self) -> str:
        return f"StructCodec({self.format!r})"


class CtypesCodec(_BaseCodec):
    """A ctypes type: simple types (c_uint32, …) give Python scalars, structures give instances."""

    def __init__(self, ctype: type) -> None:
        self.ctype: Any = ctype
        self.size = ctypes.sizeof(ctype)
        self.simple = issubclass(ctype, ctypes._SimpleCData)

    def encode(self, value: Any) -> bytes:
        if isinstance(value, self.ctype):
            return bytes(value)
        raw = _raw_bytes(value, self.size)
        if raw is not None:
            return raw
        try:
            if self.simple:
                return bytes(self.ctype(value))
            if isinstance(value, dict):
                return bytes(self.ctype(**value))
            if isinstance(value, tuple):
                return bytes(self.ctype(*value))
        except (TypeError, ValueError) as exc:
            raise TypeError(f"cannot encode {value!r} as {self.ctype.__name__}: {exc}") from None
        raise TypeError(f"cannot encode {value!r} as {self.ctype.__name__} "
                        f"(give a {self.ctype.__name__}, a tuple or dict of its fields, or {self.size} bytes)")

    def decode(self, data: Buffer) -> Any:
        obj = self.ctype.from_buffer_copy(data)
        return obj.value if self.simple else obj

    def decode_many(self, data: Buffer, count: int) -> list[Any]:
        if count == 0:
            return []
        arr = (self.ctype * count).from_buffer_copy(memoryview(data)[: count * self.size])
        return list(arr)

    def __repr__(self) -> str:
        return f"CtypesCodec({self.ctype.__name__})"


class FdValueCodec(_BaseCodec):
    """Values of program arrays, perf event arrays and maps of maps: written as file descriptors
    (an int, an FD, or anything with an `fd` attribute such as a Map or Program), read back as object ids."""

    size = 4

    def encode(self, value: Any) -> bytes:
        raw = _raw_bytes(value, 4)
        if raw is not None:
            return raw
        fd = getattr(value, "fd", value)
        if not isinstance(fd, (int, FD)):
            raise TypeError(f"expected a file descriptor (int, FD, Map, Program), got {value!r}")
        return int(fd).to_bytes(4, sys.byteorder)

    def decode(self, data: Buffer) -> int:
        return int.from_bytes(data[:4], sys.byteorder)

    def __repr__(self) -> str:
        return "FdValueCodec()"


class FuncCodec(_BaseCodec):
    """A codec from two functions, e.g. the (encode, decode) pair of `pybpf.btf.codec.codec_for`."""

    def __init__(self, size: int, encode: Callable[[Any], bytes], decode: Callable[[Buffer], Any],
                 name: str = "") -> None:
        self.size = size
        self._encode = encode
        self._decode = decode
        self.name = name

    def encode(self, value: Any) -> bytes:
        raw = _raw_bytes(value, self.size)
        if raw is not None:
            return raw
        data = bytes(self._encode(value))
        if len(data) != self.size:
            raise ValueError(f"codec {self.name or self._encode!r} produced {len(data)} bytes, expected {self.size}")
        return data

    def decode(self, data: Buffer) -> Any:
        return self._decode(bytes(data))

    def __repr__(self) -> str:
        return f"FuncCodec({self.name or '?'}, size={self.size})"


if TYPE_CHECKING:
    CodecLike = Any  # None | str | ctypes type | Codec | btf.Type


def _btf_codec(t: BtfType) -> Codec:
    """Plain integers become struct codecs (bulk fast paths); everything else goes through
    pybpf.btf.codec (structs as namedtuples, enums, char arrays as str, ...)."""
    from pybpf.btf import Int, sizeof

    size = sizeof(t)
    inner = t.strip()
    if isinstance(inner, Int) and inner.size in (1, 2, 4, 8) and not inner.bit_offset and inner.bits == inner.size * 8:
        code = {1: "b", 2: "h", 4: "i", 8: "q"}[inner.size]
        return StructCodec("=" + (code if inner.signed else code.upper()))
    try:
        from pybpf.btf.codec import codec_for
    except ImportError:
        return RawCodec(size)
    enc, dec = codec_for(t)
    return FuncCodec(size, enc, dec, name=t.name or repr(t))


def _is_datasec(t: BtfType) -> bool:
    from pybpf.btf import Datasec

    return isinstance(t, Datasec)


def raw_codecs(key_size: int, value_size: int) -> tuple[CodecLike, CodecLike]:
    """The codecs of maps whose values are not decoded as one BTF type: ring and perf buffers, and global
    data sections (read per variable)."""
    return ("=I" if key_size == 4 else RawCodec(key_size)), RawCodec(value_size)


def default_codecs(spec: MapSpec) -> tuple[CodecLike, CodecLike]:
    """How a map made from `spec` decodes by default: its BTF key and value types (None: set_codec's
    defaults), raw bytes for ring and perf buffers and for global data sections (a DATASEC value)."""
    if spec.type in (T.BPF_MAP_TYPE_RINGBUF, T.BPF_MAP_TYPE_PERF_EVENT_ARRAY) or (
            spec.value_type is not None and _is_datasec(spec.value_type)):
        return raw_codecs(spec.key_size, spec.value_size)
    return spec.key_type, spec.value_type


def make_codec(spec: CodecLike, size: int, role: str = "value") -> Codec:
    """A codec from None (raw bytes), a struct format, a ctypes type, a Codec or a BTF type; checks its size."""
    codec: Codec
    if spec is None:
        return RawCodec(size)
    if isinstance(spec, str):
        codec = StructCodec(spec)
    elif isinstance(spec, type) and issubclass(spec, ctypes._SimpleCData | ctypes.Structure | ctypes.Union
                                               | ctypes.Array):
        codec = CtypesCodec(spec)
    elif isinstance(spec, _BaseCodec):
        codec = spec
    else:
        from pybpf.btf import Type as _BtfType

        if isinstance(spec, _BtfType):
            codec = _btf_codec(spec)
        elif hasattr(spec, "encode") and hasattr(spec, "decode") and hasattr(spec, "size"):  # a Codec
            codec = spec
        else:
            raise TypeError(f"{role} codec must be None, a struct format, a ctypes type, a Codec or a BTF type, "
                            f"not {spec!r}")
    if codec.size != size:
        raise ValueError(f"{role} codec {codec!r} is {codec.size} bytes but the map's {role} size is {size}")
    return codec


def _encode_many(codec: Codec, items: Any, size: int) -> bytes:
    if isinstance(items, (bytes, bytearray, memoryview)):
        return bytes(items)
    dtype = getattr(items, "dtype", None)
    if dtype is not None and getattr(dtype, "itemsize", 0) == size and hasattr(items, "tobytes"):
        return bytes(items.tobytes())  # a numpy array of matching items
    many = getattr(codec, "encode_many", None)
    if many is not None:
        return bytes(many(items))
    return b"".join(codec.encode(x) for x in items)


def _decode_many(codec: Codec, data: Buffer, count: int) -> list[Any]:
    many = getattr(codec, "decode_many", None)
    if many is not None:
        return list(many(data, count))
    view = memoryview(data)
    size = codec.size
    return [codec.decode(view[i * size:(i + 1) * size]) for i in range(count)]


# ---- specs and info ----------------------------------------------------------------------------------------


@record
class MapSpec:
    """Everything needed to create a map; plain data, no kernel objects (see Map.create)."""

    name: str
    type: MapType
    key_size: int
    value_size: int
    max_entries: int
    flags: int = 0
    inner: MapSpec | None = None
    pinning: int = 0  # 0: none, 1: LIBBPF_PIN_BY_NAME
    numa_node: int = 0
    map_extra: int = 0
    btf: Spec | None = None
    key_type: BtfType | None = None
    value_type: BtfType | None = None
    contents: list[tuple[Any, Any]] = field(default_factory=list)
    freeze: bool = False
    data: bytes | None = None  # initial value of key 0 (global data sections)

    def copy(self) -> MapSpec:
        return replace(self, inner=self.inner.copy() if self.inner else None,
                                   contents=list(self.contents))


@record(frozen=True)
class MapInfo:
    """What the kernel reports about a map (BPF_OBJ_GET_INFO_BY_FD plus /proc/self/fdinfo)."""

    type: MapType | int
    id: int
    name: str
    key_size: int
    value_size: int
    max_entries: int
    flags: int
    map_extra: int
    ifindex: int
    btf_id: int
    btf_key_type_id: int
    btf_value_type_id: int
    btf_vmlinux_value_type_id: int
    netns_dev: int
    netns_ino: int
    frozen: bool | None  # None when fdinfo does not say
    memlock: int | None  # bytes charged to the map, from fdinfo


def _raw_info(fd: int) -> T.MapInfo:
    info = T.MapInfo()
    attr = T.InfoByFdAttr(bpf_fd=fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(T.BPF_OBJ_GET_INFO_BY_FD, attr, "map info")
    return info


def _fdinfo(fd: int) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(f"/proc/self/fdinfo/{fd}") as f:
            for line in f:
                key, _, value = line.partition(":")
                out[key.strip()] = value.strip()
    except OSError:
        pass
    return out


def _c_name(raw: ctypes.Array[ctypes.c_uint8]) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


# What set_codec() sets: left unset by Map.defer() until first use.
_CODEC_ATTRIBUTES = frozenset({"key_codec", "value_codec", "_kenc", "_kdec", "_venc", "_vdec", "_vdec_one", "_kput",
                               "_vput"})


# ---- the map -----------------------------------------------------------------------------------------------


class Map:
    """A BPF map owned through its fd. Dict-like: `m[k]`, `m[k] = v`, `del m[k]`, `k in m`, `len(m)`,
    `keys()`, `values()`, `items()`; `lookup()` returns None for a missing key where `m[k]` raises KeyError."""

    def __init__(
        self,
        fd: FD,
        *,
        type: MapType | int,
        key_size: int,
        value_size: int,
        max_entries: int,
        flags: int = 0,
        name: str = "",
        map_extra: int = 0,
        key: CodecLike = None,
        value: CodecLike = None,
        spec: MapSpec | None = None,
    ) -> None:
        self.fd = fd
        self.map_type = int(type)  # `type` gives the enum
        self.key_size = key_size
        self.value_size = value_size
        self.max_entries = max_entries
        self.flags = flags
        self.name = name
        self.map_extra = map_extra
        self.spec = spec
        self.pinned_path: str | None = None
        self._id: int | None = None
        self._lock = allocate_lock()
        self._mmap: _mmap.mmap | None = None
        self._mmap_views: list[memoryview] = []
        self.percpu = self.map_type in PERCPU_TYPES
        self.ncpus = possible_cpus() if self.percpu else 1
        self._stride = _round8(value_size) if self.percpu else value_size
        self._value_buf_size = self._stride * self.ncpus
        # Preallocated buffers and attr for the element operations (key/value pointers fixed once).
        self._kbuf = bytearray(max(key_size, 1))
        self._vbuf = bytearray(max(self._value_buf_size, 1))
        self._kview = memoryview(self._kbuf)[:key_size]
        self._vview = memoryview(self._vbuf)[: self._value_buf_size]
        self._kc_arr = (ctypes.c_char * len(self._kbuf)).from_buffer(self._kbuf)
        self._vc_arr = (ctypes.c_char * len(self._vbuf)).from_buffer(self._vbuf)
        kaddr = ctypes.addressof(self._kc_arr) if key_size else 0
        self._elem = T.MapElemAttr(map_fd=int(fd), key=kaddr, value=ctypes.addressof(self._vc_arr), flags=0)
        self._elem_ref = ctypes.byref(self._elem)
        self._del = T.MapElemAttr(map_fd=int(fd), key=kaddr)  # delete: value/flags must stay zero
        self._del_ref = ctypes.byref(self._del)
        self.set_codec(key=key, value=value)

    @property
    def type(self) -> MapType | int:
        """The map type: a MapType member (a plain int for a type newer than pybpf knows)."""
        return enum_or_int(T.MapType, self.map_type)

    # ---- codecs ----------------------------------------------------------------------------------------

    def set_codec(self, *, key: CodecLike = None, value: CodecLike = None) -> Map:
        """Choose how keys and values are encoded (None: the type's default, raw bytes for most maps).

        Takes a struct format ("I", "<Q", "=I4s"), a ctypes type, a Codec or a BTF type. Returns self.
        """
        if key is None and self.key_size == 4 and self.map_type in ARRAY_TYPES | {T.BPF_MAP_TYPE_STACK_TRACE}:
            key = "I"
        if value is None and self.value_size == 4 and self.map_type in FD_VALUE_TYPES:
            value = FdValueCodec()
        if value is None and self.map_type == T.BPF_MAP_TYPE_STACK_TRACE and self.value_size % 8 == 0 and self.value_size:
            value = f"={self.value_size // 8}Q"
        self.key_codec = make_codec(key, self.key_size, "key")
        self.value_codec = make_codec(value, self.value_size, "value")
        self._kenc = self.key_codec.encode
        self._kdec = self.key_codec.decode
        vc = self.value_codec
        # Values are decoded straight out of the map's reused buffer: the built-in codecs copy, codecs
        # from elsewhere get bytes so that they can keep what they are given.
        self._vdec_one: Callable[[Buffer], Any] = (
            vc.decode if isinstance(vc, _BaseCodec) else (lambda data: vc.decode(bytes(data))))
        if self.percpu:
            self._venc: Callable[[Any], bytes] = self._encode_percpu
            self._vdec: Callable[[Buffer], Any] = self._decode_percpu
        else:
            self._venc = vc.encode
            self._vdec = _scalar_decoder(vc) or self._vdec_one
        # Writers straight into the shared buffers: struct.pack_into for one-number struct codecs (no
        # intermediate bytes, no Python frame); otherwise encode() and copy. Callers retry through
        # encode() on struct.error/TypeError so raw bytes and the codec's error messages still work.
        self._kput: Callable[[Any], None] = (
            _noop if not self.key_size else self._direct_writer(self.key_codec, self._kbuf) or self._put_key)
        self._vput: Callable[[Any], None] = (
            (not self.percpu and self._direct_writer(vc, self._vbuf)) or self._put_value)
        return self

    def defer(self, spec: Callable[[], MapSpec | None],
              codecs: Callable[[], tuple[CodecLike, CodecLike]] | None = None) -> None:
        """Build `spec` (and, given `codecs`, the key/value codecs) on first use (a collection loaded from a
        cached plan reads the object file and its BTF only when a spec is asked for or a value decoded)."""
        defer(self, "spec", spec)
        if codecs is not None:
            for name in _CODEC_ATTRIBUTES:
                self.__dict__.pop(name, None)
            self._pending_codecs = codecs  # not `_build_codecs`: _lazy.build_deferred would take it for "codecs"

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set: a deferred spec or deferred codecs.
        if name in _CODEC_ATTRIBUTES and "_pending_codecs" in self.__dict__:
            key, value = self._pending_codecs()
            self.set_codec(key=key, value=value)
            del self._pending_codecs
            return getattr(self, name)
        return build_deferred(self, name)

    @staticmethod
    def _direct_writer(codec: Codec, buf: bytearray) -> Callable[[Any], None] | None:
        if isinstance(codec, StructCodec) and codec.single and codec.format[-1:] not in ("s", "p"):
            if TYPE_CHECKING:
                from functools import partial
            else:  # functools' own partial: `import functools` costs ~4 ms of start-up
                from _functools import partial
            return partial(codec.struct.pack_into, buf, 0)
        return None

    def _put_key(self, key: Any) -> None:
        self._kview[:] = self._kenc(key)

    def _put_value(self, value: Any) -> None:
        self._vview[:] = self._venc(value)

    def _encode_percpu(self, values: Any) -> bytes:
        full = self._value_buf_size
        raw = _raw_bytes(values, full)
        if raw is not None:
            return raw
        if not isinstance(values, (list, tuple)) or len(values) != self.ncpus:
            got = f"{len(values)} values" if isinstance(values, (list, tuple)) else repr(values)
            raise TypeError(f"per-CPU map {self.name!r} takes a list of {self.ncpus} values "
                            f"(one per possible CPU), got {got}")
        out = bytearray(full)
        enc = self.value_codec.encode
        stride = self._stride
        for i, v in enumerate(values):
            data = enc(v)
            out[i * stride:i * stride + len(data)] = data
        return bytes(out)

    def _decode_percpu(self, data: Buffer) -> list[Any]:
        view = memoryview(data)
        dec = self._vdec_one
        stride = self._stride
        size = self.value_size
        return [dec(view[i * stride:i * stride + size]) for i in range(self.ncpus)]

    # ---- construction ----------------------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        spec: MapSpec,
        *,
        btf_fd: FD | None = None,
        btf_key_type_id: int = 0,
        btf_value_type_id: int = 0,
        inner_map_fd: FD | None = None,
        key: CodecLike = None,
        value: CodecLike = None,
    ) -> Map:
        """Create the map in the kernel, fill it with spec.data/spec.contents and freeze it if asked."""
        spec = _fixup_spec(spec)
        # A spec with BTF types (from an object) decodes as the loader's maps do; a hand-made one keeps
        # set_codec's defaults (None). Codecs are built, and so checked, before the kernel object exists.
        typed = spec.key_type is not None or spec.value_type is not None
        default_key, default_value = default_codecs(spec) if typed else (None, None)
        if key is None:
            key = default_key
        if value is None:
            value = default_value
        if key is not None:
            key = make_codec(key, spec.key_size, "key")
        if value is not None:
            value = make_codec(value, spec.value_size, "value")
        inner_owned: Map | None = None
        if spec.type in MAP_IN_MAP_TYPES and inner_map_fd is None:
            if spec.inner is None:
                raise ValueError(f"map {spec.name!r} ({_type_name(spec.type)}) needs spec.inner, the inner map's "
                                 "MapSpec, or inner_map_fd")
            inner_owned = cls.create(spec.inner)
            inner_map_fd = inner_owned.fd
        name = sanitize_name(spec.name)
        attr = T.MapCreateAttr(
            map_type=int(spec.type), key_size=spec.key_size, value_size=spec.value_size,
            max_entries=spec.max_entries, map_flags=spec.flags,
            inner_map_fd=int(inner_map_fd) if inner_map_fd is not None else 0,
            numa_node=spec.numa_node, map_extra=spec.map_extra,
        )
        if btf_fd is not None:
            attr.btf_fd = int(btf_fd)
            attr.btf_key_type_id = btf_key_type_id
            attr.btf_value_type_id = btf_value_type_id
        encoded = name.encode()
        attr.map_name[: len(encoded)] = encoded
        try:
            try:
                fd = bpf_fd(T.BPF_MAP_CREATE, attr, "map")
            except BPFError as exc:
                if not (exc.errno == _errno.EINVAL and name and _older_than("4.15")):
                    raise _create_error(spec, exc.errno or 0, btf_fd is not None) from None
                attr.map_name[:] = bytes(len(attr.map_name))  # names came in 4.15
                try:
                    fd = bpf_fd(T.BPF_MAP_CREATE, attr, "map")
                except BPFError as again:
                    raise _create_error(spec, again.errno or 0, btf_fd is not None) from None
        finally:
            if inner_owned is not None:
                inner_owned.close()
        try:
            m = cls(fd, type=spec.type, key_size=spec.key_size, value_size=spec.value_size,
                    max_entries=spec.max_entries, flags=spec.flags, name=name, map_extra=spec.map_extra,
                    key=key, value=value, spec=spec)
        except BaseException:
            fd.close()
            raise
        try:
            m._populate(spec)
        except BaseException:
            m.close()
            raise
        return m

    def _populate(self, spec: MapSpec) -> None:
        if spec.data is not None:
            if len(spec.data) > self.value_size:
                raise ValueError(f"initial data of map {self.name!r} is {len(spec.data)} bytes, "
                                 f"more than its value_size {self.value_size}")
            self.update(bytes(4), spec.data.ljust(self.value_size, b"\0"))
        for k, v in spec.contents:
            self.update(k, v)
        if spec.freeze:
            self.freeze()

    @classmethod
    def from_fd(cls, fd: FD | int, *, key: CodecLike = None, value: CodecLike = None) -> Map:
        """Wrap an fd of an existing map. An `FD` is taken over; a raw int is duplicated (the caller keeps
        its own)."""
        if not isinstance(fd, FD):
            return cls._wrap_new_fd(FD(os.dup(fd)), key, value)
        info = _raw_info(int(fd))
        m = cls(fd, type=info.type, key_size=info.key_size, value_size=info.value_size,
                max_entries=info.max_entries, flags=info.map_flags, name=_c_name(info.name),
                map_extra=info.map_extra, key=key, value=value)
        m._id = info.id
        return m

    @classmethod
    def from_id(cls, map_id: int, *, key: CodecLike = None, value: CodecLike = None) -> Map:
        attr = T.GetIdAttr(map_id=map_id)
        try:
            fd = bpf_fd(T.BPF_MAP_GET_FD_BY_ID, attr, f"map id {map_id}")
        except BPFError as exc:
            if exc.errno == ENOENT:
                raise BPFError(f"no map with id {map_id} (list them with `bpftool map`)", ENOENT,
                               "BPF_MAP_GET_FD_BY_ID") from None
            raise
        return cls._wrap_new_fd(fd, key, value)

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str], *, key: CodecLike = None, value: CodecLike = None,
                 flags: int = 0) -> Map:
        """Open a map pinned at path (flags: BPF_F_RDONLY / BPF_F_WRONLY)."""
        m = cls._wrap_new_fd(open_pinned(path, flags), key, value)
        m.pinned_path = os.fspath(path)
        return m

    @classmethod
    def _wrap_new_fd(cls, fd: FD, key: CodecLike, value: CodecLike) -> Map:
        try:
            return cls.from_fd(fd, key=key, value=value)
        except BaseException:
            fd.close()
            raise

    # ---- lifetime --------------------------------------------------------------------------------------

    def close(self) -> None:
        """Close the fd and any mmap (a mapping still referenced by other memoryviews lives until they go)."""
        for view in self._mmap_views:
            view.release()
        self._mmap_views.clear()
        if self._mmap is not None:
            try:
                self._mmap.close()
            except BufferError:
                pass
            self._mmap = None
        self.fd.close()

    @property
    def closed(self) -> bool:
        return self.fd.closed

    def __enter__(self) -> Map:
        return self

    def __exit__(self, t: builtins.type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = f"fd={int(self.fd)}" if not self.fd.closed else "closed"
        return (f"<Map {_type_name(self.map_type)} {self.name!r} key={self.key_size} value={self.value_size} "
                f"max_entries={self.max_entries} {state}>")

    # ---- info ------------------------------------------------------------------------------------------

    @property
    def id(self) -> int:
        if self._id is None:
            self._id = int(_raw_info(int(self.fd)).id)
        return self._id

    def info(self) -> MapInfo:
        raw = _raw_info(int(self.fd))
        fdinfo = _fdinfo(int(self.fd))
        frozen = fdinfo.get("frozen")
        memlock = fdinfo.get("memlock")
        return MapInfo(
            type=enum_or_int(T.MapType, raw.type), id=raw.id, name=_c_name(raw.name), key_size=raw.key_size,
            value_size=raw.value_size, max_entries=raw.max_entries, flags=raw.map_flags,
            map_extra=raw.map_extra, ifindex=raw.ifindex, btf_id=raw.btf_id,
            btf_key_type_id=raw.btf_key_type_id, btf_value_type_id=raw.btf_value_type_id,
            btf_vmlinux_value_type_id=raw.btf_vmlinux_value_type_id, netns_dev=raw.netns_dev,
            netns_ino=raw.netns_ino, frozen=None if frozen is None else frozen != "0",
            memlock=int(memlock) if memlock and memlock.isdigit() else None,
        )

    # ---- errors ----------------------------------------------------------------------------------------

    def _error(self, op: str, cmd: int, err: int, key: Any = None, flags: int = 0) -> BPFError:
        what = f"{op} on map {self.name!r} ({_type_name(self.map_type)})"
        if key is not None:
            what = f"{op} of key {key!r} in map {self.name!r} ({_type_name(self.map_type)})"
        hint = ""
        if err in (_errno.E2BIG, _errno.ENOSPC) and self.map_type in (T.BPF_MAP_TYPE_QUEUE, T.BPF_MAP_TYPE_STACK):
            hint = (f"the {_type_name(self.map_type)} is full (max_entries={self.max_entries}); push with "
                    "flags=BPF_EXIST to overwrite the oldest element")
        elif err == _errno.E2BIG and cmd == _UPDATE:
            hint = f"the map is full (max_entries={self.max_entries}); delete entries or create it bigger"
        elif err == _errno.EEXIST and flags & T.BPF_NOEXIST:
            hint = "the key already exists (flags=BPF_NOEXIST)"
        elif err == ENOENT and flags & T.BPF_EXIST:
            hint = "the key does not exist (flags=BPF_EXIST)"
        elif err == _errno.EPERM and cmd in (_UPDATE, _DELETE):
            hint = "the map is frozen or read-only from user space (BPF_F_RDONLY)"
        elif err == _errno.EINVAL and cmd == _DELETE and self.map_type in (T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_ARRAY):
            hint = "array elements cannot be deleted; overwrite them instead"
        elif err == _errno.EINVAL and cmd == _UPDATE and self.map_type == T.BPF_MAP_TYPE_STACK_TRACE:
            hint = "stack trace maps are filled by bpf_get_stackid() in programs, not from user space"
        elif err in (ENOTSUPP, _errno.EOPNOTSUPP):
            hint = f"{_type_name(self.map_type)} maps do not support this operation from user space"
        elif err == _errno.EBADF:
            hint = "the map's fd was closed"
        e = BPFError(what + " failed", err, command_name(cmd))
        if hint:
            name = _errno.errorcode.get(err, "ENOTSUPP" if err == ENOTSUPP else str(err))
            e.message = f"{what} failed: {name} - {hint}"
        return e

    # ---- element operations (hot paths) ----------------------------------------------------------------

    def lookup(self, key: Any = None, flags: int = 0) -> Any:
        """The value for key, or None when there is none (flags: BPF_F_LOCK)."""
        with self._lock:
            try:
                self._kput(key)
            except (struct.error, TypeError, OverflowError):
                self._kview[:] = self._kenc(key)  # the codec's own checks and messages
            if flags:
                self._elem.flags = flags
            ret = _syscall(NR_BPF, _LOOKUP, self._elem_ref, _ELEM_SIZE)
            if ret < 0:
                err = _get_errno()
                if flags:
                    self._elem.flags = 0
                if err == ENOENT:
                    return None
                raise self._error("lookup", _LOOKUP, err, key, flags)
            if flags:
                self._elem.flags = 0
            return self._vdec(self._vview)

    def get(self, key: Any, default: Any = None) -> Any:
        value = self.lookup(key)
        return default if value is None else value

    def update(self, key: Any, value: Any, flags: int = T.BPF_ANY) -> None:
        """Set key to value (flags: BPF_ANY, BPF_NOEXIST, BPF_EXIST, BPF_F_LOCK)."""
        with self._lock:
            try:
                self._kput(key)
            except (struct.error, TypeError, OverflowError):
                self._kview[:] = self._kenc(key)
            try:
                self._vput(value)
            except (struct.error, TypeError, OverflowError):
                self._vview[:] = self._venc(value)
            if flags:
                self._elem.flags = flags
            ret = _syscall(NR_BPF, _UPDATE, self._elem_ref, _ELEM_SIZE)
            if flags:
                self._elem.flags = 0
            if ret < 0:
                raise self._error("update", _UPDATE, _get_errno(), key, flags)

    def delete(self, key: Any) -> bool:
        """Delete key; False when it was not there."""
        with self._lock:
            try:
                self._kput(key)
            except (struct.error, TypeError, OverflowError):
                self._kview[:] = self._kenc(key)
            ret = _syscall(NR_BPF, _DELETE, self._del_ref, _ELEM_SIZE)
            if ret < 0:
                err = _get_errno()
                if err == ENOENT:
                    return False
                raise self._error("delete", _DELETE, err, key)
            return True

    def lookup_and_delete(self, key: Any = None, flags: int = 0) -> Any:
        """Remove key and return its value (None when missing). key=None for queues and stacks."""
        with self._lock:
            try:
                self._kput(key)
            except (struct.error, TypeError, OverflowError):
                self._kview[:] = self._kenc(key)
            if flags:
                self._elem.flags = flags
            ret = _syscall(NR_BPF, _LOOKUP_AND_DELETE, self._elem_ref, _ELEM_SIZE)
            if flags:
                self._elem.flags = 0
            if ret >= 0:
                return self._vdec(self._vview)
            err = _get_errno()
        if err == ENOENT:
            return None
        if err in (ENOTSUPP, _errno.EOPNOTSUPP, _errno.EINVAL) and self.key_size:
            # Kernels before 5.14 only had it for queues/stacks: fall back to lookup + delete.
            value = self.lookup(key, flags)
            if value is not None and not self.delete(key):
                return None
            return value
        raise self._error("lookup_and_delete", _LOOKUP_AND_DELETE, err, key)

    # Queues, stacks and bloom filters: no keys.

    def push(self, value: Any, flags: int = T.BPF_ANY) -> None:
        """Queue/stack: add value (flags=BPF_EXIST overwrites the oldest when full). Bloom filter: add value."""
        self.update(None, value, flags)

    def pop(self) -> Any:
        """Queue: the oldest value; stack: the newest. None when empty."""
        return self.lookup_and_delete(None)

    def peek(self) -> Any:
        """Like pop() without removing."""
        return self.lookup(None)

    def _bloom_contains(self, value: Any) -> bool:
        with self._lock:
            try:
                self._vput(value)
            except (struct.error, TypeError, OverflowError):
                self._vview[:] = self._venc(value)
            ret = _syscall(NR_BPF, _LOOKUP, self._elem_ref, _ELEM_SIZE)
            if ret >= 0:
                return True
            err = _get_errno()
        if err == ENOENT:
            return False
        raise self._error("bloom filter check", _LOOKUP, err)

    def contains(self, key_or_value: Any) -> bool:
        """Whether key is in the map; for a bloom filter, whether value may have been added."""
        if self.map_type == T.BPF_MAP_TYPE_BLOOM_FILTER:
            return self._bloom_contains(key_or_value)
        return self.lookup(key_or_value) is not None

    # ---- dict face -------------------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        value = self.lookup(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: Any, value: Any) -> None:
        self.update(key, value)

    def __delitem__(self, key: Any) -> None:
        if not self.delete(key):
            raise KeyError(key)

    def __contains__(self, key: Any) -> bool:
        return self.contains(key)

    def __len__(self) -> int:
        """The number of keys (arrays: max_entries; other maps: counted by iterating)."""
        if self.map_type in (T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_ARRAY):
            return self.max_entries
        return sum(1 for _ in self._raw_keys())

    def __iter__(self) -> Iterator[Any]:
        return self.keys()

    def __bool__(self) -> bool:
        return True  # a map object is truthy even when empty (unlike a dict)

    # ---- iteration -------------------------------------------------------------------------------------

    def _raw_keys(self) -> Iterator[bytes]:
        """Every key once, as raw bytes, robust against concurrent deletes.

        The successor of each key is fetched before the key is handed out, so deleting the current key is
        free. When the key whose successor is wanted has meanwhile been deleted, the kernel either restarts
        from the first key (hash maps) or says ENOENT (then the walk restarts from the beginning here);
        either way keys already produced are skipped, so every key comes out exactly once.
        """
        ks = self.key_size
        if not ks or self.map_type in KEYLESS_TYPES:
            raise TypeError(f"{_type_name(self.map_type)} maps have no keys to iterate (use pop()/peek())")
        if self.fd.closed:
            raise ValueError("map is closed")
        if self.map_type in (T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_ARRAY):
            order = sys.byteorder
            for i in range(self.max_entries):
                yield i.to_bytes(4, order)
            return
        cur_buf = bytearray(ks)
        next_buf = bytearray(ks)
        val_buf = bytearray(max(self._value_buf_size, 1))
        cur_arr = (ctypes.c_char * ks).from_buffer(cur_buf)
        next_arr = (ctypes.c_char * ks).from_buffer(next_buf)
        val_arr = (ctypes.c_char * len(val_buf)).from_buffer(val_buf)
        fd = int(self.fd)
        nattr = T.MapElemAttr(map_fd=fd, key=ctypes.addressof(cur_arr), next_key=ctypes.addressof(next_arr))
        lattr = T.MapElemAttr(map_fd=fd, key=ctypes.addressof(cur_arr), value=ctypes.addressof(val_arr))
        naddr = ctypes.byref(nattr)
        laddr = ctypes.byref(lattr)
        cur_addr = ctypes.addressof(cur_arr)

        dedupe = self.map_type not in ARRAY_TYPES
        seen: set[bytes] = set()
        restarts = 0

        def first() -> bytes | None:
            nattr.key = 0
            ret = _syscall(NR_BPF, _NEXT_KEY, naddr, _ELEM_SIZE)
            err = _get_errno()
            nattr.key = cur_addr
            if ret == 0:
                return bytes(next_buf)
            if err == ENOENT:
                return None
            raise self._error("get_next_key", _NEXT_KEY, err)

        def after_failure(err: int, prev: bytes) -> bytes | None:
            """get_next_key(prev) failed with err: the end of the map, or prev was deleted (restart)."""
            nonlocal restarts
            if err != ENOENT:
                raise self._error("get_next_key", _NEXT_KEY, err)
            cur_buf[:] = prev
            if not dedupe or _syscall(NR_BPF, _LOOKUP, laddr, _ELEM_SIZE) == 0 or _get_errno() != ENOENT:
                return None  # prev is still there: this was the last key
            restarts += 1
            if restarts > self.max_entries + 1:
                raise BPFError(f"iterating map {self.name!r}: keys keep disappearing, gave up after "
                               f"{restarts} restarts", _errno.EAGAIN, "BPF_MAP_GET_NEXT_KEY")
            return first()

        cur = first()
        while cur is not None:
            # Fetch the successor before handing cur out, so deleting cur costs nothing.
            cur_buf[:] = cur
            nxt: bytes | None
            if _syscall(NR_BPF, _NEXT_KEY, naddr, _ELEM_SIZE) == 0:
                nxt = bytes(next_buf)
            else:
                nxt = after_failure(_get_errno(), cur)
            if dedupe:
                size = len(seen)
                seen.add(cur)
                if len(seen) == size:  # produced before a restart
                    cur = nxt
                    continue
            yield cur
            cur = nxt

    def keys(self) -> Iterator[Any]:
        dec = self._kdec
        for raw in self._raw_keys():
            yield dec(raw)

    def items(self) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs; keys deleted while iterating are skipped."""
        ks = self.key_size
        kbuf = bytearray(max(ks, 1))
        vbuf = bytearray(max(self._value_buf_size, 1))
        karr = (ctypes.c_char * len(kbuf)).from_buffer(kbuf)
        varr = (ctypes.c_char * len(vbuf)).from_buffer(vbuf)
        attr = T.MapElemAttr(map_fd=int(self.fd), key=ctypes.addressof(karr), value=ctypes.addressof(varr))
        addr = ctypes.byref(attr)
        kview = memoryview(kbuf)[:ks]
        vview = memoryview(vbuf)[: self._value_buf_size]
        kdec = self._kdec
        vdec = self._vdec
        for raw in self._raw_keys():
            kview[:] = raw
            if _syscall(NR_BPF, _LOOKUP, addr, _ELEM_SIZE) < 0:
                err = _get_errno()
                if err == ENOENT:
                    continue  # deleted under us, or an empty fd-array slot
                raise self._error("lookup", _LOOKUP, err)
            yield kdec(raw), vdec(vview)

    def values(self) -> Iterator[Any]:
        for _, v in self.items():
            yield v

    def clear(self) -> int:
        """Delete every key (not for arrays); returns how many were deleted."""
        return sum(1 for raw in list(self._raw_keys()) if self.delete(self._kdec(raw)))

    # ---- batch operations ------------------------------------------------------------------------------

    def _batch_unsupported(self, op: str, err: int) -> NotSupportedError:
        return NotSupportedError(f"{op} for {_type_name(self.map_type)} maps", "5.6", err,
                                 "use iteration (items()) or per-element calls instead")

    def lookup_batch_raw(self, count: int | None = None, *, delete: bool = False,
                         chunk: int = DEFAULT_BATCH_CHUNK) -> tuple[bytearray, bytearray, int]:
        """BPF_MAP_LOOKUP(_AND_DELETE)_BATCH over the whole map: (keys, values, n).

        keys holds n * key_size bytes, values n entries of value_size bytes (per-CPU maps: value_size rounded
        up to 8, times the number of possible CPUs). `count` caps the number of entries, `chunk` is how
        many the kernel copies per call. Raises NotSupportedError for map types without batch support.
        """
        total = self._batch_total(count)
        keys = bytearray(total * self.key_size)
        vals = bytearray(total * self._value_buf_size)
        n = self._batch_fill(keys, vals, total, count is not None, delete, chunk)
        del keys[n * self.key_size:]
        del vals[n * self._value_buf_size:]
        return keys, vals, n

    def _batch_total(self, count: int | None) -> int:
        return self.max_entries if count is None else max(0, min(count, self.max_entries))

    def _batch_fill(self, keys: bytearray, vals: bytearray, total: int, capped: bool, delete: bool,
                    chunk: int) -> int:
        """Fill keys/vals through batch calls of up to `chunk` entries; returns the number of entries."""
        if total == 0:
            return 0
        ks = self.key_size
        vs = self._value_buf_size
        karr = (ctypes.c_char * len(keys)).from_buffer(keys)
        varr = (ctypes.c_char * len(vals)).from_buffer(vals)
        kbase = ctypes.addressof(karr)
        vbase = ctypes.addressof(varr)
        token_size = max(ks, 8)
        tokens = (ctypes.c_char * (2 * token_size))()
        tok = [ctypes.addressof(tokens), ctypes.addressof(tokens) + token_size]
        cmd = T.BPF_MAP_LOOKUP_AND_DELETE_BATCH if delete else T.BPF_MAP_LOOKUP_BATCH
        attr = T.MapBatchAttr(map_fd=int(self.fd))
        addr = ctypes.byref(attr)
        n = 0
        step = max(1, chunk)
        first = True
        try:
            while n < total:
                want = min(step, total - n)
                attr.in_batch = 0 if first else tok[0]
                attr.out_batch = tok[1]
                attr.keys = kbase + n * ks
                attr.values = vbase + n * vs
                attr.count = want
                ret = _syscall(NR_BPF, cmd, addr, _BATCH_SIZE)
                err = _get_errno() if ret < 0 else 0
                got: int = attr.count
                n += got
                if ret < 0:
                    if err == ENOENT:
                        break
                    if err == _errno.ENOSPC and got == 0:
                        if capped and want < step:
                            break  # the cap falls inside a hash bucket
                        step *= 2  # a hash bucket holds more entries than one chunk
                        if step > 1 << 26:
                            raise self._error("batch lookup", cmd, err)
                        continue
                    if err in (ENOTSUPP, _errno.EOPNOTSUPP) or (err == _errno.EINVAL and first and
                                                                 self.map_type not in _BATCH_TYPES):
                        raise self._batch_unsupported(command_name(cmd), err)
                    raise self._error("batch lookup", cmd, err)
                first = False
                tok.reverse()
        finally:
            del karr, varr
        return n

    def batch_lookup(self, count: int | None = None, delete: bool = False, *,
                     chunk: int = DEFAULT_BATCH_CHUNK) -> list[tuple[Any, Any]]:
        """All (key, value) pairs through the batch API (at most `count`); delete=True empties the map as
        it goes. Map types without batch support fall back to iteration."""
        try:
            keys, vals, n = self.lookup_batch_raw(count, delete=delete, chunk=chunk)
        except NotSupportedError:
            return self._batch_lookup_slow(count, delete)
        return _pairs(self._decode_keys(keys, n), self._decode_values(vals, n))

    def _batch_lookup_slow(self, count: int | None, delete: bool) -> list[tuple[Any, Any]]:
        out: list[tuple[Any, Any]] = []
        for k, v in self.items():
            if count is not None and len(out) >= count:
                break
            if delete:
                self.delete(k)
            out.append((k, v))
        return out

    def _decode_keys(self, data: Buffer, n: int) -> list[Any]:
        return _decode_many(self.key_codec, data, n)

    def _decode_values(self, data: Buffer, n: int) -> list[Any]:
        if not self.percpu:
            return _decode_many(self.value_codec, data, n)
        ncpu = self.ncpus
        if self._stride == self.value_size:
            flat = _decode_many(self.value_codec, data, n * ncpu)
            return [flat[i:i + ncpu] for i in range(0, n * ncpu, ncpu)]
        view = memoryview(data)
        vs = self._value_buf_size
        return [self._decode_percpu(view[i * vs:(i + 1) * vs]) for i in range(n)]

    def _encode_values(self, values: Any) -> bytes:
        if not self.percpu:
            return _encode_many(self.value_codec, values, self.value_size)
        if isinstance(values, (bytes, bytearray, memoryview)):
            return bytes(values)
        return b"".join(map(self._encode_percpu, values))

    def batch_update(self, keys: Any, values: Any, flags: int = 0, *, chunk: int = DEFAULT_BATCH_CHUNK) -> int:
        """BPF_MAP_UPDATE_BATCH: set keys[i] to values[i]. keys/values are sequences (or raw bytes, or numpy
        arrays of matching item size). Returns how many were written."""
        kdata = _encode_many(self.key_codec, keys, self.key_size)
        vdata = self._encode_values(values)
        ks, vs = self.key_size, self._value_buf_size
        n = len(kdata) // ks if ks else 0
        if len(kdata) != n * ks or len(vdata) != n * vs:
            raise ValueError(f"batch_update: {len(kdata)} bytes of keys and {len(vdata)} bytes of values do not "
                             f"make whole entries of {ks}+{vs} bytes, or their counts differ")
        kbuf = ctypes.create_string_buffer(kdata, max(len(kdata), 1))
        vbuf = ctypes.create_string_buffer(vdata, max(len(vdata), 1))
        attr = T.MapBatchAttr(map_fd=int(self.fd), elem_flags=flags)
        addr = ctypes.byref(attr)
        cmd = T.BPF_MAP_UPDATE_BATCH
        done = 0
        while done < n:
            want = min(chunk, n - done)
            attr.keys = ctypes.addressof(kbuf) + done * ks
            attr.values = ctypes.addressof(vbuf) + done * vs
            attr.count = want
            ret = _syscall(NR_BPF, cmd, addr, _BATCH_SIZE)
            done += attr.count
            if ret < 0:
                err = _get_errno()
                if err in (ENOTSUPP, _errno.EOPNOTSUPP) and done == 0:
                    return self._update_slow(kdata, vdata, n, flags)
                e = self._error("batch update", cmd, err, flags=flags)
                e.message += f" (after {done} of {n} entries were written)"
                raise e
        return done

    def _update_slow(self, kdata: bytes, vdata: bytes, n: int, flags: int) -> int:
        ks, vs = self.key_size, self._value_buf_size
        for i in range(n):
            self.update(kdata[i * ks:(i + 1) * ks], vdata[i * vs:(i + 1) * vs], flags)
        return n

    def batch_delete(self, keys: Any, *, chunk: int = DEFAULT_BATCH_CHUNK) -> int:
        """BPF_MAP_DELETE_BATCH: delete these keys (missing ones are skipped). Returns how many were deleted."""
        kdata = _encode_many(self.key_codec, keys, self.key_size)
        ks = self.key_size
        n = len(kdata) // ks if ks else 0
        if len(kdata) != n * ks:
            raise ValueError(f"batch_delete: {len(kdata)} bytes of keys is not a multiple of key_size {ks}")
        kbuf = ctypes.create_string_buffer(kdata, max(len(kdata), 1))
        attr = T.MapBatchAttr(map_fd=int(self.fd))
        addr = ctypes.byref(attr)
        cmd = T.BPF_MAP_DELETE_BATCH
        pos = deleted = 0
        while pos < n:
            want = min(chunk, n - pos)
            attr.keys = ctypes.addressof(kbuf) + pos * ks
            attr.count = want
            ret = _syscall(NR_BPF, cmd, addr, _BATCH_SIZE)
            got: int = attr.count
            pos += got
            deleted += got
            if ret < 0:
                err = _get_errno()
                if err == ENOENT:
                    pos += 1  # the key at pos was not there: skip it and go on
                    continue
                if err in (ENOTSUPP, _errno.EOPNOTSUPP) and deleted == 0:
                    return deleted + sum(int(self.delete(kdata[i * ks:(i + 1) * ks])) for i in range(pos, n))
                e = self._error("batch delete", cmd, err)
                e.message += f" (after {deleted} of {n} keys were deleted)"
                raise e
        return deleted

    # ---- freeze, pin, mmap -----------------------------------------------------------------------------

    def freeze(self) -> None:
        """Make the map read-only for user space (BPF_MAP_FREEZE); programs can still write unless
        it was created with BPF_F_RDONLY_PROG."""
        attr = T.MapElemAttr(map_fd=int(self.fd))
        try:
            bpf(T.BPF_MAP_FREEZE, attr, self.name)
        except BPFError as exc:
            if exc.errno == _errno.EBUSY:
                raise BPFError(f"freezing map {self.name!r} failed: it is mmap()ed writable or already frozen",
                               _errno.EBUSY, "BPF_MAP_FREEZE") from None
            if exc.errno == _errno.EINVAL and _older_than("5.2"):
                raise NotSupportedError("BPF_MAP_FREEZE", "5.2", _errno.EINVAL) from None
            raise

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the map at path on a bpf filesystem (mounted at /sys/fs/bpf when missing)."""
        self.pinned_path = pin_fd(self.fd, path, f"map {self.name!r}")

    def unpin(self) -> None:
        """Remove the pin made by pin() or the one from_pin() opened (no error if it is gone already)."""
        if self.pinned_path is not None:
            try:
                os.unlink(self.pinned_path)
            except FileNotFoundError:
                pass
            self.pinned_path = None

    def mmap(self) -> memoryview:
        """The values of a BPF_F_MMAPABLE array as one writable memoryview (read-only when frozen or
        BPF_F_RDONLY); each value is value_size rounded up to 8. Owned by the map: close() unmaps it."""
        if self._mmap_views:
            return self._mmap_views[-1]
        if not self.flags & T.BPF_F_MMAPABLE or self.map_type not in (T.BPF_MAP_TYPE_ARRAY,):
            raise ValueError(f"map {self.name!r} is not an array created with BPF_F_MMAPABLE")
        size = _round8(self.value_size) * self.max_entries
        pg = page_size()
        length = (size + pg - 1) // pg * pg
        writable = not self.flags & T.BPF_F_RDONLY
        import mmap as _mmap  # only global data needs it: not imported at start-up

        mm: _mmap.mmap | None = None
        if writable:
            try:
                mm = _mmap.mmap(int(self.fd), length, flags=_mmap.MAP_SHARED,
                                prot=_mmap.PROT_READ | _mmap.PROT_WRITE)
            except PermissionError:
                mm = None  # frozen: only read-only mappings are allowed
        if mm is None:
            mm = _mmap.mmap(int(self.fd), length, flags=_mmap.MAP_SHARED, prot=_mmap.PROT_READ)
        self._mmap = mm
        whole = memoryview(mm)
        view = whole[:size]
        self._mmap_views += [whole, view]
        return view


_BATCH_TYPES = frozenset({T.BPF_MAP_TYPE_HASH, T.BPF_MAP_TYPE_PERCPU_HASH, T.BPF_MAP_TYPE_LRU_HASH,
                          T.BPF_MAP_TYPE_LRU_PERCPU_HASH, T.BPF_MAP_TYPE_ARRAY, T.BPF_MAP_TYPE_PERCPU_ARRAY})


def _pairs(keys: list[Any], values: list[Any]) -> list[tuple[Any, Any]]:
    """list(zip(keys, values)) without the cyclic GC scanning the growing list on the way: a million
    tuples otherwise trigger collections that cost a fifth of the work. zip of two lists is one C call
    that holds the GIL, so no other thread can observe the collector being off."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        return list(zip(keys, values))  # noqa: B905 - equal lengths by construction
    finally:
        if enabled:
            gc.enable()


def _fixup_spec(spec: MapSpec) -> MapSpec:
    """Fill in what each map type implies, as libbpf does (sizes of fd maps, CPUs of perf arrays, ...)."""
    s = spec.copy()
    t = s.type
    if t in FD_VALUE_TYPES:
        if t != T.BPF_MAP_TYPE_HASH_OF_MAPS and not s.key_size:
            s.key_size = 4
        if not s.value_size:
            s.value_size = 4
    if t == T.BPF_MAP_TYPE_PERF_EVENT_ARRAY and not s.max_entries:
        s.max_entries = possible_cpus()
    if t in (T.BPF_MAP_TYPE_RINGBUF, T.BPF_MAP_TYPE_USER_RINGBUF) and s.max_entries:
        pg = page_size()
        size = max(s.max_entries, pg)
        size = 1 << (size - 1).bit_length()  # power of two, and so a multiple of the page size
        s.max_entries = size
    if t in STORAGE_TYPES or t == T.BPF_MAP_TYPE_LPM_TRIE:
        s.flags |= T.BPF_F_NO_PREALLOC
    return s


def _create_error(spec: MapSpec, err: int, with_btf: bool) -> BPFError:
    tname = _type_name(spec.type)
    from pybpf.features.versions import first_kernel  # error messages only

    first = first_kernel("map_type", spec.type)
    if err in (_errno.EINVAL, ENOTSUPP, _errno.EOPNOTSUPP) and first and _older_than(first):
        return NotSupportedError(f"{tname} maps", first, err)
    what = (f"creating map {spec.name!r} ({tname}, key_size={spec.key_size}, value_size={spec.value_size}, "
            f"max_entries={spec.max_entries}, flags={spec.flags:#x})")
    hint = ""
    if err == _errno.EINVAL:
        hint = "the kernel rejected these parameters"
        rule = _CREATE_RULES.get(int(spec.type))
        if rule:
            hint += f"; {tname} maps: {rule}"
        elif not first:
            hint += "; this map type may not exist in this kernel"
        if with_btf:
            hint += "; the BTF key/value types may not match key_size/value_size"
    elif err == _errno.E2BIG:
        hint = "key_size, value_size or max_entries is larger than the kernel allows for this map type"
    elif err == _errno.ENOMEM:
        hint = "not enough memory for max_entries * value_size (BPF memory is charged to the cgroup)"
    elif err == _errno.EPERM:
        hint = "run as root (CAP_BPF), or this map type needs CAP_SYS_ADMIN / CAP_NET_ADMIN"
    elif err in (ENOTSUPP, _errno.EOPNOTSUPP):
        return NotSupportedError(f"{tname} maps with these flags", "", err, what)
    e = BPFError(what + " failed", err, "BPF_MAP_CREATE")
    if hint:
        name = _errno.errorcode.get(err, str(err))
        e.message = f"{what} failed: {name} ({os.strerror(err)}) - {hint}"
    return e
