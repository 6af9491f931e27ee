"""A tiny initramfs for the second-kernel runner: static busybox, the modules a 9p root needs, and `/init`.

`/init` loads the modules, mounts the host's root filesystem read-only over 9p, lays a tmpfs overlay on it
(so the guest can write anywhere and nothing reaches the host) and switches into it to run the per-run
scripts in the run directory named by the kernel command line (`pybpf_run=DIR`): `setup.sh` is
sourced before the switch, `command.sh` is run by the host's /bin/sh after it.
"""

from __future__ import annotations

import gzip
import lzma
import os
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pybpf.vmtest.kernels import KernelImage, VMTestError

__all__ = ["ROOT_MODULES", "Cpio", "build_initramfs", "find_busybox", "module_load_order"]

# Modules that must be loaded before the root can be mounted: the virtio PCI transport, 9p and overlayfs.
ROOT_MODULES = ("virtio_pci", "9pnet_virtio", "9p", "overlay")

# The 9p tag under which the runner exports the host root; /init mounts it.
ROOT_TAG = "pybpf_root"

BUSYBOX_PATHS = ("/bin/busybox", "/usr/bin/busybox")

_INIT = """#!/bin/busybox sh
B=/bin/busybox
export PATH=/bin
D=/dev
fail() {
    $B echo "pybpf-vmtest: init: $*" > $D/console
    $B echo "pybpf-vmtest-failed $*" > $D/ttyS3
    $B reboot -f
}
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
for m in @MODULES@; do
    $B insmod /modules/$m.ko || fail "cannot load module $m"
done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=@MSIZE@ @ROOT_TAG@ /lower \\
    || fail "cannot mount the host root over 9p"
$B mount -t tmpfs -o mode=0755 tmpfs /rw
$B mkdir /rw/upper /rw/work
$B mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work overlay /newroot \\
    || fail "cannot mount the overlay root"
for d in proc sys dev; do $B mount --move /$d /newroot/$d; done
D=/newroot/dev
[ -n "$pybpf_run" ] || fail "no pybpf_run= on the kernel command line"
# The per-run setup (mounts, devices, loopback) runs here, with busybox from RAM: faster than from 9p.
. "/newroot$pybpf_run/setup.sh" || fail "the per-run setup failed"
exec $B switch_root /newroot /bin/sh "$pybpf_run/command.sh"
"""

MSIZE = 512000  # the most Linux 6.1's virtio transport accepts


@dataclass
class Cpio:
    """Writer of the `newc` cpio format the kernel unpacks into its initramfs."""

    entries: list[bytes] = field(default_factory=list)
    _ino: int = 1

    def _add(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)) -> None:
        encoded = name.encode() + b"\0"
        fields = (self._ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev[0], rdev[1], len(encoded), 0)
        self._ino += 1
        header = b"070701" + b"".join(b"%08x" % value for value in fields)
        blob = header + encoded
        blob += b"\0" * (-len(blob) % 4)
        blob += data + b"\0" * (-len(data) % 4)
        self.entries.append(blob)

    def directory(self, name: str) -> None:
        self._add(name, 0o040755)

    def file(self, name: str, data: bytes, executable: bool = False) -> None:
        self._add(name, 0o100755 if executable else 0o100644, data)

    def char_device(self, name: str, major: int, minor: int) -> None:
        self._add(name, 0o020600, rdev=(major, minor))

    def getvalue(self) -> bytes:
        trailer = Cpio(_ino=0)
        trailer._add("TRAILER!!!", 0)
        return b"".join(self.entries) + trailer.entries[0]


def _module_deps(modules_dir: Path) -> dict[str, tuple[str, list[str]]]:
    """name -> (relative path, dependency paths) from modules.dep."""
    dep_file = modules_dir / "modules.dep"
    if not dep_file.exists():
        raise VMTestError(f"{dep_file} is missing: run `depmod -b ROOT RELEASE` on the kernel's tree")
    table: dict[str, tuple[str, list[str]]] = {}
    for line in dep_file.read_text().splitlines():
        path, _, deps = line.partition(":")
        table[_module_name(path)] = (path, deps.split())
    return table


def _module_name(path: str) -> str:
    name = os.path.basename(path)
    for suffix in (".xz", ".gz", ".zst"):
        name = name.removesuffix(suffix)
    return name.removesuffix(".ko").replace("-", "_")


def _builtin(modules_dir: Path) -> set[str]:
    path = modules_dir / "modules.builtin"
    if not path.exists():
        return set()
    return {_module_name(line.strip()) for line in path.read_text().splitlines() if line.strip()}


def module_load_order(modules_dir: Path, wanted: tuple[str, ...]) -> list[str]:
    """Relative paths of `wanted` modules and their dependencies, dependencies first; built-ins skipped."""
    table = _module_deps(modules_dir)
    builtin = _builtin(modules_dir)
    order: list[str] = []

    def visit(name: str) -> None:
        if name in builtin:
            return
        if name not in table:
            raise VMTestError(f"kernel module {name} is neither built in nor in {modules_dir}")
        path, deps = table[name]
        if path in order:
            return
        for dep in deps:
            visit(_module_name(dep))
        order.append(path)

    for name in wanted:
        visit(name.replace("-", "_"))
    return order


def _read_module(path: Path) -> bytes:
    # Busybox insmod cannot be relied on to decompress, so modules go in plain.
    data = path.read_bytes()
    if path.suffix == ".xz":
        return lzma.decompress(data)
    if path.suffix == ".gz":
        return gzip.decompress(data)
    if path.suffix == ".zst":
        zstd = shutil.which("zstd")
        if zstd is None:
            raise VMTestError(f"{path} is zstd-compressed: install the zstd package")
        return subprocess.run([zstd, "-dc", str(path)], capture_output=True, check=True).stdout
    return data


def find_busybox() -> Path:
    for candidate in BUSYBOX_PATHS:
        path = Path(candidate)
        if path.is_file() and _is_static(path):
            return path
    raise VMTestError("a static busybox is needed for the guest's init: apt-get install busybox-static")


def _is_static(path: Path) -> bool:
    """True when the ELF file has no PT_INTERP program header (no dynamic loader)."""
    with open(path, "rb") as f:
        ident = f.read(64)
        if ident[:4] != b"\x7fELF" or ident[4] != 2:
            return False
        (phoff,) = struct.unpack_from("<Q", ident, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", ident, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return all(struct.unpack_from("<I", table, i * phentsize)[0] != 3 for i in range(phnum))


def build_initramfs(kernel: KernelImage) -> bytes:
    """The initramfs image (uncompressed newc cpio) for booting `kernel` with a 9p root."""
    cpio = Cpio()
    for directory in ("bin", "dev", "proc", "sys", "lower", "rw", "newroot", "modules"):
        cpio.directory(directory)
    # The kernel opens /dev/console for init's stdio before devtmpfs is mounted.
    cpio.char_device("dev/console", 5, 1)
    cpio.file("bin/busybox", find_busybox().read_bytes(), executable=True)
    names: list[str] = []
    if kernel.modules_dir is not None:
        for relative in module_load_order(kernel.modules_dir, ROOT_MODULES):
            name = _module_name(relative)
            cpio.file(f"modules/{name}.ko", _read_module(kernel.modules_dir / relative))
            names.append(name)
    init = (
        _INIT.replace("@MODULES@", " ".join(names))
        .replace("@MSIZE@", str(MSIZE))
        .replace("@ROOT_TAG@", ROOT_TAG)
    )
    cpio.file("init", init.encode(), executable=True)
    return cpio.getvalue()
