"""Probes of the BTF kinds the kernel accepts (BPF_BTF_LOAD of tiny blobs, as libbpf does)."""

from __future__ import annotations

import ctypes
import functools

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf_errno
from pybpf.btf.marshal import KernelBTFFeatures, RawType, encode
from pybpf.btf.types import FuncLinkage, IntEncoding, Kind, VarLinkage
from pybpf.errors import NotSupportedError
from pybpf.features._probe import ProbeResult, errno_name
from pybpf.features.versions import first_kernel

__all__ = ["BTF_KINDS", "kernel_btf_features", "load_btf", "probe_btf_kind", "require_btf_kind", "storage_btf"]

_NO_COMPONENT = 0xFFFFFFFF  # DECL_TAG on the type itself, not a member or parameter


def _int(name: str = "") -> RawType:
    return RawType(Kind.INT, name, 4, 0, False, [(int(IntEncoding.SIGNED) << 24) | 32])


def _var(name: str, type_id: int) -> RawType:
    return RawType(Kind.VAR, name, type_id, 0, False, [int(VarLinkage.STATIC)])


# Each blob uses the kind under test once and otherwise only kinds older than it.
_BLOBS: dict[str, list[RawType]] = {
    "btf": [_int()],
    "func": [
        _int(),
        RawType(Kind.FUNC_PROTO, "", 1, 0),
        RawType(Kind.FUNC, "a", 2, int(FuncLinkage.STATIC)),
    ],
    "global_func": [
        _int(),
        RawType(Kind.FUNC_PROTO, "", 1, 0),
        RawType(Kind.FUNC, "a", 2, int(FuncLinkage.GLOBAL)),
    ],
    "datasec": [
        _int(),
        _var("x", 1),
        RawType(Kind.DATASEC, ".data", 4, 1, False, [2, 0, 4]),
    ],
    "float": [RawType(Kind.FLOAT, "float", 4)],
    "decl_tag": [
        _int(),
        _var("x", 1),
        RawType(Kind.DECL_TAG, "tag", 2, 0, False, [_NO_COMPONENT]),
    ],
    "type_tag": [
        _int(),
        RawType(Kind.TYPE_TAG, "tag", 1),
        RawType(Kind.PTR, "", 2),
    ],
    "enum64": [RawType(Kind.ENUM64, "enum64", 8)],
}
BTF_KINDS: tuple[str, ...] = tuple(_BLOBS)


def load_btf(blob: bytes) -> tuple[FD | None, int]:
    """BPF_BTF_LOAD without a log: (fd or None, errno)."""
    data = ctypes.create_string_buffer(blob, len(blob))
    attr = T.BtfLoadAttr(btf=ctypes.addressof(data), btf_size=len(blob))
    ret = bpf_errno(T.BPF_BTF_LOAD, attr)
    return (FD(ret), 0) if ret >= 0 else (None, -ret)


@functools.cache
def probe_btf_kind(kind: str) -> ProbeResult:
    """Whether BPF_BTF_LOAD accepts `kind`: one of BTF_KINDS ("btf" is BTF itself)."""
    try:
        raws = _BLOBS[kind]
    except KeyError:
        raise ValueError(f"unknown BTF probe {kind!r}; known: {', '.join(BTF_KINDS)}") from None
    if kind != "btf" and not probe_btf_kind("btf").supported:
        return ProbeResult(False, probe_btf_kind("btf").errno, "the kernel has no BTF support")
    fd, err = load_btf(encode(raws))
    if fd is not None:
        fd.close()
        return ProbeResult(True)
    return ProbeResult(False, err, f"rejected by BPF_BTF_LOAD ({errno_name(err)})")


def require_btf_kind(kind: str) -> None:
    result = probe_btf_kind(kind)
    if not result.supported:
        key = "btf" if kind == "btf" else f"btf_{kind}"
        raise NotSupportedError(f"BTF kind {kind.upper()}" if kind != "btf" else "BTF", first_kernel("misc", key),
                                result.errno, detail=result.reason())


@functools.cache
def kernel_btf_features() -> KernelBTFFeatures:
    """What `pybpf.btf.marshal.sanitize` needs to know about this kernel."""
    return KernelBTFFeatures(
        func=probe_btf_kind("func").supported,
        global_func=probe_btf_kind("global_func").supported,
        datasec=probe_btf_kind("datasec").supported,
        float=probe_btf_kind("float").supported,
        decl_tag=probe_btf_kind("decl_tag").supported,
        type_tag=probe_btf_kind("type_tag").supported,
        enum64=probe_btf_kind("enum64").supported,
    )


def storage_btf() -> tuple[FD | None, int]:
    """BTF for probing local-storage maps, which need a BTF value type: ``struct val { int cnt;
    struct bpf_spin_lock l; }`` (type 3) keyed by int (type 1)."""
    raws = [
        _int(),
        RawType(Kind.STRUCT, "bpf_spin_lock", 4, 1, False, ["val", 1, 0]),
        RawType(Kind.STRUCT, "val", 8, 2, False, ["cnt", 1, 0, "l", 2, 32]),
    ]
    return load_btf(encode(raws))
