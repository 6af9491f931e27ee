"""BCC as a benchmark peer, where it can run.

Debian's python3-bpfcc compiles its programs at run time against kernel headers, and this kernel has none.
It runs with Debian 6.1's headers merged into one tree (the split -common and -amd64 packages, as
`/lib/modules/*/build` and `source` would be) and pointed at by BCC_KERNEL_SOURCE. Its programs then see 6.1's
struct layouts, so the benchmarks give it only programs that read no kernel structs.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
from pathlib import Path

from pybpf._cache import cache_root

DEBIAN_PYTHON = "/usr/bin/python3"  # python3-bpfcc installs into Debian's interpreter, not a pyenv one
CACHE = Path(cache_root()) / "bcc-kernel-headers"


def _newest(pattern: str) -> Path | None:
    found = sorted(glob.glob(pattern))
    return Path(found[-1]) if found else None


def _merged_headers() -> Path | None:
    arch = _newest("/usr/src/linux-headers-*-amd64")
    common = _newest("/usr/src/linux-headers-*-common")
    if arch is None or common is None:
        return None
    tree = CACHE / arch.name
    if not (tree / "include" / "linux" / "kconfig.h").exists():
        shutil.rmtree(tree, ignore_errors=True)
        tree.mkdir(parents=True)
        # symlink trees: the arch package's generated headers win over the common ones
        subprocess.run(["cp", "-rs", f"{common}/.", f"{tree}/"], check=True)
        subprocess.run(["cp", "-rsf", f"{arch}/.", f"{tree}/"], check=True)
    return tree


def bcc_runtime() -> tuple[str, dict[str, str]] | tuple[None, str]:
    """(python interpreter, environment) that runs BCC here, or (None, the reason it cannot)."""
    if not Path(DEBIAN_PYTHON).exists():
        return None, "no Debian python3"
    probe = subprocess.run([DEBIAN_PYTHON, "-c", "import bcc"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return None, "python3-bpfcc is not installed"
    headers = _merged_headers()
    if headers is None:
        return None, "no linux-headers-*-amd64 package for BCC to compile against"
    env = dict(os.environ, BCC_KERNEL_SOURCE=str(headers))
    env.pop("PYTHONPATH", None)
    return DEBIAN_PYTHON, env
