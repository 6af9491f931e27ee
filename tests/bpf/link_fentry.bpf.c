// fentry/fexit on do_sys_openat2: the arguments on entry, the return value on exit.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include "link_common.h"

char LICENSE[] SEC("license") = "GPL";

COUNTER_MAP(entry_dfd);
COUNTER_MAP(exit_ret);

SEC("fentry/do_sys_openat2")
int BPF_PROG(on_entry, int dfd, const char *filename, struct open_how *how)
{
	store(&entry_dfd, (__u64)(__s64)dfd);
	return 0;
}

SEC("fexit/do_sys_openat2")
int BPF_PROG(on_exit, int dfd, const char *filename, struct open_how *how, long ret)
{
	store(&exit_ret, (__u64)ret);
	return 0;
}
