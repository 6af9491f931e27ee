// Subprograms: global and static functions in .text, a static function in a program section, a weak
// function, a callback passed to bpf_loop, calls between subprograms, CO-RE reads inside a subprogram.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

__u64 total = 0;

static __noinline int leaf(int x)
{
	return x * 3 + 1;
}

__noinline int global_helper(int x)
{
	return leaf(x) + leaf(x + 1);
}

__weak __noinline int weak_helper(int x)
{
	return x - 1;
}

static __noinline __u32 task_pid(void)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	return BPF_CORE_READ(task, pid);
}

static int loop_cb(__u32 index, void *ctx)
{
	*(__u64 *)ctx += index + leaf(index);
	return 0;
}

SEC("tp/syscalls/sys_enter_getpid")
int uses_subprogs(void *ctx)
{
	__u64 sum = 0;

	bpf_loop(4, loop_cb, &sum, 0);
	total += sum + global_helper(2) + weak_helper(3) + task_pid();
	return 0;
}

static __noinline __attribute__((section("tp/syscalls/sys_enter_getppid"))) int local_in_section(int x)
{
	return x + (int)bpf_get_prandom_u32();
}

SEC("tp/syscalls/sys_enter_getppid")
int other_prog(void *ctx)
{
	total += leaf(5) + local_in_section((long)ctx);
	return 0;
}

SEC("tp/syscalls/sys_enter_getppid")
int no_subprogs(void *ctx)
{
	return 0;
}

static __noinline int field_size(void)
{
	return bpf_core_field_size(struct task_struct, pid);
}

/* Runs under BPF_PROG_TEST_RUN: its return value proves every call and callback was linked right. */
SEC("socket")
int compute(struct __sk_buff *skb)
{
	__u64 sum = 0;

	bpf_loop(4, loop_cb, &sum, 0);  /* sum(i + 3i + 1, i < 4) = 28 */
	sum += global_helper(2);         /* leaf(2) + leaf(3) = 17 */
	sum += weak_helper(3);           /* 2 */
	sum += field_size();             /* sizeof(pid_t) = 4 */
	total = sum;
	return sum;
}
