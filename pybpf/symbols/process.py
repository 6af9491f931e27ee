"""User-space symbols of running processes: /proc/PID/maps, per-file ELF symbols, build-id lookups."""

from __future__ import annotations

import bisect
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from pybpf.errors import ObjectError
from pybpf.symbols.elf import DEBUG_DIR, ElfSymbols, Symbol, read_build_id

__all__ = ["BuildIdSymbols", "Mapping", "ProcessSymbols", "elf_symbols", "read_maps"]

_CACHE_SIZE = 128
_REFRESH_INTERVAL = 1.0  # seconds between re-reads of maps when an address falls outside every mapping
_BUILD_ID_SIZE = 20  # BPF_BUILD_ID_SIZE: the kernel zero-pads shorter build-ids to this length

_elf_cache: OrderedDict[tuple[int, int, int, int], ElfSymbols | None] = OrderedDict()
_elf_lock = threading.Lock()


def elf_symbols(path: str, name: str | None = None) -> ElfSymbols:
    """ElfSymbols for a file, shared process-wide and keyed by (device, inode, mtime, size), so an updated
    file is re-read and hard links or /proc/PID/root aliases share one table. Raises ObjectError."""
    found = _elf_symbols_or_none(path, name)
    if found is None:
        raise ObjectError("no ELF symbols (not an ELF file or unreadable)", path=path)
    return found


def _elf_symbols_or_none(path: str, name: str | None = None) -> ElfSymbols | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    key = (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)
    with _elf_lock:
        if key in _elf_cache:
            _elf_cache.move_to_end(key)
            return _elf_cache[key]
    try:
        table: ElfSymbols | None = ElfSymbols(path, name=name)
    except ObjectError:
        table = None  # remembered too: a non-ELF mapping (a font, a locale archive) is not re-parsed
    with _elf_lock:
        _elf_cache[key] = table
        while len(_elf_cache) > _CACHE_SIZE:
            _elf_cache.popitem(last=False)
    return table


@dataclass(frozen=True)
class Mapping:
    """One line of /proc/PID/maps."""

    start: int
    end: int
    perms: str
    offset: int  # file offset of `start`
    inode: int
    path: str  # "" for anonymous memory, "[vdso]", "[heap]", or a file ("... (deleted)" once unlinked)

    @property
    def is_file(self) -> bool:
        return self.inode != 0 and self.path.startswith("/")

    @property
    def deleted(self) -> bool:
        return self.path.endswith(" (deleted)")

    @property
    def file_path(self) -> str:
        return self.path[: -len(" (deleted)")] if self.deleted else self.path


def read_maps(pid: int) -> list[Mapping]:
    """The mappings of a process, sorted by address. Raises OSError if the process is gone."""
    with open(f"/proc/{pid}/maps", "rb") as f:
        text = f.read().decode(errors="replace")
    mappings: list[Mapping] = []
    for line in text.splitlines():
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        start, _, end = parts[0].partition("-")
        mappings.append(
            Mapping(
                int(start, 16),
                int(end, 16),
                parts[1],
                int(parts[2], 16),
                int(parts[4]),
                parts[5].strip() if len(parts) > 5 else "",
            )
        )
    mappings.sort(key=lambda m: m.start)
    return mappings


class ProcessSymbols:
    """Symbolises addresses in one process: address -> mapping -> file offset -> ELF symbol.

    Works for PIE and non-PIE executables and shared libraries alike (the file offset does not depend on
    the load address), reads files through /proc/PID/map_files or /proc/PID/root so deleted files and
    other mount namespaces work, symbolises the vDSO from the process's memory, and uses
    /tmp/perf-PID.map (written by JITs) for anonymous memory. What cannot be resolved gives None.
    """

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._mappings: list[Mapping] = []
        self._starts: list[int] = []
        self._loaded_at = float("-inf")
        self._vdso: ElfSymbols | None = None
        self._perf_map: tuple[list[int], list[tuple[int, str]]] | None = None
        self._lock = threading.Lock()
        self.alive = True
        self.refresh()

    def __repr__(self) -> str:
        return f"ProcessSymbols(pid={self.pid}, {len(self._mappings)} mappings)"

    def refresh(self) -> None:
        """Re-read /proc/PID/maps (after dlopen, for example)."""
        try:
            mappings = read_maps(self.pid)
        except OSError:
            mappings = []
            self.alive = False
        with self._lock:
            self._mappings = mappings
            self._starts = [m.start for m in mappings]
            self._loaded_at = time.monotonic()
            self._perf_map = None

    @property
    def mappings(self) -> list[Mapping]:
        return list(self._mappings)

    def mapping(self, address: int) -> Mapping | None:
        found = self._find_mapping(address)
        if found is None and self.alive and time.monotonic() - self._loaded_at > _REFRESH_INTERVAL:
            self.refresh()  # maybe mapped after our snapshot
            found = self._find_mapping(address)
        return found

    def _find_mapping(self, address: int) -> Mapping | None:
        with self._lock:
            i = bisect.bisect_right(self._starts, address) - 1
            if i >= 0 and address < self._mappings[i].end:
                return self._mappings[i]
        return None

    def file_offset(self, address: int) -> tuple[Mapping, int] | None:
        """(mapping, offset in its file) for an address in a file mapping."""
        found = self.mapping(address)
        if found is None or not found.is_file:
            return None
        return found, address - found.start + found.offset

    def lookup(self, address: int) -> Symbol | None:
        found = self.mapping(address)
        if found is None:
            return None
        if found.path == "[vdso]":
            vdso = self._vdso_symbols(found)
            return vdso.lookup_file_offset(address - found.start) if vdso else None
        if not found.is_file:
            return self._perf_map_lookup(address)
        table = self.elf_for(found)
        return table.lookup_file_offset(address - found.start + found.offset) if table else None

    def elf_for(self, found: Mapping) -> ElfSymbols | None:
        """The ElfSymbols of a file mapping's file (None if unreadable or not ELF)."""
        for candidate in (
            f"/proc/{self.pid}/map_files/{found.start:x}-{found.end:x}",  # the mapped inode itself (root only)
            f"/proc/{self.pid}/root{found.file_path}",
            found.file_path,
        ):
            table = _elf_symbols_or_none(candidate, name=found.file_path)
            if table is not None:
                return table
        return None

    def _vdso_symbols(self, found: Mapping) -> ElfSymbols | None:
        if self._vdso is None:
            try:
                with open(f"/proc/{self.pid}/mem", "rb") as mem:
                    mem.seek(found.start)
                    image = mem.read(found.end - found.start)
                self._vdso = ElfSymbols("[vdso]", data=image)
            except (OSError, ValueError, ObjectError):
                return None
        return self._vdso

    def _perf_map_lookup(self, address: int) -> Symbol | None:
        if self._perf_map is None:
            starts: list[int] = []
            entries: list[tuple[int, str]] = []
            try:
                with open(
                    f"/proc/{self.pid}/root/tmp/perf-{self.pid}.map", encoding="utf-8", errors="replace"
                ) as f:
                    rows = sorted(_parse_perf_map_line(line) for line in f)
            except OSError:
                rows = []
            for start, size, name in rows:
                if size:
                    starts.append(start)
                    entries.append((size, name))
            self._perf_map = (starts, entries)
        starts, entries = self._perf_map
        i = bisect.bisect_right(starts, address) - 1
        if i >= 0 and address < starts[i] + entries[i][0]:
            return Symbol(entries[i][1], address - starts[i], "[perf-map]")
        return None

    def mapped_files(self) -> list[Mapping]:
        """One executable file mapping per file, for build-id scans."""
        seen: set[tuple[int, str]] = set()
        files: list[Mapping] = []
        for found in self._mappings:
            key = (found.inode, found.file_path)
            if found.is_file and key not in seen:
                seen.add(key)
                files.append(found)
        return files


def _parse_perf_map_line(line: str) -> tuple[int, int, str]:
    # "START SIZE name with spaces", hex without 0x
    parts = line.rstrip("\n").split(" ", 2)
    try:
        return int(parts[0], 16), int(parts[1], 16), parts[2] if len(parts) > 2 else "[unknown]"
    except (ValueError, IndexError):
        return 0, 0, ""


def _pad_build_id(build_id: bytes) -> bytes:
    return build_id[:_BUILD_ID_SIZE].ljust(_BUILD_ID_SIZE, b"\0")


class BuildIdSymbols:
    """Resolves `struct bpf_stack_build_id` entries (a build-id and a file offset, as produced by
    bpf_get_stack(..., BPF_F_USER_STACK | BPF_F_USER_BUILD_ID)).

    Files are found among the files mapped by `pids`, the given `paths`, and /usr/lib/debug/.build-id.
    Entries whose status is BPF_STACK_BUILD_ID_IP (the kernel could not read the build-id) carry an address
    instead; resolve those with ProcessSymbols. An all-zero build-id (status EMPTY) resolves to None.
    """

    def __init__(self, pids: Iterable[int] = (), paths: Iterable[str] = ()) -> None:
        self._by_id: dict[bytes, str] = {}
        self._scanned: set[tuple[int, str]] = set()  # (inode, path) of mappings already read
        self._pids = list(pids)
        for path in paths:
            self.add_file(path)
        for pid in self._pids:
            self.add_process(pid)

    def add_file(self, path: str) -> bytes | None:
        """Index one file by its build-id; returns the build-id (None if it has none)."""
        build_id = read_build_id(path)
        if build_id:
            self._by_id.setdefault(_pad_build_id(build_id), path)
        return build_id

    def add_process(self, pid: int) -> None:
        """Index every file a process maps."""
        try:
            mappings = read_maps(pid)
        except OSError:
            return
        for found in mappings:
            key = (found.inode, found.file_path)
            if not found.is_file or key in self._scanned:
                continue
            self._scanned.add(key)
            # Prefer paths that outlive the process; map_files is the only way to a deleted file.
            for candidate in (
                found.file_path,
                f"/proc/{pid}/root{found.file_path}",
                f"/proc/{pid}/map_files/{found.start:x}-{found.end:x}",
            ):
                if candidate == found.file_path and found.deleted:
                    continue
                build_id = read_build_id(candidate)
                if build_id:
                    self._by_id.setdefault(_pad_build_id(build_id), candidate)
                    break

    def path_of(self, build_id: bytes) -> str | None:
        key = _pad_build_id(build_id)
        path = self._by_id.get(key)
        if path is None and any(key):
            for pid in self._pids:  # files mapped since we scanned
                self.add_process(pid)
            path = self._by_id.get(key)
            if path is None:
                hexid = build_id.rstrip(b"\0").hex()
                debug = os.path.join(DEBUG_DIR, ".build-id", hexid[:2], hexid[2:] + ".debug")
                if os.path.isfile(debug):
                    path = self._by_id[key] = debug
        return path

    def lookup(self, build_id: bytes, offset: int) -> Symbol | None:
        """The function at `offset` in the file with this build-id, or None."""
        path = self.path_of(build_id)
        if path is None:
            return None
        table = _elf_symbols_or_none(path)
        return table.lookup_file_offset(offset) if table else None

    def symbolize(self, entries: Iterable[tuple[bytes, int]]) -> list[Symbol | None]:
        return [self.lookup(build_id, offset) for build_id, offset in entries]
