// One perf buffer record per getppid() of the target process, numbered (tests/test_cli_run.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct sample {
    __u64 seq;
    __u32 pid;
    __u32 cpu;
};

struct {
    __uint(type, BPF_MAP_TYPE_PERF_EVENT_ARRAY);
    __uint(key_size, sizeof(__u32));
    __uint(value_size, sizeof(__u32));
} samples SEC(".maps");

const volatile __u32 target_pid = 0;  // --pid fills it
__u64 produced = 0;                   // records handed to bpf_perf_event_output
struct sample *unused_sample;         // keeps struct sample in the BTF: `samples` records decode as it

SEC("tracepoint/syscalls/sys_enter_getppid")
int emit(void *ctx)
{
    struct sample s = {};

    if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
        return 0;
    s.seq = __sync_fetch_and_add(&produced, 1);
    s.pid = target_pid;
    s.cpu = bpf_get_smp_processor_id();
    bpf_perf_event_output(ctx, &samples, BPF_F_CURRENT_CPU, &s, sizeof(s));
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
