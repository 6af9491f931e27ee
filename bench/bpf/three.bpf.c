// Benchmark object: a three-probe tool (syscall tracepoints) counting into one map.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 3);
    __type(key, __u32);
    __type(value, __u64);
} counts SEC(".maps");

static __always_inline void bump(__u32 idx)
{
    __u64 *v = bpf_map_lookup_elem(&counts, &idx);
    if (v)
        __sync_fetch_and_add(v, 1);
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(void *ctx) { bump(0); return 0; }

SEC("tracepoint/syscalls/sys_enter_read")
int on_read(void *ctx) { bump(1); return 0; }

SEC("tracepoint/syscalls/sys_enter_write")
int on_write(void *ctx) { bump(2); return 0; }

char LICENSE[] SEC("license") = "GPL";
