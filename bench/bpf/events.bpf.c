// Benchmark object: one 64-byte ring buffer record per getpid() of the target process.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_tgid = 0;

struct event {
    __u64 seq;
    __u64 ts;
    __u32 pid;
    __u32 cpu;
    char pad[40];
};

// clang emits BTF only for types reachable from globals or functions: this anchor lets readers decode by name.
struct event *event_btf_anchor;

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 16 * 1024 * 1024);
} events SEC(".maps");

__u64 seq = 0;
__u64 dropped = 0; // reservations that failed because the ring was full

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (target_tgid && tgid != target_tgid)
        return 0;
    struct event *e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        __sync_fetch_and_add(&dropped, 1);
        return 0;
    }
    e->seq = __sync_fetch_and_add(&seq, 1);
    e->ts = bpf_ktime_get_ns();
    e->pid = tgid;
    e->cpu = bpf_get_smp_processor_id();
    bpf_ringbuf_submit(e, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
