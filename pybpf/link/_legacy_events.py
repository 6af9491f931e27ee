"""The legacy (tracefs) kprobe and uprobe fallbacks' shared bookkeeping: the probes of one tracefs
``*_events`` file that pybpf owns, their names, their creation and removal, and the removal of those left
by pybpf processes that no longer run (once per process, before its first probe). Event names carry the
creating pid as their second `_`-separated field (e.g. ``pybpf_123_0_do_sys_openat2``)."""

from __future__ import annotations

import itertools
import os
from _thread import allocate_lock

from pybpf.link.tracepoint import tracefs

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

_MAX_EVENT_NAME = 64  # MAX_EVENT_NAME_LEN in kernel/trace/trace.h


class LegacyEvents:
    """The probes of group `group` in tracefs `events_file` ("kprobe_events"), named ``<prefix>_<pid>_<n>_...``.
    `missing(path)` is the exception raised when writing to the file and the kernel has none."""

    def __init__(self, events_file: str, group: str, prefix: str, missing: Callable[[str], Exception]) -> None:
        self.events_file = events_file
        self.group = group
        self.prefix = prefix
        self._missing = missing
        self._counter = itertools.count()
        self._lock = allocate_lock()
        self._cleaned = False

    def path(self) -> str | None:
        """The tracefs events file, None when the kernel has none."""
        path = os.path.join(tracefs(), self.events_file)
        return path if os.path.exists(path) else None

    def event_name(self, what: str, tail: str = "") -> str:
        """A unique event name, <prefix>_<pid>_<n>_<what><tail>, at most 63 characters of [A-Za-z0-9_]
        (`what` is cut and sanitised, `tail` kept)."""
        head = f"{self.prefix}_{os.getpid()}_{next(self._counter)}_"
        stem = "".join(c if c.isascii() and (c.isalnum() or c == "_") else "_" for c in what)
        return head + stem[: _MAX_EVENT_NAME - 1 - len(head) - len(tail)] + tail

    def write(self, line: str) -> None:
        """Add or remove one event ("p:GROUP/NAME ..." or "-:GROUP/NAME")."""
        path = self.path()
        if path is None:
            raise self._missing(os.path.join(tracefs(), self.events_file))
        # O_APPEND: a plain open for writing truncates the file, which deletes every such probe on the system.
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def add(self, probe: str, event: str, where: str) -> None:
        """Create event `event` of this group: `probe` "p", "r", "r10"..., `where` the probed location.
        Removes the events dead pybpf processes left first (once per process)."""
        with self._lock:
            if not self._cleaned:
                self._cleaned = True
                try:
                    self.remove_stale()
                except OSError:  # best effort: the add below reports a tracefs that does not work
                    pass
        self.write(f"{probe}:{self.group}/{event} {where}\n")

    def remove(self, event: str) -> None:
        """Remove event `event` of this group (nothing when it is gone already)."""
        try:
            self.write(f"-:{self.group}/{event}\n")
        except FileNotFoundError:
            pass

    def owned(self) -> list[str]:
        """Names of this group's events listed in the events file."""
        path = self.path()
        if path is None:
            return []
        found = []
        with open(path) as f:
            for line in f:
                # "p:GROUP/EVENT TARGET"
                head = line.split(None, 1)[0] if line.strip() else ""
                event_group, _, event = head.partition(":")[2].partition("/")
                if event_group == self.group:
                    found.append(event)
        return found

    def remove_stale(self) -> list[str]:
        """Remove the events whose creating process is gone; returns their names."""
        removed = []
        for event in self.owned():
            parts = event.split("_")
            if len(parts) < 3 or not parts[1].isdigit():
                continue
            pid = int(parts[1])
            if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
                continue
            try:
                self.remove(event)
                removed.append(event)
            except OSError:
                pass  # still opened by someone: leave it
        return removed
