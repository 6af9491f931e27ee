// A kprobe.multi program (needs CONFIG_FPROBE, Linux 5.18+).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "link_common.h"

char LICENSE[] SEC("license") = "GPL";

COUNTER_MAP(multi_hits);

SEC("kprobe.multi/do_sys_open*")
int on_multi(struct pt_regs *ctx)
{
	bump(&multi_hits);
	return 0;
}
