"""tc programs (`SEC("tc")`, `SEC("tcx/ingress")`, `SEC("tcx/egress")`): every packet entering or leaving an
interface, after the skb is built.

Linux 6.6+ has tcx: a BPF link on the device's ingress or egress hook (``BPF_LINK_CREATE`` with attach
type ``TCX_INGRESS``/``TCX_EGRESS``), gone when the link fd closes. Older kernels get the classic form
through rtnetlink (pyroute2): a ``clsact`` qdisc on the device (created if missing) and a ``bpf`` filter
in direct-action mode on its ingress (``ffff:fff2``) or egress (``ffff:fff3``) parent. Detaching deletes
the filter, and the qdisc too when this link created it and no filter is left on it. The program's
return value is the verdict either way (``TC_ACT_OK`` passes, ``TC_ACT_SHOT`` drops; tcx also takes
``TCX_NEXT``).
"""

from __future__ import annotations

import errno as _errno
import os
from _thread import allocate_lock

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf.errors import BPFError
from pybpf.link._netdev import NetnsLike, device_where, in_netns, netlink_errno, open_iproute, resolve_ifindex
from pybpf.link.base import Link, attach_error, try_link, use_link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pybpf.program import Program

__all__ = ["TcLink", "attach_tc", "clsact_parent", "have_tcx"]

_DIRECTIONS = {"ingress": T.BPF_TCX_INGRESS, "egress": T.BPF_TCX_EGRESS}
_ETH_P_ALL = 0x0003
_TC_PROG_TYPES = (T.BPF_PROG_TYPE_SCHED_CLS,)

# clsact qdiscs this process created: (netns inode, ifindex) -> live links using them. The last of those
# links to go deletes the qdisc (when no filter of anyone else is left on it).
_our_qdiscs: dict[tuple[int, int], int] = {}
_qdisc_lock = allocate_lock()


class TcLink(Link):
    """A tc attachment: `direction` "ingress"/"egress" of `ifindex`/`ifname`; `legacy` True for a clsact
    filter (then `priority`/`handle` name the filter and `created_qdisc` says whether this link added the
    clsact qdisc), False for a tcx link."""

    def __init__(self, program: Program, target: str, *, ifindex: int, ifname: str, direction: str,
                 fd: FD | None = None, undo: list[Callable[[], None]] | None = None, priority: int = 0,
                 handle: int = 0, created_qdisc: bool = False) -> None:
        super().__init__(program, "tc", target, fd=fd, undo=undo or [])
        self.ifindex = ifindex
        self.ifname = ifname
        self.direction = direction
        self.priority = priority
        self.handle = handle
        self.created_qdisc = created_qdisc

    @property
    def legacy(self) -> bool:
        return self.fd is None


def have_tcx() -> bool:
    """Whether the kernel has tcx links (6.6+)."""
    return use_link("tcx_link", None)


def clsact_parent(direction: str) -> int:
    """The clsact parent handle of a direction: ffff:fff2 (ingress) or ffff:fff3 (egress)."""
    minor = T.TC_H_MIN_INGRESS if direction == "ingress" else T.TC_H_MIN_EGRESS
    return (T.TC_H_CLSACT & T.TC_H_MAJ_MASK) | minor


def _direction(program: Program, direction: str | None) -> str:
    if direction is None:
        return "egress" if program.expected_attach_type == T.BPF_TCX_EGRESS else "ingress"
    if direction not in _DIRECTIONS:
        raise ValueError(f"tc direction must be 'ingress' or 'egress', not {direction!r}")
    return direction


def attach_tc(
    program: Program,
    iface: str | int,
    direction: str | None = None,
    *,
    legacy: bool | None = None,
    netns: NetnsLike | None = None,
    priority: int = 0,
    handle: int = 0,
) -> TcLink:
    """Attach a tc program to the `direction` ("ingress"/"egress"; default from the section, else ingress)
    of interface `iface` (name or ifindex) in `netns` (default: this thread's).

    `legacy` True forces the clsact qdisc + bpf filter form, False forces tcx (NotSupportedError before
    6.6); None takes tcx where the kernel has it. `priority`/`handle` choose the clsact filter's
    (default: after the filters already there, handle 1).
    """
    if program.prog_type not in _TC_PROG_TYPES:
        raise BPFError(f"program {program.name!r} is not a tc program (SEC(\"tc\"), SEC(\"tcx/ingress\"), "
                       "SEC(\"tcx/egress\"))", _errno.EINVAL)
    direction = _direction(program, direction)
    with in_netns(netns):
        ifindex, ifname = resolve_ifindex(iface)
        where = device_where(ifname, ifindex, netns, name_suffix=direction)
        fd = try_link(program, "tcx_link", legacy, what=f"tc program {program.name!r}", where=where,
                      hints=_TCX_HINTS, instead="the clsact form (legacy=True or None)", target_ifindex=ifindex,
                      attach_type=_DIRECTIONS[direction])
        if fd is not None:
            return TcLink(program, where, ifindex=ifindex, ifname=ifname, direction=direction, fd=fd)
        return _attach_clsact(program, ifindex, ifname, direction, where, priority, handle)


_TCX_HINTS = {_errno.ENODEV: "no such interface", _errno.EINVAL: "is it a SEC(\"tc\")/SEC(\"tcx/...\") program?"}


# ---- clsact + cls_bpf through rtnetlink ------------------------------------------------------------------


def _kind(msg: Any) -> str:
    return str(msg.get_attr("TCA_KIND") or "")


def _filters(ipr: Any, ifindex: int, parent: int) -> list[Any]:
    """The filters on one clsact parent (each message once: the kernel lists a chain head too)."""
    return [f for f in ipr.get_filters(index=ifindex, parent=parent) if f.get_attr("TCA_OPTIONS") is not None]


def _filter_name(msg: Any) -> str:
    # pyroute2 does not decode TCA_BPF_ID; the name carries the program id instead (as libbpf does).
    options = msg.get_attr("TCA_OPTIONS")
    return str(options.get_attr("TCA_BPF_NAME") or "") if options is not None else ""


def _prio(msg: Any) -> int:
    return int(msg["info"]) >> 16


def _attach_clsact(program: Program, ifindex: int, ifname: str, direction: str, where: str, priority: int,
                   handle: int) -> TcLink:
    parent = clsact_parent(direction)
    key = (os.stat("/proc/thread-self/ns/net").st_ino, ifindex)
    # The socket stays open for the link's life: it is bound to the namespace the device lives in.
    ipr = open_iproute("tcx_link", "the clsact qdisc form")
    created = False
    shares = False
    try:
        filter_name = f"{program.name}:[{program.id}]"
        try:
            with _qdisc_lock:
                if not any(_kind(q) == "clsact" for q in ipr.get_qdiscs(index=ifindex)):
                    ipr.tc("add", "clsact", index=ifindex)
                    created = True
                    _our_qdiscs[key] = 0
                if key in _our_qdiscs:
                    _our_qdiscs[key] += 1
                    shares = True
            if not priority:
                taken = [_prio(f) for f in _filters(ipr, ifindex, parent)]
                priority = max(taken, default=0) + 1  # run after what is already there
            handle = handle or 1
            ipr.tc("add-filter", "bpf", index=ifindex, handle=handle, prio=priority, parent=parent,
                   fd=int(program.fd), name=filter_name, direct_action=True, protocol=_ETH_P_ALL)
        except Exception as exc:
            err = netlink_errno(exc)
            if shares:
                _release_qdisc(ipr, key)
            if not err:
                raise
            hints = {_errno.ENOENT: "the kernel lacks sch_clsact/cls_bpf (modprobe sch_ingress cls_bpf)",
                     _errno.EEXIST: f"a filter with priority {priority} and handle {handle} exists",
                     _errno.EINVAL: "is it a SEC(\"tc\") program?"}
            raise attach_error(f"tc program {program.name!r}", f"{where} (clsact)", err, "netlink RTM_NEWTFILTER",
                               hints) from None
    except BaseException:
        ipr.close()
        raise

    def remove() -> None:
        try:
            ours = [f for f in _filters(ipr, ifindex, parent)
                    if _prio(f) == priority and int(f["handle"]) == handle and _filter_name(f) == filter_name]
            if ours:
                ipr.tc("del-filter", "bpf", index=ifindex, handle=handle, prio=priority, parent=parent,
                       protocol=_ETH_P_ALL)
            if shares:
                _release_qdisc(ipr, key)
        except Exception as exc:
            err = netlink_errno(exc)
            if err not in (_errno.ENODEV, _errno.EINVAL):  # the device (and everything on it) is gone
                raise BPFError(f"removing tc filter from {where} failed", err, "netlink RTM_DELTFILTER") from None
        finally:
            ipr.close()

    return TcLink(program, where + f" clsact prio {priority} handle {handle}", ifindex=ifindex, ifname=ifname,
                  direction=direction, undo=[remove], priority=priority, handle=handle,
                  created_qdisc=created)


def _release_qdisc(ipr: Any, key: tuple[int, int]) -> None:
    with _qdisc_lock:
        left = _our_qdiscs.get(key, 0) - 1
        if left > 0:
            _our_qdiscs[key] = left
            return
        _our_qdiscs.pop(key, None)
        _delete_qdisc_if_unused(ipr, key[1])


def _delete_qdisc_if_unused(ipr: Any, ifindex: int) -> None:
    if any(_filters(ipr, ifindex, clsact_parent(d)) for d in _DIRECTIONS):
        return  # someone else's filters live on it
    try:
        ipr.tc("del", "clsact", index=ifindex)
    except Exception as exc:
        if netlink_errno(exc) not in (_errno.ENOENT, _errno.EINVAL, _errno.ENODEV):
            raise
