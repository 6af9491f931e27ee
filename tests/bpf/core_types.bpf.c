// CO-RE type and enum relocations: type exists / size / local and kernel ids, enum value exists / value
// (32- and 64-bit kernel enums, ___flavor suffixes on types and enumerators). The test turns some
// TYPE_EXISTS relocations into TYPE_MATCHES (clang 14 cannot emit that kind).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct task_struct {
	int pid;
} __attribute__((preserve_access_index));

struct list_head {
	struct list_head *next, *prev;
};

/* The kernel's callback_head has a pointer where this has an int: exists, but does not match. */
struct callback_head___pybpf_int {
	int next;
};

struct pybpf_no_such_type {
	int x;
};

typedef long long ktime_t;

enum pid_type___pybpf {
	PIDTYPE_TGID___pybpf = 7,
	PIDTYPE_PYBPF_MISSING = 9,
};

enum perf_callchain_context___pybpf {
	PERF_CONTEXT_USER___pybpf = 3,
};

__u64 out[16];

SEC("tracepoint/syscalls/sys_enter_getppid")
int core_types(void *ctx)
{
	out[0] = bpf_core_type_exists(struct task_struct);
	out[1] = bpf_core_type_exists(struct pybpf_no_such_type);
	out[2] = bpf_core_type_size(struct task_struct);
	out[3] = bpf_core_type_id_kernel(struct task_struct);
	out[4] = bpf_core_type_id_local(struct task_struct);
	out[5] = bpf_core_type_exists(ktime_t);
	out[6] = bpf_core_type_exists(struct list_head);
	out[7] = bpf_core_type_exists(struct callback_head___pybpf_int);
	out[8] = bpf_core_enum_value_exists(enum pid_type___pybpf, PIDTYPE_TGID___pybpf);
	out[9] = bpf_core_enum_value(enum pid_type___pybpf, PIDTYPE_TGID___pybpf);
	out[10] = bpf_core_enum_value_exists(enum pid_type___pybpf, PIDTYPE_PYBPF_MISSING);
	if (bpf_core_enum_value_exists(enum pid_type___pybpf, PIDTYPE_PYBPF_MISSING))
		out[11] = bpf_core_enum_value(enum pid_type___pybpf, PIDTYPE_PYBPF_MISSING);
	out[12] = bpf_core_enum_value(enum perf_callchain_context___pybpf, PERF_CONTEXT_USER___pybpf);
	out[13] = bpf_core_type_size(struct pybpf_no_such_type);
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
