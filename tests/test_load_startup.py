"""Start-up cost of a cold load, against the real kernel: the first load of a CO-RE object in a fresh interpreter,
with no pybpf cache, must not import what costs milliseconds and a load does not need (enum, re, collections,
the assembler...), and what it resolves must still be the kernel's truth (checked with bpftool, the peer)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from child_process import fresh_python, print_imported

pytestmark = pytest.mark.usefixtures("require_root")

# What a cold load must not import: each costs milliseconds of a tool's start-up.
_HEAVY = ("enum", "functools", "collections", "re", "array", "weakref", "typing", "dataclasses", "contextlib",
          "pybpf.asm.builder", "pybpf.asm.disasm", "pybpf.features")

_COLD_LOAD = """
import os, sys
import pybpf
with pybpf.load(sys.argv[1]) as obj:
{imported}    with obj.programs['core_types'].attach():
        os.getppid()
    print(' '.join(str(v) for v in obj.variables['out'].value))
"""


def _kernel_struct_size(name: str) -> int:
    """The size of a kernel struct as bpftool reads it from vmlinux BTF."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool (the peer this compares against) is not installed")
    raw = subprocess.run(["bpftool", "btf", "dump", "file", "/sys/kernel/btf/vmlinux", "format", "raw"],
                         check=True, capture_output=True, text=True).stdout
    found = re.search(rf"^\[\d+\] STRUCT '{name}' size=(\d+)", raw, re.MULTILINE)
    assert found is not None, f"bpftool lists no struct {name}"
    return int(found.group(1))


def test_cold_core_load_imports_little_and_resolves_the_kernel_types(
        bpf_obj: Callable[[str], Path], tmp_path: Path) -> None:
    obj = tmp_path / "core_types.bpf.o"
    shutil.copyfile(bpf_obj("core_types"), obj)
    cache = tmp_path / "cache"  # empty: no kernel BTF index, no load plan
    code = _COLD_LOAD.format(imported=print_imported(_HEAVY, indent="    "))
    heavy, values = fresh_python(code, cache, obj)
    assert heavy == "", f"a cold load imported {heavy}"
    out = [int(v) for v in values.split()]
    # task_struct exists, pybpf_no_such_type does not, and the size is the kernel's.
    assert out[0] == 1 and out[1] == 0
    assert out[2] == _kernel_struct_size("task_struct")
