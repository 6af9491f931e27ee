"""The first upstream kernel release that has each feature.

These are facts about kernel history (from the kernel's git log, as collected in BCC's
docs/kernel-versions.md and the kernel's own documentation), not ABI: they only feed error messages
("needs Linux 5.8 or newer"). Backports (RHEL, Android) can make a feature appear earlier.
"""

from __future__ import annotations

import bisect

from pybpf._sys import enum_or_int
from pybpf._sys import types as T

__all__ = ["HELPER_RANGES", "MAP_TYPES", "MISC", "PROG_TYPES", "first_kernel", "helper_first_kernel"]

PROG_TYPES: dict[str, str] = {
    "SOCKET_FILTER": "3.19",
    "KPROBE": "4.1",
    "SCHED_CLS": "4.1",
    "SCHED_ACT": "4.1",
    "TRACEPOINT": "4.7",
    "XDP": "4.8",
    "PERF_EVENT": "4.9",
    "CGROUP_SKB": "4.10",
    "CGROUP_SOCK": "4.10",
    "LWT_IN": "4.10",
    "LWT_OUT": "4.10",
    "LWT_XMIT": "4.10",
    "SOCK_OPS": "4.13",
    "SK_SKB": "4.14",
    "CGROUP_DEVICE": "4.15",
    "SK_MSG": "4.17",
    "RAW_TRACEPOINT": "4.17",
    "CGROUP_SOCK_ADDR": "4.17",
    "LWT_SEG6LOCAL": "4.18",
    "LIRC_MODE2": "4.18",
    "SK_REUSEPORT": "4.19",
    "FLOW_DISSECTOR": "4.20",
    "CGROUP_SYSCTL": "5.2",
    "RAW_TRACEPOINT_WRITABLE": "5.2",
    "CGROUP_SOCKOPT": "5.3",
    "TRACING": "5.5",
    "STRUCT_OPS": "5.6",
    "EXT": "5.6",
    "LSM": "5.7",
    "SK_LOOKUP": "5.9",
    "SYSCALL": "5.14",
    "NETFILTER": "6.4",
}

MAP_TYPES: dict[str, str] = {
    "HASH": "3.19",
    "ARRAY": "3.19",
    "PROG_ARRAY": "4.2",
    "PERF_EVENT_ARRAY": "4.3",
    "PERCPU_HASH": "4.6",
    "PERCPU_ARRAY": "4.6",
    "STACK_TRACE": "4.6",
    "CGROUP_ARRAY": "4.8",
    "LRU_HASH": "4.10",
    "LRU_PERCPU_HASH": "4.10",
    "LPM_TRIE": "4.11",
    "ARRAY_OF_MAPS": "4.12",
    "HASH_OF_MAPS": "4.12",
    "DEVMAP": "4.14",
    "SOCKMAP": "4.14",
    "CPUMAP": "4.15",
    "XSKMAP": "4.18",
    "SOCKHASH": "4.18",
    "CGROUP_STORAGE": "4.19",
    "REUSEPORT_SOCKARRAY": "4.19",
    "PERCPU_CGROUP_STORAGE": "4.20",
    "QUEUE": "4.20",
    "STACK": "4.20",
    "SK_STORAGE": "5.2",
    "DEVMAP_HASH": "5.4",
    "STRUCT_OPS": "5.6",
    "RINGBUF": "5.8",
    "INODE_STORAGE": "5.10",
    "TASK_STORAGE": "5.11",
    "BLOOM_FILTER": "5.16",
    "USER_RINGBUF": "6.1",
    "CGRP_STORAGE": "6.2",
    "ARENA": "6.9",
}

# Helper ids are handed out in order, so "the last id each release added" dates every helper:
# (last helper id, release). E.g. ids 130-135 (ringbuf_*, csum_level) arrived in 5.8.
HELPER_RANGES: list[tuple[int, str]] = [
    (3, "3.19"),
    (11, "4.1"),
    (16, "4.2"),
    (22, "4.3"),
    (25, "4.4"),
    (26, "4.5"),
    (30, "4.6"),
    (36, "4.8"),
    (41, "4.9"),
    (44, "4.10"),
    (45, "4.11"),
    (47, "4.12"),
    (50, "4.13"),
    (53, "4.14"),
    (57, "4.15"),
    (59, "4.16"),
    (64, "4.17"),
    (80, "4.18"),
    (83, "4.19"),
    (90, "4.20"),
    (92, "5.0"),
    (98, "5.1"),
    (108, "5.2"),
    (110, "5.3"),
    (118, "5.5"),
    (123, "5.6"),
    (129, "5.7"),
    (135, "5.8"),
    (141, "5.9"),
    (155, "5.10"),
    (162, "5.11"),
    (163, "5.12"),
    (165, "5.13"),
    (168, "5.14"),
    (175, "5.15"),
    (179, "5.16"),
    (185, "5.17"),
    (193, "5.18"),
    (203, "5.19"),
    (207, "6.0"),
    (209, "6.1"),
    (211, "6.2"),
]
_HELPER_LAST_IDS = [last for last, _ in HELPER_RANGES]

MISC: dict[str, str] = {
    "bpf_syscall": "3.18",
    "prog_name": "4.15",
    "map_name": "4.15",
    "large_insn_limit": "5.2",
    "bounded_loops": "5.3",
    "isa_v2": "4.14",
    "isa_v3": "5.1",
    "isa_v4": "6.6",
    "may_goto": "6.9",
    "global_data": "5.2",
    "mmapable_maps": "5.5",
    "enable_stats": "5.8",
    "ringbuf": "5.8",
    "bpf_cookie": "5.15",
    "kprobe_pmu": "4.17",
    "uprobe_pmu": "4.17",
    "kprobe_multi": "5.18",
    "uprobe_multi": "6.6",
    "btf": "4.18",
    "btf_func": "5.0",
    "btf_global_func": "5.6",
    "btf_datasec": "5.2",
    "btf_float": "5.13",
    "btf_decl_tag": "5.16",
    "btf_type_tag": "5.17",
    "btf_enum64": "6.0",
    "link_create": "5.7",
    "cgroup_link": "5.7",
    "netns_link": "5.8",
    "xdp_link": "5.9",
    "perf_event_link": "5.15",
    "kprobe_multi_link": "5.18",
    "uprobe_multi_link": "6.6",
    "netfilter_link": "6.4",
    "tcx_link": "6.6",
    "netkit_link": "6.7",
    "sockmap_link": "6.10",
}


def helper_first_kernel(helper: int) -> str:
    """First release with helper id `helper` ("" if newer than this table)."""
    k = bisect.bisect_left(_HELPER_LAST_IDS, int(helper))
    return HELPER_RANGES[k][1] if k < len(HELPER_RANGES) else ""


def _enum_key(value: object) -> str:
    if isinstance(value, str):
        return value.upper()
    name = getattr(value, "name", None)
    return str(name) if name is not None else str(value)


def first_kernel(kind: str, value: object) -> str:
    """First release with a feature: ``first_kernel("map_type", MapType.RINGBUF) == "5.8"``.

    `kind` is "prog_type", "map_type", "helper" or "misc"; "" when unknown.
    """
    if kind == "helper":
        if isinstance(value, str):
            try:
                value = T.BpfFuncId[value.removeprefix("bpf_")]
            except KeyError:
                return ""
        return helper_first_kernel(int(value))  # type: ignore[call-overload]
    if kind in ("prog_type", "map_type"):  # a plain int becomes a member; one this pybpf does not know: ""
        members = T.ProgType if kind == "prog_type" else T.MapType
        if isinstance(value, int) and not isinstance(value, members):
            value = enum_or_int(members, value)
            if not isinstance(value, members):
                return ""
    if kind == "prog_type":
        return PROG_TYPES.get(_enum_key(value), "")
    if kind == "map_type":
        # MapType aliases (CGROUP_STORAGE_DEPRECATED) share a value: match either name.
        return MAP_TYPES.get(_enum_key(value).removesuffix("_DEPRECATED"), "")
    if kind == "misc":
        return MISC.get(str(value), "")
    raise ValueError(f"unknown feature kind {kind!r}: use prog_type, map_type, helper or misc")
