// Stack traces for tests/test_stacks.py: kernel stacks from a syscall tracepoint (stack map and
// bpf_get_stack into a ring buffer) and user stacks from a uprobe (addresses and build-id + offset).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_DEPTH 127 /* PERF_MAX_STACK_DEPTH */

#if defined(__TARGET_ARCH_arm64) || defined(__TARGET_ARCH_riscv)
#define NR_GETPID 172
#else
#define NR_GETPID 39
#endif

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(__u64));
} kstacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 64);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(__u64));
} ustacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_STACK_TRACE);
	__uint(max_entries, 64);
	__uint(map_flags, BPF_F_STACK_BUILD_ID);
	__uint(key_size, sizeof(__u32));
	__uint(value_size, MAX_DEPTH * sizeof(struct bpf_stack_build_id));
} bstacks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 64 * 1024);
} events SEC(".maps");

struct stack_event {
	__u32 pid;
	__s32 size; /* bytes bpf_get_stack wrote, or -errno */
	__u64 ips[MAX_DEPTH];
};

const volatile __u32 target_tgid;

/* Written by the programs; -1 until they ran. */
__s64 kernel_stack_id = -1;
__s64 user_stack_id = -1;
__s64 build_id_stack_id = -1;
__u64 kernel_hits;
__u64 user_hits;

/* raw_syscalls, not syscalls/sys_enter_getpid: on older kernels (6.1 measured; 6.18 differs) the syscalls:*
 * tracepoints hand BPF the task's user registers, so bpf_get_stackid(ctx, map, 0) finds no kernel stack there
 * and returns -EFAULT. */
SEC("tracepoint/raw_syscalls/sys_enter")
int kernel_stack(struct trace_event_raw_sys_enter *ctx)
{
	struct stack_event *e;
	__u32 tgid = bpf_get_current_pid_tgid() >> 32;

	if (tgid != target_tgid || ctx->id != NR_GETPID)
		return 0;
	kernel_hits++;
	kernel_stack_id = bpf_get_stackid(ctx, &kstacks, 0);
	e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
	if (!e)
		return 0;
	e->pid = tgid; /* what the kernel reports, not the filter's value */
	e->size = bpf_get_stack(ctx, e->ips, sizeof(e->ips), 0);
	bpf_ringbuf_submit(e, 0);
	return 0;
}

SEC("uprobe")
int user_stack(struct pt_regs *ctx)
{
	user_hits++;
	user_stack_id = bpf_get_stackid(ctx, &ustacks, BPF_F_USER_STACK);
	build_id_stack_id = bpf_get_stackid(ctx, &bstacks, BPF_F_USER_STACK);
	return 0;
}
