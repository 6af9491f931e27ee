"""C declarations from BTF: `vmlinux.h` and friends.

The output follows `bpftool btf dump ... format c` (libbpf's btf_dump) closely, so the two can be diffed:
the same emission order, forward declarations, `___N` suffixes for duplicate names and explicit padding
(`long: 64;`) where the kernel's layout has holes natural C layout would not produce. It differs where
bpftool's output would not reproduce the BTF layout: one-byte and eight-byte enums get `mode(byte)` /
`mode(word)`, and every struct and union is checked against a model of clang's record layout; when the
usual emission would not give BTF's offsets and size, the record is written packed with exact padding
(and `aligned(N)` to keep its size), or a union gets `aligned(N)` to reach its size.

Ordering: a struct/union/enum/typedef is defined before anything uses it by value; types only reached
through pointers get a forward declaration (`struct x;`), which is also how cycles are broken.

Known limit (shared with bpftool): the kernel's `__builtin_va_list` typedef is not redefined (it is a
compiler built-in), so a record holding a `va_list` by value (vmlinux: `struct warn_args`) takes the BPF
target's 8-byte va_list instead of x86-64's 24 bytes. CO-RE relocates its fields all the same.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

from pybpf.btf.spec import Spec, kernel_spec
from pybpf.btf.types import (
    Array,
    Composite,
    Enum,
    FuncProto,
    Kind,
    Member,
    Type,
    Typedef,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

__all__ = ["CDumper", "dump_spec", "vmlinux_header"]

_PTR_SIZE = 8
_MAX_INDENT = 13

_K_VOID = 0
_K_INT = int(Kind.INT)
_K_PTR = int(Kind.PTR)
_K_ARRAY = int(Kind.ARRAY)
_K_STRUCT = int(Kind.STRUCT)
_K_UNION = int(Kind.UNION)
_K_ENUM = int(Kind.ENUM)
_K_FWD = int(Kind.FWD)
_K_TYPEDEF = int(Kind.TYPEDEF)
_K_VOLATILE = int(Kind.VOLATILE)
_K_CONST = int(Kind.CONST)
_K_RESTRICT = int(Kind.RESTRICT)
_K_FUNC = int(Kind.FUNC)
_K_FUNC_PROTO = int(Kind.FUNC_PROTO)
_K_VAR = int(Kind.VAR)
_K_DATASEC = int(Kind.DATASEC)
_K_FLOAT = int(Kind.FLOAT)
_K_DECL_TAG = int(Kind.DECL_TAG)
_K_TYPE_TAG = int(Kind.TYPE_TAG)
_K_ENUM64 = int(Kind.ENUM64)

_MODS = (_K_VOLATILE, _K_CONST, _K_RESTRICT, _K_TYPE_TAG)
_MOD_WORDS = {_K_VOLATILE: "volatile ", _K_CONST: "const ", _K_RESTRICT: "restrict "}
_NOT_DEFINITIONS = (_K_FUNC, _K_VAR, _K_DATASEC, _K_DECL_TAG)

# order states
_UNORDERED, _ORDERING, _ORDERED = 0, 1, 2
# emit states
_NOT_EMITTED, _EMITTING, _EMITTED = 0, 1, 2

# Padding types, widest first: (name, bits).
_PADS = (("long", 64), ("int", 32), ("short", 16), ("char", 8))


def _indent(lvl: int) -> str:
    return "\t" * min(lvl, _MAX_INDENT)


def _roundup(x: int, to: int) -> int:
    return (x + to - 1) // to * to


@dataclass(slots=True)
class _Item:
    """One line of a record body as clang will lay it out: a member or an anonymous padding bit-field."""

    member: Member | None  # None: padding
    align: int  # bytes, the declared type's alignment
    bits: int  # size in bits of the declared type (non-bit-fields)
    width: int | None  # bit-field width, None for ordinary members
    pad_type: str = ""


@dataclass(slots=True)
class _Layout:
    packed: bool
    aligned: int  # 0: no aligned(N) attribute
    align: int  # the record's alignment as emitted
    items: list[_Item]


class CDumper:
    """Writes C declarations for the types of one spec (and its base)."""

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        # kind-dispatched code reads kind-specific attributes: Any spares a cast at each use
        self._get: Callable[[int], Any] = spec.type
        n = spec.next_id
        self._n = n
        self._order = bytearray(n)
        self._emit = bytearray(n)
        self._fwd_emitted = bytearray(n)
        self._referenced: bytearray | None = None
        self._names: dict[int, str] = {}
        self._type_dups: dict[str, int] = {}
        self._ident_dups: dict[str, int] = {}
        self._layouts: dict[int, _Layout] = {}
        self._queue: list[int] = []
        self._out: list[str] = []
        self.fallbacks: list[str] = []  # records written packed/aligned to keep BTF's layout
        self._kinds = self._kind_table()
        # void needs no definition
        self._order[0] = _ORDERED
        self._emit[0] = _EMITTED

    # ---- public -----------------------------------------------------------------------------------

    def dump_type(self, type_id: int) -> None:
        """Emit a type and, before it, everything it needs."""
        if self._referenced is None:
            self._referenced = self._mark_referenced()
        self._queue = []
        self._order_type(type_id, False)
        for queued in self._queue:
            self._emit_type(queued, 0)

    def dump_all(self) -> None:
        kinds = self._kinds
        for type_id in range(1, self._n):
            if kinds[type_id] in _NOT_DEFINITIONS:
                continue
            self.dump_type(type_id)

    def text(self) -> str:
        """The declarations emitted so far."""
        return "".join(self._out)

    def header(self, guard: str = "__VMLINUX_H__") -> str:
        """The declarations wrapped as bpftool wraps them: include guard and preserve_access_index."""
        return _header_start(guard) + self.text() + _header_end(guard)

    def name_of(self, type_id: int) -> str | None:
        """The name a type was emitted under (`name___2` for a duplicate); None before it is emitted."""
        return self._names.get(type_id)

    # ---- set-up -------------------------------------------------------------------------------------

    def _kind_table(self) -> bytearray:
        kinds = bytearray(self._n)
        spec: Spec | None = self.spec
        while spec is not None:
            raw = spec.raw_kind_and_name
            for type_id in range(spec.first_id, spec.next_id):
                kinds[type_id] = raw(type_id)[0]
            spec = spec.base
        return kinds

    def _mark_referenced(self) -> bytearray:
        """Which ids other types refer to: an anonymous enum nobody uses is emitted on its own."""
        ref = bytearray(self._n)
        kinds = self._kinds
        get = self._get
        for type_id in range(1, self._n):
            kind = kinds[type_id]
            if kind in (_K_INT, _K_ENUM, _K_ENUM64, _K_FWD, _K_FLOAT, _K_FUNC):
                continue  # FUNCs only refer to FUNC_PROTOs, which are never emitted on their own
            t = get(type_id)
            if isinstance(t, Composite):
                for m in t.members:
                    ref[m.type_id] = 1
            elif isinstance(t, FuncProto):
                for p in t.params:  # (the return type does not count, as in libbpf)
                    ref[p.type_id] = 1
            elif isinstance(t, Array):
                ref[t.elem_id] = 1
                ref[t.index_id] = 1
            elif kind == _K_DATASEC:
                for v in t.vars:
                    ref[v.type_id] = 1
            else:
                ref[t.type_id] = 1
        return ref

    # ---- names ----------------------------------------------------------------------------------------

    def _resolve_name(self, type_id: int, dups: dict[str, int]) -> str:
        name = self._names.get(type_id)
        if name is not None:
            return name
        t = self.spec.type(type_id)
        name = t.name
        if name and not (t.kind == Kind.FWD or (isinstance(t, Enum) and not t.values)):
            count = dups.get(name, 0) + 1
            dups[name] = count
            if count > 1:
                name = f"{name}___{count}"
        self._names[type_id] = name
        return name

    def _type_name(self, type_id: int) -> str:
        return self._resolve_name(type_id, self._type_dups)

    def _ident_name(self, type_id: int) -> str:
        return self._resolve_name(type_id, self._ident_dups)

    # ---- ordering -------------------------------------------------------------------------------------

    def _order_type(self, type_id: int, through_ptr: bool) -> bool:
        """Queue the definitions `type_id` needs, dependencies first. The result tells a typedef whether
        its target is a 'strong' (by value) use; its quirks are libbpf's, kept so the order matches."""
        order = self._order
        state = order[type_id]
        if state == _ORDERED:
            return True
        kind = self._kinds[type_id]
        if state == _ORDERING:
            if kind in (_K_STRUCT, _K_UNION) and through_ptr and self.spec.type(type_id).name:
                return False  # a loop broken by a forward declaration
            raise ValueError(f"unsatisfiable type cycle through BTF type [{type_id}]")
        if kind in (_K_INT, _K_FLOAT):
            order[type_id] = _ORDERED
            return False
        t = self._get(type_id)
        if kind == _K_PTR:
            strong = self._order_type(t.type_id, True)
            order[type_id] = _ORDERED
            return strong
        if kind == _K_ARRAY:
            return self._order_type(t.elem_id, False)
        if kind in (_K_STRUCT, _K_UNION):
            # only a by-value use (or an anonymous record, always defined inline) makes a strong link
            if through_ptr and t.name:
                return False
            order[type_id] = _ORDERING
            for m in t.members:
                self._order_type(m.type_id, False)
            if t.name:
                self._queue.append(type_id)
            order[type_id] = _ORDERED
            return True
        if kind in (_K_ENUM, _K_ENUM64, _K_FWD):
            assert self._referenced is not None
            if t.name or not self._referenced[type_id]:
                self._queue.append(type_id)
            order[type_id] = _ORDERED
            return True
        if kind == _K_TYPEDEF:
            strong = self._order_type(t.type_id, through_ptr)
            if through_ptr and not strong:
                return False
            self._queue.append(type_id)
            order[type_id] = _ORDERED
            return True
        if kind in _MODS:
            return self._order_type(t.type_id, through_ptr)
        if kind == _K_FUNC_PROTO:
            assert isinstance(t, FuncProto)
            strong = self._order_type(t.return_id, through_ptr)
            for p in t.params:
                if self._order_type(p.type_id, through_ptr):
                    strong = True
            return strong
        order[type_id] = _ORDERED  # FUNC, VAR, DATASEC, DECL_TAG: nothing to define
        return False

    # ---- emission ---------------------------------------------------------------------------------------

    def _emit_type(self, type_id: int, cont_id: int) -> None:
        """Emit what `type_id` needs at this point: its definition at top level, else forward decls."""
        emit = self._emit
        state = emit[type_id]
        if state == _EMITTED:
            return
        kind = self._kinds[type_id]
        out = self._out.append
        if state == _EMITTING:
            if self._fwd_emitted[type_id]:
                return
            if kind in (_K_STRUCT, _K_UNION):
                if type_id == cont_id:
                    return  # a record referring to itself needs no forward declaration
                t = self.spec.type(type_id)
                if not t.name:
                    return  # anonymous loop: cannot happen in valid BTF
                out(self._record_keyword(t) + " " + self._type_name(type_id) + ";\n\n")
                self._fwd_emitted[type_id] = 1
            elif kind == _K_TYPEDEF:
                # the typedef is being defined further up: a pointer use can have it right now
                if not self._blacklisted(type_id):
                    self._emit_typedef_def(type_id, 0)
                    out(";\n\n")
                self._fwd_emitted[type_id] = 1
            return
        if kind == _K_VOID:
            return
        if kind == _K_INT:
            emit[type_id] = _EMITTED
            return
        if kind in (_K_ENUM, _K_ENUM64):
            if cont_id == 0:
                self._emit_enum_def(type_id, 0)
                out(";\n\n")
            emit[type_id] = _EMITTED
            return
        t = self._get(type_id)
        if kind == _K_PTR or kind in _MODS:
            self._emit_type(t.type_id, cont_id)
            return
        if kind == _K_ARRAY:
            self._emit_type(t.elem_id, cont_id)
            return
        if kind == _K_FWD:
            out(("union " if t.is_union else "struct ") + self._type_name(type_id) + ";\n\n")
            emit[type_id] = _EMITTED
            return
        if kind == _K_TYPEDEF:
            emit[type_id] = _EMITTING
            self._emit_type(t.type_id, type_id)
            if not self._fwd_emitted[type_id] and not self._blacklisted(type_id):
                self._emit_typedef_def(type_id, 0)
                out(";\n\n")
            emit[type_id] = _EMITTED
            return
        if kind in (_K_STRUCT, _K_UNION):
            assert isinstance(t, Composite)
            emit[type_id] = _EMITTING
            top_level = cont_id == 0
            if top_level or not t.name:
                # the body will be written out: whatever members point at needs declaring first
                new_cont = type_id if t.name else cont_id
                for m in t.members:
                    self._emit_type(m.type_id, new_cont)
            elif not self._fwd_emitted[type_id] and type_id != cont_id:
                out(self._record_keyword(t) + " " + self._type_name(type_id) + ";\n\n")
                self._fwd_emitted[type_id] = 1
            if top_level:
                self._emit_struct_def(type_id, t, 0)
                out(";\n\n")
                emit[type_id] = _EMITTED
            else:
                emit[type_id] = _NOT_EMITTED
            return
        if kind == _K_FUNC_PROTO:
            assert isinstance(t, FuncProto)
            self._emit_type(t.return_id, cont_id)
            for p in t.params:
                self._emit_type(p.type_id, cont_id)

    def _blacklisted(self, type_id: int) -> bool:
        # a compiler built-in: redefining it breaks the build
        return self.spec.type(type_id).name == "__builtin_va_list"

    @staticmethod
    def _record_keyword(t: Type) -> str:
        return "struct" if t.kind == Kind.STRUCT else "union"

    def _emit_typedef_def(self, type_id: int, lvl: int) -> None:
        t = self.spec.type(type_id)
        assert isinstance(t, Typedef)
        name = self._ident_name(type_id)
        if t.type_id == 0 and name == "__gnuc_va_list":
            # old GCCs emit this typedef pointing at void
            self._out.append("typedef __builtin_va_list __gnuc_va_list")
            return
        self._out.append("typedef ")
        self._emit_type_decl(t.type_id, name, lvl)

    def _emit_enum_def(self, type_id: int, lvl: int) -> None:
        t = self.spec.type(type_id)
        assert isinstance(t, Enum)
        out = self._out.append
        name = self._type_name(type_id)
        out("enum " + name if name else "enum")
        if not t.values:
            return
        out(" {")
        pfx = "\n" + _indent(lvl + 1)
        dups = self._ident_dups
        suffix = ("LL" if t.signed else "ULL") if t.is64 else ""
        for v in t.values:
            # enumerators share the ordinary identifier namespace with typedefs
            count = dups.get(v.name, 0) + 1
            dups[v.name] = count
            vname = f"{v.name}___{count}" if count > 1 else v.name
            out(f"{pfx}{vname} = {v.value}{suffix},")
        out("\n" + _indent(lvl) + "}")
        if t.size == 1:
            out(" __attribute__((mode(byte)))")
        elif t.size == 8 and (not t.is64 or all(-(1 << 31) <= v.value < (1 << 32) for v in t.values)):
            # an enum only grows to 8 bytes by itself when a value needs it
            out(" __attribute__((mode(word)))")

    # ---- declarations -------------------------------------------------------------------------------------

    def _emit_type_decl(self, type_id: int, fname: str, lvl: int) -> None:
        """`<type> <fname>` in C declarator syntax (pointers, arrays, function pointers, qualifiers)."""
        stack = []
        kinds = self._kinds
        get = self._get
        while True:
            stack.append(type_id)
            kind = kinds[type_id]
            if kind == _K_PTR or kind in _MODS:
                type_id = get(type_id).type_id
            elif kind == _K_ARRAY:
                type_id = get(type_id).elem_id
            elif kind == _K_FUNC_PROTO:
                type_id = get(type_id).return_id
            else:
                break
        self._emit_type_chain(stack, fname, lvl)

    def _emit_mods(self, stack: list[int]) -> None:
        kinds = self._kinds
        out = self._out.append
        while stack:
            word = _MOD_WORDS.get(kinds[stack[-1]])
            if word is None:
                return
            out(word)
            stack.pop()

    def _drop_mods(self, stack: list[int]) -> None:
        kinds = self._kinds
        while stack and kinds[stack[-1]] in _MODS:
            stack.pop()

    def _emit_type_chain(self, stack: list[int], fname: str, lvl: int) -> None:
        out = self._out.append
        kinds = self._kinds
        get = self._get
        # whether the last thing written was '*', so that we write `int **p`, not `int * * p`
        last_was_ptr = True
        while stack:
            type_id = stack.pop()
            kind = kinds[type_id]
            if kind == _K_VOID:
                self._emit_mods(stack)
                out("void")
            elif kind in (_K_INT, _K_FLOAT):
                self._emit_mods(stack)
                out(get(type_id).name)
            elif kind in (_K_STRUCT, _K_UNION):
                self._emit_mods(stack)
                t = get(type_id)
                if t.name:
                    out(self._record_keyword(t) + " " + self._type_name(type_id))
                else:
                    self._emit_struct_def(type_id, t, lvl)
            elif kind in (_K_ENUM, _K_ENUM64):
                self._emit_mods(stack)
                t = get(type_id)
                if t.name:
                    out("enum " + self._type_name(type_id))
                else:
                    self._emit_enum_def(type_id, lvl)
            elif kind == _K_FWD:
                self._emit_mods(stack)
                out(("union " if get(type_id).is_union else "struct ") + self._type_name(type_id))
            elif kind == _K_TYPEDEF:
                self._emit_mods(stack)
                out(self._ident_name(type_id))
            elif kind == _K_PTR:
                out("*" if last_was_ptr else " *")
            elif kind == _K_VOLATILE:
                out(" volatile")
            elif kind == _K_CONST:
                out(" const")
            elif kind == _K_RESTRICT:
                out(" restrict")
            elif kind == _K_TYPE_TAG:
                self._emit_mods(stack)
                out(f' __attribute__((btf_type_tag("{get(type_id).name}")))')
            elif kind == _K_ARRAY:
                # qualifiers on arrays (a GCC quirk) mean nothing in C: drop them
                self._drop_mods(stack)
                nelems = get(type_id).nelems
                if not stack:
                    if fname:
                        out(fname if last_was_ptr else " " + fname)
                    out(f"[{nelems}]")
                    return
                multidim = kinds[stack[-1]] == _K_ARRAY
                if fname and not last_was_ptr:
                    out(" ")
                if not multidim:
                    out("(")
                self._emit_type_chain(stack, fname, lvl)
                if not multidim:
                    out(")")
                out(f"[{nelems}]")
                return
            elif kind == _K_FUNC_PROTO:
                self._drop_mods(stack)
                t = get(type_id)
                assert isinstance(t, FuncProto)
                if stack:
                    out(" (")
                    self._emit_type_chain(stack, fname, lvl)
                    out(")")
                elif fname:
                    out(fname if last_was_ptr else " " + fname)
                out("(")
                params = t.params
                if not params or (len(params) == 1 and params[0].type_id == 0):
                    out("void)")
                    return
                last = len(params) - 1
                for i, p in enumerate(params):
                    if i:
                        out(", ")
                    if i == last and p.type_id == 0:
                        out("...")
                        break
                    self._emit_type_decl(p.type_id, p.name, lvl)
                out(")")
                return
            last_was_ptr = kind == _K_PTR
        if fname:
            out(fname if last_was_ptr else " " + fname)

    # ---- records and their layout ------------------------------------------------------------------------

    def _emit_struct_def(self, type_id: int, t: Composite, lvl: int) -> None:
        out = self._out.append
        layout = self._layout(type_id)
        name = self._type_name(type_id)
        out(self._record_keyword(t) + (" " + name if name else "") + " {")
        pfx = "\n" + _indent(lvl + 1)
        for item in layout.items:
            m = item.member
            if m is None:
                out(f"{pfx}{item.pad_type}: {item.width};")
                continue
            out(pfx)
            self._emit_type_decl(m.type_id, m.name, lvl + 1)
            out(f": {m.bitfield_size};" if m.bitfield_size else ";")
        if layout.items or t.size:
            out("\n" + _indent(lvl) + "}")
        else:
            out("}")
        if layout.packed and layout.aligned:
            out(f" __attribute__((packed, aligned({layout.aligned})))")
        elif layout.packed:
            out(" __attribute__((packed))")
        elif layout.aligned:
            out(f" __attribute__((aligned({layout.aligned})))")

    def _align_of(self, type_id: int) -> int:
        """Alignment clang gives the emitted C type."""
        kinds = self._kinds
        get = self._get
        while True:
            kind = kinds[type_id]
            if kind == _K_PTR:
                return _PTR_SIZE
            if kind in (_K_INT, _K_FLOAT, _K_ENUM, _K_ENUM64):
                size: int = get(type_id).size
                return size if size in (1, 2, 4, 8, 16) else 1
            if kind == _K_TYPEDEF or kind in _MODS:
                type_id = get(type_id).type_id
            elif kind == _K_ARRAY:
                type_id = get(type_id).elem_id
            elif kind in (_K_STRUCT, _K_UNION):
                return self._layout(type_id).align
            else:
                return 1

    def _size_of(self, type_id: int) -> int:
        get = self._get
        kinds = self._kinds
        nelems = 1
        for _ in range(64):
            kind = kinds[type_id]
            if kind == _K_PTR:
                return nelems * _PTR_SIZE
            if kind in (_K_INT, _K_FLOAT, _K_ENUM, _K_ENUM64, _K_STRUCT, _K_UNION, _K_DATASEC):
                return nelems * int(get(type_id).size)
            if kind in (_K_TYPEDEF, _K_VAR) or kind in _MODS:
                type_id = get(type_id).type_id
            elif kind == _K_ARRAY:
                a = get(type_id)
                nelems *= a.nelems
                type_id = a.elem_id
            else:
                return 0
        return 0

    def _layout(self, type_id: int) -> _Layout:
        layout = self._layouts.get(type_id)
        if layout is None:
            layout = self._plan_record(type_id)
            self._layouts[type_id] = layout
        return layout

    def _member_items(self, t: Composite, packed: bool, pad: Callable[[list[_Item], int, int, int, bool], None]) -> list[_Item]:
        items: list[_Item] = []
        off = 0
        prev_bitfield = False
        for m in t.members:
            align = self._align_of(m.type_id)
            size_bits = self._size_of(m.type_id) * 8
            width = m.bitfield_size or None
            pad(items, off, m.bit_offset, 1 if packed else align, prev_bitfield and width is not None)
            items.append(_Item(m, align, size_bits, width))
            if width:
                off = m.bit_offset + width
                prev_bitfield = True
            else:
                off = m.bit_offset + size_bits
                prev_bitfield = False
        return items

    def _plan_record(self, type_id: int) -> _Layout:
        t = self.spec.type(type_id)
        assert isinstance(t, Composite)
        if t.kind == Kind.UNION:
            items = [
                _Item(m, self._align_of(m.type_id), self._size_of(m.type_id) * 8, m.bitfield_size or None)
                for m in t.members
            ]
            layout = _Layout(False, 0, 1, items)
            if self._check(t, layout):
                return layout
            # a union larger than its largest member was declared aligned
            _offs, natural_bytes, align = self._simulate(t, layout)
            for attr in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096):
                if attr > align and _roundup(natural_bytes, attr) == t.size:
                    layout = _Layout(False, attr, attr, items)
                    break
            if not self._check(t, layout) and natural_bytes < t.size <= 8:
                # no alignment explains the size (pahole drops the members of some transparent unions):
                # an anonymous bit-field as wide as the union keeps sizeof right
                bits = t.size * 8
                pad_type = next(name for name, width in reversed(_PADS) if width >= bits)
                layout = _Layout(False, 0, 1, [*items, _Item(None, 1, bits, bits, pad_type)])
            status = "size mismatch" if not self._check(t, layout) else (
                f"aligned({layout.aligned})" if layout.aligned else "padded")
            self.fallbacks.append(f"union {t.name or '(anon)'} [{type_id}] {status}")
            return layout
        packed = self._needs_packing(t)
        items = self._member_items(t, packed, self._pad_like_bpftool)
        max_align = 1 if packed else max((self._align_of(m.type_id) for m in t.members), default=1)
        self._pad_like_bpftool(items, self._end_of(items), t.size * 8, max_align, False)
        layout = _Layout(packed, 0, 1, items)
        if self._check(t, layout):
            return layout
        # Natural layout cannot give BTF's: write it packed, every hole padded exactly, and aligned so
        # that arrays of it keep their stride.
        items = self._member_items(t, True, self._pad_exact)
        self._pad_exact(items, self._end_of(items), t.size * 8, 1, False)
        natural = max((self._align_of(m.type_id) for m in t.members), default=1)
        attr = 1
        while attr * 2 <= natural and t.size % (attr * 2) == 0:
            attr *= 2
        layout = _Layout(True, attr if attr > 1 else 0, attr, items)
        status = "packed with exact padding" if self._check(t, layout) else "LAYOUT MISMATCH"
        self.fallbacks.append(f"struct {t.name or '(anon)'} [{type_id}] {status}")
        return layout

    @staticmethod
    def _end_of(items: list[_Item]) -> int:
        end = 0
        for it in items:
            if it.member is None:
                continue
            end = it.member.bit_offset + (it.width if it.width is not None else it.bits)
        return end

    def _needs_packing(self, t: Composite) -> bool:
        max_align = 1
        for m in t.members:
            align = self._align_of(m.type_id)
            if not m.bitfield_size and m.bit_offset % (8 * align):
                return True
            max_align = max(max_align, align)
        return t.size % max_align != 0

    @staticmethod
    def _pad_like_bpftool(items: list[_Item], cur: int, nxt: int, next_align: int, in_bitfield: bool) -> None:
        """Fill [cur, nxt) bits with anonymous bit-fields the way libbpf does: rely on natural alignment
        where it lands right, else `<type>: 0` to force an aligned start, then whole `<type>: N`."""
        if cur >= nxt:
            return
        # the widest padding type whose next aligned boundary is still inside the hole (else char)
        pad_type, pad_bits = _PADS[-1]
        for candidate, bits in _PADS:
            if _roundup(cur, bits) <= nxt:
                pad_type, pad_bits = candidate, bits
                break
        new_off = _roundup(cur, pad_bits)
        if cur < new_off <= nxt:
            if (
                in_bitfield
                or (new_off == nxt and _roundup(cur, next_align * 8) != new_off)
                or (new_off != nxt and nxt - new_off <= new_off - cur)
            ):
                width = new_off - cur if in_bitfield else 0
                items.append(_Item(None, pad_bits // 8, pad_bits, width, pad_type))
            cur = new_off
        while cur != nxt:
            bits = min(nxt - cur, pad_bits)
            if bits == pad_bits:
                items.append(_Item(None, pad_bits // 8, pad_bits, pad_bits, pad_type))
                cur += bits
                continue
            # the remainder: the smallest type that holds it, which reads best
            for small_type, small_bits in reversed(_PADS):
                if small_bits >= bits:
                    items.append(_Item(None, small_bits // 8, small_bits, bits, small_type))
                    cur += bits
                    break

    @staticmethod
    def _pad_exact(items: list[_Item], cur: int, nxt: int, _align: int, _in_bitfield: bool) -> None:
        """Fill [cur, nxt) with non-zero-width anonymous bit-fields (in a packed record they go exactly
        where the previous one ended)."""
        while nxt - cur >= 64:
            items.append(_Item(None, 8, 64, 64, "long"))
            cur += 64
        rest = nxt - cur
        if rest > 0:
            for small_type, small_bits in reversed(_PADS):
                if small_bits >= rest:
                    items.append(_Item(None, small_bits // 8, small_bits, rest, small_type))
                    break

    def _simulate(self, t: Composite, layout: _Layout) -> tuple[list[int], int, int]:
        """clang's record layout of what we write: (member bit offsets, size in bytes, alignment)."""
        packed = layout.packed
        is_union = t.kind == Kind.UNION
        cur = 0
        max_align = 1
        offsets: list[int] = []
        for it in layout.items:
            named = it.member is not None
            if it.width is None:
                align = 1 if packed else it.align
                off = 0 if is_union else _roundup(cur, 8 * align)
                end = off + it.bits
                max_align = max(max_align, align)
            elif it.width == 0:
                # zero-width bit-fields align the next field even in packed records (clang)
                if not is_union:
                    cur = _roundup(cur, 8 * it.align)
                continue
            else:
                if is_union:
                    off = 0
                elif packed:
                    off = cur
                else:
                    unit = 8 * it.align
                    off = cur if cur // unit == (cur + it.width - 1) // unit else _roundup(cur, unit)
                end = off + it.width
                if named:  # anonymous bit-fields do not affect a record's alignment
                    max_align = max(max_align, 1 if packed else it.align)
            if named:
                offsets.append(off)
            cur = max(cur, end) if is_union else end
        max_align = max(max_align, layout.aligned)
        layout.align = max_align
        return offsets, _roundup(cur, 8 * max_align) // 8, max_align

    def _check(self, t: Composite, layout: _Layout) -> bool:
        offsets, size, _align = self._simulate(t, layout)
        return size == t.size and offsets == [m.bit_offset for m in t.members]


def _header_start(guard: str) -> str:
    return (
        f"#ifndef {guard}\n"
        f"#define {guard}\n"
        "\n"
        "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
        "#pragma clang attribute push (__attribute__((preserve_access_index)), apply_to = record)\n"
        "#endif\n"
        "\n"
    )


def _header_end(guard: str) -> str:
    return (
        "#ifndef BPF_NO_PRESERVE_ACCESS_INDEX\n"
        "#pragma clang attribute pop\n"
        "#endif\n"
        "\n"
        f"#endif /* {guard} */\n"
    )


def dump_spec(spec: Spec) -> CDumper:
    """A CDumper that has emitted every type of `spec` (and its base), in id order as bpftool does."""
    dumper = CDumper(spec)
    old_limit = sys.getrecursionlimit()
    # ordering and emission recurse along type chains; deep kernel nesting needs more than the default
    sys.setrecursionlimit(max(old_limit, 20000))
    try:
        dumper.dump_all()
    finally:
        sys.setrecursionlimit(old_limit)
    return dumper


def vmlinux_header(spec: Spec | None = None, *, guard: str = "__VMLINUX_H__") -> str:
    """A complete `vmlinux.h` for `spec` (default: the running kernel's BTF), like
    `bpftool btf dump file /sys/kernel/btf/vmlinux format c`."""
    return dump_spec(spec if spec is not None else kernel_spec()).header(guard)
