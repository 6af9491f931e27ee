// USDT test: arguments read through libbpf's usdt.bpf.h (the maps pybpf fills at attach time).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/usdt.bpf.h>

char LICENSE[] SEC("license") = "GPL";

__u64 calls;
__s64 arg_cnt;
__s64 sum0, sum1, sum2;
__u64 cookie;
__s64 errors;

SEC("usdt")
int on_probe(struct pt_regs *ctx)
{
    long v;

    __sync_fetch_and_add(&calls, 1);
    arg_cnt = bpf_usdt_arg_cnt(ctx);
    cookie = bpf_usdt_cookie(ctx);
    if (bpf_usdt_arg(ctx, 0, &v) == 0)
        __sync_fetch_and_add(&sum0, v);
    else
        __sync_fetch_and_add(&errors, 1);
    if (arg_cnt > 1 && bpf_usdt_arg(ctx, 1, &v) == 0)
        __sync_fetch_and_add(&sum1, v);
    if (arg_cnt > 2 && bpf_usdt_arg(ctx, 2, &v) == 0)
        __sync_fetch_and_add(&sum2, v);
    return 0;
}
