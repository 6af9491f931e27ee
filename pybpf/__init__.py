"""pybpf: a pure-Python eBPF toolkit."""

from pybpf.errors import BPFError, NotSupportedError, ObjectError, VerifierError

__all__ = ["BPFError", "NotSupportedError", "ObjectError", "VerifierError"]
__version__ = "0.1.0"
