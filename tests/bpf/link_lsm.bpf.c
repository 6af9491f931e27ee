// An LSM program: processes listed in `deny` may not create BPF maps.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "link_common.h"

#define EPERM 1

char LICENSE[] SEC("license") = "GPL";

COUNTER_MAP(deny);

SEC("lsm/bpf")
int BPF_PROG(deny_map_create, int cmd, union bpf_attr *attr, unsigned int size)
{
	__u32 tgid = current_tgid();

	if (cmd == BPF_MAP_CREATE && bpf_map_lookup_elem(&deny, &tgid))
		return -EPERM;
	return 0;
}
