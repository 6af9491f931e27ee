// Inspection test: a BTF-typed hash map the test fills from user space, and a program using it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct pair {
    __u32 count;
    __u64 bytes;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, struct pair);
} inspect_pairs SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getpid")
int inspect_prog(void *ctx)
{
    __u32 key = 1;
    struct pair *p = bpf_map_lookup_elem(&inspect_pairs, &key);

    if (p)
        __sync_fetch_and_add(&p->count, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
