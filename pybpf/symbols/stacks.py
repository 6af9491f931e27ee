"""Stack symbolisation and the folded-stack format for flame graphs."""

from __future__ import annotations

import ctypes
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple, TypeVar

from pybpf._sys.types import BPF_F_STACK_BUILD_ID, MapType, StackBuildId
from pybpf.symbols.elf import Symbol
from pybpf.symbols.kernel import kernel_symbols
from pybpf.symbols.process import BuildIdSymbols, ProcessSymbols

__all__ = [
    "UNKNOWN",
    "BuildIdFrame",
    "build_id_stack",
    "fold_stacks",
    "format_frame",
    "parse_build_id_stack",
    "process_symbols",
    "stack_addresses",
    "symbolize_build_id_stack",
    "symbolize_kernel_stack",
    "symbolize_user_stack",
]

UNKNOWN = "[unknown]"
_T = TypeVar("_T")
_PROCESS_CACHE_SIZE = 64

_processes: OrderedDict[int, tuple[int, ProcessSymbols]] = OrderedDict()
_build_ids: OrderedDict[int | None, tuple[int, BuildIdSymbols]] = OrderedDict()
_processes_lock = threading.Lock()


def format_frame(symbol: Symbol | None, *, offsets: bool = False, modules: bool = False) -> str:
    """`name`, `name+0x1f` with offsets, and ` [module]` (basename) appended with modules."""
    if symbol is None:
        return UNKNOWN
    text = f"{symbol.name}+{symbol.offset:#x}" if offsets else symbol.name
    if modules and symbol.module:
        text += f" [{os.path.basename(symbol.module)}]"
    return text


def symbolize_kernel_stack(
    addrs: Iterable[int], *, offsets: bool = False, modules: bool = False
) -> list[str]:
    """Kernel stack addresses (leaf first, as bpf_get_stack returns them) to names. A 0 ends the stack.

    Frames after the first are return addresses and are looked up one byte earlier (see _callers_adjusted).
    Uses the process-wide kallsyms snapshot; call kernel_symbols(refresh=True) after loading BPF programs
    whose frames should resolve to bpf_prog_<tag>_<name>.
    """
    frames = _until_zero(addrs)
    symbols = _callers_adjusted(frames, kernel_symbols().lookup_many)
    return [format_frame(s, offsets=offsets, modules=modules) for s in symbols]


def _callers_adjusted(
    frames: list[int], lookup_many: Callable[[list[int]], list[Symbol | None]]
) -> list[Symbol | None]:
    """Symbols for a leaf-first stack. Every frame but the leaf is a return address, the instruction after a
    call; when the call was a function's last instruction (a call to a noreturn function such as abort or
    __stack_chk_fail) that address is already the next function. So callers are looked up at address - 1
    (inside the call), and offsets are reported for the address itself."""
    if not frames:
        return []
    found = lookup_many([frames[0], *(a - 1 for a in frames[1:])])
    return [found[0], *(s._replace(offset=s.offset + 1) if s is not None else None for s in found[1:])]


def process_symbols(pid: int) -> ProcessSymbols:
    """A cached ProcessSymbols for a pid (re-created if the pid was reused by a new process)."""
    return _per_process(_processes, pid, ProcessSymbols)


def _build_id_symbols(pid: int | None) -> BuildIdSymbols:
    """A cached BuildIdSymbols indexing the files `pid` maps (none for None), re-created like process_symbols();
    it rescans the process itself when a build-id is missing, so files mapped later are still found."""
    return _per_process(_build_ids, pid, lambda p: BuildIdSymbols(pids=[p] if p is not None else []))


def _per_process(cache: OrderedDict[Any, tuple[int, _T]], pid: int | None, make: Callable[[Any], _T]) -> _T:
    """cache[pid], or a new make(pid) when missing or the pid now names another process (another start time)."""
    started = _start_time(pid) if pid is not None else 0
    with _processes_lock:
        cached = cache.get(pid)
        if cached is not None and cached[0] == started:
            cache.move_to_end(pid)
            return cached[1]
    table = make(pid)
    with _processes_lock:
        cache[pid] = (started, table)
        while len(cache) > _PROCESS_CACHE_SIZE:
            cache.popitem(last=False)
    return table


def symbolize_user_stack(
    pid: int, addrs: Iterable[int], *, offsets: bool = False, modules: bool = False
) -> list[str]:
    """User stack addresses of process `pid` (leaf first) to names; `[unknown]` where nothing resolves
    (anonymous memory, a process that has exited). A 0 ends the stack; callers (every frame but the first)
    are looked up one byte early, as in symbolize_kernel_stack."""
    table = process_symbols(pid)
    symbols = _callers_adjusted(_until_zero(addrs), lambda wanted: [table.lookup(a) for a in wanted])
    return [format_frame(s, offsets=offsets, modules=modules) for s in symbols]


# ----- stack trace maps ---------------------------------------------------------------------------------------


def stack_addresses(stack_map: Any, stack_id: int) -> list[int]:
    """The addresses of one stack of a BPF_MAP_TYPE_STACK_TRACE map (leaf first, zero padding dropped), as
    symbolize_kernel_stack / symbolize_user_stack take them.

    `stack_id` is what bpf_get_stackid() returned; a negative id (the helper failed: -EFAULT, -EEXIST on a
    hash collision without BPF_F_REUSE_STACKID) or an id no longer in the map gives []. Build-id maps
    (BPF_F_STACK_BUILD_ID) hold no addresses: read those with build_id_stack().
    """
    if _is_build_id_map(stack_map):
        raise ValueError(f"stack map {getattr(stack_map, 'name', '?')!r} holds build-id entries "
                         "(BPF_F_STACK_BUILD_ID): read it with build_id_stack()")
    return _until_zero(_stack_words(stack_map, stack_id))


class BuildIdFrame(NamedTuple):
    """One `struct bpf_stack_build_id`: where the kernel could read the file's build-id, `build_id` (20 bytes,
    zero-padded) and `offset` (a file offset); otherwise (`valid` False) `offset` is the raw address."""

    valid: bool
    build_id: bytes
    offset: int


_STACK_BUILD_ID_VALID = 1  # enum bpf_stack_build_id_status (not in pybpf._sys.types): 0 EMPTY, 1 VALID, 2 IP


def parse_build_id_stack(data: bytes) -> list[BuildIdFrame]:
    """An array of `struct bpf_stack_build_id` (a build-id stack map value, or what bpf_get_stack(...,
    BPF_F_USER_STACK | BPF_F_USER_BUILD_ID) wrote) to frames, leaf first; the first EMPTY entry ends it."""
    size = ctypes.sizeof(StackBuildId)
    frames: list[BuildIdFrame] = []
    for start in range(0, len(data) - size + 1, size):
        entry = StackBuildId.from_buffer_copy(data, start)
        if entry.status == 0:
            break
        if entry.status == _STACK_BUILD_ID_VALID:
            frames.append(BuildIdFrame(True, bytes(entry.build_id), int(entry.offset)))
        else:
            frames.append(BuildIdFrame(False, b"", int(entry.ip)))
    return frames


def build_id_stack(stack_map: Any, stack_id: int) -> list[BuildIdFrame]:
    """One stack of a BPF_F_STACK_BUILD_ID stack trace map; [] for a negative or vanished `stack_id`."""
    if not _is_build_id_map(stack_map):
        raise ValueError(f"stack map {getattr(stack_map, 'name', '?')!r} has no BPF_F_STACK_BUILD_ID flag: "
                         "read it with stack_addresses()")
    words = _stack_words(stack_map, stack_id)
    return parse_build_id_stack(struct.pack(f"={len(words)}Q", *words))


def symbolize_build_id_stack(
    frames: Iterable[BuildIdFrame],
    resolver: BuildIdSymbols | None = None,
    *,
    pid: int | None = None,
    offsets: bool = False,
    modules: bool = False,
) -> list[str]:
    """Names for build-id frames (leaf first). Files are found by `resolver` (default: one indexing the files
    `pid` maps, plus /usr/lib/debug/.build-id); frames the kernel left as plain addresses go through the
    process symboliser of `pid` (or become [unknown] without one). Callers are looked up one byte early,
    as in symbolize_user_stack."""
    listed = list(frames)
    if resolver is None:
        resolver = _build_id_symbols(pid)
    table = process_symbols(pid) if pid is not None else None

    def lookup_many(wanted: list[int]) -> list[Symbol | None]:
        found: list[Symbol | None] = []
        for frame, where in zip(listed, wanted, strict=True):
            if frame.valid:
                found.append(resolver.lookup(frame.build_id, where))
            else:
                found.append(table.lookup(where) if table is not None else None)
        return found

    symbols = _callers_adjusted([f.offset for f in listed], lookup_many)
    return [format_frame(s, offsets=offsets, modules=modules) for s in symbols]


def _is_build_id_map(stack_map: Any) -> bool:
    kind = getattr(stack_map, "type", MapType.STACK_TRACE)
    if kind != MapType.STACK_TRACE:
        raise ValueError(f"map {getattr(stack_map, 'name', '?')!r} is {MapType(kind).name}, not STACK_TRACE")
    return bool(int(getattr(stack_map, "flags", 0)) & BPF_F_STACK_BUILD_ID)


def _stack_words(stack_map: Any, stack_id: int) -> Sequence[int]:
    """One entry as u64 words, whatever value codec the map has (pybpf.map decodes stack maps as a tuple of u64
    by default, build-id maps included; raw bytes are unpacked); () for a negative or vanished `stack_id`."""
    value = stack_map.lookup(stack_id) if stack_id >= 0 else None
    if value is None:
        return ()
    if isinstance(value, bytes | bytearray | memoryview | ctypes.Array | ctypes.Structure):
        data = bytes(value)
        return struct.unpack(f"={len(data) // 8}Q", data[: len(data) // 8 * 8])
    words: Sequence[int] = value  # the default codec's tuple of u64
    return words


def fold_stacks(stacks: Iterable[tuple[Sequence[str], int]], *, leaf_first: bool = True) -> str:
    """Folded stacks (`root;caller;leaf COUNT` per line, as flamegraph.pl and speedscope read them).

    Stacks come leaf first (the kernel's order) unless leaf_first=False; identical stacks are merged and
    lines are sorted. `;` inside a frame becomes `:` and newlines become spaces, so lines stay parseable.
    """
    totals: dict[str, int] = {}
    for frames, count in stacks:
        if count <= 0:
            continue
        ordered = reversed(frames) if leaf_first else frames
        line = ";".join(_clean(f) for f in ordered) or UNKNOWN
        totals[line] = totals.get(line, 0) + count
    return "".join(f"{line} {count}\n" for line, count in sorted(totals.items()))


def _clean(frame: str) -> str:
    return frame.replace(";", ":").replace("\n", " ").replace("\r", " ") or UNKNOWN


def _until_zero(addrs: Iterable[int]) -> list[int]:
    frames: list[int] = []
    for address in addrs:
        if not address:
            break
        frames.append(int(address))
    return frames


def _start_time(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return -1
    # fields after the command name (which may contain spaces and parentheses); starttime is field 22
    return int(stat[stat.rindex(b")") + 2 :].split()[19])
