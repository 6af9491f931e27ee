"""Object BTF re-encoding, hidden functions, the cold kernel BTF index write, and the stack symboliser caches."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import pybpf.collection as pc
from pybpf.btf import marshal
from pybpf.btf import spec as spec_mod
from pybpf.elf.reader import read
from pybpf.symbols import stacks
from pybpf.symbols.process import BuildIdSymbols

HIDDEN = r"""
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__attribute__((visibility("hidden"))) int hidden_total = 1;

__attribute__((noinline, visibility("hidden"))) int hidden_helper(int x)
{
    return x + hidden_total;
}

__attribute__((noinline)) int global_helper(int x)
{
    return x * 2;
}

SEC("raw_tp")
int prog(void *ctx)
{
    return hidden_helper(1) + global_helper(2);  /* (1 + 1) + 4 */
}

char LICENSE[] SEC("license") = "GPL";
"""


@pytest.fixture(scope="module")
def hidden_obj(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pybpf.toolchain import compile

    src = tmp_path_factory.mktemp("hidden") / "hidden_symbols.bpf.c"
    src.write_text(HIDDEN)
    return compile(src)


def test_hidden_functions_are_apart_from_hidden_variables(hidden_obj: Path) -> None:
    spec = read(hidden_obj)
    assert spec.hidden_functions == {"hidden_helper"}
    assert {name for _, name in spec.hidden_symbols} == {"hidden_total"}


@pytest.mark.usefixtures("require_root")
def test_object_with_a_hidden_function_loads(hidden_obj: Path) -> None:
    with pc.load(hidden_obj) as coll:
        # The hidden function and the hidden variable it reads are linked: (1 + 1) + 2 * 2.
        assert coll.programs["prog"].test_run(ctx=bytes(8)).retval == 6


def test_raw_types_and_strings_match_the_separate_readers(bpf_obj: Callable[[str], Path]) -> None:
    for name in ("btf_kinds", "events_seq", "elf_globals"):
        btf = read(bpf_obj(name)).btf
        assert btf is not None
        raws, table = marshal.raw_types_and_strings(btf)
        assert raws == marshal.raw_types(btf)
        assert bytes(table) == bytes(marshal.StringTable.of_spec(btf)) == btf._strings
        assert table._offsets == marshal.StringTable(btf._strings)._offsets
        blob = marshal.for_kernel(btf)
        assert marshal.for_kernel(raws, strings=table) == blob
        assert marshal.for_kernel(marshal.raw_types(btf), strings=btf._strings) == blob


def test_raw_types_of_mapped_kernel_btf_does_not_copy_the_blob() -> None:
    data = spec_mod._read_btf(spec_mod.KERNEL_BTF)
    kernel = spec_mod.Spec(data)
    raws = marshal.raw_types(kernel)
    assert len(raws) == kernel.next_id - 1
    if not isinstance(data, bytes):  # mapped (6.16+): the 5.5 MB blob stays unread
        assert kernel._data is None


def test_kernel_index_is_written_once_sorted(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A cold process writes no index for a few searched names; sorting writes it, once; a later process
    reads it and writes nothing for lookups it answers from it."""
    from pybpf._cache import write_atomically as write

    writes: list[str] = []

    def counting(path: str, chunks: Any) -> None:
        writes.append(path)
        write(path, chunks)

    monkeypatch.setattr(spec_mod, "write_atomically", counting)
    kernel = spec_mod.load_cached(spec_mod.KERNEL_BTF)
    assert kernel.ids_by_name("task_struct", funcs=False) and not kernel._sorted[False]
    assert writes == []
    kernel.expect_lookups(1000)
    assert kernel.ids_by_name("sk_buff", funcs=False) and kernel._sorted[False]
    assert len(writes) == 1
    warm = spec_mod.load_cached(spec_mod.KERNEL_BTF)
    assert warm._sorted[False] and warm.ids_by_name("task_struct", funcs=False)
    assert len(writes) == 1


def test_build_id_resolver_is_cached_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []

    class Counting(BuildIdSymbols):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            made.append(kwargs.get("pids"))
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(stacks, "BuildIdSymbols", Counting)
    monkeypatch.setattr(stacks, "_build_ids", type(stacks._build_ids)())
    frame = stacks.BuildIdFrame(True, b"\x01" * 20, 0x10)
    pid = os.getpid()
    for _ in range(3):
        assert stacks.symbolize_build_id_stack([frame], pid=pid) == [stacks.UNKNOWN]
        assert stacks.symbolize_build_id_stack([frame]) == [stacks.UNKNOWN]
    assert made == [[pid], []]


class _FakeStackMap:
    def __init__(self, value: Any) -> None:
        self.value = value

    def lookup(self, key: int) -> Any:
        return self.value if key == 3 else None


@pytest.mark.parametrize("value", [(0x10, 0x20, 0, 0), b"\x10" + bytes(7) + b"\x20" + bytes(23)])
def test_stack_addresses_from_tuples_and_bytes(value: Any) -> None:
    assert stacks.stack_addresses(_FakeStackMap(value), 3) == [0x10, 0x20]
    assert stacks.stack_addresses(_FakeStackMap(value), 4) == []
    assert stacks.stack_addresses(_FakeStackMap(value), -14) == []
