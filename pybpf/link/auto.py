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
import importlib

from pybpf._sys import types as T
from pybpf.errors import BPFError
from pybpf.link.base import Link

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


def _call(module: str, function: str, *args: Any, **kwargs: Any) -> Link:
    """Call pybpf.link.<module>.<function>, importing the hook's module only when it is used."""
    mod = importlib.import_module(f"pybpf.link.{module}")
    try:
        fn = getattr(mod, function)
    except AttributeError:
        raise BPFError(f"pybpf.link.{module} has no {function}() yet", _errno.ENOSYS) from None
    link: Link = fn(*args, **kwargs)
    return link


# ---- per-hook runners: (program, section prefix, section target, args, kwargs) -> Link -----------------------


def _tracepoint(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    return _call("tracepoint", "attach_tracepoint", p, *(args or _need(p, target, "category/name")), **kw)


def _raw_tp(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    return _call("raw_tracepoint", "attach_raw_tracepoint", p, *(args or _need(p, target, "name")), **kw)


def _tracing(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if pfx == "freplace" and (args or "target" in kw):
        if args:
            kw = {"target": args[0], **({"function": args[1]} if len(args) > 1 else {}), **kw}
        return _call("tracing", "attach_freplace", p, **kw)
    if args:
        raise TypeError(f"{pfx} programs attach to the target they were loaded for; no arguments")
    return _call("tracing", "attach_tracing", p, **kw)


def _lsm_cgroup(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    cgroup = args[0] if args else kw.pop("cgroup", None)
    if cgroup is None:
        raise TypeError("lsm_cgroup programs need cgroup= (a cgroup v2 directory)")
    return _call("tracing", "attach_lsm_cgroup", p, cgroup, **kw)


_MAP_ITERS = frozenset({"bpf_map_elem", "bpf_sk_storage_map", "sockmap"})


def _iter(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if args:
        raise TypeError("iterators take keyword targets only: map=, cgroup=, tid=, pid=, pid_fd=")
    if kw.pop("_lenient", False):  # attach_all: drop targets meant for other kinds of iterator
        if target not in _MAP_ITERS:
            kw.pop("map", None)
        if target != "cgroup":
            kw.pop("cgroup", None)
            kw.pop("order", None)
    return _call("iter", "attach_iter", p, **kw)


def _kprobe(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    from pybpf.link.kprobe import parse_kprobe_target

    retprobe = pfx == "kretprobe"
    kw.setdefault("retprobe", retprobe)
    if args:
        return _call("kprobe", "attach_kprobe", p, *args, **kw)
    func, offset = parse_kprobe_target(_need(p, target, "function")[0])
    return _call("kprobe", "attach_kprobe", p, func, offset, **kw)


def _kprobe_multi(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    kw.setdefault("retprobe", pfx == "kretprobe.multi")
    if args or "symbols" in kw or "addresses" in kw:
        return _call("kprobe", "attach_kprobe_multi", p, *args, **kw)
    return _call("kprobe", "attach_kprobe_multi", p, _need(p, target, "pattern")[0], **kw)


def _ksyscall(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    kw.setdefault("retprobe", pfx == "kretsyscall")
    return _call("ksyscall", "attach_ksyscall", p, *(args or _need(p, target, "syscall")), **kw)


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
    retprobe = pfx.startswith("uretprobe")
    kw.setdefault("retprobe", retprobe)
    if ".multi" in pfx:
        return _call("uprobe", "attach_uprobe_multi", p, *(args or _split_uprobe(target)[:2]), **kw)
    if args or ("binary" in kw and not target):
        return _call("uprobe", "attach_uprobe", p, *args, **kw)
    binary, symbol, offset = parse_uprobe_target(_need(p, target, "binary:function")[0])
    if "symbol" not in kw and "offset" not in kw:
        # binary= only swaps the file: the section still says where in it
        kw["symbol"], kw["offset"] = symbol, offset
    return _call("uprobe", "attach_uprobe", p, kw.pop("binary", binary), **kw)


def _split_uprobe(target: str) -> tuple[str, str]:
    binary, sep, pattern = target.rpartition(":")
    if not sep:
        raise ValueError(f"uprobe.multi target {target!r}: expected '<binary>:<pattern>'")
    return binary, pattern


def _usdt(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if args or ("binary" in kw and not target):
        return _call("usdt", "attach_usdt", p, *args, **kw)
    parts = _need(p, target, "binary:provider:name")[0].rsplit(":", 2)
    if len(parts) != 3:
        raise ValueError(f"usdt target {target!r}: expected '<binary>:<provider>:<name>'")
    binary, provider, name = parts
    # binary= only swaps the file: the section still names the probe
    return _call("usdt", "attach_usdt", p, kw.pop("binary", binary), kw.pop("provider", provider),
                 kw.pop("name", name), **kw)


def _perf_event(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    if "frequency" not in kw and "period" not in kw:
        raise TypeError("perf_event programs need frequency= or period= (and optionally an event name)")
    return _call("perf_event", "attach_perf_event", p, *args, **kw)


def _xdp(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    iface = args[0] if args else kw.pop("iface", None)
    if iface is None:
        raise TypeError("xdp programs need an interface: attach(iface='eth0')")
    return _call("xdp", "attach_xdp", p, iface, *args[1:], **kw)


def _tc(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    iface = args[0] if args else kw.pop("iface", None)
    if iface is None:
        raise TypeError("tc programs need an interface: attach(iface='eth0', direction='ingress')")
    if pfx.endswith(("/ingress", "/egress")):
        kw.setdefault("direction", pfx.rpartition("/")[2])
    return _call("tc", "attach_tc", p, iface, *args[1:], **kw)


def _cgroup(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    cgroup = args[0] if args else kw.pop("cgroup", None)
    if cgroup is None:
        raise TypeError("cgroup programs need a cgroup: attach(cgroup='/sys/fs/cgroup/...')")
    return _call("cgroup", "attach_cgroup", p, cgroup, *args[1:], **kw)


def _socket(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    sock = args[0] if args else kw.pop("sock", None)
    if sock is None:
        raise TypeError("socket filters need a socket: attach(sock=s)")
    return _call("socket", "attach_socket", p, sock, **kw)


def _netns(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    netns = args[0] if args else kw.pop("netns", None)
    return _call("netns", "attach_netns", p, netns, **kw)


def _sockmap(p: Program, pfx: str, target: str, args: _Args, kw: _Kwargs) -> Link:
    target_map = args[0] if args else kw.pop("map", None)
    if target_map is None:
        raise TypeError("sk_skb/sk_msg programs need the sockmap: attach(map=m)")
    return _call("sockmap", "attach_sockmap", p, target_map, **kw)


def _need(p: Program, target: str, what: str) -> tuple[str]:
    if not target:
        sec = p.section
        raise TypeError(f"program {p.name!r} (section {sec!r}) names no {what} to attach to: pass it as an "
                        "argument")
    return (target,)


# ---- the table -----------------------------------------------------------------------------------------------


class _Hook:
    """One hook family: its runner, the keywords it takes, and which of them attach_all needs."""

    __slots__ = ("accepts", "name", "needs", "run", "target_in_section")

    def __init__(self, name: str, run: _Runner, accepts: str = "", needs: str = "",
                 target_in_section: bool = True) -> None:
        self.name = name
        self.run = run
        self.accepts = frozenset(accepts.split())  # keywords this hook takes
        self.needs = frozenset(needs.split())  # keywords of which attach_all needs one without a section target
        self.target_in_section = target_in_section  # whether a section target is enough to attach


_hook = _Hook
_TRACEPOINT = _hook("tracepoint", _tracepoint, "cookie")
_RAW_TP = _hook("raw_tracepoint", _raw_tp, "cookie")
_TRACING = _hook("tracing", _tracing, "cookie target function", "target")
_LSM_CGROUP = _hook("lsm_cgroup", _lsm_cgroup, "cgroup", "cgroup", False)
_ITER = _hook("iter", _iter, "map cgroup order tid pid pid_fd")
_KPROBE = _hook("kprobe", _kprobe, "cookie maxactive legacy retprobe")
_KPROBE_MULTI = _hook("kprobe_multi", _kprobe_multi, "symbols addresses cookies retprobe")
_KSYSCALL = _hook("ksyscall", _ksyscall, "cookie retprobe")
_UPROBE = _hook("uprobe", _uprobe, "binary symbol symbols offset offsets pid retprobe cookie cookies ref_ctr_offset "
                "ref_ctr_offsets legacy", "binary")
_USDT = _hook("usdt", _usdt, "binary provider name pid cookie legacy", "binary")
_PERF_EVENT = _hook("perf_event", _perf_event, "event frequency period pid cpus cookie", "frequency period", False)
_XDP = _hook("xdp", _xdp, "iface mode flags netns netlink", "iface", False)
_TC = _hook("tc", _tc, "iface direction legacy netns priority handle", "iface", False)
_CGROUP = _hook("cgroup", _cgroup, "cgroup attach_type flags legacy", "cgroup", False)
_SOCKET = _hook("socket", _socket, "sock", "sock", False)
_NETNS = _hook("netns", _netns, "netns", "netns", False)
_SOCKMAP = _hook("sockmap", _sockmap, "map attach_type legacy", "map", False)

# Section prefix (libbpf's, without "+" or trailing "/") -> hook. Fixed names like "tc/ingress" are listed whole.
_BY_PREFIX: dict[str, _Hook] = {
    "tracepoint": _TRACEPOINT, "tp": _TRACEPOINT,
    "raw_tracepoint": _RAW_TP, "raw_tp": _RAW_TP, "raw_tracepoint.w": _RAW_TP, "raw_tp.w": _RAW_TP,
    "tp_btf": _TRACING, "fentry": _TRACING, "fexit": _TRACING, "fmod_ret": _TRACING,
    "fentry.s": _TRACING, "fexit.s": _TRACING, "fmod_ret.s": _TRACING, "lsm": _TRACING, "lsm.s": _TRACING,
    "freplace": _TRACING, "lsm_cgroup": _LSM_CGROUP,
    "iter": _ITER, "iter.s": _ITER,
    "kprobe": _KPROBE, "kretprobe": _KPROBE,
    "kprobe.multi": _KPROBE_MULTI, "kretprobe.multi": _KPROBE_MULTI,
    "ksyscall": _KSYSCALL, "kretsyscall": _KSYSCALL,
    "uprobe": _UPROBE, "uretprobe": _UPROBE, "uprobe.s": _UPROBE, "uretprobe.s": _UPROBE,
    "uprobe.multi": _UPROBE, "uretprobe.multi": _UPROBE, "uprobe.multi.s": _UPROBE, "uretprobe.multi.s": _UPROBE,
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
    T.ProgType.TRACEPOINT: (_TRACEPOINT, "tracepoint"),
    T.ProgType.RAW_TRACEPOINT: (_RAW_TP, "raw_tp"),
    T.ProgType.RAW_TRACEPOINT_WRITABLE: (_RAW_TP, "raw_tp.w"),
    T.ProgType.TRACING: (_TRACING, "tracing"),
    T.ProgType.LSM: (_TRACING, "lsm"),
    T.ProgType.EXT: (_TRACING, "freplace"),
    T.ProgType.KPROBE: (_KPROBE, "kprobe"),
    T.ProgType.PERF_EVENT: (_PERF_EVENT, "perf_event"),
    T.ProgType.XDP: (_XDP, "xdp"),
    T.ProgType.SCHED_CLS: (_TC, "tc"),
    T.ProgType.SOCKET_FILTER: (_SOCKET, "socket"),
    T.ProgType.SK_LOOKUP: (_NETNS, "sk_lookup"),
    T.ProgType.FLOW_DISSECTOR: (_NETNS, "flow_dissector"),
    T.ProgType.SK_SKB: (_SOCKMAP, "sk_skb"),
    T.ProgType.SK_MSG: (_SOCKMAP, "sk_msg"),
    T.ProgType.CGROUP_SKB: (_CGROUP, "cgroup_skb"),
    T.ProgType.CGROUP_SOCK: (_CGROUP, "cgroup"),
    T.ProgType.CGROUP_SOCK_ADDR: (_CGROUP, "cgroup"),
    T.ProgType.CGROUP_SOCKOPT: (_CGROUP, "cgroup"),
    T.ProgType.CGROUP_SYSCTL: (_CGROUP, "cgroup"),
    T.ProgType.CGROUP_DEVICE: (_CGROUP, "cgroup"),
    T.ProgType.SOCK_OPS: (_CGROUP, "sockops"),
}


def _prefix_and_target(section: str) -> tuple[str, str] | None:
    from pybpf.elf.sections import attach_target, find_section_def

    sec_def = find_section_def(section)
    if sec_def is None:
        return None
    pfx = sec_def.prefix.rstrip("+")
    pfx = pfx[:-1] if pfx.endswith("/") else pfx
    return pfx, attach_target(section, sec_def)


def hook_of(program: Program) -> tuple[str, str, str]:
    """(hook, section prefix, section target) for a program, e.g. ("kprobe", "kretprobe", "do_unlinkat").
    Raises BPFError for programs that are not attached through a link (struct_ops, syscall, devmap...)."""
    hook, pfx, target = _lookup(program)
    return hook.name, pfx, target


def _lookup(program: Program) -> tuple[_Hook, str, str]:
    section = program.section
    if section:
        found = _prefix_and_target(section)
        if found is not None:
            pfx, target = found
            hook = _BY_PREFIX.get(pfx)
            if hook is None and pfx.startswith(("cgroup", "cgroup_skb")):
                hook = _CGROUP
            if hook is not None:
                return hook, pfx, target
            raise BPFError(f"program {program.name!r} (section {section!r}) is not attached through a link: "
                           f"{_unattachable_reason(pfx)}", _errno.EINVAL)
    by_type = _BY_TYPE.get(int(program.type))
    if by_type is None:
        kind = getattr(program.type, "name", str(program.type)).lower()
        raise BPFError(f"program {program.name!r} ({kind}, section {section!r}) has no known hook to attach to",
                       _errno.EINVAL)
    hook, pfx = by_type
    if program.type == T.ProgType.TRACING and program.attach_type == T.AttachType.TRACE_ITER:
        hook, pfx = _ITER, "iter"
    elif program.type == T.ProgType.KPROBE and program.attach_type == T.AttachType.TRACE_KPROBE_MULTI:
        hook, pfx = _KPROBE_MULTI, "kprobe.multi"
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


def _attachable(hook: _Hook, pfx: str, target: str, program: Program, targets: dict[str, Any]) -> bool:
    if any(k in targets for k in hook.needs):
        return True
    if hook is _TRACING:
        # freplace needs the program it replaces: given at load time or as target=.
        return pfx != "freplace" or (program.spec is not None and program.spec.attach_prog_fd is not None)
    if hook is _ITER:
        return target not in _MAP_ITERS or "map" in targets
    if hook is _USDT:
        return target.count(":") >= 2
    if hook is _UPROBE:
        return ":" in target
    return hook.target_in_section and bool(target)


def auto_attachable(program: Program) -> bool:
    """Whether `attach(program)` can work without arguments (the section names the whole target)."""
    try:
        hook, pfx, target = _lookup(program)
    except BPFError:
        return False
    return _attachable(hook, pfx, target, program, {})


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
        if not _attachable(hook, pfx, target, program, targets):
            continue
        kwargs = {k: v for k, v in targets.items() if k in hook.accepts}
        if hook is _ITER:
            kwargs["_lenient"] = True
        try:
            links.append(hook.run(program, pfx, target, (), kwargs))
        except Exception as exc:  # reported per program
            failures[program.name] = exc
    return links, failures
