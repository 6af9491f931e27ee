// Smallest useful CO-RE program: used by test_toolchain to check the bpf_obj fixture and the BTF output.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

char LICENSE[] SEC("license") = "GPL";

__u64 calls = 0;

SEC("tp/syscalls/sys_enter_getpid")
int count_getpid(void *ctx)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();

	if (BPF_CORE_READ(task, tgid) > 0)
		__sync_fetch_and_add(&calls, 1);
	return 0;
}
