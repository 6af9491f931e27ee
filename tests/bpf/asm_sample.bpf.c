// Instruction mix for tests/test_asm.py: decoded by pybpf.asm and compared with llvm-objdump.
// Never loaded; it exists to make clang emit many instruction forms (maps, globals, atomics, calls,
// callbacks, byte swaps, 32-bit ALU/JMP, legacy packet loads).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, __u32);
	__type(value, __u64);
} counts SEC(".maps");

__u64 total = 0;
__u32 flags = 0;
const volatile int filter = 3;

unsigned long long load_byte(void *skb, unsigned long long off) asm("llvm.bpf.load.byte");
unsigned long long load_half(void *skb, unsigned long long off) asm("llvm.bpf.load.half");
unsigned long long load_word(void *skb, unsigned long long off) asm("llvm.bpf.load.word");

static __noinline int scale(int x)
{
	return x * 7 + filter;
}

static long visit(__u32 index, void *ctx)
{
	__sync_fetch_and_add(&total, index);
	return index > 10;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	__u32 pid = bpf_get_current_pid_tgid() >> 32;
	__u64 *v = bpf_map_lookup_elem(&counts, &pid);
	__u64 old;

	if (v) {
		__sync_fetch_and_add(v, 1);
	} else {
		__u64 one = 1;
		bpf_map_update_elem(&counts, &pid, &one, BPF_ANY);
	}
	old = __sync_fetch_and_add(&total, 2);
	__sync_lock_test_and_set(&total, old);
	__sync_val_compare_and_swap(&total, 5, old);
	__sync_fetch_and_or(&flags, 4);
	__sync_fetch_and_and(&flags, ~1u);
	__sync_fetch_and_xor(&flags, pid);
	__sync_fetch_and_or(&total, 8);
	bpf_loop(4, visit, ctx, 0);
	for (int i = 0; i < 4; i++) {
		if (pid % (i + 2) == 1)
			return scale(pid) + i;
	}
	if ((int)old < -5)
		return -(int)old;
	return (int)(old / 3) + (pid >> 3) - (int)pid + ((long long)old >> 2) + bpf_htonl(pid) +
	       (int)bpf_htons(pid) + (int)(bpf_cpu_to_be64(old) >> 40);
}

SEC("socket")
int on_packet(struct __sk_buff *skb)
{
	__u32 proto = load_half(skb, 12);
	__u32 first = load_byte(skb, 14);
	__u32 word = load_word(skb, 26);

	if (proto != 0x0800)
		return 0;
	if ((first & 0xf0) != 0x40)
		return 0;
	return word & 0xffff ? -1 : 0;
}

char LICENSE[] SEC("license") = "GPL";
