"""The exception hierarchy: every failure says what happened and what to do."""

from __future__ import annotations

import errno as _errno
import os

__all__ = [
    "BPFError",
    "NotSupportedError",
    "ObjectError",
    "VerifierError",
]

# What an errno usually means for bpf(); appended to messages so users know where to look.
_ERRNO_HINTS: dict[int, str] = {
    _errno.EPERM: "run as root (CAP_BPF / CAP_SYS_ADMIN), or the kernel forbids this program type here",
    _errno.EACCES: "the verifier or an LSM refused the operation",
    _errno.E2BIG: "an argument is larger than the kernel accepts (map size, log size, attr size)",
    _errno.EINVAL: "the kernel rejected an argument; a newer kernel may accept it",
    _errno.ENOENT: "no such object or target",
    _errno.EEXIST: "the key or attachment already exists",
    _errno.ENOSPC: "the map is full",
    _errno.EBADF: "a file descriptor was already closed",
    _errno.EOPNOTSUPP: "this kernel does not support the operation for this object type",
    _errno.ENOTSUPP if hasattr(_errno, "ENOTSUPP") else 524: "this kernel does not support the operation",
}
ENOTSUPP = 524  # kernel-internal, leaks to user space from some bpf() paths


class BPFError(OSError):
    """A bpf() (or related) call failed. Carries the errno and the command name."""

    def __init__(self, message: str, err: int = 0, command: str = "") -> None:
        self.command = command
        text = message
        if err:
            name = _errno.errorcode.get(err, "ENOTSUPP" if err == ENOTSUPP else f"errno {err}")
            text = f"{message}: {name} ({os.strerror(err) if err != ENOTSUPP else 'not supported'})"
            hint = _ERRNO_HINTS.get(err)
            if hint:
                text += f" - {hint}"
        super().__init__(err, text)
        self.message = text

    def __str__(self) -> str:
        return self.message


class NotSupportedError(BPFError):
    """The running kernel lacks a feature. Names the feature and the first kernel that has it."""

    def __init__(self, feature: str, first_kernel: str = "", err: int = 0, detail: str = "") -> None:
        self.feature = feature
        self.first_kernel = first_kernel
        msg = f"{feature} is not supported by this kernel"
        if first_kernel:
            msg += f" (needs Linux {first_kernel} or newer)"
        if detail:
            msg += f": {detail}"
        super().__init__(msg, 0, "")
        self.errno = err or _errno.EOPNOTSUPP


class ObjectError(BPFError, ValueError):
    """An object file (ELF/BTF) is malformed or uses something pybpf cannot load."""

    def __init__(self, message: str, section: str = "", offset: int | None = None, path: str = "") -> None:
        self.section = section
        self.offset = offset
        self.path = path
        where = []
        if path:
            where.append(path)
        if section:
            where.append(f"section {section}")
        if offset is not None:
            where.append(f"offset {offset:#x}")
        text = f"{': '.join([', '.join(where), message]) if where else message}"
        super().__init__(text)


class VerifierError(BPFError):
    """The kernel verifier rejected a program. `log` holds the whole verifier log."""

    def __init__(
        self,
        program: str,
        err: int,
        log: str,
        source_line: str = "",
        truncated: bool = False,
    ) -> None:
        self.program = program
        self.log = log
        self.source_line = source_line
        self.truncated = truncated
        lines = [ln for ln in log.rstrip().splitlines() if ln.strip()]
        # The verifier's complaint is the last non-statistics line of the log.
        complaint = ""
        for ln in reversed(lines):
            if not ln.startswith(("processed ", "verification time", "stack depth", "mark_precise")):
                complaint = ln.strip()
                break
        msg = f"program {program!r} rejected by the verifier"
        super().__init__(msg, err, "BPF_PROG_LOAD")
        self.complaint = complaint
        detail = self.message
        if complaint:
            detail += f"\n  verifier: {complaint}"
        if source_line:
            detail += f"\n  source:   {source_line.strip()}"
        if truncated:
            detail += "\n  (log truncated)"
        tail = "\n".join(lines[-12:])
        if tail:
            detail += "\n  --- last lines of the verifier log ---\n  " + tail.replace("\n", "\n  ")
        self.message = detail
