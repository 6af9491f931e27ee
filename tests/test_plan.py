"""Cached load plans against the real kernel: a second load replays what the first sent to the kernel, with
the same effects, and only when the object, the options and the kernel boot are the same."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from child_process import fresh_python, print_imported

import pybpf

pytestmark = pytest.mark.kernel2

BpfObj = Callable[[str], Path]


@pytest.fixture
def obj_copy(tmp_path: Path, bpf_obj: BpfObj) -> Callable[[str], Path]:
    """A private copy of a test object (so that changing it touches no other test)."""

    def copy(name: str) -> Path:
        dest = tmp_path / f"{name}.bpf.o"
        shutil.copyfile(bpf_obj(name), dest)
        return dest

    return copy


@pytest.fixture
def planned(obj_copy: Callable[[str], Path]) -> Callable[..., Path]:
    """A private copy of a test object, loaded once with `options` (those of pybpf.load) so that its plan is
    saved: the next load with the same options replays it."""

    def make(name: str, **options: Any) -> Path:
        obj = obj_copy(name)
        pybpf.load(obj, **options).close()
        return obj

    return make


# The start of the code of a fresh process: the plan of the object in argv[1] replayed as `c`, and `before`, the
# modules the interpreter had before pybpf was imported.
_REPLAY = (
    "import sys\n"
    "before = set(sys.modules)\n"
    "import os, pybpf\n"
    "c = pybpf.load(sys.argv[1])\n"
    "assert c.plan, 'not replayed'\n"
)


def _plans(cache: Path) -> list[Path]:
    return sorted((cache / "plans").glob("*.plan"))


def _check_globals(coll: pybpf.Collection) -> None:
    """Run load_globals' program and read what it wrote: global data, a BTF-decoded map, a subprogram."""
    assert coll.variables["multiplier"].value == 3
    assert coll.programs["compute"].test_run().retval == 0
    assert coll.variables["counter"].value == 6
    assert coll.maps["results"][1] == 6 * 3 + 77
    coll.variables["counter"].value = 100
    coll.programs["compute"].test_run()
    assert coll.maps["results"][1] == 101 * 3 + 77


def test_second_load_replays_the_plan_with_the_same_effects(cache: Path, obj_copy: Callable[[str], Path]) -> None:
    obj = obj_copy("load_globals")
    with pybpf.load(obj, set={"multiplier": 3}) as first:
        assert first.plan is None
        _check_globals(first)
    [plan] = _plans(cache)
    with pybpf.load(obj, set={"multiplier": 3}) as again:
        assert again.plan == str(plan)
        _check_globals(again)
        # The spec is read from the object when asked for, as the whole load would have it.
        assert again.spec.name == first.spec.name
        replayed, loaded = again.programs["compute"].spec, first.programs["compute"].spec
        assert replayed is not None and loaded is not None
        assert replayed.section == loaded.section
        assert len(replayed.instructions) == len(loaded.instructions)


def test_replayed_load_imports_no_object_reader(cache: Path, planned: Callable[..., Path]) -> None:
    code = _REPLAY + (
        "heavy = sorted(m for m in sys.modules if m.startswith(('pybpf.elf.reader', 'pybpf.btf', 'pybpf.asm')))\n"
        "print(','.join(heavy))\n"
        "c.programs['compute'].test_run()\n"
        "print(c.variables['counter'].value)\n"
    )
    out = fresh_python(code, cache, planned("load_globals"))
    assert out == ["", "6"], out


# What a replayed load and a tracepoint attach must not import: each costs milliseconds of a tool's start-up
# (enum and functools/collections ~5 ms, the section table ~2 ms, the object reader, BTF and asm far more).
_START_UP_HEAVY = ("enum", "functools", "collections", "weakref", "importlib", "array", "zlib", "mmap", "re",
                   "typing", "dataclasses", "pybpf.elf.sections", "pybpf.elf.reader", "pybpf.btf", "pybpf.asm")


def test_replayed_load_and_attach_import_nothing_heavy(cache: Path, planned: Callable[..., Path]) -> None:
    code = _REPLAY + (
        "with c.programs['count_tp'].attach():\n"
        "    for _ in range(7):\n"
        "        os.getppid()\n"
        + print_imported(_START_UP_HEAVY, since="before") +
        "print(c.maps['tp_counts'].lookup(os.getpid()))\n"
    )
    out = fresh_python(code, cache, planned("link_tp"))
    assert out == ["", "7"], out


def test_replayed_types_are_enums_for_display(cache: Path, planned: Callable[..., Path]) -> None:
    from pybpf._sys import types as T

    obj = planned("link_tp")
    with pybpf.load(obj) as coll:
        assert coll.plan is not None
        prog, counts = coll.programs["count_btf"], coll.maps["tp_counts"]
        # Kept as ints (the start-up path compares those), shown as the kernel's enums.
        assert prog.prog_type == T.BPF_PROG_TYPE_TRACING and prog.expected_attach_type == T.BPF_TRACE_RAW_TP
        assert prog.type is T.ProgType.TRACING and prog.attach_type is T.AttachType.TRACE_RAW_TP
        assert counts.map_type == T.BPF_MAP_TYPE_HASH and counts.type is T.MapType.HASH
        assert "tracing" in repr(prog) and "hash" in repr(counts)


def test_tail_calls_and_map_in_map_replayed(cache: Path, planned: Callable[..., Path]) -> None:
    obj = planned("load_maps")
    with pybpf.load(obj) as coll:
        assert coll.plan is not None
        result = coll.programs["entry"].test_run(bytes(64))
        assert result.retval == 1  # XDP_DROP from the tail-called program: the prog array was filled
        assert coll.variables["tail_ran"].value == 1
        assert coll.maps["inner_b"][0] == 7  # reached through outer[1]: the map of maps was filled


def test_replayed_tracepoints_attach_and_count(cache: Path, planned: Callable[..., Path]) -> None:
    obj = planned("link_tp", autoload={"count_btf": False})
    with pybpf.load(obj, autoload={"count_btf": False}) as coll:
        assert coll.plan is not None
        assert "count_btf" not in coll.programs
        prog = coll.programs["count_tp"]
        assert prog.section == "tracepoint/syscalls/sys_enter_getppid"
        with prog.attach():
            for _ in range(7):
                os.getppid()
        key = os.getpid()
        assert coll.maps["tp_counts"][key] == 7


def test_plan_depends_on_object_options_and_cache_flag(cache: Path, planned: Callable[..., Path]) -> None:
    obj = planned("load_globals", set={"multiplier": 3})
    [plan] = _plans(cache)
    with pybpf.load(obj, set={"multiplier": 4}) as other:  # other options: the whole load, and another plan
        assert other.plan is None
        assert other.variables["multiplier"].value == 4
    assert len(_plans(cache)) == 2
    with pybpf.load(obj, set={"multiplier": 3}) as first_options:  # each kept its own
        assert first_options.plan == str(plan)
        assert first_options.variables["multiplier"].value == 3
    st = obj.stat()
    os.utime(obj, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # the object changed
    with pybpf.load(obj, set={"multiplier": 3}) as changed:
        assert changed.plan is None
    with pybpf.load(obj, set={"multiplier": 3}) as replayed:  # the plan was made again
        assert replayed.plan == str(plan)
    plan.unlink()
    with pybpf.load(obj, set={"multiplier": 3}, cache=False) as uncached:
        assert uncached.plan is None
    assert not plan.exists()
    with pybpf.load(obj, set={"multiplier": 3}, log_level=1) as logged:  # a verifier log: the whole load
        assert logged.plan is None
        assert logged.programs["compute"].verifier_log
    assert not plan.exists()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "world-writable"])
def test_damaged_or_foreign_plan_is_not_used(cache: Path, planned: Callable[..., Path], damage: str) -> None:
    obj = planned("load_globals", set={"multiplier": 3})
    [plan] = _plans(cache)
    if damage == "garbage":
        plan.write_bytes(b"\x00not a plan")
    elif damage == "truncated":
        plan.write_bytes(plan.read_bytes()[:200])
    else:
        plan.chmod(0o666)
    with pybpf.load(obj, set={"multiplier": 3}) as coll:
        assert coll.plan is None
        _check_globals(coll)


@pytest.fixture
def pin_root() -> Iterator[str]:
    root = f"/sys/fs/bpf/pybpf-test-plan-{os.getpid()}"
    os.makedirs(root, exist_ok=True)
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_pinned_map_shared_with_a_replayed_load(cache: Path, obj_copy: Callable[[str], Path], pin_root: str) -> None:
    obj = obj_copy("elf_maps")
    skip_entry = {"entry": False}  # it exists to be read, not loaded: the verifier refuses it
    with pybpf.load(obj, pin_root=pin_root, autoload=skip_entry) as first:
        first.maps["sized"][2] = b"pinned".ljust(24, b"\0")
        first.maps["counts"][5] = (5, 500)
    assert os.path.exists(os.path.join(pin_root, "sized"))
    with pybpf.load(obj, pin_root=pin_root, autoload=skip_entry) as again:
        assert again.plan is not None
        assert bytes(again.maps["sized"][2]).rstrip(b"\0") == b"pinned"  # the same kernel map, through the pin
        assert len(again.maps["counts"]) == 0  # not pinned: a new map
        again.maps["counts"][5] = (5, 600)  # a BTF struct value, encoded once the codec is built
        assert again.maps["counts"][5].bytes == 600
        # slots filled with the replayed programs (user space reads a program id back)
        assert again.maps["jumps"][2] == again.programs["tail_one"].id


def test_plan_cache_stays_bounded(cache: Path, obj_copy: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from pybpf import plan

    monkeypatch.setattr(plan, "_KEEP_MAX", 4)
    monkeypatch.setattr(plan, "_KEEP_AFTER_PRUNE", 2)
    obj = obj_copy("load_globals")
    stale = cache / "plans"
    stale.mkdir(parents=True)
    for i in range(6):  # plans of objects built in directories since removed
        old = stale / f"gone{i}.bpf.o.{i:08x}.plan"
        old.write_bytes(b"x")
        os.utime(old, (1_000_000 + i, 1_000_000 + i))
    pybpf.load(obj).close()
    left = _plans(cache)
    assert len(left) == 2
    assert [p.name.startswith("load_globals") for p in left].count(True) == 1  # the newest plan is kept


def test_plans_follow_xdg_cache_home(tmp_path: Path, planned: Callable[..., Path],
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # One cache root for every cache (build, BTF index, plans): $XDG_CACHE_HOME/pybpf without $PYBPF_CACHE.
    monkeypatch.delenv("PYBPF_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    obj = planned("load_globals")
    assert len(_plans(tmp_path / "xdg" / "pybpf")) == 1
    with pybpf.load(obj) as coll:
        assert coll.plan is not None and coll.plan.startswith(str(tmp_path / "xdg" / "pybpf"))


def test_replayed_ring_buffer_reads_its_object_only_for_the_lost_count(cache: Path,
                                                                        planned: Callable[..., Path]) -> None:
    code = _REPLAY + (
        "rb = c.ringbuf('rb')\n"
        "print('pybpf.elf.reader' in sys.modules)\n"
        "print(rb.lost)\n"  # the program's global `dropped`: now the object is read
        "print('pybpf.elf.reader' in sys.modules)\n"
    )
    out = fresh_python(code, cache, planned("events_seq"))
    assert out == ["False", "0", "True"], out


def test_specs_of_a_replayed_load_refuse_a_rebuilt_object(cache: Path, planned: Callable[..., Path]) -> None:
    obj = planned("load_globals")
    with pybpf.load(obj) as coll:
        assert coll.plan is not None
        st = obj.stat()
        os.utime(obj, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # rebuilt since the replay
        for _ in range(2):  # and again when asked again, not an AttributeError
            with pytest.raises(pybpf.ObjectError, match="changed since it was loaded"):
                _ = coll.variables
        assert coll.programs["compute"].test_run().retval == 0  # what was loaded still runs


def test_reused_pin_is_decoded_and_described_like_a_created_map(cache: Path, obj_copy: Callable[[str], Path],
                                                                 pin_root: str) -> None:
    obj = obj_copy("elf_maps")
    skip_entry = {"entry": False}
    with pybpf.load(obj, pin_root=pin_root, autoload=skip_entry, cache=False) as created:
        created_spec = created.maps["sized"].spec
    with pybpf.load(obj, pin_root=pin_root, autoload=skip_entry, cache=False) as reused:
        reused_map = reused.maps["sized"]
        assert reused_map.spec is not None and created_spec is not None
        assert reused_map.spec.name == created_spec.name == "sized"
        assert reused_map.key_codec.size == 4

    # `sized` has no BTF types (any 4-byte key codec passes above): pin `counts` too, whose BTF key and struct
    # value a reused pin must decode as the map the load creates does.
    def load_pinning_counts() -> pybpf.Collection:
        opened = pybpf.open_object(obj)
        opened.programs["entry"].autoload = False
        opened.maps["counts"].pinning = 1  # LIBBPF_PIN_BY_NAME
        return opened.load(pin_root=pin_root)

    with load_pinning_counts() as created:
        created.maps["counts"][5] = (5, 500)
        created_codecs = type(created.maps["counts"].key_codec), type(created.maps["counts"].value_codec)
    with load_pinning_counts() as reused:
        counts = reused.maps["counts"]
        assert (type(counts.key_codec), type(counts.value_codec)) == created_codecs
        assert counts[5].bytes == 500  # the pinned map, through its BTF struct


def test_deferred_codecs_cover_everything_set_codec_sets() -> None:
    # Map.defer leaves unset what set_codec sets, to build it on first use: the two lists must agree, or a
    # replayed map would keep a default codec for what the list misses.
    from pybpf.map import _CODEC_ATTRIBUTES, Map, MapSpec, MapType

    with Map.create(MapSpec(name="codec_attrs", type=MapType.HASH, key_size=4, value_size=8,
                            max_entries=1)) as m:
        before = dict(vars(m))
        for name in _CODEC_ATTRIBUTES:
            del m.__dict__[name]
        m.set_codec(key="I", value="Q")
        assigned = {name for name, value in vars(m).items() if before.get(name, object()) is not value}
        assert assigned == set(_CODEC_ATTRIBUTES)
        m[1] = 2
        assert m[1] == 2


def test_replayed_iterator_and_tp_btf_attach_without_reading_the_object(cache: Path,
                                                                          planned: Callable[..., Path]) -> None:
    code = _REPLAY + (
        "tp = pybpf.load(sys.argv[2])\n"
        "assert tp.plan, 'not replayed'\n"
        "prog = next(p for p in c.programs.values() if p.section == 'iter/task')\n"
        "with prog.attach() as link:\n"
        "    print(link.target, str(os.getpid()) in link.read().decode())\n"
        "with tp.programs['count_btf'].attach() as link:\n"
        "    print(link.target)\n"
        "print('pybpf.elf.reader' in sys.modules)\n"
    )
    out = fresh_python(code, cache, planned("link_iter"), planned("link_tp"))
    assert out == ["iter/task True", "tp_btf/sys_enter", "False"], out
