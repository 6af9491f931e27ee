// SPDX-License-Identifier: GPL-2.0
/* Record layouts that plain C cannot reproduce without attributes or padding: the C dump test
 * (tests/test_btf.py) regenerates C from this object's BTF and checks every size and offset. */
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

struct packed_fields {
	char a;
	int b;
	short c;
} __attribute__((packed));

struct packed_trailing {
	int a;
	char b;
} __attribute__((packed));

struct aligned_member {
	char a;
	int b __attribute__((aligned(32)));
	char c;
};

struct aligned_record {
	int x;
} __attribute__((aligned(16)));

struct holds_aligned {
	char tag;
	struct aligned_record rec;
	char tail;
};

struct cacheline {
	long a;
	long b __attribute__((aligned(64)));
};

struct bits {
	unsigned int a : 1;
	unsigned int : 7;
	unsigned int b : 20;
	unsigned long long c : 50;
	unsigned char d : 3;
	long long e;
	unsigned short f : 9;
};

struct packed_bits {
	char a;
	unsigned int b : 30;
	unsigned long long c : 40;
	char d;
} __attribute__((packed));

struct wide {
	char a;
	__int128 b;
	unsigned __int128 c : 100;
};

union bigger_union {
	int a;
	char b[3];
} __attribute__((aligned(16)));

struct with_anon {
	int kind;
	union {
		struct {
			short x, y;
		};
		long raw;
		struct {
			char c;
			int i;
		} __attribute__((packed)) p;
	};
	struct {
		int n;
		int (*cb[2])(int, char *);
	} nested;
	int arr[2][3][4];
	const char *const *strv;
	void (*(*ret_fp)(int))(long);
};

enum __attribute__((packed)) byte_enum { BE_A = 1, BE_B = 200 };

struct uses_enum {
	enum byte_enum e;
	char after;
	enum byte_enum es[3];
};

struct empty {};

struct contains_empty {
	struct empty e;
	int x;
	struct empty tail[0];
};

struct flex {
	int n;
	long data[];
};

typedef struct packed_fields packed_fields_t;
typedef int (*handler_t)(void *ctx, ...);

struct all {
	struct packed_fields a;
	struct packed_trailing b;
	struct aligned_member c;
	struct holds_aligned d;
	struct cacheline e;
	struct bits f;
	struct packed_bits g;
	struct wide h;
	union bigger_union i;
	struct with_anon j;
	struct uses_enum k;
	struct contains_empty l;
	packed_fields_t m;
	handler_t n;
	struct flex *o;
	char odd;
	struct packed_fields p;
};

struct all layouts_all;

SEC("tracepoint/syscalls/sys_enter_getpid")
int touch(void *ctx)
{
	return layouts_all.odd;
}

char LICENSE[] SEC("license") = "GPL";
