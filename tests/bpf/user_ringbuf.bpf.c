// User ring buffer for tests/test_user_ringbuf.py: user space writes commands, a syscall program (run
// through BPF_PROG_TEST_RUN) drains them with bpf_user_ringbuf_drain() and keeps what it saw in globals.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#define OP_ADD 1
#define OP_STOP 2 /* the callback returns 1: the drain ends after this record */
#define KEPT 16

char LICENSE[] SEC("license") = "GPL";

struct {
	__uint(type, BPF_MAP_TYPE_USER_RINGBUF);
	__uint(max_entries, 4096);
} commands SEC(".maps");

struct command {
	__u32 op;
	__u32 tag;
	__u64 value;
};

/* Dropped into BTF so that user space can encode commands through the object's types. */
struct command *command_btf_anchor;

__u64 records;  /* callbacks run, over all drains */
__u64 short_records;  /* records smaller than struct command */
__u64 sum;
__u64 values[KEPT];  /* the first KEPT values, in order */
__u32 tags[KEPT];
__s64 last_drain;  /* what bpf_user_ringbuf_drain() returned last */

static long on_command(struct bpf_dynptr *record, void *context)
{
	struct command cmd;
	__u64 index = records;

	records++;
	if (bpf_dynptr_read(&cmd, sizeof(cmd), record, 0, 0)) {
		short_records++;
		return 0;
	}
	sum += cmd.value;
	if (index < KEPT) {
		values[index] = cmd.value;
		tags[index] = cmd.tag;
	}
	return cmd.op == OP_STOP;
}

SEC("syscall")
int drain(void *ctx)
{
	last_drain = bpf_user_ringbuf_drain(&commands, on_command, NULL, 0);
	return 0;
}
