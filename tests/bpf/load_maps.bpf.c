// Loader test: map-in-map with initial values, a tail call through a prog array, a legacy map.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct legacy_map_def {
    unsigned int type;
    unsigned int key_size;
    unsigned int value_size;
    unsigned int max_entries;
    unsigned int map_flags;
};

struct legacy_map_def legacy_counts SEC("maps") = {
    .type = BPF_MAP_TYPE_ARRAY,
    .key_size = sizeof(__u32),
    .value_size = sizeof(__u64),
    .max_entries = 4,
};

struct inner {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
};

struct inner inner_a SEC(".maps");
struct inner inner_b SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
    __uint(max_entries, 2);
    __type(key, __u32);
    __array(values, struct inner);
} outer SEC(".maps") = {
    .values = { &inner_a, &inner_b },
};

int tail_target(struct xdp_md *ctx);

struct {
    __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
    __uint(max_entries, 1);
    __type(key, __u32);
    __array(values, int (void *));
} jump_table SEC(".maps") = {
    .values = { [0] = (void *)&tail_target },
};

__u64 tail_ran;

SEC("xdp")
int tail_target(struct xdp_md *ctx)
{
    tail_ran = 1;
    return XDP_DROP;
}

SEC("xdp")
int entry(struct xdp_md *ctx)
{
    __u32 zero = 0, one = 1;
    __u64 *v;
    void *m = bpf_map_lookup_elem(&outer, &one);   /* inner_b */

    if (m) {
        v = bpf_map_lookup_elem(m, &zero);
        if (v)
            *v += 7;
    }
    v = bpf_map_lookup_elem(&legacy_counts, &one);
    if (v)
        *v += 1;
    bpf_tail_call(ctx, &jump_table, 0);
    return XDP_PASS;   /* reached only when the tail call fails */
}

char LICENSE[] SEC("license") = "GPL";
