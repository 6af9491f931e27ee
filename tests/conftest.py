"""Shared fixtures for the pybpf test suite (which runs against the real kernel, as root).

- `require_root`: skip unless running as root.
- `bpf_obj(name)`: compile tests/bpf/<name>.bpf.c (cached across sessions) and return the object path.
- `c_program(source, name)`: compile a small user-space C program with gcc (-g) into tmp_path.
- `netns()`: a network namespace with a veth link to a peer namespace (10.200.N.1 <-> 10.200.N.2).
- bpffs and tracefs are mounted for the session when missing (autouse).
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import itertools
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

TESTS_DIR = Path(__file__).resolve().parent
BPF_SRC_DIR = TESTS_DIR / "bpf"


# ----- privileges and kernel filesystems -------------------------------------------------------------------


def is_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def require_root() -> None:
    if not is_root():
        pytest.skip("needs root (CAP_BPF/CAP_SYS_ADMIN/CAP_NET_ADMIN)")


@pytest.fixture(scope="session", autouse=True)
def _kernel_filesystems() -> None:
    """Mount bpffs and tracefs if they are missing; the VM does not mount them at boot."""
    if not is_root():
        return
    try:
        from pybpf._sys import mounts
    except ImportError:  # not written yet: tests needing these filesystems skip on their own
        return
    for name in ("ensure_bpffs", "ensure_tracefs"):
        ensure = getattr(mounts, name, None)
        if ensure is not None:
            with contextlib.suppress(OSError):
                ensure()


# ----- BPF objects -----------------------------------------------------------------------------------------


_cgroup_counter = itertools.count()


@pytest.fixture
def cgroup() -> Iterator[Path]:
    """A new cgroup v2 directory for the test, removed afterwards (waiting for its last task to leave)."""
    from pybpf.errors import BPFError
    from pybpf.link.cgroup import cgroup2_root

    try:
        root = cgroup2_root()
    except BPFError:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    path = Path(root) / f"pybpf-test-{os.getpid()}-{next(_cgroup_counter)}"
    path.mkdir()
    try:
        yield path
    finally:
        for _ in range(50):
            try:
                path.rmdir()
                break
            except OSError as exc:
                if exc.errno != errno.EBUSY:
                    raise
                time.sleep(0.05)  # the last task is still leaving


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private PYBPF_CACHE (build cache, load plans, kernel BTF index), so that results do not depend on
    earlier runs."""
    root = tmp_path / "cache"
    monkeypatch.setenv("PYBPF_CACHE", str(root))
    return root


@pytest.fixture(scope="session")
def bpf_obj() -> Callable[[str], Path]:
    """Factory: bpf_obj("name") compiles tests/bpf/name.bpf.c through pybpf.toolchain (content-hash cached)."""
    from pybpf.toolchain import compile

    built: dict[str, Path] = {}

    def build(name: str) -> Path:
        if name not in built:
            source = BPF_SRC_DIR / f"{name}.bpf.c"
            if not source.is_file():
                raise FileNotFoundError(f"no BPF test program {source}")
            built[name] = compile(source, include=[BPF_SRC_DIR])
        return built[name]

    return build


@pytest.fixture
def events_seq(bpf_obj: Callable[[str], Path]) -> Iterator[Callable[..., Any]]:
    """Factory: events_seq(**rodata) loads tests/bpf/events_seq.bpf.c (the event readers' program) with those
    `.rodata` values; every collection made is closed afterwards."""
    import pybpf.collection as pc

    opened: list[Any] = []

    def make(**values: int) -> Any:
        coll = pc.load(bpf_obj("events_seq"), set=values)
        opened.append(coll)
        return coll

    yield make
    for c in opened:
        c.close()


# ----- user-space C programs -------------------------------------------------------------------------------


CProgram = Callable[..., Path]


@pytest.fixture
def c_program(tmp_path: Path) -> CProgram:
    """Factory: c_program(source_text, name="prog", *, cflags=(), include=()) -> executable path.

    Built with `gcc -g -O0` (so functions are neither inlined nor merged) into tmp_path; add e.g. "-no-pie",
    "-O2" or "-shared -fPIC" through cflags.
    """
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        pytest.skip("gcc is not installed (Debian package gcc)")

    def build(
        source: str, name: str = "prog", *, cflags: Sequence[str] = (), include: Sequence[str | Path] = ()
    ) -> Path:
        src = tmp_path / f"{name}.c"
        src.write_text(source)
        out = tmp_path / name
        argv = [gcc, "-g", "-O0", *(f"-I{d}" for d in include), *cflags, "-o", str(out), str(src)]
        result = subprocess.run(argv, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            pytest.fail(f"gcc failed: {' '.join(argv)}\n{result.stderr}")
        return out

    return build


# ----- network namespaces ----------------------------------------------------------------------------------

_CLONE_NEWNET = 0x40000000
_netns_counter = itertools.count()


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass
class NetNS:
    """A named network namespace (`ip netns`); `ifname`/`addr` is its end of the veth link to `peer`."""

    name: str
    ifname: str = ""
    addr: str = ""
    prefixlen: int = 24
    peer: NetNS | None = field(default=None, repr=False)

    @property
    def path(self) -> str:
        return f"/run/netns/{self.name}"

    def run(self, *argv: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        """Run a command inside the namespace and capture its output."""
        return subprocess.run(
            ["ip", "netns", "exec", self.name, *argv],
            capture_output=True,
            text=True,
            check=check,
            timeout=timeout,
        )

    def popen(self, *argv: str, **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a command inside the namespace (subprocess.Popen keywords); the caller waits for it."""
        proc: subprocess.Popen[Any] = subprocess.Popen(["ip", "netns", "exec", self.name, *argv], **kwargs)
        return proc

    @contextlib.contextmanager
    def enter(self) -> Iterator[None]:
        """Move the calling thread into the namespace (setns) for the block, e.g. to attach XDP by ifindex."""
        libc = ctypes.CDLL(None, use_errno=True)
        with open("/proc/thread-self/ns/net", "rb") as home, open(self.path, "rb") as target:
            if libc.setns(target.fileno(), _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {self.name}: {os.strerror(err)}")
            try:
                yield
            finally:
                if libc.setns(home.fileno(), _CLONE_NEWNET) != 0:
                    err = ctypes.get_errno()
                    raise OSError(err, f"setns back from {self.name}: {os.strerror(err)}")

    @property
    def ifindex(self) -> int:
        """ifindex of `ifname` inside this namespace."""
        with self.enter():
            return socket.if_nametoindex(self.ifname)


@pytest.fixture
def netns(require_root: None) -> Iterator[Callable[..., NetNS]]:
    """Factory: netns(veth=True) -> NetNS, deleted (with its peer) at teardown.

    With veth, the namespace holds `veth0` = 10.200.N.1/24 and `ns.peer` holds `veth1` = 10.200.N.2/24;
    both are up, as is lo. The host's own network is never touched.
    """
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")
    created: list[str] = []

    def add_namespace(name: str) -> None:
        _ip("netns", "add", name)
        created.append(name)
        _ip("-n", name, "link", "set", "lo", "up")

    def make(veth: bool = True) -> NetNS:
        n = next(_netns_counter)
        name = f"pybpf-{os.getpid()}-{n}"
        add_namespace(name)
        if not veth:
            return NetNS(name)
        peer_name = f"{name}-peer"
        add_namespace(peer_name)
        subnet = f"10.200.{n % 256}"
        _ip(
            "link", "add", "veth0", "netns", name, "type", "veth", "peer", "name", "veth1", "netns", peer_name
        )
        _ip("-n", name, "addr", "add", f"{subnet}.1/24", "dev", "veth0")
        _ip("-n", peer_name, "addr", "add", f"{subnet}.2/24", "dev", "veth1")
        _ip("-n", name, "link", "set", "veth0", "up")
        _ip("-n", peer_name, "link", "set", "veth1", "up")
        peer = NetNS(peer_name, "veth1", f"{subnet}.2")
        ns = NetNS(name, "veth0", f"{subnet}.1", peer=peer)
        peer.peer = ns
        return ns

    yield make

    for name in reversed(created):
        # Processes a test left in the namespace would keep it (and its veth) alive.
        pids = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)


# ----- results report for tools/feature-summary.py --------------------------------------------------------

RESULTS_ENV = "PYBPF_RESULTS"  # path of the JSON report to write; unset: no report
RESULTS_BEGIN = "pybpf-results-begin"
RESULTS_END = "pybpf-results-end"


class ResultsReport:
    """Records each test's outcome and skip reason on this kernel and writes them as JSON to $PYBPF_RESULTS.

    Inside a `pybpf vmtest` guest the file would land on the guest's tmpfs overlay and vanish, so there the
    report is also printed to stdout as one JSON line between RESULTS_BEGIN and RESULTS_END lines, which
    tools/test.sh keeps (and hides) while it shows the run.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self.tests: dict[str, dict[str, Any]] = {}
        self.text = ""

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        for item in session.items:
            self.tests[item.nodeid] = {
                "outcome": "not run",
                "reason": "",
                "kernel2": item.get_closest_marker("kernel2") is not None,
                "features": [str(a) for m in item.iter_markers("feature") for a in m.args],
            }

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        entry = self.tests.setdefault(
            report.nodeid, {"outcome": "not run", "reason": "", "kernel2": False, "features": []})
        if report.when == "call" or (report.when == "setup" and not report.passed):
            entry["outcome"] = self._outcome(report)
            entry["reason"] = self._reason(report)
            entry["duration"] = round(report.duration, 3)
        elif report.when == "teardown" and report.failed and entry["outcome"] != "failed":
            entry["outcome"] = "error"

    @staticmethod
    def _outcome(report: pytest.TestReport) -> str:
        if hasattr(report, "wasxfail"):
            return "xfailed" if report.skipped else "xpassed"
        if report.failed:
            return "failed" if report.when == "call" else "error"
        return str(report.outcome)

    @staticmethod
    def _reason(report: pytest.TestReport) -> str:
        if hasattr(report, "wasxfail"):
            return str(report.wasxfail)
        if report.skipped and isinstance(report.longrepr, tuple):
            return str(report.longrepr[2]).removeprefix("Skipped: ")
        return ""

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        import json

        from pybpf.vmtest.runner import in_guest

        report = {
            "format": 1,
            "kernel": os.uname().release,
            "guest": in_guest(),
            "exitstatus": int(exitstatus),
            "tests": self.tests,
        }
        self.text = json.dumps(report, separators=(",", ":"), sort_keys=True)
        try:
            Path(self.path).write_text(self.text + "\n")
        except OSError as exc:
            if not in_guest():
                raise pytest.UsageError(f"{RESULTS_ENV}={self.path}: cannot write the report: {exc}") from exc
        if not in_guest():
            self.text = ""  # the host reads the file; only the guest prints its report

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.text:
            terminalreporter.write_line(RESULTS_BEGIN)
            terminalreporter.write_line(self.text)
            terminalreporter.write_line(RESULTS_END)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "feature(name, ...): the kernel features a test exercises (for tools/feature-summary.py)")
    path = os.environ.get(RESULTS_ENV)
    if path and not hasattr(config, "workerinput"):  # xdist workers report through the controller
        config.pluginmanager.register(ResultsReport(path), "pybpf-results")
