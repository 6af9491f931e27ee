"""pybpf.probes and `pybpf probes` against the running kernel, compared with bpftrace where it can list."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pybpf import probes

pytestmark = pytest.mark.usefixtures("require_root")


def cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pybpf.cli.main", *args], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


def bpftrace(*args: str) -> str:
    if shutil.which("bpftrace") is None:
        pytest.skip("bpftrace is not installed")
    return subprocess.run(["bpftrace", *args], capture_output=True, text=True, timeout=120, check=True).stdout


def test_tracepoint_glob_matches_bpftrace() -> None:
    ours = cli("probes", "syscalls:sys_enter_open*").split()
    theirs = bpftrace("-l", "tracepoint:syscalls:sys_enter_open*").split()
    assert ours and sorted(ours) == sorted(theirs)
    assert "tracepoint:syscalls:sys_enter_openat" in ours
    # the provider-qualified spelling lists the same
    assert cli("probes", "tracepoint:syscalls:sys_enter_open*").split() == ours


def test_tracepoint_fields_match_bpftrace() -> None:
    ours = cli("probes", "-v", "tracepoint:syscalls:sys_enter_openat").splitlines()
    theirs = bpftrace("-lv", "tracepoint:syscalls:sys_enter_openat").splitlines()
    assert ours == theirs
    assert "    const char * filename" in ours


def test_tracepoint_fields_api() -> None:
    fields = probes.tracepoint_fields("sched", "sched_switch")
    by_name = {f.name: f for f in fields}
    assert by_name["prev_comm[16]"].type == "char" and by_name["prev_comm[16]"].size == 16
    assert by_name["next_pid"].signed
    assert not any(f.name.startswith("common_") for f in fields)


def test_json_output() -> None:
    rows = json.loads(cli("probes", "--json", "-v", "tracepoint:sched:sched_switch"))
    assert rows[0]["probe"] == "tracepoint:sched:sched_switch"
    assert "pid_t next_pid" in rows[0]["details"]


def test_kfunc_signature_from_btf() -> None:
    out = cli("probes", "-v", "kfunc:vmlinux:do_sys_openat2").splitlines()
    assert out[0] == "kfunc:vmlinux:do_sys_openat2"
    assert out[1:] == ["    int dfd", "    const char * filename", "    struct open_how * how", "    long retval"] \
        or out[1:3] == ["    int dfd", "    const char * filename"]


def test_kernel_functions_glob() -> None:
    found = [str(p) for p in probes.list_probes("kprobe:vfs_rea*")]
    assert "kprobe:vfs_read" in found
    assert all(p.startswith("kprobe:vfs_rea") for p in found)


def test_raw_tracepoints() -> None:
    found = [str(p) for p in probes.list_probes("rawtracepoint:sched_switch")]
    assert found == ["rawtracepoint:sched_switch"]


C_SOURCE = r"""
#include <stdio.h>
#include <sys/sdt.h>
__attribute__((noinline)) int pybpf_probe_target_fn(int x) { return x * 2; }
int main(int argc, char **argv) {
    int v = pybpf_probe_target_fn(argc);
    DTRACE_PROBE2(pybpftest, tick, v, argc);
    DTRACE_PROBE(pybpftest, start);
    printf("%d\n", v);
    return 0;
}
"""


def test_uprobe_symbols_of_binary(c_program) -> None:  # type: ignore[no-untyped-def]
    binary: Path = c_program(C_SOURCE, "target")
    out = cli("probes", "--binary", str(binary), "uprobe:*pybpf_probe_target*").split()
    assert out == [f"uprobe:{binary}:pybpf_probe_target_fn"]
    assert "main" in probes.uprobe_symbols(str(binary))


def test_usdt_probes_of_binary(c_program) -> None:  # type: ignore[no-untyped-def]
    if not any(Path(d, "sys/sdt.h").exists() for d in ("/usr/include", "/usr/include/x86_64-linux-gnu")):
        pytest.skip("<sys/sdt.h> missing (systemtap-sdt-dev)")
    binary: Path = c_program(C_SOURCE, "usdt_target")
    out = cli("probes", "--binary", str(binary), "usdt:*").split()
    assert out == [f"usdt:{binary}:pybpftest:start", f"usdt:{binary}:pybpftest:tick"]
    tick = next(p for p in probes.usdt_probes(str(binary)) if p.name == "tick")
    assert tick.provider == "pybpftest" and len(tick.addresses) == 1
    assert len(tick.args[0].split()) == 2  # two argument specs
    if shutil.which("bpftrace"):
        theirs = bpftrace("-l", f"usdt:{binary}:*").split()
        assert sorted(theirs) == sorted(out)


def test_usdt_probes_of_process(c_program) -> None:  # type: ignore[no-untyped-def]
    binary: Path = c_program(C_SOURCE.replace("printf", "getchar(); printf"), "usdt_proc")
    proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        import time

        for _ in range(100):  # wait until the process has mapped its binary
            if str(binary) in Path(f"/proc/{proc.pid}/maps").read_text():
                break
            time.sleep(0.01)
        out = cli("probes", "--pid", str(proc.pid), "usdt:*pybpftest*").split()
        assert f"usdt:{binary}:pybpftest:tick" in out
        assert str(binary) in probes.process_binaries(proc.pid)
    finally:
        proc.communicate(b"\n", timeout=10)
