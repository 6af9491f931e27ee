"""Tracing links against the real kernel: tracepoints, raw tracepoints, tp_btf, perf events, iterators,
kprobes/kretprobes/ksyscall, kprobe_multi, fentry/fexit and LSM, auto-attach and concurrent detach.

Tests whose hook this kernel lacks skip with the kernel feature named; those marked `kernel2` pass on the
second kernel (Debian 6.1 under `pybpf vmtest`), which has kprobes, trampolines and the BPF LSM. After
every test the `load` fixture checks that nothing is left: no link of the test's programs, no perf event
fd, no pybpf kprobe in tracefs.
"""

from __future__ import annotations

import ctypes
import errno
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kernel_objects import link_ids_of

import pybpf
from pybpf._sys import types as T
from pybpf._sys.cpus import online_cpu_list
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link import (
    attach,
    attach_all,
    attach_iter,
    attach_kprobe,
    attach_kprobe_multi,
    attach_ksyscall,
    attach_perf_event,
    attach_raw_tracepoint,
    attach_tracepoint,
    auto_attachable,
    detach_all,
    hook_of,
    live_links,
)
from pybpf.link.auto import parse_uprobe_target
from pybpf.link.cgroup import cgroup2_root
from pybpf.link.kprobe import (
    kprobe_pmu,
    legacy_kprobes,
    parse_kprobe_target,
    resolve_kprobe_multi,
)
from pybpf.link.ksyscall import syscall_function, syscall_prefix
from pybpf.link.tracepoint import tracefs
from pybpf.link.tracing import resolve_attach_btf

pytestmark = pytest.mark.usefixtures("require_root")

Loader = Callable[..., Any]


# ---- leftovers ---------------------------------------------------------------------------------------------


def _perf_fds() -> int:
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[perf_event]":
                count += 1
        except OSError:
            pass
    return count


def _own_kprobes() -> list[str]:
    prefix = f"pybpf_{os.getpid()}_"
    return [e for e in legacy_kprobes() if e.startswith(prefix)]


def _kprobe_events_text() -> str:
    with open(os.path.join(tracefs(), "kprobe_events")) as f:
        return f.read()


@pytest.fixture
def load(bpf_obj: Callable[[str], Path]) -> Iterator[Loader]:
    """load("link_tp") -> Collection; afterwards asserts the test left no link, perf event or kprobe."""
    collections: list[Any] = []
    prog_ids: set[int] = set()
    perf_before = _perf_fds()

    def _load(name: str, autoload: dict[str, bool] | None = None) -> Any:
        obj = pybpf.open_object(bpf_obj(name))
        for pname, spec in obj.programs.items():
            if autoload is not None and pname in autoload:
                spec.autoload = autoload[pname]
            resolve_attach_btf(spec)  # a no-op once the loader resolves BTF targets itself
        coll = obj.load()
        collections.append(coll)
        prog_ids.update(p.id for p in coll.programs.values())
        return coll

    yield _load

    leaked_links = link_ids_of(prog_ids)
    leaked_perf = _perf_fds() - perf_before
    leaked_kprobes = _own_kprobes()
    # Clean up whatever the test left, then report it.
    detach_all([lk for lk in live_links() if lk.program is not None and lk.program.id in prog_ids])
    for coll in collections:
        coll.close()
    assert not leaked_links, f"links left attached: {leaked_links}"
    assert leaked_perf <= 0, f"{leaked_perf} perf event fds left open"
    assert not leaked_kprobes, f"tracefs kprobes left behind: {leaked_kprobes}"


def _count(coll: Any, map_name: str) -> int:
    value = coll.maps[map_name].lookup(os.getpid())
    return int(value) if value is not None else 0


def _attach_or_skip(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    try:
        return fn(*args, **kwargs)
    except NotSupportedError as exc:
        pytest.skip(f"kernel feature missing: {exc}")


def _load_or_skip(load: Loader, name: str, what: str) -> Any:
    try:
        return load(name)
    except BPFError as exc:
        if exc.errno in (errno.EPERM, errno.EINVAL, errno.ENOTSUP, 524):
            pytest.skip(f"{what} programs cannot be loaded on this kernel ({exc.message.splitlines()[0]}): "
                        "needs BPF trampolines (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS) / the BPF LSM")
        raise


# ---- tracepoints -------------------------------------------------------------------------------------------


def test_tracepoint_counts_own_syscalls(load: Loader) -> None:
    coll = load("link_tp")
    prog = coll.programs["count_tp"]
    assert auto_attachable(prog)
    with prog.attach() as link:
        assert link.kind == "tracepoint" and link.target == "syscalls/sys_enter_getppid"
        for _ in range(25):
            os.getppid()
        assert _count(coll, "tp_counts") == 25
        assert link.fd is not None  # a BPF perf link (5.15+; every kernel tested is 6.1 or later)
        assert link.info().type == T.LinkType.PERF_EVENT
    for _ in range(5):
        os.getppid()
    assert _count(coll, "tp_counts") == 25, "the program still ran after detach"


def test_tracepoint_cookie(load: Loader) -> None:
    coll = load("link_tp")
    with attach_tracepoint(coll.programs["cookie_tp"], "syscalls", "sys_enter_getppid", cookie=0xC0FFEE):
        os.getppid()
        assert _count(coll, "cookies") == 0xC0FFEE


def test_missing_tracepoint_is_named(load: Loader) -> None:
    coll = load("link_tp")
    with pytest.raises(BPFError) as info:
        attach_tracepoint(coll.programs["count_any"], "syscalls/sys_enter_no_such_call")
    assert "syscalls/sys_enter_no_such_call" in str(info.value)
    assert "pybpf probes" in str(info.value)
    assert info.value.errno == errno.ENOENT


def test_raw_tracepoint_counts_own_syscalls(load: Loader) -> None:
    coll = load("link_tp")
    with attach(coll.programs["count_raw"]) as link:
        assert link.info().type == T.LinkType.RAW_TRACEPOINT
        for _ in range(17):
            os.getppid()
        assert _count(coll, "raw_counts") == 17


def test_pinned_link_outlives_its_fd_until_unpinned(load: Loader) -> None:
    from pybpf.link.base import Link

    coll = load("link_tp")
    path = f"/sys/fs/bpf/pybpf-test-link-{os.getpid()}"
    link = attach(coll.programs["count_raw"])
    link_id = link.info().id
    try:
        link.pin(path)
        with pytest.raises(BPFError, match="already exists") as exists:
            link.pin(path)
        assert exists.value.errno == errno.EEXIST
        link.close()  # the pin keeps the link attached
        os.getppid()
        assert _count(coll, "raw_counts") == 1
        reopened = Link.from_pin(path)
        assert reopened.info().id == link_id
        reopened.unpin()
        assert not os.path.exists(path)
        reopened.close()
    finally:
        if os.path.exists(path):
            os.unlink(path)
    assert link_id not in link_ids_of()
    os.getppid()
    assert _count(coll, "raw_counts") == 1, "the program still ran after the pin and the last fd were gone"
    with pytest.raises(BPFError, match="nothing is pinned"):
        Link.from_pin(path)


def test_missing_raw_tracepoint_is_named(load: Loader) -> None:
    coll = load("link_tp")
    with pytest.raises(BPFError) as info:
        attach_raw_tracepoint(coll.programs["count_raw"], "no_such_raw_tracepoint")
    assert "no_such_raw_tracepoint" in str(info.value) and "pybpf probes" in str(info.value)


def test_tp_btf_counts_own_syscalls(load: Loader) -> None:
    coll = load("link_tp")
    prog = coll.programs["count_btf"]
    assert prog.info().attach_btf_id != 0
    with prog.attach() as link:
        assert link.kind == "tp_btf"
        for _ in range(11):
            os.getppid()
        assert _count(coll, "btf_counts") == 11


def test_detach_all_is_concurrent(load: Loader) -> None:
    """Releasing a syscall tracepoint waits for RCU grace periods in the kernel (~80 ms here, under two
    kernel mutexes: the BPF detach and the tracepoint unregistration); detach_all overlaps them."""
    coll = load("link_tp")
    prog = coll.programs["count_any"]
    calls = ["getppid", "getpid", "getuid", "getgid", "geteuid", "getegid", "getpgrp", "getsid",
             "sched_yield", "umask"]
    # What the releases cost one after another on this machine (much more under emulation).
    serial = [attach_tracepoint(prog, "syscalls", f"sys_enter_{name}") for name in calls]
    start = time.monotonic()
    for link in serial:
        link.detach()
    per_link = (time.monotonic() - start) / len(serial)
    links = [attach_tracepoint(prog, "syscalls", f"sys_enter_{name}") for name in calls]
    os.getppid()
    assert _count(coll, "any_counts") >= 1
    start = time.monotonic()
    errors = detach_all(links)
    elapsed = time.monotonic() - start
    assert not errors
    assert all(lk.detached for lk in links)
    assert not [lk for lk in live_links() if lk in links]
    assert elapsed < 0.8 * 10 * per_link, (
        f"detach_all of 10 syscall tracepoints took {elapsed * 1000:.0f} ms; one at a time takes "
        f"{per_link * 1000:.0f} ms each")


# ---- auto-attach -----------------------------------------------------------------------------------------


def test_attach_all_attaches_what_the_sections_name(load: Loader) -> None:
    coll = load("link_tp")
    assert not auto_attachable(coll.programs["count_any"])  # SEC("tracepoint") names no tracepoint
    links, failures = attach_all(coll.programs.values())
    try:
        assert not failures
        attached = sorted(lk.program.name for lk in links if lk.program is not None)
        assert attached == ["cookie_tp", "count_btf", "count_raw", "count_tp"]
        os.getppid()
        assert _count(coll, "tp_counts") == 1 and _count(coll, "raw_counts") == 1
    finally:
        assert not detach_all(links)


def test_attach_reports_bad_arguments(load: Loader) -> None:
    coll = load("link_tp")
    with pytest.raises(TypeError, match="iface"):
        attach(coll.programs["count_tp"], iface="lo")
    with pytest.raises(TypeError, match="names no"):
        attach(coll.programs["count_any"])
    assert hook_of(coll.programs["count_raw"]) == ("raw_tracepoint", "raw_tp", "sys_enter")


# section -> (hook, auto-attachable without arguments)
_HOOKS = {
    "p_kprobe": ("kprobe", True),
    "p_kprobe_bare": ("kprobe", False),
    "p_kretprobe": ("kprobe", True),
    "p_uprobe": ("uprobe", True),
    "p_uretprobe_s": ("uprobe", True),
    "p_usdt": ("usdt", True),
    "p_ksyscall": ("ksyscall", True),
    "p_kprobe_multi": ("kprobe_multi", True),
    "p_uprobe_multi": ("uprobe", True),
    "p_tracepoint": ("tracepoint", True),
    "p_raw_tp": ("raw_tracepoint", True),
    "p_tp_btf": ("tracing", True),
    "p_fentry_s": ("tracing", True),
    "p_lsm": ("tracing", True),
    "p_freplace": ("tracing", False),
    "p_lsm_cgroup": ("lsm_cgroup", False),
    "p_iter": ("iter", True),
    "p_perf_event": ("perf_event", False),
    "p_xdp": ("xdp", False),
    "p_tc_ingress": ("tc", False),
    "p_tcx_egress": ("tc", False),
    "p_cgroup_skb_ingress": ("cgroup", False),
    "p_cgroup_connect4": ("cgroup", False),
    "p_sockops": ("cgroup", False),
    "p_socket": ("socket", False),
    "p_sk_lookup": ("netns", False),
    "p_sk_msg": ("sockmap", False),
}


def test_auto_attach_table(bpf_obj: Callable[[str], Path]) -> None:
    """Which hook each libbpf section name dispatches to (programs are not loaded: no kernel needed)."""
    from pybpf._sys.fd import FD
    from pybpf.program import Program

    specs = pybpf.open_object(bpf_obj("elf_sections")).programs
    for name, (hook, auto) in _HOOKS.items():
        spec = specs[name]
        with Program(FD(os.open("/dev/null", os.O_RDONLY)), name=name, type=spec.type,
                     attach_type=spec.attach_type, spec=spec) as prog:
            assert hook_of(prog)[0] == hook, (name, spec.section)
            assert auto_attachable(prog) == auto, (name, spec.section)
    for name in ("p_syscall", "p_struct_ops", "p_xdp_devmap"):
        spec = specs[name]
        with Program(FD(os.open("/dev/null", os.O_RDONLY)), name=name, type=spec.type,
                     attach_type=spec.attach_type, spec=spec) as prog:
            assert not auto_attachable(prog)
            with pytest.raises(BPFError, match="not attached through a link"):
                attach(prog)


def test_hand_built_program_dispatches_by_type() -> None:
    """A program without a section (built with pybpf.asm) attaches by its type, target as an argument."""
    from pybpf import asm
    from pybpf.program import Program, ProgramSpec, enable_stats

    insns = asm.Builder().mov64_imm(asm.R0, 0).exit().instructions()
    spec = ProgramSpec(name="handmade", type=T.ProgType.TRACEPOINT, instructions=insns)
    with Program.load(spec) as prog, enable_stats():
        with pytest.raises(TypeError, match="names no category/name"):
            prog.attach()
        with prog.attach("syscalls/sys_enter_getppid") as link:
            assert link.kind == "tracepoint"
            before = prog.info().run_cnt
            for _ in range(5):
                os.getppid()
            assert prog.info().run_cnt - before >= 5
        assert not link.fd or link.fd.closed


def test_section_target_parsing() -> None:
    assert parse_kprobe_target("do_sys_openat2+0x10") == ("do_sys_openat2", 16)
    assert parse_kprobe_target("vfs_read") == ("vfs_read", 0)
    assert parse_uprobe_target("/bin/bash:readline+8") == ("/bin/bash", "readline", 8)
    assert parse_uprobe_target("/usr/lib/libc.so.6:0x1234") == ("/usr/lib/libc.so.6", None, 0x1234)
    with pytest.raises(ValueError):
        parse_uprobe_target("readline")


# ---- perf events -------------------------------------------------------------------------------------------


def _spin(seconds: float) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        pass


@pytest.mark.parametrize("rate", [{"frequency": 200}, {"period": 5_000_000}], ids=["freq", "period"])
def test_perf_event_samples_at_the_asked_rate(load: Loader, rate: dict[str, int]) -> None:
    coll = load("link_perf")
    perf_before = _perf_fds()
    with attach_perf_event(
        coll.programs["on_sample"], "cpu-clock", frequency=rate.get("frequency"), period=rate.get("period")
    ) as link:
        assert sorted(link.per_cpu) == sorted(online_cpu_list())  # one perf event per online CPU
        assert _perf_fds() - perf_before == len(link.per_cpu)
        wall = time.monotonic()
        cpu = time.thread_time()
        _spin(1.0)
        cpu = time.thread_time() - cpu
        wall = time.monotonic() - wall
    samples = _count(coll, "samples")
    total = sum(int(v) for v in coll.maps["samples"].values())
    # cpu-clock samples each CPU 200 times a second: this thread gets 200 per second of CPU it used
    # (other processes share the CPUs), and all processes together 200 per CPU-second of wall time.
    expected = 200 * cpu
    assert 0.6 * expected <= samples <= 1.4 * expected, f"{samples} samples in {cpu:.2f}s of CPU at 200 Hz"
    assert total <= 1.4 * 200 * wall * len(online_cpu_list())


def test_perf_event_hardware_counter(load: Loader) -> None:
    coll = load("link_perf")
    try:
        link = attach_perf_event(coll.programs["on_sample"], "cycles", period=1_000_000)
    except NotSupportedError as exc:
        assert "hardware" in str(exc) and "cpu-clock" in str(exc)
        pytest.skip(f"no hardware PMU here: {exc}")
    with link:
        _spin(0.3)
    assert _count(coll, "samples") > 0


def test_perf_event_needs_a_rate(load: Loader) -> None:
    coll = load("link_perf")
    with pytest.raises(ValueError):
        attach_perf_event(coll.programs["on_sample"])
    with pytest.raises(TypeError, match="frequency"):
        attach(coll.programs["on_sample"])


# ---- iterators ---------------------------------------------------------------------------------------------


def test_task_iterator_lists_this_process(load: Loader) -> None:
    coll = load("link_iter")
    with coll.programs["dump_task"].attach() as link:
        assert link.info().type == T.LinkType.ITER
        comm = Path("/proc/self/comm").read_text().strip()
        pid = os.getpid()
        text = link.read().decode()
        assert f"{pid} {pid} {comm}\n" in text
        lines = list(link.lines())
        assert f"{pid} {pid} {comm}" in lines
        assert len(lines) > 10  # every task on the system


def test_task_iterator_restricted_to_one_process(load: Loader) -> None:
    coll = load("link_iter")
    pid = os.getpid()
    try:
        link = attach_iter(coll.programs["dump_task"], pid=pid)
    except NotSupportedError as exc:
        pytest.skip(str(exc))
    with link:
        lines = list(link.lines())
    assert lines and all(line.split()[0] == str(pid) for line in lines)  # "<tgid> <tid> <comm>": our threads only


def test_cgroup_iterator_order_names_come_from_the_kernel_enum(load: Loader) -> None:
    coll = load("link_iter")
    with pytest.raises(ValueError, match="self_only, descendants_pre, descendants_post, ancestors_up"):
        attach_iter(coll.programs["dump_task"], cgroup="/sys/fs/cgroup", order="sideways")


@pytest.fixture
def cgroup_tree(tmp_path: Path) -> Iterator[dict[str, Path]]:
    """parent/{a/x, b} under the cgroup v2 root (mounted at a temp dir when no cgroup2 is mounted);
    the values are the directories, the keys their names. The cgroups are removed afterwards."""
    mounted = ""
    try:
        root = cgroup2_root()
    except BPFError:
        mounted = root = str(tmp_path / "cgroup2")
        os.mkdir(root)
        result = subprocess.run(["mount", "-t", "cgroup2", "none", root], capture_output=True, text=True)
        if result.returncode != 0:
            pytest.skip(f"cgroup v2 is not mounted and cannot be mounted: {result.stderr.strip()}")
    parent = Path(root) / f"pybpf-iter-{os.getpid()}"
    tree = {"root": Path(root), "parent": parent, "a": parent / "a", "x": parent / "a" / "x", "b": parent / "b"}
    created: list[Path] = []
    try:
        for name in ("parent", "a", "x", "b"):  # creation order is the kernel's sibling order
            tree[name].mkdir()
            created.append(tree[name])
        yield tree
    finally:
        for path in reversed(created):
            path.rmdir()
        if mounted:
            subprocess.run(["umount", mounted], check=True)


def _cgroup_line(path: Path, root: Path) -> str:
    """What dump_cgroup prints for the cgroup at `path`: "<id> <level> <name>"; the id is the inode number,
    the level the depth below the hierarchy's root, whose kernfs name is empty."""
    relative = path.relative_to(root).parts
    return f"{os.stat(path).st_ino} {len(relative)} {path.name if relative else ''}"


def _attach_cgroup_iter(coll: Any, cgroup: Path | int, order: str | int) -> Any:
    try:
        return attach_iter(coll.programs["dump_cgroup"], cgroup=cgroup, order=order)
    except NotSupportedError as exc:
        pytest.skip(f"kernel feature missing: {exc}")


@pytest.mark.parametrize(("order", "start", "expected"), [
    ("self_only", "parent", ["parent"]),
    ("descendants_pre", "parent", ["parent", "a", "x", "b"]),  # a parent before its children
    ("descendants_post", "parent", ["x", "a", "b", "parent"]),  # children before their parent
    ("ancestors_up", "x", ["x", "a", "parent", "root"]),  # up to the root of the hierarchy
], ids=["self_only", "descendants_pre", "descendants_post", "ancestors_up"])
def test_cgroup_iterator_walks_the_hierarchy_in_order(
    load: Loader, cgroup_tree: dict[str, Path], order: str, start: str, expected: list[str]
) -> None:
    coll = load("link_iter_cgroup")
    root = cgroup_tree["root"]
    # Inside a cgroup namespace the mount's root is not the hierarchy's (id 1) and ancestors_up walks on
    # past it: there only the part of the walk below the mount can be checked.
    exact = order != "ancestors_up" or os.stat(root).st_ino == 1
    if not exact:
        expected = expected[:-1]
    with _attach_cgroup_iter(coll, cgroup_tree[start], order) as link:
        assert link.info().type == T.LinkType.ITER
        lines = list(link.lines())
    want = [_cgroup_line(cgroup_tree[name], root) for name in expected]
    assert (lines if exact else lines[:len(want)]) == want


def test_cgroup_iterator_by_fd_sees_cgroups_created_after_attach(
    load: Loader, cgroup_tree: dict[str, Path]
) -> None:
    coll = load("link_iter_cgroup")
    root, b = cgroup_tree["root"], cgroup_tree["b"]
    fd = os.open(b, os.O_RDONLY | os.O_DIRECTORY)
    try:
        link = _attach_cgroup_iter(coll, fd, int(T.CgroupIterOrder.DESCENDANTS_PRE))
    finally:
        os.close(fd)  # the link holds its own reference to the cgroup
    with link:
        assert list(link.lines()) == [_cgroup_line(b, root)]
        (b / "y").mkdir()
        try:
            assert list(link.lines()) == [_cgroup_line(b, root), _cgroup_line(b / "y", root)]
        finally:
            (b / "y").rmdir()
        assert list(link.lines()) == [_cgroup_line(b, root)]  # every read is a fresh walk


def test_map_iterator_walks_the_elements(load: Loader) -> None:
    coll = load("link_iter")
    table = coll.maps["table"]
    for key in (1, 2, 3):
        table[key] = key * 10
    assert not auto_attachable(coll.programs["dump_table"])  # needs map=
    with attach_iter(coll.programs["dump_table"], map=table) as link:
        assert sorted(link.lines()) == ["1 10", "2 20", "3 30"]
        del table[2]
        assert sorted(link.lines()) == ["1 10", "3 30"]  # every read is a fresh iteration


# ---- kprobes -----------------------------------------------------------------------------------------------


def _has_kprobes() -> bool:
    return kprobe_pmu() is not None or os.path.exists(os.path.join(tracefs(), "kprobe_events"))


def test_kprobe_without_config_kprobes_raises_not_supported(load: Loader) -> None:
    if _has_kprobes():
        pytest.skip("this kernel has kprobes (the error path is for CONFIG_KPROBES=n)")
    coll = load("link_kprobe")
    for prog, kwargs in ((coll.programs["on_open"], {}), (coll.programs["on_open_ret"], {"retprobe": True})):
        with pytest.raises(NotSupportedError) as info:
            attach_kprobe(prog, "do_sys_openat2", **kwargs)
        assert "CONFIG_KPROBES" in str(info.value)
        assert info.value.feature in ("kprobe", "kretprobe")
    with pytest.raises(NotSupportedError):
        coll.programs["on_kill"].attach()
    with pytest.raises(NotSupportedError):
        attach_ksyscall(coll.programs["on_kill"], "kill")


@pytest.mark.kernel2
def test_kprobe_counts_opens(load: Loader, tmp_path: Path) -> None:
    coll = load("link_kprobe")
    link = _attach_or_skip(coll.programs["on_open"].attach)
    with link:
        assert link.kind == "kprobe" and link.target == "do_sys_openat2"
        dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(7):
                os.close(os.open(f"f{i}", os.O_CREAT | os.O_WRONLY, dir_fd=dfd))
        finally:
            os.close(dfd)
        assert _count(coll, "opens") >= 8
        assert _count(coll, "open_dfd") == dfd


@pytest.mark.kernel2
def test_kretprobe_sees_the_return_value(load: Loader, tmp_path: Path) -> None:
    coll = load("link_kprobe")
    with _attach_or_skip(coll.programs["on_open_ret"].attach) as link:
        assert link.kind == "kretprobe"
        fd = os.open(tmp_path / "x", os.O_CREAT | os.O_WRONLY)
        os.close(fd)
        assert _count(coll, "open_ret") == fd
        try:
            os.open(tmp_path / "missing", os.O_RDONLY)
        except FileNotFoundError:
            pass
        assert ctypes.c_int64(_count(coll, "open_ret")).value == -errno.ENOENT


@pytest.mark.kernel2
def test_legacy_tracefs_kprobe_is_removed_on_detach(load: Loader, tmp_path: Path) -> None:
    coll = load("link_kprobe")
    if not os.path.exists(os.path.join(tracefs(), "kprobe_events")):
        pytest.skip("tracefs has no kprobe_events (CONFIG_KPROBE_EVENTS off)")
    link = _attach_or_skip(attach_kprobe, coll.programs["on_open"], "do_sys_openat2", legacy=True)
    with link:
        (event,) = _own_kprobes()
        # tracefs lists it as "p:pybpf/<event> do_sys_openat2" (a "+0" offset on some kernels)
        definition = re.compile(rf"^p:pybpf/{re.escape(event)} do_sys_openat2(\+0)?$", re.M)
        assert definition.search(_kprobe_events_text()), _kprobe_events_text()
        os.close(os.open(tmp_path / "y", os.O_CREAT | os.O_WRONLY))
        assert _count(coll, "opens") >= 1
    assert _own_kprobes() == []
    assert not definition.search(_kprobe_events_text())


@pytest.mark.kernel2
def test_ksyscall_sees_the_arguments(load: Loader) -> None:
    coll = load("link_kprobe")
    with _attach_or_skip(coll.programs["on_kill"].attach) as link:
        assert link.kind == "ksyscall"
        os.kill(os.getpid(), 0)
        assert _count(coll, "kill_pid") == os.getpid()
        assert _count(coll, "kill_sig") == 0


def test_syscall_function_names() -> None:
    if platform.machine() != "x86_64":
        pytest.skip("the wrapper prefix checked here is x86_64's")
    assert syscall_prefix() == "__x64_sys_"  # every x86_64 kernel since 4.17 wraps syscalls
    assert syscall_function("openat") == "__x64_sys_openat"


@pytest.mark.kernel2
def test_kprobe_multi_needs_fprobe_and_leaves_nothing(load: Loader) -> None:
    coll = load("link_kmulti")
    prog = coll.programs["on_multi"]
    assert resolve_kprobe_multi("do_sys_open*")  # the glob resolves through available_filter_functions
    try:
        link = prog.attach()
    except NotSupportedError as exc:
        assert "CONFIG_FPROBE" in str(exc) and exc.first_kernel == "5.18"
        assert live_links() == [lk for lk in live_links() if lk.program is not prog]
        return  # the fixture checks that no link, perf event or kprobe is left
    with link:  # a kernel with CONFIG_FPROBE
        os.close(os.open("/dev/null", os.O_RDONLY))
        assert _count(coll, "multi_hits") >= 1


def test_kprobe_multi_explicit_symbols(load: Loader) -> None:
    coll = load("link_kmulti")
    try:
        link = attach_kprobe_multi(coll.programs["on_multi"], symbols=["do_sys_openat2"])
    except NotSupportedError as exc:
        assert "CONFIG_FPROBE" in str(exc)
        pytest.skip(f"kernel feature missing: {exc}")
    with link:
        assert link.info().type == T.LinkType.KPROBE_MULTI
        before = _count(coll, "multi_hits")
        os.close(os.open("/dev/null", os.O_RDONLY))  # openat -> do_sys_openat2
        assert _count(coll, "multi_hits") > before


# ---- fentry / fexit / LSM ----------------------------------------------------------------------------------


@pytest.mark.kernel2
def test_fentry_fexit_see_arguments_and_return_value(load: Loader, tmp_path: Path) -> None:
    coll = _load_or_skip(load, "link_fentry", "fentry/fexit")
    entry = _attach_or_skip(coll.programs["on_entry"].attach)
    with entry, coll.programs["on_exit"].attach() as exit_link:
        assert entry.kind == "fentry" and exit_link.kind == "fexit"
        assert entry.info().type == T.LinkType.TRACING
        dfd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            fd = os.open("z", os.O_CREAT | os.O_WRONLY, dir_fd=dfd)
            os.close(fd)
        finally:
            os.close(dfd)
        assert _count(coll, "entry_dfd") == dfd
        assert _count(coll, "exit_ret") == fd


@pytest.mark.kernel2
def test_lsm_program_denies_map_creation(load: Loader) -> None:
    from pybpf.map import Map, MapSpec

    coll = _load_or_skip(load, "link_lsm", "LSM")
    spec = MapSpec(name="lsm_probe", type=T.MapType.ARRAY, key_size=4, value_size=4, max_entries=1)
    with _attach_or_skip(coll.programs["deny_map_create"].attach) as link:
        assert link.kind == "lsm"
        coll.maps["deny"][os.getpid()] = 1
        with pytest.raises(BPFError) as info:
            Map.create(spec).close()
        assert info.value.errno == errno.EPERM
        del coll.maps["deny"][os.getpid()]
        Map.create(spec).close()
    coll.maps["deny"][os.getpid()] = 1
    Map.create(spec).close()  # detached: allowed again
