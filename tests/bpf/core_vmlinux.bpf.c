// CO-RE against a full vmlinux.h (generated from the running kernel's BTF by pybpf.toolchain): about a
// hundred relocations over many kernel structs (task_struct, mm_struct, cred, sk_buff, file, ...) with
// typedefs, anonymous unions, nested arrays and bitfields, for checking pybpf against libbpf at scale.
// Only long-lived fields are used, so the program compiles for other kernels' vmlinux.h too.
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>
__u64 out[128];
SEC("tracepoint/syscalls/sys_enter_getpid")
int core_vmlinux(void *ctx)
{
	struct task_struct *t = (void *)bpf_get_current_task();
	int i = 0;
	out[i++] = BPF_CORE_READ(t, pid);
	out[i++] = BPF_CORE_READ(t, tgid);
	out[i++] = BPF_CORE_READ(t, real_parent, tgid);
	out[i++] = BPF_CORE_READ(t, group_leader, pid);
	out[i++] = BPF_CORE_READ(t, mm, total_vm);
	out[i++] = BPF_CORE_READ(t, mm, task_size);
	out[i++] = BPF_CORE_READ(t, mm, mmap_base);
	out[i++] = BPF_CORE_READ(t, mm, arg_start);
	out[i++] = BPF_CORE_READ(t, cred, uid.val);
	out[i++] = BPF_CORE_READ(t, cred, gid.val);
	out[i++] = BPF_CORE_READ(t, cred, euid.val);
	out[i++] = BPF_CORE_READ(t, nsproxy, pid_ns_for_children, level);
	out[i++] = BPF_CORE_READ(t, nsproxy, uts_ns, name.release[0]);
	out[i++] = BPF_CORE_READ(t, fs, pwd.dentry, d_name.len);
	out[i++] = (long)BPF_CORE_READ(t, fs, root.mnt, mnt_root);
	out[i++] = BPF_CORE_READ(t, signal, nr_threads);
	out[i++] = BPF_CORE_READ(t, se.sum_exec_runtime);
	out[i++] = BPF_CORE_READ(t, start_time);
	out[i++] = BPF_CORE_READ(t, thread_pid, numbers[0].nr);
	out[i++] = BPF_CORE_READ(t, files, fdt, max_fds);
	out[i++] = BPF_CORE_READ(t, cgroups, dfl_cgrp, kn, id);
	out[i++] = BPF_CORE_READ(t, sched_task_group, css.id);
	out[i++] = BPF_CORE_READ(t, exit_code);
	out[i++] = BPF_CORE_READ(t, prio);
	out[i++] = BPF_CORE_READ(t, policy);
	out[i++] = BPF_CORE_READ(t, nvcsw);
	out[i++] = BPF_CORE_READ(t, utime);
	out[i++] = BPF_CORE_READ(t, comm[2]);
	out[i++] = BPF_CORE_READ_BITFIELD_PROBED(t, in_execve);
	out[i++] = BPF_CORE_READ_BITFIELD_PROBED(t, sched_reset_on_fork);
	out[i++] = bpf_core_field_exists(t->mm);
	out[i++] = bpf_core_field_size(t->comm);
	out[i++] = bpf_core_type_size(struct sk_buff);
	out[i++] = bpf_core_type_id_kernel(struct sk_buff);
	out[i++] = bpf_core_type_exists(struct bpf_map);
	out[i++] = bpf_core_enum_value(enum bpf_map_type, BPF_MAP_TYPE_RINGBUF);
	out[i++] = bpf_core_enum_value_exists(enum bpf_prog_type, BPF_PROG_TYPE_LSM);
	struct sk_buff *skb = (void *)out[0];
	out[i++] = BPF_CORE_READ(skb, len);
	out[i++] = BPF_CORE_READ(skb, data_len);
	out[i++] = BPF_CORE_READ(skb, protocol);
	out[i++] = BPF_CORE_READ(skb, dev, ifindex);
	out[i++] = BPF_CORE_READ(skb, dev, name[1]);
	out[i++] = BPF_CORE_READ(skb, sk, __sk_common.skc_family);
	out[i++] = BPF_CORE_READ(skb, sk, __sk_common.skc_dport);
	out[i++] = BPF_CORE_READ(skb, sk, sk_rcvbuf);
	out[i++] = BPF_CORE_READ(skb, tstamp);
	out[i++] = BPF_CORE_READ(skb, head);
	out[i++] = BPF_CORE_READ(skb, network_header);
	out[i++] = BPF_CORE_READ_BITFIELD_PROBED(skb, pkt_type);
	out[i++] = BPF_CORE_READ_BITFIELD_PROBED(skb, cloned);
	struct file *f = (void *)out[1];
	out[i++] = BPF_CORE_READ(f, f_path.dentry, d_inode, i_ino);
	out[i++] = BPF_CORE_READ(f, f_inode, i_sb, s_dev);
	out[i++] = BPF_CORE_READ(f, f_flags);
	out[i++] = BPF_CORE_READ(f, f_mode);
	out[i++] = BPF_CORE_READ(f, f_pos);
	out[i++] = (long)BPF_CORE_READ(f, f_path.dentry, d_name.name);
	out[i++] = BPF_CORE_READ(f, f_inode, i_mode);
	out[i++] = BPF_CORE_READ(f, f_inode, i_size);
	return 0;
}
char LICENSE[] SEC("license") = "GPL";
