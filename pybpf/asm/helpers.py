"""Names of BPF helper functions, taken from the generated kernel enum (never retyped here).

The enum lives in :mod:`pybpf._sys.types` (``BpfFuncId``, generated from kernel BTF, whose members are also
plain ints there: ``BPF_FUNC_map_lookup_elem = 1``). It is imported on first use so that ``pybpf.asm``
stays importable and cheap even where that module is missing.
"""

from __future__ import annotations

from pybpf._lazy import cache

__all__ = ["helper_id", "helper_name", "helper_names"]

_ENUM_PREFIX = "BPF_FUNC_"


@cache
def helper_names() -> dict[int, str]:
    """Map helper id -> C name (``1 -> "bpf_map_lookup_elem"``); empty if the enum is unavailable."""
    try:
        __import__("pybpf._sys.types")  # not importlib.import_module: importing importlib costs ~0.7 ms
    except ImportError:
        return {}
    from pybpf._sys import int_constants

    names: dict[int, str] = {}
    # The plain-int members, in the kernel's order (no class of ~200 members to build).
    for name, value in int_constants(_ENUM_PREFIX).items():
        if name == "unspec":
            continue
        # Aliases (two names, one id) keep the first, which is the kernel's canonical name.
        names.setdefault(value, "bpf_" + name)
    return names


@cache
def _ids_by_name() -> dict[str, int]:
    return {name: helper for helper, name in helper_names().items()}


def helper_name(helper: int) -> str | None:
    """C name of a helper id (``14 -> "bpf_get_current_pid_tgid"``), or None if unknown."""
    return helper_names().get(helper)


def helper_id(name: str) -> int:
    """Helper id for a name; accepts ``"map_lookup_elem"``, ``"bpf_map_lookup_elem"`` and
    ``"BPF_FUNC_map_lookup_elem"``."""
    key = name.removeprefix(_ENUM_PREFIX)
    if not key.startswith("bpf_"):
        key = "bpf_" + key
    try:
        return _ids_by_name()[key]
    except KeyError:
        if not helper_names():
            raise LookupError(
                f"cannot resolve helper {name!r}: the helper id table (pybpf._sys.types.BpfFuncId) is "
                "not available; pass the numeric helper id instead"
            ) from None
        raise LookupError(
            f"unknown BPF helper {name!r}: not in this pybpf's helper table (generated from kernel BTF); "
            "check the spelling or pass the numeric id"
        ) from None
