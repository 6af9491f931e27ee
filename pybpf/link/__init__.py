"""Attach programs to hooks: one module per hook."""

from pybpf.link.base import Link, LinkInfo, detach_all, live_links

__all__ = ["Link", "LinkInfo", "detach_all", "live_links"]
