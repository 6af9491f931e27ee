#!/usr/bin/env python3
"""Which kernel features ran on which kernel, and whether every test one kernel skipped ran on the other.

    python3 tools/feature-summary.py REPORT [REPORT ...]

A REPORT is the JSON file the test suite writes when PYBPF_RESULTS names it (tests/conftest.py), or a log
holding such a report between `pybpf-results-begin` / `pybpf-results-end` lines (what a `pybpf vmtest`
guest prints, since its own files vanish with it). tools/test.sh passes the host's file and the 6.1 log.

Prints a table (feature x kernel: ran / skipped, with the reason) and exits 1 when a test skipped on one
kernel for a kernel reason (a missing feature, or one the kernel has where the test checks the error for
kernels without it) did not pass on another kernel, unless the feature is one that no kernel in the run has
(NEITHER_KERNEL). With a single report there is nothing to compare: the table is printed, exit status 0.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BEGIN = "pybpf-results-begin"
END = "pybpf-results-end"

# Tests that attach or run programs at a kernel hook; the hook is told by the test's name. Section-name parsing,
# compile and probe tests elsewhere mention the same words but exercise no hook: they count by file (FILES).
HOOK_TESTS = re.compile(r"tests/test_(link_\w+|stacks|user_ringbuf|events|map_types|cli_run)\.py::")

# First match wins (on the lowercased node id): specific names before the general ones they contain.
FEATURES: list[tuple[str, str]] = [
    ("stack traces", r"test_stacks\.py|stack_trace"),
    ("kprobe_multi", r"kprobe_multi|kmulti"),
    ("kretprobe", r"kretprobe"),
    ("ksyscall", r"ksyscall"),
    ("kprobe", r"kprobe"),
    ("fentry/fexit", r"fentry|fexit"),
    ("fmod_ret", r"fmod_ret"),
    ("LSM", r"::test_lsm"),
    ("tp_btf", r"tp_btf"),
    ("raw tracepoint", r"raw_tracepoint|raw_tp|raw_syscall"),
    ("tracepoint", r"tracepoint"),
    ("perf hardware counters", r"hardware_counter"),
    ("perf_event sampling", r"::test_perf_event_(samples|needs)"),
    ("BPF iterators", r"::test_\w*_iterator_"),
    ("tcx (tc auto: clsact before 6.6)", r"tcx|::test_tc_.*\[auto\]"),
    ("tc clsact", r"::test_tc_"),
    ("XDP", r"xdp"),
    ("uprobe_multi", r"uprobe_multi"),
    ("USDT", r"usdt"),
    ("uprobe", r"uprobe"),
    ("user ring buffer", r"user_ringbuf"),
    ("ring buffer", r"ringbuf|ring_buffer"),
    ("perf buffer", r"perfbuf"),
    ("task/cgroup storage", r"task_storage|cgrp_storage|cgroup_storage"),
    ("cgroup programs", r"cgroup"),
    ("sk_lookup", r"sk_lookup"),
    ("sk_msg/sockmap", r"sk_msg|sockmap"),
    ("socket filter", r"socket_filter"),
    ("flow dissector", r"flow_dissector"),
    ("trace_pipe", r"trace_pipe|trace_line"),
]
FILES: list[tuple[str, str]] = [
    ("maps", r"tests/test_map"),
    ("programs, test_run", r"tests/test_program\.py"),
    ("loader, globals, kconfig", r"tests/test_load\.py"),
    ("CO-RE", r"tests/test_core\.py"),
    ("feature probes", r"tests/test_features\.py"),
    ("vmlinux.h", r"tests/test_vmlinux_h\.py"),
]
OTHER = "other (no kernel hook)"
_FEATURE_RES = [(name, re.compile(pattern)) for name, pattern in FEATURES]
_FILE_RES = [(name, re.compile(pattern)) for name, pattern in FILES]

# Features no kernel of the run has: skipping them everywhere is expected, not a gap.
NEITHER_KERNEL = {
    "kprobe_multi": "CONFIG_FPROBE is off on both kernels",
    "perf hardware counters": "virtual machines expose no hardware PMU",
}

# A skip reason is about the kernel when it names it (or a config option, a version, a kernel facility)...
_KERNEL_REASON = re.compile(
    r"kernel|CONFIG_|linux \d|\(\d+\.\d+\+\)|not supported|pmu|btf|trampoline|tracefs has no", re.I)
# ... and not about the machine's tools, privileges or mounts.
_ENVIRONMENT_REASON = re.compile(
    r"not installed|install-kernel2|debian package|needs root|not written yet|cannot be fetched|"
    r"not mounted|no cgroup v2|x86_64's|for x86_64", re.I)

PASSED = ("passed", "xfailed", "xpassed")


@dataclass
class Report:
    kernel: str
    guest: bool
    tests: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.kernel} ({'vmtest' if self.guest else 'host'})"


def feature_of(nodeid: str, entry: dict[str, Any]) -> str:
    explicit = entry.get("features") or []
    if explicit:
        return str(explicit[0])
    lowered = nodeid.lower()
    if HOOK_TESTS.match(lowered):
        for name, pattern in _FEATURE_RES:
            if pattern.search(lowered):
                return name
    for name, pattern in _FILE_RES:
        if pattern.match(lowered):
            return name
    return OTHER


def is_kernel_reason(reason: str) -> bool:
    return bool(_KERNEL_REASON.search(reason)) and not _ENVIRONMENT_REASON.search(reason)


def _report_from(data: Any, source: str) -> Report:
    if not isinstance(data, dict) or not isinstance(data.get("tests"), dict):
        raise ValueError(f"{source}: not a pybpf results report")
    return Report(str(data.get("kernel", "?")), bool(data.get("guest")), data["tests"])


def load_reports(path: Path) -> list[Report]:
    """The reports in a JSON file or in a log (marker blocks); [] when a log holds none."""
    text = path.read_text(errors="replace")
    if text.lstrip().startswith("{"):
        return [_report_from(json.loads(text), str(path))]
    reports: list[Report] = []
    block: list[str] | None = None
    for line in text.splitlines():
        line = line.strip("\r")
        if line == BEGIN:
            block = []
        elif line == END and block is not None:
            reports.append(_report_from(json.loads("".join(block)), str(path)))
            block = None
        elif block is not None:
            block.append(line)
    return reports


def _shorten(text: str, width: int = 64) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def cell(entries: list[dict[str, Any]]) -> str:
    """One kernel's results for one feature."""
    if not entries:
        return "not run"
    counts: dict[str, int] = {}
    for entry in entries:
        outcome = "passed" if entry["outcome"] in PASSED else entry["outcome"]
        counts[outcome] = counts.get(outcome, 0) + 1
    parts = []
    if counts.get("passed"):
        parts.append(f"ran {counts['passed']}")
    for outcome in ("failed", "error", "not run"):
        if counts.get(outcome):
            parts.append(f"{outcome} {counts[outcome]}")
    skipped = [e for e in entries if e["outcome"] == "skipped"]
    if skipped:
        reason = _shorten(skipped[0].get("reason", ""))
        parts.append(f"skipped {len(skipped)} ({reason})" if parts else f"skipped: {reason}")
    return ", ".join(parts)


def table(reports: Sequence[Report]) -> list[str]:
    by_feature: dict[str, list[list[dict[str, Any]]]] = {}
    for column, report in enumerate(reports):
        for nodeid, entry in report.tests.items():
            row = by_feature.setdefault(feature_of(nodeid, entry), [[] for _ in reports])
            row[column].append(entry)
    order = [name for name, _ in [*FEATURES, *FILES] if name in by_feature]
    order += sorted(set(by_feature) - set(order) - {OTHER}) + ([OTHER] if OTHER in by_feature else [])
    header = ["feature", *(r.label for r in reports)]
    rows = [[name, *(cell(column) for column in by_feature[name])] for name in order]
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
             for row in [header, ["-" * w for w in widths], *rows]]
    return lines


def verdict(reports: Sequence[Report]) -> tuple[list[str], list[str]]:
    """(problems, notes): each test skipped for a kernel reason on one kernel must pass on another."""
    problems: list[str] = []
    notes: list[str] = []
    for report in reports:
        others = [r for r in reports if r is not report]
        for nodeid, entry in sorted(report.tests.items()):
            if entry["outcome"] != "skipped" or not is_kernel_reason(entry.get("reason", "")):
                continue
            elsewhere = [(other, other.tests.get(nodeid)) for other in others]
            if any(found is not None and found["outcome"] in PASSED for _, found in elsewhere):
                continue
            feature = feature_of(nodeid, entry)
            why = f"skipped on {report.label} ({_shorten(entry['reason'], 90)})"
            if feature in NEITHER_KERNEL:
                notes.append(f"{nodeid}: {why}; expected, {NEITHER_KERNEL[feature]}")
                continue
            for other, found in elsewhere:
                if found is None:
                    hint = "mark it kernel2" if other.guest else "it is not selected there"
                    problems.append(f"{nodeid}: {why}, not run on {other.label}: {hint}")
                else:
                    problems.append(f"{nodeid}: {why}, {found['outcome']} on {other.label}"
                                    + (f" ({_shorten(found.get('reason', ''), 90)})" if found.get("reason") else ""))
    return problems, notes


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="JSON reports or logs holding them")
    args = parser.parse_args(list(argv) if argv is not None else None)

    reports: list[Report] = []
    missing: list[str] = []
    for path in args.reports:
        try:
            found = load_reports(path)
        except (OSError, ValueError) as exc:  # json.JSONDecodeError is a ValueError
            missing.append(f"{path}: {exc}")
            continue
        if not found:
            missing.append(f"{path}: holds no results report (did that run end early?)")
        reports += found

    if reports:
        print("\n".join(table(reports)))
    for problem in missing:
        print(f"feature-summary: {problem}", file=sys.stderr)
    if len(reports) < 2:
        print("feature-summary: fewer than two kernels' reports: nothing to compare")
        return 1 if missing else 0

    problems, notes = verdict(reports)
    for note in notes:
        print(f"  ok (documented): {note}")
    if problems:
        print(f"\nfeature-summary: {len(problems)} test(s) skipped on one kernel ran on no other:")
        for problem in problems:
            print(f"  {problem}")
        return 1
    print("feature-summary: every test skipped for a kernel reason ran on another kernel")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
