"""Programs: load instructions into the kernel, run them with BPF_PROG_TEST_RUN, read them back.

`ProgramSpec` is plain data (what an object file or a `asm.Builder` describes); `Program.load` turns it
into a kernel object. Loading takes the fast path first (no verifier log); only when the kernel refuses
is the load repeated with a log, whose buffer grows until the kernel stops reporting truncation, so a
`VerifierError` always carries the whole log, the failing instruction and its source line.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from pybpf._lazy import build_deferred, defer
from pybpf._sys import enum_or_int, object_name
from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.pin import open_pinned, pin_fd
from pybpf._sys.record import field, record, replace
from pybpf._sys.syscall import bpf, bpf_errno, bpf_fd
from pybpf.errors import ENOTSUPP, BPFError, NotSupportedError, VerifierError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import builtins  # `type` is a property in the classes below
    from collections.abc import Callable, Sequence
    from types import TracebackType
    from typing import Any

    from pybpf import asm
    from pybpf.btf import Spec

__all__ = [
    "Program",
    "ProgramInfo",
    "ProgramSpec",
    "StatsHandle",
    "TestRunResult",
    "enable_stats",
    "object_name",
]

# Verifier log sizes: start small (most failures log a few KiB), grow 4x while the kernel says the log
# was truncated. The kernel accepts up to 1 GiB - 1 (5.2+); 256 MiB holds the log of any program that fits
# the 1M-instruction limit at log level 1.
LOG_SIZE_START = 64 * 1024
LOG_SIZE_MAX = 256 * 1024 * 1024
_LOG_GROWTH = 4

_INSN_SIZE = 8
# "12: (79) r1 = *(u64 *)(r2 +0)": an instruction line of a level-1 verifier log.
_LOG_INSN = r"^(\d+): \([0-9a-f]{2}\)"
# Program types whose test run executes exactly once: no repeat, no duration, no ctx_out.
_RUN_ONCE = frozenset({T.BPF_PROG_TYPE_RAW_TRACEPOINT, T.BPF_PROG_TYPE_SYSCALL})
_LINE_SHIFT = 10  # bpf_line_info.line_col = line << 10 | column


# ---- specs -----------------------------------------------------------------------------------------------


@record
class ProgramSpec:
    """A program as described by an object file or built by hand; never touches the kernel.

    `func_info` and `line_info` are in the kernel's layout (``struct bpf_func_info`` /
    ``struct bpf_line_info`` records, ``insn_off`` counted in instructions) and refer to the BTF loaded
    as ``btf_fd``. `line_sources` holds the source text of each `line_info` record, in order; it is used
    for error messages when `btf` is not at hand.
    """

    name: str
    type: T.ProgType
    instructions: asm.Instructions
    license: str = "GPL"
    section: str = ""
    attach_type: T.AttachType | None = None
    attach_to: str = ""
    kernel_version: int = 0
    flags: int = 0
    btf: Spec | None = None
    func_info: bytes = b""
    func_info_rec_size: int = ctypes.sizeof(T.FuncInfo)
    line_info: bytes = b""
    line_info_rec_size: int = ctypes.sizeof(T.LineInfo)
    line_sources: list[str] = field(default_factory=list)
    attach_btf_id: int = 0
    attach_btf_obj_fd: FD | None = None
    attach_prog_fd: FD | None = None
    autoload: bool = True
    sleepable: bool = False

    def copy(self) -> ProgramSpec:
        """A copy whose instructions and line sources can be changed without touching this spec."""
        return replace(self, instructions=self.instructions.copy(), line_sources=list(self.line_sources))

    def source_line(self, insn: int) -> str:
        """``file:line: text`` of the instruction at slot `insn`, from the line info ("" if unknown)."""
        return _source_line(self, insn)


@record(frozen=True)
class TestRunResult:
    """What BPF_PROG_TEST_RUN reported. `retval` is the program's return value as a signed 32-bit int
    (an XDP verdict, a TC action, ...); `duration_ns` is the mean time of one run (0 where the kernel
    does not measure it); `ctx` is the context after the run when one was passed."""

    __test__ = False  # not a pytest test class

    retval: int
    data: bytes
    duration_ns: int
    ctx: bytes | None = None


@record(frozen=True)
class ProgramInfo:
    """A loaded program as the kernel describes it (``struct bpf_prog_info``)."""

    id: int
    name: str
    type: T.ProgType | int
    tag: str
    insn_count: int
    xlated_size: int
    jited_size: int
    map_ids: tuple[int, ...]
    btf_id: int
    load_time_ns: int
    created_by_uid: int
    gpl_compatible: bool
    run_time_ns: int
    run_cnt: int
    recursion_misses: int
    verified_insns: int
    attach_btf_id: int
    attach_btf_obj_id: int
    nr_func_info: int
    nr_line_info: int
    ifindex: int


# ---- loading ---------------------------------------------------------------------------------------------


def _encode(instructions: asm.Instructions | bytes) -> bytes:
    raw = instructions if isinstance(instructions, bytes) else instructions.encode()
    if not raw:
        raise ValueError("a program needs at least one instruction")
    return raw


def _fd_int(fd: FD | int | None) -> int:
    return 0 if fd is None else int(fd)


class _LoadAttr:
    """A ProgLoadAttr and the buffers it points to (kept alive as long as the attr)."""

    def __init__(
        self,
        spec: ProgramSpec,
        insns: bytes,
        btf_fd: FD | int | None,
        fd_array: Sequence[FD | int] | None,
    ) -> None:
        self.insns = ctypes.create_string_buffer(insns, len(insns))
        self.license = ctypes.create_string_buffer(spec.license.encode())
        attr = self.attr = T.ProgLoadAttr()
        attr.prog_type = int(spec.type)
        attr.insn_cnt = len(insns) // _INSN_SIZE
        attr.insns = ctypes.addressof(self.insns)
        attr.license = ctypes.addressof(self.license)
        kern_version = spec.kernel_version
        if not kern_version and spec.type == T.BPF_PROG_TYPE_KPROBE:
            # Kernels before 5.0 insist that kprobe programs name the running kernel's version.
            from pybpf._sys.kernel import kernel_version_code

            kern_version = kernel_version_code()
        attr.kern_version = kern_version
        attr.prog_flags = spec.flags | (T.BPF_F_SLEEPABLE if spec.sleepable else 0)
        name = object_name(spec.name).encode()
        ctypes.memmove(attr.prog_name, name, len(name))
        if spec.attach_type is not None:
            attr.expected_attach_type = int(spec.attach_type)
        attr.attach_btf_id = spec.attach_btf_id
        if spec.attach_prog_fd is not None:
            attr.attach_prog_fd = int(spec.attach_prog_fd)
        elif spec.attach_btf_obj_fd is not None:
            attr.attach_btf_obj_fd = int(spec.attach_btf_obj_fd)
        self.func_info: ctypes.Array[ctypes.c_char] | None = None
        self.line_info: ctypes.Array[ctypes.c_char] | None = None
        if btf_fd is not None:
            attr.prog_btf_fd = int(btf_fd)
            if spec.func_info:
                self.func_info = ctypes.create_string_buffer(spec.func_info, len(spec.func_info))
                attr.func_info_rec_size = spec.func_info_rec_size
                attr.func_info = ctypes.addressof(self.func_info)
                attr.func_info_cnt = len(spec.func_info) // spec.func_info_rec_size
            if spec.line_info:
                self.line_info = ctypes.create_string_buffer(spec.line_info, len(spec.line_info))
                attr.line_info_rec_size = spec.line_info_rec_size
                attr.line_info = ctypes.addressof(self.line_info)
                attr.line_info_cnt = len(spec.line_info) // spec.line_info_rec_size
        self.fd_array: ctypes.Array[ctypes.c_int32] | None = None
        if fd_array:
            self.fd_array = (ctypes.c_int32 * len(fd_array))(*(int(fd) for fd in fd_array))
            attr.fd_array = ctypes.addressof(self.fd_array)


def _load_with_log(load: _LoadAttr, log_level: int, log_size: int) -> tuple[int, str, bool]:
    """Load with a verifier log, growing the buffer while the kernel reports truncation.

    Returns (fd or -errno, log, truncated).
    """
    attr = load.attr
    size = max(log_size, 128)
    previous: tuple[int, str] | None = None
    while True:
        buf = ctypes.create_string_buffer(size)
        attr.log_level = log_level
        attr.log_size = size
        attr.log_buf = ctypes.addressof(buf)
        attr.log_true_size = 0
        ret = bpf_errno(T.BPF_PROG_LOAD, attr)
        log = buf.value.decode("utf-8", "replace")
        if ret >= 0 or -ret != _errno.ENOSPC:
            if ret == -_errno.EINVAL and previous is not None and not log:
                # Older kernels cap the log buffer lower (16 MiB before 5.2): keep the last full buffer.
                return previous[0], previous[1], True
            return ret, log, False
        # ENOSPC: the log did not fit. 6.4+ kernels say how much it needs (log_true_size, with the NUL).
        if size >= LOG_SIZE_MAX:
            return ret, log, True
        previous = (ret, log)
        needed = int(attr.log_true_size)
        size = min(LOG_SIZE_MAX, needed if needed > size else size * _LOG_GROWTH)


def _failing_instruction(log: str) -> int | None:
    """Index (in slots) of the instruction the verifier was checking when it gave up."""
    import re  # only on the error path

    last = None
    for m in re.finditer(_LOG_INSN, log, re.MULTILINE):
        last = m
    return int(last.group(1)) if last is not None else None


def _log_source_comment(log: str, insn: int | None) -> str:
    """The verifier prints "; <source>" lines when it has line info: the last one before `insn`."""
    lines = log.splitlines()
    end = len(lines)
    if insn is not None:
        prefix = f"{insn}: ("
        for i in range(len(lines) - 1, -1, -1):
            if lines[i].startswith(prefix):
                end = i
                break
    for i in range(end - 1, -1, -1):
        if lines[i].startswith("; "):
            return lines[i][2:].strip()
    return ""


def _source_line(spec: ProgramSpec, insn: int) -> str:
    rec = spec.line_info_rec_size
    if not spec.line_info or rec < ctypes.sizeof(T.LineInfo):
        return ""
    count = len(spec.line_info) // rec
    records = [T.LineInfo.from_buffer_copy(spec.line_info, i * rec) for i in range(count)]
    offsets = [r.insn_off for r in records]
    from bisect import bisect_right  # an error path: not imported at start-up

    k = bisect_right(offsets, insn) - 1
    if k < 0:
        return ""
    record = records[k]
    text = spec.line_sources[k] if k < len(spec.line_sources) else ""
    file_name = ""
    if spec.btf is not None:
        try:
            if not text:
                text = spec.btf.string(record.line_off)
            file_name = os.path.basename(spec.btf.string(record.file_name_off))
        except (BPFError, ValueError):  # string offsets that do not belong to this BTF
            pass
    line = record.line_col >> _LINE_SHIFT
    text = text.strip()
    if file_name and line:
        return f"{file_name}:{line}: {text}" if text else f"{file_name}:{line}"
    return text


def _raise_load_error(spec: ProgramSpec, err: int, log: str, truncated: bool) -> None:
    what = f"loading program {spec.name!r} ({_type_name(spec.type)})"
    if not log.strip():
        # Refused before the verifier ran: an unknown program type, attach type or flag, or privileges.
        if err in (_errno.EINVAL, _errno.E2BIG, _errno.EOPNOTSUPP):
            from pybpf.features import first_kernel, probe_prog_type

            probe = probe_prog_type(spec.type)
            if not probe.supported and probe.errno in (_errno.EINVAL, _errno.E2BIG):
                raise NotSupportedError(
                    f"program type {_type_name(spec.type).upper()}", first_kernel("prog_type", spec.type), err,
                    detail=f"cannot load program {spec.name!r}",
                )
        raise BPFError(what + " failed", err, "BPF_PROG_LOAD")
    insn = _failing_instruction(log)
    source = _source_line(spec, insn) if insn is not None else ""
    if not source:
        source = _log_source_comment(log, insn)
    exc = VerifierError(spec.name, err, log, source, truncated)
    # The failing instruction (slot index), for callers that want to point at it.
    setattr(exc, "instruction", insn)  # noqa: B010
    raise exc


# ---- programs --------------------------------------------------------------------------------------------


class Program:
    """A program loaded into the kernel. Owns its file descriptor; close() (or `with`) releases it."""

    def __init__(
        self,
        fd: FD,
        *,
        name: str,
        type: T.ProgType | int,
        attach_type: T.AttachType | None = None,
        spec: ProgramSpec | None = None,
        verifier_log: str = "",
    ) -> None:
        self.fd = fd
        self.name = name
        # Kept as ints; `type` and `attach_type` give the enums (built only when asked for: start-up).
        self.prog_type = int(type)
        self.expected_attach_type = None if attach_type is None else int(attach_type)
        self.spec = spec
        # The section name chooses the hook attach() uses; kept apart from the spec, which a collection
        # loaded from a cached plan builds only when asked for (see defer_spec).
        self.section = spec.section if spec is not None else ""
        self.attach_to = spec.attach_to if spec is not None else ""  # tp_btf/fentry/lsm/iter target
        # (section-definition prefix, target) of `section`: set by a plan replay, else pybpf.link.auto computes it
        self.section_split: tuple[str, str] | None = None
        self.verifier_log = verifier_log
        self._id = 0
        self._tag = ""
        self.pinned_path: str | None = None

    @property
    def type(self) -> T.ProgType | int:
        """The program type: a ProgType member (a plain int for a type newer than pybpf knows)."""
        return enum_or_int(T.ProgType, self.prog_type)

    @property
    def attach_type(self) -> T.AttachType | int | None:
        """The expected attach type it was loaded with (AttachType; None when none was given)."""
        t = self.expected_attach_type
        return None if t is None else enum_or_int(T.AttachType, t)

    def defer_spec(self, build: Callable[[], ProgramSpec]) -> None:
        """Build `spec` on first access with `build()` (a collection loaded from a cached plan reads the
        object file only when a spec is asked for)."""
        defer(self, "spec", build)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set: a deferred spec.
        return build_deferred(self, name)

    # -- construction ------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls,
        spec: ProgramSpec,
        *,
        btf_fd: FD | int | None = None,
        log_level: int = 0,
        log_size: int = 0,
        fd_array: Sequence[FD | int] | None = None,
    ) -> Program:
        """Load `spec` (BPF_PROG_LOAD). func/line info go to the kernel when `btf_fd` is given.

        With ``log_level=0`` the first attempt runs without a log; only a refusal repeats it with a
        log (level 1). A nonzero `log_level` keeps the log of a successful load in `verifier_log`.
        Raises `VerifierError` (whole log, failing instruction, source line) when the verifier refuses,
        `NotSupportedError` when the kernel lacks the program type, `BPFError` otherwise.
        """
        if spec.type == T.BPF_PROG_TYPE_UNSPEC:
            where = f" (section {spec.section!r} names no hook pybpf knows)" if spec.section else ""
            raise BPFError(f"program {spec.name!r} has no program type{where}; set ProgramSpec.type",
                           _errno.EINVAL, "BPF_PROG_LOAD")
        load = _LoadAttr(spec, _encode(spec.instructions), btf_fd, fd_array)
        if not log_level:
            ret = bpf_errno(T.BPF_PROG_LOAD, load.attr)
            if ret >= 0:
                return cls(FD(ret), name=spec.name, type=spec.type, attach_type=spec.attach_type, spec=spec)
            # Any errno may come from the verifier (E2BIG: too complex, EBADF: bad map fd, ...): ask again
            # with a log; refusals before the verifier simply leave it empty.
        ret, log, truncated = _load_with_log(load, log_level or 1, log_size or LOG_SIZE_START)
        if ret >= 0:
            return cls(
                FD(ret), name=spec.name, type=spec.type, attach_type=spec.attach_type, spec=spec,
                verifier_log=log if log_level else "",
            )
        _raise_load_error(spec, -ret, log, truncated)
        raise AssertionError("unreachable")

    @classmethod
    def from_fd(cls, fd: FD | int) -> Program:
        """Wrap a program fd. An `FD` is taken over; a raw int is duplicated (the caller keeps its own)."""
        owned = fd if isinstance(fd, FD) else FD(os.dup(fd))
        try:
            _check_kind(owned, "bpf-prog")
            info, _ = _prog_info(owned, map_ids=False)
        except BaseException:
            owned.close()
            raise
        prog = cls(owned, name=_c_name(info.name), type=info.type)
        prog._id = info.id
        return prog

    @classmethod
    def from_id(cls, prog_id: int) -> Program:
        """Open a loaded program by its id (BPF_PROG_GET_FD_BY_ID)."""
        attr = T.GetIdAttr(prog_id=prog_id)
        return cls.from_fd(bpf_fd(T.BPF_PROG_GET_FD_BY_ID, attr, f"program id {prog_id}"))

    @classmethod
    def from_pin(cls, path: str | os.PathLike[str]) -> Program:
        """Open a program pinned in bpffs (BPF_OBJ_GET)."""
        prog = cls.from_fd(open_pinned(path))
        prog.pinned_path = os.fspath(path)
        return prog

    # -- identity ----------------------------------------------------------------------------------------
    @property
    def id(self) -> int:
        if not self._id:
            self._id = self.info().id
        return self._id

    @property
    def tag(self) -> str:
        """The kernel's tag: hex SHA-1 prefix of the instructions, as `bpftool prog show` prints it."""
        if not self._tag:
            self._tag = self.info().tag
        return self._tag

    @property
    def closed(self) -> bool:
        return self.fd.closed

    def info(self) -> ProgramInfo:
        """BPF_OBJ_GET_INFO_BY_FD. `run_time_ns`/`run_cnt` count only while stats are on (`enable_stats`)."""
        raw, map_ids = _prog_info(self.fd, map_ids=True)
        info = ProgramInfo(
            id=raw.id,
            name=_c_name(raw.name),
            type=enum_or_int(T.ProgType, raw.type),
            tag=bytes(raw.tag).hex(),
            insn_count=raw.xlated_prog_len // _INSN_SIZE,
            xlated_size=raw.xlated_prog_len,
            jited_size=raw.jited_prog_len,
            map_ids=tuple(map_ids),
            btf_id=raw.btf_id,
            load_time_ns=raw.load_time,
            created_by_uid=raw.created_by_uid,
            gpl_compatible=bool(raw.gpl_compatible),
            run_time_ns=raw.run_time_ns,
            run_cnt=raw.run_cnt,
            recursion_misses=raw.recursion_misses,
            verified_insns=raw.verified_insns,
            attach_btf_id=raw.attach_btf_id,
            attach_btf_obj_id=raw.attach_btf_obj_id,
            nr_func_info=raw.nr_func_info,
            nr_line_info=raw.nr_line_info,
            ifindex=raw.ifindex,
        )
        self._id, self._tag = info.id, info.tag
        return info

    def xlated(self) -> asm.Instructions:
        """The instructions as the kernel rewrote them (``bpftool prog dump xlated``)."""
        first, _ = _prog_info(self.fd, map_ids=False)
        size = first.xlated_prog_len
        if not size:
            raise BPFError(
                f"the kernel hides the instructions of program {self.name!r} (needs CAP_SYS_ADMIN, or "
                "kernel.kptr_restrict/bpf_jit_harden settings forbid dumping)", _errno.EPERM,
                "BPF_OBJ_GET_INFO_BY_FD",
            )
        buf = ctypes.create_string_buffer(size)
        info = T.ProgInfo()
        info.xlated_prog_len = size
        info.xlated_prog_insns = ctypes.addressof(buf)
        _get_info(self.fd, info)
        from pybpf import asm

        return asm.Instructions.decode(buf.raw[: min(size, info.xlated_prog_len)])

    # -- running -----------------------------------------------------------------------------------------
    def test_run(
        self,
        data: bytes = b"",
        *,
        ctx: bytes | ctypes.Structure | None = None,
        repeat: int = 1,
        flags: int = 0,
        data_out_size: int | None = None,
        ctx_out_size: int | None = None,
        cpu: int = 0,
    ) -> TestRunResult:
        """Run the program once or `repeat` times on `data` / `ctx` (BPF_PROG_TEST_RUN).

        Packet programs (XDP, tc, socket filter, cgroup skb, ...) take a packet in `data` (at least an
        Ethernet header) and optionally their context struct (`XdpMd`, `SkBuff`) in `ctx`; the result
        holds the packet and context after the run. Raw tracepoint programs take their arguments as
        `ctx` (u64 each) and run once, on `cpu` if nonzero; syscall programs take `ctx` and return it
        as they left it.
        """
        if repeat < 1:
            raise ValueError("repeat must be at least 1")
        once = self.prog_type in _RUN_ONCE
        if once and repeat > 1:
            raise ValueError(f"{_type_name(self.prog_type)} programs run once per test run; "
                             "call test_run in a loop instead of passing repeat")
        ctx_bytes = bytes(ctx) if ctx is not None else b""
        attr = T.ProgTestRunAttr(prog_fd=int(self.fd), repeat=0 if once else repeat)
        attr.flags = flags
        if cpu:
            attr.flags |= T.BPF_F_TEST_RUN_ON_CPU
            attr.cpu = cpu
        data_in = ctypes.create_string_buffer(data, len(data)) if data else None
        out_size = data_out_size if data_out_size is not None else (len(data) + 4096 if data else 0)
        data_out = ctypes.create_string_buffer(out_size) if out_size else None
        if data_in is not None:
            attr.data_in = ctypes.addressof(data_in)
            attr.data_size_in = len(data)
        if data_out is not None:
            attr.data_out = ctypes.addressof(data_out)
            attr.data_size_out = out_size
        ctx_in = ctypes.create_string_buffer(ctx_bytes, len(ctx_bytes)) if ctx_bytes else None
        ctx_out = None
        if ctx_in is not None:
            attr.ctx_in = ctypes.addressof(ctx_in)
            attr.ctx_size_in = len(ctx_bytes)
            size = ctx_out_size if ctx_out_size is not None else len(ctx_bytes)
            if size and not once:
                ctx_out = ctypes.create_string_buffer(size)
                attr.ctx_out = ctypes.addressof(ctx_out)
                attr.ctx_size_out = size
        ret = bpf_errno(T.BPF_PROG_TEST_RUN, attr)
        if ret < 0 and -ret != _errno.ENOSPC:
            err = -ret
            hint = ""
            if err == ENOTSUPP:
                raise NotSupportedError(
                    f"BPF_PROG_TEST_RUN for {_type_name(self.prog_type)} programs", "",
                    err, detail="the kernel has no test runner for this program type",
                )
            if err == _errno.EINVAL:
                hint = " (check the data/ctx sizes and layout this program type expects)"
            raise BPFError(f"test run of program {self.name!r}{hint} failed", err, "BPF_PROG_TEST_RUN")
        # ENOSPC: the output did not fit data_out_size; the kernel copied what fit.
        out = b""
        if data_out is not None:
            out = data_out.raw[: min(attr.data_size_out, out_size)]
        ctx_result: bytes | None = None
        if ctx_out is not None:
            ctx_result = ctx_out.raw[: min(attr.ctx_size_out, len(ctx_out))]
        elif ctx_in is not None and self.prog_type == T.BPF_PROG_TYPE_SYSCALL:
            ctx_result = ctx_in.raw  # the kernel writes a syscall program's context back into ctx_in
        retval = attr.retval - (1 << 32) if attr.retval & 0x80000000 else attr.retval
        return TestRunResult(retval=retval, data=out, duration_ns=attr.duration, ctx=ctx_result)

    # -- pinning -----------------------------------------------------------------------------------------
    def pin(self, path: str | os.PathLike[str]) -> None:
        """Pin the program in bpffs at `path` (mounting /sys/fs/bpf first when it is missing)."""
        self.pinned_path = pin_fd(self.fd, path, f"program {self.name!r}")

    def unpin(self, path: str | os.PathLike[str] | None = None) -> None:
        """Remove the pin (the program stays loaded while something else holds it)."""
        where = os.fspath(path) if path is not None else self.pinned_path
        if where is None:
            raise ValueError(f"program {self.name!r} is not pinned")
        os.unlink(where)
        if where == self.pinned_path:
            self.pinned_path = None

    # -- attaching ---------------------------------------------------------------------------------------
    def attach(self, *args: Any, **kwargs: Any) -> Any:
        """Attach to the hook named by the section (or by the arguments); see `pybpf.link.attach`."""
        import pybpf.link

        return pybpf.link.attach(self, *args, **kwargs)  # type: ignore[attr-defined]

    # -- lifetime ----------------------------------------------------------------------------------------
    def close(self) -> None:
        self.fd.close()

    def __enter__(self) -> Program:
        return self

    def __exit__(self, t: builtins.type[BaseException] | None, v: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.fd.closed else f"fd={int(self.fd)}"
        return f"<Program {self.name!r} {_type_name(self.prog_type)} {state}>"


# ---- info helpers ----------------------------------------------------------------------------------------


def _get_info(fd: FD, info: T.ProgInfo) -> None:
    attr = T.InfoByFdAttr(bpf_fd=int(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(T.BPF_OBJ_GET_INFO_BY_FD, attr, "program info")


def _prog_info(fd: FD, *, map_ids: bool) -> tuple[T.ProgInfo, list[int]]:
    slots = 32
    while True:
        info = T.ProgInfo()
        ids = (ctypes.c_uint32 * slots)() if map_ids else None
        if ids is not None:
            info.nr_map_ids = slots
            info.map_ids = ctypes.addressof(ids)
        _get_info(fd, info)
        if ids is None or info.nr_map_ids <= slots:
            return info, list(ids[: info.nr_map_ids]) if ids is not None else []
        slots = info.nr_map_ids


def _c_name(raw: ctypes.Array[ctypes.c_uint8]) -> str:
    return bytes(raw).split(b"\0", 1)[0].decode("utf-8", "replace")


def _type_name(prog_type: int) -> str:
    kind = enum_or_int(T.ProgType, prog_type)
    return kind.name.lower() if isinstance(kind, T.ProgType) else f"type {prog_type}"


def _check_kind(fd: FD, kind: str) -> None:
    """Refuse fds that are not `kind` ("bpf-prog", "bpf-map", ...): their info would be misread."""
    try:
        target = os.readlink(f"/proc/self/fd/{int(fd)}")
    except OSError:
        return  # no /proc: trust the caller
    if target != f"anon_inode:{kind}":
        what = target.removeprefix("anon_inode:")
        raise BPFError(f"file descriptor {int(fd)} is a {what}, not a BPF program", _errno.EINVAL)


# ---- statistics ------------------------------------------------------------------------------------------


class StatsHandle:
    """Keeps BPF run-time statistics on (BPF_ENABLE_STATS) until closed."""

    def __init__(self, fd: FD) -> None:
        self.fd = fd

    def close(self) -> None:
        self.fd.close()

    def __enter__(self) -> StatsHandle:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def enable_stats(kind: T.StatsType | None = None) -> StatsHandle:
    """Turn on run_time_ns/run_cnt accounting for all programs while the returned handle is open::

        with enable_stats():
            prog.test_run(packet, repeat=100)
            print(prog.info().run_cnt)

    `kind` defaults to BPF_STATS_RUN_TIME (the only kind so far).
    """
    attr = T.EnableStatsAttr(type=T.BPF_STATS_RUN_TIME if kind is None else int(kind))
    ret = bpf_errno(T.BPF_ENABLE_STATS, attr)
    if ret < 0:
        if -ret == _errno.EINVAL:
            raise NotSupportedError(
                "BPF_ENABLE_STATS", "5.8", -ret, detail="set sysctl kernel.bpf_stats_enabled=1 instead"
            )
        raise BPFError("enabling BPF statistics failed", -ret, "BPF_ENABLE_STATS")
    return StatsHandle(FD(ret))
