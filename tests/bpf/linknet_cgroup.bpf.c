// cgroup tests: refuse connect() to one port, and refuse creating UDP sockets, for processes in a cgroup.
#include <linux/bpf.h>
#include <linux/in.h>
#include <sys/socket.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

char LICENSE[] SEC("license") = "GPL";

const volatile __u16 blocked_port = 0;  // host byte order, set before load

__u64 denied, allowed;

SEC("cgroup/connect4")
int deny_connect(struct bpf_sock_addr *ctx)
{
    if (ctx->user_port == bpf_htons(blocked_port)) {
        __sync_fetch_and_add(&denied, 1);
        return 0;  // connect() fails with EPERM
    }
    __sync_fetch_and_add(&allowed, 1);
    return 1;
}

SEC("cgroup/sock_create")
int deny_udp_socket(struct bpf_sock *sk)
{
    if (sk->family == AF_INET && sk->type == SOCK_DGRAM) {
        __sync_fetch_and_add(&denied, 1);
        return 0;  // socket() fails with EPERM
    }
    __sync_fetch_and_add(&allowed, 1);
    return 1;
}
