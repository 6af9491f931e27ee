"""Discovery of attach points, spelled as `bpftrace -l` spells them.

- tracepoints (`tracepoint:syscalls:sys_enter_openat`) and their fields from tracefs `format` files;
- raw tracepoints (`rawtracepoint:sys_enter`, same event names);
- kernel functions for kprobes (`kprobe:vfs_read`) and fentry (`kfunc:vmlinux:vfs_read`), with BTF signatures;
- uprobe symbols (`uprobe:/bin/bash:readline`) and USDT probes (`usdt:/bin/x:provider:name`) of a binary or of
  every binary a running process maps.

Patterns are shell globs, with or without the provider: `syscalls:*open*`, `tracepoint:syscalls:sys_enter_open*`,
`kprobe:vfs_*`, `t:sched:*` (bpftrace's one-letter aliases work).
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from pybpf.errors import ObjectError

__all__ = [
    "PROVIDERS", "Probe", "TracepointField", "UsdtProbe", "describe", "kernel_functions", "kfunc_signature",
    "list_probes", "process_binaries", "raw_tracepoints", "split_pattern", "tracepoint_fields", "tracepoints",
    "uprobe_symbols", "usdt_probes",
]

# bpftrace's provider names and aliases
PROVIDERS: dict[str, str] = {
    "tracepoint": "tracepoint", "t": "tracepoint",
    "rawtracepoint": "rawtracepoint", "rt": "rawtracepoint",
    "kprobe": "kprobe", "k": "kprobe", "kretprobe": "kretprobe", "kr": "kretprobe",
    "kfunc": "kfunc", "f": "kfunc", "fentry": "kfunc", "kretfunc": "kretfunc", "fr": "kretfunc",
    "fexit": "kretfunc",
    "uprobe": "uprobe", "u": "uprobe", "uretprobe": "uretprobe", "ur": "uretprobe",
    "usdt": "usdt", "U": "usdt",
}
# listed when a pattern names no provider (bpftrace lists entries, not return variants)
_DEFAULT_KERNEL = ("tracepoint", "rawtracepoint", "kprobe", "kfunc")
_DEFAULT_USER = ("uprobe", "usdt")


@dataclass(frozen=True, order=True)
class Probe:
    """One attach point. `target` is the tracepoint category, "vmlinux"/module for kfuncs, the binary
    path for uprobes and USDT, "" for kprobes and raw tracepoints."""

    provider: str
    target: str
    name: str

    def __str__(self) -> str:
        if self.target:
            return f"{self.provider}:{self.target}:{self.name}"
        return f"{self.provider}:{self.name}"


@dataclass(frozen=True)
class TracepointField:
    """One field of a tracepoint's record, from its tracefs `format` file."""

    type: str  # C type as written there: "const char *", "__data_loc char[]"
    name: str  # with array brackets: "comm[16]"
    offset: int
    size: int
    signed: bool

    def __str__(self) -> str:
        return f"{self.type} {self.name}"


@dataclass(frozen=True)
class UsdtProbe:
    """A USDT probe of a binary: one entry per provider:name, with every call site's address."""

    binary: str
    provider: str
    name: str
    addresses: tuple[int, ...]  # ELF virtual addresses of the call sites
    semaphore: int  # virtual address, 0 when the probe has none
    args: tuple[str, ...]  # argument specs per call site ("-4@%eax 8@%rdx")


# ---- tracepoints --------------------------------------------------------------------------------------------


def _tracefs() -> str:
    from pybpf._sys.mounts import ensure_tracefs

    return ensure_tracefs()


def tracepoints() -> list[tuple[str, str]]:
    """Every tracepoint as (category, name), sorted. Reads `available_events`, or walks events/."""
    root = _tracefs()
    found: set[tuple[str, str]] = set()
    try:
        with open(os.path.join(root, "available_events")) as f:
            for line in f:
                category, sep, name = line.strip().partition(":")
                if sep:
                    found.add((category, name))
    except OSError:
        events = os.path.join(root, "events")
        for category in os.listdir(events):
            sub = os.path.join(events, category)
            if not os.path.isdir(sub):
                continue
            for name in os.listdir(sub):
                if os.path.isdir(os.path.join(sub, name)):
                    found.add((category, name))
    return sorted(found)


def raw_tracepoints() -> list[str]:
    """Raw tracepoint names: the tracepoint names without category (syscalls:* are not raw tracepoints:
    they are all `sys_enter`/`sys_exit`)."""
    names = {name for category, name in tracepoints() if category != "syscalls"}
    if any(category == "raw_syscalls" for category, _ in tracepoints()):
        names |= {"sys_enter", "sys_exit"}
    return sorted(names)


_FIELD_RE = re.compile(r"field:(?P<decl>[^;]*);\s*offset:(?P<off>\d+);\s*size:(?P<size>\d+);\s*(?:signed:(?P<signed>-?\d+);)?")
_DECL_NAME_RE = re.compile(r"([A-Za-z_]\w*)\s*((?:\[[^\]]*\])*)\s*$")


def tracepoint_fields(category: str, name: str, *, common: bool = False) -> list[TracepointField]:
    """The fields of a tracepoint's record (without the `common_*` header unless `common`)."""
    path = os.path.join(_tracefs(), "events", category, name, "format")
    try:
        with open(path) as f:
            text = f.read()
    except FileNotFoundError:
        raise ObjectError(f"no tracepoint {category}:{name} (see `pybpf probes 'tracepoint:{category}:*'`)",
                          path=path) from None
    out: list[TracepointField] = []
    for m in _FIELD_RE.finditer(text):
        decl = m.group("decl").strip()
        dm = _DECL_NAME_RE.search(decl)
        if dm is None:
            continue
        field_name = dm.group(1) + dm.group(2)
        if not common and field_name.startswith("common_"):
            continue
        out.append(TracepointField(decl[: dm.start()].strip(), field_name, int(m.group("off")),
                                   int(m.group("size")), m.group("signed") == "1"))
    return out


# ---- kernel functions -------------------------------------------------------------------------------------


def kernel_functions(source: str = "auto") -> list[tuple[str, str]]:
    """Traceable kernel functions as (module, name), module "vmlinux" for the kernel itself.

    `source`: "ftrace" reads tracefs `available_filter_functions` (what kprobes/fentry accept), "btf" lists
    FUNCs of the kernel's BTF; "auto" tries ftrace and falls back to BTF (the file is unreadable when the
    kernel has no dynamic ftrace)."""
    if source in ("auto", "ftrace"):
        try:
            with open(os.path.join(_tracefs(), "available_filter_functions")) as f:
                out: set[tuple[str, str]] = set()
                for line in f:
                    parts = line.split()
                    if not parts or parts[0].startswith("__ftrace_invalid_address__"):
                        continue
                    module = parts[1].strip("[]") if len(parts) > 1 else "vmlinux"
                    out.add((module, parts[0]))
                return sorted(out)
        except OSError:
            if source == "ftrace":
                raise
    return [("vmlinux", name) for name in _btf_function_names()]


def _btf_function_names() -> list[str]:
    from pybpf.btf import Kind, kernel_spec

    spec = kernel_spec()
    raw = spec.raw_kind_and_name
    names: set[str] = set()
    for type_id in range(spec.first_id, spec.next_id):
        kind, name_off = raw(type_id)
        if kind == Kind.FUNC:
            names.add(spec.string(name_off))
    return sorted(names)


def c_type_name(t: object, name: str = "") -> str:
    """A BTF type as C spells it in bpftrace's listings (`const char *`, `struct file *`)."""
    from pybpf import btf

    assert isinstance(t, btf.Type)
    prefix = f" {name}" if name else ""
    if isinstance(t, btf.Void):
        return "void" + prefix
    if isinstance(t, btf.Pointer):
        target = t.type
        if isinstance(target, btf.FuncProto):
            params = ", ".join(c_type_name(p.type) if p.type_id else "..." for p in target.params)
            return f"{c_type_name(target.return_type)} (*{name})({params})"
        return c_type_name(target) + " *" + prefix
    if isinstance(t, btf.Const):
        return "const " + c_type_name(t.type, name)
    if isinstance(t, btf.Volatile):
        return "volatile " + c_type_name(t.type, name)
    if isinstance(t, btf.Qualifier):  # restrict, type tags: not part of what bpftrace prints
        return c_type_name(t.type, name)
    if isinstance(t, btf.Array):
        return f"{c_type_name(t.elem)}{prefix}[{t.nelems}]"
    if isinstance(t, btf.Struct):
        return f"struct {t.name}" + prefix
    if isinstance(t, btf.Union):
        return f"union {t.name}" + prefix
    if isinstance(t, btf.Enum):
        return f"enum {t.name}" + prefix
    if isinstance(t, btf.Fwd):
        return ("union " if t.is_union else "struct ") + t.name + prefix
    return (t.name or "?") + prefix


def kfunc_signature(name: str, module: str = "vmlinux") -> list[str]:
    """The arguments of a kernel function from its BTF FUNC_PROTO, one "type name" each, then
    "<return type> retval" as `bpftrace -lv kfunc:...` prints them."""
    from pybpf import btf

    spec = btf.kernel_spec() if module == "vmlinux" else btf.module_spec(module)
    funcs = [t for t in spec.types_by_name(name, btf.Func) if isinstance(t, btf.Func)]
    if not funcs:
        raise ObjectError(f"kernel function {name!r} has no BTF in {module} (inlined or static?)",
                          section=".BTF")
    proto = funcs[0].proto
    lines = [c_type_name(p.type, p.name) if p.type_id else "..." for p in proto.params]
    ret = proto.return_type
    if not isinstance(ret, btf.Void):
        lines.append(c_type_name(ret, "retval"))
    return lines


# ---- user space -------------------------------------------------------------------------------------------


def uprobe_symbols(binary: str) -> list[str]:
    """Function symbols of an ELF file a uprobe can name, sorted and unique."""
    from pybpf.symbols import ElfSymbols

    return sorted({name for name, _, _ in ElfSymbols(binary)})


def usdt_probes(binary: str) -> list[UsdtProbe]:
    """USDT probes of an ELF file from its `.note.stapsdt` notes, one per provider:name."""
    from pybpf.link.usdt import usdt_notes

    grouped: dict[tuple[str, str], list[tuple[int, int, str]]] = {}
    for note in usdt_notes(binary):
        grouped.setdefault((note.provider, note.name), []).append((note.pc, note.semaphore, note.args))
    return [
        UsdtProbe(binary, provider, name, tuple(s[0] for s in sites), max(s[1] for s in sites),
                  tuple(s[2] for s in sites))
        for (provider, name), sites in sorted(grouped.items())
    ]


def process_binaries(pid: int) -> list[str]:
    """The ELF files a process maps executable (its program and shared libraries), in map order."""
    from pybpf.symbols.process import read_maps

    seen: list[str] = []
    for m in read_maps(pid):
        if m.is_file and "x" in m.perms and not m.deleted and m.file_path not in seen:
            seen.append(m.file_path)
    return seen


# ---- patterns ---------------------------------------------------------------------------------------------


def split_pattern(pattern: str) -> tuple[str | None, str]:
    """(provider or None, rest): `tracepoint:syscalls:*` -> ("tracepoint", "syscalls:*")."""
    head, sep, rest = pattern.partition(":")
    if sep and head in PROVIDERS:
        return PROVIDERS[head], rest
    return None, pattern


def _match(pattern: str, probe: Probe) -> bool:
    provider, rest = split_pattern(pattern)
    if provider is not None:
        return fnmatch.fnmatchcase(str(probe)[len(probe.provider) + 1 :], rest)
    text = str(probe)
    return fnmatch.fnmatchcase(text, pattern) or fnmatch.fnmatchcase(text[len(probe.provider) + 1 :], pattern)


def _user_probes(providers: Iterable[str], binaries: Iterable[str]) -> Iterator[Probe]:
    for binary in binaries:
        for provider in providers:
            if provider in ("uprobe", "uretprobe"):
                try:
                    names = uprobe_symbols(binary)
                except ObjectError:
                    continue
                yield from (Probe(provider, binary, name) for name in names)
            elif provider == "usdt":
                try:
                    found = usdt_probes(binary)
                except ObjectError:
                    continue
                yield from (Probe("usdt", binary, f"{p.provider}:{p.name}") for p in found)


def _kernel_probes(provider: str) -> Iterator[Probe]:
    if provider == "tracepoint":
        yield from (Probe("tracepoint", c, n) for c, n in tracepoints())
    elif provider == "rawtracepoint":
        yield from (Probe("rawtracepoint", "", n) for n in raw_tracepoints())
    elif provider in ("kprobe", "kretprobe"):
        yield from (Probe(provider, "" if m == "vmlinux" else m, n) for m, n in kernel_functions())
    elif provider in ("kfunc", "kretfunc"):
        yield from (Probe(provider, "vmlinux", n) for n in _btf_function_names())


def list_probes(pattern: str = "*", *, binary: str | None = None, pid: int | None = None) -> list[Probe]:
    """Attach points matching a bpftrace-style glob. User-space providers need `binary` or `pid` (or a
    binary inside the pattern: `uprobe:/bin/bash:read*`)."""
    provider, rest = split_pattern(pattern)
    binaries: list[str] = []
    if binary is not None:
        binaries.append(binary)
    if pid is not None:
        binaries += [b for b in process_binaries(pid) if b not in binaries]
    if provider in (*_DEFAULT_USER, "uretprobe") and not binaries:
        path = rest.split(":", 1)[0]
        if path.startswith("/") and not any(c in path for c in "*?["):
            binaries.append(path)
    if provider is None:
        providers: tuple[str, ...] = _DEFAULT_USER if binaries else _DEFAULT_KERNEL
        if not binaries and pattern.count(":") == 1 and not pattern.startswith("*"):
            providers = ("tracepoint",)  # "category:name" only fits tracepoints; skip the BTF scan
    else:
        providers = (provider,)
    out: list[Probe] = []
    for prov in providers:
        candidates = (_user_probes((prov,), binaries) if prov in (*_DEFAULT_USER, "uretprobe")
                      else _kernel_probes(prov))
        out += [p for p in candidates if _match(pattern, p)]
    return out


def describe(probe: Probe) -> list[str]:
    """What `bpftrace -lv` shows under a probe: tracepoint fields, kfunc arguments, USDT arguments."""
    if probe.provider == "tracepoint":
        return [str(f) for f in tracepoint_fields(probe.target, probe.name)]
    if probe.provider in ("kfunc", "kretfunc"):
        try:
            return kfunc_signature(probe.name, probe.target or "vmlinux")
        except ObjectError:
            return []
    if probe.provider == "usdt":
        prov, _, name = probe.name.partition(":")
        for p in usdt_probes(probe.target):
            if p.provider == prov and p.name == name:
                return [f"arg{i}: {a}" for i, a in enumerate(p.args[0].split())] if p.args else []
    return []
