"""Auto-attach: attach a program where its section name says (libbpf's `bpf_program__attach`).

``attach(prog)`` reads ``prog.section`` ("tracepoint/syscalls/sys_enter_openat", "kprobe/func+0x10",
"uprobe/path:func", "usdt/path:provider:name", "iter/task", "lsm/file_open", ...) and calls the hook's
`attach_*` function. Positional arguments replace the section's target (``prog.attach("do_unlinkat")``);
keyword arguments go to the hook (``iface=`` for xdp/tc, ``cgroup=`` for cgroup programs, ``sock=``,
``netns=``, ``map=``, ``binary=``/``pid=`` for uprobes and USDT, ``frequency=``/``period=`` for
perf_event, ``cookie=`` everywhere it exists). Programs without a section name (built by hand) are
dispatched by program type and need their target as arguments.

``attach_all(programs, **targets)`` attaches every program that either needs no target or whose target
is among `targets` (each hook takes only the keywords it knows), collecting failures instead of stopping.
"""

from __future__ import annotations

import errno as _errno

from pybpf._sys import types as T
from pybpf.errors import BPFError
from pybpf.link.base import Link, prog_type_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from typing import Any

    from pybpf.program import Program

__all__ = ["attach", "attach_all", "auto_attachable", "hook_of"]

if TYPE_CHECKING:
    _Args = tuple[Any, ...]
    _Kwargs = dict[str, Any]
    _Runner = Callable[[Program, str, str, _Args, _Kwargs], Link]  # (program, section prefix, target, ...)


def _call(function: str, *args: Any, **kwargs: Any) -> Link:
    """Call pybpf.link.<function>: the hook's module is imported when it is first used."""
    import pybpf.link

    link: Link = getattr(pybpf.link, function)(*args, **kwargs)
    return link


# ---- per-hook runners: (program, section prefix, section target, args, kwargs) -> Link -----------------------


def _tracepoint(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    return _call("attach_tracepoint", p, *(args or _need(p, target, "category/name")), **kw)


def _raw_tp(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    return _call("attach_raw_tracepoint", p, *(args or _need(p, target, "name")), **kw)


def _tracing(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if args:
        raise TypeError(f"{pfx} programs attach to the target they were loaded for; no arguments")
    return _call("attach_tracing", p, **kw)


def _freplace(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    # Without a target program: the one it was loaded for (attach_freplace hands it to attach_tracing).
    return _call("attach_freplace", p, *args, **kw)


_MAP_ITERS = frozenset({"bpf_map_elem", "bpf_sk_storage_map", "sockmap"})


def _iter(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if args:
        raise TypeError("iterators take keyword targets only: map=, cgroup=, tid=, pid=, pid_fd=")
    return _call("attach_iter", p, **kw)


def _kprobe(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    kw.setdefault("retprobe", pfx == "kretprobe")
    # attach_kprobe splits a "func+0x10" section target itself.
    return _call("attach_kprobe", p, *(args or _need(p, target, "function")), **kw)


def _kprobe_multi(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    kw.setdefault("retprobe", pfx == "kretprobe.multi")
    if args or "symbols" in kw or "addresses" in kw:
        return _call("attach_kprobe_multi", p, *args, **kw)
    return _call("attach_kprobe_multi", p, _need(p, target, "pattern")[0], **kw)


def _ksyscall(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    kw.setdefault("retprobe", pfx == "kretsyscall")
    return _call("attach_ksyscall", p, *(args or _need(p, target, "syscall")), **kw)


def parse_uprobe_target(target: str) -> tuple[str, str | None, int]:
    """"/bin/bash:readline+0x8" -> ("/bin/bash", "readline", 8); "path:0x1234" -> ("path", None, 0x1234)."""
    binary, sep, where = target.rpartition(":")
    if not sep or not binary or not where:
        raise ValueError(f"uprobe target {target!r}: expected '<binary>:<function>[+<offset>]' or "
                         "'<binary>:<offset>'")
    func, plus, off = where.partition("+")
    try:
        if not plus and func[:1].isdigit():
            return binary, None, int(func, 0)
        return binary, func, int(off, 0) if plus else 0
    except ValueError:
        raise ValueError(f"uprobe target {target!r}: bad offset") from None


def _uprobe(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    kw.setdefault("retprobe", pfx.startswith("uretprobe"))
    if args or ("binary" in kw and not target):
        return _call("attach_uprobe", p, *args, **kw)
    binary, symbol, offset = parse_uprobe_target(_need(p, target, "binary:function")[0])
    if "symbol" not in kw and "offset" not in kw:
        # binary= only swaps the file: the section still says where in it
        kw["symbol"], kw["offset"] = symbol, offset
    return _call("attach_uprobe", p, kw.pop("binary", binary), **kw)


def _uprobe_multi(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    kw.setdefault("retprobe", pfx.startswith("uretprobe"))
    if args or ("binary" in kw and not target):
        return _call("attach_uprobe_multi", p, *args, **kw)
    binary, pattern = _split_uprobe(_need(p, target, "binary:pattern")[0])
    if "symbols" not in kw and "offsets" not in kw:
        kw["symbols"] = pattern  # binary= only swaps the file, as for uprobes
    return _call("attach_uprobe_multi", p, kw.pop("binary", binary), **kw)


def _split_uprobe(target: str) -> tuple[str, str]:
    binary, sep, pattern = target.rpartition(":")
    if not sep:
        raise ValueError(f"uprobe.multi target {target!r}: expected '<binary>:<pattern>'")
    return binary, pattern


def _usdt(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if args or ("binary" in kw and not target):
        return _call("attach_usdt", p, *args, **kw)
    parts = _need(p, target, "binary:provider:name")[0].rsplit(":", 2)
    if len(parts) != 3:
        raise ValueError(f"usdt target {target!r}: expected '<binary>:<provider>:<name>'")
    binary, provider, name = parts
    # binary= only swaps the file: the section still names the probe
    return _call("attach_usdt", p, kw.pop("binary", binary), kw.pop("provider", provider),
                 kw.pop("name", name), **kw)


def _perf_event(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if "frequency" not in kw and "period" not in kw:
        raise TypeError("perf_event programs need frequency= or period= (and optionally an event name)")
    return _call("attach_perf_event", p, *args, **kw)


def _given_target(keyword: str, function: str, hint: str) -> _Runner:
    """A runner for hooks whose target comes from the caller: the first argument or `keyword` (`hint` is the
    TypeError without either; an empty `hint` lets the function decide, e.g. netns None = the current one)."""

    def run(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
        where = args[0] if args else kw.pop(keyword, None)
        if where is None and hint:
            raise TypeError(hint)
        return _call(function, p, where, *args[1:], **kw)

    return run


_xdp = _given_target("iface", "attach_xdp", "xdp programs need an interface: attach(iface='eth0')")
_tc_iface = _given_target("iface", "attach_tc",
                          "tc programs need an interface: attach(iface='eth0', direction='ingress')")
_cgroup = _given_target("cgroup", "attach_cgroup",
                        "cgroup programs need a cgroup: attach(cgroup='/sys/fs/cgroup/...')")
_lsm_cgroup = _given_target("cgroup", "attach_lsm_cgroup", "lsm_cgroup programs need cgroup= (a cgroup v2 directory)")
_socket = _given_target("sock", "attach_socket", "socket filters need a socket: attach(sock=s)")
_netns = _given_target("netns", "attach_netns", "")
_sockmap = _given_target("map", "attach_sockmap", "sk_skb/sk_msg programs need the sockmap: attach(map=m)")


def _tc(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if pfx.endswith(("/ingress", "/egress")) and len(args) < 2:
        kw.setdefault("direction", pfx.rpartition("/")[2])
    return _tc_iface(p, pfx, target, args, kw)


def _need(p: Program, target: str, what: str) -> tuple[str]:
    if not target:
        sec = p.section
        raise TypeError(f"program {p.name!r} (section {sec!r}) names no {what} to attach to: pass it as an "
                        "argument")
    return (target,)


# ---- the table -----------------------------------------------------------------------------------------------


class _Hook:
    """One hook family: its runner, the keywords it takes, and which of them attach_all needs."""

    __slots__ = ("accepts", "name", "needs", "run")

    def __init__(self, name: str, run: _Runner, accepts: str = "", needs: str = "") -> None:
        self.name = name  # what hook_of() reports
        self.run = run
        self.accepts = frozenset(accepts.split())  # keywords this hook takes
        self.needs = frozenset(needs.split())  # keywords of which attach_all needs one without a section target


_hook = _Hook
_TRACEPOINT = _hook("tracepoint", _tracepoint, "cookie")
_RAW_TP = _hook("raw_tracepoint", _raw_tp, "cookie")
_TRACING = _hook("tracing", _tracing, "cookie")
_FREPLACE = _hook("tracing", _freplace, "target function", "target")
_LSM_CGROUP = _hook("lsm_cgroup", _lsm_cgroup, "cgroup", "cgroup")
_ITER = _hook("iter", _iter, "map cgroup order tid pid pid_fd")
_KPROBE = _hook("kprobe", _kprobe, "cookie maxactive legacy retprobe")
_KPROBE_MULTI = _hook("kprobe_multi", _kprobe_multi, "symbols addresses cookies retprobe")
_KSYSCALL = _hook("ksyscall", _ksyscall, "cookie retprobe")
_UPROBE = _hook("uprobe", _uprobe, "binary symbol offset pid retprobe cookie ref_ctr_offset legacy", "binary")
_UPROBE_MULTI = _hook("uprobe", _uprobe_multi, "binary symbols offsets pid retprobe cookies ref_ctr_offsets",
                      "binary")
_USDT = _hook("usdt", _usdt, "binary provider name pid cookie legacy", "binary")
_PERF_EVENT = _hook("perf_event", _perf_event, "event frequency period pid cpus cookie", "frequency period")
_XDP = _hook("xdp", _xdp, "iface mode flags netns netlink", "iface")
_TC = _hook("tc", _tc, "iface direction legacy netns priority handle", "iface")
_CGROUP = _hook("cgroup", _cgroup, "cgroup attach_type flags legacy", "cgroup")
_SOCKET = _hook("socket", _socket, "sock", "sock")
_NETNS = _hook("netns", _netns, "netns", "netns")
_SOCKMAP = _hook("sockmap", _sockmap, "map attach_type legacy", "map")

# Section prefix (libbpf's, without "+" or trailing "/") -> hook. Fixed names like "tc/ingress" are listed whole.
_BY_PREFIX: dict[str, _Hook] = {
    "tracepoint": _TRACEPOINT, "tp": _TRACEPOINT,
    "raw_tracepoint": _RAW_TP, "raw_tp": _RAW_TP, "raw_tracepoint.w": _RAW_TP, "raw_tp.w": _RAW_TP,
    "tp_btf": _TRACING, "fentry": _TRACING, "fexit": _TRACING, "fmod_ret": _TRACING,
    "fentry.s": _TRACING, "fexit.s": _TRACING, "fmod_ret.s": _TRACING, "lsm": _TRACING, "lsm.s": _TRACING,
    "freplace": _FREPLACE, "lsm_cgroup": _LSM_CGROUP,
    "iter": _ITER, "iter.s": _ITER,
    "kprobe": _KPROBE, "kretprobe": _KPROBE,
    "kprobe.multi": _KPROBE_MULTI, "kretprobe.multi": _KPROBE_MULTI,
    "ksyscall": _KSYSCALL, "kretsyscall": _KSYSCALL,
    "uprobe": _UPROBE, "uretprobe": _UPROBE, "uprobe.s": _UPROBE, "uretprobe.s": _UPROBE,
    "uprobe.multi": _UPROBE_MULTI, "uretprobe.multi": _UPROBE_MULTI, "uprobe.multi.s": _UPROBE_MULTI,
    "uretprobe.multi.s": _UPROBE_MULTI,
    "usdt": _USDT, "usdt.s": _USDT,
    "perf_event": _PERF_EVENT,
    "xdp": _XDP, "xdp.frags": _XDP,
    "tc/ingress": _TC, "tc/egress": _TC, "tcx/ingress": _TC, "tcx/egress": _TC, "tc": _TC, "classifier": _TC,
    "socket": _SOCKET,
    "sk_lookup": _NETNS, "flow_dissector": _NETNS,
    "sk_skb/stream_parser": _SOCKMAP, "sk_skb/stream_verdict": _SOCKMAP, "sk_skb": _SOCKMAP, "sk_msg": _SOCKMAP,
    "sockops": _CGROUP,
}

# Programs without a section: by program type.
_BY_TYPE: dict[int, tuple[_Hook, str]] = {
    T.BPF_PROG_TYPE_TRACEPOINT: (_TRACEPOINT, "tracepoint"),
    T.BPF_PROG_TYPE_RAW_TRACEPOINT: (_RAW_TP, "raw_tp"),
    T.BPF_PROG_TYPE_RAW_TRACEPOINT_WRITABLE: (_RAW_TP, "raw_tp.w"),
    T.BPF_PROG_TYPE_TRACING: (_TRACING, "tracing"),
    T.BPF_PROG_TYPE_LSM: (_TRACING, "lsm"),
    T.BPF_PROG_TYPE_EXT: (_FREPLACE, "freplace"),
    T.BPF_PROG_TYPE_KPROBE: (_KPROBE, "kprobe"),
    T.BPF_PROG_TYPE_PERF_EVENT: (_PERF_EVENT, "perf_event"),
    T.BPF_PROG_TYPE_XDP: (_XDP, "xdp"),
    T.BPF_PROG_TYPE_SCHED_CLS: (_TC, "tc"),
    T.BPF_PROG_TYPE_SOCKET_FILTER: (_SOCKET, "socket"),
    T.BPF_PROG_TYPE_SK_LOOKUP: (_NETNS, "sk_lookup"),
    T.BPF_PROG_TYPE_FLOW_DISSECTOR: (_NETNS, "flow_dissector"),
    T.BPF_PROG_TYPE_SK_SKB: (_SOCKMAP, "sk_skb"),
    T.BPF_PROG_TYPE_SK_MSG: (_SOCKMAP, "sk_msg"),
    T.BPF_PROG_TYPE_CGROUP_SKB: (_CGROUP, "cgroup_skb"),
    T.BPF_PROG_TYPE_CGROUP_SOCK: (_CGROUP, "cgroup"),
    T.BPF_PROG_TYPE_CGROUP_SOCK_ADDR: (_CGROUP, "cgroup"),
    T.BPF_PROG_TYPE_CGROUP_SOCKOPT: (_CGROUP, "cgroup"),
    T.BPF_PROG_TYPE_CGROUP_SYSCTL: (_CGROUP, "cgroup"),
    T.BPF_PROG_TYPE_CGROUP_DEVICE: (_CGROUP, "cgroup"),
    T.BPF_PROG_TYPE_SOCK_OPS: (_CGROUP, "sockops"),
}


def hook_of(program: Program) -> tuple[str, str, str]:
    """(hook, section prefix, section target) for a program, e.g. ("kprobe", "kretprobe", "do_unlinkat").
    Raises BPFError for programs that are not attached through a link (struct_ops, syscall, devmap...)."""
    hook, pfx, target = _lookup(program)
    return hook.name, pfx, target


def _lookup(program: Program) -> tuple[_Hook, str, str]:
    section = program.section
    if section:
        found = program.section_split
        if found is None:
            from pybpf.elf.sections import section_split

            found = section_split(section)
        if found is not None:
            pfx, target = found
            hook = _BY_PREFIX.get(pfx)
            if hook is None and pfx.startswith("cgroup"):
                hook = _CGROUP
            if hook is not None:
                return hook, pfx, target
            raise BPFError(f"program {program.name!r} (section {section!r}) is not attached through a link: "
                           f"{_unattachable_reason(pfx)}", _errno.EINVAL)
    by_type = _BY_TYPE.get(program.prog_type)
    if by_type is None:
        raise BPFError(f"program {program.name!r} ({prog_type_name(program)}, section {section!r}) has no known "
                       "hook to attach to", _errno.EINVAL)
    hook, pfx = by_type
    kind, attach_type = program.prog_type, program.expected_attach_type
    if kind == T.BPF_PROG_TYPE_TRACING and attach_type == T.BPF_TRACE_ITER:
        hook, pfx = _ITER, "iter"
    elif kind == T.BPF_PROG_TYPE_KPROBE and attach_type == T.BPF_TRACE_KPROBE_MULTI:
        hook, pfx = _KPROBE_MULTI, "kprobe.multi"
    elif kind == T.BPF_PROG_TYPE_KPROBE and attach_type == T.BPF_TRACE_UPROBE_MULTI:
        hook, pfx = _UPROBE_MULTI, "uprobe.multi"
    return hook, pfx, ""


def _unattachable_reason(pfx: str) -> str:
    if pfx.startswith("struct_ops"):
        return "struct_ops programs are attached by registering their struct_ops map"
    if pfx.startswith(("xdp/", "xdp.frags/")):
        return "devmap/cpumap programs run from their map entries"
    if pfx == "syscall":
        return "syscall programs are run with Program.test_run()"
    return "pybpf has no attach function for this hook yet"


def attach(program: Program, *args: Any, **kwargs: Any) -> Link:
    """Attach `program` to the hook its section names (see the module docs)."""
    hook, pfx, target = _lookup(program)
    unknown = set(kwargs) - hook.accepts
    if unknown:
        raise TypeError(f"{hook.name} programs do not take {', '.join(sorted(unknown))}; they take "
                        f"{', '.join(sorted(hook.accepts)) or 'no keywords'}")
    return hook.run(program, pfx, target, args, dict(kwargs))


def _attachable(hook: _Hook, target: str, program: Program, targets: dict[str, Any]) -> bool:
    if any(k in targets for k in hook.needs):
        return True
    if hook is _TRACING:
        return True  # the target was given at load time
    if hook is _FREPLACE:
        # the program it replaces: given at load time or as target=
        return program.spec is not None and program.spec.attach_prog_fd is not None
    if hook is _ITER:
        return target not in _MAP_ITERS or "map" in targets
    if hook is _USDT:
        return target.count(":") >= 2
    if hook is _UPROBE or hook is _UPROBE_MULTI:
        return ":" in target
    return not hook.needs and bool(target)


def _keywords_for(hook: _Hook, target: str, targets: dict[str, Any]) -> dict[str, Any]:
    """The part of attach_all's `targets` that `hook` takes (for iterators: the part their kind takes)."""
    accepts = hook.accepts
    if hook is _ITER:
        if target not in _MAP_ITERS:
            accepts = accepts - {"map"}
        if target != "cgroup":
            accepts = accepts - {"cgroup", "order"}
    return {k: v for k, v in targets.items() if k in accepts}


def auto_attachable(program: Program) -> bool:
    """Whether `attach(program)` can work without arguments (the section names the whole target)."""
    try:
        hook, _, target = _lookup(program)
    except BPFError:
        return False
    return _attachable(hook, target, program, {})


def attach_all(programs: Iterable[Program], **targets: Any) -> tuple[list[Link], dict[str, Exception]]:
    """Attach every program that can be: auto-attachable ones, and those whose target is in `targets`
    (``iface=``, ``cgroup=``, ``sock=``, ``netns=``, ``map=``, ``binary=``, ``pid=``, ``frequency=``, ...;
    each hook gets only the keywords it takes). Programs that need a target nobody gave are skipped.

    Returns the links and, by program name, the exceptions of those that failed; the others stay
    attached (the caller decides whether to detach them: `detach_all(links)`).
    """
    links: list[Link] = []
    failures: dict[str, Exception] = {}
    for program in programs:
        try:
            hook, pfx, target = _lookup(program)
        except BPFError:
            continue  # struct_ops, syscall, devmap programs: nothing to attach
        if not _attachable(hook, target, program, targets):
            continue
        try:
            links.append(hook.run(program, pfx, target, (), _keywords_for(hook, target, targets)))
        except Exception as exc:  # reported per program
            failures[program.name] = exc
    return links, failures
