"""pybpf: a pure-Python eBPF toolkit.

    import pybpf
    with pybpf.load("counter.bpf.o") as obj:
        obj.attach_all()
        ...
"""

from __future__ import annotations

from pybpf._lazy import lazy_attributes
from pybpf.errors import BPFError, NotSupportedError, ObjectError, VerifierError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.collection import Collection, ObjectFile, load, open_object
    from pybpf.map import Map, MapSpec
    from pybpf.program import Program, ProgramSpec

__all__ = [
    "BPFError", "Collection", "Map", "MapSpec", "NotSupportedError", "ObjectError", "ObjectFile", "Program",
    "ProgramSpec", "VerifierError", "load", "open_object",
]
__version__ = "0.1.0"

# Imported on first use: `import pybpf` stays cheap for tools that only need one room.
_LAZY = {
    "Collection": "pybpf.collection", "ObjectFile": "pybpf.collection", "load": "pybpf.collection",
    "open_object": "pybpf.collection", "Map": "pybpf.map", "MapSpec": "pybpf.map", "Program": "pybpf.program",
    "ProgramSpec": "pybpf.program",
}


__getattr__ = lazy_attributes(__name__, _LAZY, globals())
