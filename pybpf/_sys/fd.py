"""An owned file descriptor."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType


class FD:
    """Owns one file descriptor: closed by close(), by leaving a `with` block, or (as a safety net) when
    garbage collected. `int(fd)` gives the raw number; using a closed FD raises ValueError."""

    __slots__ = ("__weakref__", "_fd")

    def __init__(self, fd: int) -> None:
        self._fd = -1
        if fd < 0:
            raise ValueError(f"invalid file descriptor {fd}")
        self._fd = fd

    def __int__(self) -> int:
        if self._fd < 0:
            raise ValueError("file descriptor already closed")
        return self._fd

    __index__ = __int__

    @property
    def raw(self) -> int:
        return int(self)

    @property
    def closed(self) -> bool:
        return self._fd < 0

    def close(self) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)

    def detach(self) -> int:
        """Give up ownership and return the raw number (the caller must close it)."""
        fd, self._fd = int(self), -1
        return fd

    def dup(self) -> FD:
        return FD(os.dup(int(self)))

    def __enter__(self) -> FD:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except OSError:
            pass

    def __repr__(self) -> str:
        return f"FD({self._fd})" if self._fd >= 0 else "FD(closed)"
