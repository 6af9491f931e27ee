"""Attach programs to hooks: one module per hook.

``pybpf.link.attach(prog)`` (what ``Program.attach()`` calls) attaches where the program's section
says; the `attach_*` functions take explicit targets. Every attachment is a `Link`: detach() it, use it
as a context manager, pin it; what is still attached at interpreter exit is detached (concurrently).
Each hook's module is imported on first use, so a tool pays only for the hooks it uses.
"""

from __future__ import annotations

from pybpf._lazy import lazy_attributes
from pybpf.link.auto import attach, attach_all, auto_attachable, hook_of
from pybpf.link.base import Link, LinkInfo, detach_all, live_links

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.link.cgroup import attach_cgroup
    from pybpf.link.iter import IterLink, attach_iter
    from pybpf.link.kprobe import attach_kprobe, attach_kprobe_multi
    from pybpf.link.ksyscall import attach_ksyscall
    from pybpf.link.netns import attach_netns
    from pybpf.link.perf_event import PerfEventLink, attach_perf_event, attach_perf_event_fd
    from pybpf.link.raw_tracepoint import attach_raw_tracepoint
    from pybpf.link.socket import attach_socket
    from pybpf.link.sockmap import attach_sockmap
    from pybpf.link.tc import attach_tc
    from pybpf.link.tracepoint import attach_tracepoint
    from pybpf.link.tracing import (
        attach_freplace,
        attach_lsm,
        attach_lsm_cgroup,
        attach_tracing,
        resolve_attach_btf,
    )
    from pybpf.link.uprobe import attach_uprobe, attach_uprobe_multi, attach_uretprobe
    from pybpf.link.usdt import attach_usdt
    from pybpf.link.xdp import attach_xdp

# name -> module under pybpf.link, imported when the name is first used.
_LAZY = {
    "IterLink": "iter",
    "attach_iter": "iter",
    "attach_kprobe": "kprobe",
    "attach_kprobe_multi": "kprobe",
    "attach_ksyscall": "ksyscall",
    "PerfEventLink": "perf_event",
    "attach_perf_event": "perf_event",
    "attach_perf_event_fd": "perf_event",
    "attach_raw_tracepoint": "raw_tracepoint",
    "attach_tracepoint": "tracepoint",
    "attach_freplace": "tracing",
    "attach_lsm": "tracing",
    "attach_lsm_cgroup": "tracing",
    "attach_tracing": "tracing",
    "resolve_attach_btf": "tracing",
    # hooks written alongside (their modules may pull in pyroute2 and friends)
    "attach_uprobe": "uprobe",
    "attach_uprobe_multi": "uprobe",
    "attach_uretprobe": "uprobe",
    "attach_usdt": "usdt",
    "attach_xdp": "xdp",
    "attach_tc": "tc",
    "attach_cgroup": "cgroup",
    "attach_socket": "socket",
    "attach_netns": "netns",
    "attach_sockmap": "sockmap",
}


__getattr__ = lazy_attributes(__name__, {name: f".{module}" for name, module in _LAZY.items()}, globals())


__all__ = [
    "IterLink",
    "Link",
    "LinkInfo",
    "PerfEventLink",
    "attach",
    "attach_all",
    "attach_cgroup",
    "attach_freplace",
    "attach_iter",
    "attach_kprobe",
    "attach_kprobe_multi",
    "attach_ksyscall",
    "attach_lsm",
    "attach_lsm_cgroup",
    "attach_netns",
    "attach_perf_event",
    "attach_perf_event_fd",
    "attach_raw_tracepoint",
    "attach_socket",
    "attach_sockmap",
    "attach_tc",
    "attach_tracepoint",
    "attach_tracing",
    "attach_uprobe",
    "attach_uprobe_multi",
    "attach_uretprobe",
    "attach_usdt",
    "attach_xdp",
    "auto_attachable",
    "detach_all",
    "hook_of",
    "live_links",
    "resolve_attach_btf",
]
