"""USDT probes (`SEC("usdt/...")`): statically defined tracepoints in user programs and libraries.

A USDT probe is a ``nop`` that ``<sys/sdt.h>`` (DTRACE_PROBE / STAP_PROBE) placed in the code, described
by an ELF note in ``.note.stapsdt``: provider, name, the address of the ``nop`` (one note per call site:
a probe inlined in three places has three), an optional *semaphore* (a counter the program checks to
skip argument set-up while nobody listens) and the argument locations as assembler operands
(``-4@%edi 8@-8(%rbp) 4@$5``). Attaching puts one uprobe on each call site; the kernel counts the
semaphore up through the uprobe's reference-counter offset while the probe exists (Linux 4.20+).

Programs read the arguments with libbpf's ``<bpf/usdt.bpf.h>`` (``bpf_usdt_arg(ctx, n, &val)``), which
looks the spec of the call site up in the object's ``__bpf_usdt_specs`` map by the spec id found in the
BPF cookie of the link (or, without cookies, in ``__bpf_usdt_ip_to_spec_id`` by instruction pointer).
This module fills those maps: the layout of ``struct __bpf_usdt_spec`` comes from the map's BTF, and the
register offsets from the kernel's ``struct pt_regs``.
"""

from __future__ import annotations

import errno as _errno
import functools
import io
import os
import re
import struct
from _thread import allocate_lock

from elftools.elf.elffile import ELFFile

from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.record import record
from pybpf.btf import Array, Composite, Enum, Struct, kernel_spec, sizeof
from pybpf.btf import Type as BtfType
from pybpf.errors import BPFError, NotSupportedError, ObjectError
from pybpf.link.base import Link
from pybpf.link.perf_event import attach_to_perf_event
from pybpf.link.uprobe import _check_program, open_uprobe_event, resolve_target
from pybpf.map import Map, sanitize_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from pybpf.program import Program

__all__ = [
    "IP_MAP",
    "SPECS_MAP",
    "UsdtArg",
    "UsdtNote",
    "attach_usdt",
    "parse_usdt_args",
    "pt_regs_offset",
    "usdt_notes",
]

SPECS_MAP = "__bpf_usdt_specs"  # names fixed by <bpf/usdt.bpf.h>
IP_MAP = "__bpf_usdt_ip_to_spec_id"
_NT_STAPSDT = 3
_PF_X = 1

# ---- notes -------------------------------------------------------------------------------------------


@record(frozen=True)
class UsdtArg:
    """One argument location: `size` in bytes (negative: signed), `kind` "const" (the value is
    `offset`), "reg" (the value is in `register`) or "deref" (at `offset` from the address in
    `register`)."""

    size: int
    kind: str
    register: str = ""
    offset: int = 0
    text: str = ""


@record(frozen=True)
class UsdtNote:
    """One call site of a USDT probe. Addresses are ELF virtual addresses; the `*_offset` fields are the
    file offsets uprobes take (0 semaphore: the probe has none)."""

    provider: str
    name: str
    pc: int
    base: int
    semaphore: int
    args: str
    file_offset: int
    semaphore_offset: int

    def arguments(self) -> list[UsdtArg]:
        return parse_usdt_args(self.args)


def usdt_notes(path: str | os.PathLike[str]) -> list[UsdtNote]:
    """Every USDT call site of an ELF file, in note order (empty when it has none)."""
    return _read_notes(os.fspath(path))[0]


def _read_notes(path: str) -> tuple[list[UsdtNote], bool]:
    """usdt_notes(path), and whether the file is an ET_EXEC executable (its addresses are final)."""
    try:
        with open(path, "rb") as f:
            data = f.read()
        elf = ELFFile(io.BytesIO(data))
    except (OSError, ValueError) as exc:
        raise ObjectError(f"cannot read ELF file: {exc}", path=path) from None
    except Exception as exc:  # pyelftools raises its own ELFError for non-ELF input
        raise ObjectError(f"not an ELF file ({exc})", path=path) from None
    is_exec = elf.header["e_type"] == "ET_EXEC"
    notes = elf.get_section_by_name(".note.stapsdt")
    if notes is None:
        return [], is_exec
    base_section = elf.get_section_by_name(".stapsdt.base")
    base_addr = base_section["sh_addr"] if base_section is not None else 0
    segments = [(s["p_vaddr"], s["p_memsz"], s["p_offset"], s["p_flags"]) for s in elf.iter_segments()
                if s["p_type"] == "PT_LOAD"]
    order = "<" if elf.little_endian else ">"
    word = "Q" if elf.elfclass == 64 else "I"
    asz = struct.calcsize(word)
    raw = notes.data()
    out: list[UsdtNote] = []
    pos = 0
    while pos + 12 <= len(raw):
        namesz, descsz, ntype = struct.unpack_from(order + "III", raw, pos)
        pos += 12
        owner = raw[pos : pos + namesz].rstrip(b"\0")
        pos += (namesz + 3) & ~3
        desc = raw[pos : pos + descsz]
        pos += (descsz + 3) & ~3
        if ntype != _NT_STAPSDT or owner != b"stapsdt" or len(desc) < 3 * asz:
            continue
        pc, note_base, sema = struct.unpack_from(order + word * 3, desc)
        strings = desc[3 * asz :].split(b"\0")
        provider = strings[0].decode(errors="replace")
        name = strings[1].decode(errors="replace") if len(strings) > 1 else ""
        args = strings[2].decode(errors="replace") if len(strings) > 2 else ""
        if base_addr and note_base:
            pc += base_addr - note_base  # prelinked files moved the code after the note was written
        file_offset = _file_offset(segments, pc, executable=True)
        if file_offset is None:
            raise ObjectError(f"USDT {provider}:{name} at {pc:#x} is outside every executable segment",
                              section=".note.stapsdt", path=path)
        sema_offset = 0
        if sema:
            found = _file_offset(segments, sema, executable=False)
            if found is None:
                raise ObjectError(f"semaphore of USDT {provider}:{name} at {sema:#x} is outside every segment",
                                  section=".note.stapsdt", path=path)
            sema_offset = found
        out.append(UsdtNote(provider, name, pc, note_base, sema, args, file_offset, sema_offset))
    return out, is_exec


def _file_offset(segments: list[tuple[int, int, int, int]], vaddr: int, *, executable: bool) -> int | None:
    for seg_vaddr, memsz, offset, flags in segments:
        if executable and not flags & _PF_X:
            continue
        if seg_vaddr <= vaddr < seg_vaddr + memsz:
            return vaddr - seg_vaddr + offset
    return None


# ---- argument specs ------------------------------------------------------------------------------------

_ARG_CONST = re.compile(r"(-?\d+)@\$(-?(?:0x[0-9a-fA-F]+|\d+))")
_ARG_REG = re.compile(r"(-?\d+)@%([a-z0-9]+)")
_ARG_DEREF = re.compile(r"(-?\d+)@(-?(?:0x[0-9a-fA-F]+|\d+))?\(%([a-z0-9]+)\)")


def parse_usdt_args(text: str) -> list[UsdtArg]:
    """Parse the argument string of a note ("-4@%edi 8@-8(%rbp) 4@$5"). Raises ObjectError for forms the
    BPF side cannot evaluate (index registers, symbol-relative addresses)."""
    args: list[UsdtArg] = []
    for part in text.split():
        if m := _ARG_CONST.fullmatch(part):
            arg = UsdtArg(int(m.group(1)), "const", offset=int(m.group(2), 0), text=part)
        elif m := _ARG_REG.fullmatch(part):
            arg = UsdtArg(int(m.group(1)), "reg", register=m.group(2), text=part)
        elif m := _ARG_DEREF.fullmatch(part):
            arg = UsdtArg(int(m.group(1)), "deref", register=m.group(3), offset=int(m.group(2) or "0", 0),
                          text=part)
        else:
            raise ObjectError(f"USDT argument {part!r}: unsupported location (only constants, registers and "
                              "register+offset memory operands can be read by bpf_usdt_arg)")
        if abs(arg.size) not in (1, 2, 4, 8):
            raise ObjectError(f"USDT argument {part!r}: size {arg.size} is not 1, 2, 4 or 8 bytes")
        args.append(arg)
    return args


# x86-64 register names (all widths) -> struct pt_regs member.
_X86_64_REGS: dict[str, str] = {"rip": "ip", "eip": "ip"}
for _full, _member, _narrow in (
    ("rax", "ax", ("eax", "ax", "al")), ("rbx", "bx", ("ebx", "bx", "bl")), ("rcx", "cx", ("ecx", "cx", "cl")),
    ("rdx", "dx", ("edx", "dx", "dl")), ("rsi", "si", ("esi", "si", "sil")), ("rdi", "di", ("edi", "di", "dil")),
    ("rbp", "bp", ("ebp", "bp", "bpl")), ("rsp", "sp", ("esp", "sp", "spl")),
):
    _X86_64_REGS[_full] = _member
    for _n in _narrow:
        _X86_64_REGS[_n] = _member
for _i in range(8, 16):
    for _suffix in ("", "d", "w", "b"):
        _X86_64_REGS[f"r{_i}{_suffix}"] = f"r{_i}"


@functools.cache
def _pt_regs_members() -> dict[str, int]:
    regs = kernel_spec().find("pt_regs", Struct)
    assert isinstance(regs, Composite)
    out: dict[str, int] = {}

    def walk(t: Composite, base: int) -> None:
        for m in t.members:
            inner = m.type.strip()
            if not m.name and isinstance(inner, Composite):
                walk(inner, base + m.byte_offset)  # anonymous unions (cs/ss with FRED bits on 6.9+)
            elif m.name:
                out.setdefault(m.name, base + m.byte_offset)

    walk(regs, 0)
    return out


def pt_regs_offset(register: str) -> int:
    """Offset in the kernel's ``struct pt_regs`` of an x86-64 register named as in USDT specs ("edi")."""
    machine = os.uname().machine
    if machine != "x86_64":
        raise NotSupportedError(f"USDT arguments on {machine}", "", detail="pybpf decodes x86-64 register "
                                "names only; probes still attach, bpf_usdt_arg() does not work")
    member = _X86_64_REGS.get(register)
    if member is None:
        raise ObjectError(f"USDT argument register %{register} is not a general purpose x86-64 register")
    try:
        return _pt_regs_members()[member]
    except KeyError:
        raise ObjectError(f"kernel struct pt_regs has no member {member!r} (register %{register})") from None


# ---- struct __bpf_usdt_spec through BTF -------------------------------------------------------------------


@record(frozen=True)
class _Field:
    offset: int
    size: int
    signed: bool = False


@record(frozen=True)
class _SpecLayout:
    size: int
    args: int  # offset of args[]
    arg_stride: int
    max_args: int
    val_off: _Field
    arg_type: _Field
    reg_off: _Field
    arg_signed: _Field
    arg_bitshift: _Field
    usdt_cookie: _Field
    arg_cnt: _Field
    kinds: dict[str, int]  # "const"/"reg"/"deref" -> enum __bpf_usdt_arg_type value

    def encode(self, args: list[UsdtArg], cookie: int) -> bytes:
        if len(args) > self.max_args:
            raise ObjectError(f"USDT probe has {len(args)} arguments; usdt.bpf.h reads at most {self.max_args}")
        buf = bytearray(self.size)
        for i, arg in enumerate(args):
            base = self.args + i * self.arg_stride
            if arg.kind == "const":
                val_off, reg_off = arg.offset, 0
            else:
                val_off, reg_off = arg.offset, pt_regs_offset(arg.register)
            _put(buf, base, self.val_off, val_off)
            _put(buf, base, self.arg_type, self.kinds[arg.kind])
            _put(buf, base, self.reg_off, reg_off)
            _put(buf, base, self.arg_signed, 1 if arg.size < 0 else 0)
            _put(buf, base, self.arg_bitshift, 64 - abs(arg.size) * 8)
        _put(buf, 0, self.usdt_cookie, cookie)
        _put(buf, 0, self.arg_cnt, len(args))
        return bytes(buf)


def _put(buf: bytearray, base: int, field: _Field, value: int) -> None:
    # val_off holds negative offsets as their two's complement (the BPF side adds it as a u64).
    value &= (1 << (8 * field.size)) - 1
    buf[base + field.offset : base + field.offset + field.size] = value.to_bytes(field.size, "little")


def _field(t: Composite, name: str) -> _Field:
    member = t.member(name)
    inner = member.type.strip()
    signed = bool(getattr(inner, "signed", False))
    return _Field(member.byte_offset, sizeof(member.type), signed)


def _layout_from_btf(spec_type: BtfType) -> _SpecLayout:
    st = spec_type.strip()
    if not isinstance(st, Composite):
        raise ObjectError(f"{SPECS_MAP} value type is not a struct")
    args_member = st.member("args")
    args_type = args_member.type.strip()
    if not isinstance(args_type, Array):
        raise ObjectError("struct __bpf_usdt_spec.args is not an array")
    arg_t = args_type.elem.strip()
    if not isinstance(arg_t, Composite):
        raise ObjectError("struct __bpf_usdt_spec.args is not an array of structs")
    kind_t = arg_t.member("arg_type").type.strip()
    kinds = {"const": 0, "reg": 1, "deref": 2}
    if isinstance(kind_t, Enum):
        kinds = {"const": kind_t.value_of("BPF_USDT_ARG_CONST"), "reg": kind_t.value_of("BPF_USDT_ARG_REG"),
                 "deref": kind_t.value_of("BPF_USDT_ARG_REG_DEREF")}
    return _SpecLayout(
        size=sizeof(st), args=args_member.byte_offset, arg_stride=sizeof(arg_t), max_args=args_type.nelems,
        val_off=_field(arg_t, "val_off"), arg_type=_field(arg_t, "arg_type"), reg_off=_field(arg_t, "reg_off"),
        arg_signed=_field(arg_t, "arg_signed"), arg_bitshift=_field(arg_t, "arg_bitshift"),
        usdt_cookie=_field(st, "usdt_cookie"), arg_cnt=_field(st, "arg_cnt"), kinds=kinds,
    )


def _object_layout(program: Program) -> _SpecLayout | None:
    """The layout from the object's BTF (None without it)."""
    obj_btf = program.spec.btf if program.spec is not None else None
    if obj_btf is not None:
        try:
            return _layout_from_btf(obj_btf.find("__bpf_usdt_spec", Struct))
        except (KeyError, ValueError, ObjectError):
            pass
    return None


def _kernel_layout(specs: Map) -> _SpecLayout | None:
    """The layout from the BTF the kernel holds for the map (None without it): a program without its object
    (e.g. from_id), or replayed from a plan."""
    info = specs.info()
    if not (info.btf_id and info.btf_value_type_id):
        return None
    key = (info.btf_id, info.btf_value_type_id)
    layout = _map_layouts.get(key)
    if layout is None:
        try:
            from pybpf.btf import btf_by_id

            layout = _map_layouts[key] = _layout_from_btf(btf_by_id(info.btf_id).type(info.btf_value_type_id))
        except (BPFError, KeyError, ValueError, ObjectError):
            return None
    return layout


# The layout of libbpf 1.x's usdt.bpf.h, for objects loaded without BTF (then nothing else describes it).
_LIBBPF_LAYOUT = _SpecLayout(
    size=208, args=0, arg_stride=16, max_args=12, val_off=_Field(0, 8), arg_type=_Field(8, 4),
    reg_off=_Field(12, 2, True), arg_signed=_Field(14, 1), arg_bitshift=_Field(15, 1),
    usdt_cookie=_Field(192, 8), arg_cnt=_Field(200, 2, True), kinds={"const": 0, "reg": 1, "deref": 2},
)


# (BTF id, value type id) of a specs map -> its layout: the kernel's copy of a map's BTF is fetched once.
_map_layouts: dict[tuple[int, int], _SpecLayout] = {}


def _spec_layout(program: Program, specs: Map) -> _SpecLayout:
    # A collection replayed from a cached plan builds its specs from the object file when asked: the kernel's
    # copy of the map's BTF (the same object's) comes first then, and the object only when that fails.
    spec_built = "spec" in program.__dict__
    layout = (spec_built and _object_layout(program)) or _kernel_layout(specs)
    if layout is None and not spec_built:
        layout = _object_layout(program)
    if layout is not None:
        return layout
    if specs.value_size != _LIBBPF_LAYOUT.size:
        raise ObjectError(f"{SPECS_MAP} has no BTF and its value size {specs.value_size} is not libbpf's "
                          f"{_LIBBPF_LAYOUT.size}: cannot encode USDT argument specs")
    return _LIBBPF_LAYOUT


# ---- spec ids ----------------------------------------------------------------------------------------------

_ids_lock = allocate_lock()
_ids_in_use: dict[int, set[int]] = {}  # specs map id -> spec ids held by live links


def _allocate_ids(map_id: int, count: int, capacity: int) -> list[int]:
    with _ids_lock:
        used = _ids_in_use.setdefault(map_id, set())
        free = [i for i in range(capacity) if i not in used][:count]
        if len(free) < count:
            raise BPFError(f"{SPECS_MAP} is full ({capacity} specs in use); define BPF_USDT_MAX_SPEC_CNT larger "
                           "before including usdt.bpf.h", _errno.ENOSPC)
        used.update(free)
        return free


def _release_ids(map_id: int, ids: list[int]) -> None:
    with _ids_lock:
        used = _ids_in_use.get(map_id)
        if used is not None:
            used.difference_update(ids)


def _usdt_maps(program: Program) -> tuple[Map | None, Map | None]:
    """The program's __bpf_usdt_specs and __bpf_usdt_ip_to_spec_id maps (None when it uses neither)."""
    specs: Map | None = None
    ips: Map | None = None
    want_specs, want_ips = sanitize_name(SPECS_MAP), sanitize_name(IP_MAP)
    for map_id in program.info().map_ids:
        m = Map.from_id(map_id)
        if specs is None and m.name == want_specs and m.map_type == T.BPF_MAP_TYPE_ARRAY:
            specs = m
        elif ips is None and m.name == want_ips and m.map_type == T.BPF_MAP_TYPE_HASH:
            ips = m
        else:
            m.close()
    return specs, ips


# ---- attaching ---------------------------------------------------------------------------------------------


def attach_usdt(
    program: Program,
    binary: str | os.PathLike[str],
    provider: str,
    name: str,
    pid: int = -1,
    *,
    cookie: int = 0,
    legacy: bool | None = None,
) -> Link:
    """Attach `program` to every call site of USDT probe `provider:name` in `binary` (a path, a program
    on PATH or a library name). `pid` limits it to one process. Semaphores are counted up while attached.
    `cookie` is what ``bpf_usdt_cookie()`` returns in the program. Detaching removes every probe."""
    _check_program(program, "usdt")
    path = resolve_target(binary, pid)
    notes, is_exec = _read_notes(path)
    sites = [n for n in notes if n.provider == provider and n.name == name]
    target = f"{path}:{provider}:{name}" + (f" (pid {pid})" if pid != -1 else "")
    if not sites:
        known = sorted({f"{n.provider}:{n.name}" for n in notes})
        raise ObjectError(f"no USDT probe {provider}:{name}" + (f"; it has {', '.join(known[:20])}" if known
                          else "; it has no .note.stapsdt notes"), path=path)

    undo: list[Callable[[], None]] = []
    owned: list[FD] = []
    link_fds: list[FD] = []

    def unwind() -> None:
        for fd in reversed(owned):
            fd.close()
        for step in reversed(undo):
            try:
                step()
            except Exception:  # keep unwinding
                pass

    try:
        cookies = _fill_specs(program, sites, cookie, is_exec, undo)
        if program.expected_attach_type == T.BPF_TRACE_UPROBE_MULTI:
            from pybpf.link.uprobe import _attach_multi

            return _attach_multi(program, path, [s.file_offset for s in sites], cookies,
                                 [s.semaphore_offset for s in sites], pid, False, target, kind="usdt", undo=undo)
        for site, spec_id in zip(sites, cookies, strict=True):
            pfd, steps = open_uprobe_event(path, site.file_offset, pid=pid, ref_ctr_offset=site.semaphore_offset,
                                           legacy=legacy)
            owned.append(pfd)
            undo.extend(steps)
            link_fd = attach_to_perf_event(program, pfd, cookie=spec_id, what=f"usdt {target} at {site.pc:#x}")
            if link_fd is not None:
                owned.append(link_fd)  # closed before its perf event (owned fds close in reverse)
                link_fds.append(link_fd)
    except BaseException:
        unwind()
        raise
    # One call site: the link is a plain BPF link (pin, info, update work); several: a bundle.
    single = link_fds[0] if len(sites) == 1 and link_fds else None
    if single is not None:
        owned.remove(single)
    return Link(program, "usdt", target, fd=single, owned=owned, undo=undo)


def _fill_specs(program: Program, sites: list[UsdtNote], cookie: int, is_exec: bool,
                undo: list[Callable[[], None]]) -> list[int]:
    """Write one spec per distinct argument string; returns the spec id (the BPF cookie) of each site."""
    specs, ips = _usdt_maps(program)
    if specs is None:
        if ips is not None:
            ips.close()
        return [0] * len(sites)  # the program never calls bpf_usdt_arg*(): nothing to describe
    map_id = specs.id
    distinct = sorted({s.args for s in sites})
    layout = _spec_layout(program, specs)
    encoded = {args: layout.encode(parse_usdt_args(args), cookie) for args in distinct}
    ids = _allocate_ids(map_id, len(distinct), specs.max_entries)
    id_of = dict(zip(distinct, ids, strict=True))
    added_ips: list[int] = []

    def release() -> None:
        try:
            if ips is not None:
                for ip in added_ips:
                    ips.delete(struct.pack("<q", ip))
        finally:
            _release_ids(map_id, ids)
            specs.close()
            if ips is not None:
                ips.close()

    undo.append(release)
    for args, spec_id in id_of.items():
        specs.update(spec_id, encoded[args])
    if ips is not None and is_exec:
        # Kernels without BPF cookies find the spec by instruction pointer; only a non-PIE executable
        # has its addresses fixed before it runs.
        for site in sites:
            ips.update(struct.pack("<q", site.pc), struct.pack("<I", id_of[site.args]))
            added_ips.append(site.pc)
    return [id_of[s.args] for s in sites]
