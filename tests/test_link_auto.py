"""Auto-attach dispatch (pybpf.link.auto): which attach function each program gets, with which arguments.

Most tests use programs that are not loaded (their fd is /dev/null) and replace the `pybpf.link.attach_*`
functions with recorders, so they need no kernel support for the hook; one attaches for real.
"""

from __future__ import annotations

import os
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from child_process import waiting

import pybpf
import pybpf.link
from pybpf._sys.fd import FD
from pybpf.link import attach, attach_all, detach_all
from pybpf.program import Program

Calls = list[tuple[str, str, tuple[Any, ...], dict[str, Any]]]

_FAKED = ("attach_tracing", "attach_freplace", "attach_uprobe", "attach_uprobe_multi", "attach_iter",
          "attach_sockmap", "attach_socket", "attach_tc", "attach_lsm_cgroup", "attach_kprobe")


@pytest.fixture
def calls(monkeypatch: pytest.MonkeyPatch) -> Calls:
    """The `pybpf.link.attach_*` functions replaced by recorders: (function, program, args, kwargs)."""
    record: Calls = []
    for name in _FAKED:
        def fake(program: Program, *args: Any, _name: str = name, **kwargs: Any) -> Any:
            record.append((_name, program.name, args, kwargs))
            return types.SimpleNamespace(program=program)

        monkeypatch.setattr(pybpf.link, name, fake)
    return record


@pytest.fixture
def unloaded(bpf_obj: Callable[[str], Path]) -> Iterator[Callable[..., list[Program]]]:
    """unloaded("p_fentry", ...) -> programs of tests/bpf/elf_sections.bpf.c, not loaded (fd: /dev/null)."""
    specs = pybpf.open_object(bpf_obj("elf_sections")).programs
    made: list[Program] = []

    def make(*names: str) -> list[Program]:
        for name in names:
            spec = specs[name]
            made.append(Program(FD(os.open("/dev/null", os.O_RDONLY)), name=name, type=spec.type,
                                attach_type=spec.attach_type, spec=spec))
        return made[-len(names):]

    yield make
    for prog in made:
        prog.close()


def test_attach_all_gives_target_only_to_freplace(calls: Calls, unloaded: Callable[..., list[Program]]) -> None:
    """target= is freplace's keyword: fentry/lsm/tp_btf programs must not get it (they used to: TypeError)."""
    replaced = object()
    progs = unloaded("p_fentry", "p_lsm", "p_tp_btf", "p_freplace")
    links, failures = attach_all(progs, target=replaced, cookie=3)
    assert failures == {}
    assert len(links) == 4
    assert calls == [
        ("attach_tracing", "p_fentry", (), {"cookie": 3}),
        ("attach_tracing", "p_lsm", (), {"cookie": 3}),
        ("attach_tracing", "p_tp_btf", (), {"cookie": 3}),
        ("attach_freplace", "p_freplace", (), {"target": replaced}),
    ]


def test_attach_all_without_target_skips_freplace(calls: Calls, unloaded: Callable[..., list[Program]]) -> None:
    _, failures = attach_all(unloaded("p_fentry", "p_freplace"))
    assert failures == {} and calls == [("attach_tracing", "p_fentry", (), {})]
    with pytest.raises(TypeError, match="cookie"):
        attach(unloaded("p_freplace")[0], cookie=1)  # freplace links carry no cookie


def test_attach_all_gives_uprobe_multi_its_own_keywords(calls: Calls,
                                                        unloaded: Callable[..., list[Program]]) -> None:
    """cookie= belongs to uprobes, cookies= to uprobe.multi; binary= swaps the file and keeps the function."""
    progs = unloaded("p_uprobe", "p_uprobe_multi", "p_uretprobe_multi")
    _, failures = attach_all(progs, binary="/bin/true", cookie=5, pid=9)
    assert failures == {}
    assert calls == [
        ("attach_uprobe", "p_uprobe", ("/bin/true",),
         {"retprobe": False, "symbol": "readline", "offset": 0, "cookie": 5, "pid": 9}),
        ("attach_uprobe_multi", "p_uprobe_multi", ("/bin/true",), {"retprobe": False, "symbols": "read*", "pid": 9}),
        ("attach_uprobe_multi", "p_uretprobe_multi", ("/bin/true",),
         {"retprobe": True, "symbols": "read*", "pid": 9}),
    ]
    with pytest.raises(TypeError, match="cookie"):
        attach(progs[1], cookie=1)
    with pytest.raises(TypeError, match="cookies"):
        attach(progs[0], cookies=[1])


def test_attach_all_gives_iterators_only_their_kind_of_target(calls: Calls,
                                                              unloaded: Callable[..., list[Program]]) -> None:
    _, failures = attach_all(unloaded("p_iter"), map=object(), cgroup="/sys/fs/cgroup", order="self_only", pid=7)
    assert failures == {} and calls == [("attach_iter", "p_iter", (), {"pid": 7})]


def test_attach_passes_every_argument(calls: Calls, unloaded: Callable[..., list[Program]]) -> None:
    """The runners of caller-given targets pass the arguments after the target on (they used to drop them
    for sockmap, socket and lsm_cgroup), and a tc section's direction yields to a positional one."""
    verdict, tc, kprobe = unloaded("p_sk_skb_stream_verdict", "p_tc_ingress", "p_kprobe")
    the_map = object()
    attach(verdict, the_map, "stream_verdict")
    attach(tc, "lo", "egress")
    attach(tc, "lo")
    attach(kprobe)
    assert calls == [
        ("attach_sockmap", "p_sk_skb_stream_verdict", (the_map, "stream_verdict"), {}),
        ("attach_tc", "p_tc_ingress", ("lo", "egress"), {}),
        ("attach_tc", "p_tc_ingress", ("lo",), {"direction": "ingress"}),
        ("attach_kprobe", "p_kprobe", ("do_unlinkat",), {"retprobe": False}),
    ]
    with pytest.raises(TypeError, match="socket"):
        attach(unloaded("p_socket")[0])


# ---- against the kernel --------------------------------------------------------------------------------------

TARGET_SOURCE = r"""
#include <stdio.h>
__attribute__((noinline)) int pybpf_add(int a, int b) { return a + b; }
__attribute__((noinline)) int pybpf_sub(int a, int b) { return a - b; }
int main(void)
{
    char line[16];
    int total = 0;
    if (!fgets(line, sizeof line, stdin))   /* wait until the test has attached */
        return 1;
    for (int i = 1; i <= 5; i++)
        total = pybpf_sub(pybpf_add(total, i), 1);
    printf("%d\n", total);
    return 0;
}
"""


def _int(value: Any) -> int:
    return value if isinstance(value, int) else int.from_bytes(bytes(value), "little")


@pytest.mark.usefixtures("require_root")
def test_attach_all_uprobe_multi_and_tracepoint_with_cookie(bpf_obj: Callable[[str], Path], c_program: Any) -> None:
    """attach_all(binary=, symbols=, cookie=) on a uprobe.multi and tracepoint programs: the tracepoints get
    the cookie, the uprobe.multi program the binary and symbols (it used to get cookie= too: TypeError)."""
    from pybpf.features import probe_link

    if not probe_link("uprobe_multi_link").supported:
        pytest.skip("the kernel has no uprobe_multi links (6.6+)")
    target = c_program(TARGET_SOURCE, "target")
    with pybpf.load(bpf_obj("uprobe_multi")) as multi, pybpf.load(bpf_obj("link_tp")) as tp, \
            waiting(target) as proc:
        programs = [multi.programs["on_any"], tp.programs["cookie_tp"], tp.programs["count_tp"]]
        links, failures = attach_all(programs, binary=str(target), symbols=["pybpf_add", "pybpf_sub"], cookie=7,
                                     pid=proc.pid)
        try:
            assert failures == {}
            assert sorted(lk.program.name for lk in links if lk.program is not None) == [
                "cookie_tp", "count_tp", "on_any"]
            os.getppid()
            out, _ = proc.communicate("go\n", timeout=30)
            assert proc.returncode == 0, out
            hits = {_int(k): _int(v) for k, v in multi.maps["hits_by_cookie"].items()}
            assert hits == {0: 10}  # 5 calls each of pybpf_add and pybpf_sub, no cookies
            assert _int(tp.maps["cookies"][os.getpid()]) == 7
        finally:
            assert not detach_all(links)
