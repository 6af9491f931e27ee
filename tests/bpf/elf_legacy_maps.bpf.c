// A pre-BTF object: maps described by struct bpf_map_def in the "maps" section.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct bpf_map_def {
	unsigned int type;
	unsigned int key_size;
	unsigned int value_size;
	unsigned int max_entries;
	unsigned int map_flags;
};

struct bpf_map_def SEC("maps") legacy_hash = {
	.type = BPF_MAP_TYPE_HASH,
	.key_size = 4,
	.value_size = 8,
	.max_entries = 64,
	.map_flags = 1,
};

struct bpf_map_def SEC("maps") legacy_array = {
	.type = BPF_MAP_TYPE_ARRAY,
	.key_size = 4,
	.value_size = 16,
	.max_entries = 2,
};

char _license[] SEC("license") = "GPL";

SEC("socket")
int legacy_prog(struct __sk_buff *skb)
{
	int key = 0;
	long *v = bpf_map_lookup_elem(&legacy_hash, &key);

	bpf_map_lookup_elem(&legacy_array, &key);
	return v ? *v : 0;
}
