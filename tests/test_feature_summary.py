"""tools/feature-summary.py: reading the reports (JSON file and a guest's log), the table and the verdict."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "feature-summary.py"

KPROBE_SKIP = "kernel feature missing: kprobe is not supported by this kernel: CONFIG_KPROBES is off"


@pytest.fixture(scope="module")
def summary() -> ModuleType:
    spec = importlib.util.spec_from_file_location("feature_summary", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["feature_summary"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def entry(outcome: str, reason: str = "", kernel2: bool = False) -> dict[str, Any]:
    return {"outcome": outcome, "reason": reason, "kernel2": kernel2, "features": []}


def report(kernel: str, guest: bool, tests: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {"format": 1, "kernel": kernel, "guest": guest, "exitstatus": 0, "tests": tests}


def write(tmp_path: Path, host_tests: dict[str, Any], guest_tests: dict[str, Any]) -> list[str]:
    host = tmp_path / "host.json"
    host.write_text(json.dumps(report("6.18.0", False, host_tests)))
    log = tmp_path / "kernel2.log"
    # what test.sh keeps from the guest: pytest's output with the report between marker lines (raw tty: \n)
    log.write_text("....s [100%]\npybpf-results-begin\n" + json.dumps(report("6.1.0", True, guest_tests))
                   + "\npybpf-results-end\n3 passed\n")
    return [str(host), str(log)]


def run(paths: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *paths], capture_output=True, text=True, check=False)


KPROBE = "tests/test_link_tracing.py::test_kprobe_counts_opens"
MULTI = "tests/test_link_tracing.py::test_kprobe_multi_explicit_symbols"
XDP = "tests/test_link_net.py::test_xdp_drops_udp_to_blocked_address[generic]"


def test_skipped_here_and_run_there_passes(tmp_path: Path) -> None:
    paths = write(tmp_path,
                  {KPROBE: entry("skipped", KPROBE_SKIP, True), XDP: entry("passed", kernel2=True),
                   MULTI: entry("skipped", "kernel feature missing: kprobe_multi is not supported by this kernel")},
                  {KPROBE: entry("passed", kernel2=True), XDP: entry("passed", kernel2=True)})
    result = run(paths)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "6.18.0 (host)" in lines[0] and "6.1.0 (vmtest)" in lines[0]
    kprobe_row = next(line for line in lines if line.startswith("kprobe "))
    assert "skipped: kernel feature missing" in kprobe_row and kprobe_row.rstrip().endswith("ran 1")
    assert any(line.startswith("XDP") and line.count("ran 1") == 2 for line in lines)
    assert "expected, CONFIG_FPROBE is off on both kernels" in result.stdout  # documented: not a failure


def test_skipped_here_and_not_selected_there_fails(tmp_path: Path) -> None:
    paths = write(tmp_path, {KPROBE: entry("skipped", KPROBE_SKIP)}, {})
    result = run(paths)
    assert result.returncode == 1
    assert f"{KPROBE}: skipped on 6.18.0 (host)" in result.stdout and "mark it kernel2" in result.stdout


def test_skipped_on_both_fails_and_environment_skips_do_not_count(tmp_path: Path) -> None:
    no_tool = "tests/test_btf.py::test_dump_matches_bpftool"
    paths = write(tmp_path,
                  {KPROBE: entry("skipped", KPROBE_SKIP, True), no_tool: entry("skipped", "bpftool is not installed")},
                  {KPROBE: entry("skipped", "kprobe PMU missing in this kernel", True)})
    result = run(paths)
    assert result.returncode == 1
    assert "skipped on 6.1.0 (vmtest)" in result.stdout
    assert no_tool not in result.stdout.split("ran on no other:")[-1]


def test_one_report_only_prints_the_table(tmp_path: Path) -> None:
    host = tmp_path / "host.json"
    host.write_text(json.dumps(report("6.18.0", False, {KPROBE: entry("skipped", KPROBE_SKIP)})))
    result = run([str(host)])
    assert result.returncode == 0
    assert "nothing to compare" in result.stdout


def test_log_without_a_report_fails(tmp_path: Path) -> None:
    paths = write(tmp_path, {XDP: entry("passed")}, {})
    Path(paths[1]).write_text("kernel panic\n")
    result = run(paths)
    assert result.returncode == 1
    assert "holds no results report" in result.stderr


def test_features_are_told_by_hook_tests_only(summary: ModuleType) -> None:
    feature_of = summary.feature_of
    assert feature_of(KPROBE, entry("passed")) == "kprobe"
    assert feature_of(MULTI, entry("passed")) == "kprobe_multi"
    assert feature_of("tests/test_link_net.py::test_tc_egress_on_the_sending_side[auto]", {}).startswith("tcx")
    assert feature_of("tests/test_link_net.py::test_tc_egress_on_the_sending_side[clsact]", {}) == "tc clsact"
    # section-name parsing mentions kprobes but attaches nothing
    assert feature_of("tests/test_elf.py::test_section_name_gives_type[p_kprobe]", {}) == summary.OTHER
    assert feature_of("tests/test_map_types.py::test_queue_is_fifo", {}) == "maps"
    assert feature_of("tests/x.py::test_y", {"features": ["BPF timers"]}) == "BPF timers"
    assert summary.is_kernel_reason(KPROBE_SKIP)
    assert not summary.is_kernel_reason("bpftool is not installed")
    assert not summary.is_kernel_reason("needs root (CAP_BPF/CAP_SYS_ADMIN/CAP_NET_ADMIN)")


def test_conftest_writes_the_report(tmp_path: Path) -> None:
    out = tmp_path / "results.json"
    tests_dir = Path(__file__).resolve().parent
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--rootdir={tests_dir.parent}",
         str(tests_dir / "test_feature_summary.py"), "-k", "features_are_told"],
        capture_output=True, text=True, check=False, env={**os.environ, "PYBPF_RESULTS": str(out)})
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(out.read_text())
    assert data["kernel"] == os.uname().release and data["guest"] is False
    ((nodeid, got),) = [(k, v) for k, v in data["tests"].items()]
    assert nodeid.endswith("test_features_are_told_by_hook_tests_only")
    assert got["outcome"] == "passed" and got["kernel2"] is False
