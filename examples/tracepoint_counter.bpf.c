// Count openat() calls per process name with a tracepoint.
// Run:    sudo pybpf run examples/tracepoint_counter.bpf.c --duration 5
//         (prints the `counts` map as a table, busiest process first; --json for JSON lines)
// Python: with pybpf.load("examples/tracepoint_counter.bpf.c") as obj: obj.attach_all(); ...; obj.maps["counts"].items()
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

struct comm {
    char comm[16];  // the key's fields become the table's key columns
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1024);
    __type(key, struct comm);  // process name
    __type(value, __u64);      // number of openat() calls
} counts SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_openat")
int count_openat(struct trace_event_raw_sys_enter *ctx)
{
    struct comm key = {};
    __u64 one = 1, *val;

    bpf_get_current_comm(&key.comm, sizeof(key.comm));
    val = bpf_map_lookup_elem(&counts, &key);
    if (val)
        __sync_fetch_and_add(val, 1);  // other CPUs may update the same entry
    else
        bpf_map_update_elem(&counts, &key, &one, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
