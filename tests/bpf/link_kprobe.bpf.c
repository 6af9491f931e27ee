// kprobe, kretprobe and ksyscall programs (they load everywhere; attaching needs CONFIG_KPROBES).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include "link_common.h"

char LICENSE[] SEC("license") = "GPL";

COUNTER_MAP(opens);      // do_sys_openat2 calls per process
COUNTER_MAP(open_dfd);   // the dfd argument of the last call
COUNTER_MAP(open_ret);   // the return value of the last call
COUNTER_MAP(kill_pid);   // kill(pid, sig): pid and sig of the last call
COUNTER_MAP(kill_sig);
COUNTER_MAP(multi_hits);

SEC("kprobe/do_sys_openat2")
int BPF_KPROBE(on_open, int dfd, const char *filename)
{
	bump(&opens);
	store(&open_dfd, (__u64)(__s64)dfd);
	return 0;
}

SEC("kretprobe/do_sys_openat2")
int BPF_KRETPROBE(on_open_ret, long ret)
{
	store(&open_ret, (__u64)ret);
	return 0;
}

SEC("ksyscall/kill")
int BPF_KSYSCALL(on_kill, pid_t pid, int sig)
{
	store(&kill_pid, (__u64)pid);
	store(&kill_sig, (__u64)sig);
	return 0;
}
