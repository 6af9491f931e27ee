// sk_lookup test: packets for steer_port go to the socket in target_socket, whatever it is bound to.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

struct {
    __uint(type, BPF_MAP_TYPE_SOCKMAP);
    __uint(max_entries, 1);
    __type(key, __u32);
    __type(value, __u64);
} target_socket SEC(".maps");

const volatile __u16 steer_port = 0;  // host byte order, set before load

__u64 steered;

SEC("sk_lookup")
int steer(struct bpf_sk_lookup *ctx)
{
    struct bpf_sock *sk;
    __u32 zero = 0;
    long err;

    if (ctx->local_port != steer_port)
        return SK_PASS;
    sk = bpf_map_lookup_elem(&target_socket, &zero);
    if (!sk)
        return SK_DROP;
    err = bpf_sk_assign(ctx, sk, 0);
    bpf_sk_release(sk);
    if (err)
        return SK_DROP;
    __sync_fetch_and_add(&steered, 1);
    return SK_PASS;
}
