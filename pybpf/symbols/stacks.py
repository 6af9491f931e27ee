"""Stack symbolisation and the folded-stack format for flame graphs."""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence

from pybpf.symbols.elf import Symbol
from pybpf.symbols.kernel import kernel_symbols
from pybpf.symbols.process import ProcessSymbols

__all__ = [
    "UNKNOWN",
    "fold_stacks",
    "format_frame",
    "process_symbols",
    "symbolize_kernel_stack",
    "symbolize_user_stack",
]

UNKNOWN = "[unknown]"
_PROCESS_CACHE_SIZE = 64

_processes: OrderedDict[int, tuple[int, ProcessSymbols]] = OrderedDict()
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

    Uses the process-wide kallsyms snapshot; call kernel_symbols(refresh=True) after loading BPF programs
    whose frames should resolve to bpf_prog_<tag>_<name>.
    """
    frames = _until_zero(addrs)
    symbols = kernel_symbols().lookup_many(frames)
    return [format_frame(s, offsets=offsets, modules=modules) for s in symbols]


def process_symbols(pid: int) -> ProcessSymbols:
    """A cached ProcessSymbols for a pid (re-created if the pid was reused by a new process)."""
    started = _start_time(pid)
    with _processes_lock:
        cached = _processes.get(pid)
        if cached is not None and cached[0] == started:
            _processes.move_to_end(pid)
            return cached[1]
    table = ProcessSymbols(pid)
    with _processes_lock:
        _processes[pid] = (started, table)
        while len(_processes) > _PROCESS_CACHE_SIZE:
            _processes.popitem(last=False)
    return table


def symbolize_user_stack(
    pid: int, addrs: Iterable[int], *, offsets: bool = False, modules: bool = False
) -> list[str]:
    """User stack addresses of process `pid` (leaf first) to names; `[unknown]` where nothing resolves
    (anonymous memory, a process that has exited). A 0 ends the stack."""
    table = process_symbols(pid)
    return [format_frame(table.lookup(a), offsets=offsets, modules=modules) for a in _until_zero(addrs)]


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
