"""Shared helpers for the benchmarks: build the libbpf peer loader and BPF objects, time subprocesses."""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "bench" / "build"


def c_loader() -> Path:
    """The small libbpf C loader (bench/c/loader.c), built once."""
    out = BUILD / "loader"
    src = ROOT / "bench" / "c" / "loader.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        BUILD.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-o", str(out), str(src), "-lbpf"], check=True)
    return out


def bpf_object(path: str | Path) -> Path:
    """Compile a .bpf.c through pybpf's toolchain (cached) and return the object."""
    from pybpf.toolchain import compile as compile_c

    return Path(compile_c(ROOT / path))


def run_until_line(argv: list[str], prefix: str, env: dict[str, str] | None = None,
                   timeout: float = 30.0) -> tuple[float, subprocess.Popen[str]]:
    """Start argv; return (ms from spawn to the CLOCK_MONOTONIC timestamp it prints after `prefix`, proc)."""
    start = time.monotonic_ns()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"{argv[0]} exited before printing {prefix!r}: {err[-2000:]}")
        if line.startswith(prefix):
            return (int(line.split()[1]) - start) / 1e6, proc
    proc.kill()
    raise RuntimeError(f"{argv} timed out")


def median(values: list[float]) -> float:
    return statistics.median(values)


def python() -> str:
    return sys.executable


def clear_pybpf_cache() -> None:
    cache = Path(os.environ.get("PYBPF_CACHE") or Path.home() / ".cache" / "pybpf")
    shutil.rmtree(cache / "btf-index", ignore_errors=True)


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
