"""Helpers that ask the kernel which BPF objects exist (imported by test modules; pytest puts tests/ on
sys.path because it holds the rootdir conftest.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from pybpf._sys import types as T
from pybpf._sys.syscall import bpf
from pybpf.link.base import kernel_links


def link_ids_of(programs: Iterable[Any] | None = None) -> list[int]:
    """Ids of the kernel's BPF links whose program is one of `programs` (objects with an `id`, or program
    ids); of every BPF link in the kernel when `programs` is None."""
    if programs is None:
        return [info.id for info in kernel_links()]
    prog_ids = {p if isinstance(p, int) else p.id for p in programs}
    return [info.id for info in kernel_links() if info.prog_id in prog_ids]


def attached_prog_count(target: str | os.PathLike[str], attach_type: T.AttachType) -> int:
    """How many programs BPF_PROG_QUERY finds on the hook `attach_type` of `target` (a cgroup directory or
    a network namespace file), BPF links and BPF_PROG_ATTACH alike."""
    fd = os.open(target, os.O_RDONLY)
    try:
        attr = T.ProgQueryAttr(target_fd=fd, attach_type=int(attach_type))
        bpf(T.Cmd.PROG_QUERY, attr)
        return int(attr.prog_cnt)
    finally:
        os.close(fd)
