// write() sizes of one process as a log2 histogram, a per-fd table and a scalar (tests/test_cli_run.py).
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define MAX_SLOTS 32

const volatile __u32 target_pid = 0;  // --pid fills it
const volatile __u64 min_size = 0;    // writes smaller than this are ignored: --set min_size=N

struct {
    __uint(type, BPF_MAP_TYPE_ARRAY);
    __uint(max_entries, MAX_SLOTS);
    __type(key, __u32);    // bucket: floor(log2(size)), 0 also for size 0
    __type(value, __u64);  // writes
} write_hist SEC(".maps");

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 64);
    __type(key, __u32);    // fd
    __type(value, __u64);  // bytes
} bytes_by_fd SEC(".maps");

// The same histogram in the two other shapes the CLI draws: a struct key with a `slot` member (one
// histogram per fd, like BCC's keyed dist maps) and a struct value holding a `slots` array (libbpf-tools).
struct fd_slot {
    __u32 fd;
    __u32 slot;
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 256);
    __type(key, struct fd_slot);
    __type(value, __u64);
} fd_dist SEC(".maps");

struct hist {
    __u32 slots[MAX_SLOTS];
};

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u32);  // fd
    __type(value, struct hist);
} fd_hists SEC(".maps");

__u64 writes = 0;  // a scalar the CLI prints with the maps

SEC("tracepoint/syscalls/sys_enter_write")
int count_write(struct trace_event_raw_sys_enter *ctx)
{
    __u64 size = ctx->args[2], v = size, *val;
    __u32 fd = ctx->args[0], slot = 0;

    if ((bpf_get_current_pid_tgid() >> 32) != target_pid || size < min_size)
        return 0;
    for (int i = 0; i < 63 && v > 1; i++) {
        v >>= 1;
        slot++;
    }
    if (slot >= MAX_SLOTS)
        slot = MAX_SLOTS - 1;
    val = bpf_map_lookup_elem(&write_hist, &slot);
    if (val)
        __sync_fetch_and_add(val, 1);
    val = bpf_map_lookup_elem(&bytes_by_fd, &fd);
    if (val)
        __sync_fetch_and_add(val, size);
    else
        bpf_map_update_elem(&bytes_by_fd, &fd, &size, BPF_NOEXIST);
    struct fd_slot key = {.fd = fd, .slot = slot};
    __u64 one = 1;
    val = bpf_map_lookup_elem(&fd_dist, &key);
    if (val)
        __sync_fetch_and_add(val, 1);
    else
        bpf_map_update_elem(&fd_dist, &key, &one, BPF_NOEXIST);

    struct hist *h = bpf_map_lookup_elem(&fd_hists, &fd);
    if (!h) {
        struct hist zero = {};
        bpf_map_update_elem(&fd_hists, &fd, &zero, BPF_NOEXIST);
        h = bpf_map_lookup_elem(&fd_hists, &fd);
    }
    if (h)
        __sync_fetch_and_add(&h->slots[slot & (MAX_SLOTS - 1)], 1);
    __sync_fetch_and_add(&writes, 1);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
