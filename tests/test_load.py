"""The loader against the real kernel: global data, externs, callbacks, map-in-map, tail calls, legacy maps."""

from __future__ import annotations

import gzip
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import pybpf
from pybpf.btf import kernel_spec
from pybpf.errors import ObjectError

# Loading CO-RE, kconfig and ksym objects on another kernel matters: these run on the second kernel too.
pytestmark = pytest.mark.kernel2

BpfObj = Callable[[str], Path]


def test_global_data_rodata_set_before_load_and_live_data(bpf_obj: BpfObj) -> None:
    with pybpf.load(bpf_obj("load_globals"), set={"multiplier": 3}) as coll:
        assert set(coll.maps) >= {"results", ".rodata", ".data", ".bss", ".data.custom"}
        assert coll.variables["multiplier"].value == 3
        assert coll.variables["custom_value"].value == 77
        assert coll.programs["compute"].test_run().retval == 0
        # counter: 5 -> 6; scale() in a subprogram: 6 * 3 + 77; plus greeting[0] ('h')
        assert coll.variables["counter"].value == 6
        assert coll.variables["last_result"].value == 6 * 3 + 77 + ord("h")
        assert coll.maps["results"][1] == 6 * 3 + 77
        coll.variables["counter"].value = 100  # written through the mmap; the program sees it at once
        coll.programs["compute"].test_run()
        assert coll.maps["results"][1] == 101 * 3 + 77
        with pytest.raises(PermissionError):
            coll.variables["multiplier"].value = 9


def test_open_object_adjusts_specs_before_load(bpf_obj: BpfObj) -> None:
    obj = pybpf.open_object(bpf_obj("load_globals"))
    obj.maps["results"].max_entries = 1000
    obj.set("multiplier", 2)
    with obj.load() as coll:
        assert coll.maps["results"].max_entries == 1000
        coll.programs["compute"].test_run()
        assert coll.maps["results"][1] == 6 * 2 + 77
    with pytest.raises(KeyError, match="no global variable"):
        obj.set("no_such_variable", 1)


def test_autoload_disabled_program_is_not_loaded(bpf_obj: BpfObj) -> None:
    with pybpf.load(bpf_obj("load_maps"), autoload={"entry": False}) as coll:
        assert "entry" not in coll.programs
        assert "tail_target" in coll.programs


def test_kconfig_ksym_kfunc_and_callback(bpf_obj: BpfObj) -> None:
    release = re.match(r"(\d+)\.(\d+)\.(\d+)", os.uname().release)
    assert release
    a, b, c = (int(x) for x in release.groups())
    if Path("/proc/config.gz").exists():
        with gzip.open("/proc/config.gz", "rt") as f:
            text = f.read()
    else:  # e.g. Debian's kernels (and pybpf vmtest guests) keep it in /boot
        text = Path(f"/boot/config-{os.uname().release}").read_text()
    hz = next(line.split("=")[1] for line in text.splitlines() if line.startswith("CONFIG_HZ="))
    schedule = next(int(line.split()[0], 16) for line in Path("/proc/kallsyms").read_text().splitlines()
                    if line.endswith(" schedule"))
    with pybpf.load(bpf_obj("load_externs")) as coll:
        assert coll.programs["read_externs"].test_run().retval == 0
        v = {k: var.value for k, var in coll.variables.items()}
    assert v["kernel_version"] == (a << 16) + (b << 8) + min(c, 255)
    assert v["hz"] == int(hz)
    assert v["has_bpf_syscall"] == 1
    assert v["missing"] == 0  # weak kconfig extern the kernel lacks
    assert v["schedule_addr"] == schedule  # typeless __ksym from kallsyms
    assert v["loop_sum"] == sum(range(10))  # bpf_loop callback (a function pointer)
    # a weak kfunc: present from Linux 6.2, absent (and its guarded calls pruned) before
    assert v["has_rcu_kfuncs"] == (1 if kernel_spec().types_by_name("bpf_rcu_read_lock") else 0)


def test_map_in_map_tail_call_and_legacy_map(bpf_obj: BpfObj) -> None:
    with pybpf.load(bpf_obj("load_maps")) as coll:
        result = coll.programs["entry"].test_run(bytes(64))
        assert result.retval == 1  # XDP_DROP from the tail-called program, not XDP_PASS
        assert coll.variables["tail_ran"].value == 1
        assert coll.maps["inner_b"][0] == 7  # reached through outer[1]
        assert coll.maps["inner_a"][0] == 0
        assert coll.maps["legacy_counts"].lookup((1).to_bytes(4, "little")) == (1).to_bytes(8, "little")


def test_missing_required_kconfig_fails_clearly(tmp_path: Path) -> None:
    src = tmp_path / "needs_config.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        "extern int CONFIG_PYBPF_NOT_A_REAL_OPTION __kconfig;\n__u64 out;\n"
        'SEC("syscall") int f(void *ctx) { out = CONFIG_PYBPF_NOT_A_REAL_OPTION; return 0; }\n'
        'char LICENSE[] SEC("license") = "GPL";\n')
    with pytest.raises(ObjectError, match="CONFIG_PYBPF_NOT_A_REAL_OPTION"):
        pybpf.load(src)


def test_loading_leaves_no_fds_behind(bpf_obj: BpfObj) -> None:
    obj = bpf_obj("load_maps")
    pybpf.load(obj).close()  # warm caches (kernel BTF index, kallsyms) first
    before = len(os.listdir("/proc/self/fd"))
    for _ in range(20):
        with pybpf.load(obj) as coll:
            coll.programs["entry"].test_run(bytes(64))
    assert len(os.listdir("/proc/self/fd")) == before


def test_load_cli_lists_programs_and_maps(bpf_obj: BpfObj) -> None:
    out = subprocess.run([sys.executable, "-m", "pybpf.cli.main", "load", str(bpf_obj("load_globals")),
                          "--set", "multiplier=4"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "compute" in out.stdout and "syscall" in out.stdout
    assert "results" in out.stdout and "hash" in out.stdout


def test_load_cli_fails_on_verifier_error(tmp_path: Path) -> None:
    src = tmp_path / "bad.bpf.c"
    src.write_text(
        "#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n"
        'SEC("xdp") int bad(struct xdp_md *ctx) {\n'
        "    int *p = (int *)(long)ctx->data;\n"
        "    return *p;   /* no bounds check: rejected */\n}\n"
        'char LICENSE[] SEC("license") = "GPL";\n')
    out = subprocess.run([sys.executable, "-m", "pybpf.cli.main", "load", str(src)], capture_output=True, text=True)
    assert out.returncode != 0
    text = out.stdout + out.stderr
    assert "verifier" in text
    assert "return *p" in text  # the failing source line from BTF line info
