// A sampling program: counts the samples that land in each process.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include "link_common.h"

char LICENSE[] SEC("license") = "GPL";

COUNTER_MAP(samples);

SEC("perf_event")
int on_sample(struct bpf_perf_event_data *ctx)
{
	bump(&samples);
	return 0;
}
