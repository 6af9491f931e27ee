"""The `Link`: one attachment of a program to a hook, owned until detached.

A link owns whatever keeps the attachment alive: a BPF link fd, a perf event fd, a tracefs entry, a
netlink filter or a `BPF_PROG_ATTACH`. Detaching undoes all of it, in reverse order. Every live link is
registered so that interpreter exit (and the CLI's SIGINT/SIGTERM handlers) release what the user did not
pin; closing is done concurrently because the kernel takes ~80 ms to release each syscall tracepoint.
"""

from __future__ import annotations

import atexit
import ctypes
import errno
import os
from _thread import allocate_lock
from _weakref import ref as _weak_ref  # weakref.ref itself; `import weakref` costs ~1 ms of start-up

from pybpf._sys import enum_or_int
from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.pin import open_pinned, pin_fd
from pybpf._sys.record import record
from pybpf._sys.syscall import bpf, bpf_errno, bpf_fd, object_ids
from pybpf.errors import BPFError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator
    from types import TracebackType
    from typing import Self

    from pybpf.program import Program

__all__ = ["Link", "LinkInfo", "detach_all", "kernel_links", "live_links"]


@record(frozen=True)
class LinkInfo:
    id: int
    type: T.LinkType | int
    prog_id: int
    raw: T.LinkInfo


class Link:
    """An attachment. `detach()` (alias `close()`) releases it; so does leaving a `with` block.

    `kind` names the hook ("tracepoint", "xdp", …) and `target` what it is attached to, for messages.
    A link holding a BPF link fd (`fd`) can be pinned, updated and queried; others (perf event ioctl,
    netlink, PROG_ATTACH) release through their undo callbacks.
    """

    def __init__(
        self,
        program: Program | None,
        kind: str,
        target: str,
        *,
        fd: FD | None = None,
        owned: Iterable[FD] = (),
        undo: Iterable[Callable[[], None]] = (),
    ) -> None:
        self.program = program
        self.kind = kind
        self.target = target
        self.fd = fd
        self._owned = list(owned)
        self._undo = list(undo)
        self._pinned: str | None = None
        self._lock = allocate_lock()
        self._detached = False
        _register(self)

    # ---- lifecycle ----------------------------------------------------------------------------------

    @property
    def detached(self) -> bool:
        return self._detached

    def detach(self) -> None:
        """Release the attachment. Idempotent. Errors in individual undo steps are collected and raised
        after every step has run, so one failure never leaves the rest attached."""
        with self._lock:
            if self._detached:
                return
            self._detached = True
        _registry.pop(id(self), None)
        errors: list[BaseException] = []
        if self.fd is not None:
            try:
                self.fd.close()
            except OSError as exc:
                errors.append(exc)
        for fd in reversed(self._owned):
            try:
                fd.close()
            except OSError as exc:
                errors.append(exc)
        for step in reversed(self._undo):
            try:
                step()
            except Exception as exc:  # noqa: BLE001 - every step must run
                errors.append(exc)
        if errors:
            raise BPFError(f"detaching {self.kind} link from {self.target} failed: {errors[0]}")

    close = detach

    def __enter__(self) -> Self:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.detach()

    def __del__(self) -> None:
        try:
            if not self._detached and self._pinned is None:
                self.detach()
        except Exception:  # noqa: BLE001 - finalizer is a safety net only
            pass

    def __repr__(self) -> str:
        state = "detached" if self._detached else ("pinned " + self._pinned if self._pinned else "attached")
        prog = f" {self.program.name}" if self.program is not None else ""
        return f"<Link {self.kind}{prog} -> {self.target} ({state})>"

    # ---- BPF link operations --------------------------------------------------------------------------

    def _link_fd(self, what: str) -> FD:
        if self.fd is None:
            raise BPFError(f"{what}: this {self.kind} attachment is not a BPF link (the kernel or hook uses a "
                           "legacy attachment); only BPF links can be pinned, updated or queried")
        return self.fd

    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the link in bpffs: it then outlives this process until unpinned."""
        self._pinned = pin_fd(self._link_fd("pin"), path, f"{self.kind} link")

    def unpin(self) -> None:
        if self._pinned is not None:
            os.unlink(self._pinned)
            self._pinned = None

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> Link:
        """Open a pinned link. Detaching it unpins nothing: call unpin() to drop the pin."""
        link = cls(None, "pinned", os.fspath(path), fd=open_pinned(path))
        link._pinned = os.fspath(path)
        return link

    @classmethod
    def from_id(cls, link_id: int) -> Link:
        fd = bpf_fd(T.BPF_LINK_GET_FD_BY_ID, T.GetIdAttr(link_id=link_id), f"link id {link_id}")
        return cls(None, "link", f"id {link_id}", fd=fd)

    def update(self, program: Program, old: Program | None = None) -> None:
        """Replace the program behind the link atomically (BPF_LINK_UPDATE)."""
        fd = self._link_fd("update")
        attr = T.LinkUpdateAttr(link_fd=int(fd), new_prog_fd=int(program.fd))
        if old is not None:
            attr.old_prog_fd = int(old.fd)
            attr.flags = T.BPF_F_REPLACE
        bpf(T.BPF_LINK_UPDATE, attr, f"{self.kind} link")
        self.program = program

    def info(self) -> LinkInfo:
        fd = self._link_fd("info")
        raw = T.LinkInfo()
        attr = T.InfoByFdAttr(bpf_fd=int(fd), info_len=ctypes.sizeof(raw), info=ctypes.addressof(raw))
        bpf(T.BPF_OBJ_GET_INFO_BY_FD, attr, "link info")
        return LinkInfo(id=raw.id, type=enum_or_int(T.LinkType, raw.type), prog_id=raw.prog_id, raw=raw)

    def detach_kernel(self) -> None:
        """BPF_LINK_DETACH: force the kernel to detach while the fd (and pins) stay valid."""
        fd = self._link_fd("detach")
        bpf(T.BPF_LINK_DETACH, T.LinkDetachAttr(link_fd=int(fd)), f"{self.kind} link")


# Live links by id, held weakly: a link nobody references is released by its fds' finalizers.
_registry: dict[int, Callable[[], Link | None]] = {}


def _register(link: Link) -> None:
    key, registry = id(link), _registry  # bound now: at interpreter exit this module's globals may be gone

    def forget(_: object) -> None:
        registry.pop(key, None)

    registry[key] = _weak_ref(link, forget)


def live_links() -> list[Link]:
    """The links this process holds and has not released."""
    return [link for link in (r() for r in list(_registry.values())) if link is not None]


def kernel_links() -> Iterator[LinkInfo]:
    """Every BPF link in the kernel, any process's (BPF_LINK_GET_NEXT_ID); links freed meanwhile are skipped."""
    for link_id in object_ids(T.BPF_LINK_GET_NEXT_ID):
        try:
            link = Link.from_id(link_id)
        except BPFError as exc:
            if exc.errno == errno.ENOENT:
                continue
            raise
        with link:  # only this fd is closed: the link stays attached through its owner's references
            info = link.info()
        yield info


def detach_all(links: Iterable[Link] | None = None, workers: int = 16) -> list[BaseException]:
    """Detach many links concurrently (the kernel's per-probe release latency overlaps); returns errors."""
    todo = [lk for lk in (live_links() if links is None else links) if not lk.detached and lk._pinned is None]
    errors: list[BaseException] = []
    if not todo:
        return errors
    if len(todo) == 1:
        try:
            todo[0].detach()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        return errors
    # Plain threads, not an executor: this also runs from atexit, where executors refuse new work.
    import threading

    lock = allocate_lock()
    pending = list(todo)

    def worker() -> None:
        while True:
            with lock:
                if not pending:
                    return
                link = pending.pop()
            try:
                link.detach()
            except Exception as exc:  # noqa: BLE001 - collect, keep detaching the rest
                with lock:
                    errors.append(exc)

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(min(workers, len(todo)))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def _at_exit() -> None:
    detach_all()


atexit.register(_at_exit)


# ---- shared by the attach modules ------------------------------------------------------------------------

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from contextlib import AbstractContextManager


def prog_type_name(program: Program) -> str:
    """The program type in lower case for messages ("sk_lookup"; a number the ABI does not name)."""
    return str(getattr(program.type, "name", program.type)).lower()


def attach_error(what: str, where: str, err: int, command: str, hints: Mapping[int, str] | None = None) -> BPFError:
    """The error of a failed attach: "attaching WHAT to WHERE (hint for this errno) failed: EXXX (...)"."""
    hint = hints.get(err, "") if hints else ""
    return BPFError(f"attaching {what} to {where}" + (f" ({hint})" if hint else "") + " failed", err, command)


def resolve_attach_type(
    program: Program,
    attach_type: str | T.AttachType | None,
    by_prog_type: Mapping[int, Sequence[int]],
    *,
    hook: str,
    takes: str,
    parse: Callable[[str], T.AttachType],
    lookup: Callable[[str], int | None],
) -> int:
    """The attach type to use for `program` on `hook` ("a cgroup", "a sockmap"): `attach_type` (a name
    given to `parse`, or an AttachType), else the program's own (from its section), else the only one its
    type has. Checked against `by_prog_type` (program type -> attach types, ints); `takes` names the
    sections `hook` takes, for the error when the program type has no entry there.

    The common cases (the program's own, or a name `lookup` knows) are answered with ints; the others and
    every error go through the enums, built then."""
    allowed = by_prog_type.get(program.prog_type)
    if allowed is not None:
        if attach_type is None:
            own = program.expected_attach_type
            if own is None:
                if len(allowed) == 1:
                    return allowed[0]
            elif own in allowed:
                return own
        elif isinstance(attach_type, str):
            found = lookup(attach_type)
            if found is not None and found in allowed:
                return found
    by_prog = {T.ProgType(p): tuple(T.AttachType(a) for a in types) for p, types in by_prog_type.items()}
    return int(_resolve_attach_type(program, attach_type, by_prog, hook=hook, takes=takes, parse=parse))


def _resolve_attach_type(
    program: Program,
    attach_type: str | T.AttachType | None,
    by_prog_type: Mapping[T.ProgType, Sequence[T.AttachType]],
    *,
    hook: str,
    takes: str,
    parse: Callable[[str], T.AttachType],
) -> T.AttachType:
    allowed = by_prog_type.get(program.type) if isinstance(program.type, T.ProgType) else None
    kind = prog_type_name(program)
    if allowed is None:
        raise BPFError(f"program {program.name!r} is a {kind} program; {hook} takes {takes} programs", errno.EINVAL)
    names = ", ".join(a.name.lower() for a in allowed)
    if attach_type is None:
        own = program.attach_type
        if own is not None:
            if not isinstance(own, T.AttachType) or own not in allowed:
                own_name = getattr(own, "name", f"attach type {own}").lower()
                raise BPFError(f"program {program.name!r} ({kind}) was loaded to attach as {own_name}, which "
                               f"{hook} does not have; {kind} programs attach to it as {names} (pass attach_type=)",
                               errno.EINVAL)
            return own
        if len(allowed) == 1:
            return allowed[0]
        raise ValueError(f"program {program.name!r} does not say where it attaches (its section is generic); "
                         f"pass attach_type= one of {names}")
    resolved = attach_type if isinstance(attach_type, T.AttachType) else parse(attach_type)
    if resolved not in allowed:
        raise ValueError(f"{resolved.name} is not an attach type of {kind} programs on {hook} (those are: {names})")
    return resolved


def link_feature(kind: str) -> str:
    """What a link kind of pybpf.features.LINK_KINDS is called in messages: "tcx_link" -> "tcx BPF links"."""
    return kind.removesuffix("_link").replace("_", " ") + " BPF links"


def use_link(kind: str, legacy: bool | None, detail: str = "") -> bool:
    """Whether to attach with a BPF link of `kind` (a pybpf.features.LINK_KINDS key) or the legacy form:
    `legacy` True says legacy, None lets the kernel decide (a link where it has one), False insists on a
    link and raises NotSupportedError (naming the first kernel with it, then `detail`) where it has none."""
    if legacy:
        return False
    from pybpf.features.misc import probe_link

    if probe_link(kind).supported:
        return True
    if legacy is None:
        return False
    from pybpf.errors import NotSupportedError
    from pybpf.features.versions import first_kernel

    raise NotSupportedError(link_feature(kind), first_kernel("misc", kind), detail=detail)


def try_link(
    program: Program,
    link_kind: str,
    legacy: bool | None,
    *,
    what: str,
    where: str,
    hints: Mapping[int, str] | None = None,
    instead: str,
    **attr: int,
) -> FD | None:
    """The BPF link of a hook that also has a legacy form (xdp, tc, cgroup, sockmap): unless `legacy` is
    True, BPF_LINK_CREATE of `program` with the other `LinkCreateAttr` fields `attr` (target_fd or
    target_ifindex, attach_type, flags). Returns the link fd, or None where the caller takes the legacy
    form: `legacy` True, or the kernel refused and has no links of `link_kind` (see use_link; asked only
    after a refusal: the probe imports pybpf.features). A refusal by a kernel that has them is the attach
    error (`what`/`where`/`hints`, see attach_error); `legacy` False on one without them raises
    NotSupportedError, whose message says to use `instead` ("legacy=True (BPF_PROG_ATTACH)")."""
    if legacy:
        return None
    ret = bpf_errno(T.BPF_LINK_CREATE, T.LinkCreateAttr(prog_fd=int(program.fd), **attr))
    if ret >= 0:
        return FD(ret)
    if use_link(link_kind, legacy, f"cannot attach {program.name!r}; use {instead}"):
        raise attach_error(what, where, -ret, "BPF_LINK_CREATE", hints)
    return None


def prog_attach(
    program: Program,
    target: FD | int,
    attach_type: T.AttachType | int,
    *,
    flags: int = 0,
    what: str,
    where: str,
    hints: Mapping[int, str] | None = None,
    ctx: Callable[[FD], AbstractContextManager[object]] | None = None,
    send_target: bool = True,
) -> Callable[[], None]:
    """BPF_PROG_ATTACH `program` to `target` (a cgroup, map or netns fd); returns the undo step for a
    `Link`, which does BPF_PROG_DETACH of exactly this program (already gone, ENOENT, is fine).

    The target and program fds are duplicated and kept until then: the detach names both. `ctx`, when
    given, is entered (with the kept target fd) around both calls, e.g. to run them in a network
    namespace; with `send_target` False the kernel gets target_fd 0 instead (flow dissectors: it takes the
    caller's namespace and refuses a target fd). `what`/`where`/`hints` word the errors (see attach_error)."""
    kept_target = FD(os.dup(int(target)))
    try:
        prog = program.fd.dup()
    except BaseException:
        kept_target.close()
        raise

    def call(cmd: int, attach_flags: int) -> int:
        attr = T.ProgAttachAttr(target_fd=int(kept_target) if send_target else 0, attach_bpf_fd=int(prog),
                                attach_type=int(attach_type), attach_flags=attach_flags)
        if ctx is None:
            return bpf_errno(cmd, attr)
        with ctx(kept_target):
            return bpf_errno(cmd, attr)

    try:
        ret = call(T.BPF_PROG_ATTACH, flags)
        if ret < 0:
            raise attach_error(what, where, -ret, "BPF_PROG_ATTACH", hints)
    except BaseException:
        kept_target.close()
        prog.close()
        raise

    def detach() -> None:
        try:
            ret = call(T.BPF_PROG_DETACH, 0)
            if ret < 0 and -ret != errno.ENOENT:  # ENOENT: already detached by someone else
                raise BPFError(f"detaching {what} from {where} failed", -ret, "BPF_PROG_DETACH")
        finally:
            kept_target.close()
            prog.close()

    return detach
