// bpf_printk of a known message when the target process calls getppid() (tests/test_cli_run.py).
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

const volatile __u32 target_pid = 0;  // --pid fills it
const volatile __u32 magic = 0;       // printed in the message: --set magic=N

SEC("tracepoint/syscalls/sys_enter_getppid")
int printk_getppid(void *ctx)
{
    if ((bpf_get_current_pid_tgid() >> 32) != target_pid)
        return 0;
    bpf_printk("pybpf-cli-printk magic=%u", magic);
    return 0;
}

char LICENSE[] SEC("license") = "GPL";
