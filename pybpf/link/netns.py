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
from pybpf.link.base import Link, attach_error, prog_attach, prog_type_name, use_link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.program import Program

__all__ = ["attach_netns"]

# program type -> (attach type, hook name)
_ATTACH_TYPES: dict[int, tuple[int, str]] = {
    T.BPF_PROG_TYPE_SK_LOOKUP: (T.BPF_SK_LOOKUP, "sk_lookup"),
    T.BPF_PROG_TYPE_FLOW_DISSECTOR: (T.BPF_FLOW_DISSECTOR, "flow_dissector"),
}
_HINTS = {_errno.E2BIG: "too many programs on this hook",
          _errno.EEXIST: "a flow dissector is already attached to this namespace"}


def attach_netns(program: Program, netns: NetnsLike | None = None) -> Link:
    """Attach an sk_lookup or flow_dissector program to a network namespace: None (this thread's), a name
    from ``ip netns``, a path (/run/netns/NAME, /proc/PID/ns/net) or an fd."""
    found = _ATTACH_TYPES.get(program.prog_type)
    if found is None:
        raise BPFError(f"program {program.name!r} is a {prog_type_name(program)} program; network namespaces take "
                       "SEC(\"sk_lookup\") and SEC(\"flow_dissector\") programs", _errno.EINVAL)
    kind, hook = found
    what = f"{program.name!r} ({hook})"
    where = f"network namespace {netns if netns is not None else '(current)'}"
    with open_netns(netns) as ns_fd:
        attr = T.LinkCreateAttr(prog_fd=int(program.fd), target_fd=int(ns_fd), attach_type=kind)
        ret = bpf_errno(T.BPF_LINK_CREATE, attr)
        if ret >= 0:
            return Link(program, hook, where, fd=FD(ret))
        err = -ret
        # Tried first: the netns_link probe loads an sk_lookup program, which 5.8 (netns links, no
        # sk_lookup) lacks.
        if err == _errno.EINVAL and not use_link("netns_link", None):
            if kind == T.BPF_SK_LOOKUP:
                from pybpf.features.versions import first_kernel

                raise NotSupportedError("sk_lookup programs", first_kernel("prog_type", T.ProgType.SK_LOOKUP), err)
            # BPF_PROG_ATTACH of a flow dissector applies to the caller's namespace: enter it (and keep
            # its fd for the detach).
            undo = prog_attach(program, ns_fd, kind, what=what, where=where,
                               hints=_HINTS, send_target=False,
                               ctx=lambda fd: in_netns(fd if netns is not None else None))
            return Link(program, hook, where, undo=[undo])
        raise attach_error(what, where, err, "BPF_LINK_CREATE", _HINTS)
