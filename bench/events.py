"""Ring buffer consumer throughput: pybpf iterator / callback / batch forms vs libbpf's C consumer and BCC.

A C producer (bench/c/getpid_loop.c) calls getpid() in a tight loop; bench/bpf/events.bpf.c writes one 64-byte record
per call into a 16 MiB ring buffer (72 bytes with the record header: ~233k records).

live:  the producer runs for --secs while the consumer reads.  delivered/s = records the consumer got per second of
       producing; lost/s = reservations that failed because the ring was full (the program's `dropped` counter, for
       every consumer: the C loader prints it too).  producer/s is the producer's getpid rate (it speeds up when the
       ring is full, since a failed reservation is cheaper than a record).
drain: the producer fills the ring with nobody reading, then each form drains the full ring; median of --repeat
       fills, records/s of consumer time.

    python bench/events.py [--secs 5] [--mode live|drain|all] [--repeat 5] [--only iterator,batch]
"""

from __future__ import annotations

import argparse
import os
import statistics
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
sys.path.insert(0, str(HERE))
from _common import build_c, c_loader  # noqa: E402

FORMS = ["iterator", "callback", "batch", "raw"]
LABELS = {"c": "libbpf C (ring_buffer__poll)", "iterator": "pybpf iterator (decoded)",
          "callback": "pybpf callback (decoded)", "batch": "pybpf read_batch (numpy)",
          "raw": "pybpf iterator (raw bytes)", "bcc": "BCC Python (ring_buffer_poll, decoded)"}

# BCC's equivalent of bench/bpf/events.bpf.c, read the way BCC's tools read events: a callback decoding each
# record with `b["events"].event(data)`. No kernel structs are touched (BCC compiles against 6.1's headers here).
BCC_CONSUMER = '''
import sys, time
from bcc import BPF
b = BPF(text="""
struct event { u64 seq; u64 ts; u32 pid; u32 cpu; char pad[40]; };
BPF_RINGBUF_OUTPUT(events, 4096);  /* pages: 16 MiB, as the pybpf and libbpf runs */
BPF_ARRAY(counters, u64, 2);       /* 0: seq, 1: dropped */
TRACEPOINT_PROBE(syscalls, sys_enter_getpid) {
    int zero = 0, one = 1;
    struct event *e = events.ringbuf_reserve(sizeof(*e));
    if (!e) { counters.atomic_increment(one); return 0; }
    u64 *seq = counters.lookup(&zero);
    e->seq = seq ? __sync_fetch_and_add(seq, 1) : 0;
    e->ts = bpf_ktime_get_ns();
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->cpu = bpf_get_smp_processor_id();
    events.ringbuf_submit(e, 0);
    return 0;
}
""")
delivered = 0
def on_event(ctx, data, size):
    global delivered
    ev = b["events"].event(data)
    if ev.seq >= 0:
        delivered += 1
b["events"].open_ring_buffer(on_event)
print("attached", time.monotonic_ns(), flush=True)
deadline = time.monotonic() + float(sys.argv[1])
while time.monotonic() < deadline:
    b.ring_buffer_poll(100)
b.ring_buffer_consume()
print("delivered", delivered, "dropped", b["counters"][1].value, flush=True)
'''


def start_producer(exe: Path, secs: float) -> subprocess.Popen[str]:
    return subprocess.Popen([str(exe), str(secs)], stdout=subprocess.PIPE, text=True)


def producer_result(proc: subprocess.Popen[str]) -> tuple[int, float]:
    out, _ = proc.communicate()
    _, calls, secs = out.split()
    return int(calls), float(secs)


def open_ring(coll: Any, form: str) -> Any:
    if form == "raw":
        return coll.ringbuf("events", decode=False)
    return coll.ringbuf("events", type="event")


def consume(rb: Any, form: str, running: Callable[[], bool], idle: float) -> int:
    """Reads with one form until running() is false and the ring is empty; returns records delivered."""
    delivered = 0
    if form in ("iterator", "raw"):
        seq_sum = 0
        while True:
            for ev in rb.events(timeout=idle):
                delivered += 1
                if form == "iterator":
                    seq_sum += ev.seq  # touch a decoded field so the record is really used
            if not running() and not rb.available:
                break
    elif form == "callback":
        def on_event(ev: Any) -> None:
            nonlocal delivered
            delivered += 1

        while running() or rb.available:
            rb.poll(idle, on_event)
    elif form == "batch":
        while running() or rb.available:
            arr = rb.read_batch()
            delivered += len(arr)
            if not len(arr):
                rb.wait(idle)
    return delivered


def run_live(obj: Path, producer: Path, secs: float, form: str) -> dict[str, float]:
    with pc.load(obj, set={"target_tgid": 0}) as coll:
        coll.attach_all()
        with open_ring(coll, form) as rb:
            if form == "batch":
                rb.read_batch()  # imports numpy (~0.2 s) before the producer starts, as an application would
            dropped0 = int(coll.variables["dropped"].value)
            proc = start_producer(producer, secs)
            delivered = consume(rb, form, lambda: proc.poll() is None, 0.1)
            calls, psecs = producer_result(proc)
            lost = int(coll.variables["dropped"].value) - dropped0
    return {"delivered/s": delivered / psecs, "lost/s": lost / psecs, "producer/s": calls / psecs,
            "delivered": delivered, "lost": lost}


def run_live_c(obj: Path, loader: Path, producer: Path, secs: float) -> dict[str, float]:
    cons = subprocess.Popen([str(loader), str(obj), "consume", "events", str(secs + 0.5)], stdout=subprocess.PIPE,
                            text=True)
    assert cons.stdout is not None
    cons.stdout.readline()  # "attached <ns>"
    proc = start_producer(producer, secs)
    calls, psecs = producer_result(proc)
    out, _ = cons.communicate()
    words = out.split()  # "events N dropped D"
    delivered, lost = int(words[1]), int(words[3])
    return {"delivered/s": delivered / psecs, "lost/s": lost / psecs, "producer/s": calls / psecs,
            "delivered": delivered, "lost": lost}


def run_live_bcc(producer: Path, secs: float, work: Path) -> dict[str, float] | str:
    """BCC's Python consumer, where BCC runs (bench/_bcc.py); the reason it cannot otherwise."""
    from _bcc import bcc_runtime

    python, env = bcc_runtime()
    if python is None:
        return str(env)
    assert isinstance(env, dict)
    script = work / "bcc_consumer.py"
    script.write_text(BCC_CONSUMER)
    cons = subprocess.Popen([python, str(script), str(secs + 0.5)], stdout=subprocess.PIPE, text=True, env=env)
    assert cons.stdout is not None
    if not cons.stdout.readline().startswith("attached"):
        cons.wait()
        return "BCC failed to compile or attach its program"
    proc = start_producer(producer, secs)
    calls, psecs = producer_result(proc)
    out, _ = cons.communicate()
    words = out.split()
    delivered, lost = int(words[1]), int(words[3])
    return {"delivered/s": delivered / psecs, "lost/s": lost / psecs, "producer/s": calls / psecs,
            "delivered": delivered, "lost": lost}


def run_drain(obj: Path, producer: Path, form: str, repeat: int) -> dict[str, float]:
    rates: list[float] = []
    counts: list[int] = []
    with pc.load(obj, set={"target_tgid": 0}) as coll:
        coll.attach_all()
        with open_ring(coll, form) as rb:
            for _ in range(repeat):
                rb.read_batch() if form == "batch" else rb.consume()  # start from an empty ring
                producer_result(start_producer(producer, 0.25))  # fills the 16 MiB ring (~70 ms at 3 M/s)
                t0 = time.perf_counter()
                n = consume(rb, form, lambda: False, 0)
                dt = time.perf_counter() - t0
                rates.append(n / dt)
                counts.append(n)
    return {"records/s": statistics.median(rates), "records": statistics.median(counts)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--secs", type=float, default=5.0, help="live mode: producer run time (default 5)")
    ap.add_argument("--mode", choices=["live", "drain", "all"], default="all")
    ap.add_argument("--repeat", type=int, default=5, help="drain mode: fills per form (median)")
    ap.add_argument("--only", default="", help=f"comma-separated forms: c,bcc,{','.join(FORMS)}")
    args = ap.parse_args()
    only = set(filter(None, args.only.split(",")))
    forms = [f for f in FORMS if not only or f in only]
    with tempfile.TemporaryDirectory() as tmp:
        obj = compile_bpf(HERE / "bpf" / "events.bpf.c", include=[HERE / "bpf"])
        producer = build_c("getpid_loop")
        out: list[str] = []
        if args.mode in ("live", "all"):
            live: dict[str, dict[str, float]] = {}
            if not only or "c" in only:
                loader = c_loader()
                live["c"] = run_live_c(obj, loader, producer, args.secs)
                print(f"c: {live['c']}", file=sys.stderr)
                time.sleep(0.5)
            for form in forms:
                live[form] = run_live(obj, producer, args.secs, form)
                print(f"{form}: {live[form]}", file=sys.stderr)
                time.sleep(0.5)
            if not only or "bcc" in only:
                bcc = run_live_bcc(producer, args.secs, Path(tmp))
                if isinstance(bcc, str):
                    out.append(f"BCC skipped: {bcc}")
                else:
                    live["bcc"] = bcc
                    print(f"bcc: {bcc}", file=sys.stderr)
            base = live["c"]["delivered/s"] if "c" in live else 0.0
            out += [f"\nLive: ring buffer, 64-byte record per getpid, {args.secs:g} s, {os.cpu_count()} CPUs\n",
                    "| consumer | delivered M/s | lost M/s | producer M calls/s | delivered vs C |",
                    "|---|---:|---:|---:|---:|"]
            for name, r in live.items():
                ratio = f"{r['delivered/s'] / base:.2f}x" if base else "-"
                out.append(f"| {LABELS[name]} | {r['delivered/s'] / 1e6:.2f} | {r['lost/s'] / 1e6:.2f} "
                           f"| {r['producer/s'] / 1e6:.2f} | {ratio} |")
        if args.mode in ("drain", "all"):
            drain = {}
            for form in forms:
                drain[form] = run_drain(obj, producer, form, args.repeat)
                print(f"drain {form}: {drain[form]}", file=sys.stderr)
            out += [f"\nDrain a pre-filled ring (~233k records), median of {args.repeat}\n",
                    "| consumer | M records/s | records |", "|---|---:|---:|"]
            for name, r in drain.items():
                out.append(f"| {LABELS[name]} | {r['records/s'] / 1e6:.2f} | {r['records']:.0f} |")
    print("\n".join(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
