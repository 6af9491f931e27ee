"""Shared helpers for the benchmarks: build the libbpf peer loader and BPF objects, time subprocesses."""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

from pybpf._cache import cache_root

ROOT = Path(__file__).resolve().parent.parent
BUILD = ROOT / "bench" / "build"


def build_c(name: str, libs: tuple[str, ...] = ()) -> Path:
    """bench/c/NAME.c built with gcc into bench/build (again only when the source is newer)."""
    out = BUILD / name
    src = ROOT / "bench" / "c" / f"{name}.c"
    if not out.exists() or out.stat().st_mtime < src.stat().st_mtime:
        BUILD.mkdir(parents=True, exist_ok=True)
        subprocess.run(["gcc", "-O2", "-o", str(out), str(src), *libs], check=True)
    return out


def c_loader() -> Path:
    """The small libbpf C loader (bench/c/loader.c)."""
    return build_c("loader", ("-lbpf",))


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


SYSTEM_PYTHON_FLAG = "--system-python"


def python() -> str:
    """The interpreter the pybpf rows run on: a venv of this Python (see `bench_venv`), or this Python itself
    when the benchmark was given --system-python."""
    if SYSTEM_PYTHON_FLAG in sys.argv:
        return sys.executable
    return str(bench_venv())


def bench_venv() -> Path:
    """A venv of this same interpreter that sees the same packages (pybpf, click, rich, numpy) through a .pth
    of plain paths, as an installed tool would, but does not run the base site-packages' .pth start-up hooks.

    Why: this sandbox's interpreter runs a certifi CA injector from a .pth in every process (~40 ms on this
    VM, more than libbpf's whole load). No user's machine has it, and tools installed with pipx or in a venv
    never run it; with --system-python the benchmarks measure it anyway."""
    import sysconfig

    venv = Path(cache_root()) / "bench-venv"
    exe = venv / "bin" / "python3"
    paths = [str(ROOT), *dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])]
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    pth = venv / "lib" / f"python{version}" / "site-packages" / "pybpf-bench.pth"
    if not exe.exists() or not pth.exists() or pth.read_text().split() != paths:
        subprocess.run([sys.executable, "-m", "venv", "--clear", "--without-pip", str(venv)], check=True)
        pth.write_text("\n".join(paths) + "\n")
    return exe


def python_env(pycache: Path) -> dict[str, str]:
    """Python children run as an installed package would: with bytecode caches (written by the warm-up
    run into the benchmark's own directory, so the source tree stays clean), whatever this shell says."""
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    return env


def add_interpreter_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(SYSTEM_PYTHON_FLAG, action="store_true",
                        help="run pybpf on this interpreter, with its site-packages' .pth hooks, instead of "
                             "the benchmark venv")


def clear_pybpf_cache() -> None:
    cache = Path(cache_root())
    shutil.rmtree(cache / "btf-index", ignore_errors=True)
    shutil.rmtree(cache / "plans", ignore_errors=True)


def table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)
