"""BTF value codec: bytes <-> Python values for any BTF type.

`codec_for(t)` returns an `(encode, decode)` pair compiled once per (spec, type id).

Decoding is generated code: every scalar reachable in a type without going through a union is flattened into one
`struct.Struct`, so a flat struct decodes with a single `unpack` plus one tuple construction.  Structs and unions decode
to a generated `namedtuple` subclass per BTF composite (attribute access, `asdict()`, repr, equality), enums to an
`IntEnum` per BTF enum (equal to the int; unknown values stay plain ints), `char[N]` to `str` up to the NUL, other
arrays to lists, pointers to ints, bitfields through int masks.  Encoding accepts the decoded object, a dict, a tuple,
or (for char arrays) str/bytes.

`record_layout(t)` is for event readers decoding many records at once: a struct format plus a class such that
`tuple.__new__(cls, values)` is the decoded record, so `struct.iter_unpack` over a run of records decodes it with no
Python code per record.  For structs with nested structs, arrays, enums, strings or bitfields the class is a lazy
subclass of the struct class: it keeps the flat values and decodes those members on access.

`numpy_dtype(t)` gives a structured numpy dtype with BTF offsets, for batch decoding of records (numpy is imported
only there).
"""

from __future__ import annotations

import collections
import enum
import functools
import keyword
import re
import struct
from collections.abc import Callable
from itertools import repeat
from typing import Any, NamedTuple

from pybpf.btf.types import (
    Array,
    Composite,
    Datasec,
    Enum,
    Float,
    Int,
    IntEncoding,
    Pointer,
    Type,
    Union,
    Var,
    sizeof,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["RecordLayout", "codec_for", "decoder_at", "decoder_for", "encoder_for", "enum_class", "flat_layout",
           "numpy_dtype", "record_layout", "struct_class"]

Encoder = Callable[[Any], bytes]
Decoder = Callable[[Any], Any]

_CACHE: dict[tuple[int, int], tuple[Encoder, Decoder]] = {}
_AT: dict[tuple[int, int], Callable[[Any, int], Any]] = {}
_FLAT: dict[tuple[int, int], tuple[str, Callable[[tuple[Any, ...]], Any]]] = {}
_CLASSES: dict[tuple[int, int], type[Any]] = {}
_ENUMS: dict[tuple[int, int], type[enum.IntEnum] | None] = {}
_INT_FMT = {(1, False): "B", (1, True): "b", (2, False): "H", (2, True): "h", (4, False): "I", (4, True): "i",
            (8, False): "Q", (8, True): "q"}
_FLOAT_FMT = {2: "e", 4: "f", 8: "d"}
# Arrays of non-scalar elements longer than this decode through a per-element sub-decoder instead of inline code.
_INLINE_ARRAY_LIMIT = 16


_KEEP: dict[int, object] = {}


def _key(t: Type) -> tuple[int, int]:
    # Types without a spec (built by hand) are keyed by identity; specs are kept alive so ids are never reused.
    owner: object = t.spec if t.spec is not None else t
    _KEEP.setdefault(id(owner), owner)
    return (id(owner), t.id)


def _is_char(t: Type) -> bool:
    s = t.strip()
    return isinstance(s, Int) and s.size == 1 and (bool(s.encoding & IntEncoding.CHAR) or s.name == "char")


def _cstr(raw: bytes) -> str:
    return raw.split(b"\0", 1)[0].decode("utf-8", "replace")


def _field_names(t: Composite) -> list[str]:
    names = []
    seen: set[str] = set()
    for i, m in enumerate(t.members):
        name = m.name if m.name and m.name.isidentifier() and not m.name.startswith("_") else f"anon{i}"
        if keyword.iskeyword(name) or name in seen or name.startswith("_"):
            name = f"{name}_"
        while name in seen:
            name += "_"
        seen.add(name)
        names.append(name)
    return names


def _asdict(obj: Any) -> dict[str, Any]:
    return {k: _plain(v) for k, v in zip(obj._fields, obj, strict=True)}


def _plain(v: Any) -> Any:
    if hasattr(v, "asdict"):
        return v.asdict()
    if isinstance(v, list):
        return [_plain(x) for x in v]
    return v


def struct_class(t: Composite) -> type[Any]:
    """The generated class (a namedtuple subclass) for a BTF struct or union."""
    k = _key(t)
    cls = _CLASSES.get(k)
    if cls is None:
        label = t.name or f"anon_{t.kind.name.lower()}_{t.id}"
        base = collections.namedtuple(label, _field_names(t))  # type: ignore[misc]
        cls = type(label, (base,), {"__slots__": (), "asdict": _asdict, "btf_type": t,
                                     "__doc__": f"{t.kind.name.lower()} {label} ({t.size} bytes), from BTF"})
        _CLASSES[k] = cls
    return cls


def enum_class(t: Enum) -> Any:
    """The IntEnum generated for a BTF enum (None when its names cannot form one)."""
    k = _key(t)
    if k not in _ENUMS:
        members = [(v.name, v.value) for v in t.values if v.name.isidentifier() and not v.name.startswith("_")]
        made: type[enum.IntEnum] | None = None
        if members:
            try:
                made = enum.IntEnum(t.name or f"anon_enum_{t.id}", members)  # type: ignore[misc,no-redef,unused-ignore]
            except (ValueError, TypeError):
                made = None
        _ENUMS[k] = made
    return _ENUMS[k]


# ---- decoding: code generation ----------------------------------------------------------------------------------

class _Gen:
    """Collects struct format items (offset ascending) and the names the generated code refers to."""

    def __init__(self) -> None:
        self.items: list[tuple[int, str, int]] = []  # (offset, fmt, size)
        self.ns: dict[str, Any] = {"_new": tuple.__new__, "_cstr": _cstr, "_ib": int.from_bytes}
        self.tmp = 0
        self.nvalues = 0  # values the items unpack to: the index of the next slot's first value

    def slot(self, offset: int, fmt: str, size: int) -> int:
        idx = self.nvalues
        self.nvalues += _fmt_values(fmt)
        self.items.append((offset, fmt, size))
        return idx

    def name(self, prefix: str, value: Any) -> str:
        self.tmp += 1
        n = f"_{prefix}{self.tmp}"
        self.ns[n] = value
        return n


def _fmt_values(fmt: str) -> int:
    if fmt.endswith("s"):
        return 1
    return int(fmt[:-1]) if len(fmt) > 1 else 1


def _blob(g: _Gen, t: Type, offset: int, size: int) -> str:
    """A field decoded by a separately compiled decoder from its raw bytes (unions, long arrays)."""
    idx = g.slot(offset, f"{size}s", size)
    return f"{g.name('d', decoder_for(t))}(v[{idx}])"


def _expr(g: _Gen, t: Type, offset: int) -> str:
    s = t.strip()
    if isinstance(s, Int):
        if s.encoding & IntEncoding.BOOL and s.size == 1:
            return f"v[{g.slot(offset, '?', 1)}]"
        fmt = _INT_FMT.get((s.size, s.signed))
        if fmt is None:  # __int128 and odd sizes
            idx = g.slot(offset, f"{s.size}s", s.size)
            return f"_ib(v[{idx}], 'little', signed={s.signed})"
        return f"v[{g.slot(offset, fmt, s.size)}]"
    if isinstance(s, Pointer):
        return f"v[{g.slot(offset, 'Q', 8)}]"
    if isinstance(s, Float):
        fmt = _FLOAT_FMT.get(s.size)
        if fmt is None:  # long double: keep the bytes
            return f"v[{g.slot(offset, f'{s.size}s', s.size)}]"
        return f"v[{g.slot(offset, fmt, s.size)}]"
    if isinstance(s, Enum):
        fmt = _INT_FMT.get((s.size, s.signed)) or _INT_FMT[(s.size, False)]
        idx = g.slot(offset, fmt, s.size)
        cls = enum_class(s)
        if cls is None:
            return f"v[{idx}]"
        table = {int(m): m for m in cls}
        return f"{g.name('e', table.get)}(v[{idx}], v[{idx}])"
    if isinstance(s, Array):
        n = s.nelems
        esz = sizeof(s.elem) if n else 0
        if _is_char(s.elem):
            return f"_cstr(v[{g.slot(offset, f'{n}s', n)}])"
        if n == 0:
            return "[]"
        es = s.elem.strip()
        scalar = None
        if isinstance(es, Int) and not es.encoding & IntEncoding.BOOL:
            scalar = _INT_FMT.get((es.size, es.signed))
        elif isinstance(es, Pointer):
            scalar = "Q"
        elif isinstance(es, Float):
            scalar = _FLOAT_FMT.get(es.size)
        if scalar is not None:
            idx = g.slot(offset, f"{n}{scalar}", n * esz)
            return f"list(v[{idx}:{idx + n}])"
        if n > _INLINE_ARRAY_LIMIT or isinstance(es, Union):
            elem_at = decoder_at(s.elem)
            idx = g.slot(offset, f"{n * esz}s", n * esz)
            fn = g.name("a", lambda raw, n=n, esz=esz, at=elem_at: [at(raw, i * esz) for i in range(n)])
            return f"{fn}(v[{idx}])"
        return "[" + ", ".join(_expr(g, s.elem, offset + i * esz) for i in range(n)) + "]"
    if isinstance(s, Union):
        return _blob(g, s, offset, s.size)
    if isinstance(s, (Composite, Datasec)):
        return _composite_expr(g, s, offset)
    if isinstance(s, Var):
        return _expr(g, s.type, offset)
    size = sizeof(s)
    return f"v[{g.slot(offset, f'{size}s', size)}]"


def _composite_expr(g: _Gen, s: Composite | Datasec, offset: int) -> str:
    if isinstance(s, Datasec):
        # A data section decodes to a dict of its variables.
        parts = []
        for vs in sorted(s.vars, key=lambda v: v.offset):
            var = s.spec.type(vs.type_id) if s.spec is not None else None
            if var is None:
                continue
            parts.append(f"{var.name!r}: {_expr(g, var, offset + vs.offset)}")
        return "{" + ", ".join(parts) + "}"
    args = _member_exprs(g, s, offset)
    return f"_new({g.name('C', struct_class(s))}, ({', '.join(args)}{',' if len(args) == 1 else ''}))"


def _member_exprs(g: _Gen, s: Composite, offset: int, share_bitfields: bool = True) -> list[str]:
    """One expression per member.  share_bitfields: a run of bitfields reads its storage once (a walrus temp),
    so the expressions only work together, in order; False keeps each expression standalone."""
    args: list[str] = []
    members = s.members
    i = 0
    while i < len(members):
        m = members[i]
        if m.bitfield_size or (m.bit_offset % 8):
            # A run of bitfields shares storage: read the covering bytes once, mask each field out of it.
            j = i
            lo = m.bit_offset // 8
            hi = lo
            while j < len(members) and (members[j].bitfield_size or members[j].bit_offset % 8):
                mj = members[j]
                width = mj.bitfield_size or sizeof(mj.type) * 8
                hi = max(hi, (mj.bit_offset + width + 7) // 8)
                j += 1
            nbytes = hi - lo
            fmt = _INT_FMT.get((nbytes, False))
            idx = g.slot(offset + lo, fmt or f"{nbytes}s", nbytes)
            tmp = g.name("bf", None)
            src = f"v[{idx}]" if fmt else f"_ib(v[{idx}], 'little')"
            first = True
            for mk in members[i:j]:
                width = mk.bitfield_size or sizeof(mk.type) * 8
                shift = mk.bit_offset - lo * 8
                mask = (1 << width) - 1
                base = src if not share_bitfields else f"({tmp} := {src})" if first else tmp
                first = False
                e = f"(({base} >> {shift}) & {mask})"
                mt = mk.type.strip()
                if isinstance(mt, (Int, Enum)) and mt.signed:
                    e = f"({e} - (({e} >> {width - 1}) << {width}))"
                if isinstance(mt, Enum):
                    cls_e = enum_class(mt)
                    if cls_e is not None:
                        table = {int(x): x for x in cls_e}
                        e = f"{g.name('e', table.get)}({e}, {e})"
                args.append(e)
            i = j
            continue
        args.append(_expr(g, m.type, offset + m.byte_offset))
        i += 1
    return args


def _union_decoder(t: Union) -> Decoder:
    # Every member reads the same bytes: one in-place decoder per member.
    cls = struct_class(t)
    parts: list[Callable[[Any, int], Any]] = []
    for m in t.members:
        if m.bitfield_size:
            shift, mask = m.bit_offset, (1 << m.bitfield_size) - 1
            parts.append(lambda data, off, shift=shift, mask=mask:  # type: ignore[misc]
                         (int.from_bytes(data[off:off + t.size], "little") >> shift) & mask)
        else:
            parts.append(decoder_at(m.type))
    new = tuple.__new__

    def decode_at(data: Any, offset: int) -> Any:
        return new(cls, [p(data, offset) for p in parts])

    _AT[_key(t)] = decode_at
    return lambda data: decode_at(data, 0)


def _compile_decoder(t: Type) -> Decoder:
    s = t.strip()
    if isinstance(s, Union):
        union_dec = _union_decoder(s)
        _AT[_key(t)] = _AT[_key(s)]  # t may be a typedef of the union
        return union_dec
    size = sizeof(t)
    g = _Gen()
    expr = _expr(g, t, 0)
    if not g.items:
        const = eval(expr, dict(g.ns, v=()))  # noqa: S307 - generated from BTF (empty structs)
        _AT[_key(t)] = lambda data, offset: const
        return lambda data: const
    st = struct.Struct(_struct_format(g.items, t))
    g.ns["_unpack"] = st.unpack_from
    # `_new(C, v)` with the whole unpacked tuple is the fastest path: a flat struct of plain fields.
    flat = expr.startswith("_new(") and all(f"v[{i}]" in expr for i in range(len(g.items)))
    src = (f"def decode(data):\n    v = _unpack(data)\n    return {expr}\n"
           f"def decode_at(data, offset):\n    v = _unpack(data, offset)\n    return {expr}\n")
    if flat and _is_identity_struct(expr, g.nvalues):
        cls_name = expr[len("_new("):expr.index(",")]
        src = (f"def decode(data):\n    return _new({cls_name}, _unpack(data))\n"
               f"def decode_at(data, offset):\n    return _new({cls_name}, _unpack(data, offset))\n")
    del size
    src += f"def from_values(v):\n    return {expr}\n"
    exec(compile(src, f"<btf decoder {t!r}>", "exec"), g.ns)  # noqa: S102 - generated from BTF, no user input
    _FLAT[_key(t)] = (st.format, g.ns["from_values"])
    dec: Decoder = g.ns["decode"]
    _AT[_key(t)] = g.ns["decode_at"]
    return dec


def _is_identity_struct(expr: str, n: int) -> bool:
    # True when the expression is exactly `_new(C, (v[0], v[1], ..., v[n-1]))` for the struct's n values.
    inner = ", ".join(f"v[{i}]" for i in range(n)) + ("," if n == 1 else "")
    return expr.endswith(f", ({inner}))") and expr.count("(") == 2



# ---- records: flat value tuples, decoded lazily -----------------------------------------------------------------

class RecordLayout(NamedTuple):
    """How to decode many records of one type at C speed (event readers).

    `format`: a struct format (little-endian, from offset 0, possibly shorter than the type) whose unpacked values
    `make(values)` turns into the decoded record.  When `cls` is set, `make` is `tuple.__new__(cls, values)`:
    readers may call `map(tuple.__new__, repeat(cls), struct.iter_unpack(...))`, which runs no Python code per
    record."""

    format: str
    cls: type[Any] | None
    make: Callable[[tuple[Any, ...]], Any]

    def run_reader(self, skip: int, stride: int) -> Callable[[Any, int], tuple[Iterator[Any], Iterator[Any]]]:
        """reader(buffer, n) -> (records, raw values) for `n` records laid `stride` bytes apart in `buffer`, each
        after a `skip`-byte header (ring and perf buffer runs): one struct item spans a header, its record and the
        padding up to the next header, so the whole run decodes with one `struct.iter_unpack`. The raw values
        iterator tells a consumer how far a partly consumed run got."""
        body = struct.calcsize(self.format)
        iter_unpack = struct.Struct(f"<{skip}x{self.format[1:]}{stride - skip - body}x").iter_unpack
        cls, make = self.cls, self.make
        if cls is not None:
            new = tuple.__new__

            def reader(buffer: Any, n: int) -> tuple[Iterator[Any], Iterator[Any]]:
                values = iter_unpack(buffer)
                return map(new, repeat(cls, n), values), values
        else:
            def reader(buffer: Any, n: int) -> tuple[Iterator[Any], Iterator[Any]]:
                values = iter_unpack(buffer)
                return map(make, values), values
        return reader


_RECORDS: dict[tuple[int, int], RecordLayout | None] = {}
_ALL = slice(None)
_SLOT = re.compile(r"(?<![\w.])v\[(\d+)(?::(\d+))?\]")



def _tuplegetter(index: int, doc: str) -> Any:
    """A tuple-item descriptor that reads the raw tuple (bypassing a subclass's __getitem__), in C when the
    interpreter has namedtuple's accessor type."""
    if _GETTER is not property:
        return _GETTER(index, doc)
    return property(lambda self: tuple.__getitem__(self, index), doc=doc)


_GETTER: Any = type(collections.namedtuple("_Probe", "x").__dict__["x"])  # CPython: _collections._tuplegetter


class _LazyRecord(tuple):  # type: ignore[type-arg]
    """Base of the record classes whose tuple holds the flat struct values, not the members: members decode on
    access (nested structs, arrays, enums, strings, bitfields).  Everything else (iteration, indexing, len, ==,
    hash, repr, asdict, _replace, pickling) goes through `_value()`, the fully decoded member tuple, so a record
    behaves like the struct class it subclasses."""

    __slots__ = ()

    def _value(self) -> Any:
        raise NotImplementedError

    def __iter__(self) -> Any:
        return iter(self._value())

    def __len__(self) -> int:
        return len(self._value())

    def __getitem__(self, i: Any) -> Any:
        return self._value()[i]

    def __contains__(self, x: object) -> bool:
        return x in self._value()

    def __eq__(self, other: object) -> bool:
        return bool(self._value() == other)

    def __ne__(self, other: object) -> bool:
        return bool(self._value() != other)

    def __lt__(self, other: Any) -> bool:
        return bool(self._value() < other)

    def __le__(self, other: Any) -> bool:
        return bool(self._value() <= other)

    def __gt__(self, other: Any) -> bool:
        return bool(self._value() > other)

    def __ge__(self, other: Any) -> bool:
        return bool(self._value() >= other)

    def __hash__(self) -> int:
        return hash(self._value())

    def __add__(self, other: Any) -> Any:
        return self._value() + other

    def __radd__(self, other: Any) -> Any:
        return other + tuple(self._value())

    def __mul__(self, n: Any) -> Any:
        return self._value() * n

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return repr(self._value())

    def count(self, x: Any) -> int:
        return int(self._value().count(x))

    def index(self, x: Any, *args: Any) -> int:
        return int(self._value().index(x, *args))

    def asdict(self) -> dict[str, Any]:
        return _asdict(self._value())

    def _asdict(self) -> dict[str, Any]:
        return dict(self._value()._asdict())

    def _replace(self, **changes: Any) -> Any:
        return self._value()._replace(**changes)

    def __getnewargs__(self) -> tuple[Any, ...]:
        return tuple(self._value())

    def __reduce_ex__(self, protocol: Any) -> Any:
        return self._value().__reduce_ex__(protocol)

    def __copy__(self) -> Any:
        return self._value()


def _struct_format(items: list[tuple[int, str, int]], what: object) -> str:
    # Items are in ascending offset order by construction; holes become padding.
    fmt = ["<"]
    pos = 0
    for off, f, sz in items:
        if off < pos:  # overlapping storage (should not happen outside unions, which are blobs)
            raise AssertionError(f"overlapping fields in {what!r} at offset {off}")
        if off > pos:
            fmt.append(f"{off - pos}x")
        fmt.append(f)
        pos = off + sz
    return "".join(fmt)


def _lazy_record_class(s: Composite, g: _Gen, exprs: list[str]) -> type[Any]:
    base = struct_class(s)
    names = list(base._fields)
    ns = dict(g.ns, _ti=tuple.__getitem__, _ALL=_ALL, _Base=base)

    def on_self(expr: str) -> str:
        return _SLOT.sub(lambda m: f"_ti(self, {m[1]})" if m[2] is None else f"_ti(self, slice({m[1]}, {m[2]}))",
                         expr)

    attrs: dict[str, Any] = {"__slots__": (), "btf_type": s, "__doc__": base.__doc__,
                             "_make": classmethod(lambda cls, values: base._make(values))}
    src = []
    for i, (name, e) in enumerate(zip(names, exprs, strict=True)):
        m = _SLOT.fullmatch(e)
        if m is not None and m[2] is None:
            attrs[name] = _tuplegetter(int(m[1]), f"{name} (field {i})")
        else:
            src.append(f"def get_{i}(self):\n    return {on_self(e)}\n")
    src.append(f"def _value(self):\n    v = _ti(self, _ALL)\n    return _new(_Base, ({', '.join(exprs)},))\n")
    exec(compile("".join(src), f"<btf record {s!r}>", "exec"), ns)  # noqa: S102 - generated from BTF
    for i, name in enumerate(names):
        if name not in attrs:
            attrs[name] = property(ns[f"get_{i}"], doc=f"{name} (field {i}, decoded on access)")
    attrs["_value"] = ns["_value"]
    cls: type[Any] = type(base.__name__, (_LazyRecord, base), attrs)
    return cls


def record_layout(t: Type) -> RecordLayout | None:
    """The RecordLayout for decoding records of type t in bulk; None when t decodes otherwise (unions, empty
    structs).  Plain structs of scalars decode straight into `struct_class(t)`; other structs into a subclass of it
    that keeps the flat values and decodes members on access (see _LazyRecord)."""
    k = _key(t)
    if k in _RECORDS:
        return _RECORDS[k]
    s = t.strip()
    layout: RecordLayout | None = None
    if isinstance(s, Composite) and not isinstance(s, Union):
        g = _Gen()
        exprs = _member_exprs(g, s, 0, share_bitfields=False)
        if g.items:
            fmt = _struct_format(g.items, t)
            if exprs == [f"v[{i}]" for i in range(g.nvalues)]:
                cls = struct_class(s)
            else:
                cls = _lazy_record_class(s, g, exprs)
            layout = RecordLayout(fmt, cls, functools.partial(tuple.__new__, cls))
    elif not isinstance(s, Union):
        flat = flat_layout(t)
        if flat is not None:
            layout = RecordLayout(flat[0], None, flat[1])
    _RECORDS[k] = layout
    return layout


# ---- encoding: closures packing into a buffer -------------------------------------------------------------------

Packer = Callable[[bytearray, int, Any], None]


def _packer(t: Type) -> Packer:
    s = t.strip()
    if isinstance(s, Var):
        return _packer(s.type)
    if isinstance(s, (Int, Enum)):
        size, signed = s.size, bool(s.signed)
        fmt = _INT_FMT.get((size, signed))
        enum_t = s if isinstance(s, Enum) else None

        def pack_int(buf: bytearray, off: int, value: Any) -> None:
            if isinstance(value, str) and enum_t is not None:
                value = enum_t.value_of(value)
            value = int(value)
            if fmt is not None:
                struct.pack_into("<" + fmt, buf, off, value)
            else:
                buf[off:off + size] = value.to_bytes(size, "little", signed=signed)
        return pack_int
    if isinstance(s, Pointer):
        return lambda buf, off, value: struct.pack_into("<Q", buf, off, int(value or 0))
    if isinstance(s, Float):
        ffmt = _FLOAT_FMT.get(s.size)
        fsize = s.size

        def pack_float(buf: bytearray, off: int, value: Any) -> None:
            if ffmt is None:
                buf[off:off + fsize] = bytes(value)
            else:
                struct.pack_into("<" + ffmt, buf, off, float(value))
        return pack_float
    if isinstance(s, Array):
        n = s.nelems
        esz = sizeof(s.elem) if n else 0
        if _is_char(s.elem) or (isinstance(s.elem.strip(), Int) and esz == 1):
            elem_pack = _packer(s.elem)

            def pack_bytes(buf: bytearray, off: int, value: Any) -> None:
                if isinstance(value, str):
                    value = value.encode()
                if isinstance(value, (bytes, bytearray, memoryview)):
                    raw = bytes(value)[:n]
                    buf[off:off + len(raw)] = raw
                    return
                if len(value) > n:  # a list of ints, as for other arrays
                    raise ValueError(f"array of {n} elements cannot hold {len(value)} values")
                for i, x in enumerate(value):
                    elem_pack(buf, off + i, x)
            return pack_bytes
        ep = _packer(s.elem)

        def pack_array(buf: bytearray, off: int, value: Any) -> None:
            if len(value) > n:
                raise ValueError(f"array of {n} elements cannot hold {len(value)} values")
            for i, x in enumerate(value):
                ep(buf, off + i * esz, x)
        return pack_array
    if isinstance(s, Composite):
        return _composite_packer(s)
    if isinstance(s, Datasec):
        spec = s.spec
        plan = []
        for vs in s.vars:
            var = spec.type(vs.type_id) if spec is not None else None
            if var is not None:
                plan.append((var.name, vs.offset, _packer(var)))

        def pack_sec(buf: bytearray, off: int, value: Any) -> None:
            for name, voff, p in plan:
                if name in value:
                    p(buf, off + voff, value[name])
        return pack_sec
    size = sizeof(s)

    def pack_raw(buf: bytearray, off: int, value: Any) -> None:
        buf[off:off + size] = bytes(value)[:size]
    return pack_raw


def _composite_packer(s: Composite) -> Packer:
    names = _field_names(s)
    by_name = {n: i for i, n in enumerate(names)}
    by_name.update({m.name: i for i, m in enumerate(s.members) if m.name})
    plan: list[tuple[int, int, int, Packer | None, bool]] = []  # (bit_offset, bits, byte_off, packer, signed)
    for m in s.members:
        if m.bitfield_size or m.bit_offset % 8:
            width = m.bitfield_size or sizeof(m.type) * 8
            plan.append((m.bit_offset, width, 0, None, False))
        else:
            plan.append((m.bit_offset, 0, m.byte_offset, _packer(m.type), False))
    is_union = isinstance(s, Union)
    sizes = [m.bitfield_size // 8 if m.bitfield_size else sizeof(m.type) for m in s.members]
    name = s.name or "<anon>"
    size = s.size

    def values(value: Any) -> list[tuple[int, Any]]:
        if isinstance(value, tuple):  # includes the generated classes
            if len(value) > len(plan):
                raise ValueError(f"{name}: {len(value)} values for {len(plan)} members")
            items = list(enumerate(value))
        elif isinstance(value, dict):
            items = []
            for k, v in value.items():
                if k not in by_name:
                    raise KeyError(f"{s.kind.name.lower()} {name} has no member {k!r}")
                items.append((by_name[k], v))
        elif isinstance(value, (bytes, bytearray, memoryview)) and len(value) == size:
            return [(-1, bytes(value))]
        elif isinstance(value, list):
            items = list(enumerate(value))
        else:
            raise TypeError(f"cannot encode {type(value).__name__} as {s.kind.name.lower()} {name}: "
                            "give the decoded object, a dict or a tuple")
        if is_union and len(items) > 1:
            # A decoded union carries every member read from the same bytes: the largest one writes them all back.
            items = [max(items, key=lambda kv: sizes[kv[0]])] if not isinstance(value, dict) else items[:1]
        return items

    def pack_comp(buf: bytearray, off: int, value: Any) -> None:
        for i, v in values(value):
            if i < 0:
                buf[off:off + size] = v
                continue
            bit_off, bits, byte_off, p, _ = plan[i]
            if p is not None:
                p(buf, off + byte_off, v)
                continue
            lo = bit_off // 8
            nbytes = (bit_off + bits + 7) // 8 - lo
            shift = bit_off - lo * 8
            mask = ((1 << bits) - 1) << shift
            cur = int.from_bytes(buf[off + lo:off + lo + nbytes], "little")
            cur = (cur & ~mask) | ((int(v) << shift) & mask)
            buf[off + lo:off + lo + nbytes] = cur.to_bytes(nbytes, "little")
    return pack_comp


def _compile_encoder(t: Type) -> Encoder:
    size = sizeof(t)
    s = t.strip()
    simple = None
    if isinstance(s, (Int, Enum)) and not isinstance(s, Enum) and _INT_FMT.get((s.size, bool(s.signed))):
        simple = struct.Struct("<" + _INT_FMT[(s.size, bool(s.signed))])
    if simple is not None:
        return lambda value: simple.pack(int(value))
    pack = _packer(t)

    def encode(value: Any) -> bytes:
        if isinstance(value, (bytes, bytearray, memoryview)) and len(value) == size and not (
                isinstance(s, Array) and _is_char(s.elem)):
            return bytes(value)
        buf = bytearray(size)
        pack(buf, 0, value)
        return bytes(buf)
    return encode


# ---- public entry points ----------------------------------------------------------------------------------------

def codec_for(t: Type) -> tuple[Encoder, Decoder]:
    """The (encode, decode) pair for a BTF type; compiled once per (spec, type id)."""
    k = _key(t)
    pair = _CACHE.get(k)
    if pair is None:
        pair = (_compile_encoder(t), _compile_decoder(t))
        _CACHE[k] = pair
    return pair


def decoder_for(t: Type) -> Decoder:
    return codec_for(t)[1]


def decoder_at(t: Type) -> Callable[[Any, int], Any]:
    """`decode(buffer, offset)`: decodes in place from any buffer (mmap, memoryview) without slicing it first.
    The buffer must hold at least sizeof(t) bytes from offset."""
    codec_for(t)
    return _AT[_key(t)]


def flat_layout(t: Type) -> tuple[str, Callable[[tuple[Any, ...]], Any]] | None:
    """(struct format, from_values): the decoder is `from_values(struct.unpack(format, data))`, so readers can decode
    many records with one `struct.iter_unpack` call.  None for types decoded otherwise (top-level unions)."""
    codec_for(t)
    return _FLAT.get(_key(t))


def encoder_for(t: Type) -> Encoder:
    return codec_for(t)[0]


def numpy_dtype(t: Type) -> Any:
    """A numpy dtype with BTF layout: structs -> structured dtypes (offsets, itemsize), char[N] -> 'S'N,
    arrays -> subarrays, enums -> their int type, unions and bitfield storage -> raw 'V' bytes."""
    import numpy as np

    def conv(x: Type) -> Any:
        s = x.strip()
        if isinstance(s, Var):
            return conv(s.type)
        if isinstance(s, Int) and s.encoding & IntEncoding.BOOL and s.size == 1:
            return np.dtype("?")
        if isinstance(s, (Int, Enum)):
            if s.size in (1, 2, 4, 8):
                return np.dtype(("<i" if s.signed else "<u") + str(s.size))
            return np.dtype(f"V{s.size}")
        if isinstance(s, Pointer):
            return np.dtype("<u8")
        if isinstance(s, Float):
            return np.dtype(f"<f{s.size}") if s.size in (2, 4, 8) else np.dtype(f"V{s.size}")
        if isinstance(s, Array):
            if _is_char(s.elem):
                return np.dtype(f"S{s.nelems}")
            return np.dtype((conv(s.elem), (s.nelems,)))
        if isinstance(s, Union):
            return np.dtype(f"V{s.size}")
        if isinstance(s, Composite):
            names, formats, offsets = [], [], []
            for name, m in zip(_field_names(s), s.members, strict=True):
                if m.bitfield_size or m.bit_offset % 8:
                    continue  # numpy has no bitfields; decode those with codec_for
                names.append(name)
                formats.append(conv(m.type))
                offsets.append(m.byte_offset)
            return np.dtype({"names": names, "formats": formats, "offsets": offsets, "itemsize": s.size})
        return np.dtype(f"V{sizeof(s)}")

    return conv(t)
