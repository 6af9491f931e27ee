// Sum the sizes passed to libc's malloc() per process with a uprobe.
// Run:    sudo pybpf run examples/uprobe_malloc.bpf.c --pid 1234 --duration 5   (without --pid: every process)
//         --binary /path/to/other/libc.so.6 probes another libc's malloc
// Python: coll.programs["malloc_enter"].attach(binary="/lib/x86_64-linux-gnu/libc.so.6", symbol="malloc")
// (the section below names binary and function, so attach_all() can do it alone).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 4096);
    __type(key, __u32);    // pid
    __type(value, __u64);  // bytes requested
} malloc_bytes SEC(".maps");

// libbpf 1.1 has no BPF_UPROBE macro; BPF_KPROBE reads the same pt_regs arguments
SEC("uprobe//lib/x86_64-linux-gnu/libc.so.6:malloc")
int BPF_KPROBE(malloc_enter, size_t size)
{
    __u32 pid = bpf_get_current_pid_tgid() >> 32;
    __u64 *total = bpf_map_lookup_elem(&malloc_bytes, &pid);

    if (total)
        __sync_fetch_and_add(total, size);
    else
        bpf_map_update_elem(&malloc_bytes, &pid, &(__u64){size}, BPF_NOEXIST);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
