// Loader test: kconfig externs, a typeless ksym, a kfunc call and a bpf_loop callback.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

extern unsigned int LINUX_KERNEL_VERSION __kconfig;
extern int CONFIG_HZ __kconfig;
extern _Bool CONFIG_BPF_SYSCALL __kconfig;
extern int CONFIG_PYBPF_DOES_NOT_EXIST __kconfig __weak;
extern const void schedule __ksym;
extern void bpf_rcu_read_lock(void) __ksym __weak;    /* kfuncs of Linux 6.2+ */
extern void bpf_rcu_read_unlock(void) __ksym __weak;

#ifndef bpf_ksym_exists  /* libbpf 1.2's bpf_helpers.h has it */
#define bpf_ksym_exists(sym) ({ !!(sym); })
#endif

__u64 kernel_version;
__u64 hz;
__u64 has_bpf_syscall;
__u64 missing = 1234;
__u64 schedule_addr;
__u64 loop_sum;
__u64 has_rcu_kfuncs = 1234;

static long add_index(__u64 index, void *ctx)
{
    *(__u64 *)ctx += index;
    return 0;
}

SEC("syscall")
int read_externs(void *ctx)
{
    __u64 sum = 0;

    kernel_version = LINUX_KERNEL_VERSION;
    hz = CONFIG_HZ;
    has_bpf_syscall = CONFIG_BPF_SYSCALL;
    missing = CONFIG_PYBPF_DOES_NOT_EXIST;
    schedule_addr = (__u64)&schedule;
    has_rcu_kfuncs = bpf_ksym_exists(bpf_rcu_read_lock);
    if (bpf_ksym_exists(bpf_rcu_read_lock)) {  /* on older kernels the loader poisons the calls: dead code */
        bpf_rcu_read_lock();
        bpf_rcu_read_unlock();
    }
    bpf_loop(10, add_index, &sum, 0);
    loop_sum = sum;
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
