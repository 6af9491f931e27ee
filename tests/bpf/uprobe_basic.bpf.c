// uprobe/uretprobe tests: a function of a test program (arguments and return value) and a libc function.
// libbpf-dev 1.1 has no BPF_UPROBE macros: the BPF_KPROBE forms read the same registers.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

__u64 add_calls;
__s64 add_arg_sum;
__s32 last_a, last_b;
__u64 ret_calls;
__s64 ret_sum;
__u64 libc_calls;
__u64 last_cookie;

SEC("uprobe")
int BPF_KPROBE(on_add, int a, int b)
{
    __sync_fetch_and_add(&add_calls, 1);
    __sync_fetch_and_add(&add_arg_sum, a + b);
    last_a = a;
    last_b = b;
    last_cookie = bpf_get_attach_cookie(ctx);
    return 0;
}

SEC("uretprobe")
int BPF_KRETPROBE(on_add_return, int ret)
{
    __sync_fetch_and_add(&ret_calls, 1);
    __sync_fetch_and_add(&ret_sum, ret);
    return 0;
}

SEC("uprobe")
int BPF_KPROBE(on_libc)
{
    __sync_fetch_and_add(&libc_calls, 1);
    return 0;
}
