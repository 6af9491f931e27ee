"""Load an object's specs into the kernel: BTF, maps, externs, CO-RE, programs (the whole load, which
`pybpf.collection.load` does when it has no cached plan).

Everything that depends on the running kernel happens here, never in `pybpf.elf`.
"""

from __future__ import annotations

import os

from pybpf import asm
from pybpf._sys import types as T
from pybpf._sys.kernel import kernel_version_code
from pybpf.btf import Func, Int, Var, kernel_spec
from pybpf.btf import types as bt
from pybpf.collection import Collection, create_map, fill_slots
from pybpf.errors import BPFError, NotSupportedError, ObjectError
from pybpf.map import default_codecs
from pybpf.program import Program, ProgramSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from pybpf._sys.fd import FD
    from pybpf.btf.core import TargetBTF
    from pybpf.btf.marshal import KernelBTFFeatures
    from pybpf.elf.collection import CollectionSpec, ExternSpec
    from pybpf.map import MapSpec

__all__ = ["btf_ids", "kernel_config", "load_spec"]

_KCONFIG = ".kconfig"


# ---- kconfig ---------------------------------------------------------------------------------------------


_kconfig_cache: dict[str, str] | None = None


def kernel_config() -> dict[str, str]:
    """CONFIG_* of the running kernel from /proc/config.gz or /boot/config-$(uname -r)."""
    global _kconfig_cache
    if _kconfig_cache is None:
        text = ""
        for path in ("/proc/config.gz", f"/boot/config-{os.uname().release}"):
            try:
                if path.endswith(".gz"):
                    import gzip  # only for kconfig externs

                    with gzip.open(path, "rt") as f:
                        text = f.read()
                else:
                    with open(path) as f:
                        text = f.read()
                break
            except OSError:
                continue
        cfg: dict[str, str] = {}
        for line in text.splitlines():
            if line.startswith("CONFIG_") and "=" in line:
                k, v = line.split("=", 1)
                cfg[k] = v
        _kconfig_cache = cfg
    return _kconfig_cache


def _has_syscall_wrapper() -> bool:
    # kallsyms, as libbpf checks (6.1's BTF lacks the __x64_sys_* wrappers even where they exist).
    from pybpf.link.ksyscall import has_syscall_wrapper

    return has_syscall_wrapper()


def _kconfig_value(ext: ExternSpec) -> bytes | None:
    """The bytes of one kconfig extern, or None when the kernel has no value for it."""
    t = ext.type.type.strip() if isinstance(ext.type, Var) else ext.type.strip()
    name = ext.name
    if name == "LINUX_KERNEL_VERSION":
        return kernel_version_code().to_bytes(ext.size, "little")
    if name == "LINUX_HAS_BPF_COOKIE":
        return (1).to_bytes(ext.size, "little")  # 5.15+: every kernel pybpf supports for links
    if name == "LINUX_HAS_SYSCALL_WRAPPER":
        return int(_has_syscall_wrapper()).to_bytes(ext.size, "little")
    if not name.startswith("CONFIG_"):
        raise ObjectError(f"unknown kconfig extern {name!r} (only CONFIG_* and LINUX_* are defined)")
    raw = kernel_config().get(name)
    if raw is None:
        return None
    if isinstance(t, bt.Array):
        text = raw.strip('"').encode()[: ext.size - 1]
        return text.ljust(ext.size, b"\0")
    if raw in ("y", "m", "n"):
        # bool externs take 1 for y; enum libbpf_tristate takes TRI_YES=1 / TRI_MODULE=2.
        val = {"y": 1, "m": 2, "n": 0}[raw]
        if isinstance(t, Int) and t.encoding & bt.IntEncoding.BOOL and raw == "m":
            raise ObjectError(f"kconfig {name}=m does not fit a bool extern; use enum libbpf_tristate")
        return val.to_bytes(ext.size, "little")
    try:
        num = int(raw, 0)
    except ValueError:
        raise ObjectError(f"kconfig {name}={raw} is not a number for a {ext.size}-byte extern")
    signed = isinstance(t, Int) and t.signed
    return num.to_bytes(ext.size, "little", signed=signed)


def load_spec(
    spec: CollectionSpec,
    *,
    log_level: int = 0,
    pin_root: str = "/sys/fs/bpf",
    targets: TargetBTF | None = None,
) -> Collection:
    btf_fd, blob = _load_btf(spec)
    coll = Collection(spec, btf_fd)
    coll.btf_blob = blob
    try:
        _create_maps(coll, spec, btf_fd, pin_root)
        _load_programs(coll, spec, btf_fd, log_level, targets)
        fill_slots(coll, spec.maps, spec.programs)
    except BaseException:
        coll.close()
        raise
    return coll


def _load_btf(spec: CollectionSpec) -> tuple[FD | None, bytes | None]:
    """The object's BTF loaded into the kernel, and the blob it was given."""
    if spec.btf is None:
        return None, None
    from pybpf.btf import marshal

    # Optimistic, as the kernel is usually current: load the BTF as it is first, and only when the
    # kernel refuses it probe which BTF kinds it knows and sanitise (importing and running the feature
    # probes costs more than the whole load of a small object).
    blob = _object_btf_blob(spec, None)
    fd = _try_load_btf(blob)
    if fd is not None:
        return fd, blob
    features = None
    try:
        from pybpf.features import kernel_btf_features

        features = kernel_btf_features()
    except ImportError:
        pass
    sanitised = features is not None and not features.all_supported()
    if sanitised:
        blob = _object_btf_blob(spec, features)
    # The same blob again: straight to the attempt with a log, for the error message.
    return marshal.load_into_kernel(blob, log_level=0 if sanitised else 1), blob


def _object_btf_blob(spec: CollectionSpec, features: KernelBTFFeatures | None) -> bytes:
    from pybpf.btf import marshal

    assert spec.btf is not None
    raws, strings = marshal.raw_types_and_strings(spec.btf)  # the string section split and decoded once
    _fixup_ksyms_btf(raws)
    _hide_functions(raws, spec.hidden_functions)
    return marshal.for_kernel(raws, features, strings=strings, section_sizes=spec.section_sizes,
                              symbol_offsets=spec.symbol_offsets)


def _try_load_btf(blob: bytes) -> FD | None:
    """One BPF_BTF_LOAD without a log: the fd, or None if the kernel refused (the caller retries)."""
    from pybpf._sys.syscall import btf_load

    try:
        return btf_load(blob)
    except BPFError:
        return None


def _hide_functions(raws: list[Any], hidden: set[str]) -> None:
    """Global functions with hidden visibility become static in the kernel's BTF, as libbpf does."""
    from pybpf.btf.types import Kind

    for r in raws:
        if r.kind == Kind.FUNC and r.vlen == 1 and r.name in hidden:
            r.vlen = 0  # BTF_FUNC_STATIC


def _fixup_ksyms_btf(raws: list[Any]) -> None:
    """Make extern kfuncs loadable, as libbpf does: the kernel rejects FUNCs with extern linkage and
    DATASEC entries that are not VARs, so .ksyms FUNC entries point at a stand-in int VAR instead."""
    from pybpf.btf import marshal
    from pybpf.btf.types import Kind

    int_id = 0
    for i, r in enumerate(raws):
        if not int_id and r.kind == Kind.INT and r.size_type == 4:
            int_id = i + 1
    if not int_id:
        raws.append(marshal.RawType(Kind.INT, "int", 4, 0, False, [(1 << 24) | 32]))
        int_id = len(raws)
    for r in raws:
        if r.kind == Kind.FUNC and r.vlen == 2:  # BTF_FUNC_EXTERN
            r.vlen = 1  # BTF_FUNC_GLOBAL
        elif r.kind == Kind.VAR and r.extra and r.extra[0] == 2:  # BTF_VAR_GLOBAL_EXTERN
            r.extra[0] = 1  # BTF_VAR_GLOBAL_ALLOCATED
            if _raw_size(raws, int(r.size_type)) == 0:  # typeless ksym (void): the kernel wants a size
                r.size_type = int_id
    for r in raws:
        if r.kind != Kind.DATASEC or r.name != ".ksyms":
            continue
        # The kernel wants every DATASEC entry allocated: lay the externs out one after another.
        offset = 0
        for j in range(0, len(r.extra), 3):
            target = raws[int(r.extra[j]) - 1]
            if target.kind == Kind.FUNC:
                raws.append(marshal.RawType(Kind.VAR, target.name, int_id, 0, False, [1]))
                r.extra[j] = len(raws)
                target = raws[-1]
            size = _raw_size(raws, target.size_type) or 4
            r.extra[j + 1] = offset
            r.extra[j + 2] = size
            offset += size
        r.size_type = offset


def _raw_size(raws: list[Any], type_id: int) -> int:
    from pybpf.btf.types import Kind

    for _ in range(32):
        if type_id == 0:
            return 0
        t = raws[type_id - 1]
        if t.kind in (Kind.INT, Kind.STRUCT, Kind.UNION, Kind.ENUM, Kind.ENUM64, Kind.FLOAT, Kind.DATASEC):
            return int(t.size_type)
        if t.kind == Kind.PTR:
            return 8
        if t.kind == Kind.ARRAY:
            return int(t.extra[2]) * _raw_size(raws, int(t.extra[0]))
        type_id = int(t.size_type)
    return 0


def _create_maps(coll: Collection, spec: CollectionSpec, btf_fd: FD | None, pin_root: str) -> None:
    kconfig = spec.maps.get(_KCONFIG)
    if kconfig is not None:
        data = bytearray(kconfig.value_size)
        for ext in spec.externs.values():
            if ext.kind != "kconfig":
                continue
            value = _kconfig_value(ext)
            if value is None:
                if not ext.weak:
                    raise ObjectError(f"{spec.name}: the kernel config has no {ext.name}; declare the extern "
                                      "__weak to accept 0", section=_KCONFIG)
                continue
            data[ext.offset : ext.offset + ext.size] = value
        kconfig.data = bytes(data)

    for key, mspec in spec.maps.items():
        inner_ids = btf_ids(mspec.inner) if mspec.inner is not None else (0, 0)
        coll.maps[key] = create_map(mspec, btf_fd, pin_root, btf_ids(mspec), default_codecs(mspec), inner_ids)


# Map types created without BTF key/value ids, as libbpf does (the kernel refuses or ignores them).
_NO_BTF_MAP_TYPES = frozenset({
    T.MapType.PERF_EVENT_ARRAY, T.MapType.CGROUP_ARRAY, T.MapType.STACK_TRACE, T.MapType.ARRAY_OF_MAPS,
    T.MapType.HASH_OF_MAPS, T.MapType.DEVMAP, T.MapType.DEVMAP_HASH, T.MapType.CPUMAP, T.MapType.XSKMAP,
    T.MapType.SOCKMAP, T.MapType.SOCKHASH, T.MapType.QUEUE, T.MapType.STACK, T.MapType.RINGBUF,
    T.MapType.PROG_ARRAY,
})


def btf_ids(mspec: MapSpec) -> tuple[int, int]:
    """The key and value type ids a map is created with (0, 0 for types the kernel refuses them for)."""
    if mspec.type in _NO_BTF_MAP_TYPES:
        return 0, 0
    kid = mspec.key_type.id if mspec.key_type is not None else 0
    vid = mspec.value_type.id if mspec.value_type is not None else 0
    return kid, vid


def _load_programs(coll: Collection, spec: CollectionSpec, btf_fd: FD | None, log_level: int,
                   targets: TargetBTF | None) -> None:
    loading = [name for name, pspec in spec.programs.items() if pspec.autoload]
    relos = [relo for name in loading for _, relo in spec.core_relos.get(name, ())]
    if relos and spec.btf is not None:
        # How many kernel types CO-RE will look up decides how it finds them (a search each, or sorting
        # every name of vmlinux once).
        (targets or _targets()).expect(spec.btf, relos)
    for name in loading:
        pspec = spec.programs[name]
        final = _relocate(coll, spec, name, pspec, targets)
        if final.type in (T.ProgType.TRACING, T.ProgType.LSM, T.ProgType.EXT) and not final.attach_btf_id:
            # tp_btf/fentry/fexit/fmod_ret/lsm/iter name their target by kernel BTF id at load time.
            from pybpf.link.tracing import resolve_attach_btf

            resolve_attach_btf(final)
        coll.programs[name] = Program.load(final, btf_fd=btf_fd, log_level=log_level)


_target_cache: TargetBTF | None = None


def _targets() -> TargetBTF:
    global _target_cache
    if _target_cache is None:
        from pybpf.btf.core import TargetBTF

        _target_cache = TargetBTF.running()
    return _target_cache


def _relocate(coll: Collection, spec: CollectionSpec, name: str, pspec: ProgramSpec,
              targets: TargetBTF | None) -> ProgramSpec:
    """A copy of the program with map fds, global data, externs and CO-RE filled in for this kernel."""
    final = pspec.copy()
    insns = asm.Instructions(insn.copy() for insn in pspec.instructions)
    for rel in spec.relocations.get(name, ()):
        insn = insns[rel.index]
        if rel.kind in ("map", "map_value", "kconfig"):
            m = coll.maps.get(rel.target)
            if m is None:
                raise ObjectError(f"program {name} refers to map {rel.target!r}, which was not created")
            insn.imm = (insn.imm & ~0xFFFFFFFF) | int(m.fd) if rel.kind != "map" else int(m.fd)
        elif rel.kind == "ksym":
            if _relocate_ksym(insn, spec.externs[rel.target]):
                coll.depends_on_kallsyms = True
        elif rel.kind == "kfunc":
            _relocate_kfunc(insn, spec.externs[rel.target])
    relos = spec.core_relos.get(name)
    if relos:
        if spec.btf is None:
            raise ObjectError(f"program {name} has CO-RE relocations but the object has no BTF")
        from pybpf.btf import core

        tgt = targets or _targets()
        # Resolve in record order (candidate pruning depends on it, as in libbpf), then patch last to
        # first: poisoning an ld_imm64 shifts later instruction indexes.
        results = core.resolve_all([relo for _, relo in relos], spec.btf, tgt)
        # What module BTF says can change without a reboot (a module reloaded), so can a relocation
        # that found no target (a module loaded later may have one): such a load is not planned.
        if any(r.poison or (r.target is not None and r.target.btf_name != tgt.kernel_name) for r in results):
            coll.uses_module_btf = True
        for (index, _), result in sorted(zip(relos, results, strict=True), key=lambda r: r[0][0], reverse=True):
            core.apply(insns, index, result)
    final.instructions = insns
    return final


def _kernel_type_id(name: str, kinds: tuple[type[bt.Type], ...]) -> int:
    found = kernel_spec().types_by_name(name, kinds)
    return found[0].id if found else 0


# libbpf's poison for calls to absent weak kfuncs: an invalid helper id the verifier rejects only if the call is
# reachable, so a call guarded by bpf_ksym_exists() is pruned as dead code. (A kfunc call with BTF id 0 would be
# rejected before dead-code analysis.)
_POISONED_KFUNC_CALL = 2002000000


def _relocate_ksym(insn: asm.Instruction, ext: ExternSpec) -> bool:
    """Fill in a __ksym reference; True when the value is an address from /proc/kallsyms (which, for a
    module's symbol, changes when the module is reloaded)."""
    if ext.kind == "kfunc":
        # the address of a kernel function, i.e. bpf_ksym_exists(kfunc): its BTF id, or 0 for an absent weak one
        tid = _kfunc_id(ext)
        insn.src = asm.PSEUDO_BTF_ID if tid else 0
        insn.imm = tid
        return False
    if ext.typed:
        tid = _kernel_type_id(ext.name, (Var,))
        if not tid:
            if ext.weak:
                insn.src = 0
                insn.imm = 0
                return False
            raise NotSupportedError(f"kernel variable {ext.name} (__ksym)", detail="not in this kernel's BTF")
        insn.imm = tid  # BTF id in the first slot; BTF object fd 0 (vmlinux) in the second
        return False
    from pybpf.symbols import kernel_symbols

    try:
        addr = kernel_symbols().address_of(ext.name)
    except Exception:  # noqa: BLE001 - absent symbol
        addr = None
    if addr is None:
        if ext.weak:
            insn.imm = 0
            return False
        raise NotSupportedError(f"kernel symbol {ext.name} (__ksym)", detail="not in /proc/kallsyms")
    insn.imm = addr
    return True


def _kfunc_id(ext: ExternSpec) -> int:
    """The kernel BTF id of kfunc `ext`; 0 when it is absent and weak (raises when absent and strong)."""
    tid = _kernel_type_id(ext.name, (Func,))
    if not tid and not ext.weak:
        raise NotSupportedError(f"kfunc {ext.name}", detail="not in this kernel's BTF")
    return tid


def _relocate_kfunc(insn: asm.Instruction, ext: ExternSpec) -> None:
    tid = _kfunc_id(ext)
    if not tid:
        insn.src = 0
    insn.imm = tid or _POISONED_KFUNC_CALL
    insn.off = 0
