"""`pybpf prog|map|link`: inspect what is loaded in the kernel (like `bpftool prog/map/link`)."""

from __future__ import annotations

import ctypes
import errno
import json
from collections.abc import Callable, Iterator
from typing import Any

import click

from pybpf._named import is_named
from pybpf._sys import FD, bpf
from pybpf._sys import types as T
from pybpf._sys.syscall import object_ids
from pybpf.cli.render import jsonable
from pybpf.errors import BPFError

# ---- kernel object walking ------------------------------------------------------------------------------


def _kernel_objects(next_id: int, open_id: Callable[[int], Any]) -> Iterator[Any]:
    """Every kernel object that `next_id` (PROG/MAP_GET_NEXT_ID) lists, opened by id with `open_id` (the
    caller closes them); objects gone between listing and opening are skipped."""
    for obj_id in object_ids(next_id):
        try:
            obj = open_id(obj_id)
        except BPFError as exc:
            if exc.errno != errno.ENOENT:
                raise
            continue
        yield obj


def _type_name(t: Any) -> str:
    return t.name.lower() if is_named(t) else str(t)


def _emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in columns:
        table.add_column(col)
    for row in rows:
        table.add_row(*(str(c) for c in row))
    Console().print(table)


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


# ---- programs ----------------------------------------------------------------------------------------------


def _prog_record(prog: Any) -> dict[str, Any]:
    info = prog.info()
    return {
        "id": info.id, "name": info.name, "type": _type_name(info.type), "tag": info.tag,
        "gpl_compatible": info.gpl_compatible, "insn_count": info.insn_count, "xlated_size": info.xlated_size,
        "jited_size": info.jited_size, "map_ids": list(info.map_ids), "btf_id": info.btf_id,
        "loaded_at_ns": info.load_time_ns, "uid": info.created_by_uid, "run_cnt": info.run_cnt,
        "run_time_ns": info.run_time_ns, "verified_insns": info.verified_insns,
    }


def _programs() -> Iterator[dict[str, Any]]:
    from pybpf.program import Program

    for prog in _kernel_objects(T.BPF_PROG_GET_NEXT_ID, Program.from_id):
        with prog:
            yield _prog_record(prog)


@click.group()
def prog() -> None:
    """Inspect loaded BPF programs."""


@prog.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prog_list(as_json: bool) -> None:
    """Every loaded program."""
    try:
        records = list(_programs())
    except BPFError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(records)
        return
    _table("programs", ["id", "type", "name", "tag", "insns", "maps", "btf"],
           [[r["id"], r["type"], r["name"], r["tag"], r["insn_count"], ",".join(map(str, r["map_ids"])),
             r["btf_id"] or ""] for r in records])


@prog.command("show")
@click.argument("prog_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def prog_show(prog_id: int, as_json: bool) -> None:
    """Details of program PROG_ID."""
    from pybpf.program import Program

    try:
        with Program.from_id(prog_id) as p:
            record = _prog_record(p)
    except BPFError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(record)
        return
    _table(f"program {prog_id}", ["field", "value"], [[k, v] for k, v in record.items()])


def _annotate(insns: Any, fd: FD) -> None:
    """Put function names and source lines (from the program's BTF func/line info) on the instructions."""
    info = T.ProgInfo()
    attr = T.InfoByFdAttr(bpf_fd=int(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(T.BPF_OBJ_GET_INFO_BY_FD, attr, "program info")
    if not info.btf_id or not (info.nr_line_info or info.nr_func_info):
        return
    n_lines, line_size, n_funcs, func_size = (info.nr_line_info, info.line_info_rec_size, info.nr_func_info,
                                              info.func_info_rec_size)
    lines = ctypes.create_string_buffer(max(n_lines * line_size, 1))
    funcs = ctypes.create_string_buffer(max(n_funcs * func_size, 1))
    info = T.ProgInfo(nr_line_info=n_lines, line_info_rec_size=line_size, line_info=ctypes.addressof(lines),
                      nr_func_info=n_funcs, func_info_rec_size=func_size, func_info=ctypes.addressof(funcs))
    attr = T.InfoByFdAttr(bpf_fd=int(fd), info_len=ctypes.sizeof(info), info=ctypes.addressof(info))
    bpf(T.BPF_OBJ_GET_INFO_BY_FD, attr, "program line info")
    from pybpf.btf import btf_by_id

    spec = btf_by_id(info.btf_id)
    by_slot: dict[int, Any] = {}
    slot = 0
    for insn in insns:
        by_slot[slot] = insn
        slot += insn.size
    for i in range(n_funcs):
        func = T.FuncInfo.from_buffer_copy(funcs.raw, i * func_size)
        if func.insn_off in by_slot:
            by_slot[func.insn_off].symbol = spec.type(func.type_id).name
    for i in range(n_lines):
        rec = T.LineInfo.from_buffer_copy(lines.raw, i * line_size)
        if rec.insn_off in by_slot and rec.line_off:
            text = spec.string(rec.line_off).strip()
            if text:
                by_slot[rec.insn_off].source = text


def _kernel_call_names() -> Any:
    """Name the kernel functions that translated calls jump to, as bpftool does.

    In xlated code a helper or kfunc call's imm is the callee's offset from `__bpf_call_base` (the verifier
    inlines and rewrites helpers: `bpf_map_lookup_elem` becomes `__htab_map_lookup_elem`), so kallsyms names it.
    """
    from pybpf.asm import opcodes as op
    from pybpf.symbols import kernel_symbols

    try:
        symbols = kernel_symbols()
        base = symbols.address_of("__bpf_call_base")
    except BPFError:
        return None  # kallsyms hidden (kptr_restrict): helper names from the helper table instead
    if not base:
        return None  # no __bpf_call_base in kallsyms

    def name(insn: Any) -> str | None:
        if insn.src not in (0, op.PSEUDO_KFUNC_CALL):
            return None
        target = symbols.lookup(base + insn.imm)  # imm is signed: callees before __bpf_call_base are < 0
        return target.name if target is not None and target.offset == 0 else None

    return name


@prog.command("dump")
@click.argument("prog_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per instruction).")
def prog_dump(prog_id: int, as_json: bool) -> None:
    """Disassemble the kernel's (xlated) instructions of PROG_ID, with source lines when it has line info."""
    from pybpf import asm
    from pybpf.program import Program

    try:
        with Program.from_id(prog_id) as p:
            insns = p.xlated()
            try:
                _annotate(insns, p.fd)
            except BPFError:
                pass  # no BTF access: plain disassembly
    except BPFError as exc:
        raise _fail(exc) from exc
    call_names = _kernel_call_names()
    if as_json:
        out = []
        slot = 0
        for insn in insns:
            out.append({"slot": slot, "opcode": insn.opcode, "dst": insn.dst, "src": insn.src, "off": insn.off,
                        "imm": insn.imm, "disasm": asm.format_instruction(insn, call_name=call_names), "source": insn.source,
                        "function": insn.symbol})
            slot += insn.size
        _emit_json(out)
        return
    for line in asm.disassemble_lines(insns, call_name=call_names):
        click.echo(line)


# ---- maps --------------------------------------------------------------------------------------------------


def _map_record(m: Any) -> dict[str, Any]:
    info = m.info()
    return {
        "id": info.id, "name": info.name, "type": _type_name(info.type), "key_size": info.key_size,
        "value_size": info.value_size, "max_entries": info.max_entries, "flags": info.flags,
        "btf_id": info.btf_id, "frozen": info.frozen, "memlock": info.memlock,
    }


def _open_map(ref: str) -> Any:
    """A Map from an id, a bpffs path or a name (the first map with that name)."""
    from pybpf.map import Map

    if ref.isdigit():
        return Map.from_id(int(ref))
    if "/" in ref:
        return Map.from_pin(ref)
    for m in _kernel_objects(T.BPF_MAP_GET_NEXT_ID, Map.from_id):
        if m.info().name == ref:
            return m
        m.close()
    raise click.ClickException(f"no loaded map named {ref!r} (see `pybpf map list`)")


def _typed(m: Any) -> bool:
    """Decode keys/values through the map's BTF when it has some. False: raw bytes."""
    info = m.info()
    if not info.btf_id or not (info.btf_key_type_id or info.btf_value_type_id):
        return False
    from pybpf.btf import btf_by_id

    try:
        spec = btf_by_id(info.btf_id)
        m.set_codec(key=spec.type(info.btf_key_type_id) if info.btf_key_type_id else None,
                    value=spec.type(info.btf_value_type_id) if info.btf_value_type_id else None)
    except (BPFError, ValueError, TypeError):
        return False
    return True


@click.group("map")
def map_() -> None:
    """Inspect BPF maps."""


@map_.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def map_list(as_json: bool) -> None:
    """Every map in the kernel."""
    from pybpf.map import Map

    records = []
    try:
        for m in _kernel_objects(T.BPF_MAP_GET_NEXT_ID, Map.from_id):
            with m:
                records.append(_map_record(m))
    except BPFError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(records)
        return
    _table("maps", ["id", "type", "name", "key", "value", "max_entries", "flags", "btf"],
           [[r["id"], r["type"], r["name"], r["key_size"], r["value_size"], r["max_entries"], hex(r["flags"]),
             r["btf_id"] or ""] for r in records])


@map_.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def map_show(ref: str, as_json: bool) -> None:
    """Details of a map (REF: id, name or bpffs path)."""
    try:
        with _open_map(ref) as m:
            record = _map_record(m)
    except BPFError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(record)
        return
    _table(f"map {record['id']}", ["field", "value"], [[k, v] for k, v in record.items()])


@map_.command("dump")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: [{key, value}] decoded through BTF.")
def map_dump(ref: str, as_json: bool) -> None:
    """Every entry of a map (REF: id, name or bpffs path); values decoded through its BTF when it has some."""
    try:
        with _open_map(ref) as m:
            _typed(m)
            entries = [{"key": jsonable(k), "value": jsonable(v)} for k, v in m.items()]
    except BPFError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(entries)
        return
    _table(f"map {ref}", ["key", "value"],
           [[json.dumps(e["key"]), json.dumps(e["value"])] for e in entries])


# ---- links -------------------------------------------------------------------------------------------------


@click.group()
def link() -> None:
    """Inspect BPF links."""


def _links() -> Iterator[dict[str, Any]]:
    from pybpf.link.base import kernel_links

    for info in kernel_links():
        yield {"id": info.id, "type": _type_name(info.type), "prog_id": info.prog_id}


@link.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def link_list(as_json: bool) -> None:
    """Every BPF link."""
    try:
        records = list(_links())
    except BPFError as exc:
        raise _fail(exc) from exc
    if as_json:
        _emit_json(records)
        return
    _table("links", ["id", "type", "prog_id"], [[r["id"], r["type"], r["prog_id"]] for r in records])
