"""Symbolisation: kernel (/proc/kallsyms), ELF files, running processes, build-ids; folded stacks."""

from pybpf.symbols.elf import (
    ElfSymbols,
    LoadSegment,
    Symbol,
    SymbolNotFoundError,
    read_build_id,
    resolve_uprobe_offset,
)
from pybpf.symbols.kernel import KernelSymbols, kernel_symbols
from pybpf.symbols.libs import find_library, ld_so_cache, resolve_binary
from pybpf.symbols.process import BuildIdSymbols, Mapping, ProcessSymbols, elf_symbols, read_maps
from pybpf.symbols.stacks import (
    UNKNOWN,
    BuildIdFrame,
    build_id_stack,
    fold_stacks,
    format_frame,
    parse_build_id_stack,
    process_symbols,
    stack_addresses,
    symbolize_build_id_stack,
    symbolize_kernel_stack,
    symbolize_user_stack,
)

__all__ = [
    "UNKNOWN",
    "BuildIdFrame",
    "BuildIdSymbols",
    "ElfSymbols",
    "KernelSymbols",
    "LoadSegment",
    "Mapping",
    "ProcessSymbols",
    "Symbol",
    "SymbolNotFoundError",
    "build_id_stack",
    "elf_symbols",
    "find_library",
    "fold_stacks",
    "format_frame",
    "kernel_symbols",
    "ld_so_cache",
    "parse_build_id_stack",
    "process_symbols",
    "read_build_id",
    "read_maps",
    "resolve_binary",
    "resolve_uprobe_offset",
    "stack_addresses",
    "symbolize_build_id_stack",
    "symbolize_kernel_stack",
    "symbolize_user_stack",
]
