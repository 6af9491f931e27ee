"""`pybpf btf`: look at BTF (the running kernel's, a module's, an object file's)."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import click

from pybpf.btf.spec import KERNEL_BTF, Spec, kernel_spec
from pybpf.btf.types import (
    Array,
    Composite,
    Datasec,
    DeclTag,
    Enum,
    Float,
    Func,
    FuncProto,
    Fwd,
    Int,
    IntEncoding,
    Type,
    Var,
    _Ref,
)
from pybpf.errors import BPFError

__all__ = ["btf", "format_raw_type", "load_btf_file", "raw_dump"]

_ELF_MAGIC = b"\x7fELF"
_INT_ENCODINGS = {0: "(none)", IntEncoding.SIGNED: "SIGNED", IntEncoding.CHAR: "CHAR", IntEncoding.BOOL: "BOOL"}
_LINKAGES = {0: "static", 1: "global", 2: "extern"}


def load_btf_file(path: str | None, base: str | None = None) -> Spec:
    """A BTF blob from a raw BTF file or from the .BTF section of an ELF object; the kernel's by default.

    Module BTF under /sys/kernel/btf/ is split BTF and gets vmlinux as its base automatically.
    """
    if path is None:
        return kernel_spec()
    resolved = os.path.realpath(path)
    base_spec: Spec | None = None
    if base is not None:
        base_spec = kernel_spec() if os.path.realpath(base) == KERNEL_BTF else Spec.from_file(base)
    elif os.path.dirname(resolved) == os.path.dirname(KERNEL_BTF) and resolved != KERNEL_BTF:
        base_spec = kernel_spec()
    if resolved == KERNEL_BTF:
        return kernel_spec()
    with open(path, "rb") as f:
        head = f.read(4)
    if head != _ELF_MAGIC:
        return Spec.from_file(path, base_spec)
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        section = ELFFile(f).get_section_by_name(".BTF")
        if section is None:
            raise click.ClickException(f"{path} has no .BTF section (compile with -g)")
        data = section.data()
    return Spec(data, base_spec, name=path)


# ---- bpftool's raw text format ----------------------------------------------------------------------


def _q(name: str) -> str:
    return f"'{name or '(anon)'}'"


def format_raw_type(t: Type) -> str:
    """One type as `bpftool btf dump` prints it (member lines included, no trailing newline)."""
    head = f"[{t.id}] {t.kind.name} {_q(t.name)}"
    if isinstance(t, Int):
        enc = _INT_ENCODINGS.get(int(t.encoding), "UNKN")
        return f"{head} size={t.size} bits_offset={t.bit_offset} nr_bits={t.bits} encoding={enc}"
    if isinstance(t, Array):
        return f"{head} type_id={t.elem_id} index_type_id={t.index_id} nr_elems={t.nelems}"
    if isinstance(t, Composite):
        lines = [f"{head} size={t.size} vlen={len(t.members)}"]
        for m in t.members:
            line = f"\t{_q(m.name)} type_id={m.type_id} bits_offset={m.bit_offset}"
            if m.bitfield_size:
                line += f" bitfield_size={m.bitfield_size}"
            lines.append(line)
        return "\n".join(lines)
    if isinstance(t, Enum):
        kind = "ENUM64" if t.is64 else "ENUM"
        lines = [f"[{t.id}] {kind} {_q(t.name)} encoding={'SIGNED' if t.signed else 'UNSIGNED'} "
                 f"size={t.size} vlen={len(t.values)}"]
        suffix = ("LL" if t.signed else "ULL") if t.is64 else ""
        lines += [f"\t{_q(v.name)} val={v.value}{suffix}" for v in t.values]
        return "\n".join(lines)
    if isinstance(t, Fwd):
        return f"{head} fwd_kind={'union' if t.is_union else 'struct'}"
    if isinstance(t, Func):
        return f"{head} type_id={t.type_id} linkage={_LINKAGES.get(int(t.linkage), '(unknown)')}"
    if isinstance(t, FuncProto):
        lines = [f"{head} ret_type_id={t.return_id} vlen={len(t.params)}"]
        lines += [f"\t{_q(p.name)} type_id={p.type_id}" for p in t.params]
        return "\n".join(lines)
    if isinstance(t, Var):
        return f"{head} type_id={t.type_id}, linkage={_LINKAGES.get(int(t.linkage), '(unknown)')}"
    if isinstance(t, Datasec):
        lines = [f"{head} size={t.size} vlen={len(t.vars)}"]
        for v in t.vars:
            line = f"\ttype_id={v.type_id} offset={v.offset} size={v.size}"
            if t.spec is not None and 0 < v.type_id < t.spec.next_id:
                var = v.var
                line += f" ({var.kind.name} {_q(var.name)})"
            lines.append(line)
        return "\n".join(lines)
    if isinstance(t, Float):
        return f"{head} size={t.size}"
    if isinstance(t, DeclTag):
        return f"{head} type_id={t.type_id} component_idx={t.component_idx}"
    if isinstance(t, _Ref):  # PTR, TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG
        return f"{head} type_id={t.type_id}"
    return head


def raw_dump(spec: Spec) -> Iterator[str]:
    """The spec's own types in bpftool's raw format, one string (with newline) per type."""
    for t in spec:
        yield format_raw_type(t) + "\n"


# ---- the command ----------------------------------------------------------------------------------


@click.group()
def btf() -> None:
    """Inspect BTF type information."""


@btf.command()
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Raw BTF file or ELF object with a .BTF section [default: the running kernel's vmlinux BTF].")
@click.option("--base", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Base BTF for split BTF (module BTF under /sys/kernel/btf gets vmlinux automatically).")
@click.option("--format", "fmt", type=click.Choice(["c", "raw"]), default="c", show_default=True,
              help="c: a compilable header (vmlinux.h); raw: one line per type, as `bpftool btf dump`.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), default=None,
              help="Write to this file instead of standard output.")
def dump(path: str | None, base: str | None, fmt: str, output: str | None) -> None:
    """Dump BTF types as C declarations or as raw text."""
    try:
        spec = load_btf_file(path, base)
        if fmt == "c":
            from pybpf.btf.cdump import vmlinux_header

            text = vmlinux_header(spec)
        else:
            text = "".join(raw_dump(spec))
    except (BPFError, ValueError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
    if output is None:
        sys.stdout.write(text)
        sys.stdout.flush()
    else:
        Path(output).write_text(text)
