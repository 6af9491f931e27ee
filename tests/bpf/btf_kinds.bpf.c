// SPDX-License-Identifier: GPL-2.0
/* Exercises many BTF kinds for the BTF marshalling and C dump tests (tests/test_btf.py). */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

#define __tag(x) __attribute__((btf_decl_tag(x)))
#define __user_ptr __attribute__((btf_type_tag("user")))

enum small_enum { SMALL_A = 1, SMALL_B = -2 };
enum big_enum { BIG_A = 1, BIG_B = 0x1234567890ULL };

typedef unsigned long long u64_t;

struct flags {
	unsigned int a : 3;
	unsigned int b : 5;
	int c : 12;
	unsigned long long d : 40;
	char tail;
};

union either {
	u64_t as_u64;
	double as_double;
	unsigned char bytes[8];
};

struct record {
	int id __tag("record_id");
	struct flags flags;
	union either value;
	enum small_enum small;
	enum big_enum big;
	float ratio;
	int matrix[3][4];
	const volatile char *name;
	int (*callback)(int code, void *arg);
	int __user_ptr *user_data;
	struct {
		short x;
		short y;
	} point;
} __attribute__((aligned(16)));

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 16);
	__type(key, int);
	__type(value, struct record);
} records SEC(".maps");

int counter = 0;
long data_value = 42;
const volatile int rodata_limit = 7;
static volatile int static_bss;
double scale SEC(".data.custom") = 1.5;
int scale_bits SEC(".data.custom") = 3;
struct record last_record;

static __attribute__((noinline)) int helper_static(struct record *r)
{
	return r ? r->id + static_bss : 0;
}

__attribute__((noinline)) int helper_global(int x) __tag("global_fn")
{
	return x * 2 + rodata_limit;
}

SEC("tracepoint/syscalls/sys_enter_getpid")
int on_getpid(void *ctx)
{
	int key = 0;
	struct record *r = bpf_map_lookup_elem(&records, &key);

	counter++;
	if (r)
		last_record = *r;
	return helper_static(r) + helper_global((int)data_value) + (scale_bits & 1);
}

char LICENSE[] SEC("license") = "GPL";
