"""cgroup programs (`SEC("cgroup/connect4")`, `SEC("cgroup_skb/ingress")`, `SEC("sockops")`, ...): run for
the sockets, packets, devices and sysctls of every process in a cgroup v2 subtree.

A BPF link (``BPF_LINK_CREATE`` on the cgroup fd, Linux 5.7+) is used where it can be: it is removed
when the fd closes and several programs may share a hook. ``BPF_PROG_ATTACH`` is the fallback, and the
form used when `flags` are given (``BPF_F_ALLOW_MULTI`` by default there, so other programs stay);
detaching does ``BPF_PROG_DETACH`` of exactly this program.
"""

from __future__ import annotations

import errno as _errno
import os

from pybpf._sys import int_constants
from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf.errors import BPFError
from pybpf.link.base import Link, prog_attach, resolve_attach_type, try_link

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pybpf.program import Program

__all__ = ["CgroupLink", "attach_cgroup", "cgroup2_root", "cgroup_attach_type", "open_cgroup"]

# Attach types of each cgroup program type: what a program may be attached as when its section did not
# say (and what an explicit attach_type is checked against). Kept as kernel names (AttachType member names)
# and ints, so that attaching builds no enum.
_ATTACH_NAMES_BY_PROG: dict[int, tuple[str, ...]] = {
    T.BPF_PROG_TYPE_CGROUP_SKB: ("CGROUP_INET_INGRESS", "CGROUP_INET_EGRESS"),
    T.BPF_PROG_TYPE_CGROUP_SOCK: ("CGROUP_INET_SOCK_CREATE", "CGROUP_INET_SOCK_RELEASE", "CGROUP_INET4_POST_BIND",
                                  "CGROUP_INET6_POST_BIND"),
    T.BPF_PROG_TYPE_SOCK_OPS: ("CGROUP_SOCK_OPS",),
    T.BPF_PROG_TYPE_CGROUP_DEVICE: ("CGROUP_DEVICE",),
    T.BPF_PROG_TYPE_CGROUP_SYSCTL: ("CGROUP_SYSCTL",),
    T.BPF_PROG_TYPE_CGROUP_SOCKOPT: ("CGROUP_GETSOCKOPT", "CGROUP_SETSOCKOPT"),
    # every CGROUP_*_{BIND,CONNECT,SENDMSG,RECVMSG,GETPEERNAME,GETSOCKNAME} of the kernel but the POST_BINDs
    T.BPF_PROG_TYPE_CGROUP_SOCK_ADDR: tuple(
        "CGROUP_" + name for name in int_constants("BPF_CGROUP_")
        if name.endswith(("BIND", "CONNECT", "SENDMSG", "RECVMSG", "GETPEERNAME", "GETSOCKNAME"))
        and not name.endswith("POST_BIND")),
    T.BPF_PROG_TYPE_LSM: ("LSM_CGROUP",),
}
_ATTACH_TYPE_VALUES: dict[str, int] = {
    name: getattr(T, "BPF_" + name) for names in _ATTACH_NAMES_BY_PROG.values() for name in names
}
_ATTACH_TYPE_NAMES: dict[int, str] = {value: name for name, value in _ATTACH_TYPE_VALUES.items()}
_ATTACH_TYPES_BY_PROG: dict[int, tuple[int, ...]] = {
    prog_type: tuple(_ATTACH_TYPE_VALUES[name] for name in names)
    for prog_type, names in _ATTACH_NAMES_BY_PROG.items()
}


class CgroupLink(Link):
    """A cgroup attachment: `cgroup` (path or "fd N"), `attach_type`, `legacy` True for BPF_PROG_ATTACH."""

    def __init__(self, program: Program, target: str, *, cgroup: str, attach_type: T.AttachType | int,
                 fd: FD | None = None, undo: list[Callable[[], None]] | None = None) -> None:
        super().__init__(program, "cgroup", target, fd=fd, undo=undo or [])
        self.cgroup = cgroup
        self._attach_type = int(attach_type)

    @property
    def attach_type(self) -> T.AttachType:
        """The attach type (an AttachType, built when asked for: attaching builds no enum)."""
        return T.AttachType(self._attach_type)

    @property
    def legacy(self) -> bool:
        return self.fd is None


def cgroup2_root() -> str:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified in hybrid mode)."""
    from pybpf._sys.mounts import mount_point

    root = mount_point("cgroup2")
    if root is not None:
        return root
    raise BPFError("no cgroup v2 hierarchy is mounted (mount -t cgroup2 none /sys/fs/cgroup/unified)", _errno.ENOENT)


def cgroup_attach_type(name: str | T.AttachType) -> T.AttachType:
    """An attach type from its enum name ("CGROUP_INET4_CONNECT") or its section spelling ("connect4",
    "sock_create", "ingress", "sockops", "dev")."""
    if isinstance(name, T.AttachType):
        return name
    from pybpf.elf.sections import find_section_def

    for candidate in _enum_names(name):
        if candidate in T.AttachType.__members__:
            return T.AttachType[candidate]
    for section in (f"cgroup/{name}", f"cgroup_skb/{name}", name):
        sec_def = find_section_def(section)
        if sec_def is not None and sec_def.attach_type is not None:
            return sec_def.attach_type
    raise ValueError(f"unknown cgroup attach type {name!r} (e.g. 'connect4', 'sock_create', 'ingress', "
                     "'egress', 'sockops', 'dev', 'sysctl', 'getsockopt')")


def _enum_names(name: str) -> tuple[str, str, str]:
    """The AttachType member names `name` may be short for, in the order tried: itself, CGROUP_<name>
    ("sysctl") and CGROUP_INET_<name> ("ingress", "sock_create"); upper case, without a BPF_ prefix."""
    upper = name.upper().removeprefix("BPF_")
    return upper, "CGROUP_" + upper, "CGROUP_INET_" + upper


def open_cgroup(cgroup: str | os.PathLike[str] | int | FD) -> tuple[FD, str]:
    """An fd of a cgroup v2 directory (a path, a name under the cgroup v2 root, or an fd, which is
    duplicated) and how to name it in messages; the caller closes the fd."""
    if isinstance(cgroup, (int, FD)):
        return FD(os.dup(int(cgroup))), f"cgroup fd {int(cgroup)}"
    path = os.fspath(cgroup)
    if not os.path.isabs(path) and not os.path.exists(path):
        path = os.path.join(cgroup2_root(), path)  # "mygroup" means a cgroup under the v2 root
    try:
        return FD(os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)), path
    except FileNotFoundError:
        raise BPFError(f"no cgroup {path} (cgroup v2 is mounted at {cgroup2_root()})", _errno.ENOENT) from None
    except NotADirectoryError:
        raise BPFError(f"{path} is not a cgroup directory", _errno.ENOTDIR) from None


def _resolve_attach_type(program: Program, attach_type: str | T.AttachType | None) -> int:
    return resolve_attach_type(program, attach_type, _ATTACH_TYPES_BY_PROG, hook="a cgroup",
                               takes="cgroup (SEC(\"cgroup/...\"), SEC(\"cgroup_skb/...\"), SEC(\"sockops\"), ...)",
                               parse=cgroup_attach_type, lookup=_attach_type_value)


def _attach_type_value(name: str) -> int | None:
    """What `cgroup_attach_type(name)` gives for the names of cgroup attach types ("ingress",
    "CGROUP_SYSCTL", "sock_create"), as an int; None where it has to decide."""
    for candidate in _enum_names(name):
        value = _ATTACH_TYPE_VALUES.get(candidate)
        if value is not None:
            return value
        if hasattr(T, "BPF_" + candidate):
            return None  # perhaps an attach type of other hooks
    return None


def attach_cgroup(
    program: Program,
    cgroup: str | os.PathLike[str] | int | FD,
    attach_type: str | T.AttachType | None = None,
    flags: int = 0,
    *,
    legacy: bool | None = None,
) -> CgroupLink:
    """Attach a cgroup program to `cgroup`: a path (absolute, or relative to the cgroup v2 root) or an
    open fd of the cgroup directory. `attach_type` defaults to the program's section. `flags`
    (BPF_F_ALLOW_MULTI, BPF_F_ALLOW_OVERRIDE, BPF_F_REPLACE...) select BPF_PROG_ATTACH; so does
    `legacy=True`. `legacy=False` insists on a BPF link."""
    kind = _resolve_attach_type(program, attach_type)
    cg_fd, cg_name = open_cgroup(cgroup)
    where = f"{cg_name} ({_ATTACH_TYPE_NAMES[kind].lower()})"
    try:
        if flags:
            if legacy is False:
                raise ValueError("flags apply to BPF_PROG_ATTACH only; cgroup links always allow several programs")
            legacy = True
        fd = try_link(program, "cgroup_link", legacy, what=f"{program.name!r}", where=f"cgroup {where}",
                      hints=_HINTS, instead="legacy=True (BPF_PROG_ATTACH)", target_fd=int(cg_fd), attach_type=kind)
        if fd is not None:
            return CgroupLink(program, where, cgroup=cg_name, attach_type=kind, fd=fd)
        undo = prog_attach(program, cg_fd, kind, flags=flags or T.BPF_F_ALLOW_MULTI,
                           what=f"{program.name!r}", where=f"cgroup {where}", hints=_HINTS)
        return CgroupLink(program, where, cgroup=cg_name, attach_type=kind, undo=[undo])
    finally:
        cg_fd.close()  # a link or attachment holds the cgroup itself; prog_attach keeps its own dup


_HINTS = {
    _errno.EPERM: "a program attached without BPF_F_ALLOW_MULTI/OVERRIDE is in the way, or run as root",
    _errno.EINVAL: "the program's expected attach type differs, or the flags conflict with attachments "
                   "already there",
    _errno.EBADF: "not a cgroup v2 directory",
    _errno.EEXIST: "this program is already attached there",
    _errno.E2BIG: "too many programs on this hook (64 at most)",
}
