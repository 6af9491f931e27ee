#!/usr/bin/env python3
"""Load time of the same objects through pybpf and through a small libbpf C loader, same run.

Cold: a fresh process with no pybpf cache (the kernel BTF index is rebuilt). Warm: a fresh process with
the cache. Both include the process start, as a user would see it; "in-process" is pybpf's own share.
    python3 bench/load.py [--runs N]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import bpf_object, c_loader, clear_pybpf_cache, median, python, run_until_line, table  # noqa: E402

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
)


def time_pybpf(obj: Path, cold: bool) -> tuple[float, float]:
    if cold:
        clear_pybpf_cache()
    ms, proc = run_until_line([python(), "-c", PYBPF_LOAD, str(obj)], "loaded")
    assert proc.stdout is not None
    inproc = int(proc.stdout.readline().split()[1]) / 1e6
    proc.wait()
    return ms, inproc


def time_libbpf(loader: Path, obj: Path) -> float:
    ms, proc = run_until_line([str(loader), str(obj), "load"], "loaded")
    proc.wait()
    return ms


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    loader = c_loader()
    rows = []
    for src in OBJECTS:
        obj = bpf_object(src)
        time_pybpf(obj, cold=False)  # compile caches, page cache
        lib = median([time_libbpf(loader, obj) for _ in range(args.runs)])
        cold = [time_pybpf(obj, cold=True) for _ in range(args.runs)]
        warm = [time_pybpf(obj, cold=False) for _ in range(args.runs)]
        cold_ms, warm_ms = median([c[0] for c in cold]), median([w[0] for w in warm])
        warm_in = median([w[1] for w in warm])
        rows.append([Path(src).name, f"{lib:.1f}", f"{cold_ms:.1f}", f"{cold_ms / lib:.1f}×",
                     f"{warm_ms:.1f}", f"{warm_ms / lib:.1f}×", f"{warm_in:.1f}"])
        print(f"{src}: libbpf {lib:.1f} ms, pybpf cold {cold_ms:.1f} ms, warm {warm_ms:.1f} ms "
              f"(in-process {warm_in:.1f} ms)", flush=True)
    print()
    print(table(["object", "libbpf C (ms)", "pybpf cold (ms)", "cold ratio", "pybpf warm (ms)", "warm ratio",
                 "pybpf in-process warm (ms)"], rows))


if __name__ == "__main__":
    main()
