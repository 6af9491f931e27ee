"""BTF-targeted programs: tp_btf, fentry, fexit, fmod_ret, lsm, lsm_cgroup and freplace.

These programs name their target when they are *loaded* (``attach_btf_id``, plus ``attach_btf_obj_fd``
for a kernel module or ``attach_prog_fd`` for freplace); attaching then needs no target at all.
`resolve_attach_btf` fills those fields of a `ProgramSpec` from its section target, as libbpf does:

==========  ======================  =====================================
section     BTF name looked up      kind
==========  ======================  =====================================
tp_btf/X    ``btf_trace_X``         typedef (the tracepoint's prototype)
fentry/X    ``X``                   function (``module:X`` for a module)
lsm/X       ``bpf_lsm_X``           function
iter/X      ``bpf_iter_X``          function
freplace/X  ``X`` in the target     function of the program being replaced
==========  ======================  =====================================

Vmlinux is searched first, then the BTF of every loaded module (``/sys/kernel/btf/<module>``), whose
BTF object fd comes from BPF_BTF_GET_FD_BY_ID.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.record import record
from pybpf._sys.syscall import bpf, bpf_errno, object_ids
from pybpf.errors import BPFError, NotSupportedError
from pybpf.link.base import Link, prog_type_name
from pybpf.link.raw_tracepoint import raw_tracepoint_open

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NoReturn

    from pybpf.btf import Spec
    from pybpf.program import Program, ProgramSpec

__all__ = [
    "BtfTarget",
    "attach_freplace",
    "attach_lsm",
    "attach_lsm_cgroup",
    "attach_tracing",
    "find_kernel_btf_target",
    "kernel_btf_fd",
    "program_btf_func_id",
    "resolve_attach_btf",
]

# BTF name prefix and kind of the target, per expected attach type (libbpf's find_attach_btf_id).
_KIND_TYPEDEF = "TYPEDEF"  # pybpf.btf.Kind member names (pybpf.btf is imported only when needed)
_KIND_FUNC = "FUNC"
_TARGET_NAMING: dict[int, tuple[str, str]] = {
    T.BPF_TRACE_RAW_TP: ("btf_trace_", _KIND_TYPEDEF),
    T.BPF_LSM_MAC: ("bpf_lsm_", _KIND_FUNC),
    T.BPF_LSM_CGROUP: ("bpf_lsm_", _KIND_FUNC),
    T.BPF_TRACE_ITER: ("bpf_iter_", _KIND_FUNC),
}
_BTF_ATTACH_TYPES = frozenset({
    T.BPF_TRACE_RAW_TP, T.BPF_TRACE_FENTRY, T.BPF_TRACE_FEXIT, T.BPF_MODIFY_RETURN, T.BPF_LSM_MAC, T.BPF_LSM_CGROUP,
    T.BPF_TRACE_ITER,
})
_HOOK_NAMES: dict[int, str] = {
    T.BPF_TRACE_RAW_TP: "tp_btf", T.BPF_TRACE_FENTRY: "fentry", T.BPF_TRACE_FEXIT: "fexit",
    T.BPF_MODIFY_RETURN: "fmod_ret", T.BPF_LSM_MAC: "lsm", T.BPF_LSM_CGROUP: "lsm_cgroup", T.BPF_TRACE_ITER: "iter",
}
# Trampoline programs, whose cookie only BPF_LINK_CREATE carries (6.5+).
_TRAMPOLINE_ATTACH_TYPES = (T.BPF_TRACE_FENTRY, T.BPF_TRACE_FEXIT, T.BPF_MODIFY_RETURN, T.BPF_LSM_MAC)


@record(frozen=True)
class BtfTarget:
    """Where a BTF-targeted program hooks: `type_id` in vmlinux (``obj_fd`` None) or in `module`'s BTF
    (``obj_fd`` is that BTF object, for ``attach_btf_obj_fd``)."""

    name: str
    type_id: int
    module: str = ""
    obj_fd: FD | None = None


def _btf_name(target: str, attach_type: int) -> tuple[str, str, str]:
    """(module or "", BTF name, BTF kind) for a section target like "do_unlinkat" or "mod:func"."""
    module, sep, func = target.partition(":")
    if not sep:
        module, func = "", target
    prefix, kind = _TARGET_NAMING.get(attach_type, ("", _KIND_FUNC))
    return module, prefix + func, kind


def _find_in(spec: Spec, name: str, kind: str) -> int:
    for type_id in spec.ids_by_name(name):
        if type_id >= spec.first_id and spec.type(type_id).kind.name == kind:
            return type_id
    return 0


def find_kernel_btf_target(target: str, attach_type: T.AttachType | int) -> BtfTarget:
    """Find the kernel BTF type a tp_btf/fentry/fexit/fmod_ret/lsm/iter program attaches to.

    `target` is the section's target ("sys_enter", "do_unlinkat", "file_open", "task", or
    "module:function"). Raises BPFError (ENOENT) naming what was looked for.
    """
    from pybpf.btf import kernel_spec, module_spec
    from pybpf.btf.spec import kernel_module_names

    if not target:
        hook = _HOOK_NAMES.get(attach_type, "this hook")
        raise BPFError(f"a {hook} program needs a target in its section name, e.g. SEC(\"{hook}/<name>\")",
                       _errno.EINVAL)
    module, name, kind = _btf_name(target, attach_type)
    if not module:
        type_id = _find_in(kernel_spec(), name, kind)
        if type_id:
            return BtfTarget(name, type_id)
    for mod in [module] if module else kernel_module_names():
        try:
            spec = module_spec(mod)
        except OSError:
            if module:
                raise BPFError(f"kernel module {module!r} has no BTF (is it loaded? /sys/kernel/btf/{module})",
                               _errno.ENOENT) from None
            continue
        type_id = _find_in(spec, name, kind)
        if type_id:
            return BtfTarget(name, type_id, mod, kernel_btf_fd(mod))
    what = "typedef" if kind == _KIND_TYPEDEF else "function"
    hook = _HOOK_NAMES.get(attach_type, "BTF")
    where = f"module {module!r}" if module else "vmlinux or any loaded module"
    if attach_type == T.BPF_TRACE_RAW_TP:
        listing = "pybpf probes 'rawtracepoint:*'"
    else:
        listing = f"pybpf probes 'kfunc:{module or '*'}:{name.removesuffix(target) or ''}*'"
    raise BPFError(
        f"{hook} target {target!r}: no {what} {name!r} in the BTF of {where}; list the candidates with "
        f"`{listing}` (static functions that were inlined have no BTF)",
        _errno.ENOENT)


def kernel_btf_fd(module: str) -> FD:
    """An fd of the kernel BTF object named `module` ("vmlinux" or a module name)."""
    name_buf = ctypes.create_string_buffer(64)
    for btf_id in object_ids(T.BPF_BTF_GET_NEXT_ID):
        ret = bpf_errno(T.BPF_BTF_GET_FD_BY_ID, T.GetIdAttr(btf_id=btf_id))
        if ret < 0:
            continue  # freed meanwhile
        fd = FD(ret)
        info = T.BtfInfo(name=ctypes.addressof(name_buf), name_len=ctypes.sizeof(name_buf))
        iattr = T.InfoByFdAttr(bpf_fd=int(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
        if bpf_errno(T.BPF_OBJ_GET_INFO_BY_FD, iattr) >= 0 and info.kernel_btf and name_buf.value.decode() == module:
            return fd
        fd.close()
    raise BPFError(f"no kernel BTF object named {module!r} (BPF_BTF_GET_NEXT_ID)", _errno.ENOENT,
                   "BPF_BTF_GET_FD_BY_ID")


def program_btf_func_id(program: Program | FD | int, function: str) -> int:
    """The BTF id of `function` in a loaded program's BTF (the target of a freplace program)."""
    from pybpf.btf import btf_by_id

    prog_fd = int(program.fd) if not isinstance(program, FD | int) else int(program)
    info = T.ProgInfo()
    bpf(T.BPF_OBJ_GET_INFO_BY_FD,
        T.InfoByFdAttr(bpf_fd=prog_fd, info_len=ctypes.sizeof(info), info=ctypes.addressof(info)), "program info")
    if not info.btf_id:
        raise BPFError(f"the freplace target program (id {info.id}) has no BTF: it must be loaded with BTF",
                       _errno.EINVAL)
    type_id = _find_in(btf_by_id(info.btf_id), function, _KIND_FUNC)
    if not type_id:
        raise BPFError(f"freplace target: the target program (id {info.id}) has no function {function!r}",
                       _errno.ENOENT)
    return type_id


def resolve_attach_btf(spec: ProgramSpec) -> None:
    """Fill `spec.attach_btf_id` (and `attach_btf_obj_fd` for module targets) from `spec.attach_to`, for
    tp_btf/fentry/fexit/fmod_ret/lsm/lsm_cgroup/iter programs, and for freplace programs whose
    `attach_prog_fd` is set. Other specs, and specs with an id already, are left as they are."""
    if spec.attach_btf_id:
        return
    if spec.type == T.BPF_PROG_TYPE_EXT:
        if spec.attach_prog_fd is not None and spec.attach_to:
            spec.attach_btf_id = program_btf_func_id(spec.attach_prog_fd, spec.attach_to)
        return
    if spec.type not in (T.BPF_PROG_TYPE_TRACING, T.BPF_PROG_TYPE_LSM) or spec.attach_type not in _BTF_ATTACH_TYPES:
        return
    found = find_kernel_btf_target(spec.attach_to, spec.attach_type)
    spec.attach_btf_id = found.type_id
    if found.obj_fd is not None:
        spec.attach_btf_obj_fd = found.obj_fd


def _target_name(program: Program) -> str:
    attach_type = program.expected_attach_type
    hook = _HOOK_NAMES.get(attach_type if attach_type is not None else -1,
                           "freplace" if program.prog_type == T.BPF_PROG_TYPE_EXT else "tracing")
    return f"{hook}/{program.attach_to}" if program.attach_to else hook


def _raise_tracing_error(program: Program, err: int, target: str, command: str) -> NoReturn:
    if err in (_errno.EOPNOTSUPP, 524):  # ENOTSUPP: no trampolines (CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS)
        raise NotSupportedError(f"BPF trampolines ({target})", "5.5", err,
                                detail="the kernel cannot attach fentry/fexit/fmod_ret/lsm programs (needs "
                                "CONFIG_BPF_JIT and CONFIG_DYNAMIC_FTRACE_WITH_DIRECT_CALLS)")
    hint = ""
    if program.prog_type == T.BPF_PROG_TYPE_LSM and err in (_errno.EINVAL, _errno.EPERM):
        hint = " (is the BPF LSM active? 'bpf' must be in /sys/kernel/security/lsm, boot with lsm=...,bpf)"
    elif err == _errno.EINVAL:
        hint = " (was the program loaded with its BTF target? pybpf.link.tracing.resolve_attach_btf)"
    elif err == _errno.EBUSY:
        hint = " (an fmod_ret/freplace program is already attached there)"
    raise BPFError(f"attaching {program.name!r} to {target}{hint} failed", err, command)


def attach_tracing(program: Program, *, cookie: int = 0) -> Link:
    """Attach a tp_btf/fentry/fexit/fmod_ret/lsm program (or a freplace program loaded with its target)
    to the target it was loaded for. `cookie` (6.5+/6.10+) is returned by bpf_get_attach_cookie()."""
    if program.prog_type not in (T.BPF_PROG_TYPE_TRACING, T.BPF_PROG_TYPE_LSM, T.BPF_PROG_TYPE_EXT):
        kind = prog_type_name(program)
        raise BPFError(f"program {program.name!r} is {kind}, not a tracing/lsm/freplace program", _errno.EINVAL)
    target = _target_name(program)
    attach_type = program.expected_attach_type
    if attach_type == T.BPF_TRACE_ITER:
        raise BPFError(f"{program.name!r} is an iterator: attach it with pybpf.link.attach_iter", _errno.EINVAL)
    if attach_type == T.BPF_LSM_CGROUP:
        raise BPFError(f"{program.name!r} is an lsm_cgroup program: attach it with attach_lsm_cgroup(prog, "
                       "cgroup_path)", _errno.EINVAL)
    kind = target.partition("/")[0]
    if cookie and attach_type in _TRAMPOLINE_ATTACH_TYPES:
        # Only BPF_LINK_CREATE carries a cookie for trampoline programs (6.5+).
        attr = T.LinkCreateAttr(prog_fd=int(program.fd), attach_type=attach_type)
        attr.tracing.cookie = cookie
        ret = bpf_errno(T.BPF_LINK_CREATE, attr)
        if ret < 0:
            if -ret in (_errno.EINVAL, _errno.E2BIG):
                raise NotSupportedError(f"BPF cookies on {kind} programs", "6.5", -ret)
            _raise_tracing_error(program, -ret, target, "BPF_LINK_CREATE")
        return Link(program, kind, target, fd=FD(ret))
    # BPF_RAW_TRACEPOINT_OPEN without a name attaches to the load-time target; it works on every kernel
    # with these program types (5.5+), where BPF_LINK_CREATE for tracing needs 5.13+.
    try:
        fd = raw_tracepoint_open(program, None, cookie=cookie, what=target)
    except NotSupportedError:
        raise
    except BPFError as exc:
        _raise_tracing_error(program, exc.errno or 0, target, "BPF_RAW_TRACEPOINT_OPEN")
    return Link(program, kind, target, fd=fd)


attach_lsm = attach_tracing


def attach_lsm_cgroup(program: Program, cgroup: str | os.PathLike[str] | int) -> Link:
    """Attach an lsm_cgroup program to a cgroup v2 directory (or an open cgroup fd), Linux 6.0+."""
    if program.expected_attach_type != T.BPF_LSM_CGROUP:
        raise BPFError(f"program {program.name!r} is not an lsm_cgroup program (SEC(\"lsm_cgroup/...\"))",
                       _errno.EINVAL)
    from pybpf.link.cgroup import open_cgroup

    cg_fd, where = open_cgroup(cgroup)
    with cg_fd:
        attr = T.LinkCreateAttr(prog_fd=int(program.fd), target_fd=int(cg_fd), attach_type=T.BPF_LSM_CGROUP)
        ret = bpf_errno(T.BPF_LINK_CREATE, attr)
    target = f"{_target_name(program)} on " + (where if isinstance(cgroup, int) else f"cgroup {where}")
    if ret < 0:
        if -ret == _errno.EINVAL:
            raise NotSupportedError("lsm_cgroup links", "6.0", -ret, detail=f"cannot attach {program.name!r}")
        _raise_tracing_error(program, -ret, target, "BPF_LINK_CREATE")
    return Link(program, "lsm_cgroup", target, fd=FD(ret))


def attach_freplace(program: Program, target: Program | None = None, function: str | None = None) -> Link:
    """Replace `function` of the loaded program `target` with the freplace (extension) `program`.

    Without `target`, the program attaches to the target it was loaded for (spec.attach_prog_fd).
    """
    if program.prog_type != T.BPF_PROG_TYPE_EXT:
        raise BPFError(f"program {program.name!r} is not an freplace program (SEC(\"freplace/...\"))",
                       _errno.EINVAL)
    if target is None:
        return attach_tracing(program)
    func = function or program.attach_to
    if not func:
        raise ValueError("attach_freplace needs the name of the function to replace")
    btf_id = program_btf_func_id(target, func)
    attr = T.LinkCreateAttr(prog_fd=int(program.fd), target_fd=int(target.fd))
    attr.target_btf_id = btf_id
    ret = bpf_errno(T.BPF_LINK_CREATE, attr)
    where = f"freplace/{func} in {target.name!r}"
    if ret < 0:
        _raise_tracing_error(program, -ret, where, "BPF_LINK_CREATE")
    return Link(program, "freplace", where, fd=FD(ret))
