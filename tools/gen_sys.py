#!/usr/bin/env python3
"""Generate pybpf/_sys/types.py: the kernel ABI (bpf_attr per command, info structs, perf structs,
enums, flags) from the running kernel's BTF, plus the #define constants BTF cannot carry from the
UAPI headers of linux-libc-dev.

    python3 tools/gen_sys.py [--btf /sys/kernel/btf/vmlinux] [-o pybpf/_sys/types.py]

The module is cheap to import: constants are plain assignments, while each enum and ctypes struct is
built by its own function the first time it is used (module `__getattr__`); building all of them
eagerly cost ~12 ms, most of `import pybpf`. A stub next to it (types.pyi) declares them all for mypy.

Opcode constants are not generated here: pybpf.asm owns the instruction encoding.
"""

from __future__ import annotations

import argparse
import ast
import operator
import os
import re
import sys
from pathlib import Path
from typing import NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pybpf.btf import (  # noqa: E402
    Array,
    Composite,
    Enum,
    Int,
    Pointer,
    Spec,
    Struct,
    Type,
    Union,
    sizeof,
)

# Command struct name -> (commands using it, how to find its member of union bpf_attr).
ATTR_COMMANDS: dict[str, tuple[list[str], str]] = {
    "MapCreateAttr": (["BPF_MAP_CREATE"], "field:map_type"),
    "MapElemAttr": (
        ["BPF_MAP_LOOKUP_ELEM", "BPF_MAP_UPDATE_ELEM", "BPF_MAP_DELETE_ELEM", "BPF_MAP_GET_NEXT_KEY",
         "BPF_MAP_LOOKUP_AND_DELETE_ELEM", "BPF_MAP_FREEZE"],
        "field:key",
    ),
    "MapBatchAttr": (
        ["BPF_MAP_LOOKUP_BATCH", "BPF_MAP_LOOKUP_AND_DELETE_BATCH", "BPF_MAP_UPDATE_BATCH",
         "BPF_MAP_DELETE_BATCH"],
        "name:batch",
    ),
    "ProgLoadAttr": (["BPF_PROG_LOAD"], "field:prog_type"),
    "ObjPinAttr": (["BPF_OBJ_PIN", "BPF_OBJ_GET"], "field:pathname"),
    "ProgAttachAttr": (["BPF_PROG_ATTACH", "BPF_PROG_DETACH"], "field:attach_bpf_fd"),
    "ProgTestRunAttr": (["BPF_PROG_TEST_RUN"], "name:test"),
    "GetIdAttr": (
        ["BPF_PROG_GET_NEXT_ID", "BPF_MAP_GET_NEXT_ID", "BPF_PROG_GET_FD_BY_ID", "BPF_MAP_GET_FD_BY_ID",
         "BPF_BTF_GET_FD_BY_ID", "BPF_BTF_GET_NEXT_ID", "BPF_LINK_GET_FD_BY_ID", "BPF_LINK_GET_NEXT_ID"],
        "field:next_id",
    ),
    "InfoByFdAttr": (["BPF_OBJ_GET_INFO_BY_FD"], "name:info"),
    "ProgQueryAttr": (["BPF_PROG_QUERY"], "name:query"),
    "RawTracepointOpenAttr": (["BPF_RAW_TRACEPOINT_OPEN"], "name:raw_tracepoint"),
    "BtfLoadAttr": (["BPF_BTF_LOAD"], "field:btf_log_buf"),
    "TaskFdQueryAttr": (["BPF_TASK_FD_QUERY"], "name:task_fd_query"),
    "LinkCreateAttr": (["BPF_LINK_CREATE"], "name:link_create"),
    "LinkUpdateAttr": (["BPF_LINK_UPDATE"], "name:link_update"),
    "LinkDetachAttr": (["BPF_LINK_DETACH"], "name:link_detach"),
    "EnableStatsAttr": (["BPF_ENABLE_STATS"], "name:enable_stats"),
    "IterCreateAttr": (["BPF_ITER_CREATE"], "name:iter_create"),
    "ProgBindMapAttr": (["BPF_PROG_BIND_MAP"], "name:prog_bind_map"),
}

# Python class name -> kernel struct name.
STRUCTS: dict[str, str] = {
    "BpfInsn": "bpf_insn",
    "ProgInfo": "bpf_prog_info",
    "MapInfo": "bpf_map_info",
    "BtfInfo": "bpf_btf_info",
    "LinkInfo": "bpf_link_info",
    "FuncInfo": "bpf_func_info",
    "LineInfo": "bpf_line_info",
    "StackBuildId": "bpf_stack_build_id",
    "PerfEventAttr": "perf_event_attr",
    "PerfEventMmapPage": "perf_event_mmap_page",
    "PerfEventHeader": "perf_event_header",
    "XdpMd": "xdp_md",
    "SkBuff": "__sk_buff",
    "BpfSockAddr": "bpf_sock_addr",
    "BpfSpinLock": "bpf_spin_lock",
    "BpfTimer": "bpf_timer",
    "CgroupStorageKey": "bpf_cgroup_storage_key",
    "IterLinkInfo": "bpf_iter_link_info",
    "CoreReloRecord": "bpf_core_relo",
}

# Python enum name -> (kernel enum name, prefix stripped from member names).
ENUMS: dict[str, tuple[str, str]] = {
    "Cmd": ("bpf_cmd", "BPF_"),
    "MapType": ("bpf_map_type", "BPF_MAP_TYPE_"),
    "ProgType": ("bpf_prog_type", "BPF_PROG_TYPE_"),
    "AttachType": ("bpf_attach_type", "BPF_"),
    "LinkType": ("bpf_link_type", "BPF_LINK_TYPE_"),
    "BpfFuncId": ("bpf_func_id", "BPF_FUNC_"),
    "StatsType": ("bpf_stats_type", "BPF_STATS_"),
    "TaskFdType": ("bpf_task_fd_type", "BPF_FD_TYPE_"),
    "CoreReloKind": ("bpf_core_relo_kind", "BPF_CORE_"),
    "PerfType": ("perf_type_id", "PERF_TYPE_"),
    "PerfSwId": ("perf_sw_ids", "PERF_COUNT_SW_"),
    "PerfHwId": ("perf_hw_id", "PERF_COUNT_HW_"),
    "PerfSampleFormat": ("perf_event_sample_format", "PERF_SAMPLE_"),
    "PerfRecordType": ("perf_event_type", "PERF_RECORD_"),
    "XdpAction": ("xdp_action", "XDP_"),
    "SkAction": ("sk_action", "SK_"),
    "CgroupIterOrder": ("bpf_cgroup_iter_order", "BPF_CGROUP_ITER_"),
}

# Values of anonymous kernel enums worth exporting, by prefix.
ANON_ENUM_PREFIXES = ("BPF_F_", "BPF_ANY", "BPF_NOEXIST", "BPF_EXIST", "BPF_RINGBUF_", "BPF_RB_",
                      "BPF_STACK_BUILD_ID_", "BPF_LOCAL_STORAGE_", "BPF_FIB_", "BPF_ADJ_ROOM_",
                      "BPF_SK_LOOKUP_")

# (header, prefixes of #defines to take). Opcodes (BPF_ALU, BPF_JMP…) stay in pybpf.asm.
DEFINE_SOURCES: list[tuple[str, tuple[str, ...]]] = [
    ("linux/bpf.h", ("BPF_F_", "BPF_OBJ_NAME_LEN", "BPF_TAG_SIZE", "BPF_BUILD_ID_SIZE",
                     "BPF_PSEUDO_", "BPF_LOG_", "BPF_XDP_")),
    ("linux/perf_event.h", ("PERF_FLAG_", "PERF_EVENT_IOC_", "PERF_ATTR_SIZE_VER", "PERF_MAX_")),
    ("linux/if_link.h", ("XDP_FLAGS_",)),
    ("linux/pkt_cls.h", ("TC_ACT_", "TCA_BPF_FLAG_")),
    ("linux/pkt_sched.h", ("TC_H_",)),
]

HEADER_DIRS = ["/usr/include", "/usr/include/x86_64-linux-gnu"]


def _ioc(direction: int, typ: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (typ << 8) | nr


_C_SIZES = {"__u32": 4, "__u64": 8, "__u64 *": 8, "char *": 8, "int": 4, "__s32": 4}


def _eval_define(expr: str, known: dict[str, int]) -> int | None:
    expr = expr.split("/*")[0].split("//")[0].strip()
    if not expr:
        return None
    m = re.fullmatch(r"_IO(W|R|WR)?\s*\(\s*'(.)'\s*,\s*(\w+)\s*(?:,\s*([^)]+))?\)", expr)
    if m:
        direction = {None: 0, "W": 1, "R": 2, "WR": 3}[m.group(1)]
        size = _C_SIZES.get((m.group(4) or "").strip(), 0) if m.group(1) else 0
        if m.group(1) and not size:
            return None
        nr = _eval_define(m.group(3), known)
        return None if nr is None else _ioc(direction, ord(m.group(2)), nr, size)
    expr = re.sub(r"\b(0x[0-9a-fA-F]+|\d+)(ULL|UL|U|LL|L)\b", r"\1", expr)
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return None
    ops = {ast.LShift: operator.lshift, ast.RShift: operator.rshift, ast.BitOr: operator.or_,
           ast.BitAnd: operator.and_, ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}

    def ev(node: ast.AST) -> int:
        if isinstance(node, ast.Expression):
            return ev(node.body)
        if isinstance(node, ast.Constant) and isinstance(node.value, int):
            return node.value
        if isinstance(node, ast.Name) and node.id in known:
            return known[node.id]
        if isinstance(node, ast.BinOp) and type(node.op) in ops:
            return int(ops[type(node.op)](ev(node.left), ev(node.right)))
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Invert):
            return ~ev(node.operand) & 0xFFFFFFFF
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return -ev(node.operand)
        raise ValueError(expr)

    try:
        return ev(tree)
    except (ValueError, KeyError):
        return None


def collect_defines() -> dict[str, int]:
    out: dict[str, int] = {}
    for header, prefixes in DEFINE_SOURCES:
        path = next((Path(d) / header for d in HEADER_DIRS if (Path(d) / header).exists()), None)
        if path is None:
            raise SystemExit(f"missing {header}: apt-get install linux-libc-dev")
        for line in path.read_text().splitlines():
            m = re.match(r"#define\s+([A-Z_][A-Z0-9_]*)\s+(.+)$", line)
            if not m or not m.group(1).startswith(prefixes):
                continue
            value = _eval_define(m.group(2), out)
            if value is not None:
                out[m.group(1)] = value
    return out


class Gen:
    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self.sizes: list[tuple[str, int]] = []  # top-level structs: (class name, size on this kernel)
        self.emitted: set[str] = set()
        self.deps: list[list[str]] = []  # per composite being emitted: the classes its fields use
        self.classes: list[tuple[str, list[str], list[str]]] = []  # (name, class lines, dependencies)

    # ctypes expression for a BTF type, emitting nested classes first when needed.
    def ctype(self, t: Type, hint: str) -> str:
        raw = t
        t = t.strip()
        if isinstance(t, Int):
            if t.size == 1 and (t.encoding & 2) and not t.signed:
                return "ctypes.c_char" if t.name == "char" else "ctypes.c_uint8"
            base = {1: "int8", 2: "int16", 4: "int32", 8: "int64", 16: "int64 * 2"}[t.size]
            return f"ctypes.c_{'' if t.signed else 'u'}{base}" if t.size != 16 else "ctypes.c_uint64 * 2"
        if isinstance(t, Enum):
            return {1: "ctypes.c_uint8", 2: "ctypes.c_uint16", 4: "ctypes.c_uint32", 8: "ctypes.c_uint64"}[t.size]
        if isinstance(t, Pointer):
            return "ctypes.c_uint64"
        if isinstance(t, Array):
            return f"({self.ctype(t.elem, hint)}) * {t.nelems}"
        if isinstance(t, Composite):
            name = hint if not t.name else _camel(t.name)
            self.composite(name, t)
            self.deps[-1].append(name)
            return name
        raise ValueError(f"cannot map {raw!r} to ctypes")

    def composite(self, pyname: str, t: Composite, top: bool = False) -> None:
        if pyname in self.emitted:
            return
        self.emitted.add(pyname)
        self.deps.append([])
        fields: list[str] = []
        anonymous: list[str] = []
        pos_bits = 0
        pad = 0
        for i, m in enumerate(t.members):
            mname = m.name or f"_anon{i}"
            ct = self.ctype(m.type, f"{pyname}_{_camel(m.name) if m.name else f'U{i}'}")
            if not m.name:
                anonymous.append(mname)
            if isinstance(t, Struct):
                # Insert explicit padding where natural C layout would not put the member.
                if m.bitfield_size == 0 and m.bit_offset > pos_bits and m.bit_offset % 8 == 0 and pos_bits % 8 == 0:
                    gap = (m.bit_offset - pos_bits) // 8
                    natural = _align_up(pos_bits // 8, _ctype_align(m.type))
                    if natural * 8 != m.bit_offset:
                        fields.append(f'("_pad{pad}", ctypes.c_uint8 * {gap}),')
                        pad += 1
                pos_bits = m.bit_offset + (m.bitfield_size or sizeof(m.type) * 8)
            if m.bitfield_size:
                fields.append(f'("{mname}", {ct}, {m.bitfield_size}),')
            else:
                fields.append(f'("{mname}", {ct}),')
        kind = "ctypes.Structure" if isinstance(t, Struct) else "ctypes.Union"
        out = [f"class {pyname}({kind}):"]
        out.append(f'    """{"struct" if isinstance(t, Struct) else "union"} {t.name or "(anonymous)"}; {t.size} bytes on the generating kernel."""')
        if anonymous:
            out.append(f"    _anonymous_ = ({', '.join(repr(a) for a in anonymous)},)")
        out.append("    _fields_ = [")
        out.extend(f"        {f}" for f in fields)
        out.append("    ]")
        if isinstance(t, Struct) and t.size:
            out.append("")
        self.classes.append((pyname, out, list(dict.fromkeys(self.deps.pop()))))
        if top:
            self.sizes.append((pyname, t.size))


def _align_up(v: int, a: int) -> int:
    return (v + a - 1) // a * a


def _ctype_align(t: Type) -> int:
    from pybpf.btf import alignof

    return alignof(t)


def _camel(name: str) -> str:
    return "".join(p[:1].upper() + p[1:] for p in name.strip("_").split("_"))


def _collect(spec: Spec) -> _Parts:
    gen = Gen(spec)
    attr = spec.find("bpf_attr", Union)
    assert isinstance(attr, Union)
    command_of: dict[str, str] = {}
    for pyname, (commands, how) in ATTR_COMMANDS.items():
        how_kind, key = how.split(":")
        member = None
        for m in attr.members:
            inner = m.type.strip()
            if how_kind == "name" and m.name == key:
                member = m
                break
            if how_kind == "field" and isinstance(inner, Composite) and _has_field(inner, key):
                member = m
                break
        if member is None:
            print(f"warning: bpf_attr has no member for {pyname}", file=sys.stderr)
            continue
        inner = member.type.strip()
        assert isinstance(inner, Composite)
        gen.composite(pyname, inner, top=True)
        for c in commands:
            command_of[c] = pyname
    for pyname, kname in STRUCTS.items():
        found = spec.types_by_name(kname, (Struct, Union))
        if not found:
            print(f"warning: no struct {kname} in BTF", file=sys.stderr)
            continue
        t = found[0]
        assert isinstance(t, Composite)
        gen.composite(pyname, t, top=True)

    enums: list[tuple[str, bool, list[str]]] = []
    member_lines = ["", "# Members of the named kernel enums under their kernel names: plain ints for code on the start-up",
                    "# path (no class to build; the classes are for display)."]
    for pyname, (kname, prefix) in ENUMS.items():
        found = spec.types_by_name(kname, Enum)
        if not found:
            print(f"warning: no enum {kname} in BTF", file=sys.stderr)
            continue
        e = found[0]
        assert isinstance(e, Enum)
        flag = pyname in ("PerfSampleFormat",)
        lines = [f'    """enum {kname}"""']  # the class body; each file writes its own header
        for v in e.values:
            value_name = v.name.removeprefix(prefix)
            if value_name[:1].isdigit():
                value_name = "_" + value_name
            if value_name.startswith("__") or value_name == "MAX":  # enum bounds, not values
                continue
            lines.append(f"    {value_name} = {v.value}")
            member_lines.append(f"{v.name} = {v.value}")
        enums.append((pyname, flag, lines))
    # Anonymous enums' values.
    consts: dict[str, int] = {}
    for i in range(1, len(spec)):
        kind, name_off = spec.raw_kind_and_name(i)
        if kind not in (6, 19) or name_off:
            continue
        e = spec.type(i)
        assert isinstance(e, Enum)
        for v in e.values:
            if v.name.startswith(ANON_ENUM_PREFIXES) and v.name not in consts:
                consts[v.name] = v.value & 0xFFFFFFFFFFFFFFFF if v.value < 0 else v.value
    const_lines = ["# Values of anonymous kernel enums (from BTF)."]
    const_lines += [f"{k} = {consts[k]:#x}" for k in sorted(consts)]
    const_lines += ["", "# #define constants from the UAPI headers (BTF does not carry them)."]
    const_lines += [f"{k} = {v:#x}" for k, v in sorted(collect_defines().items()) if k not in consts]
    const_lines += member_lines
    names = ["KERNEL_NAMES: dict[str, tuple[str, int]] = {"]
    names += [f"    {pyname!r}: ({STRUCTS.get(pyname, 'bpf_attr.' + pyname)!r}, {size})," for pyname, size in gen.sizes]
    names.append("}")
    return _Parts(enums, const_lines, gen.classes, command_of, names)


class _Parts(NamedTuple):
    enums: list[tuple[str, bool, list[str]]]  # (name, is a flag set, class body lines)
    consts: list[str]
    classes: list[tuple[str, list[str], list[str]]]  # (name, class lines, classes it uses)
    command_of: dict[str, str]
    kernel_names: list[str]


_PREAMBLE = [
    '"""The kernel ABI for pybpf: GENERATED by tools/gen_sys.py from kernel BTF and UAPI headers.',
    "",
    "Do not edit by hand; run `python3 tools/gen_sys.py` on a newer kernel to extend it.",
]


def generate(spec: Spec, parts: _Parts | None = None) -> str:
    """pybpf/_sys/types.py: constants eagerly; every enum and struct built on first use."""
    parts = parts or _collect(spec)
    out: list[str] = [
        *_PREAMBLE,
        "",
        "Constants (enum members too, under their kernel names) are plain assignments. Each enum class (a",
        "`pybpf._named` class: enum-like, without importing enum) and ctypes struct is built by the function",
        "named after it (`_build_<Name>`) the first time the module attribute is read (module `__getattr__`), so",
        "a program pays only for what it uses; types.pyi declares them all, the enums as enum's own, for type",
        "checkers.",
        '"""',
        "",
        "# ruff: noqa",
        "# mypy: ignore-errors",
        "from __future__ import annotations",
        "",
        "import ctypes",
        "from _thread import RLock",
        "",
        f"GENERATED_FROM_KERNEL = {os.uname().release!r}",
        "",
        *parts.consts,
        "",
        "# Python class -> (kernel type name, size on the generating kernel), checked by tests.",
        *parts.kernel_names,
        "",
        "_lock = RLock()",
        "",
        "",
        "def __getattr__(name: str):",
        "    build = _BUILDERS.get(name)",
        "    if build is None:",
        '        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")',
        "    with _lock:",
        "        value = globals().get(name)",
        "        if value is None:",
        "            value = globals()[name] = build()",
        "    return value",
        "",
        "",
        "def __dir__():",
        "    return sorted(set(globals()) | set(_BUILDERS))",
        "",
        "",
    ]
    for pyname, flag, lines in parts.enums:
        # At run time the enums are pybpf._named classes (enum-like, without importing enum); the stub
        # declares them as enum's own for type checkers.
        base = "NamedFlags" if flag else "NamedInt"
        out.append(f"def _build_{pyname}():")
        out.append(f"    from pybpf._named import {base}")
        out.append("")
        out.append(f"    class {pyname}({base}):")
        out.append(f"    {lines[0]}")  # the docstring
        # Named as the module attribute it becomes (not "_build_X.<locals>.X"): repr and pickle find it.
        out.append(f"        __qualname__ = {pyname!r}")
        out.extend(f"    {line}" for line in lines[1:])
        out.append(f"    return {pyname}")
        out.extend(["", ""])
    for pyname, lines, deps in parts.classes:
        out.append(f"def _build_{pyname}():")
        out.extend(f"    {dep} = __getattr__({dep!r})" for dep in deps)
        out.extend(f"    {line}" if line else "" for line in lines)
        out.append(f"    return {pyname}")
        out.extend(["", ""])
    out.append("def _build_ATTR_OF_COMMAND():")
    out.append('    """Attribute struct used by each bpf() command (the size passed is its sizeof)."""')
    out.append("    return {")
    for c, pyname in parts.command_of.items():
        out.append(f"        {c!r}: __getattr__({pyname!r}),")
    out.append("    }")
    out.extend(["", ""])
    builders = [name for name, _, _ in parts.enums] + [name for name, _, _ in parts.classes] + ["ATTR_OF_COMMAND"]
    out.append("_BUILDERS = {")
    out.extend(f"    {name!r}: _build_{name}," for name in builders)
    out.append("}")
    out.append("")
    return "\n".join(out)


def generate_stub(spec: Spec, parts: _Parts | None = None) -> str:
    """pybpf/_sys/types.pyi: every name of types.py, declared eagerly for type checkers."""
    parts = parts or _collect(spec)
    out: list[str] = [
        *_PREAMBLE,
        "",
        "Type stub: types.py builds these lazily at run time.",
        '"""',
        "",
        "# ruff: noqa",
        "import ctypes",
        "import enum",
        "",
        "GENERATED_FROM_KERNEL: str",
        "",
    ]
    for pyname, flag, lines in parts.enums:
        out.append(f"class {pyname}(enum.{'IntFlag' if flag else 'IntEnum'}):")
        out.extend(lines)
        out.extend(["", ""])
    out.extend(parts.consts)
    out.extend(["", ""])
    for _pyname, lines, _deps in parts.classes:
        out.extend(line for line in lines if line)
        out.extend(["", ""])
    out.append("ATTR_OF_COMMAND: dict[str, type[ctypes.Structure]]")
    out.extend(parts.kernel_names)
    out.append("")
    return "\n".join(out)


def _has_field(t: Composite, name: str) -> bool:
    for m in t.members:
        if m.name == name:
            return True
        inner = m.type.strip()
        if not m.name and isinstance(inner, Composite) and _has_field(inner, name):
            return True
    return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--btf", default="/sys/kernel/btf/vmlinux")
    ap.add_argument("-o", "--output", default=str(Path(__file__).resolve().parent.parent / "pybpf/_sys/types.py"))
    args = ap.parse_args()
    spec = Spec.from_file(args.btf)
    parts = _collect(spec)  # BTF and UAPI headers read once for both files
    text = generate(spec, parts)
    Path(args.output).write_text(text)
    stub = Path(args.output).with_suffix(".pyi")
    stub.write_text(generate_stub(spec, parts))
    print(f"wrote {args.output} ({len(text.splitlines())} lines) and {stub}")


if __name__ == "__main__":
    main()
