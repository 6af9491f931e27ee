// XDP and tc tests: drop UDP packets to one blocked IPv4 address and count them; let the rest pass.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u32 blocked_addr = 0;  // network byte order, set before load

__u64 dropped;     // UDP packets to blocked_addr
__u64 passed_udp;  // other UDP packets

// 1: UDP to blocked_addr, 0: other UDP, -1: not UDP over IPv4.
static __always_inline int classify(void *data, void *data_end)
{
    struct ethhdr *eth = data;
    struct iphdr *ip;

    if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
        return -1;
    ip = (void *)(eth + 1);
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_UDP)
        return -1;
    return ip->daddr == blocked_addr;
}

SEC("xdp")
int xdp_drop_blocked(struct xdp_md *ctx)
{
    int verdict = classify((void *)(long)ctx->data, (void *)(long)ctx->data_end);

    if (verdict == 1) {
        __sync_fetch_and_add(&dropped, 1);
        return XDP_DROP;
    }
    if (verdict == 0)
        __sync_fetch_and_add(&passed_udp, 1);
    return XDP_PASS;
}

SEC("tc")
int tc_drop_blocked(struct __sk_buff *skb)
{
    int verdict = classify((void *)(long)skb->data, (void *)(long)skb->data_end);

    if (verdict == 1) {
        __sync_fetch_and_add(&dropped, 1);
        return TC_ACT_SHOT;
    }
    if (verdict == 0)
        __sync_fetch_and_add(&passed_udp, 1);
    return TC_ACT_OK;
}
