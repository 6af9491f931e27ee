"""Network devices and namespaces for the packet hooks (XDP, tc, sk_lookup): shared by their modules.

Interfaces are named in the network namespace of the calling thread. `in_netns` moves the calling
thread into another namespace for a block (setns), which is how a hook is attached to a device that
lives in a namespace the process did not start in; netlink sockets opened inside the block stay bound
to that namespace for their whole life, so a netlink attachment is undone in the right place later.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from _socket import if_indextoname, if_nametoindex  # `socket` itself imports enum (~3 ms of start-up)

from pybpf._sys.fd import FD
from pybpf.errors import BPFError, NotSupportedError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = ["NETNS_DIR", "device_where", "in_netns", "netlink_errno", "open_iproute", "open_netns", "resolve_ifindex"]

NETNS_DIR = "/run/netns"  # where `ip netns add` keeps named namespaces
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)

NetnsLike = str | os.PathLike[str] | int | FD


def open_netns(netns: NetnsLike | None) -> FD:
    """An fd of a network namespace: None (this thread's), a name from ``ip netns`` ("blue"), a path
    (/run/netns/blue, /proc/PID/ns/net) or an fd (duplicated; the caller keeps its own)."""
    if netns is None:
        path = "/proc/thread-self/ns/net"
    elif isinstance(netns, (int, FD)):
        return FD(os.dup(int(netns)))
    else:
        text = os.fspath(netns)
        path = text if "/" in text else os.path.join(NETNS_DIR, text)
    try:
        return FD(os.open(path, os.O_RDONLY | os.O_CLOEXEC))
    except FileNotFoundError:
        raise BPFError(f"no network namespace {path} (list them with `ip netns list`)", _errno.ENOENT) from None


def _setns(fd: int, what: str) -> None:
    if _libc.setns(fd, _CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise BPFError(f"entering network namespace {what} failed (needs CAP_SYS_ADMIN)", err, "setns")


class in_netns:  # noqa: N801 - reads as a function: `with in_netns(netns):` (a class: contextlib costs start-up)
    """Run the block with the calling thread inside `netns` (None: stay where it is)."""

    __slots__ = ("_home", "_netns")

    def __init__(self, netns: NetnsLike | None) -> None:
        self._netns = netns
        self._home: FD | None = None

    def __enter__(self) -> None:
        if self._netns is None:
            return
        with open_netns(self._netns) as target:
            home = open_netns(None)
            try:
                _setns(int(target), str(self._netns))
            except BaseException:
                home.close()
                raise
        self._home = home

    def __exit__(self, *exc_info: object) -> None:
        home, self._home = self._home, None
        if home is not None:
            with home:
                _setns(int(home), "of the caller (going back)")


def resolve_ifindex(iface: str | int) -> tuple[int, str]:
    """(ifindex, name) of an interface in the calling thread's network namespace."""
    if isinstance(iface, int):
        if iface <= 0:
            raise ValueError(f"bad interface index {iface}")
        try:
            return iface, if_indextoname(iface)
        except OSError:
            raise BPFError(f"no network interface with index {iface} in this network namespace",
                           _errno.ENODEV) from None
    try:
        return if_nametoindex(iface), iface
    except OSError:
        raise BPFError(f"no network interface {iface!r} in this network namespace (pass netns= when it lives "
                       "in another one)", _errno.ENODEV) from None


def device_where(ifname: str, ifindex: int, netns: NetnsLike | None, *, name_suffix: str = "", extra: str = "") -> str:
    """A device for messages: "eth0 ingress (ifindex 3, netns blue, generic)"."""
    name = f"{ifname} {name_suffix}" if name_suffix else ifname
    details = [f"ifindex {ifindex}"]
    if netns is not None:
        details.append(f"netns {netns}")
    if extra:
        details.append(extra)
    return f"{name} ({', '.join(details)})"


# ---- rtnetlink (pyroute2), for the forms kernels without the BPF link need ---------------------------------


def open_iproute(link_kind: str, form: str) -> Any:
    """A pyroute2 IPRoute socket (bound to the calling thread's network namespace), for a kernel without
    the BPF link of `link_kind` (a pybpf.features.LINK_KINDS key) that needs `form` through netlink;
    NotSupportedError naming both when pyroute2 is not installed."""
    try:
        from pyroute2 import IPRoute
    except ImportError:
        from pybpf.features.versions import first_kernel
        from pybpf.link.base import link_feature

        raise NotSupportedError(link_feature(link_kind), first_kernel("misc", link_kind),
                                detail=f"this kernel needs {form}, which uses pyroute2: pip install pyroute2") from None
    return IPRoute()


def netlink_errno(exc: BaseException) -> int:
    """The errno a pyroute2 NetlinkError carries in `.code` (0: another kind of exception)."""
    code = getattr(exc, "code", 0)
    return int(code) if isinstance(code, int) else 0
