// Tracepoint, raw tracepoint and tp_btf programs counting each process's getppid() calls.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "link_common.h"

#if defined(__TARGET_ARCH_arm64) || defined(__TARGET_ARCH_riscv)
#define NR_GETPPID 173
#else
#define NR_GETPPID 110
#endif

char LICENSE[] SEC("license") = "GPL";

COUNTER_MAP(tp_counts);
COUNTER_MAP(raw_counts);
COUNTER_MAP(btf_counts);
COUNTER_MAP(any_counts);
COUNTER_MAP(cookies);

SEC("tracepoint/syscalls/sys_enter_getppid")
int count_tp(void *ctx)
{
	bump(&tp_counts);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int cookie_tp(void *ctx)
{
	store(&cookies, bpf_get_attach_cookie(ctx));
	return 0;
}

SEC("raw_tp/sys_enter")
int count_raw(struct bpf_raw_tracepoint_args *ctx)
{
	if (ctx->args[1] == NR_GETPPID)
		bump(&raw_counts);
	return 0;
}

SEC("tp_btf/sys_enter")
int BPF_PROG(count_btf, struct pt_regs *regs, long id)
{
	if (id == NR_GETPPID)
		bump(&btf_counts);
	return 0;
}

// Attached explicitly to many syscall tracepoints (its section names none).
SEC("tracepoint")
int count_any(void *ctx)
{
	bump(&any_counts);
	return 0;
}
