// Socket filter test: keep datagrams of at most 8 bytes, drop longer ones.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

__u64 kept, dropped;

SEC("socket")
int keep_short(struct __sk_buff *skb)
{
    if (skb->len > 8) {
        __sync_fetch_and_add(&dropped, 1);
        return 0;
    }
    __sync_fetch_and_add(&kept, 1);
    return skb->len;
}
