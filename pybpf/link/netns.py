"""Network-namespace programs: `SEC("sk_lookup")` (choose the socket for an incoming connection or
datagram, Linux 5.9+) and `SEC("flow_dissector")` (parse packet headers for the flow hash).

Both attach to a whole network namespace with a BPF link (``BPF_LINK_CREATE`` on a netns fd, 5.8+),
gone when the link closes. A flow dissector on a kernel without netns links is attached with
``BPF_PROG_ATTACH`` inside the namespace instead, and detached the same way.
"""

from __future__ import annotations

import errno as _errno

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link._netdev import NetnsLike, in_netns, open_netns
from pybpf.link.base import Link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.program import Program

__all__ = ["attach_netns"]

_ATTACH_TYPES = {T.ProgType.SK_LOOKUP: T.AttachType.SK_LOOKUP, T.ProgType.FLOW_DISSECTOR: T.AttachType.FLOW_DISSECTOR}
_FIRST_KERNEL = {T.ProgType.SK_LOOKUP: "5.9", T.ProgType.FLOW_DISSECTOR: "5.8"}


def attach_netns(program: Program, netns: NetnsLike | None = None) -> Link:
    """Attach an sk_lookup or flow_dissector program to a network namespace: None (this thread's), a name
    from ``ip netns``, a path (/run/netns/NAME, /proc/PID/ns/net) or an fd."""
    kind = _ATTACH_TYPES.get(program.type) if isinstance(program.type, T.ProgType) else None
    if kind is None:
        name = getattr(program.type, "name", str(program.type)).lower()
        raise BPFError(f"program {program.name!r} is a {name} program; network namespaces take SEC(\"sk_lookup\") "
                       "and SEC(\"flow_dissector\") programs", _errno.EINVAL)
    hook = kind.name.lower()
    where = f"network namespace {netns if netns is not None else '(current)'}"
    with open_netns(netns) as ns_fd:
        attr = T.LinkCreateAttr(prog_fd=int(program.fd), target_fd=int(ns_fd), attach_type=int(kind))
        ret = bpf_errno(T.Cmd.LINK_CREATE, attr)
        if ret >= 0:
            return Link(program, hook, where, fd=FD(ret))
        err = -ret
        from pybpf.features import probe_link

        if err == _errno.EINVAL and not probe_link("netns_link").supported:
            if kind == T.AttachType.SK_LOOKUP:
                raise NotSupportedError("sk_lookup programs", _FIRST_KERNEL[T.ProgType.SK_LOOKUP], err)
            return _prog_attach(program, ns_fd, netns, where)
        hints = {_errno.E2BIG: "too many programs on this hook",
                 _errno.EEXIST: "a flow dissector is already attached to this namespace"}
        hint = hints.get(err, "")
        raise BPFError(f"attaching {program.name!r} ({hook}) to {where}" + (f" ({hint})" if hint else "")
                       + " failed", err, "BPF_LINK_CREATE")


def _prog_attach(program: Program, ns_fd: FD, netns: NetnsLike | None, where: str) -> Link:
    # Before 5.8, BPF_PROG_ATTACH of a flow dissector applies to the caller's namespace.
    keep_ns = ns_fd.dup()
    prog = program.fd.dup()
    try:
        with in_netns(int(keep_ns) if netns is not None else None):
            attr = T.ProgAttachAttr(target_fd=0, attach_bpf_fd=int(prog),
                                    attach_type=int(T.AttachType.FLOW_DISSECTOR))
            ret = bpf_errno(T.Cmd.PROG_ATTACH, attr)
        if ret < 0:
            raise BPFError(f"attaching flow dissector {program.name!r} to {where} failed", -ret, "BPF_PROG_ATTACH")
    except BaseException:
        keep_ns.close()
        prog.close()
        raise

    def detach() -> None:
        try:
            with in_netns(int(keep_ns) if netns is not None else None):
                attr = T.ProgAttachAttr(target_fd=0, attach_bpf_fd=int(prog),
                                        attach_type=int(T.AttachType.FLOW_DISSECTOR))
                ret = bpf_errno(T.Cmd.PROG_DETACH, attr)
            if ret < 0 and -ret != _errno.ENOENT:
                raise BPFError(f"detaching flow dissector {program.name!r} from {where} failed", -ret,
                               "BPF_PROG_DETACH")
        finally:
            keep_ns.close()
            prog.close()

    return Link(program, "flow_dissector", where, undo=[detach])
