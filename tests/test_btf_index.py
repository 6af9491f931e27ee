"""The kernel BTF name index (cached on disk), the lazy generated ABI and the cheap import path."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf._sys.record import FrozenInstanceError, field, record
from pybpf.btf import Func, Spec, Struct, kernel_spec
from pybpf.btf.core import TargetBTF
from pybpf.btf.spec import KERNEL_BTF, load_cached

ROOT = Path(__file__).resolve().parent.parent


def _full_scan(spec: Spec, name: str) -> list[int]:
    return [i for i in range(spec.first_id, spec.next_id) if spec.type(i).name == name]


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, Path]:
    """vmlinux loaded through an empty cache directory (index built), and that directory."""
    cache = tmp_path_factory.mktemp("cache")
    mp = pytest.MonkeyPatch()
    mp.setenv("PYBPF_CACHE", str(cache))
    try:
        return load_cached(KERNEL_BTF), cache
    finally:
        mp.undo()


@pytest.mark.parametrize("name", ["task_struct", "pid_t", "bpf_attr", "do_unlinkat", "nf_conn", "xdp_md"])
def test_name_index_agrees_with_a_full_scan(fresh: tuple[Spec, Path], name: str) -> None:
    spec, _ = fresh
    sample = _full_scan(spec, name) if name in ("task_struct", "do_unlinkat") else None
    found = spec.ids_by_name(name)
    if sample is not None:
        assert found == sample
    assert all(spec.type(i).name == name for i in found)
    non_func = spec.ids_by_name(name, funcs=False)
    assert non_func == [i for i in found if not isinstance(spec.type(i), Func)]


def test_index_is_cached_with_funcs_once_needed(fresh: tuple[Spec, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    spec, cache = fresh
    spec.ids_by_name("do_unlinkat")  # builds and saves the FUNC index
    files = list((cache / "btf-index").iterdir())
    assert len(files) == 1 and files[0].stat().st_size > 100_000
    monkeypatch.setenv("PYBPF_CACHE", str(cache))
    again = load_cached(KERNEL_BTF)
    assert again._func_order is not None and again._name_order is not None
    assert again.ids_by_name("task_struct") == spec.ids_by_name("task_struct")
    assert again.ids_by_name("do_unlinkat") == spec.ids_by_name("do_unlinkat")


def test_flavored_candidates_from_the_index() -> None:
    spec = kernel_spec()
    targets = TargetBTF(spec)
    ids = targets._ids_with_essential_name(spec, "nf_conn", False)
    names = sorted(spec.type(i).name for i in ids)
    assert "nf_conn" in names
    assert all(n == "nf_conn" or n.startswith("nf_conn___") for n in names)
    assert all(isinstance(spec.type(i), Struct) for i in ids)


def test_record_behaves_like_a_dataclass() -> None:
    @record(slots=True)
    class A:
        x: int
        y: list[int] = field(default_factory=list)

    @record(frozen=True)
    class B:
        x: int
        y: str = "b"

    a = A(1)
    assert a == A(1, []) and a != A(2) and repr(a).endswith("A(x=1, y=[])") and A(1).y is not A(1).y
    assert not hasattr(a, "__dict__")
    b = B(1)
    assert hash(b) == hash(B(1)) and b.y == "b"
    with pytest.raises(FrozenInstanceError):
        b.x = 2  # type: ignore[misc]
    assert dataclasses.is_dataclass(a) and [f.name for f in dataclasses.fields(B)] == ["x", "y"]
    assert dataclasses.replace(b, y="c") == B(1, "c")
    assert dataclasses.asdict(a) == {"x": 1, "y": []}


def test_loader_import_stays_light() -> None:
    """`import pybpf.collection` must not pull numpy, pyelftools or dataclasses, nor build ctypes structs
    it does not use."""
    code = (
        "import sys, pybpf.collection, pybpf._sys.types as T\n"
        "heavy = [m for m in ('numpy', 'elftools', 'dataclasses', 'gzip', 'hashlib') if m in sys.modules]\n"
        "print(','.join(heavy) or '-', 'BpfFuncId' in vars(T), 'PerfEventMmapPage' in vars(T))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    heavy, funcid_built, mmap_page_built = out.stdout.split()
    # The site's own .pth files may import some of these; the checked modules must come from pybpf only.
    site = subprocess.run([sys.executable, "-c", code.replace("pybpf.collection, ", "")],
                          capture_output=True, text=True, check=True, cwd=ROOT).stdout.split()[0]
    assert set(heavy.split(",")) - set(site.split(",")) - {"-"} == set()
    assert funcid_built == "False" and mmap_page_built == "False"
