// execsnoop-like: one ring buffer record per execve(), with pid, parent pid, name and file name.
// Run:    sudo pybpf run examples/execsnoop.bpf.c            (one row per exec, Ctrl-C to stop; --json too)
// Python: for ev in coll.ringbuf("events", type="event"): print(ev.pid, ev.filename)
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

struct event {
    __u32 pid;
    __u32 ppid;
    char comm[16];
    char filename[128];
};

struct {
    __uint(type, BPF_MAP_TYPE_RINGBUF);
    __uint(max_entries, 256 * 1024);  // bytes, a power of two multiple of the page size
} events SEC(".maps");

__u64 dropped = 0;            // records lost because the ring was full (pybpf warns when it is not 0)
struct event *unused_event;   // keeps struct event in the object's BTF, so readers can decode records

SEC("tracepoint/syscalls/sys_enter_execve")
int trace_execve(struct trace_event_raw_sys_enter *ctx)
{
    struct task_struct *task = (struct task_struct *)bpf_get_current_task();
    struct event *e;

    e = bpf_ringbuf_reserve(&events, sizeof(*e), 0);
    if (!e) {
        __sync_fetch_and_add(&dropped, 1);  // buffer full: the reader is behind, count the loss
        return 0;
    }
    e->pid = bpf_get_current_pid_tgid() >> 32;
    e->ppid = BPF_CORE_READ(task, real_parent, tgid);  // CO-RE: offsets fixed up for the running kernel
    bpf_get_current_comm(&e->comm, sizeof(e->comm));
    // args[0] is the user pointer to the file name
    bpf_probe_read_user_str(&e->filename, sizeof(e->filename), (const char *)ctx->args[0]);
    bpf_ringbuf_submit(e, 0);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
