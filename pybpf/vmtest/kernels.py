"""Kernels for the second-kernel runner: Debian's packaged kernels, fetched once and cached unpacked.

A Debian kernel package is downloaded with `apt-get download` and unpacked with `dpkg-deb -x` into
the cache, never installed on the host. `depmod` is run on the unpacked tree because the package's
maintainer scripts (which would do it) are not run.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import io
import lzma
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from pybpf._cache import cache_root

__all__ = [
    "KernelImage",
    "VMTestError",
    "cache_dir",
    "ensure_debian_kernel",
    "kernel_from_vmlinuz",
    "kernel_release",
    "pvh_vmlinux",
]


class VMTestError(RuntimeError):
    """The second-kernel runner could not fetch a kernel or boot it (not a failure of the command)."""

    def __init__(self, message: str, timed_out: bool = False) -> None:
        super().__init__(message)
        self.timed_out = timed_out


@dataclass(frozen=True)
class KernelImage:
    """A bootable kernel: its image and, when it has loadable modules, its `/lib/modules/<release>` tree."""

    release: str
    vmlinuz: Path
    modules_dir: Path | None
    config: Path | None = None


def cache_dir() -> Path:
    """Where kernels are kept: `kernels/` in pybpf's cache (pybpf._cache.cache_root)."""
    return Path(cache_root()) / "kernels"


def kernel_release(vmlinuz: str | os.PathLike[str]) -> str:
    """The release string (`uname -r`) stored in an x86 bzImage's setup header."""
    with open(vmlinuz, "rb") as f:
        header = f.read(0x210)
        if len(header) < 0x210 or header[0x202:0x206] != b"HdrS":
            raise VMTestError(f"{vmlinuz}: not an x86 bzImage (no 'HdrS' setup header)")
        (pointer,) = struct.unpack_from("<H", header, 0x20E)
        f.seek(pointer + 0x200)
        text = f.read(256).split(b"\0", 1)[0].decode("ascii", "replace")
    if not text:
        raise VMTestError(f"{vmlinuz}: the setup header holds no kernel version string")
    return text.split()[0]


def kernel_from_vmlinuz(vmlinuz: str | os.PathLike[str], modules_dir: str | os.PathLike[str] | None = None) -> KernelImage:
    """Describe a kernel image given by path; its modules are looked for beside it (`../lib/modules/<release>`)
    and in the host's `/lib/modules/<release>` when `modules_dir` is not given."""
    image = Path(vmlinuz).resolve()
    if not image.is_file():
        raise VMTestError(f"kernel image {vmlinuz} does not exist")
    release = kernel_release(image)
    mods: Path | None = Path(modules_dir).resolve() if modules_dir is not None else None
    if mods is None:
        for candidate in (image.parent.parent / "lib" / "modules" / release, Path("/lib/modules") / release):
            if (candidate / "modules.order").exists() or (candidate / "kernel").is_dir():
                mods = candidate
                break
    if mods is not None and not mods.is_dir():
        raise VMTestError(f"modules directory {mods} does not exist")
    config: Path | None = image.parent / f"config-{release}"
    if config is not None and not config.exists():
        config = None
    return KernelImage(release=release, vmlinuz=image, modules_dir=mods, config=config)


def _image_in(root: Path) -> KernelImage | None:
    """The kernel unpacked under `root` (a cache entry), if complete."""
    if not (root / ".complete").exists():
        return None
    images = sorted((root / "boot").glob("vmlinuz-*"))
    if not images:
        return None
    release = images[0].name.removeprefix("vmlinuz-")
    mods = root / "lib" / "modules" / release
    config = root / "boot" / f"config-{release}"
    return KernelImage(release, images[0], mods if mods.is_dir() else None, config if config.exists() else None)


def _abi_key(name: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", name))


def _package_pattern(version: str) -> re.Pattern[str]:
    # The generic flavour only: -cloud lacks 9p and -rt changes scheduling behaviour.
    return re.compile(rf"^linux-image-{re.escape(version)}(?:\.\d+)*(?:-\d+|\+deb\d+)?-amd64-unsigned$")


def _cached(version: str) -> list[tuple[str, KernelImage]]:
    pattern = _package_pattern(version)
    found = []
    root = cache_dir()
    if root.is_dir():
        for entry in root.iterdir():
            if pattern.match(entry.name):
                image = _image_in(entry)
                if image is not None:
                    found.append((entry.name, image))
    return sorted(found, key=lambda item: _abi_key(item[0]))


def _apt_candidates(version: str) -> list[str]:
    pattern = _package_pattern(version)
    query = f"^linux-image-{re.escape(version)}.*-amd64-unsigned$"
    try:
        out = subprocess.run(
            ["apt-cache", "search", "--names-only", query], capture_output=True, text=True, check=False
        ).stdout
    except FileNotFoundError:
        raise VMTestError("apt-cache is missing: Debian kernels are fetched with apt (run on Debian/Ubuntu)")
    names = [line.split(" - ", 1)[0].strip() for line in out.splitlines()]
    return sorted((n for n in names if pattern.match(n)), key=_abi_key)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _download(package: str, into: Path) -> Path:
    # apt's sandbox user cannot write into a root-owned temporary directory; downloading as root is fine.
    result = subprocess.run(
        ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", package],
        cwd=into,
        capture_output=True,
        text=True,
        check=False,
    )
    debs = list(into.glob("*.deb"))
    if result.returncode != 0 or not debs:
        raise VMTestError(
            f"apt-get download {package} failed (exit {result.returncode}): {result.stderr.strip()[-800:]}"
        )
    return debs[0]


def ensure_debian_kernel(version: str = "6.1") -> KernelImage:
    """The newest cached Debian `linux-image-<version>-*-amd64-unsigned`; fetched and unpacked on first use.

    A kernel already in the cache is used without asking apt. Delete the cache entry to pick up a newer one.
    """
    if not re.fullmatch(r"\d+\.\d+", version):
        raise VMTestError(f"Debian kernel version must look like '6.1', not {version!r}")
    cached = _cached(version)
    if cached:
        return cached[-1][1]
    root = cache_dir()
    with _locked(root / ".lock"):
        cached = _cached(version)  # another process may have fetched it while we waited
        if cached:
            return cached[-1][1]
        errors: list[str] = []
        for attempt in range(2):
            if attempt:
                # apt's lists may be missing or stale (naming packages the archive no longer has).
                update = subprocess.run(["apt-get", "update", "-qq"], capture_output=True, text=True, check=False)
                if update.returncode != 0:
                    errors.append(f"apt-get update failed: {update.stderr.strip()[-800:]}")
                    break
            candidates = _apt_candidates(version)
            # Newest first; an older ABI is a fallback when the newest has left the mirror.
            for package in reversed(candidates[-3:]):
                try:
                    return _fetch(package, root)
                except VMTestError as exc:
                    errors.append(str(exc))
        if not errors:
            errors.append(f"apt knows no package linux-image-{version}.*-amd64-unsigned: "
                          f"add a Debian suite that ships Linux {version} to apt's sources")
        raise VMTestError("could not fetch a Debian kernel:\n  " + "\n  ".join(errors))


def _fetch(package: str, root: Path) -> KernelImage:
    for tool in ("dpkg-deb", "depmod"):
        if shutil.which(tool) is None and not Path("/sbin", tool).exists():
            raise VMTestError(f"{tool} is missing: run tools/install-kernel2.sh (packages dpkg, kmod)")
    final = root / package
    with tempfile.TemporaryDirectory(prefix=f".{package}.", dir=root) as tmp:
        work = Path(tmp)
        os.chmod(work, 0o755)
        deb = _download(package, work)
        tree = work / "tree"
        subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True, capture_output=True)
        deb.unlink()
        releases = [p.name for p in (tree / "lib" / "modules").iterdir()] if (tree / "lib" / "modules").is_dir() else []
        for release in releases:
            depmod = shutil.which("depmod") or "/sbin/depmod"
            result = subprocess.run([depmod, "-b", str(tree), release], capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise VMTestError(f"depmod for {release} failed: {result.stderr.strip()[-800:]}")
        # Only the image, its config and modules are needed; firmware and docs are not.
        shutil.rmtree(tree / "usr", ignore_errors=True)
        (tree / ".complete").write_text(package + "\n")
        if final.exists():
            shutil.rmtree(final)
        tree.rename(final)
    image = _image_in(final)
    if image is None:
        raise VMTestError(f"{package} holds no /boot/vmlinuz-*")
    return image


# XEN_ELFNOTE_PHYS32_ENTRY: the 32-bit PVH entry point, which lets qemu boot an uncompressed vmlinux directly.
_PVH_NOTE_TYPE = 18


def _has_pvh_note(elf: bytes) -> bool:
    if elf[:4] != b"\x7fELF" or elf[4] != 2 or elf[5] != 1:
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    for index in range(phnum):
        p_type, _, p_offset, _, _, p_filesz = struct.unpack_from("<IIQQQQ", elf, phoff + index * phentsize)
        if p_type != 4:  # PT_NOTE
            continue
        pos, end = p_offset, p_offset + p_filesz
        while pos + 12 <= end:
            namesz, descsz, note_type = struct.unpack_from("<III", elf, pos)
            name = elf[pos + 12 : pos + 12 + namesz].rstrip(b"\0")
            if name == b"Xen" and note_type == _PVH_NOTE_TYPE:
                return True
            pos += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
    return False


def _decompress_payload(image: bytes) -> bytes | None:
    """The vmlinux ELF inside a bzImage, for the compressions Python (or zstd) can undo; else None."""
    if len(image) < 0x250 or image[0x202:0x206] != b"HdrS":
        return None
    setup_sects = image[0x1F1] or 4
    offset, length = struct.unpack_from("<II", image, 0x248)
    start = (setup_sects + 1) * 512 + offset
    payload = image[start : start + length]
    try:
        if payload.startswith(b"\xfd7zXZ\x00"):
            return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(payload)
        if payload.startswith(b"\x1f\x8b"):
            return gzip.GzipFile(fileobj=io.BytesIO(payload)).read()
        if payload.startswith(b"\x28\xb5\x2f\xfd") and shutil.which("zstd"):
            return subprocess.run(["zstd", "-dcq"], input=payload, capture_output=True, check=True).stdout
    except (lzma.LZMAError, OSError, EOFError, subprocess.CalledProcessError):
        return None
    return None


def pvh_vmlinux(kernel: KernelImage) -> Path | None:
    """The kernel's uncompressed vmlinux, cached, when it has a PVH entry point (`CONFIG_PVH=y`); else None.

    Booting it skips the bzImage's self-decompression, which takes ~6 s under TCG for an xz-packed kernel.
    """
    data = kernel.vmlinuz.read_bytes()
    digest = hashlib.sha256(data).hexdigest()[:24]
    target = cache_dir() / "vmlinux" / f"{kernel.release}-{digest}.elf"
    marker = target.with_suffix(".none")
    if target.exists():
        return target
    if marker.exists():
        return None
    elf = _decompress_payload(data)
    target.parent.mkdir(parents=True, exist_ok=True)
    if elf is None or not _has_pvh_note(elf):
        marker.touch()
        return None
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".vmlinux-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(elf)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return target
