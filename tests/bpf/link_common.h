// Shared by the link_*.bpf.c test programs: per-process counters keyed by tgid.
#ifndef LINK_COMMON_H
#define LINK_COMMON_H

#define COUNTER_MAP(name)                        \
	struct {                                     \
		__uint(type, BPF_MAP_TYPE_HASH);         \
		__uint(max_entries, 1024);               \
		__type(key, __u32);                      \
		__type(value, __u64);                    \
	} name SEC(".maps")

static __always_inline __u32 current_tgid(void)
{
	return bpf_get_current_pid_tgid() >> 32;
}

static __always_inline void bump(void *map)
{
	__u32 tgid = current_tgid();
	__u64 one = 1, *v = bpf_map_lookup_elem(map, &tgid);
	if (v)
		__sync_fetch_and_add(v, 1);
	else
		bpf_map_update_elem(map, &tgid, &one, BPF_NOEXIST);
}

static __always_inline void store(void *map, __u64 value)
{
	__u32 tgid = current_tgid();
	bpf_map_update_elem(map, &tgid, &value, BPF_ANY);
}

#endif
