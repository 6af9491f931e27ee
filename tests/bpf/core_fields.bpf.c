// CO-RE field relocations against minimal local types (no vmlinux.h): offsets, sizes, existence,
// signedness, bitfield shifts, array elements, anonymous members in the kernel's types, load-size
// changes and a poisoned (dead) access to a field the kernel lacks.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct list_head {
	struct list_head *next, *prev;
} __attribute__((preserve_access_index));

struct mm_struct {
	unsigned long task_size; /* inside an anonymous struct in the kernel */
} __attribute__((preserve_access_index));

struct task_struct {
	int pid;
	int tgid;
	unsigned long long flags; /* unsigned int in the kernel: the load shrinks from 8 to 4 bytes */
	char comm[16];
	struct task_struct *real_parent;
	struct mm_struct *mm;
	struct list_head children;
	unsigned int sched_remote_wakeup:1;
	unsigned int in_execve:1;
} __attribute__((preserve_access_index));

/* A flavor of task_struct with a field no kernel has. */
struct task_struct___pybpf_missing {
	int pid;
	long pybpf_not_in_any_kernel;
} __attribute__((preserve_access_index));

__u64 out[16];

SEC("tracepoint/syscalls/sys_enter_getpid")
int core_fields(void *ctx)
{
	struct task_struct *t = bpf_get_current_task_btf();
	struct task_struct___pybpf_missing *m = (void *)t;

	out[0] = t->tgid;
	out[1] = t->flags;
	out[2] = BPF_CORE_READ(t, real_parent, tgid);
	out[3] = bpf_core_field_size(t->comm);
	out[4] = bpf_core_field_exists(t->mm);
	out[5] = bpf_core_field_exists(m->pybpf_not_in_any_kernel);
	if (bpf_core_field_exists(m->pybpf_not_in_any_kernel))
		out[6] = BPF_CORE_READ(m, pybpf_not_in_any_kernel);
	out[7] = BPF_CORE_READ_BITFIELD_PROBED(t, sched_remote_wakeup);
	out[8] = BPF_CORE_READ_BITFIELD_PROBED(t, in_execve);
	out[9] = __builtin_preserve_field_info(t->pid, BPF_FIELD_SIGNED);
	out[10] = BPF_CORE_READ(t, comm[3]);
	out[11] = BPF_CORE_READ(t, mm, task_size);
	out[12] = bpf_core_field_offset(t->children.prev);
	out[13] = bpf_core_field_size(t->flags);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
