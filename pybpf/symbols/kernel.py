"""Kernel symbols from /proc/kallsyms."""

from __future__ import annotations

import errno
import re
import threading
from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from pybpf.errors import BPFError
from pybpf.symbols.elf import Symbol

__all__ = ["KALLSYMS", "KernelSymbols", "kernel_symbols"]

KALLSYMS = "/proc/kallsyms"

# Text symbols only: stacks point into code. At one address, prefer T over t over W/w.
_TYPE_RANK = np.zeros(256, dtype=np.int64)
for _rank, _char in enumerate(b"wWtT", start=1):
    _TYPE_RANK[_char] = _rank


class KernelSymbols:
    """The kernel's function symbols (vmlinux, modules and JITed BPF programs), for address lookup.

    The file is parsed with numpy in one pass and names are decoded only when a lookup returns them, so
    loading ~120k lines costs little beyond the kernel's own ~50 ms to produce the file. The table is a
    snapshot: call refresh() after BPF programs or modules were loaded.
    """

    def __init__(self, path: str = KALLSYMS) -> None:
        self.path = path
        self._lock = threading.Lock()
        self.refresh()

    def refresh(self) -> None:
        with open(self.path, "rb") as f:
            data = f.read()
        with self._lock:
            self._parse(data)

    def _parse(self, data: bytes) -> None:
        self._data = data
        raw = np.frombuffer(data, dtype=np.uint8)
        line_ends = np.flatnonzero(raw == ord("\n"))
        if len(line_ends) == 0:
            self._set_empty()
            return
        starts = np.concatenate(([0], line_ends[:-1] + 1))
        width = data.index(b" ")  # 16 hex digits on 64-bit kernels, 8 on 32-bit
        rank = _TYPE_RANK[raw[starts + width + 1]]
        text = rank > 0
        starts, line_ends, rank = starts[text], line_ends[text], rank[text]

        # gather the fixed-width hex columns into one string and let bytes.fromhex do the parsing in C
        windows = np.lib.stride_tricks.sliding_window_view(raw, width)  # a view: row i = raw[i:i+width]
        hex_text = windows[starts].tobytes()
        addresses = np.frombuffer(bytes.fromhex(hex_text.decode("ascii")), dtype=f">u{width // 2}")
        addresses = addresses.astype(np.uint64)
        self.restricted = bool(len(addresses)) and not addresses.any()

        # name runs from after "ADDR T " to a tab (then "[module]") or the end of the line
        name_starts = starts + width + 3
        tabs = np.flatnonzero(raw == ord("\t")) if b"\t" in data else None
        if tabs is not None and len(tabs):
            following = np.minimum(np.searchsorted(tabs, name_starts), len(tabs) - 1)
            tab = tabs[following]
            name_ends = np.where((tab > name_starts) & (tab < line_ends), tab, line_ends)
        else:
            name_ends = line_ends

        order = np.lexsort((rank, addresses))  # by address, preferred type last among equals
        self._addresses: npt.NDArray[np.uint64] = addresses[order]
        self._name_starts: npt.NDArray[np.int64] = name_starts[order]
        self._name_ends: npt.NDArray[np.int64] = name_ends[order]
        self._line_ends: npt.NDArray[np.int64] = line_ends[order]

    def _set_empty(self) -> None:
        self.restricted = False
        self._addresses = np.zeros(0, np.uint64)
        self._name_starts = self._name_ends = self._line_ends = np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self._addresses)

    def _check_visible(self) -> None:
        if self.restricted:
            raise BPFError(
                "kernel addresses in /proc/kallsyms are hidden (kernel.kptr_restrict); run as root "
                "or set sysctl kernel.kptr_restrict=0",
                errno.EPERM,
            )

    def _symbol_at(self, index: int, address: int) -> Symbol:
        data = self._data
        start, end = int(self._name_starts[index]), int(self._name_ends[index])
        line_end = int(self._line_ends[index])
        module = data[end + 2 : line_end - 1].decode() if end < line_end else ""  # "\t[module]"
        return Symbol(data[start:end].decode(errors="replace"), address - int(self._addresses[index]), module)

    def lookup(self, address: int) -> Symbol | None:
        """The function containing `address` (name, offset, module), or None below the first symbol."""
        self._check_visible()
        with self._lock:
            index = int(np.searchsorted(self._addresses, np.uint64(address), side="right")) - 1
            return None if index < 0 else self._symbol_at(index, address)

    def lookup_many(self, addresses: Iterable[int]) -> list[Symbol | None]:
        """lookup() for many addresses in one vectorised search."""
        self._check_visible()
        wanted = [int(a) for a in addresses]
        with self._lock:
            indexes = np.searchsorted(self._addresses, np.array(wanted, dtype=np.uint64), side="right") - 1
            return [
                None if index < 0 else self._symbol_at(index, address)
                for index, address in zip(indexes.tolist(), wanted, strict=True)
            ]

    def address_of(self, name: str, module: str | None = None) -> int | None:
        """Address of a symbol (any type, not only functions) by exact name; None if absent."""
        self._check_visible()
        tail = rb"\t\[" + re.escape(module.encode()) + rb"\]$" if module else rb"(?:\t\[[^\]]*\])?$"
        pattern = rb"^([0-9a-fA-F]+) \w " + re.escape(name.encode()) + tail
        match = re.search(pattern, self._data, re.M)
        return int(match.group(1), 16) if match else None


_shared: KernelSymbols | None = None
_shared_lock = threading.Lock()


def kernel_symbols(refresh: bool = False) -> KernelSymbols:
    """The process-wide KernelSymbols, loaded on first use (refresh=True re-reads /proc/kallsyms)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = KernelSymbols()
        elif refresh:
            _shared.refresh()
        return _shared
