// Counts perf_event samples (CPU clock), attached by `pybpf run --frequency HZ` (tests/test_cli_run.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

__u64 samples = 0;

SEC("perf_event")
int on_sample(void *ctx)
{
    __sync_fetch_and_add(&samples, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
