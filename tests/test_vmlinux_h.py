"""The vmlinux.h pybpf writes (pybpf.btf.cdump through pybpf.toolchain) compiles every BPF program of the
project that includes vmlinux.h, as bpftool's `btf dump ... format c` does: each file against both headers."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from pybpf.btf.cdump import vmlinux_header
from pybpf.toolchain import cache_root, compile_with_info, ensure_vmlinux_h

ROOT = Path(__file__).resolve().parent.parent
KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
SOURCE_GLOBS = ("tests/bpf/*.bpf.c", "examples/*.bpf.c", "bench/bpf/*.bpf.c", "pybpf/tools/**/*.bpf.c")
_INCLUDE = re.compile(r'^\s*#\s*include\s*([<"])([^>"]+)[>"]', re.M)


def _includes_vmlinux_h(source: Path, seen: set[Path] | None = None) -> bool:
    """Whether the file or a local header it includes (transitively, "..." form) includes vmlinux.h."""
    seen = set() if seen is None else seen
    if source in seen:
        return False
    seen.add(source)
    for quote, name in _INCLUDE.findall(source.read_text(errors="replace")):
        if os.path.basename(name) == "vmlinux.h":
            return True
        header = source.parent / name
        if quote == '"' and header.is_file() and _includes_vmlinux_h(header.resolve(), seen):
            return True
    return False


SOURCES = sorted(
    path.relative_to(ROOT).as_posix()
    for pattern in SOURCE_GLOBS
    for path in ROOT.glob(pattern)
    if _includes_vmlinux_h(path)
)


def _stable_copy(kind: str, text: str) -> Path:
    """`text` as vmlinux.h in pybpf's cache under a content-addressed directory: a stable path, so the
    compile cache answers on later runs while the header is unchanged."""
    digest = hashlib.blake2b(text.encode(), digest_size=16).hexdigest()
    path = cache_root() / "peer" / f"{kind}-{digest}" / "vmlinux.h"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".vmlinux.h.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
    return path


def _bpftool_header() -> Path:
    bpftool = shutil.which("bpftool")
    if bpftool is None:
        pytest.skip("bpftool is not installed (needed only as the peer header)")
    dump = subprocess.run([bpftool, "btf", "dump", "file", str(KERNEL_BTF), "format", "c"],
                          capture_output=True, text=True, check=False)
    if dump.returncode != 0:
        pytest.fail(f"bpftool btf dump failed: {dump.stderr.strip()}")
    return _stable_copy("bpftool", dump.stdout)


@pytest.fixture(scope="module")
def generated() -> str:
    """What pybpf.btf.cdump writes for this kernel now (not a cached copy)."""
    if not KERNEL_BTF.is_file():
        pytest.skip("kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF) is missing")
    return vmlinux_header()


@pytest.fixture(scope="module")
def pybpf_header(generated: str) -> Path:
    toolchain_header = ensure_vmlinux_h()
    return toolchain_header if toolchain_header.read_text() == generated else _stable_copy("pybpf", generated)


@pytest.fixture(scope="module")
def bpftool_header() -> Path:
    return _bpftool_header()


def test_sources_were_found() -> None:
    assert len(SOURCES) >= 10, SOURCES  # the globs still match the tree
    assert "tests/bpf/link_tp.bpf.c" in SOURCES


def test_toolchain_header_is_current(generated: str) -> None:
    # pybpf.toolchain caches vmlinux.h by BTF hash and generator tag: a changed generator needs a new tag
    assert ensure_vmlinux_h().read_text() == generated, (
        "the cached vmlinux.h differs from what pybpf.btf.cdump writes now: bump _GENERATOR_TAG in "
        "pybpf/toolchain/vmlinux.py")


@pytest.mark.parametrize("header", ["pybpf", "bpftool"])
@pytest.mark.parametrize("source", SOURCES)
def test_compiles_against_vmlinux_h(request: pytest.FixtureRequest, source: str, header: str, tmp_path: Path) -> None:
    # Each header from its own fixture: a missing bpftool skips only the peer's cases.
    vmlinux_h: Path = request.getfixturevalue(f"{header}_header")
    src = ROOT / source
    result = compile_with_info(src, tmp_path / "out.o", include=[vmlinux_h.parent, src.parent])
    assert result.path.stat().st_size > 0
    # the header under test was the one used: pybpf's generated one is added only when no -I dir has one
    include_flags = [flag for flag in result.argv if flag.startswith("-I")]
    assert f"-I{vmlinux_h.parent}" in include_flags
    if header == "bpftool":
        assert f"-I{ensure_vmlinux_h().parent}" not in include_flags
