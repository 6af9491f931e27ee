// sockmap test: an sk_msg program counts what the sockets in a sockmap send.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_SOCKMAP);
    __uint(max_entries, 2);
    __type(key, __u32);
    __type(value, __u64);
} socks SEC(".maps");

__u64 messages, bytes;

SEC("sk_msg")
int count_messages(struct sk_msg_md *msg)
{
    __sync_fetch_and_add(&messages, 1);
    __sync_fetch_and_add(&bytes, msg->size);
    return SK_PASS;
}
