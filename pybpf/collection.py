"""Load an object's specs into the kernel: BTF, maps, externs, CO-RE, programs; and own the result.

    with pybpf.load("counter.bpf.o", set={"target_pid": 42}) as obj:
        obj.programs["count"].attach()
        print(obj.maps["counts"].items())

Everything that depends on the running kernel happens here, never in `pybpf.elf`.
"""

from __future__ import annotations

import os

from pybpf import asm
from pybpf._sys import types as T
from pybpf._sys.fd import FD
from pybpf._sys.kernel import kernel_version_code
from pybpf._sys.record import record
from pybpf.btf import Datasec, Func, Int, Var, kernel_spec
from pybpf.btf import types as bt
from pybpf.elf.collection import CollectionSpec, ExternSpec, VariableSpec
from pybpf.errors import BPFError, NotSupportedError, ObjectError
from pybpf.map import Map, MapSpec, RawCodec
from pybpf.program import Program, ProgramSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from types import TracebackType
    from typing import Any

    from pybpf.btf.core import TargetBTF
    from pybpf.btf.marshal import KernelBTFFeatures
    from pybpf.link.base import Link

__all__ = ["Collection", "ObjectFile", "Variable", "load", "open_object"]

_KCONFIG = ".kconfig"


# ---- values of variables -----------------------------------------------------------------------------


def encode_value(t: bt.Type, value: Any, size: int) -> bytes:
    """Python value -> bytes for a variable of BTF type t (through the BTF codec when it applies)."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > size:
            raise ValueError(f"{len(raw)} bytes do not fit a {size}-byte variable")
        return raw.ljust(size, b"\0")
    try:
        from pybpf.btf.codec import codec_for
    except ImportError:
        codec_for = None  # type: ignore[assignment]
    if codec_for is not None:
        encode, _ = codec_for(t)
        return bytes(encode(value))
    st = t.strip()
    if isinstance(value, bool):
        value = int(value)
    if isinstance(value, int) and isinstance(st, (Int, bt.Enum, bt.Pointer)):
        signed = (isinstance(st, Int) and st.signed) or (isinstance(st, bt.Enum) and st.signed)
        return value.to_bytes(size, "little", signed=signed and value < 0)
    if isinstance(value, str):
        raw = value.encode()
        if len(raw) >= size:
            raise ValueError(f"string of {len(raw)} bytes does not fit char[{size}]")
        return raw.ljust(size, b"\0")
    raise TypeError(f"cannot encode {value!r} as {t!r}; pass bytes")


def decode_value(t: bt.Type, raw: bytes) -> Any:
    try:
        from pybpf.btf.codec import codec_for
    except ImportError:
        codec_for = None  # type: ignore[assignment]
    if codec_for is not None:
        _, decode = codec_for(t)
        return decode(raw)
    st = t.strip()
    if isinstance(st, (Int, bt.Enum)):
        return int.from_bytes(raw, "little", signed=bool(st.signed))
    return bytes(raw)


@record
class Variable:
    """A global variable of a loaded collection. `.value` reads it; assigning writes it (through the
    map's mmap for .data/.bss, so the program sees it at once). .rodata variables are read-only after load."""

    spec: VariableSpec
    map: Map

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def raw(self) -> bytes:
        if self.map.flags & T.BPF_F_MMAPABLE:
            view = self.map.mmap()
            return bytes(view[self.spec.offset : self.spec.offset + self.spec.size])
        value = self.map.lookup(0)
        data = value if isinstance(value, (bytes, bytearray)) else bytes(value)
        return bytes(data[self.spec.offset : self.spec.offset + self.spec.size])

    @raw.setter
    def raw(self, data: bytes) -> None:
        if self.spec.read_only:
            raise PermissionError(f"{self.spec.name} is in {self.spec.section}: set it before load "
                                  "(pybpf.load(..., set={...}) or ObjectFile.set())")
        if len(data) != self.spec.size:
            raise ValueError(f"{self.spec.name} takes {self.spec.size} bytes, got {len(data)}")
        if self.map.flags & T.BPF_F_MMAPABLE:
            view = self.map.mmap()
            view[self.spec.offset : self.spec.offset + self.spec.size] = data
            return
        current = bytearray(self.map.lookup(0))
        current[self.spec.offset : self.spec.offset + self.spec.size] = data
        self.map.update(0, bytes(current))

    @property
    def value(self) -> Any:
        return decode_value(self.spec.type, self.raw)

    @value.setter
    def value(self, v: Any) -> None:
        self.raw = encode_value(self.spec.type, v, self.spec.size)

    def __repr__(self) -> str:
        return f"<Variable {self.spec.name} in {self.spec.section} = {self.value!r}>"


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


# ---- the loaded collection ------------------------------------------------------------------------------


class Collection:
    """Maps, programs and variables of one loaded object. Closing it closes them (links made through
    `attach_all` are detached first)."""

    def __init__(self, spec: CollectionSpec, btf_fd: FD | None) -> None:
        self.spec = spec
        self.name = spec.name
        self.btf_fd = btf_fd
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self.variables: dict[str, Variable] = {}
        self.links: list[Link] = []

    def attach_all(self, **targets: Any) -> dict[str, Exception]:
        """Attach every auto-attachable program (libbpf's auto-attach rules); returns the ones that could
        not be attached with the reason. Links are owned by the collection."""
        from pybpf.link.auto import attach_all

        links, failures = attach_all(self.programs.values(), **targets)
        self.links.extend(links)
        return failures

    def ringbuf(self, name: str, *, lost_variable: str = "dropped", **kwargs: Any) -> Any:
        """A RingBuffer reader of map `name`; its `lost` count reads the global `lost_variable` if there is one."""
        from pybpf.events.ringbuf import RingBuffer

        if "lost_counter" not in kwargs and lost_variable in self.variables:
            counter = self.variables[lost_variable]
            kwargs["lost_counter"] = lambda: int(counter.value)
        return RingBuffer(self.maps[name], **kwargs)

    def perfbuf(self, name: str, **kwargs: Any) -> Any:
        from pybpf.events.perfbuf import PerfBuffer

        return PerfBuffer(self.maps[name], **kwargs)

    def close(self) -> None:
        from pybpf.link.base import detach_all

        detach_all(self.links)
        self.links.clear()
        for p in self.programs.values():
            p.close()
        for m in self.maps.values():
            m.close()
        if self.btf_fd is not None:
            self.btf_fd.close()
            self.btf_fd = None

    def __enter__(self) -> Collection:
        return self

    def __exit__(self, t: type[BaseException] | None, v: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Collection {self.name}: {len(self.programs)} programs, {len(self.maps)} maps>"


# ---- loading ----------------------------------------------------------------------------------------------


class ObjectFile:
    """An opened object file: specs to adjust before loading (libbpf's open phase).

        obj = pybpf.open_object("x.bpf.o")
        obj.maps["events"].max_entries = 1 << 20
        obj.programs["slow_path"].autoload = False
        obj.set("target_pid", 1234)          # .rodata (const volatile) or .data/.bss initial value
        coll = obj.load()
    """

    def __init__(self, spec: CollectionSpec) -> None:
        self.spec = spec

    @property
    def maps(self) -> dict[str, MapSpec]:
        return self.spec.maps

    @property
    def programs(self) -> dict[str, ProgramSpec]:
        return self.spec.programs

    @property
    def variables(self) -> dict[str, VariableSpec]:
        return self.spec.variables

    def set(self, name: str, value: Any) -> None:
        """Set a global variable's initial value (the only way to set .rodata)."""
        var = self.spec.variables.get(name)
        if var is None:
            known = ", ".join(sorted(self.spec.variables)) or "none"
            raise KeyError(f"{self.spec.name} has no global variable {name!r} (variables: {known})")
        raw = encode_value(var.type, value, var.size)
        mspec = self.spec.maps[var.section]
        data = bytearray(mspec.data if mspec.data is not None else bytes(mspec.value_size))
        data[var.offset : var.offset + var.size] = raw
        mspec.data = bytes(data)

    def load(self, **kwargs: Any) -> Collection:
        return load_spec(self.spec, **kwargs)


def open_object(source: str | os.PathLike[str] | bytes) -> ObjectFile:
    """Read an object file (no kernel involved): adjust its specs, then `.load()`."""
    from pybpf.elf import read

    path = os.fspath(source) if not isinstance(source, bytes) else source
    if isinstance(path, str) and path.endswith(".c"):
        from pybpf.toolchain import compile as compile_c

        path = str(compile_c(path))
    return ObjectFile(read(path))


def load(
    source: str | os.PathLike[str] | bytes | CollectionSpec,
    *,
    set: Mapping[str, Any] | None = None,  # noqa: A002 - mirrors the CLI's --set
    max_entries: Mapping[str, int] | None = None,
    autoload: Mapping[str, bool] | None = None,
    log_level: int = 0,
    pin_root: str = "/sys/fs/bpf",
    targets: TargetBTF | None = None,
) -> Collection:
    """Read (or take) an object's specs and load it into the kernel. `.bpf.c` sources are compiled first."""
    obj = ObjectFile(source) if isinstance(source, CollectionSpec) else open_object(source)
    for name, value in (set or {}).items():
        obj.set(name, value)
    for name, n in (max_entries or {}).items():
        if name not in obj.maps:
            raise KeyError(f"no map {name!r} in {obj.spec.name}")
        obj.maps[name].max_entries = n
    for name, flag in (autoload or {}).items():
        if name not in obj.programs:
            raise KeyError(f"no program {name!r} in {obj.spec.name}")
        obj.programs[name].autoload = flag
    return load_spec(obj.spec, log_level=log_level, pin_root=pin_root, targets=targets)


def load_spec(
    spec: CollectionSpec,
    *,
    log_level: int = 0,
    pin_root: str = "/sys/fs/bpf",
    targets: TargetBTF | None = None,
) -> Collection:
    btf_fd = _load_btf(spec)
    coll = Collection(spec, btf_fd)
    try:
        _create_maps(coll, spec, btf_fd, pin_root)
        _load_programs(coll, spec, btf_fd, log_level, targets)
        _fill_contents(coll, spec)
        for name, vspec in spec.variables.items():
            if vspec.section in coll.maps:
                coll.variables[name] = Variable(vspec, coll.maps[vspec.section])
    except BaseException:
        coll.close()
        raise
    return coll


def _load_btf(spec: CollectionSpec) -> FD | None:
    if spec.btf is None:
        return None
    from pybpf.btf import marshal

    # Optimistic, as the kernel is usually current: load the BTF as it is first, and only when the
    # kernel refuses it probe which BTF kinds it knows and sanitise (importing and running the feature
    # probes costs more than the whole load of a small object).
    blob = _object_btf_blob(spec, None)
    fd = _try_load_btf(blob)
    if fd is not None:
        return fd
    features = None
    try:
        from pybpf.features import kernel_btf_features

        features = kernel_btf_features()
    except ImportError:
        pass
    if features is not None and not features.all_supported():
        blob = _object_btf_blob(spec, features)
    return marshal.load_into_kernel(blob)


def _object_btf_blob(spec: CollectionSpec, features: KernelBTFFeatures | None) -> bytes:
    from pybpf.btf import marshal

    assert spec.btf is not None
    raws = marshal.raw_types(spec.btf)
    _fixup_ksyms_btf(raws)
    _hide_functions(raws, {name for _, name in spec.hidden_symbols})
    return marshal.for_kernel(raws, features, strings=spec.btf._strings, section_sizes=spec.section_sizes,
                              symbol_offsets=spec.symbol_offsets)


def _try_load_btf(blob: bytes) -> FD | None:
    """One BPF_BTF_LOAD without a log: the fd, or None if the kernel refused (the caller retries)."""
    import ctypes

    from pybpf._sys.syscall import bpf_fd

    data = ctypes.create_string_buffer(blob, len(blob))
    attr = T.BtfLoadAttr()
    attr.btf = ctypes.addressof(data)
    attr.btf_size = len(blob)
    try:
        return bpf_fd(T.Cmd.BTF_LOAD, attr, "BTF")
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
        coll.maps[key] = _create_map(mspec, btf_fd, pin_root)


# Map types created without BTF key/value ids, as libbpf does (the kernel refuses or ignores them).
_NO_BTF_MAP_TYPES = frozenset({
    T.MapType.PERF_EVENT_ARRAY, T.MapType.CGROUP_ARRAY, T.MapType.STACK_TRACE, T.MapType.ARRAY_OF_MAPS,
    T.MapType.HASH_OF_MAPS, T.MapType.DEVMAP, T.MapType.DEVMAP_HASH, T.MapType.CPUMAP, T.MapType.XSKMAP,
    T.MapType.SOCKMAP, T.MapType.SOCKHASH, T.MapType.QUEUE, T.MapType.STACK, T.MapType.RINGBUF,
    T.MapType.PROG_ARRAY,
})


def _btf_ids(mspec: MapSpec) -> tuple[int, int]:
    kid = mspec.key_type.id if mspec.key_type is not None else 0
    vid = mspec.value_type.id if mspec.value_type is not None else 0
    return kid, vid


def _create_map(mspec: MapSpec, btf_fd: FD | None, pin_root: str) -> Map:
    pin_path = os.path.join(pin_root, mspec.name) if mspec.pinning else ""
    if pin_path and os.path.exists(pin_path):
        existing = Map.from_pin(pin_path)
        if (existing.type, existing.key_size, existing.value_size, existing.max_entries) != (
            mspec.type, mspec.key_size, mspec.value_size, mspec.max_entries):
            existing.close()
            raise BPFError(f"pinned map {pin_path} does not match the object's definition of {mspec.name}; "
                           "remove the pin or fix the definition")
        return existing
    inner_fd: FD | None = None
    inner: Map | None = None
    if mspec.inner is not None:
        inner = _create_map(mspec.inner, btf_fd, pin_root="")  # template only
        inner_fd = inner.fd
    kid, vid = _btf_ids(mspec) if mspec.type not in _NO_BTF_MAP_TYPES else (0, 0)
    key_codec, value_codec = _codecs(mspec)
    create_spec = mspec
    if any(isinstance(v, str) for _, v in mspec.contents):
        # Slots naming programs or maps are filled once those exist (_fill_contents).
        create_spec = mspec.copy()
        create_spec.contents = []
    try:
        m = Map.create(create_spec, btf_fd=btf_fd if (kid or vid) else None, btf_key_type_id=kid,
                       btf_value_type_id=vid, inner_map_fd=inner_fd, key=key_codec, value=value_codec)
    finally:
        if inner is not None:
            inner.close()
    if pin_path:
        m.pin(pin_path)
    return m


def _codecs(mspec: MapSpec) -> tuple[Any, Any]:
    """BTF codecs for keys and values when the object describes them (raw bytes otherwise)."""
    if mspec.type in (T.MapType.RINGBUF, T.MapType.PERF_EVENT_ARRAY) or isinstance(mspec.value_type, Datasec):
        # Global data is read through Variables; the value is the whole section.
        return ("=I" if mspec.key_size == 4 else RawCodec(mspec.key_size)), RawCodec(mspec.value_size)
    return mspec.key_type, mspec.value_type


def _load_programs(coll: Collection, spec: CollectionSpec, btf_fd: FD | None, log_level: int,
                   targets: TargetBTF | None) -> None:
    for name, pspec in spec.programs.items():
        if not pspec.autoload:
            continue
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
            _relocate_ksym(insn, spec.externs[rel.target])
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
        for (index, _), result in sorted(zip(relos, results, strict=True), key=lambda r: r[0][0], reverse=True):
            core.apply(insns, index, result)
    final.instructions = insns
    return final


def _kernel_type_id(name: str, kinds: tuple[type[bt.Type], ...]) -> int:
    found = [t for t in kernel_spec().types_by_name(name, kinds)]
    return found[0].id if found else 0


# libbpf's poison for calls to absent weak kfuncs: an invalid helper id the verifier rejects only if the call is
# reachable, so a call guarded by bpf_ksym_exists() is pruned as dead code. (A kfunc call with BTF id 0 would be
# rejected before dead-code analysis.)
_POISONED_KFUNC_CALL = 2002000000


def _relocate_ksym(insn: asm.Instruction, ext: ExternSpec) -> None:
    if ext.kind == "kfunc":
        # the address of a kernel function, i.e. bpf_ksym_exists(kfunc): its BTF id, or 0 for an absent weak one
        tid = _kernel_type_id(ext.name, (Func,))
        if not tid and not ext.weak:
            raise NotSupportedError(f"kfunc {ext.name}", detail="not in this kernel's BTF")
        insn.src = asm.PSEUDO_BTF_ID if tid else 0
        insn.imm = tid
        return
    if ext.typed:
        tid = _kernel_type_id(ext.name, (Var,))
        if not tid:
            if ext.weak:
                insn.src = 0
                insn.imm = 0
                return
            raise NotSupportedError(f"kernel variable {ext.name} (__ksym)", detail="not in this kernel's BTF")
        insn.imm = tid  # BTF id in the first slot; BTF object fd 0 (vmlinux) in the second
        return
    from pybpf.symbols import kernel_symbols

    try:
        addr = kernel_symbols().address_of(ext.name)
    except Exception:  # noqa: BLE001 - absent symbol
        if ext.weak:
            insn.imm = 0
            return
        raise NotSupportedError(f"kernel symbol {ext.name} (__ksym)", detail="not in /proc/kallsyms")
    if addr is None:
        if ext.weak:
            insn.imm = 0
            return
        raise NotSupportedError(f"kernel symbol {ext.name} (__ksym)", detail="not in /proc/kallsyms")
    insn.imm = addr


def _relocate_kfunc(insn: asm.Instruction, ext: ExternSpec) -> None:
    tid = _kernel_type_id(ext.name, (Func,))
    if not tid:
        if ext.weak:
            insn.src = 0
            insn.imm = _POISONED_KFUNC_CALL
            insn.off = 0
            return
        raise NotSupportedError(f"kfunc {ext.name}", detail="not in this kernel's BTF")
    insn.imm = tid
    insn.off = 0


def _fill_contents(coll: Collection, spec: CollectionSpec) -> None:
    """Slots of prog arrays and maps of maps that the object initialises (`values = {...}`)."""
    for key, mspec in spec.maps.items():
        if not any(isinstance(v, str) for _, v in mspec.contents):
            continue  # Map.create filled them
        m = coll.maps[key]
        for slot, target in mspec.contents:
            if isinstance(target, str):
                obj: Program | Map | None = coll.programs.get(target) or coll.maps.get(target)
                if obj is None:
                    if target in spec.programs:
                        continue  # not autoloaded: leave the slot empty, as libbpf does
                    raise ObjectError(f"map {key} slot {slot} refers to unknown {target!r}")
                m.update(int(slot).to_bytes(4, "little"), int(obj.fd).to_bytes(4, "little"))



def programs_of(coll: Collection) -> Iterable[Program]:
    return coll.programs.values()
