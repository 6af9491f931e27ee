"""`pybpf run` and `pybpf trace` end to end, as subprocesses: each example, JSON output, histograms, --set,
--interval, perf buffer loss accounting, verifier/compile/attach failures, SIGINT/SIGTERM shutdown."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from child_process import release
from kernel_objects import link_ids_of

pytestmark = pytest.mark.usefixtures("require_root")

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"
BPF = Path(__file__).resolve().parent / "bpf"
PYBPF = [sys.executable, "-m", "pybpf.cli.main"]


class Cli:
    """A `pybpf ...` subprocess whose stdout and stderr are collected by threads, so the test can wait for
    the "Running" line (everything attached) before it triggers events."""

    def __init__(self, *args: str | Path, ready: str = "Running", stdout_file: Path | None = None) -> None:
        self.argv = [*PYBPF, *(str(a) for a in args)]
        # A file keeps a fast producer from blocking the CLI on a pipe this process reads slowly.
        self.stdout_file = stdout_file
        out_target: Any = subprocess.PIPE if stdout_file is None else stdout_file.open("w")
        self.proc = subprocess.Popen(self.argv, stdout=out_target, stderr=subprocess.PIPE, text=True)
        if stdout_file is not None:
            out_target.close()
        self.out: list[str] = []
        self.err: list[str] = []
        self._ready_text = ready
        self._ready = threading.Event()
        self._threads = [threading.Thread(target=self._collect, args=(self.proc.stderr, self.err), daemon=True)]
        if stdout_file is None:
            self._threads.append(threading.Thread(target=self._collect, args=(self.proc.stdout, self.out),
                                                  daemon=True))
        for t in self._threads:
            t.start()

    def _collect(self, stream: Any, into: list[str]) -> None:
        for line in stream:
            into.append(line)
            if self._ready_text in line:
                self._ready.set()
        self._ready.set()  # EOF: the process ended (maybe failed)

    def wait_ready(self, timeout: float = 90) -> None:
        assert self._ready.wait(timeout), f"{self.argv} not ready after {timeout}s: {''.join(self.err)}"
        assert self.proc.poll() is None or any(self._ready_text in ln for ln in self.err), (
            f"{self.argv} exited early ({self.proc.returncode}): {''.join(self.err)}")

    def finish(self, sig: int | None = None, timeout: float = 60) -> tuple[int, str, str]:
        if sig is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"{self.argv} did not end: {''.join(self.err)}") from None
        for t in self._threads:
            t.join(10)
        out = "".join(self.out) if self.stdout_file is None else self.stdout_file.read_text()
        return rc, out, "".join(self.err)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def cli() -> Any:
    started: list[Cli] = []

    def start(*args: str | Path, **kw: Any) -> Cli:
        c = Cli(*args, **kw)
        started.append(c)
        return c

    yield start
    for c in started:
        c.kill()


def run_once(*args: str | Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYBPF, *(str(a) for a in args)], capture_output=True, text=True, timeout=timeout,
                          check=False)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]


def child(code: str) -> subprocess.Popen[str]:
    """A Python child that runs `code` after it reads a line from stdin (the test sends it once attached)."""
    return subprocess.Popen([sys.executable, "-c", f"import sys\nsys.stdin.readline()\n{code}"],
                            stdin=subprocess.PIPE, text=True)


def go(proc: subprocess.Popen[str]) -> None:
    release(proc, close=True)
    assert proc.wait(60) == 0


def run_driving(cli: Callable[..., Cli], proc: subprocess.Popen[str], *args: str | Path, settle: float = 0.0,
                finish_timeout: float = 60, **kw: Any) -> tuple[Cli, str, str]:
    """Start `pybpf <args>`, wait until it is attached, let the waiting `proc` run, wait `settle` seconds for
    the last events, then stop the run with SIGINT; it must exit 0. Returns the run, its stdout and stderr."""
    try:
        run = cli(*args, **kw)
        run.wait_ready()
        go(proc)
    finally:
        proc.kill()
    time.sleep(settle)
    rc, out, err = run.finish(signal.SIGINT, timeout=finish_timeout)
    assert rc == 0, err
    return run, out, err


# Bars of print_log2_hist: "        4 -> 7          : 4        |*****...    |"
_BAR = re.compile(r"^\s*(\d+) -> (\d+)\s+: (\d+)\s+\|([*. ]*)\|$")


def bars(text: str) -> dict[tuple[int, int], tuple[int, int]]:
    """{(low, high): (count, stars)} of every histogram line in text."""
    out = {}
    for line in text.splitlines():
        m = _BAR.match(line)
        if m:
            out[(int(m[1]), int(m[2]))] = (int(m[3]), m[4].count("*"))
    return out


# ---- examples -----------------------------------------------------------------------------------------


def test_tracepoint_counter_counts_opens_of_a_process(cli: Callable[..., Cli]) -> None:
    opener = child("import ctypes, os\nctypes.CDLL(None).prctl(15, b'pybpf_opener', 0, 0, 0)\n"
                   "for _ in range(7):\n    os.close(os.open('/dev/null', os.O_RDONLY))")
    _, out, _ = run_driving(cli, opener, "run", EXAMPLES / "tracepoint_counter.bpf.c", "--json")
    maps = {r["map"]: r for r in json_lines(out) if r["kind"] == "map"}
    counts = {e["key"]["comm"]: e["value"] for e in maps["counts"]["entries"]}
    assert counts["pybpf_opener"] == 7


def test_tracepoint_counter_table(cli: Callable[..., Cli]) -> None:
    opener = child("import ctypes, os\nctypes.CDLL(None).prctl(15, b'pybpf_tabled', 0, 0, 0)\n"
                   "for _ in range(3):\n    os.close(os.open('/dev/null', os.O_RDONLY))")
    _, out, _ = run_driving(cli, opener, "run", EXAMPLES / "tracepoint_counter.bpf.c", "--duration", "60")
    assert "counts" in out
    row = [ln for ln in out.splitlines() if "pybpf_tabled" in ln]
    assert row and re.search(r"pybpf_tabled\s*│\s*3\s*│", row[0]), out


def test_execsnoop_streams_rows(cli: Callable[..., Cli]) -> None:
    run = cli("run", EXAMPLES / "execsnoop.bpf.c")
    run.wait_ready()
    subprocess.run(["/bin/true"], check=True)
    time.sleep(0.3)
    rc, out, err = run.finish(signal.SIGINT)
    assert rc == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["PID", "PPID", "COMM", "FILENAME"]
    mine = [ln.split() for ln in lines if ln.rstrip().endswith("/bin/true")]
    assert [row for row in mine if row[1] == str(os.getpid())], out[:2000]
    assert "dropped" in out  # the example's loss counter is printed with the maps
    assert "events read" in err


def test_execsnoop_json(cli: Callable[..., Cli]) -> None:
    run = cli("run", EXAMPLES / "execsnoop.bpf.c", "--json")
    run.wait_ready()
    proc = subprocess.Popen(["/bin/true"])
    proc.wait()
    time.sleep(0.3)
    rc, out, err = run.finish(signal.SIGINT)
    assert rc == 0, err
    records = json_lines(out)
    events = [r for r in records if r["kind"] == "event"]
    assert all(r["map"] == "events" for r in events)
    mine = [r["data"] for r in events if r["data"]["pid"] == proc.pid]
    assert mine and mine[0]["filename"] == "/bin/true" and mine[0]["ppid"] == os.getpid()
    summary = next(r for r in records if r["kind"] == "summary")
    assert summary["read"]["events"] == len(events) and summary["stopped_by"] == "SIGINT"
    assert summary["lost"] == {}


def test_read_histogram_example(cli: Callable[..., Cli]) -> None:
    reader = child("import os\nfd = os.open('/dev/zero', os.O_RDONLY)\n"
                   "for _ in range(50):\n    os.read(fd, 5000)")
    _, out, _ = run_driving(cli, reader, "run", EXAMPLES / "read_histogram.bpf.c")
    assert "hist" in out and ": count     distribution" in out
    assert bars(out)[(4096, 8191)][0] >= 50  # the child's reads of 5000 bytes (plus anyone else's)


def test_uprobe_malloc_per_pid(cli: Callable[..., Cli], c_program: Callable[..., Path]) -> None:
    exe = c_program("#include <stdlib.h>\n#include <unistd.h>\n"
                    "int main(void) { char b[8]; if (read(0, b, sizeof b) < 0) return 1;\n"
                    "  for (int i = 0; i < 10; i++) { void *p = malloc(12345); free(p); }\n  return 0; }\n")
    target = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, text=True)
    _, out, err = run_driving(cli, target, "run", EXAMPLES / "uprobe_malloc.bpf.c", "--pid", str(target.pid),
                              "--json")
    assert f"(pid {target.pid})" in err
    table = next(r for r in json_lines(out) if r["kind"] == "map" and r["map"] == "malloc_bytes")
    assert table["entries"] == [{"key": target.pid, "value": 10 * 12345}]


def test_xdp_counter_in_netns(cli: Callable[..., Cli], netns: Callable[..., Any]) -> None:
    ns = netns()
    run = cli("run", EXAMPLES / "xdp_counter.bpf.c", "--iface", ns.ifname, "--netns", ns.name, "--json")
    run.wait_ready()
    assert ns.peer is not None
    ns.peer.run(sys.executable, "-c", "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                f"for _ in range(20):\n    s.sendto(b'x' * 100, ('{ns.addr}', 9))")
    time.sleep(0.2)
    rc, out, err = run.finish(signal.SIGINT)
    assert rc == 0, err
    stats = next(r for r in json_lines(out) if r["kind"] == "map" and r["map"] == "stats")
    assert stats["shape"] == "scalar"
    value = stats["entries"][0]["value"]
    # 20 UDP datagrams of 14 + 20 + 8 + 100 bytes, plus ARP and IPv6 neighbour traffic
    assert value["packets"] >= 20 and value["bytes"] >= 20 * 142


# ---- histograms, --set, --interval ----------------------------------------------------------------------

WRITES = [1, 2, 3, 4, 5, 6, 7, 100, 1000, 1000]
WRITER = f"import os\nfd = os.open('/dev/null', os.O_WRONLY)\nfor n in {WRITES!r}:\n    os.write(fd, b'x' * n)"


def _hist_run(cli: Callable[..., Cli], *extra: str) -> tuple[str, str]:
    writer = child(WRITER)
    _, out, err = run_driving(cli, writer, "run", BPF / "cli_hist.bpf.c", "--pid", str(writer.pid), *extra)
    return out, err


def test_histogram_bars(cli: Callable[..., Cli]) -> None:
    out, _ = _hist_run(cli)
    assert out.count(": count     distribution") == 3  # write_hist, fd_dist, fd_hists
    assert re.search(r"^fd_dist fd=\d+\s*$", out, re.M) and re.search(r"^fd_hists key=\d+\s*$", out, re.M), out
    got = bars(out)
    # bucket i holds [2^i, 2^(i+1)): 1 | 2,3 | 4..7 | 100 | 1000,1000; 40 stars for the largest count
    assert got == {(0, 1): (1, 10), (2, 3): (2, 20), (4, 7): (4, 40), (8, 15): (0, 0), (16, 31): (0, 0),
                   (32, 63): (0, 0), (64, 127): (1, 10), (128, 255): (0, 0), (256, 511): (0, 0),
                   (512, 1023): (2, 20)}
    assert re.search(r"^writes\s+10\s*$", out, re.M), out
    assert re.search(r"│\s*\d+\s*│\s*2128\s*│", out), out  # bytes_by_fd: all 10 writes on one fd


def test_histogram_json(cli: Callable[..., Cli]) -> None:
    out, _ = _hist_run(cli, "--json")
    records = json_lines(out)
    maps = {r["map"]: r for r in records if r["kind"] == "map"}
    expected = {(0, 1): 1, (2, 3): 2, (4, 7): 4, (64, 127): 1, (512, 1023): 2}
    # the three shapes: key = bucket; struct key with a `slot` member; value with a `slots` array
    for name in ("write_hist", "fd_dist", "fd_hists"):
        assert maps[name]["shape"] == "hist", name
        (hist,) = maps[name]["histograms"]
        assert {(b["low"], b["high"]): b["count"] for b in hist["buckets"] if b["count"]} == expected, name
    fd = maps["bytes_by_fd"]["entries"][0]["key"]
    assert maps["fd_dist"]["histograms"][0]["key"] == {"fd": fd}
    assert maps["fd_dist"]["histograms"][0]["label"] == f"fd={fd}"
    assert maps["fd_hists"]["histograms"][0]["key"] == fd
    variable = next(r for r in records if r["kind"] == "variable")
    assert {k: v for k, v in variable.items() if k != "time"} == {"kind": "variable", "name": "writes", "value": 10}


def test_set_rodata_changes_behaviour(cli: Callable[..., Cli]) -> None:
    out, _ = _hist_run(cli, "--set", "min_size=100", "--json")
    records = json_lines(out)
    hist = next(r for r in records if r["kind"] == "map" and r["map"] == "write_hist")
    buckets = {(b["low"], b["high"]): b["count"] for b in hist["histograms"][0]["buckets"] if b["count"]}
    assert buckets == {(64, 127): 1, (512, 1023): 2}  # only the writes of >= 100 bytes
    assert [r["value"] for r in records if r["kind"] == "variable" and r["name"] == "writes"] == [3]


def test_interval_prints_maps_periodically() -> None:
    result = run_once("run", BPF / "cli_hist.bpf.c", "--interval", "0.5", "--duration", "2.2", "--json")
    assert result.returncode == 0, result.stderr
    prints = [r for r in json_lines(result.stdout) if r["kind"] == "map" and r["map"] == "write_hist"]
    assert len(prints) >= 4  # at 0.5, 1.0, 1.5, 2.0 s and at the end
    times = [r["time"] for r in prints]
    assert times == sorted(times) and times[-1] - times[0] >= 1.2
    summary = json_lines(result.stdout)[-1]
    assert summary["kind"] == "summary" and summary["stopped_by"] == "duration"


def test_interval_text_has_timestamps() -> None:
    result = run_once("run", BPF / "cli_hist.bpf.c", "--interval", "0.4", "--duration", "1")
    assert result.returncode == 0, result.stderr
    assert len(re.findall(r"^\d\d:\d\d:\d\d\s*$", result.stdout, re.M)) >= 2
    assert result.stdout.count("writes") >= 3


# ---- events: perf buffer, printk, loss ---------------------------------------------------------------------


def test_perf_buffer_rows(cli: Callable[..., Cli]) -> None:
    caller = child("import os\nfor _ in range(5):\n    os.getppid()")
    _, out, _ = run_driving(cli, caller, "run", BPF / "cli_perf.bpf.c", "--pid", str(caller.pid), "--json",
                            settle=0.2)
    records = json_lines(out)
    rows = [r["data"] for r in records if r["kind"] == "event"]
    assert sorted(r["seq"] for r in rows) == [0, 1, 2, 3, 4]
    assert {r["pid"] for r in rows} == {caller.pid}
    assert records[-1]["read"] == {"samples": 5} and records[-1]["lost"] == {"samples": 0}


def test_perf_buffer_loss_is_reported(cli: Callable[..., Cli], c_program: Callable[..., Path],
                                      tmp_path: Path) -> None:
    # A flood the reader cannot keep up with, then a pause and a few samples on every CPU: the kernel writes a
    # ring's LOST record before that ring's next sample, so read + lost must equal what the program produced.
    exe = c_program("#define _GNU_SOURCE\n#include <sched.h>\n#include <unistd.h>\n#include <sys/syscall.h>\n"
                    "int main(void) { char b[8]; if (read(0, b, sizeof b) < 0) return 1;\n"
                    "  for (int i = 0; i < 2000000; i++) syscall(SYS_getppid);\n"
                    "  sleep(2);\n"
                    "  for (int cpu = 0; cpu < CPU_SETSIZE; cpu++) {\n"
                    "    cpu_set_t set; CPU_ZERO(&set); CPU_SET(cpu, &set);\n"
                    "    if (sched_setaffinity(0, sizeof set, &set)) continue;\n"
                    "    for (int i = 0; i < 10; i++) syscall(SYS_getppid);\n  }\n  return 0; }\n")
    target = subprocess.Popen([str(exe)], stdin=subprocess.PIPE, text=True)
    _, out, err = run_driving(cli, target, "run", BPF / "cli_perf.bpf.c", "--pid", str(target.pid), "--json",
                              settle=0.5, finish_timeout=180, stdout_file=tmp_path / "out.json")
    records = json_lines(out)
    produced = next(r["value"] for r in records if r["kind"] == "variable" and r["name"] == "produced")
    summary = records[-1]
    read, lost = summary["read"]["samples"], summary["lost"]["samples"]
    assert produced == 2000000 + 10 * len(os.sched_getaffinity(0))
    assert read + lost == produced
    if lost:
        assert f"{lost} events lost" in err
    else:
        pytest.skip("the reader kept up with 2M samples: no loss to report on this machine")


def test_printk_is_followed(cli: Callable[..., Cli]) -> None:
    caller = child("import os\nfor _ in range(3):\n    os.getppid()")
    _, out, _ = run_driving(cli, caller, "run", BPF / "cli_printk.bpf.c", "--pid", str(caller.pid),
                            "--set", "magic=77", "--json", settle=0.3)
    lines = [r for r in json_lines(out) if r["kind"] == "printk" and r["pid"] == caller.pid]
    assert [r["message"] for r in lines] == ["pybpf-cli-printk magic=77"] * 3


def test_trace_shows_printk(cli: Callable[..., Cli], bpf_obj: Callable[[str], Path]) -> None:
    import pybpf.collection as pc

    with pc.load(bpf_obj("cli_printk"), set={"target_pid": os.getpid(), "magic": 4242}) as coll:
        assert not coll.attach_all()
        # trace_pipe takes one reader at a time: first a tracer whose --comm filter matches nothing
        other = cli("trace", "--json", "--comm", "no-such-task", "--duration", "30", ready="Tracing")
        other.wait_ready()
        os.getppid()
        time.sleep(0.3)
        rc2, out2, err2 = other.finish(signal.SIGTERM)
        tracer = cli("trace", "--json", "--pid", str(os.getpid()), ready="Tracing")
        tracer.wait_ready()
        for _ in range(3):
            os.getppid()
        time.sleep(0.5)
        rc, out, err = tracer.finish(signal.SIGINT)
    assert rc2 == 0, err2
    assert out2 == ""
    assert rc == 0, err
    lines = [json.loads(ln) for ln in out.splitlines()]
    assert [r["message"] for r in lines] == ["pybpf-cli-printk magic=4242"] * 3
    assert all(r["pid"] == os.getpid() and r["cpu"] >= 0 and r["timestamp"] > 0 for r in lines)


def test_trace_text_columns(bpf_obj: Callable[[str], Path]) -> None:
    import pybpf.collection as pc

    with pc.load(bpf_obj("cli_printk"), set={"target_pid": os.getpid(), "magic": 99}) as coll:
        assert not coll.attach_all()
        tracer = Cli("trace", "--pid", str(os.getpid()), ready="Tracing")
        try:
            tracer.wait_ready()
            os.getppid()
            time.sleep(0.5)
            rc, out, err = tracer.finish(signal.SIGINT)
        finally:
            tracer.kill()
    assert rc == 0, err
    header, *rows = out.splitlines()
    assert header.split() == ["TIME(s)", "CPU", "PID", "TASK", "MESSAGE"]
    assert any(r.split()[2] == str(os.getpid()) and r.endswith("pybpf-cli-printk magic=99") for r in rows), out


# ---- failures ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("args", "returncode", "messages"), [
    pytest.param(["run", EXAMPLES / "xdp_counter.bpf.c", "--duration", "1"], 1,
                 ["xdp_count (xdp) needs --iface"], id="xdp-without-iface"),
    pytest.param(["run", BPF / "cli_sample.bpf.c", "--duration", "0"], 1,
                 ["on_sample (perf_event) needs --frequency"], id="perf-event-without-frequency"),
    pytest.param(["run", BPF / "cli_hist.bpf.c", "--set", "no_such_var=1", "--duration", "0"], 2,
                 ["no global variable 'no_such_var'", "min_size"],  # the known variables are listed
                 id="set-unknown-variable"),
    pytest.param(["run", BPF / "cli_hist.bpf.c", "--set", "min_size=lots", "--duration", "0"], 2,
                 ["min_size=lots"], id="set-bad-value"),
    pytest.param(["run", BPF / "cli_bad_verifier.bpf.c", "--duration", "1"], 1,
                 ["rejected by the verifier", "R0 invalid mem access 'map_value_or_null'",
                  re.compile(r"cli_bad_verifier.bpf.c:\d+: \*val \+= 1;")],  # the complaint and the source line
                 id="verifier"),
    pytest.param(["run", EXAMPLES / "uprobe_malloc.bpf.c", "--binary", "/nonexistent/libc.so.6", "--duration", "1"],
                 1, ["cannot attach program 'malloc_enter'"], id="attach"),
])
def test_run_fails_with_message(args: list[str | Path], returncode: int, messages: list[str | re.Pattern[str]]
                                ) -> None:
    result = run_once(*args)
    assert result.returncode == returncode, result.stderr
    for message in messages:
        if isinstance(message, re.Pattern):
            assert message.search(result.stderr), (message.pattern, result.stderr)
        else:
            assert message in result.stderr


def test_compile_error_shows_clang_message(tmp_path: Path) -> None:
    src = tmp_path / "broken.bpf.c"
    src.write_text("int broken(void) { return undeclared_thing; }\n")
    result = run_once("run", src)
    assert result.returncode == 1
    assert "clang failed to compile" in result.stderr
    assert "broken.bpf.c:1:" in result.stderr and "undeclared_thing" in result.stderr


# ---- shutdown ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_ends_run_cleanly(cli: Callable[..., Cli], sig: int) -> None:
    before = set(link_ids_of())
    run = cli("run", BPF / "cli_hist.bpf.c", "--set", "target_pid=1")
    run.wait_ready()
    during = set(link_ids_of()) - before
    assert during, "the run created no BPF link"
    start = time.monotonic()
    rc, out, err = run.finish(sig)
    elapsed = time.monotonic() - start
    assert rc == 0, err
    assert "write_hist" in out and re.search(r"^writes\s+0\s*$", out, re.M)  # maps printed on the way out
    assert not during.intersection(link_ids_of()), "links left behind"
    assert elapsed < 2.0, f"exit took {elapsed:.3f}s"


@pytest.mark.parametrize(("command", "texts"), [
    ("run", ["Examples:", "--duration", "--set"]),
    ("trace", ["--comm"]),
], ids=["run", "trace"])
def test_help_lists_examples(command: str, texts: list[str]) -> None:
    result = run_once(command, "--help")
    assert result.returncode == 0
    for text in texts:
        assert text in result.stdout


def test_object_file_and_type_option(cli: Callable[..., Cli], tmp_path: Path) -> None:
    obj = tmp_path / "cli_perf.bpf.o"
    built = run_once("build", BPF / "cli_perf.bpf.c", "-o", obj)
    assert built.returncode == 0, built.stderr
    caller = child("import os\nfor _ in range(2):\n    os.getppid()")
    _, out, _ = run_driving(cli, caller, "run", obj, "--pid", str(caller.pid), "--type", "samples=sample",
                            settle=0.2)
    header, *rows = out.splitlines()
    assert header.split() == ["SEQ", "PID", "CPU"]
    assert [r.split()[:2] for r in rows[:2]] == [["0", str(caller.pid)], ["1", str(caller.pid)]]
    bad = run_once("run", obj, "--type", "samples=no_such_struct", "--duration", "0")
    assert bad.returncode == 1 and "no struct 'no_such_struct'" in bad.stderr


# ---- rendering (in-process) ---------------------------------------------------------------------------------


def test_render_log2_like_print_log2_hist() -> None:
    from pybpf.cli.render import log2_rows, render_log2

    assert log2_rows([0, 0, 0]) == []
    assert log2_rows([3, 0, 5]) == [(0, 1, 3), (2, 3, 0), (4, 7, 5)]
    lines = render_log2([3, 0, 5], color=False)
    assert lines[0] == "     value               : count     distribution"
    assert lines[1] == "         0 -> 1          : 3        |" + "*" * 24 + " " * 16 + "|"
    assert lines[3] == "         4 -> 7          : 5        |" + "*" * 40 + "|"
    assert "|.   " in render_log2([1000, 1], color=False)[2]  # tiny but non-empty buckets still show


def test_sum_percpu_and_flatten() -> None:
    from collections import namedtuple

    from pybpf.cli.render import flatten, format_cell, sum_percpu

    totals = namedtuple("totals", "packets bytes")
    assert sum_percpu([totals(1, 100), totals(2, 50)]) == totals(3, 150)
    assert sum_percpu([1, 2, 3]) == 6
    assert sum_percpu([[1, 2], [3, 4]]) == [4, 6]
    assert sum_percpu(["a", "b"]) == ["a", "b"]  # not addable: left per CPU
    outer = namedtuple("outer", "a inner")
    assert flatten(outer(1, totals(2, 3))) == [("a", 1), ("inner.packets", 2), ("inner.bytes", 3)]
    assert format_cell(b"\x01\xff") == "01ff" and format_cell(totals(1, 2)) == "packets=1 bytes=2"


def test_perf_event_takes_frequency() -> None:  # without it: test_run_fails_with_message
    result = run_once("run", BPF / "cli_sample.bpf.c", "--frequency", "200", "--duration", "1", "--json")
    assert result.returncode == 0, result.stderr
    (samples,) = [r["value"] for r in json_lines(result.stdout) if r["kind"] == "variable"]
    assert samples > 50  # ~200 per second on each CPU while it runs


def test_run_attaches_before_loading_click_or_rich() -> None:
    # `pybpf run` parses ordinary command lines itself: click, rich and other heavy modules load (if at all)
    # only after the "Attached" line. -X importtime writes one stderr line per import as it happens.
    result = subprocess.run([*PYBPF[:1], "-X", "importtime", *PYBPF[1:], "run", EXAMPLES / "execsnoop.bpf.c",
                             "--duration", "0", "--json", "--top=5"], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    before = result.stderr.split("Attached", 1)[0]
    assert "Attached" in result.stderr
    early = {ln.split("|")[-1].strip() for ln in before.splitlines() if ln.startswith("import time:")}
    assert "pybpf.collection" in early  # the trace is real
    heavy = {"click", "rich", "numpy", "elftools", "pyroute2", "asyncio"}
    assert not {m.split(".")[0] for m in early} & heavy
    # --json: rich is not needed at all
    assert not any(ln.split("|")[-1].strip().startswith("rich") for ln in result.stderr.splitlines()
                   if ln.startswith("import time:"))


def test_run_falls_back_to_click_for_unusual_lines() -> None:
    # Lines the fast parser does not take go to click, which reports them as usage errors (exit 2).
    for args in (["--bogus"], ["--json=1"], ["extra"], ["--pid", "abc"], ["--duration", "-1"]):
        result = run_once("run", EXAMPLES / "execsnoop.bpf.c", *args)
        assert result.returncode == 2, (args, result.stderr)
        assert "Error: " in result.stderr and "Traceback" not in result.stderr, (args, result.stderr)
