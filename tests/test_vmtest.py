"""The second-kernel runner (`pybpf vmtest`): boots Debian's 6.1 kernel under qemu and runs commands in it.

Tests that boot a VM are marked slow and are skipped inside the guest itself (PYBPF_VMTEST=1).
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from pybpf.vmtest import VMTestError, ensure_debian_kernel, in_guest, kernel_from_vmlinuz, run
from pybpf.vmtest.initramfs import ROOT_MODULES, build_initramfs, module_load_order
from pybpf.vmtest.kernels import cache_dir, kernel_release, pvh_vmlinux

REPO = Path(__file__).resolve().parent.parent

needs_host = pytest.mark.skipif(in_guest(), reason="already inside the second-kernel guest: no nested VMs")


def _require_tools() -> None:
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed: run tools/install-kernel2.sh")
    if not any(Path(p).exists() for p in ("/bin/busybox", "/usr/bin/busybox")):
        pytest.skip("busybox-static is not installed: run tools/install-kernel2.sh")


@pytest.fixture(scope="module")
def kernel61() -> object:
    _require_tools()
    try:
        return ensure_debian_kernel("6.1")
    except VMTestError as exc:
        pytest.skip(f"Debian's 6.1 kernel cannot be fetched: {exc}")


class _TimedSink(io.StringIO):
    """Records when each piece of output arrived, to tell streaming from output delivered at exit."""

    def __init__(self) -> None:
        super().__init__()
        self.lock = threading.Lock()
        self.arrivals: list[tuple[float, str]] = []

    def write(self, text: str) -> int:
        with self.lock:
            self.arrivals.append((time.monotonic(), text))
            return super().write(text)

    def arrival_of(self, needle: str) -> float:
        seen = ""
        for when, text in self.arrivals:
            seen += text
            if needle in seen:
                return when
        raise AssertionError(f"{needle!r} never arrived; got {seen!r}")


# ----- no VM needed ---------------------------------------------------------------------------------------


def test_kernel_image_describes_cached_debian_kernel(kernel61: object) -> None:
    image = ensure_debian_kernel("6.1")
    assert image.release.startswith("6.1.")
    assert kernel_release(image.vmlinuz) == image.release
    assert image.modules_dir is not None and (image.modules_dir / "modules.dep").exists()
    assert str(image.vmlinuz).startswith(str(cache_dir()))
    # Described again from the image path alone, the modules are found beside it.
    assert kernel_from_vmlinuz(image.vmlinuz) == image


def test_initramfs_holds_busybox_init_and_root_modules(kernel61: object, tmp_path: Path) -> None:
    image = ensure_debian_kernel("6.1")
    assert image.modules_dir is not None
    order = module_load_order(image.modules_dir, ROOT_MODULES)
    names = [Path(p).name for p in order]
    # Dependencies come before their users.
    assert names.index("virtio.ko") < names.index("virtio_pci.ko")
    assert names.index("9pnet.ko") < names.index("9pnet_virtio.ko") < names.index("9p.ko")
    archive = tmp_path / "initramfs.cpio"
    archive.write_bytes(build_initramfs(image))
    busybox = shutil.which("busybox") or "/bin/busybox"
    listing = subprocess.run([busybox, "cpio", "-t"], stdin=archive.open("rb"), capture_output=True,
                             text=True, check=True).stdout.split()
    assert {"init", "bin/busybox", "dev/console", "modules/9p.ko", "modules/overlay.ko"} <= set(listing)


def test_pvh_vmlinux_is_an_elf_with_the_same_release(kernel61: object) -> None:
    image = ensure_debian_kernel("6.1")
    elf = pvh_vmlinux(image)
    if elf is None:
        pytest.skip("this kernel has no PVH entry (CONFIG_PVH): it boots through its bzImage")
    assert elf.read_bytes()[:4] == b"\x7fELF"
    assert image.release.encode() in elf.read_bytes()


# ----- booting the second kernel --------------------------------------------------------------------------


@needs_host
@pytest.mark.slow
def test_run_reports_kernel_mounts_streams_and_exit_status(kernel61: object, tmp_path: Path) -> None:
    (tmp_path / "marker").write_text("from-the-host\n")
    script = (
        "uname -r; echo early; sleep 2; echo late; "
        "cat /sys/bus/event_source/devices/kprobe/type; "
        "awk '{print \"mount\", $3, $2}' /proc/mounts; "
        "echo \"guest-env $PYBPF_VMTEST $EXTRA\"; "
        "cat marker; echo written > created; cat created; "
        "python3 -c 'import pybpf, os; print(\"pybpf-from\", os.path.dirname(os.path.dirname(pybpf.__file__)))'; "
        "echo to-stderr >&2; exit 3"
    )
    out, err = _TimedSink(), _TimedSink()
    status = run(["sh", "-c", script], debian="6.1", cwd=str(tmp_path), env={"EXTRA": "x y"},
                 stdout=out, stderr=err, timeout=600)
    text = out.getvalue()
    assert status == 3
    release = text.splitlines()[0]
    assert re.fullmatch(r"6\.1\.\d+-\d+-amd64", release), text
    # Output arrives while the command runs, not all at exit.
    assert out.arrival_of("late") - out.arrival_of("early") > 1.0
    kprobe_type = text.splitlines()[3]
    assert kprobe_type.isdigit(), text  # the kprobe PMU exists: perf-based kprobes can attach there
    mounts = {tuple(line.split()[1:3]) for line in text.splitlines() if line.startswith("mount ")}
    for fstype, target in (("tracefs", "/sys/kernel/tracing"), ("bpf", "/sys/fs/bpf"),
                           ("debugfs", "/sys/kernel/debug"), ("cgroup2", "/sys/fs/cgroup"),
                           ("proc", "/proc"), ("sysfs", "/sys")):
        assert (fstype, target) in mounts, (fstype, target, mounts)
    assert "guest-env 1 x y" in text
    assert "from-the-host" in text and "written" in text
    assert f"pybpf-from {REPO}" in text
    assert err.getvalue().strip().endswith("to-stderr")
    # The guest wrote into an overlay: nothing reached the host.
    assert not (tmp_path / "created").exists()


@needs_host
@pytest.mark.slow
def test_cli_prints_release_and_propagates_failure(kernel61: object) -> None:
    cli = [sys.executable, "-m", "pybpf.cli.main", "vmtest", "--debian", "6.1", "--"]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    ok = subprocess.run([*cli, "uname", "-r"], capture_output=True, text=True, env=env, timeout=600)
    assert ok.returncode == 0, ok.stderr
    assert re.fullmatch(r"6\.1\.\d+-\d+-amd64\n", ok.stdout), ok.stdout
    failed = subprocess.run([*cli, "false"], capture_output=True, text=True, env=env, timeout=600)
    assert failed.returncode == 1, failed.stderr


@needs_host
@pytest.mark.slow
def test_modules_load_and_netns_works_in_guest(kernel61: object) -> None:
    # veth, sch_ingress and cls_bpf are modules in Debian's 6.1: they must load (automatically) in the guest.
    script = (
        "ip netns add t1 && ip link add name va type veth peer name vb netns t1 && "
        "tc qdisc add dev va clsact && lsmod | awk '{print \"mod\", $1}'; ip netns del t1"
    )
    out = io.StringIO()
    status = run(["sh", "-c", script], debian="6.1", stdout=out, stderr=out, timeout=600)
    assert status == 0, out.getvalue()
    loaded = {line.split()[1] for line in out.getvalue().splitlines() if line.startswith("mod ")}
    assert {"veth", "sch_ingress"} <= loaded, out.getvalue()


@needs_host
@pytest.mark.slow
def test_timeout_raises(kernel61: object) -> None:
    with pytest.raises(VMTestError) as info:
        run(["sleep", "600"], debian="6.1", stdout=io.StringIO(), stderr=io.StringIO(), timeout=3)
    assert info.value.timed_out
