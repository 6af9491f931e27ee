"""Every map type the kernel lets user space create, each used for what it is for."""

from __future__ import annotations

import errno
import mmap
import os
import socket
import struct
from collections.abc import Iterator

import pytest

from pybpf import asm
from pybpf._sys import FD, perf_event_open
from pybpf._sys import types as T
from pybpf._sys.cpus import possible_cpus
from pybpf.btf import Kind, marshal
from pybpf.errors import BPFError
from pybpf.map import Map, MapSpec, MapType
from pybpf.program import Program, ProgramSpec

pytestmark = [pytest.mark.usefixtures("require_root"), pytest.mark.kernel2]  # also pass on Debian 6.1

# How map creation says the kernel lacks a map type: EINVAL (unknown type), EOPNOTSUPP, ENOTSUPP (524).
NOT_SUPPORTED = (errno.EINVAL, errno.EOPNOTSUPP, 524)


def test_lru_hash_evicts_old_entries() -> None:
    with Map.create(MapSpec("t_lru", MapType.LRU_HASH, 4, 4, 64), key="I", value="I") as m:
        for i in range(1000):
            m[i] = i * 2
        keys = sorted(m.keys())
        assert 0 < len(keys) <= 64
        assert m[999] == 1998  # the newest survives
        assert 0 not in m  # the oldest went
        assert all(k >= 1000 - 200 for k in keys)


def test_lpm_trie_longest_prefix_match() -> None:
    # key: struct { u32 prefixlen; u8 addr[4]; } (prefixlen in host order, address in network order)
    with Map.create(MapSpec("t_lpm", MapType.LPM_TRIE, 8, 4, 64), key="=I4s", value="I") as m:
        assert m.flags & T.BPF_F_NO_PREALLOC  # added for LPM tries, as the kernel requires
        ip = socket.inet_aton
        m[(8, ip("10.0.0.0"))] = 8
        m[(16, ip("10.1.0.0"))] = 16
        m[(24, ip("10.1.2.0"))] = 24
        assert m.lookup((32, ip("10.1.2.3"))) == 24
        assert m.lookup((32, ip("10.1.9.9"))) == 16
        assert m.lookup((32, ip("10.9.9.9"))) == 8
        assert m.lookup((32, ip("11.0.0.1"))) is None
        assert sorted(k[0] for k in m) == [8, 16, 24]
        assert m.delete((16, ip("10.1.0.0")))
        assert m.lookup((32, ip("10.1.9.9"))) == 8
        # No batch support in the kernel for tries: batch_lookup falls back to iteration.
        assert sorted(v for _, v in m.batch_lookup()) == [8, 24]


def test_queue_is_fifo() -> None:
    with Map.create(MapSpec("t_queue", MapType.QUEUE, 0, 4, 3), value="I") as q:
        assert q.pop() is None and q.peek() is None
        for i in (1, 2, 3):
            q.push(i)
        with pytest.raises(BPFError, match=r"full.*BPF_EXIST"):
            q.push(4)
        q.push(4, T.BPF_EXIST)  # overwrites the oldest
        assert q.peek() == 2
        assert [q.pop() for _ in range(4)] == [2, 3, 4, None]
        with pytest.raises(TypeError, match="no keys"):
            list(q)


def test_stack_is_lifo() -> None:
    with Map.create(MapSpec("t_stack", MapType.STACK, 0, 8, 8), value="Q") as s:
        for i in (1, 2, 3):
            s.push(i)
        assert s.peek() == 3
        assert [s.pop() for _ in range(4)] == [3, 2, 1, None]


def test_bloom_filter_contains() -> None:
    with Map.create(MapSpec("t_bloom", MapType.BLOOM_FILTER, 0, 4, 1000, map_extra=3), value="I") as b:
        for i in range(0, 200, 2):
            b.push(i)
        assert all(i in b for i in range(0, 200, 2))  # no false negatives
        false_positives = sum(b.contains(i) for i in range(10_000, 11_000))
        assert false_positives < 50
        assert b.info().map_extra == 3


def test_array_of_maps_holds_inner_maps() -> None:
    inner_spec = MapSpec("t_inner", MapType.HASH, 4, 4, 8)
    with Map.create(MapSpec("t_aom", MapType.ARRAY_OF_MAPS, 4, 4, 4, inner=inner_spec)) as outer, \
            Map.create(inner_spec, key="I", value="I") as inner:
        inner[1] = 42
        outer[2] = inner  # written as the inner map's fd
        assert outer[2] == inner.id  # read back as its id
        assert dict(outer.items()) == {2: inner.id}  # empty slots are skipped
        with Map.from_id(outer[2], key="I", value="I") as again:
            assert again[1] == 42
        assert outer.delete(2) and outer.lookup(2) is None
        # An inner map of another shape is refused by the kernel.
        with Map.create(MapSpec("t_other", MapType.ARRAY, 4, 4, 8)) as other, pytest.raises(BPFError):
            outer[0] = other


def test_hash_of_maps_with_inner_fd() -> None:
    with Map.create(MapSpec("t_tmpl", MapType.ARRAY, 4, 8, 2)) as template, \
            Map.create(MapSpec("t_hom", MapType.HASH_OF_MAPS, 8, 4, 16), inner_map_fd=template.fd, key="Q") as hom, \
            Map.create(MapSpec("t_in2", MapType.ARRAY, 4, 8, 2), value="Q") as inner:
        inner[1] = 7
        hom[1 << 40] = inner.fd
        assert hom[1 << 40] == inner.id
        assert list(hom.keys()) == [1 << 40]


def _trivial_program() -> Program:
    insns = asm.Instructions([asm.mov64_imm(asm.R0, 0), asm.exit_insn()])
    return Program.load(ProgramSpec("t_prog", T.ProgType.SOCKET_FILTER, insns))


def test_prog_array_holds_programs() -> None:
    prog = _trivial_program()
    with Map.create(MapSpec("t_progs", MapType.PROG_ARRAY, 4, 4, 4)) as m, prog:
        m[1] = prog  # anything with an fd attribute
        assert m[1] == prog.id
        assert list(m.items()) == [(1, prog.id)]
        assert m.delete(1) and not m.delete(1)


def test_perf_event_array_takes_perf_event_fds() -> None:
    with Map.create(MapSpec("t_perf", MapType.PERF_EVENT_ARRAY, 0, 0, 0)) as m:
        assert (m.key_size, m.value_size, m.max_entries) == (4, 4, possible_cpus())
        attr = T.PerfEventAttr(type=T.PerfType.SOFTWARE, config=T.PerfSwId.BPF_OUTPUT)
        attr.size = 0
        with perf_event_open(attr, -1, 0) as ev:
            m[0] = ev
            with pytest.raises(BPFError, match="not support"):
                m.lookup(0)  # the kernel does not hand perf event fds back
            assert m.delete(0) and not m.delete(0)


def test_stack_trace_map_filled_by_a_program() -> None:
    with Map.create(MapSpec("t_stacks", MapType.STACK_TRACE, 4, 8 * 127, 64)) as stacks:
        assert stacks.lookup(0) is None and list(stacks.items()) == []
        with pytest.raises(BPFError, match="bpf_get_stackid"):
            stacks[0] = (0,) * 127
        insns = asm.Instructions([
            asm.ld_map_fd(asm.R2, int(stacks.fd)),  # r1 is the raw tracepoint context already
            asm.mov64_imm(asm.R3, 0),
            asm.call_helper("get_stackid"),
            asm.exit_insn(),
        ])
        with Program.load(ProgramSpec("t_stk", T.ProgType.RAW_TRACEPOINT, insns)) as prog:
            stack_id = prog.test_run(ctx=bytes(8)).retval
        assert stack_id >= 0
        ips = stacks[stack_id]
        assert len(ips) == 127 and all(ip >= 0xFFFF_0000_0000_0000 for ip in ips if ip)  # kernel addresses
        assert ips[0] != 0
        assert stacks.delete(stack_id) and stacks.lookup(stack_id) is None


def test_ring_buffer_size_and_records() -> None:
    page = mmap.PAGESIZE
    with Map.create(MapSpec("t_rb", MapType.RINGBUF, 0, 0, 5000)) as rb:
        assert rb.max_entries == 8192 == rb.info().max_entries  # rounded up to a power of two
        with pytest.raises(BPFError, match="ringbuf maps do not support"):
            rb.lookup()
        insns = asm.Instructions([
            asm.ld_imm64(asm.R3, 0x1122334455667788),
            asm.stx_mem(asm.DW, asm.R10, asm.R3, -8),
            asm.ld_map_fd(asm.R1, int(rb.fd)),
            asm.mov64_reg(asm.R2, asm.R10),
            asm.alu64_imm(asm.ADD, asm.R2, -8),
            asm.mov64_imm(asm.R3, 8),
            asm.mov64_imm(asm.R4, 0),
            asm.call_helper("ringbuf_output"),
            asm.exit_insn(),
        ])
        with Program.load(ProgramSpec("t_rbo", T.ProgType.SOCKET_FILTER, insns)) as prog:
            assert prog.test_run(bytes(64)).retval == 0
        producer = mmap.mmap(int(rb.fd), page, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=page)
        data = mmap.mmap(int(rb.fd), page, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ, offset=2 * page)
        try:
            assert struct.unpack_from("=Q", producer)[0] == 16  # 8-byte header + 8-byte record
            length, _, value = struct.unpack_from("=IIQ", data)
            assert (length, value) == (8, 0x1122334455667788)
        finally:
            producer.close()
            data.close()


def test_cgroup_storage_created_empty() -> None:
    # Entries appear only when a program using the map is attached to a cgroup.
    with Map.create(MapSpec("t_cgst", MapType.CGROUP_STORAGE, 16, 8, 0)) as m:
        assert list(m.items()) == []
        assert m.lookup(bytes(16)) is None
        assert m.info().type == MapType.CGROUP_STORAGE


@pytest.fixture
def int_u64_btf() -> Iterator[FD]:
    """A BTF blob with [1] int and [2] unsigned long long: storage maps need BTF for key and value."""
    blob = marshal.encode([
        marshal.RawType(Kind.INT, "int", 4, extra=[(1 << 24) | 32]),  # signed, 32 bits
        marshal.RawType(Kind.INT, "long long unsigned int", 8, extra=[64]),
    ])
    fd = marshal.load_into_kernel(blob)
    yield fd
    fd.close()


def test_task_storage(int_u64_btf: FD) -> None:
    spec = MapSpec("t_task", MapType.TASK_STORAGE, 4, 8, 0)
    try:
        m = Map.create(spec, btf_fd=int_u64_btf, btf_key_type_id=1, btf_value_type_id=2, key="i", value="Q")
    except BPFError as exc:
        if exc.errno not in NOT_SUPPORTED:
            raise
        pytest.skip(f"task storage maps unavailable (CONFIG_BPF_LSM / BPF_MAP_TYPE_TASK_STORAGE): {exc}")
    pidfd = os.pidfd_open(os.getpid())
    try:
        with m:
            assert m.flags & T.BPF_F_NO_PREALLOC
            assert m.lookup(pidfd) is None
            m[pidfd] = 1234  # keyed by a pidfd
            assert m[pidfd] == 1234
            info = m.info()
            assert (info.btf_key_type_id, info.btf_value_type_id) == (1, 2) and info.btf_id
            assert m.delete(pidfd) and m.lookup(pidfd) is None
    finally:
        os.close(pidfd)


def test_cgrp_storage(int_u64_btf: FD) -> None:
    cgroup = "/sys/fs/cgroup/unified" if os.path.isdir("/sys/fs/cgroup/unified") else "/sys/fs/cgroup"
    if not os.path.exists(os.path.join(cgroup, "cgroup.procs")):
        pytest.skip("no cgroup v2 hierarchy mounted")
    spec = MapSpec("t_cgrp", MapType.CGRP_STORAGE, 4, 8, 0)
    try:
        m = Map.create(spec, btf_fd=int_u64_btf, btf_key_type_id=1, btf_value_type_id=2, key="i", value="Q")
    except BPFError as exc:
        if exc.errno not in NOT_SUPPORTED:
            raise
        pytest.skip(f"cgroup local storage (BPF_MAP_TYPE_CGRP_STORAGE, Linux 6.2) unavailable: {exc}")
    dirfd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with m:
            m[dirfd] = 77  # keyed by a cgroup directory fd
            assert m[dirfd] == 77
            assert m.delete(dirfd)
    finally:
        os.close(dirfd)


def test_storage_without_btf_is_explained() -> None:
    with pytest.raises(BPFError, match="needs BTF key"):
        Map.create(MapSpec("t_nobtf", MapType.TASK_STORAGE, 4, 8, 0))


@pytest.mark.parametrize("map_type", [MapType.HASH, MapType.ARRAY, MapType.PERCPU_HASH, MapType.PERCPU_ARRAY,
                                      MapType.LRU_HASH, MapType.LRU_PERCPU_HASH])
def test_common_types_info(map_type: MapType) -> None:
    with Map.create(MapSpec("t_info", map_type, 4, 8, 32)) as m:
        info = m.info()
        assert info.type == map_type and info.id == m.id > 0
        assert (info.key_size, info.value_size, info.max_entries) == (4, 8, 32)
        assert info.name == "t_info" and info.frozen is False
        assert info.memlock is not None and info.memlock > 0
