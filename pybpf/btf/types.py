"""The BTF type model.

Types are decoded lazily from a `Spec` and refer to other types by id; the `.type` style properties
resolve those ids through the owning spec, so a kernel spec with ~130k types never materialises more
than what is touched.
"""

from __future__ import annotations

from pybpf._named import IntEnum, IntFlag
from pybpf._sys.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import ClassVar

    from pybpf.btf.spec import Spec


class Kind(IntEnum):
    VOID = 0
    INT = 1
    PTR = 2
    ARRAY = 3
    STRUCT = 4
    UNION = 5
    ENUM = 6
    FWD = 7
    TYPEDEF = 8
    VOLATILE = 9
    CONST = 10
    RESTRICT = 11
    FUNC = 12
    FUNC_PROTO = 13
    VAR = 14
    DATASEC = 15
    FLOAT = 16
    DECL_TAG = 17
    TYPE_TAG = 18
    ENUM64 = 19


class IntEncoding(IntFlag):
    NONE = 0
    SIGNED = 1
    CHAR = 2
    BOOL = 4


class FuncLinkage(IntEnum):
    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


class VarLinkage(IntEnum):
    STATIC = 0
    GLOBAL = 1
    EXTERN = 2


class Type:
    """Base of every BTF type. `id` is the type id within its spec (0 is void)."""

    kind: ClassVar[Kind] = Kind.VOID
    __slots__ = ("id", "name", "spec")

    def __init__(self, spec: Spec | None, type_id: int, name: str) -> None:
        self.spec = spec
        self.id = type_id
        self.name = name

    def _resolve(self, type_id: int) -> Type:
        assert self.spec is not None
        return self.spec.type(type_id)

    def __repr__(self) -> str:
        label = f" {self.name}" if self.name else ""
        return f"<{self.kind.name.lower()}{label} #{self.id}>"

    def strip(self) -> Type:
        """Skip typedefs and qualifiers (const, volatile, restrict, type tags)."""
        t: Type = self
        while isinstance(t, (Typedef, Qualifier)):
            t = t.type
        return t

    def strip_qualifiers(self) -> Type:
        t: Type = self
        while isinstance(t, Qualifier):
            t = t.type
        return t


class Void(Type):
    kind = Kind.VOID
    __slots__ = ()

    def __init__(self, spec: Spec | None = None) -> None:
        super().__init__(spec, 0, "")


class Int(Type):
    kind = Kind.INT
    __slots__ = ("bit_offset", "bits", "encoding", "size")

    def __init__(
        self, spec: Spec | None, type_id: int, name: str, size: int, encoding: int, bits: int, bit_offset: int
    ) -> None:
        super().__init__(spec, type_id, name)
        self.size = size
        self.encoding = IntEncoding(encoding)
        self.bits = bits
        self.bit_offset = bit_offset

    @property
    def signed(self) -> bool:
        return bool(self.encoding & IntEncoding.SIGNED)


class Float(Type):
    kind = Kind.FLOAT
    __slots__ = ("size",)

    def __init__(self, spec: Spec | None, type_id: int, name: str, size: int) -> None:
        super().__init__(spec, type_id, name)
        self.size = size


class _Ref(Type):
    """A type that points at one other type by id."""

    __slots__ = ("type_id",)

    def __init__(self, spec: Spec | None, type_id: int, name: str, target_id: int) -> None:
        super().__init__(spec, type_id, name)
        self.type_id = target_id

    @property
    def type(self) -> Type:
        return self._resolve(self.type_id)


class Pointer(_Ref):
    kind = Kind.PTR
    __slots__ = ()


class Typedef(_Ref):
    kind = Kind.TYPEDEF
    __slots__ = ()


class Qualifier(_Ref):
    __slots__ = ()


class Volatile(Qualifier):
    kind = Kind.VOLATILE
    __slots__ = ()


class Const(Qualifier):
    kind = Kind.CONST
    __slots__ = ()


class Restrict(Qualifier):
    kind = Kind.RESTRICT
    __slots__ = ()


class TypeTag(Qualifier):
    kind = Kind.TYPE_TAG
    __slots__ = ()


class Array(Type):
    kind = Kind.ARRAY
    __slots__ = ("elem_id", "index_id", "nelems")

    def __init__(self, spec: Spec | None, type_id: int, elem_id: int, index_id: int, nelems: int) -> None:
        super().__init__(spec, type_id, "")
        self.elem_id = elem_id
        self.index_id = index_id
        self.nelems = nelems

    @property
    def elem(self) -> Type:
        return self._resolve(self.elem_id)

    @property
    def index(self) -> Type:
        return self._resolve(self.index_id)


@record(slots=True)
class Member:
    name: str
    type_id: int
    bit_offset: int
    bitfield_size: int  # 0 when the member is not a bitfield
    spec: Spec | None = None

    @property
    def type(self) -> Type:
        assert self.spec is not None
        return self.spec.type(self.type_id)

    @property
    def byte_offset(self) -> int:
        return self.bit_offset // 8


class Composite(Type):
    __slots__ = ("members", "size")

    def __init__(self, spec: Spec | None, type_id: int, name: str, size: int, members: list[Member]) -> None:
        super().__init__(spec, type_id, name)
        self.size = size
        self.members = members

    def member(self, name: str) -> Member:
        for m in self.members:
            if m.name == name:
                return m
        raise KeyError(f"{self.kind.name.lower()} {self.name or '<anon>'} has no member {name!r}")


class Struct(Composite):
    kind = Kind.STRUCT
    __slots__ = ()


class Union(Composite):
    kind = Kind.UNION
    __slots__ = ()


@record(slots=True)
class EnumValue:
    name: str
    value: int


class Enum(Type):
    """ENUM and ENUM64 alike; `is64` tells which kind the BTF used."""

    kind = Kind.ENUM
    __slots__ = ("is64", "signed", "size", "values")

    def __init__(
        self,
        spec: Spec | None,
        type_id: int,
        name: str,
        size: int,
        values: list[EnumValue],
        signed: bool,
        is64: bool = False,
    ) -> None:
        super().__init__(spec, type_id, name)
        self.size = size
        self.values = values
        self.signed = signed
        self.is64 = is64

    def value_of(self, name: str) -> int:
        for v in self.values:
            if v.name == name:
                return v.value
        raise KeyError(f"enum {self.name or '<anon>'} has no value {name!r}")


class Fwd(Type):
    kind = Kind.FWD
    __slots__ = ("is_union",)

    def __init__(self, spec: Spec | None, type_id: int, name: str, is_union: bool) -> None:
        super().__init__(spec, type_id, name)
        self.is_union = is_union


@record(slots=True)
class Param:
    name: str
    type_id: int
    spec: Spec | None = None

    @property
    def type(self) -> Type:
        assert self.spec is not None
        return self.spec.type(self.type_id)


class FuncProto(Type):
    kind = Kind.FUNC_PROTO
    __slots__ = ("params", "return_id")

    def __init__(self, spec: Spec | None, type_id: int, return_id: int, params: list[Param]) -> None:
        super().__init__(spec, type_id, "")
        self.return_id = return_id
        self.params = params

    @property
    def return_type(self) -> Type:
        return self._resolve(self.return_id)

    @property
    def variadic(self) -> bool:
        return bool(self.params) and self.params[-1].type_id == 0 and not self.params[-1].name


class Func(_Ref):
    kind = Kind.FUNC
    __slots__ = ("linkage",)

    def __init__(self, spec: Spec | None, type_id: int, name: str, proto_id: int, linkage: int) -> None:
        super().__init__(spec, type_id, name, proto_id)
        self.linkage = FuncLinkage(linkage) if linkage in (0, 1, 2) else linkage

    @property
    def proto(self) -> FuncProto:
        t = self.type
        assert isinstance(t, FuncProto)
        return t


class Var(_Ref):
    kind = Kind.VAR
    __slots__ = ("linkage",)

    def __init__(self, spec: Spec | None, type_id: int, name: str, target_id: int, linkage: int) -> None:
        super().__init__(spec, type_id, name, target_id)
        self.linkage = VarLinkage(linkage) if linkage in (0, 1, 2) else linkage


@record(slots=True)
class VarSecinfo:
    type_id: int
    offset: int
    size: int
    spec: Spec | None = None

    @property
    def var(self) -> Type:
        assert self.spec is not None
        return self.spec.type(self.type_id)


class Datasec(Type):
    kind = Kind.DATASEC
    __slots__ = ("size", "vars")

    def __init__(self, spec: Spec | None, type_id: int, name: str, size: int, vars_: list[VarSecinfo]) -> None:
        super().__init__(spec, type_id, name)
        self.size = size
        self.vars = vars_


class DeclTag(_Ref):
    kind = Kind.DECL_TAG
    __slots__ = ("component_idx",)

    def __init__(self, spec: Spec | None, type_id: int, name: str, target_id: int, component_idx: int) -> None:
        super().__init__(spec, type_id, name, target_id)
        self.component_idx = component_idx


def sizeof(t: Type) -> int:
    """Size in bytes of a type as C's sizeof would give it."""
    seen = 0
    while True:
        seen += 1
        if seen > 64:
            raise ValueError(f"type loop while computing size of {t!r}")
        if isinstance(t, (Int, Float, Composite, Enum, Datasec)):
            return t.size
        if isinstance(t, Pointer):
            return 8
        if isinstance(t, Array):
            return t.nelems * sizeof(t.elem)
        if isinstance(t, (Typedef, Qualifier, Var)):
            t = t.type
            continue
        raise ValueError(f"type {t!r} has no size")


def alignof(t: Type) -> int:
    t = t.strip()
    if isinstance(t, (Int, Float, Enum)):
        return min(t.size, 8) or 1
    if isinstance(t, Pointer):
        return 8
    if isinstance(t, Array):
        return alignof(t.elem)
    if isinstance(t, Composite):
        return max((alignof(m.type) for m in t.members), default=1)
    return 1
