#!/usr/bin/env python3
"""Load time of the same objects through pybpf and through a small libbpf C loader, same run.

Process figures (spawn -> loaded, as a user sees it):
  python floor  `python3 -c pass` with the same interpreter: no Python tool can start faster;
  libbpf C      bench/c/loader.c: open + load, process start included;
  pybpf cold    a fresh process with no pybpf cache (the kernel BTF index is rebuilt, no load plan);
  pybpf warm    a fresh process with the cache (the object's load plan is replayed: pybpf.plan).
In-process figures (the load work alone):
  libbpf open+load  bpf_object__open_file + bpf_object__load, timed inside the C loader;
  pybpf import+load `import pybpf` + the first `pybpf.load()` of a fresh process, cold (no cache) and
                    warm (cache filled): the load time with the interpreter's own start-up left out;
  pybpf reload      `pybpf.load()` again in the same process after one load and close (module
                    imports in memory and the plan replayed, as in a long-running tool).
    python3 bench/load.py [--runs N]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (  # noqa: E402
    BUILD,
    add_interpreter_option,
    bpf_object,
    c_loader,
    clear_pybpf_cache,
    median,
    python,
    python_env,
    run_until_line,
    table,
)

OBJECTS = ["bench/bpf/startup.bpf.c", "tests/bpf/core_vmlinux.bpf.c", "tests/bpf/load_globals.bpf.c"]

PYBPF_LOAD = (
    "import time, sys\n"
    "t0 = time.monotonic_ns()\n"
    "import pybpf\n"
    "c = pybpf.load(sys.argv[1])\n"
    "t1 = time.monotonic_ns()\n"
    "print('loaded', t1, flush=True)\n"
    "print('inprocess', t1 - t0, flush=True)\n"
    "c.close()\n"
    "best = None\n"
    "for _ in range(3):\n"
    "    t2 = time.monotonic_ns()\n"
    "    c = pybpf.load(sys.argv[1])\n"
    "    t3 = time.monotonic_ns()\n"
    "    c.close()\n"
    "    best = t3 - t2 if best is None else min(best, t3 - t2)\n"
    "print('reload', best, flush=True)\n"
)


def time_python_floor() -> float:
    start = time.monotonic_ns()
    subprocess.run([python(), "-c", "pass"], check=True, env=python_env(BUILD / "pycache"))
    return (time.monotonic_ns() - start) / 1e6


def time_pybpf(obj: Path, cold: bool) -> tuple[float, float, float]:
    """(spawn -> loaded ms, import + first load ms, best reload ms)."""
    if cold:
        clear_pybpf_cache()
    ms, proc = run_until_line([python(), "-c", PYBPF_LOAD, str(obj)], "loaded", env=python_env(BUILD / "pycache"))
    assert proc.stdout is not None
    inproc = int(proc.stdout.readline().split()[1]) / 1e6
    reload = int(proc.stdout.readline().split()[1]) / 1e6
    proc.wait()
    return ms, inproc, reload


def time_libbpf(loader: Path, obj: Path) -> tuple[float, float]:
    """(spawn -> loaded ms, open+load ms inside the loader)."""
    ms, proc = run_until_line([str(loader), str(obj), "load"], "loaded")
    assert proc.stdout is not None
    openload = int(proc.stdout.readline().split()[1]) / 1e6
    proc.wait()
    return ms, openload


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    add_interpreter_option(ap)
    args = ap.parse_args()
    loader = c_loader()
    rows = []
    for src in OBJECTS:
        obj = bpf_object(src)
        time_pybpf(obj, cold=False)  # compile caches, page cache
        floor = median([time_python_floor() for _ in range(args.runs)])
        lib_runs = [time_libbpf(loader, obj) for _ in range(args.runs)]
        lib, lib_in = median([r[0] for r in lib_runs]), median([r[1] for r in lib_runs])
        cold = [time_pybpf(obj, cold=True) for _ in range(args.runs)]
        warm = [time_pybpf(obj, cold=False) for _ in range(args.runs)]
        cold_ms, warm_ms = median([c[0] for c in cold]), median([w[0] for w in warm])
        cold_in, warm_in, reload = median([c[1] for c in cold]), median([w[1] for w in warm]), median([w[2] for w in warm])
        rows.append([
            Path(src).name, f"{floor:.1f}", f"{lib:.1f}",
            f"{cold_ms:.1f}", f"{cold_ms / lib:.1f}×", f"{warm_ms:.1f}", f"{warm_ms / lib:.1f}×",
            f"{lib_in:.1f}", f"{cold_in:.1f}", f"{cold_in / lib_in:.1f}×", f"{warm_in:.1f}", f"{warm_in / lib_in:.1f}×",
            f"{reload:.1f}", f"{reload / lib_in:.1f}×",
        ])
        print(f"{src}: python -c pass {floor:.1f} ms; libbpf {lib:.1f} ms (open+load {lib_in:.1f}); pybpf cold "
              f"{cold_ms:.1f} ms, warm {warm_ms:.1f} ms (import+load cold {cold_in:.1f}, warm {warm_in:.1f}; reload "
              f"{reload:.1f})", flush=True)
    print()
    print(table(["object", "python3 -c pass (ms)", "libbpf C (ms)", "pybpf cold (ms)", "cold ratio",
                 "pybpf warm (ms)", "warm ratio", "libbpf open+load (ms)", "pybpf import+load cold (ms)", "ratio",
                 "pybpf import+load warm (ms)", "ratio", "pybpf reload (ms)", "reload ratio"], rows))


if __name__ == "__main__":
    main()
