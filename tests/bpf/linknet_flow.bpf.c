// flow dissector test: the smallest dissector (claims every packet as parsed, no keys).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

SEC("flow_dissector")
int dissect(struct __sk_buff *skb)
{
    return BPF_OK;
}
