"""Packet and socket hooks against the real kernel: XDP, tc (tcx and clsact), cgroup, socket filters,
sk_lookup and sockmap. Traffic only flows inside network namespaces the tests create (conftest `netns`);
each test checks that the hook acts while attached and that nothing (links, XDP programs, qdiscs,
filters, cgroup attachments) is left after detach.
"""

from __future__ import annotations

import ctypes
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from kernel_objects import attached_prog_count, link_ids_of

import pybpf
from pybpf._sys import types as T
from pybpf.errors import BPFError, NotSupportedError
from pybpf.features import probe_link
from pybpf.link._netdev import in_netns
from pybpf.link.cgroup import attach_cgroup
from pybpf.link.netns import attach_netns
from pybpf.link.socket import attach_socket
from pybpf.link.sockmap import attach_sockmap
from pybpf.link.tc import attach_tc, have_tcx
from pybpf.link.xdp import attach_xdp

if TYPE_CHECKING:
    from conftest import NetNS

pytestmark = pytest.mark.usefixtures("require_root")

_CLONE_NEWNET = 0x40000000


# ---- helpers -------------------------------------------------------------------------------------------


def ip_u32(addr: str) -> int:
    """An IPv4 address as the u32 a BPF program compares with iphdr.daddr (network byte order in memory)."""
    return int.from_bytes(socket.inet_aton(addr), "little")


def blocked_address(ns: NetNS) -> str:
    """A second address on ns's veth end, whose UDP traffic the drop programs block."""
    addr = ns.addr.rsplit(".", 1)[0] + ".3"
    subprocess.run(["ip", "-n", ns.name, "addr", "add", f"{addr}/24", "dev", ns.ifname], check=True)
    return addr


def udp_exchange(sender_ns: NetNS, receiver_ns: NetNS, addrs: list[str], count: int = 5) -> dict[str, int]:
    """Send `count` datagrams from sender_ns to each address (bound in receiver_ns); how many arrived."""
    receivers: dict[str, socket.socket] = {}
    with receiver_ns.enter():
        first = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        first.bind((addrs[0], 0))
        port = first.getsockname()[1]
        receivers[addrs[0]] = first
        for addr in addrs[1:]:
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.bind((addr, port))
            receivers[addr] = s
    with sender_ns.enter():
        sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for i in range(count):
            for addr in addrs:
                sender.sendto(f"{addr} {i}".encode(), (addr, port))
        got: dict[str, int] = {}
        for addr, s in receivers.items():
            s.settimeout(1.0 if not got else 0.3)
            n = 0
            try:
                while n < count:
                    s.recv(100)
                    n += 1
                    s.settimeout(0.3)
            except TimeoutError:
                pass
            got[addr] = n
        return got
    finally:
        sender.close()
        for s in receivers.values():
            s.close()


def ns_cmd(ns: NetNS, *argv: str) -> str:
    return subprocess.run(["ip", "netns", "exec", ns.name, *argv], capture_output=True, text=True,
                          check=True).stdout


def tc_state(ns: NetNS, ifname: str) -> tuple[str, str]:
    """(bpf filters on ingress+egress, qdiscs) of a device, as `tc` prints them."""
    filters = "".join(ns_cmd(ns, "tc", "filter", "show", "dev", ifname, d) for d in ("ingress", "egress"))
    return filters, ns_cmd(ns, "tc", "qdisc", "show", "dev", ifname)


def xdp_attached(ns: NetNS, ifname: str) -> bool:
    return "prog/xdp" in ns_cmd(ns, "ip", "link", "show", "dev", ifname)


@pytest.fixture
def drop_obj(bpf_obj: Callable[[str], Path]) -> Callable[[str], Any]:
    def load(blocked: str) -> Any:
        return pybpf.load(bpf_obj("linknet_drop"), set={"blocked_addr": ip_u32(blocked)})

    return load


# ---- XDP -----------------------------------------------------------------------------------------------


@pytest.mark.kernel2
@pytest.mark.parametrize(
    ("mode", "netlink", "by_index"),
    [
        pytest.param(None, None, False, id="link-auto"),
        pytest.param("generic", None, True, id="link-generic-ifindex"),
        pytest.param("driver", None, False, id="link-driver"),
        pytest.param(None, True, False, id="netlink"),
        pytest.param("generic", True, True, id="netlink-generic-ifindex"),
    ],
)
def test_xdp_drops_udp_to_blocked_address(
    netns: Any, drop_obj: Any, mode: str | None, netlink: bool | None, by_index: bool
) -> None:
    ns = netns()
    blocked = blocked_address(ns)
    with drop_obj(blocked) as obj:
        prog = obj.programs["xdp_drop_blocked"]
        iface = ns.ifindex if by_index else ns.ifname
        link = attach_xdp(prog, iface, mode, netns=ns.name, netlink=netlink)
        try:
            assert xdp_attached(ns, ns.ifname)
            assert link.legacy == bool(netlink)
            assert len(link_ids_of([prog])) == (0 if netlink else 1)
            got = udp_exchange(ns.peer, ns, [ns.addr, blocked])
            counts = obj.variables["dropped"].value, obj.variables["passed_udp"].value
        finally:
            link.detach()
        assert got == {ns.addr: 5, blocked: 0}
        assert counts == (5, 5)
        assert not xdp_attached(ns, ns.ifname)
        assert link_ids_of([prog]) == []
        # Detached: the blocked address is reachable again and nothing counts any more.
        assert udp_exchange(ns.peer, ns, [ns.addr, blocked]) == {ns.addr: 5, blocked: 5}
        assert obj.variables["dropped"].value == 5


@pytest.mark.kernel2
def test_xdp_attached_inside_namespace_by_the_caller(netns: Any, drop_obj: Any) -> None:
    ns = netns()
    blocked = blocked_address(ns)
    with drop_obj(blocked) as obj, ns.enter():
        link = attach_xdp(obj.programs["xdp_drop_blocked"], ns.ifname, netlink=True)
    # Detached from outside the namespace: the netlink socket it kept still points at the device.
    assert xdp_attached(ns, ns.ifname)
    link.detach()
    assert not xdp_attached(ns, ns.ifname)


def test_xdp_errors(netns: Any, drop_obj: Any) -> None:
    ns = netns()
    with drop_obj("10.9.9.9") as obj:
        with pytest.raises(BPFError, match="no network interface"):
            attach_xdp(obj.programs["xdp_drop_blocked"], "nope0", netns=ns.name)
        with pytest.raises(BPFError, match="not an XDP program"):
            attach_xdp(obj.programs["tc_drop_blocked"], ns.ifname, netns=ns.name)
        with pytest.raises(ValueError, match="unknown XDP mode"):
            attach_xdp(obj.programs["xdp_drop_blocked"], ns.ifname, "turbo", netns=ns.name)
        with attach_xdp(obj.programs["xdp_drop_blocked"], ns.ifname, netns=ns.name):
            # A second program on the same device and mode is refused, and the first stays.
            with pytest.raises(BPFError):
                attach_xdp(obj.programs["xdp_drop_blocked"], ns.ifname, netns=ns.name, netlink=True)
            assert xdp_attached(ns, ns.ifname)
        assert not xdp_attached(ns, ns.ifname)


# ---- tc ------------------------------------------------------------------------------------------------

TC_MODES = [pytest.param(None, id="auto"), pytest.param(True, id="clsact")]


@pytest.mark.kernel2
@pytest.mark.parametrize("legacy", TC_MODES)
def test_tc_ingress_drops_udp_to_blocked_address(netns: Any, drop_obj: Any, legacy: bool | None) -> None:
    ns = netns()
    blocked = blocked_address(ns)
    with drop_obj(blocked) as obj:
        prog = obj.programs["tc_drop_blocked"]
        link = attach_tc(prog, ns.ifname, "ingress", netns=ns.name, legacy=legacy)
        try:
            # Without tcx (the 6.1 kernel) the clsact form is chosen by itself.
            assert link.legacy == (legacy is True or not have_tcx())
            filters, qdiscs = tc_state(ns, ns.ifname)
            if link.legacy:
                assert f"{prog.name}:[{prog.id}]" in filters and "direct-action" in filters
                assert "clsact" in qdiscs
                assert link_ids_of([prog]) == []
            else:
                assert link.info().type == T.LinkType.TCX
                assert "clsact" not in qdiscs
            got = udp_exchange(ns.peer, ns, [ns.addr, blocked])
            counts = obj.variables["dropped"].value, obj.variables["passed_udp"].value
        finally:
            link.detach()
        assert got == {ns.addr: 5, blocked: 0}
        assert counts == (5, 5)
        assert tc_state(ns, ns.ifname)[0].strip() == ""
        assert "clsact" not in tc_state(ns, ns.ifname)[1]
        assert link_ids_of([prog]) == []
        assert udp_exchange(ns.peer, ns, [ns.addr, blocked]) == {ns.addr: 5, blocked: 5}


@pytest.mark.kernel2
@pytest.mark.parametrize("legacy", TC_MODES)
def test_tc_egress_on_the_sending_side(netns: Any, drop_obj: Any, legacy: bool | None) -> None:
    ns = netns()
    blocked = blocked_address(ns)
    peer = ns.peer
    with drop_obj(blocked) as obj, attach_tc(obj.programs["tc_drop_blocked"], peer.ifname, "egress",
                                             netns=peer.name, legacy=legacy) as link:
        prog = obj.programs["tc_drop_blocked"]
        assert link.direction == "egress"
        # Without tcx (the 6.1 kernel) the clsact form is chosen by itself.
        assert link.legacy == (legacy is True or not have_tcx())
        filters, qdiscs = tc_state(peer, peer.ifname)
        if link.legacy:
            assert link.fd is None
            assert f"{prog.name}:[{prog.id}]" in filters and "clsact" in qdiscs
            assert link_ids_of([prog]) == []
        else:
            assert link.info().type == T.LinkType.TCX
            assert link_ids_of([prog]) == [link.info().id]
            assert "clsact" not in qdiscs and filters.strip() == ""
        got = udp_exchange(peer, ns, [ns.addr, blocked])
    assert got == {ns.addr: 5, blocked: 0}
    assert tc_state(peer, peer.ifname)[0].strip() == ""
    assert "clsact" not in tc_state(peer, peer.ifname)[1]


@pytest.mark.kernel2
def test_tc_clsact_qdisc_shared_by_links_and_kept_when_not_ours(netns: Any, drop_obj: Any) -> None:
    ns = netns()
    with drop_obj("10.9.9.9") as obj:
        prog = obj.programs["tc_drop_blocked"]
        first = attach_tc(prog, ns.ifname, "ingress", netns=ns.name, legacy=True)
        second = attach_tc(prog, ns.ifname, "egress", netns=ns.name, legacy=True)
        assert first.created_qdisc and not second.created_qdisc
        first.detach()
        filters, qdiscs = tc_state(ns, ns.ifname)
        assert "clsact" in qdiscs and "direct-action" in filters  # the second still needs it
        second.detach()
        assert "clsact" not in tc_state(ns, ns.ifname)[1]  # the last pybpf user removed what pybpf made

        # A clsact qdisc someone else made stays.
        ns_cmd(ns, "tc", "qdisc", "add", "dev", ns.ifname, "clsact")
        with attach_tc(prog, ns.ifname, netns=ns.name, legacy=True) as third:
            assert not third.created_qdisc
        filters, qdiscs = tc_state(ns, ns.ifname)
        assert "clsact" in qdiscs and filters.strip() == ""


@pytest.mark.kernel2
def test_tcx_forced_on_kernel_without_it_names_the_version(netns: Any, drop_obj: Any) -> None:
    if have_tcx():
        pytest.skip("this kernel has tcx; the error is for kernels before 6.6")
    ns = netns()
    with drop_obj("10.9.9.9") as obj, pytest.raises(NotSupportedError, match=r"6\.6"):
        attach_tc(obj.programs["tc_drop_blocked"], ns.ifname, netns=ns.name, legacy=False)


# ---- cgroup --------------------------------------------------------------------------------------------

CHILD_CODE = r"""
import errno, socket, sys
what, port = sys.argv[1], int(sys.argv[2])
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    if what == "connect":
        s.connect(("127.0.0.1", port))
    print("OK")
except OSError as exc:
    print(errno.errorcode.get(exc.errno, exc.errno))
"""


def run_in(cgroup_dir: Path | None, ns: Any, what: str, port: int) -> str:
    """Run CHILD_CODE in a child process that first joins `cgroup_dir` (None: stays where it is) and ns."""

    def enter() -> None:
        if cgroup_dir is not None:
            with open(cgroup_dir / "cgroup.procs", "w") as f:
                f.write("0")  # 0: the writing process itself
        fd = os.open(ns.path, os.O_RDONLY)
        if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
            os._exit(99)
        os.close(fd)

    result = subprocess.run([sys.executable, "-c", CHILD_CODE, what, str(port)], preexec_fn=enter,
                            capture_output=True, text=True, timeout=30, check=True)
    return result.stdout.strip()


@pytest.mark.parametrize("legacy", [pytest.param(None, id="link"), pytest.param(True, id="prog_attach")])
def test_cgroup_connect4_denies_inside_the_cgroup_only(
    netns: Any, bpf_obj: Any, cgroup: Path, legacy: bool | None
) -> None:
    ns = netns(veth=False)
    with pybpf.load(bpf_obj("linknet_cgroup"), set={"blocked_port": 4242}) as obj:
        prog = obj.programs["deny_connect"]
        link = attach_cgroup(prog, cgroup, legacy=legacy)
        try:
            assert link.legacy == bool(legacy)
            assert len(link_ids_of([prog])) == (0 if legacy else 1)
            inside_blocked = run_in(cgroup, ns, "connect", 4242)
            inside_other = run_in(cgroup, ns, "connect", 4243)
            outside_blocked = run_in(None, ns, "connect", 4242)
            counts = obj.variables["denied"].value, obj.variables["allowed"].value
        finally:
            link.detach()
        assert (inside_blocked, inside_other, outside_blocked) == ("EPERM", "OK", "OK")
        assert counts == (1, 1)
        assert run_in(cgroup, ns, "connect", 4242) == "OK"
        assert link_ids_of([prog]) == []
        assert attached_prog_count(cgroup, T.AttachType.CGROUP_INET4_CONNECT) == 0


def test_cgroup_sock_create_by_fd_and_attach_type_name(netns: Any, bpf_obj: Any, cgroup: Path) -> None:
    ns = netns(veth=False)
    with pybpf.load(bpf_obj("linknet_cgroup"), set={"blocked_port": 1}) as obj:
        prog = obj.programs["deny_udp_socket"]
        fd = os.open(cgroup, os.O_RDONLY | os.O_DIRECTORY)
        try:
            with attach_cgroup(prog, fd, "sock_create") as link:
                assert link.attach_type == T.AttachType.CGROUP_INET_SOCK_CREATE
                assert attached_prog_count(cgroup, T.AttachType.CGROUP_INET_SOCK_CREATE) == 1
                inside, outside = run_in(cgroup, ns, "socket", 0), run_in(None, ns, "socket", 0)
        finally:
            os.close(fd)
        assert (inside, outside) == ("EPERM", "OK")
        assert attached_prog_count(cgroup, T.AttachType.CGROUP_INET_SOCK_CREATE) == 0
        with pytest.raises(ValueError, match="not an attach type"):
            attach_cgroup(prog, cgroup, "connect4")
        with pytest.raises(BPFError, match="no cgroup"):
            attach_cgroup(prog, cgroup / "missing")


# ---- socket filter -------------------------------------------------------------------------------------


def test_socket_filter_on_a_socket_pair(bpf_obj: Any) -> None:
    with pybpf.load(bpf_obj("linknet_socket")) as obj:
        a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        with a, b:
            b.settimeout(0.2)
            link = attach_socket(obj.programs["keep_short"], b)
            a.send(b"short")
            a.send(b"this one is too long")
            a.send(b"tiny")
            got = []
            try:
                while True:
                    got.append(b.recv(100))
            except TimeoutError:
                pass
            assert got == [b"short", b"tiny"]
            assert (obj.variables["kept"].value, obj.variables["dropped"].value) == (2, 1)
            link.detach()
            a.send(b"this one is too long")
            assert b.recv(100) == b"this one is too long"
            link.detach()  # idempotent
        # Attached to a socket that is then closed: detaching is harmless.
        c, d = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
        late = attach_socket(obj.programs["keep_short"], d.fileno())
        c.close()
        d.close()
        late.detach()


def test_socket_filter_refuses_other_programs(bpf_obj: Any) -> None:
    with pybpf.load(bpf_obj("linknet_cgroup"), set={"blocked_port": 1}) as obj, socket.socket() as s, \
            pytest.raises(BPFError, match="sockets take"):
        attach_socket(obj.programs["deny_connect"], s)


# ---- sk_lookup -----------------------------------------------------------------------------------------


def test_sk_lookup_steers_datagrams_to_a_socket_in_the_namespace(netns: Any, bpf_obj: Any) -> None:
    ns = netns(veth=False)
    steer_port = 7007
    with pybpf.load(bpf_obj("linknet_sk_lookup"), set={"steer_port": steer_port}) as obj:
        prog = obj.programs["steer"]
        with ns.enter():
            target = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            target.bind(("127.0.0.1", 0))  # any other port
            client = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        with target, client:
            target.settimeout(1.0)
            obj.maps["target_socket"][0] = target.fileno()
            link = attach_netns(prog, ns.name)
            try:
                assert link.info().type == T.LinkType.NETNS
                client.sendto(b"steered", ("127.0.0.1", steer_port))
                assert target.recv(100) == b"steered"
                assert obj.variables["steered"].value == 1
            finally:
                link.detach()
            assert link_ids_of([prog]) == []
            client.sendto(b"lost", ("127.0.0.1", steer_port))  # nobody listens on steer_port now
            target.settimeout(0.3)
            with pytest.raises(TimeoutError):
                target.recv(100)


def test_netns_attach_needs_an_existing_namespace(bpf_obj: Any) -> None:
    with pybpf.load(bpf_obj("linknet_sk_lookup"), set={"steer_port": 1}) as obj, \
            pytest.raises(BPFError, match="no network namespace"):
        attach_netns(obj.programs["steer"], "pybpf-no-such-netns")


# ---- sockmap -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", [pytest.param(None, id="auto"), pytest.param(True, id="prog_attach")])
def test_sk_msg_on_a_sockmap_sees_what_a_socket_sends(netns: Any, bpf_obj: Any, legacy: bool | None) -> None:
    ns = netns(veth=False)
    with pybpf.load(bpf_obj("linknet_sockmap")) as obj:
        socks = obj.maps["socks"]
        prog = obj.programs["count_messages"]
        with in_netns(ns.name):
            server = socket.socket()
            server.bind(("127.0.0.1", 0))
            server.listen(1)
            client = socket.create_connection(server.getsockname())
            conn, _ = server.accept()
        with server, client, conn:
            # legacy None takes a sockmap BPF link where the kernel has one (6.10+), else BPF_PROG_ATTACH
            expect_legacy = legacy is True or not probe_link("sockmap_link").supported
            link = attach_sockmap(prog, socks, legacy=legacy)
            try:
                assert (link.fd is None) == expect_legacy
                assert len(link_ids_of([prog])) == (0 if expect_legacy else 1)
                if not expect_legacy:
                    assert link.info().type == T.LinkType.SOCKMAP
                socks[0] = client.fileno()  # programs apply to sockets added after the attach
                client.sendall(b"hello")
                conn.settimeout(2)
                assert conn.recv(100) == b"hello"
                counts = obj.variables["messages"].value, obj.variables["bytes"].value
                del socks[0]
            finally:
                link.detach()
            assert counts == (1, 5)
            assert link_ids_of([prog]) == []
            # Detached: a socket added to the map now is not given the program, its messages are not counted.
            socks[0] = client.fileno()
            client.sendall(b"again")
            assert conn.recv(100) == b"again"
            del socks[0]
            assert (obj.variables["messages"].value, obj.variables["bytes"].value) == (1, 5)


# ---- flow dissector ------------------------------------------------------------------------------------


def test_flow_dissector_on_a_namespace(netns: Any, bpf_obj: Any) -> None:
    ns = netns(veth=False)
    with pybpf.load(bpf_obj("linknet_flow")) as obj:
        prog = obj.programs["dissect"]
        with attach_netns(prog, ns.path) as link:
            assert link.kind == "flow_dissector"
            assert attached_prog_count(ns.path, T.AttachType.FLOW_DISSECTOR) == 1
            assert link.info().prog_id == prog.id
        assert attached_prog_count(ns.path, T.AttachType.FLOW_DISSECTOR) == 0
        assert link_ids_of([prog]) == []
