"""`Codec`, the protocol of map key and value codecs (`pybpf.map.Codec`).

It lives apart from pybpf.map because a `Protocol` needs `typing` at run time, which a precompiled tool's
start-up should not pay for: pybpf.map checks codecs by their attributes and builds this class only when
somebody asks for `pybpf.map.Codec`.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

__all__ = ["Codec"]


@runtime_checkable
class Codec(Protocol):
    """Turns one key or value into exactly `size` bytes and back.

    Optional fast paths a codec may add (used by batch operations when present):
    `encode_many(values) -> bytes` and `decode_many(buffer, count) -> list`.
    """

    @property
    def size(self) -> int: ...

    def encode(self, value: Any) -> bytes: ...

    def decode(self, data: bytes | bytearray | memoryview) -> Any: ...
