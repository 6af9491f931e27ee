"""Run-time stand-ins for the few `typing` decorators and functions pybpf's load path calls.

`typing` (with the `re`, `collections` and `contextlib` it pulls in) costs ~10 ms to import on a small VM,
a large part of a precompiled tool's start-up, while these names only need to exist at run time. Modules
import them for the interpreter and the real ones for type checkers, in this order (linters and type
checkers then see `typing`'s):

    TYPE_CHECKING = False
    if not TYPE_CHECKING:
        from pybpf._typing import cast, overload
    if TYPE_CHECKING:
        from typing import cast, overload
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["cast", "dataclass_transform", "overload"]


def overload(func: Any) -> Any:
    return func


def dataclass_transform(**_kwargs: Any) -> Any:
    return overload


def cast(_type: Any, value: Any) -> Any:
    return value
