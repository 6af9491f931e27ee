"""pybpf._named: the enum-like int constants behave as IntEnum/IntFlag do where pybpf and its users rely on it."""

from __future__ import annotations

import copy
import enum
import json
import pickle

import pytest

from pybpf._named import NamedFlags, NamedInt, is_named
from pybpf._sys import types as T
from pybpf.btf.types import IntEncoding, Kind


class Colour(NamedInt):
    RED = 1
    GREEN = 2
    CRIMSON = 1  # an alias
    _private = 3  # not a member


class StdColour(enum.IntEnum):
    RED = 1
    GREEN = 2
    CRIMSON = 1


class Bits(NamedFlags):
    NONE = 0
    A = 1
    B = 2
    AB = 3
    C = 8


class StdBits(enum.IntFlag):
    NONE = 0
    A = 1
    B = 2
    AB = 3
    C = 8


def test_members_are_their_values_with_names() -> None:
    for ours, std in ((Colour, StdColour), (Bits, StdBits)):
        assert [(m.name, int(m)) for m in ours] == [(m.name, int(m)) for m in std] and len(ours) == len(std)
        for name, member in std.__members__.items():
            mine = ours[name]
            assert mine == member and hash(mine) == hash(member) and mine.name == member.name
            assert str(mine) == str(member) and f"{mine}" == f"{member}" and f"{mine:x}" == f"{member:x}"
    assert Colour.CRIMSON is Colour.RED and Colour(1) is Colour.RED
    assert list(Colour.__members__) == ["RED", "GREEN", "CRIMSON"] and len(Colour) == 2
    assert type(Colour._private) is int and "_private" not in Colour.__members__
    assert repr(Colour.GREEN) == "<Colour.GREEN: 2>" and Colour(2).value == 2
    assert 2 in Colour and 7 not in Colour
    by_colour: dict[int, str] = {Colour.RED: "x"}
    assert by_colour[1] == "x"


def test_lookups_fail_as_enum_does() -> None:
    with pytest.raises(ValueError, match="7 is not a valid Colour"):
        Colour(7)
    with pytest.raises(KeyError):
        Colour["BLUE"]
    with pytest.raises(ValueError):
        Bits(-1)


def test_flags_name_combinations_as_intflag() -> None:
    assert Bits(9).name == "A|C" and Bits(9) == 9 and Bits(9) is Bits(9)
    assert Bits(3) is Bits.AB and Bits(0).name == "NONE"
    assert Bits(16).name == "0x10"
    assert Bits(48).name == "0x30"  # named from the members, not from combinations named before (16)
    assert IntEncoding(5).name == str(StdBits(9).name).replace("A", "SIGNED").replace("C", "BOOL")
    assert list(Bits(11)) == [Bits.A, Bits.B, Bits.C] and Bits.A in Bits(9) and Bits.B not in Bits(9)
    assert Bits.A | Bits.C == 9 and type(Bits.A | Bits.C) is int


def test_copies_and_serialisation_keep_members() -> None:
    assert copy.deepcopy(Kind.STRUCT) is Kind.STRUCT
    assert pickle.loads(pickle.dumps(T.ProgType.XDP)) is T.ProgType.XDP  # built lazily in pybpf._sys.types
    assert json.dumps([Kind.STRUCT, T.MapType.HASH]) == "[4, 1]"


def test_generated_kernel_enums() -> None:
    assert T.ProgType.XDP == T.BPF_PROG_TYPE_XDP and T.ProgType(T.BPF_PROG_TYPE_XDP).name == "XDP"
    assert T.AttachType["CGROUP_INET_INGRESS"] == T.BPF_CGROUP_INET_INGRESS
    assert int(T.BpfFuncId.unspec) == 0 and T.BpfFuncId(1).name == "map_lookup_elem"
    assert is_named(T.ProgType.XDP) and is_named(StdColour.RED) and not is_named(6)
