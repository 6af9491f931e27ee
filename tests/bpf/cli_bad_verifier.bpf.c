// Rejected by the verifier on purpose: the map value is used without a NULL check (tests/test_cli_run.py).
// A hash map: recent kernels know a constant-key lookup in an array cannot fail, and would accept it.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} counter SEC(".maps");

SEC("tracepoint/syscalls/sys_enter_getppid")
int bad_deref(void *ctx)
{
    __u32 key = 0;
    __u64 *val = bpf_map_lookup_elem(&counter, &key);

    *val += 1;  /* the verifier's complaint points here */
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
