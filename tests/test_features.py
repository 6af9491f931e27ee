"""pybpf.features and `pybpf feature` against the real kernel, cross-checked with bpftool and with real
loads of the programs the probes claim work."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from typing import Any

import pytest
from click.testing import CliRunner

from pybpf import asm, features
from pybpf._sys import types as T
from pybpf.asm import R0
from pybpf.btf.marshal import KernelBTFFeatures
from pybpf.errors import NotSupportedError, VerifierError
from pybpf.features import versions
from pybpf.program import Program, ProgramSpec

# Feature probes on another kernel matter: these run on the second kernel too (pybpf vmtest).
pytestmark = [pytest.mark.usefixtures("require_root"), pytest.mark.kernel2]
# Code runs ~15x slower under qemu's TCG emulation: time bounds scale with it there.
SLOWER = 20 if os.environ.get("PYBPF_VMTEST") == "1" else 1


@pytest.fixture(scope="module")
def report() -> dict[str, Any]:
    result = subprocess.run([sys.executable, "-m", "pybpf.cli.main", "feature", "--json"],
                            capture_output=True, text=True, check=True, timeout=60)
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.fixture(scope="module")
def bpftool_report() -> dict[str, Any]:
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    result = subprocess.run(["bpftool", "feature", "probe", "kernel", "-j"], capture_output=True, text=True,
                            check=True, timeout=60)
    parsed: dict[str, Any] = json.loads(result.stdout)
    return parsed


@pytest.mark.parametrize(("section", "suffix"), [("program_types", "_prog_type"), ("map_types", "_map_type")])
def test_agrees_with_bpftool(report: dict[str, Any], bpftool_report: dict[str, Any], section: str,
                             suffix: str) -> None:
    theirs = bpftool_report[section]
    assert theirs, f"bpftool reported no {section}"
    mismatches = []
    for key, supported in theirs.items():
        name = key.removeprefix("have_").removesuffix(suffix)
        ours = report[section].get(name)
        if ours is None:
            mismatches.append(f"{name}: missing from pybpf")
        elif ours != supported:
            why = report["reasons"][section].get(name, "")
            mismatches.append(f"{name}: bpftool {supported}, pybpf {ours} ({why})")
    assert not mismatches, "\n".join(mismatches)


def test_misc_agrees_with_bpftool(report: dict[str, Any], bpftool_report: dict[str, Any]) -> None:
    names = {"have_large_insn_limit": "large_insn_limit", "have_bounded_loops": "bounded_loops",
             "have_v2_isa_extension": "isa_v2", "have_v3_isa_extension": "isa_v3"}
    for theirs, ours in names.items():
        if theirs in bpftool_report["misc"]:
            assert report["misc"][ours] == bpftool_report["misc"][theirs], ours


def test_report_shape(report: dict[str, Any]) -> None:
    assert report["kernel"]["release"] == os.uname().release
    assert set(report) >= {"program_types", "map_types", "helpers", "links", "btf", "misc", "reasons"}
    assert report["program_types"]["socket_filter"] is True
    assert report["map_types"]["hash"] is True
    assert "bpf_map_lookup_elem" in report["helpers"]["xdp"]
    # every unsupported feature says why
    for section in ("program_types", "map_types", "links", "btf", "misc"):
        for name, flag in report[section].items():
            if not flag:
                assert report["reasons"][section].get(name), f"{section}/{name} lacks a reason"


def test_probe_results_are_real() -> None:
    """What the probes call supported really loads; what they call unsupported really fails."""
    for prog_type in features.prog_types():
        result = features.probe_prog_type(prog_type)
        if not result.supported or result.errno:  # types that only load with a BTF target
            continue
        attach = {T.ProgType.CGROUP_SOCK_ADDR: T.AttachType.CGROUP_INET4_CONNECT,
                  T.ProgType.CGROUP_SOCKOPT: T.AttachType.CGROUP_GETSOCKOPT,
                  T.ProgType.SK_LOOKUP: T.AttachType.SK_LOOKUP,
                  T.ProgType.NETFILTER: T.AttachType.NETFILTER}.get(prog_type)
        spec = ProgramSpec("probe_check", prog_type, asm.Instructions([asm.mov64_imm(R0, 0), asm.exit_insn()]),
                           attach_type=attach, sleepable=prog_type == T.ProgType.SYSCALL)
        Program.load(spec).close()


def test_helper_probes_match_real_loads() -> None:
    """A helper the probe accepts passes the verifier's call check; one it refuses fails it."""
    samples = [
        (T.ProgType.XDP, T.BpfFuncId.ktime_get_ns, True),
        (T.ProgType.XDP, T.BpfFuncId.xdp_adjust_head, True),
        (T.ProgType.XDP, T.BpfFuncId.sys_bpf, False),
        (T.ProgType.SOCKET_FILTER, T.BpfFuncId.get_prandom_u32, True),
        (T.ProgType.SOCKET_FILTER, T.BpfFuncId.xdp_adjust_head, False),
        (T.ProgType.SCHED_CLS, T.BpfFuncId.skb_store_bytes, True),
    ]
    for prog_type, helper, expected in samples:
        assert features.have_helper(prog_type, helper) is expected, (prog_type.name, helper.name)
        spec = ProgramSpec("helper_check", prog_type,
                           asm.Instructions([asm.call_helper(helper), asm.mov64_imm(R0, 0), asm.exit_insn()]))
        try:
            Program.load(spec).close()
            loaded, log = True, ""
        except VerifierError as err:
            loaded, log = False, err.log
        refused_call = "cannot use helper" in log or "invalid func" in log or "unknown func" in log
        assert refused_call is not expected, (prog_type.name, helper.name, log)
        if expected and not loaded:
            assert "R1" in log or "R2" in log  # only the arguments were wrong


def test_unknown_helper_ids() -> None:
    result = features.probe_helper(T.ProgType.SOCKET_FILTER, 0x7000)
    assert not result.supported
    assert "invalid func" in result.detail


def test_helpers_for() -> None:
    xdp = features.helpers_for(T.ProgType.XDP)
    assert xdp is not None
    assert T.BpfFuncId.map_lookup_elem in xdp and T.BpfFuncId.xdp_adjust_tail in xdp
    assert T.BpfFuncId.sys_bpf not in xdp
    assert features.helpers_for(T.ProgType.STRUCT_OPS) is None  # needs a BTF attach target


def test_require_functions_raise_typed_errors() -> None:
    features.require_map_type(T.MapType.ARRAY)
    features.require_prog_type(T.ProgType.XDP)
    features.require_helper(T.ProgType.XDP, "map_lookup_elem")
    with pytest.raises(NotSupportedError) as caught:
        features.require_helper(T.ProgType.XDP, T.BpfFuncId.sys_bpf)
    assert caught.value.first_kernel == "5.14"
    assert "bpf_sys_bpf" in str(caught.value) and "xdp" in str(caught.value)
    if not features.have_prog_type(T.ProgType.LIRC_MODE2):
        with pytest.raises(NotSupportedError, match=r"LIRC_MODE2.*4\.18"):
            features.require_prog_type(T.ProgType.LIRC_MODE2)
    if not features.probe_misc("kprobe_multi").supported:
        with pytest.raises(NotSupportedError, match=r"kprobe multi.*5\.18"):
            features.require_misc("kprobe_multi")


def test_btf_features() -> None:
    found = features.kernel_btf_features()
    assert isinstance(found, KernelBTFFeatures)
    if features.kernel_version() >= (6, 0, 0):
        assert found.all_supported()  # every kind exists since 6.0
    assert features.have_btf_kind("btf")


def test_misc_probes_on_this_kernel() -> None:
    major, minor, _ = features.kernel_version()
    if (major, minor) >= (6, 6):
        for name in ("bounded_loops", "isa_v2", "isa_v3", "isa_v4", "large_insn_limit", "ringbuf", "bpf_cookie",
                     "global_data", "mmapable_maps", "enable_stats", "prog_name"):
            assert features.have(name), (name, features.probe_misc(name))
        for link in ("link_create", "cgroup_link", "netns_link", "perf_event_link", "tcx_link"):
            assert features.probe_link(link).supported, (link, features.probe_link(link))
    assert features.have("kprobe_pmu") == os.path.exists("/sys/bus/event_source/devices/kprobe")


def test_versions_cover_every_known_type() -> None:
    for prog_type in features.prog_types():
        assert features.first_kernel("prog_type", prog_type), prog_type
    for map_type in features.map_types():
        assert features.first_kernel("map_type", map_type), map_type
    assert features.first_kernel("map_type", T.MapType.RINGBUF) == "5.8"
    assert features.first_kernel("helper", "ringbuf_output") == "5.8"
    assert features.helper_first_kernel(T.BpfFuncId.map_lookup_elem) == "3.19"
    assert features.helper_first_kernel(T.BpfFuncId.get_attach_cookie) == "5.15"
    assert features.helper_first_kernel(max(T.BpfFuncId)) != ""
    for name in features.MISC_FEATURES:
        assert name in versions.MISC, name
    for name in features.LINK_KINDS:
        assert name in versions.MISC, name


def test_probing_leaks_no_fds() -> None:
    before = len(os.listdir("/proc/self/fd"))
    features.probe_all(helpers=True)
    assert len(os.listdir("/proc/self/fd")) == before


def test_probe_all_is_fast_and_cached() -> None:
    start = time.perf_counter()
    features.probe_all(helpers=True)
    first = time.perf_counter() - start
    assert first < 5.0 * SLOWER
    start = time.perf_counter()
    features.probe_all(helpers=True)
    assert time.perf_counter() - start < 0.1 * SLOWER  # every answer is cached per process


def test_cli_tables() -> None:
    from pybpf.cli.feature import feature

    result = CliRunner().invoke(feature, [])
    assert result.exit_code == 0, result.output
    for title in ("Program types", "Map types", "Links", "BTF kinds", "Misc"):
        assert title in result.output
    assert "ringbuf" in result.output
    result = CliRunner().invoke(feature, ["--helpers"])
    assert result.exit_code == 0
    assert "Helpers per program type" in result.output
    assert "map_lookup_elem" in result.output


def test_cli_json_without_helpers() -> None:
    from pybpf.cli.feature import feature

    result = CliRunner().invoke(feature, ["--json", "--no-helpers"])
    assert result.exit_code == 0
    parsed = json.loads(result.output)
    assert "helpers" not in parsed
    assert parsed["map_types"]["array"] is True

