// BTF-defined maps of every shape pybpf.elf reads: typed key/value, key_size/value_size, flags, pinning,
// map_extra, numa_node, map-in-map with an inner definition and initial slots, a prog array with slots.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "Dual BSD/GPL";
__u32 _version SEC("version") = 0x060100;

struct pair {
	__u32 pid;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 1024);
	__type(key, __u32);
	__type(value, struct pair);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} counts SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 4);
	__uint(key_size, 4);
	__uint(value_size, 24);
	__uint(pinning, LIBBPF_PIN_BY_NAME);
} sized SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 5000);  /* not a page multiple: libbpf rounds it up */
} events SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_BLOOM_FILTER);
	__uint(max_entries, 128);
	__type(value, __u64);
	__uint(map_extra, 3);
	__uint(numa_node, 0);
} bloom SEC(".maps");

struct inner_map {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, __u64);
} inner_a SEC(".maps"), inner_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 4);
	__type(key, __u32);
	__array(values, struct inner_map);
} outer SEC(".maps") = {
	.values = { [0] = &inner_a, [2] = &inner_b },
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH_OF_MAPS);
	__uint(max_entries, 8);
	__type(key, __u32);
	__array(values, struct {
		__uint(type, BPF_MAP_TYPE_HASH);
		__uint(max_entries, 16);
		__type(key, __u64);
		__type(value, __u32);
	});
} outer_hash SEC(".maps");

SEC("tc") int tail_one(struct __sk_buff *skb) { return 1; }
SEC("tc") int tail_two(struct __sk_buff *skb) { return 2; }

struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__array(values, int (struct __sk_buff *));
} jumps SEC(".maps") = {
	.values = { [1] = (void *)&tail_two, [2] = (void *)&tail_one },
};

SEC("tc")
int entry(struct __sk_buff *skb)
{
	__u32 key = skb->len;
	struct pair *p = bpf_map_lookup_elem(&counts, &key);
	void *inner = bpf_map_lookup_elem(&outer, &key);

	if (p)
		p->bytes += skb->len;
	if (inner)
		bpf_map_lookup_elem(inner, &key);
	bpf_map_lookup_elem(&sized, &key);
	bpf_map_lookup_elem(&outer_hash, &key);
	bpf_ringbuf_output(&events, &key, sizeof(key), 0);
	bpf_map_push_elem(&bloom, &key, 0);
	bpf_tail_call(skb, &jumps, 1);
	return 0;
}
