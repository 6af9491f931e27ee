"""Probes of program types and of the helpers each program type may call.

A program type is probed by loading ``r0 = 0; exit`` as that type, as libbpf does. Some types cannot be
loaded without a BTF attach target; for them an expected refusal proves the type exists (tracing, LSM
and extension programs: the verifier complains about attach_btf_id 1; struct_ops: ENOTSUPP). Any
verifier log at all also means the kernel knows the type: only an unknown type (or attach type) is
turned away before the verifier runs.

A helper is probed by loading ``call helper; r0 = r5; exit``. The verifier refuses a call with EINVAL
and says "invalid func" for helpers it does not know, "program of this type cannot use helper" (older
kernels: "unknown func") for helpers the type may not call; only then is the log read. Reading R5, which
every call clobbers, makes a load that got past the call fail with EACCES, so no probe program is ever
JIT-compiled. Any other outcome, rejected arguments included, means the helper is usable.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import functools
import os
import threading

from pybpf import asm
from pybpf._sys import types as T
from pybpf._sys.kernel import kernel_version_code
from pybpf._sys.syscall import bpf_errno
from pybpf.errors import ENOTSUPP, NotSupportedError
from pybpf.features._probe import GPL_LICENSE, ProbeResult, errno_name, try_load
from pybpf.features.versions import first_kernel, helper_first_kernel

__all__ = [
    "have_helper",
    "have_prog_type",
    "helpers_for",
    "probe_helper",
    "probe_prog_type",
    "prog_type_name",
    "prog_types",
    "require_helper",
    "require_prog_type",
]

# Types whose programs need an attach target in BTF: their helpers cannot be probed with a bare load.
_NEEDS_BTF_TARGET = frozenset({T.ProgType.TRACING, T.ProgType.LSM, T.ProgType.EXT, T.ProgType.STRUCT_OPS})

# Refusals that prove the type exists, with the verifier message that goes with them (libbpf's rules).
_EXPECTED_REFUSAL: dict[T.ProgType, tuple[int, str]] = {
    T.ProgType.TRACING: (_errno.EINVAL, "attach_btf_id 1 is not a function"),
    T.ProgType.LSM: (_errno.EINVAL, "attach_btf_id 1 is not a function"),
    T.ProgType.EXT: (_errno.EINVAL, "Cannot replace kernel functions"),
    T.ProgType.STRUCT_OPS: (ENOTSUPP, ""),
}

_HELPER_UNKNOWN = ("invalid func ", "unknown func ", "program of this type cannot use helper ")


def prog_type_name(prog_type: T.ProgType | int) -> str:
    """``ProgType.SCHED_CLS`` -> ``"sched_cls"`` (bpftool's spelling)."""
    return T.ProgType(prog_type).name.lower()


def prog_types() -> list[T.ProgType]:
    """Every program type this pybpf knows (UNSPEC excluded)."""
    return [t for t in T.ProgType if t != T.ProgType.UNSPEC]


def _load_options(prog_type: T.ProgType) -> dict[str, int]:
    """The extra attributes a minimal program of this type needs to load."""
    P, A = T.ProgType, T.AttachType
    opts: dict[str, int] = {}
    if prog_type == P.CGROUP_SOCK_ADDR:
        opts["expected_attach_type"] = A.CGROUP_INET4_CONNECT
    elif prog_type == P.CGROUP_SOCKOPT:
        opts["expected_attach_type"] = A.CGROUP_GETSOCKOPT
    elif prog_type == P.SK_LOOKUP:
        opts["expected_attach_type"] = A.SK_LOOKUP
    elif prog_type == P.LIRC_MODE2:
        opts["expected_attach_type"] = A.LIRC_MODE2
    elif prog_type == P.NETFILTER:
        opts["expected_attach_type"] = A.NETFILTER
    elif prog_type == P.KPROBE:
        opts["kern_version"] = kernel_version_code()
    elif prog_type in (P.TRACING, P.LSM):
        opts["expected_attach_type"] = A.TRACE_FENTRY if prog_type == P.TRACING else A.MODIFY_RETURN
        opts["attach_btf_id"] = 1
    elif prog_type == P.EXT:
        opts["attach_btf_id"] = 1
    elif prog_type == P.SYSCALL:
        opts["flags"] = T.BPF_F_SLEEPABLE
    return opts


_RETURN_ZERO = asm.Instructions([asm.mov64_imm(asm.R0, 0), asm.exit_insn()])


@functools.cache
def probe_prog_type(prog_type: T.ProgType) -> ProbeResult:
    """Whether the kernel can load programs of `prog_type` (cached per process)."""
    prog_type = T.ProgType(prog_type)
    if prog_type == T.ProgType.UNSPEC:
        return ProbeResult(False, _errno.EINVAL, "not a program type")
    opts = _load_options(prog_type)
    expected = _EXPECTED_REFUSAL.get(prog_type)
    err, log = try_load(prog_type, _RETURN_ZERO, log=expected is not None and bool(expected[1]), **opts)
    if not err:
        return ProbeResult(True)
    if expected is not None:
        exp_err, exp_msg = expected
        if err == exp_err and (not exp_msg or exp_msg in log):
            return ProbeResult(True, err, "known; loads only with a BTF attach target")
    if err in (_errno.EINVAL, _errno.E2BIG):
        if expected is None:
            # The verifier ran (and complained) only if the kernel knows the type.
            err2, log = try_load(prog_type, _RETURN_ZERO, log=True, **opts)
            if not err2 or log.strip():
                return ProbeResult(True, err, "known; the minimal probe program was rejected")
        return ProbeResult(False, err, f"unknown to this kernel ({errno_name(err)})")
    if err == _errno.EPERM:
        return ProbeResult(False, err, "not loadable here (EPERM): lockdown, or a hook the kernel lacks")
    return ProbeResult(False, err, f"not loadable here ({errno_name(err)})")


def have_prog_type(prog_type: T.ProgType) -> bool:
    return probe_prog_type(prog_type).supported


def require_prog_type(prog_type: T.ProgType) -> None:
    """Raise NotSupportedError unless the kernel can load programs of `prog_type`."""
    result = probe_prog_type(prog_type)
    if not result.supported:
        raise NotSupportedError(
            f"program type {T.ProgType(prog_type).name}", first_kernel("prog_type", prog_type), result.errno,
            detail=result.reason(),
        )


# ---- helpers ---------------------------------------------------------------------------------------------


def _helper_id(helper: T.BpfFuncId | int | str) -> int:
    return asm.helper_id(helper) if isinstance(helper, str) else int(helper)


@functools.cache
def _call_program(helper: int) -> bytes:
    # After the call, R1-R5 are clobbered: reading R5 makes every load that gets past the call fail
    # with EACCES. That saves JIT-compiling thousands of successful probes, and leaves EINVAL (read
    # the log) for a call the verifier refused.
    return asm.Instructions([asm.call_helper(helper), asm.mov64_reg(asm.R0, asm.R5), asm.exit_insn()]).encode()


class _HelperProber:
    """Probes the helpers of one program type, reusing one load attr and one log buffer."""

    def __init__(self, prog_type: T.ProgType) -> None:
        self.prog_type = prog_type
        size = len(_call_program(0))
        self.insns = ctypes.create_string_buffer(size)
        self.log = ctypes.create_string_buffer(4096)
        opts = _load_options(prog_type)
        self.attr = T.ProgLoadAttr(prog_type=int(prog_type), insn_cnt=size // 8,
                                   insns=ctypes.addressof(self.insns), license=ctypes.addressof(GPL_LICENSE),
                                   prog_flags=opts.pop("flags", 0), **opts)
        self.results: dict[int, ProbeResult] = {}
        self.lock = threading.Lock()

    def _load(self, log: bool) -> int:
        attr = self.attr
        if log:
            self.log[0] = b"\0"
            attr.log_level, attr.log_size, attr.log_buf = 1, len(self.log), ctypes.addressof(self.log)
        else:
            attr.log_level, attr.log_size, attr.log_buf = 0, 0, 0
        ret = bpf_errno(T.BPF_PROG_LOAD, attr)
        if ret >= 0:
            os.close(ret)
            return 0
        return -ret

    def probe(self, helper: int) -> ProbeResult:
        with self.lock:
            found = self.results.get(helper)
            if found is None:
                found = self.results[helper] = self._probe(helper)
            return found

    def _probe(self, helper: int) -> ProbeResult:
        code = _call_program(helper)
        ctypes.memmove(self.insns, code, len(code))
        err = self._load(log=False)
        if err in (0, _errno.EACCES):
            # Refused after the call (the forced failure, or rejected arguments): the call was accepted.
            return ProbeResult(True)
        if err != _errno.EINVAL:
            return ProbeResult(True, err, f"usable (the probe call was refused with {errno_name(err)})")
        err = self._load(log=True)
        text = self.log.value.decode("utf-8", "replace")
        for marker in _HELPER_UNKNOWN:
            if marker in text:
                return ProbeResult(False, err, text[text.index(marker):].splitlines()[0].strip())
        return ProbeResult(True, err, "usable (the probe call was rejected for another reason)")


@functools.cache
def _prober(prog_type: T.ProgType) -> _HelperProber:
    return _HelperProber(prog_type)


def _helper_table(prog_type: T.ProgType) -> dict[int, ProbeResult]:
    return {int(h): _probe_helper_cached(prog_type, int(h)) for h in T.BpfFuncId if h != T.BpfFuncId.unspec}


def _helpers_probeable(prog_type: T.ProgType) -> ProbeResult:
    if prog_type in _NEEDS_BTF_TARGET:
        return ProbeResult(False, 0, "helpers of this type cannot be probed without a BTF attach target")
    return probe_prog_type(prog_type)


def probe_helper(prog_type: T.ProgType, helper: T.BpfFuncId | int | str) -> ProbeResult:
    """Whether programs of `prog_type` may call `helper` (id, BpfFuncId or name); cached per process."""
    prog_type = T.ProgType(prog_type)
    usable = _helpers_probeable(prog_type)
    if not usable.supported:
        return ProbeResult(False, usable.errno, f"program type {prog_type.name.lower()}: {usable.reason()}")
    return _probe_helper_cached(prog_type, _helper_id(helper))


def _probe_helper_cached(prog_type: T.ProgType, helper: int) -> ProbeResult:
    return _prober(prog_type).probe(helper)


def have_helper(prog_type: T.ProgType, helper: T.BpfFuncId | int | str) -> bool:
    return probe_helper(prog_type, helper).supported


def helpers_for(prog_type: T.ProgType) -> list[T.BpfFuncId] | None:
    """Every helper `prog_type` may call, or None when that cannot be probed (type unavailable here,
    or one that needs a BTF attach target)."""
    prog_type = T.ProgType(prog_type)
    if not _helpers_probeable(prog_type).supported:
        return None
    return [T.BpfFuncId(h) for h, r in _helper_table(prog_type).items() if r.supported]


def require_helper(prog_type: T.ProgType, helper: T.BpfFuncId | int | str) -> None:
    """Raise NotSupportedError unless programs of `prog_type` may call `helper`."""
    result = probe_helper(prog_type, helper)
    if result.supported:
        return
    helper_number = _helper_id(helper)
    name = asm.helper_name(helper_number) or f"helper #{helper_number}"
    raise NotSupportedError(
        f"helper {name} in {T.ProgType(prog_type).name.lower()} programs",
        helper_first_kernel(helper_number), result.errno, detail=result.reason(),
    )
