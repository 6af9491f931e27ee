// Cgroup iterator: one line "id level name" per cgroup visited, in the order the kernel walks them.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>

char LICENSE[] SEC("license") = "GPL";

SEC("iter/cgroup")
int dump_cgroup(struct bpf_iter__cgroup *ctx)
{
	struct seq_file *seq = ctx->meta->seq;
	struct cgroup *cgrp = ctx->cgroup;

	if (!cgrp)  /* the final call after the walk */
		return 0;
	BPF_SEQ_PRINTF(seq, "%llu %d %s\n", cgrp->kn->id, cgrp->level, cgrp->kn->name);
	return 0;
}
