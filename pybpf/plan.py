"""Cached load plans: what loading an object sent to the kernel, replayed without reading the object again.

Loading an object reads its ELF and BTF, relocates CO-RE against the kernel's BTF, resolves externs and
sanitises the BTF for the kernel: tens of milliseconds of Python (and of imports) before the first
syscall. The outcome depends only on the object file, `load()`'s options and the running kernel, so after
a load `save()` writes down what went to the kernel: the BTF blob, each map's create parameters and
initial data, and each program's final instructions (with the slots that take map fds) and load
parameters. `load()` replays that with a handful of syscalls, importing none of pybpf.elf, pybpf.btf or
pybpf.asm; the collection's specs, its variables and BTF-typed key/value codecs are built from the object
file on first use. (libbpf's "light skeletons" make the same trade at build time.)

A plan is used only when the object file (device, inode, size, mtime), the kernel boot (boot_id), pybpf
(version and loading code) and the options are the ones it was made with, and when it belongs to this user
and is writable by nobody else (it is loaded into the kernel). Loads that depend on more are not planned:
BTF targets given by the caller, a verifier log, programs attached by fd or to kernel-module BTF, CO-RE
resolved against module BTF (or not at all), untyped `__ksym` addresses from kallsyms. Any failure while
replaying falls back to the whole load, which reports errors with the object's source lines.

Plans live in `plans/` of pybpf's cache (`$PYBPF_CACHE`, default `~/.cache/pybpf`) as marshal data.
"""

from __future__ import annotations

import marshal
import os
import struct

from pybpf import __version__
from pybpf._cache import boot_id, cache_root, write_atomically
from pybpf._lazy import cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from pybpf._sys.fd import FD
    from pybpf.collection import Collection, ObjectFile
    from pybpf.elf.collection import CollectionSpec
    from pybpf.map import Map, MapSpec
    from pybpf.program import ProgramSpec


__all__ = ["identity", "load", "options_key", "plan_path", "save"]

_FORMAT = 3
_INSN = 8
_LD_IMM64 = 0x18  # BPF_LD | BPF_IMM | BPF_DW
_PSEUDO_MAP_FD = 1
_PSEUDO_MAP_VALUE = 2
# pybpf's modules whose changes change plans (with the version).
_PLANNING_CODE = ("loader.py", "plan.py", "btf/core.py", "btf/marshal.py", "elf/reader.py", "elf/sections.py",
                  "map.py")  # the last two: plans keep section splits and codec kinds
# Plans kept: past the first number, saving one removes the least recently written down to the second.
_KEEP_MAX = 256
_KEEP_AFTER_PRUNE = 192


class _NotPlannable(Exception):
    """This load depends on something a plan cannot replay."""


# ---- where plans are and what they are valid for ------------------------------------------------------------


def options_key(*options: Any) -> str | None:
    """A stable text for the options a load was made with (None when one of them has none, e.g. an
    object shown by address)."""
    text = repr(options)
    return None if " at 0x" in text else text


def plan_path(ident: tuple[Any, ...]) -> str:
    """The file the plan for a load with `ident` (see identity: the object's real path, the options) is kept
    in. (The cache is bounded by pruning, not by keeping one plan per object: a library script and `pybpf
    run` load the same object with different options, and would replace each other's plan at every run.)"""
    real, key = ident[3], ident[-1]
    digest = _digest(f"{real}\0{key}".encode())
    return os.path.join(cache_root(), "plans", f"{os.path.basename(real)}.{digest:016x}.plan")


def _digest(data: bytes) -> int:
    """64-bit FNV-1a: stable across runs (unlike hash()), and no zlib/hashlib import (~0.4 ms) at start-up."""
    h = 0xCBF29CE484222325
    for byte in data:
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def identity(path: str, key: str) -> tuple[Any, ...]:
    """What a plan must have been made for: the object file (taken before it is read, so that a file
    rebuilt during a load does not get that load's plan), the kernel boot, pybpf's loading code, options."""
    st = os.stat(path)
    return (_FORMAT, __version__, _code_stamp(), os.path.realpath(path), st.st_dev, st.st_ino, st.st_size,
            st.st_mtime_ns, boot_id(), key)


@cache
def _code_stamp() -> tuple[int, ...]:
    # The version names a release; an editable install changes code under one version. Once per process:
    # the code it runs is what it imported.
    here = os.path.dirname(__file__)
    return tuple(os.stat(os.path.join(here, name)).st_mtime_ns for name in _PLANNING_CODE)


def _unchanged(path: str, ident: tuple[Any, ...]) -> bool:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns) == ident[4:8]


# ---- replaying --------------------------------------------------------------------------------------------


def load(path: str, ident: tuple[Any, ...], pin_root: str, read: Callable[[], ObjectFile]) -> Collection | None:
    """The collection loaded from a valid plan for object `path` and `ident` (see identity), or None (no
    plan, or it failed).

    `read()` reads the object with the options applied: specs are built from it on first use."""
    where = plan_path(ident)
    try:
        fd = os.open(where, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            return None  # someone else could have written what would go into the kernel
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read()
    finally:
        os.close(fd)
    try:
        plan = marshal.loads(data)
        if plan[0] != ident:
            return None
    except (ValueError, EOFError, TypeError, IndexError):
        return None
    try:
        coll = _replay(plan, path, pin_root, read)
    except Exception:  # noqa: BLE001 - the whole load reports what went wrong, with source lines
        return None
    coll.plan = where
    return coll


def _replay(plan: tuple[Any, ...], path: str, pin_root: str, read: Callable[[], ObjectFile]) -> Collection:
    from pybpf._sys.syscall import btf_load
    from pybpf.collection import Collection, create_map, fill_slots
    from pybpf.errors import ObjectError
    from pybpf.map import raw_codecs

    ident, name, blob, map_plans, program_plans, all_programs, variable_names = plan
    btf_fd = btf_load(blob) if blob is not None else None

    @cache  # read once, by the first of the collection, its maps and programs to ask for a spec
    def collection_spec() -> CollectionSpec:
        if not _unchanged(path, ident):
            # Its offsets and types would not describe the maps and programs loaded from the plan.
            raise ObjectError(f"{path} changed since it was loaded; load it again to read its specs")
        return read().spec

    coll = Collection(collection_spec, btf_fd, name)
    coll.variable_names = frozenset(variable_names)
    try:
        specs: dict[str, MapSpec] = {}
        for key, mplan in map_plans:
            mspec, ids, inner_ids, codecs_kind = _map_spec(mplan)
            specs[key] = mspec
            codecs = raw_codecs(mspec.key_size, mspec.value_size) if codecs_kind == "raw" else (None, None)
            m = create_map(mspec, btf_fd, pin_root, ids, codecs, inner_ids)
            coll.maps[key] = m
            _defer_map(m, key, collection_spec, codecs_kind == "btf")
        fds = {key: int(m.fd) for key, m in coll.maps.items()}
        for pplan in program_plans:
            _load_program(coll, pplan, fds, btf_fd, collection_spec)
        fill_slots(coll, specs, all_programs)
    except BaseException:
        coll.close()  # its BTF fd too
        raise
    return coll


def _map_spec(mplan: tuple[Any, ...]) -> tuple[MapSpec, tuple[int, int], tuple[int, int], str]:
    from pybpf.map import MapSpec

    (name, type_, key_size, value_size, max_entries, flags, numa_node, map_extra, pinning, freeze, data, contents,
     ids, inner, codecs_kind) = mplan
    inner_spec, inner_ids = None, (0, 0)
    if inner is not None:
        inner_spec, inner_ids, _, _ = _map_spec(inner)
    mspec = MapSpec(name=name, type=type_, key_size=key_size, value_size=value_size, max_entries=max_entries,
                    flags=flags, inner=inner_spec, pinning=pinning, numa_node=numa_node, map_extra=map_extra,
                    contents=list(contents), freeze=freeze, data=data)
    return mspec, ids, inner_ids, codecs_kind


def _defer_map(m: Map, key: str, collection_spec: Callable[[], CollectionSpec], btf_codecs: bool) -> None:
    def codecs() -> tuple[Any, Any]:
        from pybpf.map import default_codecs

        return default_codecs(collection_spec().maps[key])

    m.defer(lambda: collection_spec().maps[key], codecs if btf_codecs else None)


def _load_program(coll: Collection, pplan: tuple[Any, ...], fds: dict[str, int], btf_fd: FD | None,
                  collection_spec: Callable[[], CollectionSpec]) -> None:
    from pybpf.program import Program, ProgramSpec

    (name, type_, attach_type, section, split, attach_to, license_, kernel_version, flags, sleepable, attach_btf_id,
     insns, fd_sites, func_info, func_info_rec_size, line_info, line_info_rec_size) = pplan
    code = bytearray(insns)
    for slot, key in fd_sites:
        struct.pack_into("<i", code, slot * _INSN + 4, fds[key])
    final = bytes(code)
    stub = ProgramSpec(
        # Plain ints for the types (enums cost start-up; the full spec read later has them) and the
        # final bytes for the instructions (they load as they are).
        name=name, type=type_, instructions=final,  # type: ignore[arg-type]
        license=license_, section=section, attach_to=attach_to, attach_type=attach_type,
        kernel_version=kernel_version, flags=flags, func_info=func_info, func_info_rec_size=func_info_rec_size,
        line_info=line_info, line_info_rec_size=line_info_rec_size, attach_btf_id=attach_btf_id,
        sleepable=sleepable)
    prog = Program.load(stub, btf_fd=btf_fd)
    prog.section_split = split  # attaching needs no section table
    coll.programs[name] = prog

    def program_spec() -> ProgramSpec:
        # What the whole load keeps: the object's spec with the instructions as loaded.
        from pybpf import asm

        full = collection_spec().programs[name].copy()
        full.instructions = asm.Instructions.decode(final)
        full.attach_btf_id = attach_btf_id
        return full

    prog.defer_spec(program_spec)


# ---- writing -----------------------------------------------------------------------------------------------


def save(path: str, ident: tuple[Any, ...], coll: Collection) -> None:
    """Write the plan of a collection just loaded from object `path` as `ident` (see identity) says (a
    cache: when the load cannot be planned, or the file cannot be written, nothing happens)."""
    where = plan_path(ident)
    try:
        plan = _plan_of(coll, ident)
        data = marshal.dumps(plan)
    except (_NotPlannable, OSError, ValueError, KeyError):
        return
    try:
        write_atomically(where, [data], mode=0o600, dir_mode=0o700)
    except OSError:
        return
    _prune(os.path.dirname(where))


def _prune(directory: str) -> None:
    """Bound the cache: objects built in temporary directories leave plans nobody will use again."""
    try:
        names = [n for n in os.listdir(directory) if n.endswith(".plan")]
        if len(names) <= _KEEP_MAX:
            return
        paths = sorted((os.path.join(directory, n) for n in names), key=os.path.getmtime)
        for old in paths[: len(paths) - _KEEP_AFTER_PRUNE]:
            os.unlink(old)
    except OSError:
        pass


def _plan_of(coll: Collection, ident: tuple[Any, ...]) -> tuple[Any, ...]:
    if coll.uses_module_btf:
        raise _NotPlannable("CO-RE used kernel-module BTF, which can change without a reboot")
    if coll.depends_on_kallsyms:
        raise _NotPlannable("__ksym addresses come from kallsyms, where modules move when reloaded")
    spec = coll.spec
    maps = [(key, _map_plan(spec.maps[key])) for key in coll.maps]
    by_fd = {int(m.fd): key for key, m in coll.maps.items()}
    programs = [_program_plan(name, p.spec, by_fd) for name, p in coll.programs.items()]
    return ident, coll.name, coll.btf_blob, maps, programs, list(spec.programs), list(coll.variables)


def _map_plan(mspec: MapSpec) -> tuple[Any, ...]:
    from pybpf.btf import Type
    from pybpf.loader import btf_ids
    from pybpf.map import default_codecs

    key_codec, value_codec = default_codecs(mspec)
    if isinstance(key_codec, Type) or isinstance(value_codec, Type):
        codecs_kind = "btf"
    elif key_codec is None and value_codec is None:
        codecs_kind = "none"
    else:
        codecs_kind = "raw"
    inner = _map_plan(mspec.inner) if mspec.inner is not None else None
    return (mspec.name, int(mspec.type), mspec.key_size, mspec.value_size, mspec.max_entries, mspec.flags,
            mspec.numa_node, mspec.map_extra, mspec.pinning, mspec.freeze, mspec.data, list(mspec.contents),
            btf_ids(mspec), inner, codecs_kind)


def _program_plan(name: str, pspec: ProgramSpec | None, by_fd: dict[int, str]) -> tuple[Any, ...]:
    if pspec is None:
        raise _NotPlannable(f"program {name} has no spec")
    if pspec.attach_btf_obj_fd is not None or pspec.attach_prog_fd is not None:
        raise _NotPlannable(f"program {name} is attached by fd")
    from pybpf.elf.sections import section_split

    insns = pspec.instructions if isinstance(pspec.instructions, bytes) else pspec.instructions.encode()
    return (name, int(pspec.type), int(pspec.attach_type) if pspec.attach_type is not None else None,
            pspec.section, section_split(pspec.section) if pspec.section else None, pspec.attach_to, pspec.license,
            pspec.kernel_version, pspec.flags, pspec.sleepable, pspec.attach_btf_id,
            insns, _fd_sites(name, insns, by_fd), pspec.func_info, pspec.func_info_rec_size, pspec.line_info,
            pspec.line_info_rec_size)


def _fd_sites(name: str, insns: bytes, by_fd: dict[int, str]) -> list[tuple[int, str]]:
    """(instruction slot, map key) of every ld_imm64 that takes a map's fd; refuses other fds."""
    from pybpf.asm.instruction import byte_positions  # saving only: the reader has imported it already

    sites = []
    for i in byte_positions(insns[::_INSN], _LD_IMM64):  # an ld_imm64's second slot has opcode 0
        if insns[i * _INSN + 1] >> 4 in (_PSEUDO_MAP_FD, _PSEUDO_MAP_VALUE):
            imm = struct.unpack_from("<i", insns, i * _INSN + 4)[0]
            key = by_fd.get(imm)
            if key is None:
                raise _NotPlannable(f"program {name} refers to map fd {imm}, not one of the collection's")
            sites.append((i, key))
    return sites
