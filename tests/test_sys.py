"""The generated kernel ABI (pybpf/_sys/types.py) must match the running kernel's BTF."""

from __future__ import annotations

import ctypes
import importlib.util
import os
from pathlib import Path

import pytest

from pybpf._sys import FD, bpf_fd
from pybpf._sys import types as T
from pybpf.btf import Composite, Union, kernel_spec, sizeof
from pybpf.errors import BPFError

ROOT = Path(__file__).resolve().parent.parent


def _check_layout(pycls: type[ctypes.Structure | ctypes.Union], kernel: Composite, path: str) -> int:
    """Compare every ctypes field offset/size with the BTF member; returns the number of fields checked."""
    checked = 0
    by_name = {name: (getattr(pycls, name), f) for f in pycls._fields_ for name in [f[0]]}
    for i, member in enumerate(kernel.members):
        name = member.name or f"_anon{i}"
        assert name in by_name, f"{path}: generated struct lacks member {name}"
        descr, field = by_name[name]
        if member.bitfield_size:
            assert len(field) == 3 and field[2] == member.bitfield_size, f"{path}.{name}: bitfield width"
            checked += 1
            continue
        assert descr.offset * 8 == member.bit_offset, f"{path}.{name}: offset {descr.offset} != {member.bit_offset // 8}"
        assert descr.size == sizeof(member.type), f"{path}.{name}: size {descr.size} != {sizeof(member.type)}"
        checked += 1
        inner = member.type.strip()
        ftype = field[1]
        if isinstance(inner, Composite) and isinstance(ftype, type) and issubclass(ftype, (ctypes.Structure, ctypes.Union)):
            checked += _check_layout(ftype, inner, f"{path}.{name}")
    return checked


def test_generated_structs_match_kernel_btf() -> None:
    spec = kernel_spec()
    attr = spec.find("bpf_attr", Union)
    assert isinstance(attr, Union)
    checked = 0
    for pyname, (kname, size) in T.KERNEL_NAMES.items():
        pycls = getattr(T, pyname)
        assert ctypes.sizeof(pycls) == size, pyname
        if kname.startswith("bpf_attr."):
            # Per-command structs: find the union member of the same size whose layout matches.
            candidates = [m.type.strip() for m in attr.members if isinstance(m.type.strip(), Composite)]
            matched = False
            for cand in candidates:
                assert isinstance(cand, Composite)
                try:
                    checked += _check_layout(pycls, cand, pyname)
                    matched = True
                    break
                except AssertionError:
                    continue
            assert matched, f"{pyname} matches no member of union bpf_attr"
        else:
            kt = spec.find(kname, Composite)
            assert isinstance(kt, Composite)
            assert kt.size == ctypes.sizeof(pycls), f"{pyname}: kernel size {kt.size}"
            checked += _check_layout(pycls, kt, pyname)
    assert checked > 300


def test_generated_enums_match_kernel_btf() -> None:
    spec = kernel_spec()
    for pyenum, kname, prefix in [(T.MapType, "bpf_map_type", "BPF_MAP_TYPE_"), (T.ProgType, "bpf_prog_type", "BPF_PROG_TYPE_"),
                                  (T.AttachType, "bpf_attach_type", "BPF_"), (T.Cmd, "bpf_cmd", "BPF_"),
                                  (T.BpfFuncId, "bpf_func_id", "BPF_FUNC_")]:
        kernel_enum = spec.find(kname)
        for member in pyenum:
            assert kernel_enum.value_of(prefix + member.name.lstrip("_") if member.name[0] == "_" else prefix + member.name) == member.value  # type: ignore[attr-defined]


def test_generator_reproduces_committed_file() -> None:
    """Regenerating on the kernel that generated the file gives the same text (the file is not hand-edited)."""
    if os.uname().release != T.GENERATED_FROM_KERNEL:
        pytest.skip(f"types.py was generated on {T.GENERATED_FROM_KERNEL}, this is {os.uname().release}")
    spec = importlib.util.spec_from_file_location("gen_sys", ROOT / "tools" / "gen_sys.py")
    assert spec and spec.loader
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    text = gen.generate(kernel_spec())
    assert text == (ROOT / "pybpf" / "_sys" / "types.py").read_text()


def test_bpf_syscall_creates_map_and_fd_is_owned() -> None:
    attr = T.MapCreateAttr(map_type=T.MapType.ARRAY, key_size=4, value_size=4, max_entries=1)
    fd = bpf_fd(T.Cmd.MAP_CREATE, attr)
    raw = int(fd)
    assert os.readlink(f"/proc/self/fd/{raw}") == "anon_inode:bpf-map"
    dup = fd.dup()
    fd.close()
    assert fd.closed
    with pytest.raises(ValueError):
        int(fd)
    assert os.readlink(f"/proc/self/fd/{int(dup)}") == "anon_inode:bpf-map"
    with dup:
        pass
    assert not os.path.exists(f"/proc/self/fd/{raw}") or os.readlink(f"/proc/self/fd/{raw}") != "anon_inode:bpf-map"


def test_bpf_error_carries_errno_and_command() -> None:
    attr = T.MapCreateAttr(map_type=T.MapType.HASH, key_size=0, value_size=4, max_entries=1)
    with pytest.raises(BPFError) as info:
        bpf_fd(T.Cmd.MAP_CREATE, attr)
    assert info.value.errno == 22
    assert info.value.command == "BPF_MAP_CREATE"
    assert "EINVAL" in str(info.value)


def test_fd_rejects_negative() -> None:
    with pytest.raises(ValueError):
        FD(-1)
