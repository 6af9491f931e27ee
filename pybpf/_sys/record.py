"""`record`: a cheap stand-in for `@dataclasses.dataclass` on pybpf's load path.

`import dataclasses` costs ~8 ms (it pulls in `inspect`) and every decorated class ~0.8 ms more (it
compiles three methods); the loader defines ~35 of them, which was a third of `import pybpf`'s time.
`record` compiles only `__init__`, and only on first construction (so construction stays as fast as a
dataclass's), and shares generic `__repr__`/`__eq__`/`__hash__`. Records still work with `dataclasses.fields`,
`replace`, `asdict` and `is_dataclass`: `__dataclass_fields__` is built (importing `dataclasses`) the first
time it is asked for.

Supported: field defaults, `field(default=, default_factory=)`, `frozen`, `slots`, `eq`, inheritance
from other records. Not supported (not used here): `order`, `kw_only`, `InitVar`, `__post_init__`.
"""

from __future__ import annotations

TYPE_CHECKING = False
if not TYPE_CHECKING:
    from pybpf._typing import dataclass_transform, overload
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar, dataclass_transform, overload

    _T = TypeVar("_T")
    _C = TypeVar("_C", bound=type)

__all__ = ["FrozenInstanceError", "field", "field_names", "record", "replace"]

class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


_MISSING: Any = _Missing()
_FACTORY: Any = type("_HasFactory", (), {"__repr__": lambda self: "<factory>"})()


class FrozenInstanceError(AttributeError):
    """Assigning to a field of a frozen record."""


class _Field:
    __slots__ = ("default", "default_factory")

    def __init__(self, default: Any, default_factory: Any) -> None:
        self.default = default
        self.default_factory = default_factory


@overload
def field(*, default: _T) -> _T: ...
@overload
def field(*, default_factory: Callable[[], _T]) -> _T: ...
def field(*, default: Any = _MISSING, default_factory: Any = _MISSING) -> Any:
    """Like `dataclasses.field`, for `default` and `default_factory` only."""
    return _Field(default, default_factory)


@overload
def record(cls: _C, /) -> _C: ...
@overload
def record(*, frozen: bool = False, slots: bool = False, eq: bool = True) -> Callable[[_C], _C]: ...
@dataclass_transform(field_specifiers=(field,))
def record(cls: Any = None, /, *, frozen: bool = False, slots: bool = False, eq: bool = True) -> Any:
    """Decorate a class like `@dataclass(frozen=, slots=, eq=)`."""

    def wrap(c: type) -> type:
        return _process(c, frozen, slots, eq)

    return wrap if cls is None else wrap(cls)


def replace(obj: _T, /, **changes: Any) -> _T:
    """A copy of record `obj` with some fields changed (`dataclasses.replace`)."""
    for name in type(obj).__record_fields__:  # type: ignore[attr-defined]
        if name not in changes:
            changes[name] = getattr(obj, name)
    return type(obj)(**changes)


def field_names(obj: Any) -> tuple[str, ...]:
    """The field names of a record (class or instance), in order."""
    names: tuple[str, ...] = obj.__match_args__
    return names


def _is_classvar(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else repr(annotation)
    return text.startswith(("ClassVar", "typing.ClassVar"))


def _process(cls: type, frozen: bool, slots: bool, eq: bool) -> type:
    # (name, default, factory, annotation) for inherited fields first, as dataclasses orders them.
    fields: dict[str, tuple[Any, Any, Any]] = {}
    for base in reversed(cls.__mro__[1:]):
        fields.update(base.__dict__.get("__record_fields__", {}))
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():  # noqa: RUF063 - no inspect import
        if _is_classvar(annotation):
            continue
        default = cls.__dict__.get(name, _MISSING)
        factory = _MISSING
        if isinstance(default, _Field):
            default, factory = default.default, default.default_factory
        fields[name] = (default, factory, annotation)

    names = tuple(fields)
    params, body = [], []
    env: dict[str, Any] = {"_FACTORY": _FACTORY, "_setattr": object.__setattr__}
    seen_default = False
    for name, (default, factory, _annotation) in fields.items():
        if factory is not _MISSING:
            env[f"_f_{name}"] = factory
            params.append(f"{name}=_FACTORY")
            value = f"_f_{name}() if {name} is _FACTORY else {name}"
            seen_default = True
        elif default is not _MISSING:
            env[f"_d_{name}"] = default
            params.append(f"{name}=_d_{name}")
            value = name
            seen_default = True
        else:
            if seen_default:
                raise TypeError(f"non-default argument {name!r} follows default argument in {cls.__name__}")
            params.append(name)
            value = name
        body.append(f"_setattr(self, {name!r}, {value})" if frozen else f"self.{name} = {value}")
    source = f"def __init__(self, {', '.join(params)}):\n    " + ("\n    ".join(body) or "pass") + "\n"
    qualname = f"{cls.__qualname__}.__init__"
    owner: list[type] = []  # the class that ends up with this __init__ (a new one with slots)

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        # Compiled on first construction: most records (info, results) are never built in a short run,
        # and exec() costs ~0.3 ms each.
        exec(source, env)  # noqa: S102 - generated from the class's own field names, as dataclasses does
        init = env["__init__"]
        init.__qualname__ = qualname
        type.__setattr__(owner[0], "__init__", init)
        init(self, *args, **kwargs)

    __init__.__qualname__ = qualname
    attrs: dict[str, Any] = {
        "__init__": __init__,
        "__record_fields__": fields,
        "__match_args__": names,
        "__dataclass_fields__": _DataclassFields(),
        "_record_values": staticmethod(_values_getter(names, owner)),
    }
    if "__repr__" not in cls.__dict__:
        attrs["__repr__"] = _repr
    if eq and "__eq__" not in cls.__dict__:
        attrs["__eq__"] = _eq
        if frozen:
            attrs["__hash__"] = _hash
        elif "__hash__" not in cls.__dict__:
            attrs["__hash__"] = None
    if frozen:
        attrs["__setattr__"] = _frozen_setattr
        attrs["__delattr__"] = _frozen_delattr
    if not slots:
        for n in names:  # plain defaults stay class attributes (as with dataclasses), field() markers go
            if isinstance(cls.__dict__.get(n), _Field):
                default = fields[n][0]
                if default is _MISSING:
                    delattr(cls, n)
                else:
                    setattr(cls, n, default)
        for k, v in attrs.items():
            setattr(cls, k, v)
        owner.append(cls)
        return cls
    # Slots need a new class (like dataclass(slots=True)); class-level defaults would clash with them.
    ns = {k: v for k, v in cls.__dict__.items() if k not in ("__dict__", "__weakref__") and k not in fields}
    inherited: set[str] = set()
    for base in cls.__mro__[1:]:
        inherited.update(base.__dict__.get("__slots__", ()))
    ns["__slots__"] = tuple(n for n in names if n not in inherited)
    ns.update(attrs)
    new = type(cls)(cls.__name__, cls.__bases__, ns)
    new.__qualname__ = cls.__qualname__
    owner.append(new)
    return new


def _values_getter(names: tuple[str, ...], owner: list[type]) -> Callable[[Any], tuple[Any, ...]]:
    """The field values as a tuple (for ==, hash and repr): an attrgetter, made on first use so that
    start-up does not import operator."""

    def first_use(obj: Any) -> tuple[Any, ...]:
        from operator import attrgetter

        get: Callable[[Any], tuple[Any, ...]]
        if len(names) > 1:
            get = attrgetter(*names)
        elif names:
            one = attrgetter(names[0])
            get = lambda obj: (one(obj),)  # noqa: E731
        else:
            get = lambda obj: ()  # noqa: E731
        type.__setattr__(owner[0], "_record_values", staticmethod(get))
        return get(obj)

    return first_use


def _repr(self: Any) -> str:
    parts = ", ".join(f"{n}={v!r}" for n, v in zip(self.__match_args__, self._record_values(self), strict=True))
    return f"{type(self).__qualname__}({parts})"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is self.__class__:
        return bool(self._record_values(self) == other._record_values(other))
    return NotImplemented


def _hash(self: Any) -> int:
    return hash(self._record_values(self))


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenInstanceError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenInstanceError(f"cannot delete field {name!r}")


class _DataclassFields:
    """`__dataclass_fields__` built on first access, so `dataclasses` is imported only by its users."""

    def __get__(self, obj: Any, owner: type) -> dict[str, Any]:
        import dataclasses

        out: dict[str, Any] = {}
        for name, (default, factory, annotation) in owner.__dict__["__record_fields__"].items():
            if factory is not _MISSING:
                f = dataclasses.field(default_factory=factory)
            elif default is not _MISSING:
                f = dataclasses.field(default=default)
            else:
                f = dataclasses.field()
            f.name = name
            f.type = annotation
            f._field_type = dataclasses._FIELD  # type: ignore[attr-defined]
            out[name] = f
        return out
