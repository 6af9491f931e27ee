"""Probes of everything else: instruction set versions, verifier limits, links and attach kinds,
perf PMUs, and a few loader features (object names, global data, mmap-able maps, statistics).

Link kinds are probed the way cilium/ebpf does: BPF_LINK_CREATE with a real program but a target that
cannot exist (fd 0x7fffffff, ifindex 0x7fffffff, path "/"). A kernel that knows the link kind gets as
far as looking the target up and fails there (EBADF, ENODEV, ...); one that does not refuses the
attach type itself with EINVAL. Nothing is ever attached.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os
from collections.abc import Callable

from pybpf import asm
from pybpf._sys import types as T
from pybpf._sys.syscall import bpf_errno
from pybpf.errors import NotSupportedError
from pybpf.features._probe import ProbeResult, create_map, errno_name, load_program, try_load
from pybpf.features.maps import probe_map_type
from pybpf.features.progs import probe_helper
from pybpf.features.versions import first_kernel

__all__ = ["LINK_KINDS", "MISC_FEATURES", "probe_link", "probe_misc", "require_misc"]

_BAD_FD = 0x7FFFFFFF  # no process has this many files open
_BPF_MAXINSNS = 4096  # the instruction limit of kernels before 5.2 (and of unprivileged programs)
_PMU_DIR = "/sys/bus/event_source/devices"
_LOOPBACK_IFINDEX = 1

R0, R1 = asm.R0, asm.R1


def _insns(*insns: asm.Instruction) -> bytes:
    return asm.Instructions(insns).encode()


def _loads(prog_type: T.ProgType, insns: bytes, **kwargs: int) -> ProbeResult:
    err, _ = try_load(prog_type, insns, **kwargs)
    if not err:
        return ProbeResult(True)
    return ProbeResult(False, err, f"the probe program was rejected ({errno_name(err)})")


def _large_insn_limit() -> ProbeResult:
    body = [asm.mov64_imm(R0, 1) for _ in range(_BPF_MAXINSNS)] + [asm.exit_insn()]
    return _loads(T.ProgType.SOCKET_FILTER, _insns(*body))


def _bounded_loops() -> ProbeResult:
    return _loads(T.ProgType.SOCKET_FILTER, _insns(
        asm.mov64_imm(R0, 10),
        asm.alu64_imm(asm.SUB, R0, 1),
        asm.jmp_imm(asm.JNE, R0, 0, -2),
        asm.exit_insn(),
    ))


def _isa_v2() -> ProbeResult:
    return _loads(T.ProgType.SOCKET_FILTER, _insns(
        asm.mov64_imm(R0, 0),
        asm.jmp_imm(asm.JLT, R0, 0, 1),
        asm.mov64_imm(R0, 1),
        asm.exit_insn(),
    ))


def _isa_v3() -> ProbeResult:
    return _loads(T.ProgType.SOCKET_FILTER, _insns(
        asm.mov64_imm(R0, 0),
        asm.jmp32_imm(asm.JLT, R0, 0, 1),
        asm.mov64_imm(R0, 1),
        asm.exit_insn(),
    ))


def _isa_v4() -> ProbeResult:
    # Sign-extending move, unconditional byte swap and the 32-bit-offset jump: all new in v4.
    return _loads(T.ProgType.SOCKET_FILTER, _insns(
        asm.mov64_imm(R0, 0),
        asm.movsx64_reg(R0, R0, 8),
        asm.bswap(R0, 64),
        asm.gotol(0),
        asm.exit_insn(),
    ))


def _may_goto() -> ProbeResult:
    return _loads(T.ProgType.SOCKET_FILTER, _insns(
        asm.mov64_imm(R0, 0),
        asm.may_goto(0),
        asm.exit_insn(),
    ))


def _prog_name() -> ProbeResult:
    err, _ = try_load(T.ProgType.SOCKET_FILTER, _insns(asm.mov64_imm(R0, 0), asm.exit_insn()), name=b"probe")
    return ProbeResult(not err, err, "" if not err else f"named programs are refused ({errno_name(err)})")


def _map_name() -> ProbeResult:
    fd, err = create_map(T.MapType.ARRAY, name=b"probe")
    if fd is not None:
        fd.close()
        return ProbeResult(True)
    return ProbeResult(False, err, f"named maps are refused ({errno_name(err)})")


def _global_data() -> ProbeResult:
    fd, err = create_map(T.MapType.ARRAY, value_size=32)
    if fd is None:
        return ProbeResult(False, err, f"cannot create an array map ({errno_name(err)})")
    with fd:
        return _loads(T.ProgType.SOCKET_FILTER, _insns(
            asm.ld_map_value(R1, int(fd), 16),
            asm.st_mem(asm.DW, R1, 0, 42),
            asm.mov64_imm(R0, 0),
            asm.exit_insn(),
        ))


def _mmapable_maps() -> ProbeResult:
    fd, err = create_map(T.MapType.ARRAY, flags=T.BPF_F_MMAPABLE)
    if fd is not None:
        fd.close()
        return ProbeResult(True)
    return ProbeResult(False, err, f"BPF_F_MMAPABLE refused ({errno_name(err)})")


def _enable_stats() -> ProbeResult:
    ret = bpf_errno(T.BPF_ENABLE_STATS, T.EnableStatsAttr(type=int(T.StatsType.RUN_TIME)))
    if ret >= 0:
        os.close(ret)  # statistics stay on only while the fd is open
        return ProbeResult(True)
    return ProbeResult(False, -ret, f"BPF_ENABLE_STATS refused ({errno_name(-ret)})")


def _pmu(name: str) -> Callable[[], ProbeResult]:
    def probe() -> ProbeResult:
        if os.path.exists(os.path.join(_PMU_DIR, name, "type")):
            return ProbeResult(True)
        return ProbeResult(False, _errno.ENOENT, f"no {_PMU_DIR}/{name} (CONFIG_{name.upper()}_EVENTS off?)")

    return probe


def _ringbuf() -> ProbeResult:
    return probe_map_type(T.MapType.RINGBUF)


def _bpf_cookie() -> ProbeResult:
    result = probe_helper(T.ProgType.KPROBE, T.BpfFuncId.get_attach_cookie)
    return result if result.supported else ProbeResult(False, result.errno, "no bpf_get_attach_cookie helper")


# ---- links -----------------------------------------------------------------------------------------------


def _link_probe(
    prog_type: T.ProgType,
    attach_type: T.AttachType,
    *,
    found: tuple[int, ...],
    expected_attach_type: int | None = None,
    setup: Callable[[T.LinkCreateAttr], object] | None = None,
    target: int = _BAD_FD,
) -> Callable[[], ProbeResult]:
    """A probe that creates a link of `attach_type` to an impossible target; errnos in `found` mean the
    kernel knows the kind."""

    def probe() -> ProbeResult:
        eat = int(attach_type) if expected_attach_type is None else expected_attach_type
        fd, err, _ = load_program(prog_type, _insns(asm.mov64_imm(R0, 0), asm.exit_insn()),
                                  expected_attach_type=eat)
        if fd is None:
            return ProbeResult(False, err, f"cannot load a {prog_type.name.lower()} program ({errno_name(err)})")
        with fd:
            attr = T.LinkCreateAttr(prog_fd=int(fd), target_fd=target, attach_type=int(attach_type))
            keep = setup(attr) if setup is not None else None
            ret = bpf_errno(T.BPF_LINK_CREATE, attr)
            del keep
        if ret >= 0:  # should not happen; detach at once
            os.close(ret)
            return ProbeResult(True)
        err = -ret
        if err in found:
            return ProbeResult(True, err, f"the kernel looked for the target ({errno_name(err)})")
        if err == _errno.EOPNOTSUPP:
            return ProbeResult(False, err, "known but disabled in this kernel's configuration (EOPNOTSUPP)")
        return ProbeResult(False, err, f"attach type refused ({errno_name(err)})")

    return probe


def _kprobe_multi_setup(attr: T.LinkCreateAttr) -> object:
    # A symbol that cannot exist: a kernel with kprobe_multi fails the lookup (ENOENT/ESRCH).
    name = ctypes.create_string_buffer(b"pybpf_no_such_function_for_probing")
    syms = (ctypes.c_uint64 * 1)(ctypes.addressof(name))
    attr.kprobe_multi.cnt = 1
    attr.kprobe_multi.syms = ctypes.addressof(syms)
    return (name, syms)


def _uprobe_multi_setup(attr: T.LinkCreateAttr) -> object:
    # "/" is a directory, not an ELF file: a kernel with uprobe_multi fails opening it (EBADF).
    path = ctypes.create_string_buffer(b"/")
    offsets = (ctypes.c_uint64 * 1)(0)
    attr.uprobe_multi.path = ctypes.addressof(path)
    attr.uprobe_multi.offsets = ctypes.addressof(offsets)
    attr.uprobe_multi.cnt = 1
    attr.target_fd = 0
    return (path, offsets)


def _xdp_setup(attr: T.LinkCreateAttr) -> object:
    # A missing device is EINVAL for XDP links, as is an unknown attach type. Offload mode on loopback (ifindex
    # 1 in every namespace) instead gets as far as asking the driver, which has no XDP: EOPNOTSUPP.
    attr.flags = T.XDP_FLAGS_HW_MODE
    return None


def _link_create() -> ProbeResult:
    # Invalid prog fd: a kernel with BPF_LINK_CREATE looks it up (EBADF); older ones reject the command.
    ret = bpf_errno(T.BPF_LINK_CREATE, T.LinkCreateAttr(prog_fd=_BAD_FD, target_fd=_BAD_FD,
                                                        attach_type=int(T.AttachType.CGROUP_INET_INGRESS)))
    if ret >= 0:
        os.close(ret)
    err = -ret if ret < 0 else 0
    if err in (0, _errno.EBADF):
        return ProbeResult(True)
    return ProbeResult(False, err, f"BPF_LINK_CREATE refused ({errno_name(err)})")


P, A = T.ProgType, T.AttachType
LINK_KINDS: dict[str, Callable[[], ProbeResult]] = {
    "link_create": _link_create,
    "cgroup_link": _link_probe(P.CGROUP_SKB, A.CGROUP_INET_INGRESS, found=(_errno.EBADF,)),
    "netns_link": _link_probe(P.SK_LOOKUP, A.SK_LOOKUP, found=(_errno.EBADF,)),
    "perf_event_link": _link_probe(P.TRACEPOINT, A.PERF_EVENT, found=(_errno.EBADF,), expected_attach_type=0),
    "kprobe_multi_link": _link_probe(P.KPROBE, A.TRACE_KPROBE_MULTI, found=(_errno.ENOENT, _errno.ESRCH),
                                     setup=_kprobe_multi_setup, target=0),
    "uprobe_multi_link": _link_probe(P.KPROBE, A.TRACE_UPROBE_MULTI, found=(_errno.EBADF,),
                                     setup=_uprobe_multi_setup, target=0),
    "netfilter_link": _link_probe(P.NETFILTER, A.NETFILTER, found=(_errno.EAFNOSUPPORT, _errno.EPROTO),
                                  target=0),
    "xdp_link": _link_probe(P.XDP, A.XDP, found=(_errno.EOPNOTSUPP,), expected_attach_type=0,
                            setup=_xdp_setup, target=_LOOPBACK_IFINDEX),
    "tcx_link": _link_probe(P.SCHED_CLS, A.TCX_INGRESS, found=(_errno.ENODEV,), expected_attach_type=0),
    "netkit_link": _link_probe(P.SCHED_CLS, A.NETKIT_PRIMARY, found=(_errno.ENODEV,), expected_attach_type=0),
    "sockmap_link": _link_probe(P.SK_MSG, A.SK_MSG_VERDICT, found=(_errno.EBADF,), expected_attach_type=0),
}
del P, A

MISC_FEATURES: dict[str, Callable[[], ProbeResult]] = {
    "prog_name": _prog_name,
    "map_name": _map_name,
    "large_insn_limit": _large_insn_limit,
    "bounded_loops": _bounded_loops,
    "isa_v2": _isa_v2,
    "isa_v3": _isa_v3,
    "isa_v4": _isa_v4,
    "may_goto": _may_goto,
    "global_data": _global_data,
    "mmapable_maps": _mmapable_maps,
    "enable_stats": _enable_stats,
    "ringbuf": _ringbuf,
    "bpf_cookie": _bpf_cookie,
    "kprobe_pmu": _pmu("kprobe"),
    "uprobe_pmu": _pmu("uprobe"),
    "kprobe_multi": LINK_KINDS["kprobe_multi_link"],
    "uprobe_multi": LINK_KINDS["uprobe_multi_link"],
}


@functools.cache
def probe_link(kind: str) -> ProbeResult:
    """Whether BPF_LINK_CREATE knows a link kind (one of LINK_KINDS); cached per process."""
    try:
        probe = LINK_KINDS[kind]
    except KeyError:
        raise ValueError(f"unknown link kind {kind!r}; known: {', '.join(LINK_KINDS)}") from None
    return probe()


@functools.cache
def probe_misc(name: str) -> ProbeResult:
    """One of MISC_FEATURES (cached per process)."""
    try:
        probe = MISC_FEATURES[name]
    except KeyError:
        if name in LINK_KINDS:
            return probe_link(name)
        raise ValueError(f"unknown feature {name!r}; known: {', '.join([*MISC_FEATURES, *LINK_KINDS])}") from None
    return probe()


def require_misc(name: str) -> None:
    """Raise NotSupportedError unless the kernel has feature `name` (a MISC_FEATURES or LINK_KINDS key)."""
    result = probe_misc(name)
    if not result.supported:
        raise NotSupportedError(name.replace("_", " "), first_kernel("misc", name), result.errno,
                                detail=result.reason())
