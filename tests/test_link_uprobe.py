"""uprobes, uretprobes, uprobe_multi and USDT against real programs built by the test.

Each test starts a small C program that waits on stdin, attaches, lets it run, reads what the BPF
program saw (global variables or maps), detaches, and checks that no tracefs entry and no BPF link of
the test's programs is left.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import types
from pathlib import Path
from typing import Any

import pytest
from child_process import release, waiting
from kernel_objects import link_ids_of

import pybpf
from pybpf._sys import types as T
from pybpf._sys.kernel import kernel_version
from pybpf.errors import BPFError, ObjectError
from pybpf.link.uprobe import attach_uprobe, attach_uprobe_multi, legacy_uprobes, uprobe_pmu
from pybpf.link.usdt import attach_usdt, parse_usdt_args, usdt_notes
from pybpf.symbols import SymbolNotFoundError

pytestmark = pytest.mark.usefixtures("require_root")

TARGET_SOURCE = r"""
#include <stdio.h>
#include <unistd.h>
#include <sys/sdt.h>

__attribute__((noinline)) int pybpf_add(int a, int b) { return a + b; }
__attribute__((noinline)) int pybpf_sub(int a, int b) { return a - b; }
__attribute__((noinline)) int pybpf_mul(int a, int b) { return a * b; }

int main(void)
{
    char line[16];
    int total = 0;
    if (!fgets(line, sizeof line, stdin))   /* wait until the test has attached */
        return 1;
    for (int i = 1; i <= 5; i++) {
        total += pybpf_add(i, 100 * i);
        DTRACE_PROBE3(pybpf_test, loop, i, (long)(i * -1000), total);
    }
    DTRACE_PROBE1(pybpf_test, twice, total);   /* one probe, two call sites, two argument specs */
    DTRACE_PROBE1(pybpf_test, twice, 7);
    pybpf_sub(total, 1);
    pybpf_sub(total, 2);
    pybpf_mul(total, 3);
    for (int i = 0; i < 3; i++)
        getpid();
    printf("%d\n", total);
    return 0;
}
"""

SEMAPHORE_SOURCE = r"""
#define _SDT_HAS_SEMAPHORES 1
#include <stdio.h>
#include <sys/sdt.h>

unsigned short pybpf_sema_tick_semaphore __attribute__((unused)) __attribute__((section(".probes")));

int main(void)
{
    char line[16];
    int enabled = 0;
    if (!fgets(line, sizeof line, stdin))
        return 1;
    for (int i = 1; i <= 4; i++) {
        if (pybpf_sema_tick_semaphore) {    /* only set while a probe is attached */
            enabled++;
            DTRACE_PROBE1(pybpf_sema, tick, i * 10);
        }
    }
    printf("%d\n", enabled);
    return 0;
}
"""

LIB_SOURCE = r"""
__attribute__((noinline)) int pybpf_lib_add(int a, int b) { return a + b; }
"""

LIB_USER_SOURCE = r"""
#include <stdio.h>
int pybpf_lib_add(int a, int b);
__attribute__((noinline)) int pybpf_add(int a, int b) { return pybpf_lib_add(a, b); }
int main(void)
{
    char line[16];
    int total = 0;
    if (!fgets(line, sizeof line, stdin))
        return 1;
    for (int i = 1; i <= 5; i++)
        total += pybpf_add(i, 100 * i);
    printf("%d\n", total);
    return 0;
}
"""

EXPECTED_TOTAL = sum(i + 100 * i for i in range(1, 6))  # 1515


# ---- helpers -------------------------------------------------------------------------------------------


def _own_uprobes() -> list[str]:
    """The tracefs uprobes this process created (legacy mode)."""
    prefix = f"pybpfu_{os.getpid()}_"
    return [e for e in legacy_uprobes() if e.startswith(prefix)]


def run_after_attach(proc: subprocess.Popen[str]) -> str:
    """Let the waiting child run (it was attached to) to its end; its output."""
    release(proc)
    out, _ = proc.communicate(timeout=30)  # closes stdin and reads to the end
    assert proc.returncode == 0, out
    return out.strip()


def _uprobe_cookie(link: Any) -> int:
    """The BPF cookie of a single-site uprobe/USDT link, as the kernel reports it (6.9+)."""
    raw = link.info().raw
    assert raw.perf_event.type == 1  # BPF_PERF_EVENT_UPROBE
    return int(raw.perf_event.uprobe.cookie)


def values(obj: Any, *names: str) -> dict[str, Any]:
    return {n: obj.variables[n].value for n in names}


@pytest.fixture
def target(c_program: Any) -> Path:
    path: Path = c_program(TARGET_SOURCE, "target")
    return path


MODES = [pytest.param(False, id="pmu"), pytest.param(True, id="tracefs")]


# ---- uprobes -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("legacy", MODES)
def test_uprobe_and_uretprobe_see_arguments_and_return_values(
    bpf_obj: Any, target: Path, legacy: bool
) -> None:
    if not legacy and uprobe_pmu() is None:
        pytest.skip("the kernel has no uprobe PMU (4.17+)")
    with pybpf.load(bpf_obj("uprobe_basic")) as obj:
        progs = [obj.programs["on_add"], obj.programs["on_add_return"]]
        with waiting(target) as proc:
            entry = attach_uprobe(progs[0], target, "pybpf_add", cookie=77, legacy=legacy)
            ret = attach_uprobe(progs[1], target, "pybpf_add", retprobe=True, legacy=legacy)
            if legacy:
                assert len(_own_uprobes()) == 2
            perf_links = link_ids_of(progs)
            assert run_after_attach(proc) == str(EXPECTED_TOTAL)
            seen = values(obj, "add_calls", "add_arg_sum", "last_a", "last_b", "last_cookie", "ret_calls",
                          "ret_sum")
            entry.detach()
            ret.detach()
        assert seen == {"add_calls": 5, "add_arg_sum": EXPECTED_TOTAL, "last_a": 5, "last_b": 500,
                        "last_cookie": 77, "ret_calls": 5, "ret_sum": EXPECTED_TOTAL}
        assert len(perf_links) == 2  # BPF perf links (5.15+) are visible while attached ...
        assert link_ids_of(progs) == []  # ... and gone after detach
        assert not _own_uprobes()

        # Detached means detached: running the program again changes nothing.
        with waiting(target) as proc:
            run_after_attach(proc)
        assert obj.variables["add_calls"].value == 5


def test_uprobe_on_libc_with_pid_filter(bpf_obj: Any, target: Path) -> None:
    with pybpf.load(bpf_obj("uprobe_basic")) as obj, waiting(target) as proc:
        prog = obj.programs["on_libc"]
        with attach_uprobe(prog, "c", "getpid", pid=proc.pid) as link:
            assert "libc" in link.target
            os.getpid()  # this process calls getpid too, but the probe follows only proc
            subprocess.run(["true"], check=True)
            run_after_attach(proc)
            calls = obj.variables["libc_calls"].value
        assert calls == 3
        assert link_ids_of([prog]) == []


@pytest.mark.parametrize("cflags", [pytest.param((), id="pie"), pytest.param(("-no-pie",), id="no-pie")])
def test_uprobe_in_shared_library_used_by_executable(
    bpf_obj: Any, c_program: Any, tmp_path: Path, cflags: tuple[str, ...]
) -> None:
    lib = c_program(LIB_SOURCE, "libpybpftest.so", cflags=("-shared", "-fPIC"))
    # c_program puts cflags before the source: name the library as a file (and keep it though unseen yet).
    user = c_program(LIB_USER_SOURCE, "libuser", cflags=(*cflags, "-Wl,--no-as-needed", str(lib),
                                                         f"-Wl,-rpath,{tmp_path}"))
    env = dict(os.environ)
    with pybpf.load(bpf_obj("uprobe_basic")) as obj, waiting(user, env) as proc:
        lib_probe = attach_uprobe(obj.programs["on_add"], lib, "pybpf_lib_add")
        exe_probe = attach_uprobe(obj.programs["on_add_return"], user, "pybpf_add", retprobe=True)
        assert run_after_attach(proc) == str(EXPECTED_TOTAL)
        seen = values(obj, "add_calls", "add_arg_sum", "ret_calls", "ret_sum")
        lib_probe.detach()
        exe_probe.detach()
    assert seen == {"add_calls": 5, "add_arg_sum": EXPECTED_TOTAL, "ret_calls": 5, "ret_sum": EXPECTED_TOTAL}


def test_uprobe_by_library_name_through_ld_library_path(
    bpf_obj: Any, c_program: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    c_program(LIB_SOURCE, "libpybpftest.so", cflags=("-shared", "-fPIC"))
    monkeypatch.setenv("LD_LIBRARY_PATH", str(tmp_path))
    with pybpf.load(bpf_obj("uprobe_basic")) as obj, attach_uprobe(obj.programs["on_add"], "pybpftest",
                                                                   "pybpf_lib_add") as link:
        assert link.target.startswith(str(tmp_path.resolve() / "libpybpftest.so"))


def test_uprobe_errors_leave_nothing_behind(bpf_obj: Any, target: Path) -> None:
    before = legacy_uprobes()
    with pybpf.load(bpf_obj("uprobe_basic")) as obj:
        prog = obj.programs["on_add"]
        with pytest.raises(SymbolNotFoundError, match="no_such_function"):
            attach_uprobe(prog, target, "no_such_function")
        with pytest.raises(SymbolNotFoundError):
            attach_uprobe(prog, "no-such-library-pybpf", "f")
        # Past the end of the file: the kernel refuses the probe, tracefs too.
        for legacy in (False, True):
            with pytest.raises(BPFError):
                attach_uprobe(prog, target, offset=1 << 30, legacy=legacy)
        assert link_ids_of([prog]) == []
    assert legacy_uprobes() == before


def test_uprobe_refuses_programs_of_other_types(bpf_obj: Any, target: Path) -> None:
    with pybpf.load(bpf_obj("linknet_socket")) as other, pytest.raises(BPFError, match="uprobe"):
        attach_uprobe(other.programs["keep_short"], target, "pybpf_add")


# ---- uprobe_multi --------------------------------------------------------------------------------------


def test_uprobe_multi_with_cookies(bpf_obj: Any, target: Path) -> None:
    from pybpf.features import probe_link

    if not probe_link("uprobe_multi_link").supported:
        pytest.skip("the kernel has no uprobe_multi links (6.6+)")
    with pybpf.load(bpf_obj("uprobe_multi")) as obj, waiting(target) as proc:
        prog = obj.programs["on_any"]
        link = attach_uprobe_multi(prog, target, ["pybpf_add", "pybpf_sub", "pybpf_mul"], cookies=[1, 2, 3])
        assert link.info().type == T.LinkType.UPROBE_MULTI
        run_after_attach(proc)
        hits = {int.from_bytes(bytes(k)[:8], "little") if not isinstance(k, int) else k:
                v if isinstance(v, int) else int.from_bytes(bytes(v), "little")
                for k, v in obj.maps["hits_by_cookie"].items()}
        link.detach()
        assert hits == {1: 5, 2: 2, 3: 1}
        assert link_ids_of([prog]) == []


def test_uprobe_multi_glob_pattern(bpf_obj: Any, target: Path) -> None:
    from pybpf.features import probe_link

    if not probe_link("uprobe_multi_link").supported:
        pytest.skip("the kernel has no uprobe_multi links (6.6+)")
    with pybpf.load(bpf_obj("uprobe_multi")) as obj, waiting(target) as proc, \
            attach_uprobe_multi(obj.programs["on_any"], target, "pybpf_[as]*"):  # add and sub, not mul
        run_after_attach(proc)
        total = sum(v if isinstance(v, int) else int.from_bytes(bytes(v), "little")
                    for v in obj.maps["hits_by_cookie"].values())
    assert total == 5 + 2


# ---- USDT ----------------------------------------------------------------------------------------------


def test_usdt_notes_and_argument_specs(target: Path) -> None:
    notes = usdt_notes(target)
    assert sorted(n.name for n in notes) == ["loop", "twice", "twice"]
    (note,) = [n for n in notes if n.name == "loop"]
    assert (note.provider, note.name, note.semaphore) == ("pybpf_test", "loop", 0)
    args = parse_usdt_args(note.args)
    assert [a.size for a in args] == [-4, -8, -4]
    assert parse_usdt_args("-4@%edi 8@-8(%rbp) 4@$5 1@(%rax)") == [
        parse_usdt_args("-4@%edi")[0],
        parse_usdt_args("8@-8(%rbp)")[0],
        parse_usdt_args("4@$5")[0],
        parse_usdt_args("1@(%rax)")[0],
    ]
    deref = parse_usdt_args("8@-8(%rbp)")[0]
    assert (deref.kind, deref.register, deref.offset) == ("deref", "rbp", -8)
    with pytest.raises(ObjectError):
        parse_usdt_args("8@-4(%rbp,%rax,8)")  # index registers: usdt.bpf.h cannot evaluate them


@pytest.mark.parametrize("legacy", MODES)
def test_usdt_arguments_through_usdt_bpf_h(bpf_obj: Any, target: Path, legacy: bool) -> None:
    if not legacy and uprobe_pmu() is None:
        pytest.skip("the kernel has no uprobe PMU (4.17+)")
    with pybpf.load(bpf_obj("uprobe_usdt")) as obj, waiting(target) as proc:
        prog = obj.programs["on_probe"]
        link = attach_usdt(prog, target, "pybpf_test", "loop", cookie=0xC0FFEE, legacy=legacy)
        run_after_attach(proc)
        seen = values(obj, "calls", "arg_cnt", "sum0", "sum1", "sum2", "cookie", "errors")
        link.detach()
        assert link_ids_of([prog]) == []
    assert seen == {"calls": 5, "arg_cnt": 3, "sum0": 15, "sum1": -15000, "sum2": 101 + 303 + 606 + 1010 + 1515,
                    "cookie": 0xC0FFEE, "errors": 0}
    assert not _own_uprobes()


@pytest.mark.parametrize("legacy", MODES)
def test_usdt_semaphore_counts_while_attached(bpf_obj: Any, c_program: Any, legacy: bool) -> None:
    binary = c_program(SEMAPHORE_SOURCE, "sema")
    (note,) = usdt_notes(binary)
    assert note.semaphore and note.semaphore_offset
    with pybpf.load(bpf_obj("uprobe_usdt")) as obj:
        with waiting(binary) as proc:
            assert run_after_attach(proc) == "0"  # nobody attached: the semaphore is 0
        with waiting(binary) as proc:
            link = attach_usdt(obj.programs["on_probe"], binary, "pybpf_sema", "tick", legacy=legacy)
            assert run_after_attach(proc) == "4"  # the kernel raised the semaphore of the running process
            seen = values(obj, "calls", "sum0", "arg_cnt")
            link.detach()
        with waiting(binary) as proc:
            assert run_after_attach(proc) == "0"
    assert seen == {"calls": 4, "sum0": 100, "arg_cnt": 1}


def test_usdt_probe_with_several_call_sites(bpf_obj: Any, target: Path) -> None:
    with pybpf.load(bpf_obj("uprobe_usdt")) as obj, waiting(target) as proc:
        prog = obj.programs["on_probe"]
        link = attach_usdt(prog, target, "pybpf_test", "twice")
        assert link.fd is None and len(link_ids_of([prog])) == 2  # one uprobe (and perf link) per site
        run_after_attach(proc)
        seen = values(obj, "calls", "arg_cnt", "sum0", "errors")
        link.detach()
        assert link_ids_of([prog]) == []
    assert seen == {"calls": 2, "arg_cnt": 1, "sum0": EXPECTED_TOTAL + 7, "errors": 0}


def test_usdt_unknown_probe_names_the_known_ones(bpf_obj: Any, target: Path) -> None:
    with pybpf.load(bpf_obj("uprobe_usdt")) as obj, pytest.raises(ObjectError, match="pybpf_test:loop"):
        attach_usdt(obj.programs["on_probe"], target, "pybpf_test", "nope")


def test_usdt_spec_ids_are_reused_after_detach(bpf_obj: Any, target: Path) -> None:
    from pybpf.link import usdt

    with pybpf.load(bpf_obj("uprobe_usdt")) as obj, contextlib.ExitStack() as links:
        prog = obj.programs["on_probe"]
        specs_id = obj.maps["__bpf_usdt_specs"].id
        first = links.enter_context(attach_usdt(prog, target, "pybpf_test", "loop"))  # detached on failure too
        assert usdt._ids_in_use[specs_id] == {0}
        second = links.enter_context(attach_usdt(prog, target, "pybpf_test", "loop"))
        assert usdt._ids_in_use[specs_id] == {0, 1}
        first.detach()
        assert usdt._ids_in_use[specs_id] == {1}
        third = links.enter_context(attach_usdt(prog, target, "pybpf_test", "loop"))  # takes `first`'s id
        assert usdt._ids_in_use[specs_id] == {0, 1}
        if kernel_version() >= (6, 9, 0):  # the spec id is each site's BPF cookie, which link info shows from 6.9
            assert (_uprobe_cookie(second), _uprobe_cookie(third)) == (1, 0)
        second.detach()
        assert usdt._ids_in_use[specs_id] == {0}
        third.detach()
        assert usdt._ids_in_use[specs_id] == set()
        with attach_usdt(prog, target, "pybpf_test", "loop"):
            assert usdt._ids_in_use[specs_id] == {0}
        assert usdt._ids_in_use[specs_id] == set()
        # A failed attach takes no id.
        with pytest.raises(SymbolNotFoundError, match="no such file"):
            attach_usdt(prog, "/nonexistent/pybpf", "p", "n")
        assert usdt._ids_in_use[specs_id] == set()


def test_attach_all_binary_keeps_the_sections_function(target: Path) -> None:
    """attach_all(binary=...) swaps the file a `uprobe/<binary>:<func>` section names, not the function."""
    example = Path(__file__).resolve().parent.parent / "examples" / "uprobe_malloc.bpf.c"
    libc = Path("/lib/x86_64-linux-gnu/libc.so.6").resolve()  # same file, another spelling than the section's
    with pybpf.load(example) as obj, waiting(target) as proc:
        assert obj.attach_all(binary=str(libc), pid=proc.pid) == {}
        run_after_attach(proc)  # printf to a pipe mallocs stdout's buffer
        assert obj.maps["malloc_bytes"].get(proc.pid, 0) > 0
        ids = [types.SimpleNamespace(id=p.id) for p in obj.programs.values()]
        assert len(link_ids_of(ids)) == 1
        obj.close()
        assert link_ids_of(ids) == []
