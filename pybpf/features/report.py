"""Everything the kernel supports, as one JSON-ready dict (what `pybpf feature` prints)."""

from __future__ import annotations

import time
from typing import Any

from pybpf._sys import types as T
from pybpf._sys.kernel import kernel_release, kernel_version
from pybpf.features._probe import ProbeResult
from pybpf.features.btf import BTF_KINDS, probe_btf_kind
from pybpf.features.maps import map_type_name, map_types, probe_map_type
from pybpf.features.misc import LINK_KINDS, MISC_FEATURES, probe_link, probe_misc
from pybpf.features.progs import helpers_for, probe_prog_type, prog_type_name, prog_types

__all__ = ["helper_names_for", "probe_all"]


def _section(results: dict[str, ProbeResult]) -> tuple[dict[str, bool], dict[str, str]]:
    flags = {name: r.supported for name, r in results.items()}
    reasons = {name: r.reason() for name, r in results.items() if r.reason()}
    return flags, reasons


def probe_all(*, helpers: bool = True) -> dict[str, Any]:
    """Probe everything; the result has sections program_types, map_types, helpers (per program type,
    when `helpers`), links, btf and misc, each mapping a name to a bool, plus "reasons" (why a feature
    is missing or how a "yes" was reached) and the probing time."""
    start = time.perf_counter()
    progs = {prog_type_name(t): probe_prog_type(t) for t in prog_types()}
    maps = {map_type_name(t): probe_map_type(t) for t in map_types()}
    links = {name: probe_link(name) for name in LINK_KINDS}
    btf = {name: probe_btf_kind(name) for name in BTF_KINDS}
    misc = {name: probe_misc(name) for name in MISC_FEATURES}
    report: dict[str, Any] = {"kernel": {"release": kernel_release(), "version": ".".join(map(str, kernel_version()))}}
    reasons: dict[str, dict[str, str]] = {}
    for key, section in (("program_types", progs), ("map_types", maps), ("links", links), ("btf", btf),
                         ("misc", misc)):
        report[key], reasons[key] = _section(section)
    if helpers:
        # Threads do not help: the kernel side of these loads does not overlap.
        report["helpers"] = {
            prog_type_name(t): names for t in prog_types() if (names := helper_names_for(t)) is not None
        }
    report["reasons"] = reasons
    report["probe_seconds"] = round(time.perf_counter() - start, 4)
    return report


def helper_names_for(prog_type: T.ProgType) -> list[str] | None:
    """C names of the helpers `prog_type` may call (None: cannot be probed)."""
    found = helpers_for(prog_type)
    return None if found is None else ["bpf_" + h.name for h in found]
