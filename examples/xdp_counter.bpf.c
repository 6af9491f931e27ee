// Count packets and bytes arriving on an interface with XDP, then let them pass.
// Run:    sudo pybpf run examples/xdp_counter.bpf.c --iface eth0 --duration 5   (--netns NAME for a namespace's)
//         (a one-entry array prints as a scalar: "stats  packets=… bytes=…", summed over CPUs)
// Python: coll.programs["xdp_count"].attach(iface="eth0")
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct totals {
    __u64 packets;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);  // one slot per CPU: no locking on the fast path
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, struct totals);
} stats SEC(".maps");

SEC("xdp")
int xdp_count(struct xdp_md *ctx)
{
    __u32 key = 0;
    struct totals *t = bpf_map_lookup_elem(&stats, &key);

    if (t) {
        t->packets++;
        t->bytes += ctx->data_end - ctx->data;
    }
    return XDP_PASS;  // count only, never drop
}

char LICENSE[] SEC("license") = "GPL";
