"""Start-up cost of the attach paths, against the real kernel: attaching a replayed collection's program in a
fresh interpreter must not build the generated enums (importing `enum` costs ~5 ms of a tool's start-up) nor
pull in the feature probes; the hooks compare ints (`Program.prog_type`, `expected_attach_type`) with the
`T.BPF_*` constants instead, and probe the kernel only when it refuses the BPF link."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from child_process import fresh_python, print_imported

import pybpf
from pybpf.features import probe_link

pytestmark = pytest.mark.usefixtures("require_root")

BpfObj = Callable[[str], Path]

# What attaching must not import (each costs milliseconds of start-up; the probes far more).
_HEAVY = ("enum", "functools", "collections", "re", "typing", "dataclasses", "contextlib", "socket",
          "pybpf.features", "pybpf.elf.sections", "pybpf.btf", "pybpf.asm")

# The hook modules whose import alone must stay light (uprobe/usdt need pybpf.symbols and pyelftools).
_LIGHT_MODULES = ("xdp", "tc", "cgroup", "netns", "socket", "sockmap", "iter", "kprobe", "ksyscall",
                  "raw_tracepoint", "tracepoint", "tracing", "perf_event")

_counter = itertools.count()


@pytest.fixture
def obj_copy(tmp_path: Path, bpf_obj: BpfObj) -> Callable[[str], Path]:
    """A private copy of a test object, loaded once here so that the child replays its cached plan (a
    replayed load imports none of the object reader, BTF or enums)."""

    def copy(name: str) -> Path:
        dest = tmp_path / f"{name}.bpf.o"
        shutil.copyfile(bpf_obj(name), dest)
        pybpf.load(dest).close()
        return dest

    return copy


@pytest.fixture
def loopback_netns() -> Iterator[str]:
    """A new network namespace (only `lo`, up), deleted afterwards."""
    if shutil.which("ip") is None:
        pytest.skip("iproute2 (`ip`) is not installed")
    name = f"pybpf-startup-{os.getpid()}-{next(_counter)}"
    subprocess.run(["ip", "netns", "add", name], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)


def test_hook_modules_import_light(cache: Path) -> None:
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import pybpf.link\n"
        f"for name in {_LIGHT_MODULES!r}:\n"
        "    __import__('pybpf.link.' + name)\n"
        + print_imported(_HEAVY, since="before")
    )
    assert fresh_python(code, cache) == [""]


def _attached(program: str, attach_args: str) -> str:
    """A child script's start: replay the object's plan (argv[1]), attach `program` with `attach_args`, print
    what heavy modules that imported (a blank line: none), then "True" when the link is a BPF link the kernel
    lists for the program; the caller's lines follow inside the `with ... as link:` block."""
    return (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import pybpf\n"
        "with pybpf.load(sys.argv[1]) as c:\n"
        "    assert c.plan, 'not replayed'\n"
        f"    prog = c.programs[{program!r}]\n"
        f"    with prog.attach({attach_args}) as link:\n"
        + print_imported(_HEAVY, since="before", indent="        ")
        + "        from pybpf.link.base import kernel_links\n"
        "        print(link.fd is not None and prog.id in {i.prog_id for i in kernel_links()})\n"
    )


def test_xdp_attach_builds_no_enum(cache: Path, obj_copy: Callable[[str], Path], loopback_netns: str) -> None:
    if not probe_link("xdp_link").supported:
        pytest.skip("no XDP BPF links (5.9+): the netlink form needs pyroute2")
    obj = obj_copy("linknet_drop")
    code = (
        _attached("xdp_drop_blocked", "iface='lo'")
        # Traffic on lo: the program counts the UDP datagrams it lets pass (blocked_addr is 0).
        + "        import socket\n"
        "        rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "        rx.bind(('127.0.0.1', 0))\n"
        "        tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
        "        for _ in range(3):\n"
        "            tx.sendto(b'x', rx.getsockname())\n"
        "            rx.recv(16)\n"
        "        print(c.variables['passed_udp'].value)\n"
    )
    out = fresh_python(code, cache, obj, netns=loopback_netns)
    assert out == ["", "True", "3"], out
    # The link went with the process.
    shown = subprocess.run(["ip", "-n", loopback_netns, "link", "show", "lo"], capture_output=True, text=True,
                           check=True).stdout
    assert "xdp" not in shown, shown


def test_cgroup_attach_builds_no_enum(cache: Path, obj_copy: Callable[[str], Path], cgroup: Path) -> None:
    if not probe_link("cgroup_link").supported:
        pytest.skip("no cgroup BPF links (5.7+)")
    obj = obj_copy("linknet_cgroup")
    code = (
        _attached("deny_connect", "cgroup=sys.argv[2]")
        + "        print(link.target)\n"
        "        print(link.attach_type.name)\n"
    )
    out = fresh_python(code, cache, obj, cgroup)
    assert out == ["", "True", f"{cgroup} (cgroup_inet4_connect)", "CGROUP_INET4_CONNECT"], out
