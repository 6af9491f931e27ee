"""Ring buffer consumer throughput: pybpf iterator / callback / batch forms vs libbpf's C consumer.

A C producer (bench/c/getpid_loop.c) calls getpid() in a tight loop; bench/bpf/events.bpf.c writes one 64-byte record
per call into a 16 MiB ring buffer.  delivered/s = records the consumer got per second of producing;
lost/s = (records the program produced, its `seq` global, or the producer's call count for the C peer) - delivered.

    python bench/events.py [--secs 5]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pybpf.collection as pc
from pybpf.toolchain import compile as compile_bpf

HERE = Path(__file__).resolve().parent


def build_c(name: str, out_dir: Path, libs: list[str]) -> Path:
    exe = out_dir / name
    subprocess.run(["gcc", "-O2", "-o", str(exe), str(HERE / "c" / f"{name}.c"), *libs], check=True)
    return exe


def start_producer(exe: Path, secs: float) -> subprocess.Popen[str]:
    return subprocess.Popen([str(exe), str(secs)], stdout=subprocess.PIPE, text=True)


def producer_result(proc: subprocess.Popen[str]) -> tuple[int, float]:
    out, _ = proc.communicate()
    _, calls, secs = out.split()
    return int(calls), float(secs)


def run_pybpf(obj: Path, producer: Path, secs: float, form: str) -> dict[str, float]:
    with pc.load(obj, set={"target_tgid": 0}) as coll:
        coll.attach_all()
        rb = coll.ringbuf("events", type="event")
        delivered = 0
        proc = start_producer(producer, secs)
        if form == "iterator":
            for ev in rb.events(timeout=0.3):
                delivered += 1
                if ev.seq < 0:  # touch a decoded field so decoding is not optimised away
                    break
        elif form == "callback":
            def on_event(ev: Any) -> None:
                nonlocal delivered
                delivered += 1
            while proc.poll() is None or rb.available:
                rb.poll(0.1, on_event)
        elif form == "batch":
            while proc.poll() is None or rb.available:
                arr = rb.read_batch()
                delivered += len(arr)
                if not len(arr):
                    rb.wait(0.1)
        calls, psecs = producer_result(proc)
        produced = calls  # the producer is the only heavy getpid caller; `seq` counts only reserved records
        rb.close()
    return {"delivered/s": delivered / psecs, "lost/s": (produced - delivered) / psecs, "producer/s": calls / psecs,
            "delivered": delivered, "produced": produced}


def run_c(obj: Path, loader: Path, producer: Path, secs: float) -> dict[str, float]:
    cons = subprocess.Popen([str(loader), str(obj), "consume", "events", str(secs + 0.5)], stdout=subprocess.PIPE,
                            text=True)
    assert cons.stdout is not None
    cons.stdout.readline()  # "attached <ns>"
    proc = start_producer(producer, secs)
    calls, psecs = producer_result(proc)
    out, _ = cons.communicate()
    delivered = int(out.split()[-1])
    return {"delivered/s": delivered / psecs, "lost/s": (calls - delivered) / psecs, "producer/s": calls / psecs,
            "delivered": delivered, "produced": calls}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--secs", type=float, default=5.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        # clang emits BTF only for types reachable from globals/functions: anchor `struct event` so the reader can
        # decode by name (libbpf programs do the same, e.g. `struct event *unused __attribute__((unused))`).
        src = Path(tmp) / "events.bpf.c"
        src.write_text((HERE / "bpf" / "events.bpf.c").read_text() + "\nstruct event *event_btf_anchor;\n")
        obj = compile_bpf(src, include=[HERE / "bpf"])
        producer = build_c("getpid_loop", Path(tmp), [])
        loader = build_c("loader", Path(tmp), ["-lbpf"])
        rows: dict[str, dict[str, float]] = {}
        runs: list[tuple[str, Callable[[], dict[str, float]]]] = [
            ("libbpf C (ring_buffer__poll)", lambda: run_c(obj, loader, producer, args.secs)),
            ("pybpf iterator (decoded)", lambda: run_pybpf(obj, producer, args.secs, "iterator")),
            ("pybpf callback (decoded)", lambda: run_pybpf(obj, producer, args.secs, "callback")),
            ("pybpf read_batch (numpy)", lambda: run_pybpf(obj, producer, args.secs, "batch")),
        ]
        for name, fn in runs:
            rows[name] = fn()
            print(f"{name}: {rows[name]}", file=sys.stderr)
            time.sleep(0.5)
    base = rows["libbpf C (ring_buffer__poll)"]["delivered/s"]
    print(f"\nRing buffer, 64-byte record per getpid, {args.secs:.0f} s, {os.cpu_count()} CPUs\n")
    print("| consumer | delivered M/s | lost M/s | producer M calls/s | delivered vs C |")
    print("|---|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['delivered/s'] / 1e6:.2f} | {r['lost/s'] / 1e6:.2f} | {r['producer/s'] / 1e6:.2f} "
              f"| {r['delivered/s'] / base:.2f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
