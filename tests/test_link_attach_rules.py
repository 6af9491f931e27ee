"""Rules shared by the packet and cgroup attach modules: the attach-type check of cgroup programs, the shared
BPF_PROG_ATTACH helper (cgroup, and the flow dissector's netns form), the link-or-legacy choice, the xdp
link probe and the cgroup2 mount lookup. No traffic: only cgroups and network namespaces the tests create.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import pytest
from kernel_objects import attached_prog_count, link_ids_of

from pybpf import asm
from pybpf._sys import types as T
from pybpf._sys.kernel import kernel_version
from pybpf._sys.mounts import mount_point
from pybpf.errors import BPFError, NotSupportedError
from pybpf.features import ProbeResult, first_kernel, probe_link
from pybpf.link import base
from pybpf.link import netns as netns_link
from pybpf.link.base import attach_error, use_link
from pybpf.link.cgroup import attach_cgroup, cgroup2_root
from pybpf.program import Program, ProgramSpec

pytestmark = pytest.mark.usefixtures("require_root")



def load(prog_type: T.ProgType, attach_type: T.AttachType | None = None, name: str = "rules") -> Program:
    insns = asm.Instructions([asm.mov64_imm(asm.R0, 1), asm.exit_insn()])
    return Program.load(ProgramSpec(name=name, type=prog_type, instructions=insns, attach_type=attach_type))


# ---- a program's own attach type is checked ------------------------------------------------------------


def test_cgroup_program_loaded_for_another_hook_gets_a_clear_error(cgroup: Path) -> None:
    # The kernel loads a cgroup/dev program with any expected attach type; attaching it where its section
    # would (here cgroup_inet4_connect) used to reach BPF_LINK_CREATE and fail with a bare EINVAL.
    with load(T.ProgType.CGROUP_DEVICE, T.AttachType.CGROUP_INET4_CONNECT) as prog:
        for legacy in (None, True):
            with pytest.raises(BPFError, match=r"loaded to attach as cgroup_inet4_connect.*cgroup_device") as info:
                attach_cgroup(prog, cgroup, legacy=legacy)
            assert info.value.errno == errno.EINVAL
            assert info.value.command == ""  # refused before any syscall
        # Naming the hook still works: the kernel does not hold cgroup/dev programs to their attach type.
        with attach_cgroup(prog, cgroup, "dev") as link:
            assert not link.legacy and link.attach_type == T.AttachType.CGROUP_DEVICE
            assert attached_prog_count(cgroup, T.AttachType.CGROUP_DEVICE) == 1
        assert attached_prog_count(cgroup, T.AttachType.CGROUP_DEVICE) == 0


def test_lsm_program_on_a_cgroup_is_refused_up_front(cgroup: Path) -> None:
    # An lsm/ program (LSM_MAC) is not an lsm_cgroup/ one. LSM programs may not load here, so a socket
    # filter fd stands in: the check happens before the kernel sees the fd.
    with load(T.ProgType.SOCKET_FILTER) as real:
        fake = Program(real.fd.dup(), name="fake_lsm", type=T.ProgType.LSM, attach_type=T.AttachType.LSM_MAC)
        with fake, pytest.raises(BPFError, match=r"lsm_mac.*lsm_cgroup"):
            attach_cgroup(fake, cgroup)
        with pytest.raises(BPFError, match="socket_filter program; a cgroup takes"):
            attach_cgroup(real, cgroup)


# ---- BPF_PROG_ATTACH through the shared helper, `legacy` derived ------------------------------------------


def test_cgroup_prog_attach_and_detach(cgroup: Path) -> None:
    with load(T.ProgType.CGROUP_DEVICE, T.AttachType.CGROUP_DEVICE) as prog:
        link = attach_cgroup(prog, cgroup, legacy=True)
        assert link.legacy and link.fd is None
        assert attached_prog_count(cgroup, T.AttachType.CGROUP_DEVICE) == 1
        assert link_ids_of([prog]) == []
        link.detach()
        assert attached_prog_count(cgroup, T.AttachType.CGROUP_DEVICE) == 0
        with pytest.raises(ValueError, match="flags apply to BPF_PROG_ATTACH only"):
            attach_cgroup(prog, cgroup, flags=T.BPF_F_ALLOW_MULTI, legacy=False)
        with attach_cgroup(prog, cgroup, flags=T.BPF_F_ALLOW_MULTI) as flagged:
            assert flagged.legacy
            assert attached_prog_count(cgroup, T.AttachType.CGROUP_DEVICE) == 1
        assert attached_prog_count(cgroup, T.AttachType.CGROUP_DEVICE) == 0


def test_cgroup_sock_addr_attach_types_are_the_kernels(cgroup: Path) -> None:
    # The sock_addr hooks pybpf accepts are read from the generated constants: the newest (unix, 6.7) are
    # among them, the post_binds (cgroup_sock's) are not.
    with load(T.ProgType.CGROUP_SOCK_ADDR, T.AttachType.CGROUP_INET4_CONNECT) as prog:
        with attach_cgroup(prog, cgroup) as link:
            assert link.attach_type == T.AttachType.CGROUP_INET4_CONNECT
            assert attached_prog_count(cgroup, T.AttachType.CGROUP_INET4_CONNECT) == 1
        with pytest.raises(ValueError, match="CGROUP_INET4_POST_BIND is not an attach type"):
            attach_cgroup(prog, cgroup, "post_bind4")
        # Accepted by pybpf, refused by the kernel (the program was loaded for connect4).
        with pytest.raises(BPFError) as info:
            attach_cgroup(prog, cgroup, "CGROUP_UNIX_GETSOCKNAME")
        assert (info.value.errno, info.value.command) == (errno.EINVAL, "BPF_LINK_CREATE")


def test_prog_attach_error_closes_its_fds() -> None:
    with load(T.ProgType.CGROUP_DEVICE, T.AttachType.CGROUP_DEVICE) as prog:
        before = len(os.listdir("/proc/self/fd"))
        # Not a cgroup: a regular file's fd is refused by the kernel.
        fd = os.open("/proc/self/stat", os.O_RDONLY)
        try:
            with pytest.raises(BPFError, match=r"attaching 'rules' to nowhere \(hint\) failed") as info:
                base.prog_attach(prog, fd, T.AttachType.CGROUP_DEVICE, what="'rules'", where="nowhere",
                                 hints={errno.EBADF: "hint", errno.EINVAL: "hint"})
            assert info.value.command == "BPF_PROG_ATTACH"
        finally:
            os.close(fd)
        assert len(os.listdir("/proc/self/fd")) == before


def test_flow_dissector_legacy_form_attaches_inside_the_namespace(netns: Any, monkeypatch: Any) -> None:
    ns = netns(veth=False)
    # Pretend the kernel has no netns links (before 5.8): BPF_LINK_CREATE refuses, the probe says no.
    monkeypatch.setattr(netns_link, "bpf_errno", lambda cmd, attr: -errno.EINVAL)
    monkeypatch.setattr(netns_link, "use_link", lambda kind, legacy, detail="": False)
    with load(T.ProgType.FLOW_DISSECTOR, T.AttachType.FLOW_DISSECTOR, "dissect") as prog:
        link = netns_link.attach_netns(prog, ns.path)
        try:
            assert link.kind == "flow_dissector" and link.fd is None
            assert attached_prog_count(ns.path, T.AttachType.FLOW_DISSECTOR) == 1
            assert attached_prog_count("/proc/self/ns/net", T.AttachType.FLOW_DISSECTOR) == 0
        finally:
            link.detach()
        assert attached_prog_count(ns.path, T.AttachType.FLOW_DISSECTOR) == 0


# ---- link or legacy --------------------------------------------------------------------------------------


def test_use_link_choices(monkeypatch: Any) -> None:
    assert use_link("cgroup_link", True) is False
    assert use_link("cgroup_link", None) is probe_link("cgroup_link").supported
    from pybpf.features import misc

    monkeypatch.setattr(misc, "probe_link", lambda kind: ProbeResult(False, errno.EINVAL, "no"))
    assert use_link("sockmap_link", None) is False
    with pytest.raises(NotSupportedError, match=r"sockmap BPF links .*Linux 6\.10 .*: use legacy=True"):
        use_link("sockmap_link", False, "use legacy=True")


def test_xdp_link_probe() -> None:
    assert first_kernel("misc", "xdp_link") == "5.9"
    result = probe_link("xdp_link")
    assert result.supported == (kernel_version()[:2] >= (5, 9)), result


# ---- attach error wording and mount points ------------------------------------------------------------------


def test_attach_error_wording() -> None:
    err = attach_error("'p'", "eth0", errno.EEXIST, "BPF_LINK_CREATE", {errno.EEXIST: "taken"})
    assert str(err).startswith("attaching 'p' to eth0 (taken) failed: EEXIST")
    assert (err.errno, err.command) == (errno.EEXIST, "BPF_LINK_CREATE")
    assert str(attach_error("'p'", "eth0", errno.EPERM, "X")).startswith("attaching 'p' to eth0 failed: EPERM")


def test_mount_point() -> None:
    root = mount_point("cgroup2")
    if root is None:
        pytest.skip("no cgroup v2 hierarchy is mounted")
    assert cgroup2_root() == root
    assert mount_point("pybpf-no-such-fs") is None
