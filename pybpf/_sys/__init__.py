"""The syscall layer: bpf(), perf_event_open(), ioctl(), owned file descriptors and the generated ABI."""

from pybpf._sys import types
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf, bpf_errno, bpf_fd, ioctl, perf_event_open

__all__ = ["FD", "bpf", "bpf_errno", "bpf_fd", "ioctl", "perf_event_open", "types"]
