"""Bookkeeping shared by the legacy (tracefs) kprobe and uprobe fallbacks: which events pybpf owns, and the
removal of those left by pybpf processes that no longer run. Event names carry the creating pid as their
second `_`-separated field (e.g. ``pybpf_123_0_do_sys_openat2``)."""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable


def owned_events(events_file: str | None, group: str) -> list[str]:
    """Names of the events of `group` listed in a tracefs `*_events` file."""
    if events_file is None or not os.path.exists(events_file):
        return []
    found = []
    with open(events_file) as f:
        for line in f:
            # "p:GROUP/EVENT TARGET"
            head = line.split(None, 1)[0] if line.strip() else ""
            event_group, _, event = head.partition(":")[2].partition("/")
            if event_group == group:
                found.append(event)
    return found


def remove_stale(events: list[str], remove: Callable[[str], None]) -> list[str]:
    """Remove the events whose creating process is gone; returns their names."""
    removed = []
    for event in events:
        parts = event.split("_")
        if len(parts) < 3 or not parts[1].isdigit():
            continue
        pid = int(parts[1])
        if pid == os.getpid() or os.path.exists(f"/proc/{pid}"):
            continue
        try:
            remove(event)
            removed.append(event)
        except OSError:
            pass  # still opened by someone: leave it
    return removed


def append_event(events_file: str, line: str) -> None:
    """Add or remove one tracefs event ("p:GROUP/NAME ..." or "-:GROUP/NAME")."""
    # O_APPEND: a plain open for writing truncates the file, which deletes every such probe on the system.
    fd = os.open(events_file, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
