"""pybpf.program against the real kernel: loading, verifier errors and logs, BTF line info, test runs,
info and xlated instructions, pinning, statistics, and fd hygiene."""

from __future__ import annotations

import ctypes
import errno
import json
import os
import shutil
import struct
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from elftools.elf.elffile import ELFFile

from pybpf import asm
from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.syscall import bpf, bpf_fd
from pybpf.asm import DW, JGT, R0, R1, R2, R3, R10, B, W
from pybpf.errors import BPFError, NotSupportedError, VerifierError
from pybpf.program import LOG_SIZE_START, Program, ProgramSpec, enable_stats, object_name

pytestmark = pytest.mark.usefixtures("require_root")

PACKET = bytes(range(64))  # an "Ethernet frame": 64 bytes are enough for every packet program type


def spec(prog_type: T.ProgType, *insns: asm.Instruction, name: str = "pybpf_test", **kwargs: Any) -> ProgramSpec:
    return ProgramSpec(name, prog_type, asm.Instructions(insns), **kwargs)


def returns(prog_type: T.ProgType, value: int, **kwargs: Any) -> ProgramSpec:
    return spec(prog_type, asm.mov64_imm(R0, value), asm.exit_insn(), **kwargs)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---- loading and verifier errors --------------------------------------------------------------------------


def test_load_success() -> None:
    with Program.load(returns(T.ProgType.XDP, T.XdpAction.PASS, name="xdp_pass")) as prog:
        assert not prog.closed
        assert os.readlink(f"/proc/self/fd/{int(prog.fd)}") == "anon_inode:bpf-prog"
        info = prog.info()
        assert info.name == "xdp_pass"
        assert info.type == T.ProgType.XDP
        assert info.insn_count == 2
        assert prog.id == info.id > 0
        assert prog.verifier_log == ""  # fast path: no log asked for
    assert prog.closed


def test_log_level_keeps_the_log_of_a_successful_load() -> None:
    with Program.load(returns(T.ProgType.SOCKET_FILTER, 0), log_level=1) as prog:
        assert "processed 2 insns" in prog.verifier_log


def test_small_log_buffer_grows_on_success() -> None:
    """A successful load whose log overflows the buffer asked for still loads, with the whole log."""
    insns = [asm.mov64_imm(R0, 0)] + [asm.alu64_imm(asm.ADD, R0, 1) for _ in range(200)] + [asm.exit_insn()]
    # level 2: level 1 keeps only the statistics of a successful load
    with Program.load(spec(T.ProgType.SOCKET_FILTER, *insns), log_level=2, log_size=256) as prog:
        assert len(prog.verifier_log) > 256
        assert "200: (07) r0 += 1" in prog.verifier_log
        assert "processed 202 insns" in prog.verifier_log


def test_object_name_is_sanitised() -> None:
    long_name = "my-prog/with spaces.and.a_very_long_tail"
    assert object_name(long_name) == "my_prog_with_sp"
    with Program.load(returns(T.ProgType.SOCKET_FILTER, 0, name=long_name)) as prog:
        assert prog.info().name == object_name(long_name)
        assert prog.name == long_name


def test_verifier_rejects_uninitialised_register() -> None:
    bad = spec(T.ProgType.SOCKET_FILTER, asm.mov64_reg(R0, R2), asm.exit_insn(), name="reads_r2")
    with pytest.raises(VerifierError) as caught:
        Program.load(bad)
    err = caught.value
    assert err.errno == errno.EACCES
    assert "R2 !read_ok" in err.log
    assert "processed" in err.log  # the whole log, statistics included
    assert not err.truncated
    text = str(err)
    assert "reads_r2" in text and "rejected by the verifier" in text and "R2 !read_ok" in text
    assert getattr(err, "instruction") == 0  # noqa: B009


def test_verifier_error_source_line_from_line_sources() -> None:
    """Without BTF at hand, the failing instruction maps to `line_sources` through the line info."""
    records = b"".join(bytes(T.LineInfo(insn_off=i, line_col=(10 + i) << 10)) for i in range(3))
    bad = spec(
        T.ProgType.SOCKET_FILTER,
        asm.mov64_imm(R0, 0),
        asm.mov64_imm(R1, 1),
        asm.ldx_mem(DW, R0, R3, 0),  # R3 was never written
        asm.exit_insn(),
        name="reads_r3",
        line_info=records,
        line_sources=["int x = 0;", "int y = 1;", "return *p;"],
    )
    with pytest.raises(VerifierError) as caught:
        Program.load(bad)
    assert getattr(caught.value, "instruction") == 2  # noqa: B009
    assert caught.value.source_line == "return *p;"
    assert "return *p;" in str(caught.value)


def test_huge_log_is_retrieved_whole() -> None:
    """A log far larger than the first buffer: the loader grows the buffer until nothing is cut."""
    count = 12_000  # ~25 bytes of log per instruction: ~300 KiB, well past the 64 KiB first try
    insns = [asm.mov64_imm(R0, 0)] + [asm.alu64_imm(asm.ADD, R0, 1) for _ in range(count)]
    insns += [asm.ldx_mem(DW, R0, R3, 0), asm.exit_insn()]
    with pytest.raises(VerifierError) as caught:
        Program.load(spec(T.ProgType.SOCKET_FILTER, *insns, name="long"))
    log = caught.value.log
    assert len(log) > 4 * LOG_SIZE_START
    assert not caught.value.truncated
    first_lines = log.splitlines()[:3]
    assert any(line.startswith("0: (b7) r0 = 0") for line in first_lines)  # the head survived
    assert f"{count}: (07) r0 += 1" in log
    assert "R3 !read_ok" in log
    assert getattr(caught.value, "instruction") == count + 1  # noqa: B009


def test_load_error_before_the_verifier_is_a_bpferror() -> None:
    # attach_btf_id is for tracing-like types only: refused before the verifier runs.
    bad = returns(T.ProgType.SOCKET_FILTER, 0, attach_btf_id=1)
    with pytest.raises(BPFError) as caught:
        Program.load(bad)
    assert not isinstance(caught.value, VerifierError)
    assert caught.value.errno == errno.EINVAL


def test_program_without_type() -> None:
    with pytest.raises(BPFError, match=r"no program type.*'weird/section'"):
        Program.load(returns(T.ProgType.UNSPEC, 0, section="weird/section"))


def test_missing_program_type_is_not_supported_error() -> None:
    from pybpf.features import probe_prog_type

    if probe_prog_type(T.ProgType.LIRC_MODE2).supported:
        pytest.skip("this kernel has BPF_PROG_TYPE_LIRC_MODE2 (CONFIG_BPF_LIRC_MODE2)")
    with pytest.raises(NotSupportedError) as caught:
        Program.load(returns(T.ProgType.LIRC_MODE2, 0, attach_type=T.AttachType.LIRC_MODE2))
    assert "LIRC_MODE2" in str(caught.value) and "4.18" in str(caught.value)


# ---- BTF func/line info -----------------------------------------------------------------------------------


class _Object:
    """Just enough of an object file for these tests: program sections, BTF and its func/line info."""

    def __init__(self, path: Path) -> None:
        from pybpf.btf import Spec
        from pybpf.btf.ext import parse_ext

        with open(path, "rb") as f:
            elf = ELFFile(f)
            self.sections = {s.name: s.data() for s in elf.iter_sections()}
        self.btf = Spec(self.sections[".BTF"])
        self.ext = parse_ext(self.sections[".BTF.ext"], self.btf)

    def spec(self, section: str, prog_type: T.ProgType, name: str) -> ProgramSpec:
        funcs = self.ext.func_infos[section]
        lines = self.ext.line_infos[section]
        func_info = b"".join(bytes(T.FuncInfo(insn_off=f.insn_index, type_id=f.type_id)) for f in funcs)
        line_info = b"".join(
            bytes(T.LineInfo(insn_off=li.insn_index, file_name_off=li.file_name_off, line_off=li.line_off,
                             line_col=li.line_col))
            for li in lines
        )
        return ProgramSpec(
            name, prog_type, asm.Instructions.decode(self.sections[section]), btf=self.btf,
            func_info=func_info, line_info=line_info, line_sources=[li.line_text for li in lines],
        )


@pytest.fixture(scope="module")
def lines_object(bpf_obj: Callable[[str], Path]) -> Iterator[tuple[_Object, FD]]:
    from pybpf.btf.marshal import for_kernel, load_into_kernel

    obj = _Object(bpf_obj("program_lines"))
    btf_fd = load_into_kernel(for_kernel(obj.btf))
    yield obj, btf_fd
    btf_fd.close()


def test_verifier_error_names_the_c_source_line(lines_object: tuple[_Object, FD]) -> None:
    obj, btf_fd = lines_object
    with pytest.raises(VerifierError) as caught:
        Program.load(obj.spec("xdp", T.ProgType.XDP, "xdp_unchecked"), btf_fd=btf_fd)
    err = caught.value
    assert "invalid access to packet" in err.log
    assert "program_lines.bpf.c:" in err.source_line
    assert "data[20]" in err.source_line
    assert "data[20]" in str(err)


def test_line_info_reaches_the_kernel(lines_object: tuple[_Object, FD]) -> None:
    obj, btf_fd = lines_object
    with Program.load(obj.spec("tc", T.ProgType.SCHED_CLS, "tc_checked"), btf_fd=btf_fd) as prog:
        info = prog.info()
        assert info.btf_id > 0
        assert info.nr_func_info == 1
        assert info.nr_line_info >= 3
        ok = prog.test_run(PACKET[:12] + b"\x08\x00" + PACKET[14:])
        assert ok.retval == 0
        assert prog.test_run(PACKET).retval == 2
        if shutil.which("bpftool"):
            dump = subprocess.run(["bpftool", "prog", "dump", "xlated", "id", str(info.id)],
                                  capture_output=True, text=True, check=True).stdout
            assert "data + 14 > data_end" in dump  # bpftool prints the C lines from our line info


# ---- test runs --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("verdict", list(T.XdpAction))
def test_xdp_test_run_returns_each_verdict(verdict: T.XdpAction) -> None:
    with Program.load(returns(T.ProgType.XDP, verdict)) as prog:
        result = prog.test_run(PACKET)
        assert result.retval == verdict
        if verdict in (T.XdpAction.PASS, T.XdpAction.TX):
            assert result.data == PACKET


def test_xdp_test_run_returns_the_modified_packet() -> None:
    # data = ctx->data; if (data + 1 > ctx->data_end) return PASS; *data = 0xab; return TX
    prog_spec = spec(
        T.ProgType.XDP,
        asm.ldx_mem(W, R2, R1, 0),
        asm.ldx_mem(W, R3, R1, 4),
        asm.mov64_reg(R1, R2),
        asm.alu64_imm(asm.ADD, R1, 1),
        asm.mov64_imm(R0, T.XdpAction.PASS),
        asm.jmp_reg(JGT, R1, R3, 2),
        asm.st_mem(B, R2, 0, 0xAB),
        asm.mov64_imm(R0, T.XdpAction.TX),
        asm.exit_insn(),
    )
    with Program.load(prog_spec) as prog:
        result = prog.test_run(PACKET, repeat=10)
        assert result.retval == T.XdpAction.TX
        assert result.data == b"\xab" + PACKET[1:]
        assert result.duration_ns >= 0


def test_socket_filter_test_run_sees_the_packet_length() -> None:
    len_off = T.SkBuff.len.offset
    with Program.load(spec(T.ProgType.SOCKET_FILTER, asm.ldx_mem(W, R0, R1, len_off), asm.exit_insn())) as prog:
        # Socket filters see the packet after the Ethernet header was pulled (as on a socket).
        assert prog.test_run(PACKET).retval == len(PACKET) - 14
        assert prog.test_run(PACKET[:20]).retval == 20 - 14


def test_tc_test_run_with_skb_context() -> None:
    mark_off = T.SkBuff.mark.offset
    prog_spec = spec(T.ProgType.SCHED_CLS, asm.ldx_mem(W, R0, R1, mark_off), asm.exit_insn())
    with Program.load(prog_spec) as prog:
        ctx = T.SkBuff()
        ctx.mark = 1234
        result = prog.test_run(PACKET, ctx=ctx)
        assert result.retval == 1234
        assert result.ctx is not None
        assert T.SkBuff.from_buffer_copy(result.ctx).mark == 1234


def test_raw_tracepoint_test_run_with_ctx() -> None:
    # return the second argument of the tracepoint
    prog_spec = spec(T.ProgType.RAW_TRACEPOINT, asm.ldx_mem(DW, R0, R1, 8), asm.exit_insn())
    with Program.load(prog_spec) as prog:
        assert prog.test_run(ctx=struct.pack("<QQ", 5, 42)).retval == 42
        last_cpu = (os.cpu_count() or 1) - 1
        assert prog.test_run(ctx=struct.pack("<QQ", 5, 7), cpu=last_cpu).retval == 7
        with pytest.raises(ValueError, match="once"):
            prog.test_run(ctx=struct.pack("<QQ", 5, 42), repeat=2)


def test_syscall_program_test_run_updates_ctx() -> None:
    # ctx->counter += 1; return 7
    prog_spec = spec(
        T.ProgType.SYSCALL,
        asm.ldx_mem(W, R2, R1, 0),
        asm.alu64_imm(asm.ADD, R2, 1),
        asm.stx_mem(W, R1, R2, 0),
        asm.mov64_imm(R0, 7),
        asm.exit_insn(),
        sleepable=True,
    )
    with Program.load(prog_spec) as prog:
        result = prog.test_run(ctx=struct.pack("<I", 41))
        assert result.retval == 7
        assert result.ctx is not None and struct.unpack("<I", result.ctx)[0] == 42


def test_negative_return_values_are_signed() -> None:
    with Program.load(returns(T.ProgType.SCHED_CLS, -1)) as prog:
        assert prog.test_run(PACKET).retval == -1  # TC_ACT_UNSPEC


# ---- info, xlated, pinning --------------------------------------------------------------------------------


def _array_map() -> FD:
    return bpf_fd(T.Cmd.MAP_CREATE, T.MapCreateAttr(map_type=T.MapType.ARRAY, key_size=4, value_size=8,
                                                     max_entries=1))


def _map_id(fd: FD) -> int:
    info = T.MapInfo()
    attr = T.InfoByFdAttr(bpf_fd=int(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(T.Cmd.OBJ_GET_INFO_BY_FD, attr)
    return int(info.id)


def test_info_fields_and_tag_match_bpftool() -> None:
    with _array_map() as map_fd:
        prog_spec = spec(
            T.ProgType.SOCKET_FILTER,
            asm.st_mem(W, R10, -4, 0),
            asm.mov64_reg(R2, R10),
            asm.alu64_imm(asm.ADD, R2, -4),
            asm.ld_map_fd(R1, int(map_fd)),
            asm.call_helper(T.BpfFuncId.map_lookup_elem),
            asm.mov64_imm(R0, 0),
            asm.exit_insn(),
            name="with_map",
        )
        with Program.load(prog_spec) as prog:
            info = prog.info()
            assert info.map_ids == (_map_id(map_fd),)
            assert info.name == "with_map"
            assert len(info.tag) == 16 and int(info.tag, 16) >= 0
            assert info.xlated_size == info.insn_count * 8 > 0
            assert info.jited_size > 0
            assert info.gpl_compatible
            assert info.verified_insns > 0
            if shutil.which("bpftool") is None:
                pytest.skip("bpftool not installed")
            shown = json.loads(subprocess.run(["bpftool", "prog", "show", "id", str(info.id), "-j"],
                                              capture_output=True, text=True, check=True).stdout)
            assert shown["tag"] == info.tag == prog.tag
            assert shown["name"] == info.name
            assert shown["map_ids"] == list(info.map_ids)


def test_xlated_decodes_the_kernel_instructions() -> None:
    original = returns(T.ProgType.SOCKET_FILTER, 3)
    with Program.load(original) as prog:
        xlated = prog.xlated()
        assert isinstance(xlated, asm.Instructions)
        assert xlated.encode() == original.instructions.encode()


def test_pin_from_pin_and_from_id(tmp_path: Path) -> None:
    from pybpf._sys.mounts import ensure_bpffs

    pin = os.path.join(ensure_bpffs(), f"pybpf-test-{os.getpid()}-prog")
    with Program.load(returns(T.ProgType.XDP, T.XdpAction.DROP, name="pinned")) as prog:
        prog.pin(pin)
        try:
            assert prog.pinned_path == pin
            with Program.from_pin(pin) as again:
                assert again.id == prog.id
                assert again.name == "pinned"
                assert again.type == T.ProgType.XDP
                assert again.test_run(PACKET).retval == T.XdpAction.DROP
        finally:
            prog.unpin()
        assert not os.path.exists(pin)
        with Program.from_id(prog.id) as by_id:
            assert by_id.tag == prog.tag
            assert by_id.test_run(PACKET).retval == T.XdpAction.DROP


def test_from_fd_refuses_a_map_fd() -> None:
    with _array_map() as map_fd, pytest.raises(BPFError, match="not a BPF program"):
        Program.from_fd(int(map_fd))


def test_from_id_of_a_missing_program() -> None:
    with pytest.raises(BPFError) as caught:
        Program.from_id(0x7FFFFFF0)
    assert caught.value.errno == errno.ENOENT


def test_enable_stats_counts_runs() -> None:
    with Program.load(returns(T.ProgType.XDP, T.XdpAction.PASS)) as prog:
        with enable_stats():
            before = prog.info().run_cnt
            prog.test_run(PACKET, repeat=100)
            after = prog.info()
        assert after.run_cnt >= before + 100
        assert after.run_time_ns > 0


def test_spec_copy_is_independent() -> None:
    original = returns(T.ProgType.XDP, 1)
    clone = original.copy()
    clone.instructions[0].imm = 2
    clone.line_sources.append("x")
    assert original.instructions[0].imm == 1
    assert original.line_sources == []


def test_ten_thousand_programs_leave_no_fds() -> None:
    prog_spec = returns(T.ProgType.SOCKET_FILTER, 0)
    before = open_fds()
    for _ in range(10_000):
        Program.load(prog_spec).close()
    assert open_fds() == before
    # the same through garbage collection (finalizers are the safety net)
    for _ in range(1000):
        Program.load(prog_spec)
    import gc

    gc.collect()
    assert open_fds() == before


def test_attach_dispatches_to_the_link_module() -> None:
    try:
        import pybpf.link as link
    except ImportError:
        pytest.skip("pybpf.link is not written yet")
    if not hasattr(link, "attach"):
        pytest.skip("pybpf.link.attach is not written yet")
    assert callable(Program.attach)


def test_test_run_of_a_type_without_runner() -> None:
    # Tracepoint programs have no test runner: a typed error, not a bare errno.
    with Program.load(returns(T.ProgType.TRACEPOINT, 0)) as prog, pytest.raises(NotSupportedError) as caught:
        prog.test_run(PACKET)
    assert "tracepoint" in str(caught.value)
