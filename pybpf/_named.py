"""Named int constants: what `enum.IntEnum` and `enum.IntFlag` give pybpf, without the enum module.

Importing enum (with functools and collections) costs ~3 ms of a cold start, and building an enum class
~10 us per member; a load needs a few of them (program and attach types, BTF kinds). These classes keep
what pybpf and its users rely on: members are ints (equal and hashed as their values) that know their
`name`; ``Cls(value)`` returns the member (ValueError when there is none); ``Cls["NAME"]``,
``Cls.__members__``, ``len(Cls)`` and iteration in definition order (aliases left out) work as for enum.
Operators are int's: ``A | B`` is a plain int, and ``Flags(A | B)`` names it ``"A|B"``.

Type checkers see the generated kernel enums as `enum.IntEnum` through ``_sys/types.pyi``, and the
hand-written ones through `IntEnum`/`IntFlag` below, which are enum's own classes for them.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import Any

__all__ = ["IntEnum", "IntFlag", "NamedFlags", "NamedInt", "is_named"]


class _NamedMeta(type):
    """Turns the int attributes of a class body (not starting with ``_``) into members."""

    _flags_: bool = False
    _member_map_: dict[str, Any]
    _value2member_map_: dict[int, Any]
    _member_names_: list[str]

    def __new__(mcs, name: str, bases: tuple[type, ...], namespace: dict[str, Any]) -> _NamedMeta:
        values = {k: v for k, v in namespace.items() if type(v) is int and not k.startswith("_")}
        cls = super().__new__(mcs, name, bases, namespace)
        by_name: dict[str, Any] = {}
        by_value: dict[int, Any] = {}
        canonical: list[str] = []
        make: Any = int.__new__
        for member_name, value in values.items():
            member = by_value.get(value)
            if member is None:  # the first name of a value is the member's; later ones are aliases
                member = by_value[value] = make(cls, value)
                member.name = member_name
                if not cls._flags_ or (value > 0 and not value & (value - 1)):  # flags: their single bits
                    canonical.append(member_name)
            by_name[member_name] = member
            type.__setattr__(cls, member_name, member)
        cls._member_map_ = by_name
        cls._value2member_map_ = by_value
        cls._member_names_ = canonical
        return cls

    def __iter__(cls) -> Iterator[Any]:
        members = cls._member_map_
        return (members[n] for n in cls._member_names_)

    def __len__(cls) -> int:
        return len(cls._member_names_)

    def __getitem__(cls, name: str) -> Any:
        return cls._member_map_[name]

    def __contains__(cls, value: object) -> bool:
        return value in cls._value2member_map_

    @property
    def __members__(cls) -> dict[str, Any]:
        return dict(cls._member_map_)


class NamedInt(int, metaclass=_NamedMeta):
    """An IntEnum-like constant: see the module's docstring."""

    name: str

    def __new__(cls, value: int) -> NamedInt:
        member: NamedInt | None = cls._value2member_map_.get(value)
        if member is None:
            return cls._missing_(value)
        return member

    @classmethod
    def _missing_(cls, value: int) -> NamedInt:
        raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")

    @property
    def value(self) -> int:
        return int(self)

    def __repr__(self) -> str:
        return f"<{type(self).__qualname__}.{self.name}: {int(self)}>"

    # str() and format() are int's, as IntEnum's are since Python 3.11.
    __str__ = int.__repr__
    __format__ = int.__format__

    def __reduce_ex__(self, protocol: Any) -> tuple[Any, ...]:
        return type(self), (int(self),)


class NamedFlags(NamedInt):
    """An IntFlag-like set of bits: a value that is no member is named after the members whose bits it has
    (``"SIGNED|CHAR"``, unknown bits in hex), as IntFlag names its pseudo-members."""

    _flags_ = True

    @classmethod
    def _missing_(cls, value: int) -> NamedInt:
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{value!r} is not a valid {cls.__qualname__}")
        names, rest = [], value
        for member in cls:  # the single-bit members (not the combinations named before)
            if value & member:
                names.append(member.name)
                rest &= ~member
        if rest:
            names.append(hex(rest))
        made = int.__new__(cls, value)
        made.name = "|".join(names)
        cls._value2member_map_[value] = made
        return made

    def __iter__(self) -> Iterator[NamedInt]:
        """The single-bit members set in this value."""
        return (m for m in type(self) if self & m)

    def __contains__(self, other: int) -> bool:
        return self & other == other


def is_named(value: object) -> bool:
    """Whether `value` is a member of a named-int class (or of an enum of the standard library)."""
    if isinstance(value, NamedInt):
        return True
    enum = sys.modules.get("enum")  # no enum member can exist unless enum was imported
    return enum is not None and isinstance(value, enum.Enum)


# For type checkers the hand-written classes derive from enum's own (members typed as members, `.name`
# known); at run time from the classes above.
if TYPE_CHECKING:
    from enum import IntEnum, IntFlag
else:
    IntEnum = NamedInt
    IntFlag = NamedFlags
