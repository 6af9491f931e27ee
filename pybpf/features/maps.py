"""Probes of map types: create the smallest valid map of each type, as libbpf does.

Each type has its own idea of a valid map: queues and ring buffers have no keys, ring buffers are sized
in pages, maps of maps need an inner map, local-storage maps need BTF for their value, cgroup storage is
keyed by ``struct bpf_cgroup_storage_key``. struct_ops maps need a kernel struct type in BTF: asking for
type id 1 gets ENOTSUPP from kernels that have them.
"""

from __future__ import annotations

import errno as _errno
import functools
from typing import Any

from pybpf._sys import types as T
from pybpf.errors import ENOTSUPP, NotSupportedError
from pybpf.features._probe import ProbeResult, create_map, errno_name, page_size
from pybpf.features.btf import storage_btf
from pybpf.features.versions import first_kernel

__all__ = ["have_map_type", "map_type_name", "map_types", "probe_map_type", "require_map_type"]

_CGROUP_STORAGE_KEY_SIZE = 16  # struct bpf_cgroup_storage_key { __u64 cgroup_inode_id; __u32 attach_type; }
_STORAGE_MAPS = frozenset({T.MapType.SK_STORAGE, T.MapType.INODE_STORAGE, T.MapType.TASK_STORAGE,
                           T.MapType.CGRP_STORAGE})


def map_type_name(map_type: T.MapType | int) -> str:
    """``MapType.LRU_HASH`` -> ``"lru_hash"`` (bpftool's spelling; aliases use the current name)."""
    return T.MapType(map_type).name.lower().removesuffix("_deprecated")


def map_types() -> list[T.MapType]:
    """Every map type this pybpf knows (UNSPEC excluded, aliases once)."""
    return [t for t in T.MapType if t != T.MapType.UNSPEC]


def _probe_args(map_type: T.MapType) -> tuple[dict[str, Any], int]:
    """create_map() arguments of a minimal map of this type, and an errno that also proves support."""
    M = T.MapType
    args: dict[str, Any] = {}
    expected = 0
    if map_type == M.LPM_TRIE:
        args = {"key_size": 8, "value_size": 8, "flags": T.BPF_F_NO_PREALLOC}
    elif map_type == M.STACK_TRACE:
        args = {"value_size": 8}
    elif map_type in (M.QUEUE, M.STACK, M.BLOOM_FILTER):
        args = {"key_size": 0}
    elif map_type in (M.RINGBUF, M.USER_RINGBUF):
        args = {"key_size": 0, "value_size": 0, "max_entries": page_size()}
    elif map_type in (M.CGROUP_STORAGE, M.PERCPU_CGROUP_STORAGE):
        args = {"key_size": _CGROUP_STORAGE_KEY_SIZE, "max_entries": 0}
    elif map_type in _STORAGE_MAPS:
        args = {"value_size": 8, "max_entries": 0, "flags": T.BPF_F_NO_PREALLOC, "btf_key_type_id": 1,
                "btf_value_type_id": 3}
    elif map_type == M.STRUCT_OPS:
        args = {"btf_vmlinux_value_type_id": 1}
        expected = ENOTSUPP
    elif map_type == M.ARENA:
        args = {"key_size": 0, "value_size": 0, "flags": T.BPF_F_MMAPABLE}
    return args, expected


@functools.cache
def probe_map_type(map_type: T.MapType) -> ProbeResult:
    """Whether the kernel can create maps of `map_type` (cached per process)."""
    map_type = T.MapType(map_type)
    if map_type == T.MapType.UNSPEC:
        return ProbeResult(False, _errno.EINVAL, "not a map type")
    args, expected = _probe_args(map_type)
    keep = []
    if map_type in (T.MapType.ARRAY_OF_MAPS, T.MapType.HASH_OF_MAPS):
        inner, err = create_map(T.MapType.ARRAY)
        if inner is None:
            return ProbeResult(False, err, f"cannot create the inner array map ({errno_name(err)})")
        keep.append(inner)
        args["inner_map_fd"] = int(inner)
    elif map_type in _STORAGE_MAPS:
        btf, err = storage_btf()
        if btf is None:
            return ProbeResult(False, err, f"needs BTF, which this kernel rejects ({errno_name(err)})")
        keep.append(btf)
        args["btf_fd"] = int(btf)
    try:
        fd, err = create_map(map_type, **args)
    finally:
        for owned in keep:
            owned.close()
    if fd is not None:
        fd.close()
        return ProbeResult(True)
    if expected and err == expected:
        return ProbeResult(True, err, "known; needs a kernel struct type to create")
    if err in (_errno.EINVAL, _errno.E2BIG):
        return ProbeResult(False, err, f"unknown to this kernel ({errno_name(err)})")
    return ProbeResult(False, err, f"cannot be created here ({errno_name(err)})")


def have_map_type(map_type: T.MapType) -> bool:
    return probe_map_type(map_type).supported


def require_map_type(map_type: T.MapType) -> None:
    """Raise NotSupportedError unless the kernel can create maps of `map_type`."""
    result = probe_map_type(map_type)
    if not result.supported:
        raise NotSupportedError(
            f"map type {map_type_name(map_type).upper()}", first_kernel("map_type", map_type), result.errno,
            detail=result.reason(),
        )
