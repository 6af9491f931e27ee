"""Where pybpf keeps its caches (build products, kernel BTF indexes, load plans, kernels for vmtest)."""

from __future__ import annotations

import os
from _thread import get_ident

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from _typeshed import ReadableBuffer


def cache_root() -> str:
    """`$PYBPF_CACHE`, else `$XDG_CACHE_HOME/pybpf`, else `~/.cache/pybpf` (read at each call: tests and tools
    change it within one process)."""
    explicit = os.environ.get("PYBPF_CACHE")
    if explicit:
        return os.path.expanduser(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return os.path.join(os.path.expanduser(xdg) if xdg else os.path.join(os.path.expanduser("~"), ".cache"), "pybpf")


def boot_id() -> str:
    """This boot's id: what is cached per boot (kernel BTF indexes, load plans) is keyed by it."""
    with open("/proc/sys/kernel/random/boot_id") as f:
        return f.read().strip()


def write_atomically(path: str | os.PathLike[str], chunks: Sequence[ReadableBuffer], *, mode: int = 0o644,
                     dir_mode: int = 0o777) -> None:
    """Write `chunks` to `path` through a temporary file in the same directory and a rename, so that
    readers (other processes, other threads) see the old file or the whole new one. Raises OSError; the
    temporary file is gone either way."""
    path = os.fspath(path)
    directory, name = os.path.split(path)
    tmp = os.path.join(directory, f".{name}.{os.getpid()}.{get_ident()}.tmp")
    try:
        os.makedirs(directory or ".", mode=dir_mode, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
        try:
            written = os.writev(fd, chunks)
        finally:
            os.close(fd)
        if written != sum(memoryview(c).nbytes for c in chunks):
            raise OSError(f"short write to {tmp}")
        os.replace(tmp, path)
    except OSError:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
