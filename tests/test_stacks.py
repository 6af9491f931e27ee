"""Stack traces end to end: BPF programs record kernel and user stacks (stack maps, bpf_get_stack into a ring
buffer, build-id stacks) and pybpf.symbols turns them into names and folded stacks."""

from __future__ import annotations

import os
import platform
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from child_process import release, waiting

import pybpf
from pybpf.link.uprobe import attach_uprobe
from pybpf.symbols import (
    UNKNOWN,
    BuildIdSymbols,
    ElfSymbols,
    build_id_stack,
    fold_stacks,
    read_build_id,
    read_maps,
    stack_addresses,
    symbolize_build_id_stack,
    symbolize_kernel_stack,
    symbolize_user_stack,
)

pytestmark = pytest.mark.usefixtures("require_root")

# The syscall path every kernel stack taken at sys_enter_getpid runs through (x64_sys_call: 6.9+).
SYSCALL_FRAMES = ("do_syscall_64", "x64_sys_call", "entry_SYSCALL")

# main -> outer -> inner; blocks on stdin before the calls (until attached) and after (until the stack is read).
NESTED = r"""
#include <stdio.h>

__attribute__((noinline)) int inner(int x) { volatile int y = x * 2; return y + 1; }
__attribute__((noinline)) int outer(int x) { return inner(x + 1) + 1; }

int main(void)
{
    char line[16];
    if (!fgets(line, sizeof line, stdin))
        return 1;
    printf("%d\n", outer(40));
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    return 0;
}
"""

# last_call's final instruction is the call to die (noreturn): its return address is where `after` begins.
NORETURN = r"""
#include <stdio.h>
#include <stdlib.h>

__attribute__((noreturn, noinline)) void die(void) { abort(); }
__attribute__((noinline)) void last_call(void) { die(); }
__attribute__((noinline)) int after(int x) { return x + 1; }

int main(int argc, char **argv)
{
    char line[16];
    if (argc > 5)
        last_call();
    puts("ready");
    fflush(stdout);
    if (!fgets(line, sizeof line, stdin))
        return 1;
    return after(argc) != 2;
}
"""

_EVENT_HEADER = struct.Struct("=Ii")  # struct stack_event: pid, size (then the addresses)


def after_prologue(binary: Path, function: str) -> int:
    """Bytes from `function`'s start to just after `mov %rsp,%rbp`. A uprobe there sees the function's own
    frame linked in, so a frame-pointer walk finds its caller (at the entry, kernels before 6.10 skip it)."""
    elf = ElfSymbols(binary)
    (vaddr,) = elf.addresses(function)
    offset = elf.vaddr_to_file_offset(vaddr)
    assert offset is not None
    code = binary.read_bytes()[offset : offset + 16]
    mov_rsp_rbp = code.find(b"\x48\x89\xe5")
    assert mov_rsp_rbp >= 0, f"no frame-pointer prologue in {function}: {code.hex()}"
    return mov_rsp_rbp + 3


@pytest.mark.kernel2  # unwinding differs by kernel
def test_kernel_stack_at_a_raw_syscall_tracepoint(bpf_obj: Callable[[str], Path]) -> None:
    with pybpf.load(bpf_obj("stacks"), set={"target_tgid": os.getpid()}) as obj:
        with obj.programs["kernel_stack"].attach():
            for _ in range(3):
                os.getpid()
        assert obj.variables["kernel_hits"].value == 3
        stack_id = obj.variables["kernel_stack_id"].value
        assert stack_id >= 0, f"bpf_get_stackid failed: {stack_id}"
        addresses = stack_addresses(obj.maps["kstacks"], stack_id)
        with obj.ringbuf("events", decode=False) as ring:
            records = ring.read()

    assert len(records) == 3
    pid, size = _EVENT_HEADER.unpack_from(records[-1])
    assert pid == os.getpid() and size > 0, f"bpf_get_stack returned {size}"
    event_addresses = list(struct.unpack_from(f"={size // 8}Q", records[-1], _EVENT_HEADER.size))
    assert event_addresses == addresses  # same call, same unwinder: the map and the event agree

    names = symbolize_kernel_stack(addresses)
    assert UNKNOWN not in names, names
    assert any(frame in name for name in names for frame in SYSCALL_FRAMES), names
    with_offsets = symbolize_kernel_stack(addresses, offsets=True)
    assert [n.split("+")[0] for n in with_offsets] == names
    # a stack map entry pads with zeros and a negative id means the helper failed: both handled
    assert 0 not in addresses
    assert stack_addresses(obj.maps["kstacks"], -14) == []


@pytest.mark.kernel2
@pytest.mark.skipif(platform.machine() != "x86_64", reason="the prologue search is for x86_64 code")
def test_user_stack_symbolises_through_the_process_and_build_ids(
    bpf_obj: Callable[[str], Path], c_program: Callable[..., Path]
) -> None:
    binary = c_program(NESTED, "nested", cflags=["-fno-omit-frame-pointer", "-fno-inline"])
    probe_offset = after_prologue(binary, "inner")
    with pybpf.load(bpf_obj("stacks")) as obj, waiting(binary) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        with attach_uprobe(obj.programs["user_stack"], binary, "inner", offset=probe_offset, pid=proc.pid):
            release(proc)
            assert proc.stdout.readline().strip() == str((41 * 2 + 1) + 1)
        assert obj.variables["user_hits"].value == 1
        stack_id = obj.variables["user_stack_id"].value
        assert stack_id >= 0, f"bpf_get_stackid(BPF_F_USER_STACK) failed: {stack_id}"
        addresses = stack_addresses(obj.maps["ustacks"], stack_id)

        # (b) through /proc/PID/maps while the process is alive
        names = symbolize_user_stack(proc.pid, addresses)
        assert names[:3] == ["inner", "outer", "main"], names
        assert symbolize_user_stack(proc.pid, addresses[:1], offsets=True) == [f"inner+{probe_offset:#x}"]
        with_modules = symbolize_user_stack(proc.pid, addresses, modules=True)
        assert with_modules[0] == "inner [nested]"

        # (c) the same stack as build-id + file offset
        build_stack_id = obj.variables["build_id_stack_id"].value
        assert build_stack_id >= 0, f"bpf_get_stackid on the build-id map failed: {build_stack_id}"
        frames = build_id_stack(obj.maps["bstacks"], build_stack_id)
        with pytest.raises(ValueError, match="build_id_stack"):
            stack_addresses(obj.maps["bstacks"], build_stack_id)
        by_build_id = symbolize_build_id_stack(frames, pid=proc.pid)

        release(proc, "done")
        assert proc.wait(timeout=30) == 0

    # (d) folded, root first
    folded = fold_stacks([(names, 1)])
    assert "main;outer;inner 1\n" in folded, folded
    assert folded.startswith(";".join(reversed(names)))

    assert len(frames) == len(addresses)
    # Frames the kernel could not give a build-id for carry the raw instruction pointer, the address the
    # plain stack map recorded; they resolve through the live process, the others through the build-id.
    for frame, address in zip(frames, addresses, strict=True):
        if not frame.valid:
            assert frame.offset == address and frame.build_id == b"", (frame, hex(address))
    assert by_build_id[:3] == ["inner", "outer", "main"], by_build_id
    if not any(f.valid for f in frames):
        assert [f.offset for f in frames] == addresses
        return  # no build-ids recorded (only addresses): nothing more to check without them
    build_id = read_build_id(binary)
    assert build_id, "gcc here emits no GNU build-id note"
    assert frames[0].valid and frames[0].build_id == build_id.ljust(20, b"\0")
    # build-ids need no live process: the file alone resolves the frames that lie in it
    after_exit = symbolize_build_id_stack(frames, BuildIdSymbols(paths=[str(binary)]))
    assert after_exit[:3] == ["inner", "outer", "main"], after_exit


def test_stack_helpers_refuse_the_wrong_map(bpf_obj: Callable[[str], Path]) -> None:
    with pybpf.load(bpf_obj("stacks")) as obj:
        with pytest.raises(ValueError, match="BPF_F_STACK_BUILD_ID"):
            build_id_stack(obj.maps["ustacks"], 0)
        with pytest.raises(ValueError, match="not STACK_TRACE"):
            stack_addresses(obj.maps["events"], 0)
        assert stack_addresses(obj.maps["ustacks"], 5) == []  # never filled
        assert build_id_stack(obj.maps["bstacks"], 5) == []


def runtime_address(pid: int, binary: Path, elf: ElfSymbols, vaddr: int) -> int:
    offset = elf.vaddr_to_file_offset(vaddr)
    assert offset is not None
    for mapping in read_maps(pid):
        if mapping.path == str(binary) and mapping.offset <= offset < mapping.offset + mapping.end - mapping.start:
            return mapping.start + offset - mapping.offset
    raise AssertionError(f"{binary} offset {offset:#x} is not mapped in {pid}")


@pytest.mark.skipif(platform.machine() != "x86_64", reason="the call instruction checked is x86_64's")
def test_return_address_after_a_noreturn_call_names_the_caller(c_program: Callable[..., Path]) -> None:
    binary = c_program(NORETURN, "noreturn", cflags=["-fno-omit-frame-pointer"])
    elf = ElfSymbols(binary)
    (die,), (last_call,), (after,) = elf.addresses("die"), elf.addresses("last_call"), elf.addresses("after")
    call_at = elf.vaddr_to_file_offset(after - 5)
    assert call_at is not None
    if binary.read_bytes()[call_at] != 0xE8 or after - 5 < last_call:
        pytest.skip("gcc did not end last_call with the call to die")
    with waiting(binary) as proc:
        assert proc.stdin is not None and proc.stdout is not None
        assert proc.stdout.readline() == "ready\n"  # mapped and running (Popen may return before the ELF is mapped)
        return_address = runtime_address(proc.pid, binary, elf, after)
        leaf = runtime_address(proc.pid, binary, elf, die) + 4
        # as a leaf (an instruction pointer) the address is `after`; as a caller's return address, last_call
        assert symbolize_user_stack(proc.pid, [return_address]) == ["after"]
        assert symbolize_user_stack(proc.pid, [leaf, return_address]) == ["die", "last_call"]
        assert symbolize_user_stack(proc.pid, [leaf, return_address], offsets=True) == [
            "die+0x4", f"last_call+{after - last_call:#x}"]
        release(proc, "x")
        assert proc.wait(timeout=30) == 0
