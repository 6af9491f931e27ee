"""The syscall layer: bpf(), perf_event_open(), ioctl(), owned file descriptors and the generated ABI."""

from __future__ import annotations

from pybpf._sys import types
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf, bpf_errno, bpf_fd, ioctl, perf_event_open

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import TypeVar

    _E = TypeVar("_E")

__all__ = ["FD", "bpf", "bpf_errno", "bpf_fd", "enum_or_int", "int_constants", "ioctl", "object_name",
           "perf_event_open", "types"]


def enum_or_int(enum: Callable[[int], _E], value: int) -> _E | int:
    """`value` as a member of one of the generated enums (`types.ProgType`, ...), or the plain int when this
    pybpf's ABI has no such member (a kernel newer than it). Builds the enum: for display, not start-up."""
    try:
        return enum(value)
    except ValueError:
        return value


def int_constants(prefix: str) -> dict[str, int]:
    """The generated plain-int constants whose names start with `prefix`, by name without it, in the kernel's
    order (``int_constants("BPF_CGROUP_ITER_")`` -> {"ORDER_UNSPEC": 0, "SELF_ONLY": 1, ...}): an enum's
    names without building the enum."""
    cut = len(prefix)
    return {name[cut:]: value for name, value in vars(types).items()
            if name.startswith(prefix) and isinstance(value, int)}


def object_name(name: str, fill: str = "_") -> str:
    """The kernel's form of an object name: at most 15 characters of ``[A-Za-z0-9_.]``, others replaced
    by `fill` ("" drops them)."""
    if not (name.isascii() and name.replace("_", "").replace(".", "").isalnum()):
        name = "".join(c if c.isascii() and (c.isalnum() or c in "_.") else fill for c in name)
    return name[: types.BPF_OBJ_NAME_LEN - 1]
