"""XDP (`SEC("xdp")`): run a program on every packet a network interface receives, before the stack.

Attached through a BPF link (``BPF_LINK_CREATE`` with attach type ``XDP``, Linux 5.9+), which the kernel
removes when the link fd is closed, so a crashed process leaves nothing behind. Older kernels (or
``netlink=True``) use the rtnetlink ``IFLA_XDP`` attribute through pyroute2; that attachment outlives
the process, so the link removes it on detach and at exit, and only if our program is still the one
attached. Modes: ``"generic"`` (``XDP_FLAGS_SKB_MODE``: any device, after the skb is built),
``"driver"`` (``XDP_FLAGS_DRV_MODE``: in the driver, fastest), ``"offload"`` (``XDP_FLAGS_HW_MODE``: on
the NIC); None lets the kernel take driver mode when the device has it and generic mode otherwise.
"""

from __future__ import annotations

import errno as _errno

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf.errors import BPFError
from pybpf.link._netdev import NetnsLike, device_where, in_netns, netlink_errno, open_iproute, resolve_ifindex
from pybpf.link.base import Link, attach_error, try_link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pybpf.program import Program

__all__ = ["XDP_MODES", "XdpLink", "attach_xdp", "xdp_mode_flags", "xdp_program_id"]

XDP_MODES: dict[str, int] = {
    "generic": T.XDP_FLAGS_SKB_MODE,
    "skb": T.XDP_FLAGS_SKB_MODE,
    "driver": T.XDP_FLAGS_DRV_MODE,
    "drv": T.XDP_FLAGS_DRV_MODE,
    "native": T.XDP_FLAGS_DRV_MODE,
    "offload": T.XDP_FLAGS_HW_MODE,
    "hw": T.XDP_FLAGS_HW_MODE,
}
_MODE_NAMES = {T.XDP_FLAGS_SKB_MODE: "generic", T.XDP_FLAGS_DRV_MODE: "driver", T.XDP_FLAGS_HW_MODE: "offload"}


class XdpLink(Link):
    """An XDP attachment: `ifindex`/`ifname` of the device, `mode` ("generic", "driver", "offload" or
    "auto"), `legacy` True when it went through netlink instead of a BPF link."""

    def __init__(self, program: Program, target: str, *, ifindex: int, ifname: str, mode: str,
                 fd: FD | None = None, undo: list[Callable[[], None]] | None = None) -> None:
        super().__init__(program, "xdp", target, fd=fd, undo=undo or [])
        self.ifindex = ifindex
        self.ifname = ifname
        self.mode = mode

    @property
    def legacy(self) -> bool:
        return self.fd is None


def xdp_mode_flags(mode: str | int | None) -> int:
    """XDP_FLAGS_* for a mode name ("generic", "driver", "offload"; None: the kernel chooses) or flags."""
    if mode is None:
        return 0
    if isinstance(mode, int):
        return mode
    try:
        return XDP_MODES[mode.lower()]
    except KeyError:
        raise ValueError(f"unknown XDP mode {mode!r}; use one of generic, driver, offload (or None)") from None


def attach_xdp(
    program: Program,
    iface: str | int,
    mode: str | int | None = None,
    *,
    flags: int = 0,
    netns: NetnsLike | None = None,
    netlink: bool | None = None,
) -> XdpLink:
    """Attach an XDP program to interface `iface` (name or ifindex) of `netns` (default: this thread's).

    `mode` is "generic", "driver", "offload" or None (driver when available). `flags` adds raw
    XDP_FLAGS_*. `netlink` True forces the rtnetlink attachment, False the BPF link (NotSupportedError
    before 5.9); None takes the link where the kernel has XDP links.
    """
    if program.prog_type != T.BPF_PROG_TYPE_XDP:
        raise BPFError(f"program {program.name!r} is not an XDP program (SEC(\"xdp\"))", _errno.EINVAL)
    mode_flags = xdp_mode_flags(mode) | flags
    mode_name = _MODE_NAMES.get(mode_flags & (T.XDP_FLAGS_SKB_MODE | T.XDP_FLAGS_DRV_MODE | T.XDP_FLAGS_HW_MODE),
                                "auto")
    with in_netns(netns):
        return _attach(program, iface, netns, mode_flags, mode_name, netlink)


def _attach(program: Program, iface: str | int, netns: NetnsLike | None, mode_flags: int, mode_name: str,
            netlink: bool | None) -> XdpLink:
    ifindex, ifname = resolve_ifindex(iface)
    where = device_where(ifname, ifindex, netns, extra=mode_name)
    fd = try_link(program, "xdp_link", netlink, what=f"XDP program {program.name!r}", where=where,
                  hints=_hints(mode_flags), instead="the netlink form (netlink=True or None)",
                  target_ifindex=ifindex, attach_type=T.BPF_XDP, flags=mode_flags)
    if fd is not None:
        return XdpLink(program, where, ifindex=ifindex, ifname=ifname, mode=mode_name, fd=fd)
    return _attach_netlink(program, ifindex, ifname, where, mode_flags, mode_name)


def _hints(mode_flags: int) -> dict[int, str]:
    """What an attach error means (see attach_error), for the XDP_FLAGS_* `mode_flags`."""
    return {
        _errno.EBUSY: "another XDP program is attached there through netlink; detach it first "
                      "(ip link set dev IFACE xdp off)",
        _errno.EEXIST: "another XDP program or link is already attached in this mode",
        _errno.EOPNOTSUPP: "the device cannot offload XDP programs" if mode_flags & T.XDP_FLAGS_HW_MODE
                           else "the driver has no XDP support in this mode; use mode='generic'",
        _errno.ENODEV: "no such interface",
        _errno.EINVAL: "check the mode flags and that the program was loaded as SEC(\"xdp\") (not xdp/devmap "
                       "or xdp/cpumap)",
    }


def xdp_program_id(ipr: Any, ifindex: int) -> int:
    """Id of the XDP program attached to `ifindex` (0: none), asked through a pyroute2 IPRoute."""
    (msg,) = ipr.get_links(ifindex)
    xdp = msg.get_attr("IFLA_XDP")
    if xdp is None:
        return 0
    return int(xdp.get_attr("IFLA_XDP_PROG_ID") or 0)


def _attach_netlink(program: Program, ifindex: int, ifname: str, where: str, mode_flags: int,
                    mode_name: str) -> XdpLink:
    # The socket stays open for the link's life: it is bound to the namespace the device lives in.
    ipr = open_iproute("xdp_link", "the netlink attachment")
    try:
        # UPDATE_IF_NOEXIST: never replace a program someone else attached.
        set_flags = mode_flags | T.XDP_FLAGS_UPDATE_IF_NOEXIST
        try:
            ipr.link("set", index=ifindex, xdp={"attrs": [("IFLA_XDP_FD", int(program.fd)),
                                                          ("IFLA_XDP_FLAGS", set_flags)]})
        except Exception as exc:  # pyroute2's NetlinkError carries the errno in .code
            err = netlink_errno(exc)
            if not err:
                raise
            raise attach_error(f"XDP program {program.name!r}", where, err, "netlink IFLA_XDP",
                               _hints(mode_flags)) from None
        prog_id = program.id
    except BaseException:
        ipr.close()
        raise

    def remove() -> None:
        try:
            if xdp_program_id(ipr, ifindex) == prog_id:
                ipr.link("set", index=ifindex, xdp={"attrs": [("IFLA_XDP_FD", -1),
                                                              ("IFLA_XDP_FLAGS", mode_flags)]})
        except Exception as exc:
            if netlink_errno(exc) != _errno.ENODEV:  # the device is gone, and the program with it
                raise BPFError(f"removing XDP program from {where} failed", netlink_errno(exc),
                               "netlink IFLA_XDP") from None
        finally:
            ipr.close()

    return XdpLink(program, where, ifindex=ifindex, ifname=ifname, mode=mode_name, undo=[remove])
