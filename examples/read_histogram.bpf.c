// Histogram of read() sizes in log2 buckets (like bpftrace's hist(args.count)).
// Bucket i counts reads of [2^i, 2^(i+1)) bytes; bucket 0 also holds reads of 0 bytes.
// Run: sudo pybpf run examples/read_histogram.bpf.c --interval 1 --duration 5
//      (a map named *hist* with integer keys and values is drawn as bars, like BCC's print_log2_hist)
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_SLOTS 32

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);  // per-CPU: no atomic contention; sum the CPUs in user space
    __uint(max_entries, MAX_SLOTS);
    __type(key, __u32);
    __type(value, __u64);
} hist SEC(".maps");

static __always_inline __u32 log2l(__u64 v)
{
    __u32 r = 0;

    // bounded loop: the verifier accepts it because the trip count is a constant
    for (int i = 0; i < 63 && v > 1; i++) {
        v >>= 1;
        r++;
    }
    return r;
}

SEC("tracepoint/syscalls/sys_enter_read")
int read_size(struct trace_event_raw_sys_enter *ctx)
{
    __u32 slot = log2l(ctx->args[2]);  // args[2]: count
    __u64 *val;

    if (slot >= MAX_SLOTS)
        slot = MAX_SLOTS - 1;
    val = bpf_map_lookup_elem(&hist, &slot);
    if (val)
        (*val)++;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
