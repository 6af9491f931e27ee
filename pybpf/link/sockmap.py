"""sockmap programs (`SEC("sk_msg")`, `SEC("sk_skb/stream_verdict")`, `SEC("sk_skb/stream_parser")`,
`SEC("sk_skb/verdict")`): run on the sockets stored in a SOCKMAP or SOCKHASH map.

The program attaches to the *map*: with a BPF link (``BPF_LINK_CREATE`` on the map fd, Linux 6.10+)
where the kernel has sockmap links, else ``BPF_PROG_ATTACH`` with the map fd as target, undone by
``BPF_PROG_DETACH`` on detach.
"""

from __future__ import annotations

import errno as _errno

from pybpf._sys import types as T
from pybpf.link.base import Link, prog_attach, resolve_attach_type, try_link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf._sys.fd import FD
    from pybpf.map import Map
    from pybpf.program import Program

__all__ = ["SOCKMAP_ATTACH_TYPES", "attach_sockmap"]

# attach_type names -> attach types (ints: attaching builds no enum; SOCKMAP_ATTACH_TYPES has the enums).
_ATTACH_TYPES: dict[str, int] = {
    "msg_verdict": T.BPF_SK_MSG_VERDICT,
    "stream_parser": T.BPF_SK_SKB_STREAM_PARSER,
    "stream_verdict": T.BPF_SK_SKB_STREAM_VERDICT,
    "verdict": T.BPF_SK_SKB_VERDICT,
}
_BY_PROG: dict[int, tuple[int, ...]] = {
    T.BPF_PROG_TYPE_SK_MSG: (T.BPF_SK_MSG_VERDICT,),
    T.BPF_PROG_TYPE_SK_SKB: (T.BPF_SK_SKB_STREAM_PARSER, T.BPF_SK_SKB_STREAM_VERDICT, T.BPF_SK_SKB_VERDICT),
}
_NAMES = {T.BPF_SK_MSG_VERDICT: "sk_msg_verdict", T.BPF_SK_SKB_STREAM_PARSER: "sk_skb_stream_parser",
          T.BPF_SK_SKB_STREAM_VERDICT: "sk_skb_stream_verdict", T.BPF_SK_SKB_VERDICT: "sk_skb_verdict"}

if TYPE_CHECKING:
    SOCKMAP_ATTACH_TYPES: dict[str, T.AttachType]


def __getattr__(name: str) -> object:
    # SOCKMAP_ATTACH_TYPES (name -> AttachType) is built when first asked for.
    if name == "SOCKMAP_ATTACH_TYPES":
        value = globals()[name] = {k: T.AttachType(v) for k, v in _ATTACH_TYPES.items()}
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _parse(name: str) -> T.AttachType:
    try:
        return T.AttachType(_ATTACH_TYPES[name])
    except KeyError:
        raise ValueError(f"unknown sockmap attach type {name!r}; use one of {', '.join(_ATTACH_TYPES)}") from None


def _attach_type(program: Program, attach_type: str | T.AttachType | None) -> int:
    return resolve_attach_type(program, attach_type, _BY_PROG, hook="a sockmap",
                               takes="SEC(\"sk_msg\") and SEC(\"sk_skb/...\")", parse=_parse,
                               lookup=_ATTACH_TYPES.get)


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
    where = f"{getattr(map, 'name', '') or 'map fd ' + str(int(map_fd))} ({_NAMES[kind]})"
    fd = try_link(program, "sockmap_link", legacy, what=f"{program.name!r}", where=where, hints=_HINTS,
                  instead="legacy=True (BPF_PROG_ATTACH)", target_fd=int(map_fd), attach_type=kind)
    if fd is not None:
        return Link(program, "sockmap", where, fd=fd)
    undo = prog_attach(program, map_fd, kind, what=f"{program.name!r}", where=where, hints=_HINTS)
    return Link(program, "sockmap", where, undo=[undo])


_HINTS = {_errno.EINVAL: "the map must be a SOCKMAP or SOCKHASH, and the attach type fit the program",
          _errno.EBUSY: "another program is attached there", _errno.EEXIST: "another program is attached there"}
