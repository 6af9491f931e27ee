"""sockmap programs (`SEC("sk_msg")`, `SEC("sk_skb/stream_verdict")`, `SEC("sk_skb/stream_parser")`,
`SEC("sk_skb/verdict")`): run on the sockets stored in a SOCKMAP or SOCKHASH map.

The program attaches to the *map*: with a BPF link (``BPF_LINK_CREATE`` on the map fd, Linux 6.10+)
where the kernel has sockmap links, else ``BPF_PROG_ATTACH`` with the map fd as target, undone by
``BPF_PROG_DETACH`` on detach.
"""

from __future__ import annotations

import errno as _errno
import os

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link.base import Link

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


def _attach_type(program: Program, attach_type: str | T.AttachType | None) -> T.AttachType:
    allowed = _BY_PROG.get(program.type) if isinstance(program.type, T.ProgType) else None
    if allowed is None:
        kind = getattr(program.type, "name", str(program.type)).lower()
        raise BPFError(f"program {program.name!r} is a {kind} program; sockmaps take SEC(\"sk_msg\") and "
                       "SEC(\"sk_skb/...\") programs", _errno.EINVAL)
    if attach_type is None:
        if program.attach_type is not None:
            return program.attach_type
        if len(allowed) == 1:
            return allowed[0]
        raise ValueError(f"program {program.name!r} does not say where it attaches (SEC(\"sk_skb\")); pass "
                         "attach_type='stream_parser', 'stream_verdict' or 'verdict'")
    resolved = attach_type if isinstance(attach_type, T.AttachType) else SOCKMAP_ATTACH_TYPES.get(attach_type)
    if resolved is None or resolved not in allowed:
        raise ValueError(f"attach type {attach_type!r} does not fit {program.name!r}")
    return resolved


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
    if legacy is None or legacy is False:
        from pybpf.features import probe_link

        have_link = probe_link("sockmap_link").supported
        if legacy is False and not have_link:
            raise NotSupportedError("sockmap BPF links", "6.10", detail="use legacy=True (BPF_PROG_ATTACH)")
        legacy = not have_link
    if not legacy:
        attr = T.LinkCreateAttr(prog_fd=int(program.fd), target_fd=int(map_fd), attach_type=int(kind))
        ret = bpf_errno(T.Cmd.LINK_CREATE, attr)
        if ret < 0:
            _raise(program, -ret, where, "BPF_LINK_CREATE")
        return Link(program, "sockmap", where, fd=FD(ret))
    # BPF_PROG_DETACH names the map and the program: keep both until then.
    target = FD(os.dup(int(map_fd)))
    prog = program.fd.dup()
    ret = bpf_errno(T.Cmd.PROG_ATTACH, T.ProgAttachAttr(target_fd=int(target), attach_bpf_fd=int(prog),
                                                        attach_type=int(kind)))
    if ret < 0:
        target.close()
        prog.close()
        _raise(program, -ret, where, "BPF_PROG_ATTACH")

    def detach() -> None:
        try:
            attr = T.ProgAttachAttr(target_fd=int(target), attach_bpf_fd=int(prog), attach_type=int(kind))
            ret = bpf_errno(T.Cmd.PROG_DETACH, attr)
            if ret < 0 and -ret != _errno.ENOENT:
                raise BPFError(f"detaching {program.name!r} from {where} failed", -ret, "BPF_PROG_DETACH")
        finally:
            target.close()
            prog.close()

    return Link(program, "sockmap", where, undo=[detach])


def _raise(program: Program, err: int, where: str, command: str) -> None:
    hints = {_errno.EINVAL: "the map must be a SOCKMAP or SOCKHASH, and the attach type fit the program",
             _errno.EBUSY: "another program is attached there", _errno.EEXIST: "another program is attached there"}
    hint = hints.get(err, "")
    raise BPFError(f"attaching {program.name!r} to {where}" + (f" ({hint})" if hint else "") + " failed", err,
                   command)
