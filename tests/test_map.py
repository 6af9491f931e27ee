"""Map basics against the real kernel: element operations, codecs, errors, the dict face, mmap."""

from __future__ import annotations

import ctypes
import errno
import struct

import pytest

from pybpf._sys import types as T
from pybpf._sys.cpus import online_cpus, parse_cpu_list, possible_cpu_list, possible_cpus
from pybpf.errors import BPFError
from pybpf.map import (
    CtypesCodec,
    Map,
    MapSpec,
    MapType,
    RawCodec,
    StructCodec,
    make_codec,
    sanitize_name,
)

pytestmark = [pytest.mark.usefixtures("require_root"), pytest.mark.kernel2]  # also pass on Debian 6.1


def hash_map(name: str = "t_hash", key: object = "I", value: object = "Q", max_entries: int = 128) -> Map:
    return Map.create(MapSpec(name, MapType.HASH, 4, 8, max_entries), key=key, value=value)


# ---- cpus ---------------------------------------------------------------------------------------------------


def test_cpu_lists() -> None:
    assert parse_cpu_list("0-3,5,7-8\n") == [0, 1, 2, 3, 5, 7, 8]
    assert parse_cpu_list("0") == [0]
    with open("/sys/devices/system/cpu/possible") as f:
        assert list(possible_cpu_list()) == parse_cpu_list(f.read())
    assert possible_cpus() >= online_cpus() >= 1


# ---- names --------------------------------------------------------------------------------------------------


def test_names_are_sanitized_for_the_kernel() -> None:
    assert sanitize_name("my-map:counts!") == "mymapcounts"
    assert sanitize_name("a_very_long_map_name_indeed") == "a_very_long_map"
    assert sanitize_name(".bss") == ".bss"
    with Map.create(MapSpec("tcp-conn:stats/very_long", MapType.HASH, 4, 4, 8)) as m:
        assert m.name == "tcpconnstatsver"
        assert m.info().name == "tcpconnstatsver"


# ---- element operations ---------------------------------------------------------------------------------------


def test_hash_lookup_update_delete() -> None:
    with hash_map() as m:
        assert m.lookup(1) is None
        with pytest.raises(KeyError):
            _ = m[1]
        m[1] = 10
        m.update(2, 20)
        assert m[1] == 10 and m.lookup(2) == 20 and m.get(3, "x") == "x"
        assert 1 in m and 3 not in m
        assert len(m) == 2
        assert sorted(m.items()) == [(1, 10), (2, 20)]
        assert sorted(m.keys()) == [1, 2] and sorted(m.values()) == [10, 20]
        assert m.delete(1) is True and m.delete(1) is False
        with pytest.raises(KeyError):
            del m[1]
        assert m.lookup_and_delete(2) == 20
        assert m.lookup(2) is None and m.lookup_and_delete(2) is None
        assert len(m) == 0


def test_update_flags() -> None:
    with hash_map() as m:
        m.update(1, 1, T.BPF_NOEXIST)
        with pytest.raises(BPFError) as exc:
            m.update(1, 2, T.BPF_NOEXIST)
        assert exc.value.errno == errno.EEXIST and "already exists" in str(exc.value)
        with pytest.raises(BPFError) as exc:
            m.update(2, 2, T.BPF_EXIST)
        assert exc.value.errno == errno.ENOENT and "does not exist" in str(exc.value)
        m.update(1, 3, T.BPF_EXIST)
        assert m[1] == 3
        m.update(4, 4)  # flags are reset after a flagged call
        assert m[4] == 4


def test_full_hash_map_error_is_clear() -> None:
    with hash_map(max_entries=2) as m:
        m[1] = 1
        m[2] = 2
        with pytest.raises(BPFError) as exc:
            m[3] = 3
        assert exc.value.errno == errno.E2BIG
        assert "full" in str(exc.value) and "max_entries=2" in str(exc.value)


def test_array_keys_and_values() -> None:
    with Map.create(MapSpec("t_arr", MapType.ARRAY, 4, 8, 5), value="<Q") as m:
        assert len(m) == 5
        assert list(m.keys()) == [0, 1, 2, 3, 4]  # int keys by default for arrays
        assert m[3] == 0
        m[3] = 33
        assert dict(m.items()) == {0: 0, 1: 0, 2: 0, 3: 33, 4: 0}
        assert m.lookup(5) is None  # out of range
        with pytest.raises(BPFError) as exc:
            m.delete(1)
        assert exc.value.errno == errno.EINVAL and "cannot be deleted" in str(exc.value)


# ---- codecs -------------------------------------------------------------------------------------------------


class Flow(ctypes.Structure):
    _fields_ = [("saddr", ctypes.c_uint32), ("daddr", ctypes.c_uint32), ("sport", ctypes.c_uint16),
                ("dport", ctypes.c_uint16)]


class Counters(ctypes.Structure):
    _fields_ = [("packets", ctypes.c_uint64), ("bytes", ctypes.c_uint64)]


def test_ctypes_struct_keys_and_values() -> None:
    with Map.create(MapSpec("t_flows", MapType.HASH, 12, 16, 16), key=Flow, value=Counters) as m:
        m[Flow(1, 2, 3, 4)] = Counters(10, 1500)
        m[(5, 6, 7, 8)] = {"packets": 1, "bytes": 60}  # tuples and dicts build the structure
        got = m[Flow(1, 2, 3, 4)]
        assert isinstance(got, Counters) and (got.packets, got.bytes) == (10, 1500)
        assert m[(5, 6, 7, 8)].bytes == 60
        keys = sorted((k.saddr, k.dport) for k in m)
        assert keys == [(1, 4), (5, 8)]


def test_ctypes_simple_and_struct_formats() -> None:
    with Map.create(MapSpec("t_simple", MapType.HASH, 4, 8, 16), key=ctypes.c_uint32, value="<HHi") as m:
        m[7] = (1, 2, -3)
        assert m[ctypes.c_uint32(7)] == (1, 2, -3)
        assert m.batch_lookup() == [(7, (1, 2, -3))]


def test_raw_bytes_always_work() -> None:
    with hash_map() as m:
        m[struct.pack("I", 9)] = struct.pack("Q", 90)
        assert m[9] == 90
        m[10] = 100
        assert m.lookup(bytearray(struct.pack("I", 10))) == 100
    with Map.create(MapSpec("t_raw", MapType.HASH, 4, 4, 8)) as raw:
        raw[b"abcd"] = b"wxyz"
        assert raw[b"abcd"] == b"wxyz"
        assert list(raw.items()) == [(b"abcd", b"wxyz")]
        with pytest.raises(TypeError, match="expected 4 raw bytes, got 3 bytes"):
            raw[b"abc"] = b"wxyz"
        with pytest.raises(TypeError, match="raw bytes"):
            raw[1] = b"wxyz"


def test_codec_errors() -> None:
    with pytest.raises(ValueError, match=r"key codec .* is 8 bytes but the map's key size is 4"):
        Map.create(MapSpec("t_badc", MapType.HASH, 4, 4, 8), key="Q")
    with hash_map() as m:
        with pytest.raises(TypeError, match="struct format 'I'"):
            m["nope"] = 1
        with pytest.raises(TypeError):
            m[-1] = 1  # out of range for an unsigned key


def test_custom_codec_protocol() -> None:
    class Text:
        size = 8

        def encode(self, value: str) -> bytes:
            return value.encode().ljust(8, b"\0")

        def decode(self, data: bytes | bytearray | memoryview) -> str:
            return bytes(data).rstrip(b"\0").decode()

    with Map.create(MapSpec("t_text", MapType.HASH, 8, 8, 8), key=Text(), value=Text()) as m:
        m["hello"] = "world"
        assert m["hello"] == "world"
        assert m.batch_lookup() == [("hello", "world")]


def test_btf_int_codec() -> None:
    from pybpf.btf import kernel_spec

    u32 = kernel_spec().find("u32")
    u64 = kernel_spec().find("u64")
    codec = make_codec(u32, 4, "key")
    assert codec.decode(codec.encode(5)) == 5
    with Map.create(MapSpec("t_btf", MapType.HASH, 4, 8, 8, key_type=u32, value_type=u64)) as m:
        m[1] = 2**40
        assert m[1] == 2**40


def test_btf_struct_codec() -> None:
    from pybpf.btf import Struct, kernel_spec

    key_type = kernel_spec().find("bpf_cgroup_storage_key", Struct)
    spec = MapSpec("t_btfs", MapType.HASH, 16, 8, 8, key_type=key_type, value_type=kernel_spec().find("u64"))
    with Map.create(spec) as m:
        m[{"cgroup_inode_id": 5, "attach_type": 2}] = 1
        key = next(iter(m))
        assert (key.cgroup_inode_id, key.attach_type) == (5, 2)
        assert m[key] == 1 and m.batch_lookup() == [(key, 1)]


def test_codec_bulk_paths_match_single() -> None:
    for codec in (StructCodec("I"), StructCodec("<q"), StructCodec("=IH"), CtypesCodec(ctypes.c_uint16),
                  RawCodec(3)):
        values = [codec.decode(bytes([i, i + 1, i + 2, 0, 0, 0, 0, 0][: codec.size])) for i in range(5)]
        data = b"".join(codec.encode(v) for v in values)
        assert codec.encode_many(values) == data
        assert codec.decode_many(data, 5) == values


# ---- per-CPU ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("map_type", [MapType.PERCPU_HASH, MapType.PERCPU_ARRAY, MapType.LRU_PERCPU_HASH])
def test_percpu_values_are_lists(map_type: MapType) -> None:
    ncpu = possible_cpus()
    # value_size 4 is padded to 8 per CPU in the kernel's buffer: check the stride is honoured.
    with Map.create(MapSpec("t_pcpu", map_type, 4, 4, 16), key="I", value="I") as m:
        values = [100 + cpu for cpu in range(ncpu)]
        m[1] = values
        assert m[1] == values
        assert dict(m.batch_lookup())[1] == values
        assert dict(m.items())[1] == values
        with pytest.raises(TypeError, match=f"list of {ncpu} values"):
            m[2] = [1]
        m.batch_update([2, 3], [[7] * ncpu, [8] * ncpu])
        assert m[3] == [8] * ncpu


# ---- errors -------------------------------------------------------------------------------------------------


def test_create_errors_are_clear() -> None:
    with pytest.raises(BPFError) as exc:
        Map.create(MapSpec("t_bad", MapType.ARRAY, 8, 4, 4))
    msg = str(exc.value)
    assert exc.value.errno == errno.EINVAL
    assert "creating map 't_bad' (array, key_size=8" in msg and "key_size must be 4" in msg
    # Per-CPU values are limited by the per-CPU allocator's unit size (32 KiB).
    with pytest.raises(BPFError) as exc:
        Map.create(MapSpec("t_big", MapType.PERCPU_ARRAY, 4, 1 << 16, 1))
    assert exc.value.errno == errno.E2BIG
    assert "larger than the kernel allows" in str(exc.value)


# ---- spec contents, data and freeze ---------------------------------------------------------------------------


def test_spec_contents_data_and_freeze() -> None:
    spec = MapSpec("t_init", MapType.HASH, 4, 4, 8, contents=[(1, 11), (2, 22)], freeze=True)
    with Map.create(spec, key="I", value="I") as m:
        assert dict(m.items()) == {1: 11, 2: 22}
        assert m.info().frozen is True
    data = MapSpec(".rodata", MapType.ARRAY, 4, 12, 1, flags=T.BPF_F_RDONLY_PROG, data=b"hello")
    with Map.create(data) as ro:
        assert ro[0] == b"hello".ljust(12, b"\0")


def test_freeze_makes_updates_fail_with_eperm() -> None:
    with hash_map() as m:
        m[1] = 1
        m.freeze()
        with pytest.raises(BPFError) as exc:
            m[1] = 2
        assert exc.value.errno == errno.EPERM and "frozen" in str(exc.value)
        with pytest.raises(BPFError) as exc:
            m.delete(1)
        assert exc.value.errno == errno.EPERM
        assert m[1] == 1  # reads still work
        assert m.info().frozen is True


# ---- mmap ---------------------------------------------------------------------------------------------------


def test_mmap_array() -> None:
    spec = MapSpec("t_mm", MapType.ARRAY, 4, 12, 3, flags=T.BPF_F_MMAPABLE)
    with Map.create(spec) as m:
        view = m.mmap()
        assert len(view) == 16 * 3 and not view.readonly  # each value padded to 8
        view[16:20] = b"abcd"  # element 1, seen through the syscall
        assert m[1][:4] == b"abcd"
        m[2] = b"x" * 12  # seen through the mapping
        assert bytes(view[32:44]) == b"x" * 12
        assert m.mmap() is view
    with pytest.raises(ValueError):
        view[0]  # released by close()


def test_mmap_frozen_is_read_only() -> None:
    with Map.create(MapSpec("t_mmro", MapType.ARRAY, 4, 8, 1, flags=T.BPF_F_MMAPABLE, data=b"abc")) as m:
        m.freeze()
        view = m.mmap()
        assert view.readonly and bytes(view[:3]) == b"abc"


def test_mmap_needs_the_flag() -> None:
    with Map.create(MapSpec("t_nomm", MapType.ARRAY, 4, 8, 1)) as m, pytest.raises(ValueError, match="MMAPABLE"):
        m.mmap()
