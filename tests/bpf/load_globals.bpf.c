// Loader test: global data of every kind, a subprogram, a BTF-defined hash map, a syscall program.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 multiplier = 1;          // .rodata: set before load
__u64 counter = 5;                            // .data
__u64 last_result;                            // .bss
__u32 custom_value SEC(".data.custom") = 77;  // custom data section
const volatile char greeting[8] = "hi";       // .rodata string

struct {
    __uint(type, BPF_MAP_TYPE_HASH);
    __uint(max_entries, 16);
    __type(key, __u32);
    __type(value, __u64);
} results SEC(".maps");

static __noinline __u64 scale(__u64 x)
{
    return x * multiplier + custom_value;
}

SEC("syscall")
int compute(void *ctx)
{
    __u32 key = 1;
    __u64 value;

    counter += 1;
    value = scale(counter);
    last_result = value + greeting[0];
    bpf_map_update_elem(&results, &key, &value, BPF_ANY);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
