"""What the running kernel supports: program types, map types, helpers, links, BTF kinds and more.

Every probe loads or creates the smallest possible object and looks at how the kernel answers; results
are cached for the life of the process. `have_*` return bools, `probe_*` return a `ProbeResult` (with
the errno and a reason), `require_*` raise `NotSupportedError` naming the feature and the first kernel
release that has it::

    from pybpf import features
    features.require_map_type(MapType.RINGBUF)
    if features.have_helper(ProgType.KPROBE, "get_attach_cookie"): ...
"""

from pybpf._sys.kernel import kernel_release, kernel_version, kernel_version_code
from pybpf.features._probe import ProbeResult
from pybpf.features.btf import BTF_KINDS, kernel_btf_features, probe_btf_kind, require_btf_kind
from pybpf.features.maps import have_map_type, map_type_name, map_types, probe_map_type, require_map_type
from pybpf.features.misc import LINK_KINDS, MISC_FEATURES, probe_link, probe_misc, require_misc
from pybpf.features.progs import (
    have_helper,
    have_prog_type,
    helpers_for,
    probe_helper,
    probe_prog_type,
    prog_type_name,
    prog_types,
    require_helper,
    require_prog_type,
)
from pybpf.features.report import probe_all
from pybpf.features.versions import first_kernel, helper_first_kernel


def have(name: str) -> bool:
    """A misc feature or link kind by name: ``have("bounded_loops")``, ``have("tcx_link")``."""
    return probe_misc(name).supported


def have_btf_kind(kind: str) -> bool:
    """``have_btf_kind("enum64")``; kinds are BTF_KINDS ("btf" is BTF itself)."""
    return probe_btf_kind(kind).supported


__all__ = [
    "BTF_KINDS",
    "LINK_KINDS",
    "MISC_FEATURES",
    "ProbeResult",
    "first_kernel",
    "have",
    "have_btf_kind",
    "have_helper",
    "have_map_type",
    "have_prog_type",
    "helper_first_kernel",
    "helpers_for",
    "kernel_btf_features",
    "kernel_release",
    "kernel_version",
    "kernel_version_code",
    "map_type_name",
    "map_types",
    "probe_all",
    "probe_btf_kind",
    "probe_helper",
    "probe_link",
    "probe_map_type",
    "probe_misc",
    "probe_prog_type",
    "prog_type_name",
    "prog_types",
    "require_btf_kind",
    "require_helper",
    "require_map_type",
    "require_misc",
    "require_prog_type",
]
