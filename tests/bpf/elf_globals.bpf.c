// Global data in every section libbpf turns into a map, plus kconfig and ksym externs.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";

/* .rodata: set before load */
const volatile __u32 target_pid = 42;
const volatile __u64 threshold_ns = 1000000;
/* .data */
__u64 packets = 7;
int ratio[4] = {1, 2, 3, 4};
/* .bss */
__u64 drops;
struct { __u32 a; __u16 b; } pair_bss;
/* static: no symbol visible to user space, still part of .data */
static __u32 hidden_counter = 5;
/* custom sections */
__u32 foo_value SEC(".data.foo") = 0x11223344;
__u64 foo_other SEC(".data.foo") = 9;
const volatile char bar_name[8] SEC(".rodata.bar") = "bar";
/* weak global: may be overridden at link time */
__weak __u32 weak_knob = 3;

/* kconfig externs */
extern unsigned int CONFIG_HZ __kconfig;
extern bool CONFIG_BPF_SYSCALL __kconfig;
extern int LINUX_KERNEL_VERSION __kconfig;
extern char CONFIG_DEFAULT_HOSTNAME[16] __kconfig __weak;
extern enum libbpf_tristate CONFIG_MODULES __kconfig __weak;

/* ksyms: typed, typeless, weak */
extern const struct rq runqueues __ksym;
extern const void bpf_prog_fops __ksym;
extern const int bpf_missing_ksym __ksym __weak;
/* kfunc */
extern struct task_struct *bpf_task_acquire(struct task_struct *p) __ksym;
extern void bpf_task_release(struct task_struct *p) __ksym;

SEC("tp_btf/sched_switch")
int globals_prog(u64 *ctx)
{
	struct task_struct *t;

	if (bpf_get_current_pid_tgid() >> 32 != target_pid)
		return 0;
	packets++;
	drops += ratio[2] + hidden_counter + weak_knob;
	hidden_counter++;
	pair_bss.b = 1;
	foo_other += foo_value + bar_name[1] + threshold_ns;
	if (CONFIG_HZ > 100 && CONFIG_BPF_SYSCALL && LINUX_KERNEL_VERSION > 0 &&
	    CONFIG_DEFAULT_HOSTNAME[0] && CONFIG_MODULES == TRI_YES)
		drops++;
	bpf_printk("hello %d", drops);
	drops += (long)&bpf_prog_fops + (long)&bpf_missing_ksym;
	drops += ((struct rq *)bpf_this_cpu_ptr(&runqueues))->nr_running;
	t = bpf_task_acquire(bpf_get_current_task_btf());
	if (t)
		bpf_task_release(t);
	return 0;
}
