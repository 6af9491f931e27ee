"""The kernel BTF name index (cached on disk), the lazy generated ABI and the cheap import path."""

from __future__ import annotations

import dataclasses
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf._sys.record import FrozenInstanceError, field, record
from pybpf.btf import Func, Spec, Struct, kernel_spec
from pybpf.btf import spec as spec_mod
from pybpf.btf.core import TargetBTF
from pybpf.btf.spec import KERNEL_BTF, load_cached
from pybpf.errors import ObjectError

ROOT = Path(__file__).resolve().parent.parent


def _full_scan(spec: Spec, name: str) -> list[int]:
    return [i for i in range(spec.first_id, spec.next_id) if spec.type(i).name == name]


def _sort_names(spec: Spec) -> None:
    """Build both name-sorted indexes (FUNCs and the other named types), as frequent lookups do."""
    spec._sorted_index(True)
    spec._sorted_index(False)


@pytest.fixture(scope="module")
def fresh(tmp_path_factory: pytest.TempPathFactory) -> tuple[Spec, Path]:
    """vmlinux loaded through an empty cache directory (walked lazily, its index written once sorted), and
    that directory."""
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
    assert found, f"{name} not found"
    if sample is not None:
        assert found == sample
    assert all(spec.type(i).name == name for i in found)
    non_func = spec.ids_by_name(name, funcs=False)
    assert non_func == [i for i in found if not isinstance(spec.type(i), Func)]


def test_a_cold_lookup_walks_only_what_it_needs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No cached index: a CO-RE-sized lookup searches, walks a few percent of vmlinux and writes nothing."""
    monkeypatch.setenv("PYBPF_CACHE", str(tmp_path))
    spec = load_cached(KERNEL_BTF)
    assert spec.large and spec._walk_at == 0
    (task,) = spec.ids_by_name("task_struct", funcs=False)
    task_struct = spec.type(task)
    assert isinstance(task_struct, Struct) and task_struct.member("real_parent")
    assert spec._searches == 1 and spec._sorted == [False, False]
    assert 0 < spec._walk_at < len(spec._words) // 10
    assert not (tmp_path / "btf-index").exists()  # a partial walk is not worth keeping
    assert spec.next_id == Spec(spec_mod._read_btf(KERNEL_BTF)).next_id  # walks the rest on demand


def test_a_whole_walk_is_kept_for_the_next_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Module BTF ids start after vmlinux's last: the walk that finds it is saved, and a later load_cached
    starts walked, still answering lookups by search (its names are not sorted)."""
    monkeypatch.setenv("PYBPF_CACHE", str(tmp_path))
    spec = load_cached(KERNEL_BTF)
    next_id = spec.next_id
    assert spec._sorted == [False, False] and len(list((tmp_path / "btf-index").iterdir())) == 1
    again = load_cached(KERNEL_BTF)
    assert again._walk_at == len(again._words) and again.next_id == next_id
    (task,) = again.ids_by_name("task_struct", funcs=False)
    assert again._searches == 1 and again._sorted == [False, False]
    assert again.type(task).name == "task_struct" and task in spec.ids_by_name("task_struct")


def test_index_is_cached_once_names_are_sorted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYBPF_CACHE", str(tmp_path))
    spec = load_cached(KERNEL_BTF)
    spec.expect_lookups(spec_mod._SEARCHES_BEFORE_SORT + 1)  # more than searches pay for: sort at once
    found = spec.ids_by_name("task_struct", funcs=False)
    assert spec._sorted == [True, False]
    files = list((tmp_path / "btf-index").iterdir())
    assert len(files) == 1 and files[0].stat().st_size > 100_000
    second = load_cached(KERNEL_BTF)
    assert second._sorted == [True, False]
    assert second._walk_at == len(second._words) and second.ids_by_name("task_struct", funcs=False) == found
    # A process that found the index sorts the FUNC names at its first FUNC lookup, and saves them too.
    funcs = second.ids_by_name("do_unlinkat")
    assert second._sorted == [True, True] and funcs
    third = load_cached(KERNEL_BTF)
    assert third._sorted == [True, True]
    assert third.ids_by_name("do_unlinkat") == funcs == _full_scan(third, "do_unlinkat")
    assert third.ids_by_name_prefix("do_unlink") == second.ids_by_name_prefix("do_unlink")
    # A damaged index (cut short here) is ignored: the spec is walked lazily again, and answers the same.
    (path,) = (tmp_path / "btf-index").iterdir()
    path.write_bytes(path.read_bytes()[:-4])
    damaged = load_cached(KERNEL_BTF)
    assert damaged._walk_at == 0 and damaged._sorted == [False, False]
    assert damaged.ids_by_name("do_unlinkat") == funcs


def test_search_agrees_with_the_sorted_index() -> None:
    data = spec_mod._read_btf(KERNEL_BTF)
    searched, sorted_ = Spec(data), Spec(data)
    _sort_names(sorted_)
    exact = ["do_unlinkat", "vfs_read", "schedule", "task_struct", "open", "pid_t", "nf_conn___init",
             "no_such_function_at_all"]
    prefixes = ["do_unlink", "__x64_sys_openat", "nf_conn___", "zzz_nothing"]
    for name in exact:
        for funcs in (True, False):
            searched._searches = 0
            assert searched.ids_by_name(name, funcs=funcs) == sorted_.ids_by_name(name, funcs=funcs), name
    for prefix in prefixes:
        searched._searches = 0
        assert searched.ids_by_name_prefix(prefix) == sorted_.ids_by_name_prefix(prefix), prefix
    searched._searches = 0
    assert (searched.named(["task_struct", "nf_conn"], ["nf_conn___"], funcs=False)
            == sorted_.named(["task_struct", "nf_conn"], ["nf_conn___"], funcs=False))
    assert searched._sorted == [False, False]  # all answered by search
    # A prefix matching many names is answered from the sorted names instead.
    assert searched.ids_by_name_prefix("vfs_", funcs=True) == sorted_.ids_by_name_prefix("vfs_", funcs=True)
    assert searched._sorted[True]


def test_search_agrees_with_a_name_dict() -> None:
    """The search path (no sorting) against a dict of every name (decoded one by one)."""
    import random

    data = spec_mod._read_btf(KERNEL_BTF)
    spec, ref = Spec(data), Spec(data)
    names = ref._name_index()
    for name in random.Random(11).sample(sorted(names), 60):
        spec._searches = 0
        hit = names[name]
        assert spec.ids_by_name(name) == (hit if isinstance(hit, list) else [hit]), name
    assert spec._sorted == [False, False]


def test_sorted_indexes_agree_with_a_name_dict() -> None:
    """Every lookup path of the large-spec indexes against a dict of every name (decoded one by one)."""
    import random

    data = spec_mod._read_btf(KERNEL_BTF)
    spec, ref = Spec(data), Spec(data)
    _sort_names(spec)
    names = ref._name_index()
    sample = random.Random(7).sample(sorted(names), 400)
    sample += [n for n in names if len(n.encode()) >= spec_mod._NAME_WINDOW][:20]
    for name in sample:
        hit = names[name]
        assert spec.ids_by_name(name) == (hit if isinstance(hit, list) else [hit]), name
    for prefix in ["task_", "bpf_prog", "do_sys", "x", sample[0][:3]]:
        expect = sorted((n, i) for n, ids in names.items() if n.startswith(prefix)
                        for i in (ids if isinstance(ids, list) else [ids]))
        assert sorted(spec.ids_by_name_prefix(prefix)) == expect, prefix


def _blob(words: list[int], strings: bytes) -> bytes:
    types = struct.pack(f"<{len(words)}I", *words)
    return spec_mod.HEADER.pack(0xEB9F, 1, 0, 24, 0, len(types), len(types), len(strings)) + types + strings


def _synthetic(n_ints: int) -> tuple[bytes, dict[str, int]]:
    """A BTF blob with `n_ints` INTs named "int", a FUNC_PROTO and FUNCs, one of them named by the tail
    of another string (BTF allows names to share a tail)."""
    long = ["L" * 70 + "b", "L" * 70, "L" * 70 + "a"]  # alike beyond the sort key's first bytes
    strings = b"\0int\0my_func\0my_funky\0wrapper_of_tail_func\0" + b"".join(n.encode() + b"\0" for n in long)
    off = {name: strings.index(name.encode() + b"\0") for name in ("int", "my_func", "my_funky", "tail_func")}
    off.update((name, strings.index(b"\0" + name.encode() + b"\0") + 1) for name in long)
    words: list[int] = []
    for i in range(n_ints):
        words += [off[long[i % 3]] if i >= n_ints - 3 else off["int"], 1 << 24, 4, 32]
    proto = n_ints + 1
    words += [0, 13 << 24, 1]
    ids: dict[str, int] = {}
    for i, name in enumerate(("my_func", "my_funky", "tail_func", "my_func")):
        words += [off[name], 12 << 24 | 1, proto]
        ids.setdefault(name, proto + 1 + i)
    return _blob(words, strings), ids


def test_large_spec_lookups_by_search_and_by_sort() -> None:
    blob, ids = _synthetic(5000)
    for force_sort in (False, True):
        spec = Spec(blob)
        assert spec.large
        if force_sort:
            _sort_names(spec)
        else:
            spec._searches = -100  # every lookup below by search
        assert spec.ids_by_name("my_funky") == [ids["my_funky"]]
        # The search reads whole strings only (no BTF writer shares tails); the sorted index reads them all.
        assert spec.ids_by_name("tail_func") == ([ids["tail_func"]] if force_sort else [])
        assert spec.next_id == 5000 + 1 + 1 + 4
        assert spec.ids_by_name("my_func") == [ids["my_func"], ids["my_func"] + 3]
        assert spec.ids_by_name("my_func", funcs=False) == []
        assert spec.ids_by_name("int", funcs=False) == list(range(1, 4998))
        assert spec.ids_by_name("L" * 70) == [5000]
        assert spec.ids_by_name_prefix("L" * 66) == [("L" * 70, 5000), ("L" * 70 + "a", 4998), ("L" * 70 + "b", 4999)]
        assert spec.ids_by_name("func") == []
        assert spec.ids_by_name_prefix("my_fun") == [
            ("my_func", ids["my_func"]), ("my_func", ids["my_func"] + 3), ("my_funky", ids["my_funky"])]
        assert spec.ids_by_name_prefix("tail") == ([("tail_func", ids["tail_func"])] if force_sort else [])
        assert isinstance(spec.type(ids["tail_func"]), Func) and spec.type(ids["tail_func"]).name == "tail_func"


def test_large_split_spec_finds_names_in_both_string_sections() -> None:
    blob, base_ids = _synthetic(10)
    base = Spec(blob)
    base_strings = base._strings
    own = b"\0split_int\0split_func\0"
    own_off = {n: base._str_end + own.index(n + b"\0") for n in (b"split_int", b"split_func")}
    int_off, func_off = base_strings.index(b"\0int\0") + 1, base_strings.index(b"\0my_func\0") + 1
    words: list[int] = []
    for i in range(5000):
        words += [own_off[b"split_int"] if i % 2 else int_off, 1 << 24, 4, 32]
    proto = base.next_id + 5000
    words += [0, 13 << 24, 1]
    for name_off in (own_off[b"split_func"], func_off):
        words += [name_off, 12 << 24 | 1, proto]
    first = base.next_id
    for force_sort in (False, True):
        split = Spec(_blob(words, own), base)
        assert split.large
        if force_sort:
            _sort_names(split)
        else:
            split._searches = -100
        assert split.ids_by_name("split_int") == list(range(first + 1, first + 5000, 2))
        assert split.ids_by_name("int", funcs=False)[-3:] == [first + 4994, first + 4996, first + 4998]
        assert split.ids_by_name("split_func") == [proto + 1]
        assert split.ids_by_name("my_func") == [base_ids["my_func"], base_ids["my_func"] + 3, proto + 2]
        assert split.ids_by_name_prefix("split_f") == [("split_func", proto + 1)]


@pytest.mark.parametrize(("kept", "message"), [(2, "ends inside a record"), (1, "truncated BTF type record")])
def test_scan_rejects_a_cut_type_section(kept: int, message: str) -> None:
    """The last record (a 3-word FUNC) cut to `kept` words."""
    blob, _ = _synthetic(10)
    hdr = spec_mod.HEADER.unpack_from(blob)
    words = list(struct.unpack_from(f"<{hdr[5] // 4}I", blob, 24))
    with pytest.raises(ObjectError, match=message):
        Spec(_blob(words[: len(words) - 3 + kept], blob[24 + hdr[5]:]))
    # A large spec is walked lazily: the cut shows when the walk reaches it.
    blob, _ = _synthetic(5000)
    hdr = spec_mod.HEADER.unpack_from(blob)
    words = list(struct.unpack_from(f"<{hdr[5] // 4}I", blob, 24))
    lazy = Spec(_blob(words[: len(words) - 3 + kept], blob[24 + hdr[5]:]))
    assert lazy.type(1).name == "int"
    with pytest.raises(ObjectError, match=message):
        lazy.next_id  # noqa: B018


def test_scan_rejects_an_unknown_kind() -> None:
    blob, _ = _synthetic(10)
    bad = bytearray(blob)
    struct.pack_into("<I", bad, 24 + 4, 25 << 24)  # first record's info word
    with pytest.raises(ObjectError, match="unknown BTF kind 25"):
        Spec(bytes(bad))
    empty = Spec(_blob([], b"\0"))
    assert empty.next_id == 1 and list(empty) == []


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
