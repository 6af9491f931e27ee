"""BTF objects the kernel holds, by id (BPF_BTF_GET_FD_BY_ID): a program's, a map's, vmlinux's, a module's."""

from __future__ import annotations

import ctypes

from pybpf._sys import types as T
from pybpf._sys.syscall import bpf, bpf_fd

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pybpf.btf.spec import Spec

__all__ = ["btf_blob_by_id", "btf_by_id"]


def btf_blob_by_id(btf_id: int) -> tuple[bytes, bool]:
    """The raw blob of the kernel's BTF object `btf_id`, and whether it is kernel (vmlinux or module) BTF."""
    with bpf_fd(T.BPF_BTF_GET_FD_BY_ID, T.GetIdAttr(btf_id=btf_id), f"BTF id {btf_id}") as fd:
        info = T.BtfInfo()
        attr = T.InfoByFdAttr(bpf_fd=int(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        bpf(T.BPF_OBJ_GET_INFO_BY_FD, attr, "BTF info")
        size, kernel = info.btf_size, bool(info.kernel_btf)
        buf = ctypes.create_string_buffer(size)
        info = T.BtfInfo(btf=ctypes.addressof(buf), btf_size=size)
        attr = T.InfoByFdAttr(bpf_fd=int(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        bpf(T.BPF_OBJ_GET_INFO_BY_FD, attr, "BTF data")
    return buf.raw[:size], kernel


def btf_by_id(btf_id: int) -> Spec:
    """The kernel's BTF object `btf_id` as a Spec (module BTF is split on top of vmlinux)."""
    from pybpf.btf.spec import Spec, kernel_spec

    data, kernel = btf_blob_by_id(btf_id)
    if kernel:
        base = kernel_spec()
        if data == base.data:
            return base
        return Spec(data, base, name=f"btf id {btf_id}")
    return Spec(data, name=f"btf id {btf_id}")
