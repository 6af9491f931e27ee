"""Compile BPF C with clang (cached by content hash) and generate vmlinux.h for the running kernel."""

from pybpf.toolchain._paths import (
    ClangNotFoundError,
    cache_root,
    find_clang,
    include_dirs,
    target_arch,
    target_arch_define,
)
from pybpf.toolchain.clang import (
    BASE_CFLAGS,
    CompileError,
    CompileResult,
    build_cache_dir,
    compile,
    compile_with_info,
)
from pybpf.toolchain.vmlinux import ensure_vmlinux_h, kernel_btf_hash

__all__ = [
    "BASE_CFLAGS",
    "ClangNotFoundError",
    "CompileError",
    "CompileResult",
    "build_cache_dir",
    "cache_root",
    "compile",
    "compile_with_info",
    "ensure_vmlinux_h",
    "find_clang",
    "include_dirs",
    "kernel_btf_hash",
    "target_arch",
    "target_arch_define",
]
