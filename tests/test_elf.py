"""pybpf.elf: object files -> specs (programs, maps, globals, externs, relocations, subprograms).

Reading never touches the kernel; these tests compile real objects with clang and check the specs
against what libbpf derives from the same objects (its section table, map naming, relocation rules).
"""

from __future__ import annotations

import shutil
import struct
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pybpf import asm, elf
from pybpf._sys import types as T
from pybpf.btf import Datasec, Func, Struct, Typedef, sizeof
from pybpf.btf.ext import CoreReloKind
from pybpf.elf import CollectionSpec, find_section_def

A = T.AttachType
P = T.ProgType


@pytest.fixture(scope="module")
def read_obj(
    bpf_obj: Callable[[str], Path], tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], CollectionSpec]:
    """read_obj("elf_maps") compiles tests/bpf/elf_maps.bpf.c and reads it from `elf_maps.bpf.o`, so the
    object name (and global data map names) are what libbpf would derive from that file name."""
    cache: dict[str, CollectionSpec] = {}
    tmp = tmp_path_factory.mktemp("elf")

    def read(name: str) -> CollectionSpec:
        if name not in cache:
            target = tmp / f"{name}.bpf.o"
            shutil.copyfile(bpf_obj(name), target)
            cache[name] = elf.read(target)
        return cache[name]

    return read


# ---- section names -------------------------------------------------------------------------------------

SLEEP = T.BPF_F_SLEEPABLE
FRAGS = T.BPF_F_XDP_HAS_FRAGS

# program -> (type, expected attach type, attach target, flags): libbpf's section_defs for each section.
SECTION_TABLE: dict[str, tuple[T.ProgType, T.AttachType | None, str, int]] = {
    "p_socket": (P.SOCKET_FILTER, None, "", 0),
    "p_sk_reuseport": (P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT, "", 0),
    "p_sk_reuseport_migrate": (P.SK_REUSEPORT, A.SK_REUSEPORT_SELECT_OR_MIGRATE, "", 0),
    "p_kprobe": (P.KPROBE, None, "do_unlinkat", 0),
    "p_kprobe_bare": (P.KPROBE, None, "", 0),
    "p_kretprobe": (P.KPROBE, None, "do_unlinkat", 0),
    "p_uprobe": (P.KPROBE, None, "/bin/bash:readline", 0),
    "p_uprobe_s": (P.KPROBE, None, "/bin/bash:readline", SLEEP),
    "p_uretprobe": (P.KPROBE, None, "/bin/bash:readline", 0),
    "p_uretprobe_s": (P.KPROBE, None, "/bin/bash:readline", SLEEP),
    "p_ksyscall": (P.KPROBE, None, "openat", 0),
    "p_kretsyscall": (P.KPROBE, None, "openat", 0),
    "p_usdt": (P.KPROBE, None, "./prog:provider:name", 0),
    "p_usdt_s": (P.KPROBE, None, "./prog:provider:name", SLEEP),
    "p_kprobe_multi": (P.KPROBE, A.TRACE_KPROBE_MULTI, "do_*", 0),
    "p_kretprobe_multi": (P.KPROBE, A.TRACE_KPROBE_MULTI, "do_*", 0),
    "p_uprobe_multi": (P.KPROBE, A.TRACE_UPROBE_MULTI, "/bin/bash:read*", 0),
    "p_uretprobe_multi": (P.KPROBE, A.TRACE_UPROBE_MULTI, "/bin/bash:read*", 0),
    "p_uprobe_multi_s": (P.KPROBE, A.TRACE_UPROBE_MULTI, "/bin/bash:read*", SLEEP),
    "p_kprobe_session": (P.KPROBE, A.TRACE_KPROBE_SESSION, "do_*", 0),
    "p_tc": (P.SCHED_CLS, None, "", 0),
    "p_tc_ingress": (P.SCHED_CLS, A.TCX_INGRESS, "", 0),
    "p_tc_egress": (P.SCHED_CLS, A.TCX_EGRESS, "", 0),
    "p_tcx_ingress": (P.SCHED_CLS, A.TCX_INGRESS, "", 0),
    "p_tcx_egress": (P.SCHED_CLS, A.TCX_EGRESS, "", 0),
    "p_netkit_primary": (P.SCHED_CLS, A.NETKIT_PRIMARY, "", 0),
    "p_netkit_peer": (P.SCHED_CLS, A.NETKIT_PEER, "", 0),
    "p_classifier": (P.SCHED_CLS, None, "", 0),
    "p_action": (P.SCHED_ACT, None, "", 0),
    "p_tracepoint": (P.TRACEPOINT, None, "syscalls/sys_enter_openat", 0),
    "p_tp": (P.TRACEPOINT, None, "sched/sched_switch", 0),
    "p_raw_tracepoint": (P.RAW_TRACEPOINT, None, "sched_switch", 0),
    "p_raw_tp": (P.RAW_TRACEPOINT, None, "sched_switch", 0),
    "p_raw_tracepoint_w": (P.RAW_TRACEPOINT_WRITABLE, None, "bpf_test_finish", 0),
    "p_raw_tp_w": (P.RAW_TRACEPOINT_WRITABLE, None, "bpf_test_finish", 0),
    "p_tp_btf": (P.TRACING, A.TRACE_RAW_TP, "sched_switch", 0),
    "p_fentry": (P.TRACING, A.TRACE_FENTRY, "do_unlinkat", 0),
    "p_fmod_ret": (P.TRACING, A.MODIFY_RETURN, "do_unlinkat", 0),
    "p_fexit": (P.TRACING, A.TRACE_FEXIT, "do_unlinkat", 0),
    "p_fentry_s": (P.TRACING, A.TRACE_FENTRY, "do_unlinkat", SLEEP),
    "p_fmod_ret_s": (P.TRACING, A.MODIFY_RETURN, "do_unlinkat", SLEEP),
    "p_fexit_s": (P.TRACING, A.TRACE_FEXIT, "do_unlinkat", SLEEP),
    "p_freplace": (P.EXT, None, "handler", 0),
    "p_lsm": (P.LSM, A.LSM_MAC, "file_open", 0),
    "p_lsm_s": (P.LSM, A.LSM_MAC, "file_open", SLEEP),
    "p_lsm_cgroup": (P.LSM, A.LSM_CGROUP, "socket_bind", 0),
    "p_iter": (P.TRACING, A.TRACE_ITER, "task", 0),
    "p_iter_s": (P.TRACING, A.TRACE_ITER, "task", SLEEP),
    "p_syscall": (P.SYSCALL, None, "", SLEEP),
    "p_xdp": (P.XDP, A.XDP, "", 0),
    "p_xdp_second": (P.XDP, A.XDP, "", 0),
    "p_xdp_frags": (P.XDP, A.XDP, "", FRAGS),
    "p_xdp_devmap": (P.XDP, A.XDP_DEVMAP, "", 0),
    "p_xdp_frags_devmap": (P.XDP, A.XDP_DEVMAP, "", FRAGS),
    "p_xdp_cpumap": (P.XDP, A.XDP_CPUMAP, "", 0),
    "p_xdp_frags_cpumap": (P.XDP, A.XDP_CPUMAP, "", FRAGS),
    "p_perf_event": (P.PERF_EVENT, None, "", 0),
    "p_lwt_in": (P.LWT_IN, None, "", 0),
    "p_lwt_out": (P.LWT_OUT, None, "", 0),
    "p_lwt_xmit": (P.LWT_XMIT, None, "", 0),
    "p_lwt_seg6local": (P.LWT_SEG6LOCAL, None, "", 0),
    "p_cgroup_skb_ingress": (P.CGROUP_SKB, A.CGROUP_INET_INGRESS, "", 0),
    "p_cgroup_skb_egress": (P.CGROUP_SKB, A.CGROUP_INET_EGRESS, "", 0),
    "p_cgroup_skb": (P.CGROUP_SKB, None, "", 0),
    "p_cgroup_sock_create": (P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, "", 0),
    "p_cgroup_sock_release": (P.CGROUP_SOCK, A.CGROUP_INET_SOCK_RELEASE, "", 0),
    "p_cgroup_sock": (P.CGROUP_SOCK, A.CGROUP_INET_SOCK_CREATE, "", 0),
    "p_cgroup_post_bind4": (P.CGROUP_SOCK, A.CGROUP_INET4_POST_BIND, "", 0),
    "p_cgroup_post_bind6": (P.CGROUP_SOCK, A.CGROUP_INET6_POST_BIND, "", 0),
    "p_cgroup_bind4": (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_BIND, "", 0),
    "p_cgroup_bind6": (P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_BIND, "", 0),
    "p_cgroup_connect4": (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_CONNECT, "", 0),
    "p_cgroup_connect6": (P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_CONNECT, "", 0),
    "p_cgroup_connect_unix": (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_CONNECT, "", 0),
    "p_cgroup_sendmsg4": (P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_SENDMSG, "", 0),
    "p_cgroup_sendmsg6": (P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_SENDMSG, "", 0),
    "p_cgroup_sendmsg_unix": (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_SENDMSG, "", 0),
    "p_cgroup_recvmsg4": (P.CGROUP_SOCK_ADDR, A.CGROUP_UDP4_RECVMSG, "", 0),
    "p_cgroup_recvmsg6": (P.CGROUP_SOCK_ADDR, A.CGROUP_UDP6_RECVMSG, "", 0),
    "p_cgroup_recvmsg_unix": (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_RECVMSG, "", 0),
    "p_cgroup_getpeername4": (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETPEERNAME, "", 0),
    "p_cgroup_getpeername6": (P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETPEERNAME, "", 0),
    "p_cgroup_getpeername_unix": (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETPEERNAME, "", 0),
    "p_cgroup_getsockname4": (P.CGROUP_SOCK_ADDR, A.CGROUP_INET4_GETSOCKNAME, "", 0),
    "p_cgroup_getsockname6": (P.CGROUP_SOCK_ADDR, A.CGROUP_INET6_GETSOCKNAME, "", 0),
    "p_cgroup_getsockname_unix": (P.CGROUP_SOCK_ADDR, A.CGROUP_UNIX_GETSOCKNAME, "", 0),
    "p_cgroup_sysctl": (P.CGROUP_SYSCTL, A.CGROUP_SYSCTL, "", 0),
    "p_cgroup_getsockopt": (P.CGROUP_SOCKOPT, A.CGROUP_GETSOCKOPT, "", 0),
    "p_cgroup_setsockopt": (P.CGROUP_SOCKOPT, A.CGROUP_SETSOCKOPT, "", 0),
    "p_cgroup_dev": (P.CGROUP_DEVICE, A.CGROUP_DEVICE, "", 0),
    "p_sockops": (P.SOCK_OPS, A.CGROUP_SOCK_OPS, "", 0),
    "p_sk_skb_stream_parser": (P.SK_SKB, A.SK_SKB_STREAM_PARSER, "", 0),
    "p_sk_skb_stream_verdict": (P.SK_SKB, A.SK_SKB_STREAM_VERDICT, "", 0),
    "p_sk_skb": (P.SK_SKB, None, "", 0),
    "p_sk_msg": (P.SK_MSG, A.SK_MSG_VERDICT, "", 0),
    "p_lirc_mode2": (P.LIRC_MODE2, A.LIRC_MODE2, "", 0),
    "p_flow_dissector": (P.FLOW_DISSECTOR, A.FLOW_DISSECTOR, "", 0),
    "p_sk_lookup": (P.SK_LOOKUP, A.SK_LOOKUP, "", 0),
    "p_struct_ops": (P.STRUCT_OPS, None, "dummy", 0),
    "p_struct_ops_s": (P.STRUCT_OPS, None, "dummy", SLEEP),
    "p_netfilter": (P.NETFILTER, A.NETFILTER, "", 0),
    "p_optional_tc": (P.SCHED_CLS, None, "", 0),
    "p_optional_fentry_s": (P.TRACING, A.TRACE_FENTRY, "do_unlinkat", SLEEP),
    "p_unknown": (P.UNSPEC, None, "", 0),
    "p_not_a_tracepoint": (P.UNSPEC, None, "", 0),
}


@pytest.mark.parametrize("prog", sorted(SECTION_TABLE))
def test_section_name_gives_type_attach_type_target_and_flags(
    read_obj: Callable[[str], CollectionSpec], prog: str
) -> None:
    spec = read_obj("elf_sections").programs[prog]
    prog_type, attach_type, target, flags = SECTION_TABLE[prog]
    assert (spec.type, spec.attach_type, spec.attach_to, spec.flags) == (
        prog_type,
        attach_type,
        target,
        flags,
    )
    assert spec.sleepable == bool(flags & SLEEP)
    assert spec.autoload == (not prog.startswith("p_optional"))
    assert spec.license == "GPL"


def test_every_program_of_the_object_is_read(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_sections")
    assert set(spec.programs) == set(SECTION_TABLE)
    # Two programs in one section are two specs, each with only its own instructions.
    first, second = spec.programs["p_xdp"], spec.programs["p_xdp_second"]
    assert first.section == second.section == "xdp"
    assert [i.imm for i in first.instructions if i.opcode == asm.ALU | asm.MOV | asm.K] == [0]
    assert [i.imm for i in second.instructions if i.opcode == asm.ALU | asm.MOV | asm.K] == [2]
    # The raw section name, "?" included, stays on the spec.
    assert spec.programs["p_optional_fentry_s"].section == "?fentry.s/do_unlinkat"


def test_section_matching_rules_follow_libbpf() -> None:
    # "type+": exact or "type/..."; "type/": prefix with something after; others: exact only.
    assert find_section_def("tracepointx") is None
    assert find_section_def("kprobe") is not None and find_section_def("kprobe/") is not None
    assert find_section_def("kprobex/foo") is None
    assert find_section_def("xdp/foo") is None
    assert find_section_def("sk_skb/unknown") is None
    d = find_section_def("?lsm.s/bprm_check_security")
    assert d is not None and d.prog_type == P.LSM and d.sleepable
    assert elf.attach_target("uprobe.multi//usr/lib/libc.so.6:malloc") == "/usr/lib/libc.so.6:malloc"
    assert elf.attach_target("tcx/ingress") == ""


# ---- maps ----------------------------------------------------------------------------------------------


def test_btf_maps_typed_and_sized(read_obj: Callable[[str], CollectionSpec]) -> None:
    maps = read_obj("elf_maps").maps
    counts = maps["counts"]
    assert (
        counts.name,
        counts.type,
        counts.key_size,
        counts.value_size,
        counts.max_entries,
        counts.flags,
    ) == ("counts", T.MapType.HASH, 4, 16, 1024, T.BPF_F_NO_PREALLOC)
    assert counts.key_type is not None and counts.value_type is not None
    assert isinstance(counts.key_type, Typedef) and counts.key_type.name == "__u32"
    value = counts.value_type.strip()
    assert (
        isinstance(value, Struct)
        and value.name == "pair"
        and [m.name for m in value.members] == ["pid", "bytes"]
    )
    assert counts.btf is not None and counts.btf.type(counts.value_type.id) is counts.value_type

    sized = maps["sized"]
    assert (sized.type, sized.key_size, sized.value_size, sized.max_entries, sized.pinning) == (
        T.MapType.ARRAY,
        4,
        24,
        4,
        1,
    )
    assert sized.key_type is None and sized.value_type is None

    bloom = maps["bloom"]
    assert (bloom.type, bloom.key_size, bloom.value_size, bloom.map_extra, bloom.numa_node) == (
        T.MapType.BLOOM_FILTER,
        0,
        8,
        3,
        0,
    )


def test_ringbuf_size_is_rounded_up_like_libbpf(read_obj: Callable[[str], CollectionSpec]) -> None:
    import mmap

    events = read_obj("elf_maps").maps["events"]
    page = mmap.PAGESIZE
    # 5000 bytes asked: the smallest power-of-two number of pages holding them.
    expected = page
    while expected <= 5000:
        expected *= 2
    assert (events.type, events.max_entries) == (T.MapType.RINGBUF, expected)


def test_map_in_map_inner_definitions_and_initial_slots(read_obj: Callable[[str], CollectionSpec]) -> None:
    maps = read_obj("elf_maps").maps
    outer = maps["outer"]
    assert (outer.type, outer.key_size, outer.value_size, outer.max_entries) == (
        T.MapType.ARRAY_OF_MAPS,
        4,
        4,
        4,
    )
    assert outer.inner is not None
    inner = outer.inner
    assert (inner.name, inner.type, inner.key_size, inner.value_size, inner.max_entries) == (
        "outer.inner",
        T.MapType.ARRAY,
        4,
        8,
        1,
    )
    assert outer.contents == [(0, "inner_a"), (2, "inner_b")]
    assert all(name in maps for _, name in outer.contents)

    outer_hash = maps["outer_hash"]
    assert outer_hash.type == T.MapType.HASH_OF_MAPS and outer_hash.contents == []
    assert outer_hash.inner is not None
    assert (
        outer_hash.inner.type,
        outer_hash.inner.key_size,
        outer_hash.inner.value_size,
        outer_hash.inner.max_entries,
    ) == (T.MapType.HASH, 8, 4, 16)


def test_prog_array_initial_slots_name_programs(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_maps")
    jumps = spec.maps["jumps"]
    assert (jumps.type, jumps.key_size, jumps.value_size, jumps.max_entries) == (
        T.MapType.PROG_ARRAY,
        4,
        4,
        3,
    )
    assert jumps.contents == [(1, "tail_two"), (2, "tail_one")]
    assert all(name in spec.programs for _, name in jumps.contents)


def test_map_references_in_code(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_maps")
    insns = spec.programs["entry"].instructions
    refs = {r.target for r in spec.relocations["entry"]}
    assert refs == {"counts", "outer", "sized", "outer_hash", "events", "bloom", "jumps"}
    for r in spec.relocations["entry"]:
        insn = insns[r.index]
        assert r.kind == "map"
        assert insn.is_ld_imm64() and insn.src == asm.PSEUDO_MAP_FD and insn.imm == 0
        assert insn.reference == r.target


def test_license_and_version(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_maps")
    assert spec.license == "Dual BSD/GPL" and spec.kernel_version == 0x060100
    assert all(p.license == "Dual BSD/GPL" and p.kernel_version == 0x060100 for p in spec.programs.values())
    assert read_obj("elf_globals").kernel_version == 0


def test_legacy_maps_section(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_legacy_maps")
    h, a = spec.maps["legacy_hash"], spec.maps["legacy_array"]
    assert (h.type, h.key_size, h.value_size, h.max_entries, h.flags) == (T.MapType.HASH, 4, 8, 64, 1)
    assert (a.type, a.key_size, a.value_size, a.max_entries, a.flags) == (T.MapType.ARRAY, 4, 16, 2, 0)
    refs = [(r.kind, r.target) for r in spec.relocations["legacy_prog"]]
    assert sorted(refs) == [("map", "legacy_array"), ("map", "legacy_hash")]
    prog = spec.programs["legacy_prog"]
    assert prog.type == P.SOCKET_FILTER and prog.license == "GPL"


# ---- global data ---------------------------------------------------------------------------------------


def test_global_data_maps_named_and_flagged_like_libbpf(read_obj: Callable[[str], CollectionSpec]) -> None:
    maps = read_obj("elf_globals").maps
    assert set(maps) == {".rodata", ".data", ".bss", ".data.foo", ".rodata.bar", ".kconfig"}
    # Object "elf_globals.bpf.o" -> name "elf_globals"; 8 characters of it before the 7 reserved for the
    # suffix, 7 before ".kconfig"; custom sections keep their own name only.
    names = {k: m.name for k, m in maps.items()}
    assert names == {
        ".rodata": "elf_glob.rodata",
        ".data": "elf_glob.data",
        ".bss": "elf_glob.bss",
        ".kconfig": "elf_glo.kconfig",
        ".data.foo": ".data.foo",
        ".rodata.bar": ".rodata.bar",
    }
    ro, mm = T.BPF_F_RDONLY_PROG, T.BPF_F_MMAPABLE
    assert {k: m.flags for k, m in maps.items()} == {
        ".rodata": ro | mm,
        ".data": mm,
        ".bss": mm,
        ".kconfig": ro | mm,
        ".data.foo": mm,
        ".rodata.bar": ro | mm,
    }
    assert {k for k, m in maps.items() if m.freeze} == {".rodata", ".rodata.bar", ".kconfig"}
    for m in maps.values():
        assert (m.type, m.key_size, m.max_entries) == (T.MapType.ARRAY, 4, 1)
        assert m.data is not None and len(m.data) == m.value_size
    assert maps[".bss"].data == bytes(maps[".bss"].value_size)
    assert struct.unpack_from("<I", maps[".data.foo"].data or b"")[0] == 0x11223344
    # The value type is the section's DATASEC with libbpf's fix-up applied (clang leaves size and
    # offsets 0), so codecs see the real layout.
    dsec = maps[".data"].value_type
    assert isinstance(dsec, Datasec) and dsec.name == ".data" and dsec.size == 32
    assert [(v.var.name, v.offset, v.size) for v in dsec.vars] == [
        ("packets", 0, 8),
        ("ratio", 8, 16),
        ("weak_knob", 24, 4),
        ("hidden_counter", 28, 4),
    ]
    kconfig = maps[".kconfig"].value_type
    assert isinstance(kconfig, Datasec) and kconfig.size == 29


def test_internal_map_name_rules() -> None:
    assert elf.internal_map_name("my_object_name", ".rodata") == "my_objec.rodata"
    assert elf.internal_map_name("my_object_name", ".bss") == "my_objec.bss"
    assert elf.internal_map_name("my_object_name", ".kconfig") == "my_obje.kconfig"
    assert elf.internal_map_name("my_object_name", ".rodata.abracadabra") == ".rodata.abracad"
    assert elf.internal_map_name("a-b", ".data") == "a_b.data"
    assert elf.object_name_from_path("/x/foo.bpf.o") == "foo"
    assert elf.object_name_from_path("a_very_long_object_name.o") == "a_very_long_obj"


def test_global_variables(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_globals")
    v = spec.variables
    expected = {
        # name: (map, offset, size, read_only, static)
        "target_pid": (".rodata", 0, 4, True, False),
        "threshold_ns": (".rodata", 8, 8, True, False),
        "packets": (".data", 0, 8, False, False),
        "ratio": (".data", 8, 16, False, False),
        "weak_knob": (".data", 24, 4, False, False),
        "hidden_counter": (".data", 28, 4, False, True),
        "drops": (".bss", 0, 8, False, False),
        "pair_bss": (".bss", 8, 8, False, False),
        "foo_value": (".data.foo", 0, 4, False, False),
        "foo_other": (".data.foo", 8, 8, False, False),
        "bar_name": (".rodata.bar", 0, 8, True, False),
    }
    for name, want in expected.items():
        var = v[name]
        assert (var.section, var.offset, var.size, var.read_only, var.static) == want, name
        assert sizeof(var.type) == var.size
    assert struct.unpack("<I", v["target_pid"].initial_value(spec)) == (42,)
    assert struct.unpack("<Q", v["threshold_ns"].initial_value(spec)) == (1000000,)
    assert struct.unpack("<4i", v["ratio"].initial_value(spec)) == (1, 2, 3, 4)
    assert struct.unpack("<I", v["hidden_counter"].initial_value(spec)) == (5,)
    assert v["bar_name"].initial_value(spec) == b"bar\0\0\0\0\0"
    assert v["drops"].initial_value(spec) == bytes(8)


def test_kconfig_and_ksym_externs(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_globals")
    ext = spec.externs
    # .kconfig layout as libbpf computes it: by alignment (largest first), then size, then name.
    kcfg = {n: (e.offset, e.size, e.weak) for n, e in ext.items() if e.kind == "kconfig"}
    assert kcfg == {
        "CONFIG_HZ": (0, 4, False),
        "CONFIG_MODULES": (4, 4, True),
        "LINUX_KERNEL_VERSION": (8, 4, False),
        "CONFIG_BPF_SYSCALL": (12, 1, False),
        "CONFIG_DEFAULT_HOSTNAME": (13, 16, True),
    }
    assert spec.maps[".kconfig"].value_size == 29
    assert {n: (e.typed, e.weak) for n, e in ext.items() if e.kind == "ksym"} == {
        "runqueues": (True, False),
        "bpf_prog_fops": (False, False),
        "bpf_missing_ksym": (True, True),
    }
    assert {n for n, e in ext.items() if e.kind == "kfunc"} == {"bpf_task_acquire", "bpf_task_release"}
    assert isinstance(ext["bpf_task_acquire"].type, Func)
    assert spec.symbol_offsets[(".kconfig", "CONFIG_DEFAULT_HOSTNAME")] == 13
    assert spec.section_sizes[".kconfig"] == 29 and spec.section_sizes[".data"] == 32


def test_global_data_and_extern_relocations(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_globals")
    insns = spec.programs["globals_prog"].instructions
    relos = spec.relocations["globals_prog"]
    seen = {(r.kind, r.target, r.offset) for r in relos}
    # Variables: map value + offset, static ones through the section symbol plus the addend.
    assert {
        ("map_value", ".rodata", 0),  # target_pid
        ("map_value", ".rodata", 8),  # threshold_ns
        ("map_value", ".data", 28),  # static hidden_counter
        ("map_value", ".data", 24),  # weak_knob
        ("map_value", ".data.foo", 0),
        ("map_value", ".rodata.bar", 0),
        ("kconfig", ".kconfig", 0),
        ("kconfig", ".kconfig", 13),
        ("ksym", "runqueues", 0),
        ("ksym", "bpf_prog_fops", 0),
        ("kfunc", "bpf_task_acquire", 0),
    } <= seen
    for r in relos:
        insn = insns[r.index]
        assert insn.reference == r.target
        if r.kind in ("map_value", "kconfig"):
            assert insn.is_ld_imm64() and insn.src == asm.PSEUDO_MAP_VALUE
            assert insn.imm == r.offset << 32  # the loader ORs the map fd into the low half
        elif r.kind == "ksym":
            want = asm.PSEUDO_BTF_ID if spec.externs[r.target].typed else 0
            assert insn.is_ld_imm64() and insn.src == want and insn.imm == 0
        elif r.kind == "kfunc":
            assert insn.is_call() and insn.src == asm.PSEUDO_KFUNC_CALL and insn.imm == 0 and insn.off == 0


# ---- subprograms ---------------------------------------------------------------------------------------


def _functions(insns: asm.Instructions) -> list[str]:
    return [name for name, _ in sorted(insns.symbols().items(), key=lambda kv: kv[1])]


def test_subprograms_appended_once_in_libbpf_order(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_subprogs")
    assert set(spec.programs) == {"uses_subprogs", "other_prog", "no_subprogs", "compute"}
    insns = spec.programs["uses_subprogs"].instructions
    # Appended when first called, depth first: the callback's callee before the later direct calls.
    assert _functions(insns) == [
        "uses_subprogs",
        "loop_cb",
        "leaf",
        "global_helper",
        "weak_helper",
        "task_pid",
    ]
    other = spec.programs["other_prog"].instructions
    assert _functions(other) == ["other_prog", "leaf", "local_in_section"]
    assert _functions(spec.programs["no_subprogs"].instructions) == ["no_subprogs"]
    assert len(spec.programs["no_subprogs"].instructions) == 2 and spec.relocations["no_subprogs"] == []


@pytest.mark.parametrize("prog", ["uses_subprogs", "other_prog", "compute"])
def test_calls_and_callbacks_point_at_their_subprogram(
    read_obj: Callable[[str], CollectionSpec], prog: str
) -> None:
    spec = read_obj("elf_subprogs")
    insns = spec.programs[prog].instructions
    symbols = insns.symbols()
    kinds = set()
    for k, insn in enumerate(insns):
        if insn.is_pseudo_call() or insn.is_func_pointer():
            kinds.add("func" if insn.is_func_pointer() else "call")
            # Kernel and libbpf semantics for both: the target is slot + imm + 1, even for the two-slot
            # ld_imm64 of a function pointer.
            target = insns.slot_of(k) + 1 + insn.imm
            assert insn.reference is not None
            assert insns.slot_of(symbols[insn.reference]) == target, (k, insn)
    assert kinds == ({"call"} if prog == "other_prog" else {"call", "func"})
    # Every call instruction is listed among the relocations.
    listed = {r.index for r in spec.relocations[prog] if r.kind in ("call", "func")}
    assert listed == {k for k, i in enumerate(insns) if i.is_pseudo_call() or i.is_func_pointer()}


@pytest.mark.parametrize("prog", ["uses_subprogs", "other_prog", "no_subprogs", "compute"])
def test_func_and_line_info_follow_appended_subprograms(
    read_obj: Callable[[str], CollectionSpec], prog: str
) -> None:
    spec = read_obj("elf_subprogs")
    p = spec.programs[prog]
    insns = p.instructions
    assert p.btf is not None
    func_info = [
        struct.unpack_from("<II", p.func_info, o) for o in range(0, len(p.func_info), p.func_info_rec_size)
    ]
    starts = sorted((insns.slot_of(k), name) for name, k in insns.symbols().items())
    # One record per function, at the slot where it landed, naming its BTF FUNC.
    assert [(off, p.btf.type(tid).name) for off, tid in func_info] == starts
    lines = [
        struct.unpack_from("<IIII", p.line_info, o) for o in range(0, len(p.line_info), p.line_info_rec_size)
    ]
    offsets = [rec[0] for rec in lines]
    assert offsets[0] == 0 and offsets == sorted(offsets) and offsets[-1] < insns.slot_count()
    assert len(p.line_sources) == len(lines)
    for (slot, _file, line_off, _col), text in zip(lines, p.line_sources, strict=True):
        assert p.btf.string(line_off) == text
        assert insns.at_slot(slot).source == text
    # Every function start has line info (clang emits one for each function's first instruction).
    assert {s for s, _ in starts} <= set(offsets)


def test_core_relocations_of_subprograms_get_final_indexes(read_obj: Callable[[str], CollectionSpec]) -> None:
    spec = read_obj("elf_subprogs")
    insns = spec.programs["uses_subprogs"].instructions
    core = spec.core_relos["uses_subprogs"]
    assert len(core) == 1
    index, relo = core[0]
    assert relo.kind == CoreReloKind.FIELD_BYTE_OFFSET and relo.section == ".text"
    # It sits inside task_pid and is the instruction that adds the field offset (r1 = offsetof(pid)).
    start = insns.symbols()["task_pid"]
    assert start < index < len(insns)
    assert insns[index].opcode == asm.ALU64 | asm.MOV | asm.K
    assert spec.core_relos["other_prog"] == [] and spec.core_relos["no_subprogs"] == []
    # The same subprogram relocation lands at a different index in each program that uses it.
    ((index2, relo2),) = spec.core_relos["compute"]
    assert relo2.kind == CoreReloKind.FIELD_BYTE_SIZE
    assert spec.programs["compute"].instructions.symbols()["field_size"] == index2


def test_read_from_bytes_and_path_agree(bpf_obj: Callable[[str], Path]) -> None:
    path = bpf_obj("elf_subprogs")
    from_bytes = elf.read(path.read_bytes(), name="x")
    from_path = elf.read(path, name="x")
    assert set(from_bytes.programs) == set(from_path.programs)
    for name, p in from_path.programs.items():
        assert p.instructions.encode() == from_bytes.programs[name].instructions.encode()
        assert p.func_info == from_bytes.programs[name].func_info
    assert from_bytes.path == "" and from_path.path == str(path)


def test_reading_is_fast(bpf_obj: Callable[[str], Path]) -> None:
    data = bpf_obj("elf_globals").read_bytes()
    elf.read(data)
    timings = []
    for _ in range(5):
        t = time.perf_counter()
        elf.read(data)
        timings.append(time.perf_counter() - t)
    # A few ms is typical; the bound leaves room for a loaded 2-CPU VM.
    assert min(timings) < 0.05, f"reading a one-program object took {min(timings) * 1000:.1f} ms"
