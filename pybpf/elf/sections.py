"""Program section names -> program type, expected attach type, flags: libbpf's `section_defs` convention.

A definition matches a section name in one of three ways, exactly as libbpf's `sec_def_matches`:

* ``"type/"`` (ends in a slash): the name must start with it and carry something after it;
* ``"type+"``: the name is exactly ``type`` or ``type/<extras>``;
* anything else: the name must be equal.

The first matching definition in table order wins (so ``sk_reuseport/migrate`` precedes ``sk_reuseport``).
A leading ``?`` (``SEC("?tc")``) means "do not load by default" and is stripped before matching.
"""

from __future__ import annotations

from pybpf._named import IntFlag
from pybpf._sys.record import record
from pybpf._sys.types import AttachType, ProgType

__all__ = ["SectionDef", "SectionFlags", "attach_target", "find_section_def", "section_defs", "section_split"]


class SectionFlags(IntFlag):
    """libbpf's `sec_def_flags`: how the loader must treat programs of a section."""

    NONE = 0
    EXP_ATTACH_OPT = 1  # expected_attach_type may be dropped on kernels that reject it
    ATTACHABLE = 2  # attached with BPF_PROG_ATTACH (informational)
    ATTACHABLE_OPT = ATTACHABLE | EXP_ATTACH_OPT
    ATTACH_BTF = 4  # target named by BTF id (fentry, lsm, iter, tp_btf, freplace...)
    SLEEPABLE = 8  # BPF_F_SLEEPABLE
    XDP_FRAGS = 16  # BPF_F_XDP_HAS_FRAGS
    USDT = 32  # attach type becomes TRACE_UPROBE_MULTI where the kernel has uprobe_multi links


@record(frozen=True, slots=True)
class SectionDef:
    """One row of the table: `prefix` in libbpf's notation (``"kprobe+"``, ``"xdp/devmap"``)."""

    prefix: str
    prog_type: ProgType
    attach_type: AttachType | None
    flags: SectionFlags = SectionFlags.NONE

    def matches(self, section: str) -> bool:
        pfx = self.prefix
        if pfx.endswith("/"):
            return section.startswith(pfx)
        if pfx.endswith("+"):
            base = pfx[:-1]
            return section == base or section.startswith(base + "/")
        return section == pfx

    @property
    def sleepable(self) -> bool:
        return bool(self.flags & SectionFlags.SLEEPABLE)


_P = ProgType
_A = AttachType
_F = SectionFlags

# Order matters: the first match wins. Mirrors libbpf's section_defs (libbpf 1.5).
section_defs: tuple[SectionDef, ...] = (
    SectionDef("socket", _P.SOCKET_FILTER, None),
    SectionDef("sk_reuseport/migrate", _P.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT_OR_MIGRATE, _F.ATTACHABLE),
    SectionDef("sk_reuseport", _P.SK_REUSEPORT, _A.SK_REUSEPORT_SELECT, _F.ATTACHABLE),
    SectionDef("kprobe+", _P.KPROBE, None),
    SectionDef("uprobe+", _P.KPROBE, None),
    SectionDef("uprobe.s+", _P.KPROBE, None, _F.SLEEPABLE),
    SectionDef("kretprobe+", _P.KPROBE, None),
    SectionDef("uretprobe+", _P.KPROBE, None),
    SectionDef("uretprobe.s+", _P.KPROBE, None, _F.SLEEPABLE),
    SectionDef("kprobe.multi+", _P.KPROBE, _A.TRACE_KPROBE_MULTI),
    SectionDef("kretprobe.multi+", _P.KPROBE, _A.TRACE_KPROBE_MULTI),
    SectionDef("kprobe.session+", _P.KPROBE, _A.TRACE_KPROBE_SESSION),
    SectionDef("uprobe.multi+", _P.KPROBE, _A.TRACE_UPROBE_MULTI),
    SectionDef("uretprobe.multi+", _P.KPROBE, _A.TRACE_UPROBE_MULTI),
    SectionDef("uprobe.multi.s+", _P.KPROBE, _A.TRACE_UPROBE_MULTI, _F.SLEEPABLE),
    SectionDef("uretprobe.multi.s+", _P.KPROBE, _A.TRACE_UPROBE_MULTI, _F.SLEEPABLE),
    SectionDef("uprobe.session+", _P.KPROBE, _A.TRACE_UPROBE_SESSION),
    SectionDef("uprobe.session.s+", _P.KPROBE, _A.TRACE_UPROBE_SESSION, _F.SLEEPABLE),
    SectionDef("ksyscall+", _P.KPROBE, None),
    SectionDef("kretsyscall+", _P.KPROBE, None),
    SectionDef("usdt+", _P.KPROBE, None, _F.USDT),
    SectionDef("usdt.s+", _P.KPROBE, None, _F.USDT | _F.SLEEPABLE),
    SectionDef("tc/ingress", _P.SCHED_CLS, _A.TCX_INGRESS),  # alias for tcx
    SectionDef("tc/egress", _P.SCHED_CLS, _A.TCX_EGRESS),  # alias for tcx
    SectionDef("tcx/ingress", _P.SCHED_CLS, _A.TCX_INGRESS),
    SectionDef("tcx/egress", _P.SCHED_CLS, _A.TCX_EGRESS),
    SectionDef("tc", _P.SCHED_CLS, None),  # legacy cls_bpf
    SectionDef("classifier", _P.SCHED_CLS, None),  # legacy
    SectionDef("action", _P.SCHED_ACT, None),  # legacy
    SectionDef("netkit/primary", _P.SCHED_CLS, _A.NETKIT_PRIMARY),
    SectionDef("netkit/peer", _P.SCHED_CLS, _A.NETKIT_PEER),
    SectionDef("tracepoint+", _P.TRACEPOINT, None),
    SectionDef("tp+", _P.TRACEPOINT, None),
    SectionDef("raw_tracepoint+", _P.RAW_TRACEPOINT, None),
    SectionDef("raw_tp+", _P.RAW_TRACEPOINT, None),
    SectionDef("raw_tracepoint.w+", _P.RAW_TRACEPOINT_WRITABLE, None),
    SectionDef("raw_tp.w+", _P.RAW_TRACEPOINT_WRITABLE, None),
    SectionDef("tp_btf+", _P.TRACING, _A.TRACE_RAW_TP, _F.ATTACH_BTF),
    SectionDef("fentry+", _P.TRACING, _A.TRACE_FENTRY, _F.ATTACH_BTF),
    SectionDef("fmod_ret+", _P.TRACING, _A.MODIFY_RETURN, _F.ATTACH_BTF),
    SectionDef("fexit+", _P.TRACING, _A.TRACE_FEXIT, _F.ATTACH_BTF),
    SectionDef("fentry.s+", _P.TRACING, _A.TRACE_FENTRY, _F.ATTACH_BTF | _F.SLEEPABLE),
    SectionDef("fmod_ret.s+", _P.TRACING, _A.MODIFY_RETURN, _F.ATTACH_BTF | _F.SLEEPABLE),
    SectionDef("fexit.s+", _P.TRACING, _A.TRACE_FEXIT, _F.ATTACH_BTF | _F.SLEEPABLE),
    SectionDef("freplace+", _P.EXT, None, _F.ATTACH_BTF),
    SectionDef("lsm+", _P.LSM, _A.LSM_MAC, _F.ATTACH_BTF),
    SectionDef("lsm.s+", _P.LSM, _A.LSM_MAC, _F.ATTACH_BTF | _F.SLEEPABLE),
    SectionDef("lsm_cgroup+", _P.LSM, _A.LSM_CGROUP, _F.ATTACH_BTF),
    SectionDef("iter+", _P.TRACING, _A.TRACE_ITER, _F.ATTACH_BTF),
    SectionDef("iter.s+", _P.TRACING, _A.TRACE_ITER, _F.ATTACH_BTF | _F.SLEEPABLE),
    SectionDef("syscall", _P.SYSCALL, None, _F.SLEEPABLE),
    SectionDef("xdp.frags/devmap", _P.XDP, _A.XDP_DEVMAP, _F.XDP_FRAGS),
    SectionDef("xdp/devmap", _P.XDP, _A.XDP_DEVMAP, _F.ATTACHABLE),
    SectionDef("xdp.frags/cpumap", _P.XDP, _A.XDP_CPUMAP, _F.XDP_FRAGS),
    SectionDef("xdp/cpumap", _P.XDP, _A.XDP_CPUMAP, _F.ATTACHABLE),
    SectionDef("xdp.frags", _P.XDP, _A.XDP, _F.XDP_FRAGS),
    SectionDef("xdp", _P.XDP, _A.XDP, _F.ATTACHABLE_OPT),
    SectionDef("perf_event", _P.PERF_EVENT, None),
    SectionDef("lwt_in", _P.LWT_IN, None),
    SectionDef("lwt_out", _P.LWT_OUT, None),
    SectionDef("lwt_xmit", _P.LWT_XMIT, None),
    SectionDef("lwt_seg6local", _P.LWT_SEG6LOCAL, None),
    SectionDef("sockops", _P.SOCK_OPS, _A.CGROUP_SOCK_OPS, _F.ATTACHABLE_OPT),
    SectionDef("sk_skb/stream_parser", _P.SK_SKB, _A.SK_SKB_STREAM_PARSER, _F.ATTACHABLE_OPT),
    SectionDef("sk_skb/stream_verdict", _P.SK_SKB, _A.SK_SKB_STREAM_VERDICT, _F.ATTACHABLE_OPT),
    SectionDef("sk_skb", _P.SK_SKB, None),
    SectionDef("sk_msg", _P.SK_MSG, _A.SK_MSG_VERDICT, _F.ATTACHABLE_OPT),
    SectionDef("lirc_mode2", _P.LIRC_MODE2, _A.LIRC_MODE2, _F.ATTACHABLE_OPT),
    SectionDef("flow_dissector", _P.FLOW_DISSECTOR, _A.FLOW_DISSECTOR, _F.ATTACHABLE_OPT),
    SectionDef("cgroup_skb/ingress", _P.CGROUP_SKB, _A.CGROUP_INET_INGRESS, _F.ATTACHABLE_OPT),
    SectionDef("cgroup_skb/egress", _P.CGROUP_SKB, _A.CGROUP_INET_EGRESS, _F.ATTACHABLE_OPT),
    SectionDef("cgroup/skb", _P.CGROUP_SKB, None),
    SectionDef("cgroup/sock_create", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, _F.ATTACHABLE),
    SectionDef("cgroup/sock_release", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_RELEASE, _F.ATTACHABLE),
    SectionDef("cgroup/sock", _P.CGROUP_SOCK, _A.CGROUP_INET_SOCK_CREATE, _F.ATTACHABLE_OPT),
    SectionDef("cgroup/post_bind4", _P.CGROUP_SOCK, _A.CGROUP_INET4_POST_BIND, _F.ATTACHABLE),
    SectionDef("cgroup/post_bind6", _P.CGROUP_SOCK, _A.CGROUP_INET6_POST_BIND, _F.ATTACHABLE),
    SectionDef("cgroup/bind4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_BIND, _F.ATTACHABLE),
    SectionDef("cgroup/bind6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_BIND, _F.ATTACHABLE),
    SectionDef("cgroup/connect4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_CONNECT, _F.ATTACHABLE),
    SectionDef("cgroup/connect6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_CONNECT, _F.ATTACHABLE),
    SectionDef("cgroup/connect_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_CONNECT, _F.ATTACHABLE),
    SectionDef("cgroup/sendmsg4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_SENDMSG, _F.ATTACHABLE),
    SectionDef("cgroup/sendmsg6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_SENDMSG, _F.ATTACHABLE),
    SectionDef("cgroup/sendmsg_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_SENDMSG, _F.ATTACHABLE),
    SectionDef("cgroup/recvmsg4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP4_RECVMSG, _F.ATTACHABLE),
    SectionDef("cgroup/recvmsg6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UDP6_RECVMSG, _F.ATTACHABLE),
    SectionDef("cgroup/recvmsg_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_RECVMSG, _F.ATTACHABLE),
    SectionDef("cgroup/getpeername4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETPEERNAME, _F.ATTACHABLE),
    SectionDef("cgroup/getpeername6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETPEERNAME, _F.ATTACHABLE),
    SectionDef("cgroup/getpeername_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETPEERNAME, _F.ATTACHABLE),
    SectionDef("cgroup/getsockname4", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET4_GETSOCKNAME, _F.ATTACHABLE),
    SectionDef("cgroup/getsockname6", _P.CGROUP_SOCK_ADDR, _A.CGROUP_INET6_GETSOCKNAME, _F.ATTACHABLE),
    SectionDef("cgroup/getsockname_unix", _P.CGROUP_SOCK_ADDR, _A.CGROUP_UNIX_GETSOCKNAME, _F.ATTACHABLE),
    SectionDef("cgroup/sysctl", _P.CGROUP_SYSCTL, _A.CGROUP_SYSCTL, _F.ATTACHABLE),
    SectionDef("cgroup/getsockopt", _P.CGROUP_SOCKOPT, _A.CGROUP_GETSOCKOPT, _F.ATTACHABLE),
    SectionDef("cgroup/setsockopt", _P.CGROUP_SOCKOPT, _A.CGROUP_SETSOCKOPT, _F.ATTACHABLE),
    SectionDef("cgroup/dev", _P.CGROUP_DEVICE, _A.CGROUP_DEVICE, _F.ATTACHABLE_OPT),
    SectionDef("struct_ops+", _P.STRUCT_OPS, None),
    SectionDef("struct_ops.s+", _P.STRUCT_OPS, None, _F.SLEEPABLE),
    SectionDef("sk_lookup", _P.SK_LOOKUP, _A.SK_LOOKUP, _F.ATTACHABLE),
    SectionDef("netfilter", _P.NETFILTER, _A.NETFILTER),
)


_found: dict[str, SectionDef | None] = {}


def find_section_def(section: str) -> SectionDef | None:
    """The definition for a program section name (a leading ``?`` is ignored), or None if unknown."""
    try:
        return _found[section]
    except KeyError:
        pass
    name = section[1:] if section.startswith("?") else section
    found = next((sec_def for sec_def in section_defs if sec_def.matches(name)), None)
    if len(_found) < 1024:  # section names come from objects: bounded, as the names a process meets are
        _found[section] = found
    return found


def attach_target(section: str, sec_def: SectionDef | None = None) -> str:
    """What a section name says to attach to: ``"kprobe/do_unlinkat"`` -> ``"do_unlinkat"``,
    ``"tp/syscalls/sys_enter_openat"`` -> ``"syscalls/sys_enter_openat"``, ``"xdp"`` -> ``""``.

    Only ``type+`` and ``type/`` definitions carry a target; for fixed names (``tc/ingress``,
    ``xdp/devmap``) the whole name is the program kind and the target is empty.
    """
    name = section[1:] if section.startswith("?") else section
    if sec_def is None:
        sec_def = find_section_def(name)
    if sec_def is None:
        return ""
    pfx = sec_def.prefix
    if pfx.endswith("+"):
        base = pfx[:-1]
        return name[len(base) + 1 :] if name.startswith(base + "/") else ""
    if pfx.endswith("/"):
        return name[len(pfx) :]
    return ""


def section_split(section: str) -> tuple[str, str] | None:
    """(definition prefix without ``+`` or a trailing ``/``, target) of a section name, e.g. ``"kretprobe/do_unlinkat"``
    -> ``("kretprobe", "do_unlinkat")``; None when no definition matches. Cached load plans keep it and set
    `Program.section_split`, so that attaching a replayed program does not need this table (`pybpf.link.auto`
    computes it otherwise)."""
    sec_def = find_section_def(section)
    if sec_def is None:
        return None
    pfx = sec_def.prefix.rstrip("+")
    pfx = pfx[:-1] if pfx.endswith("/") else pfx
    return pfx, attach_target(section, sec_def)
