// Programs for test_program: loaded with their BTF func/line info, so errors and bpftool show C lines.
// No maps, globals or license section on purpose: the test loads the sections itself (no ELF loader).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

SEC("tc")
int tc_checked(struct __sk_buff *skb)
{
	unsigned char *data = (void *)(long)skb->data;
	unsigned char *data_end = (void *)(long)skb->data_end;

	if (data + 14 > data_end)
		return 2; /* TC_ACT_SHOT */
	return data[12] == 0x08 ? 0 : 2;
}

SEC("xdp")
int xdp_unchecked(struct xdp_md *ctx)
{
	unsigned char *data = (void *)(long)ctx->data;

	return data[20] == 0x45 ? XDP_DROP : XDP_PASS; /* no bounds check: the verifier refuses this */
}
