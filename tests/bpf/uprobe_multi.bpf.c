// uprobe_multi link test: one program on several functions; the cookie says which one fired.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u64);
    __type(value, __u64);
} hits_by_cookie SEC(".maps");

SEC("uprobe.multi")
int BPF_KPROBE(on_any)
{
    __u64 cookie = bpf_get_attach_cookie(ctx);
    __u64 one = 1, *count;

    count = bpf_map_lookup_elem(&hits_by_cookie, &cookie);
    if (count)
        __sync_fetch_and_add(count, 1);
    else
        bpf_map_update_elem(&hits_by_cookie, &cookie, &one, BPF_NOEXIST);
    return 0;
}
