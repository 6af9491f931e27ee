"""sockmap programs (`SEC("sk_msg")`, `SEC("sk_skb/stream_verdict")`, `SEC("sk_skb/stream_parser")`,
`SEC("sk_skb/verdict")`): run on the sockets stored in a SOCKMAP or SOCKHASH map.

The program attaches to the *map*: with a BPF link (``BPF_LINK_CREATE`` on the map fd, Linux 6.10+)
where the kernel has sockmap links, else ``BPF_PROG_ATTACH`` with the map fd as target, undone by
``BPF_PROG_DETACH`` on detach.
"""

from __future__ import annotations

import errno as _errno

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno
from pybpf.link.base import Link, attach_error, prog_attach, resolve_attach_type, use_link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.map import Map
    from pybpf.program import Program

__all__ = ["SOCKMAP_ATTACH_TYPES", "attach_sockmap"]

SOCKMAP_ATTACH_TYPES: dict[str, T.AttachType] = {
    "msg_verdict": T.AttachType.SK_MSG_VERDICT,
    "stream_parser": T.AttachType.SK_SKB_STREAM_PARSER,
    "stream_verdict": T.AttachType.SK_SKB_STREAM_VERDICT,
    "verdict": T.AttachType.SK_SKB_VERDICT,
}
_BY_PROG = {T.ProgType.SK_MSG: (T.AttachType.SK_MSG_VERDICT,),
            T.ProgType.SK_SKB: (T.AttachType.SK_SKB_STREAM_PARSER, T.AttachType.SK_SKB_STREAM_VERDICT,
                                T.AttachType.SK_SKB_VERDICT)}


def _parse(name: str) -> T.AttachType:
    try:
        return SOCKMAP_ATTACH_TYPES[name]
    except KeyError:
        raise ValueError(f"unknown sockmap attach type {name!r}; use one of {', '.join(SOCKMAP_ATTACH_TYPES)}") from None


def _attach_type(program: Program, attach_type: str | T.AttachType | None) -> T.AttachType:
    return resolve_attach_type(program, attach_type, _BY_PROG, hook="a sockmap",
                               takes="SEC(\"sk_msg\") and SEC(\"sk_skb/...\")", parse=_parse)


def attach_sockmap(
    program: Program,
    map: Map | FD | int,
    attach_type: str | T.AttachType | None = None,
    *,
    legacy: bool | None = None,
) -> Link:
    """Attach an sk_msg/sk_skb program to a SOCKMAP/SOCKHASH (a Map, or its fd). `attach_type` defaults to
    the section's. `legacy` True forces BPF_PROG_ATTACH; None takes a BPF link where the kernel has one."""
    kind = _attach_type(program, attach_type)
    map_fd = map.fd if hasattr(map, "fd") else map
    where = f"{getattr(map, 'name', '') or 'map fd ' + str(int(map_fd))} ({kind.name.lower()})"
    if use_link("sockmap_link", legacy, "use legacy=True (BPF_PROG_ATTACH)"):
        attr = T.LinkCreateAttr(prog_fd=int(program.fd), target_fd=int(map_fd), attach_type=int(kind))
        ret = bpf_errno(T.BPF_LINK_CREATE, attr)
        if ret < 0:
            raise attach_error(f"{program.name!r}", where, -ret, "BPF_LINK_CREATE", _HINTS)
        return Link(program, "sockmap", where, fd=FD(ret))
    undo = prog_attach(program, map_fd, kind, what=f"{program.name!r}", where=where, hints=_HINTS)
    return Link(program, "sockmap", where, undo=[undo])


_HINTS = {_errno.EINVAL: "the map must be a SOCKMAP or SOCKHASH, and the attach type fit the program",
          _errno.EBUSY: "another program is attached there", _errno.EEXIST: "another program is attached there"}
