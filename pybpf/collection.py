"""The loaded collection: the maps, programs and variables of one object, and `load()`, which makes one.

    with pybpf.load("counter.bpf.o", set={"target_pid": 42}) as obj:
        obj.programs["count"].attach()
        print(obj.maps["counts"].items())

`load()` replays a cached load plan when there is one for this object, kernel boot and options
(`pybpf.plan`); otherwise it reads the object and loads it through `pybpf.loader`, then saves the plan.
This module imports neither of the object readers (pybpf.elf, pybpf.btf): a cached load needs neither.
"""

from __future__ import annotations

import os

from pybpf._lazy import build_deferred, defer
from pybpf._sys import types as T
from pybpf._sys.record import record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping
    from types import TracebackType
    from typing import Any

    from pybpf._sys.fd import FD
    from pybpf.btf import types as bt
    from pybpf.btf.core import TargetBTF
    from pybpf.elf.collection import CollectionSpec, VariableSpec
    from pybpf.link.base import Link
    from pybpf.map import Map, MapSpec
    from pybpf.program import Program, ProgramSpec

__all__ = ["Collection", "ObjectFile", "Variable", "load", "load_file", "open_object"]


# ---- values of variables -----------------------------------------------------------------------------


def encode_value(t: bt.Type, value: Any, size: int) -> bytes:
    """Python value -> bytes for a variable of BTF type t: bytes as they are, anything else through the BTF
    codec."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) > size:
            raise ValueError(f"{len(raw)} bytes do not fit a {size}-byte variable")
        return raw.ljust(size, b"\0")
    from pybpf.btf.codec import codec_for

    encode, _ = codec_for(t)
    return bytes(encode(value))


def decode_value(t: bt.Type, raw: bytes) -> Any:
    """bytes -> Python value for a variable of BTF type t."""
    from pybpf.btf.codec import codec_for

    _, decode = codec_for(t)
    return decode(raw)


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


# ---- the loaded collection ------------------------------------------------------------------------------


class Collection:
    """Maps, programs and variables of one loaded object. Closing it closes them (links made through
    `attach_all` are detached first)."""

    spec: CollectionSpec
    variables: dict[str, Variable]
    variable_names: frozenset[str]  # the keys of `variables`, known without building them after a replay

    def __init__(self, spec: CollectionSpec | Callable[[], CollectionSpec], btf_fd: FD | None, name: str = "") -> None:
        """`spec` may be a function that builds it: a collection loaded from a cached plan reads its object
        file only when its `spec` (or `variables`, which come from it) is first asked for."""
        if callable(spec):
            defer(self, "spec", spec)
        else:
            self.spec = spec
            name = spec.name
        self.name = name
        self.btf_fd = btf_fd
        self.maps: dict[str, Map] = {}
        self.programs: dict[str, Program] = {}
        self.links: list[Link] = []
        # The BTF blob the kernel was given (what a load plan replays).
        self.btf_blob: bytes | None = None
        # The cached load plan this collection was loaded from (None: read from the object).
        self.plan: str | None = None
        # What loading used that can change without a reboot (then the load is not planned): CO-RE
        # resolved in kernel-module BTF (or not at all), kallsyms addresses (modules can be reloaded).
        self.uses_module_btf = False
        self.depends_on_kallsyms = False

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set: the variables and their names, built from the spec on first
        # use (a replayed plan sets the names), and the spec of a deferred collection.
        if name == "variables":
            self.variables = {vname: Variable(vspec, self.maps[vspec.section])
                              for vname, vspec in self.spec.variables.items() if vspec.section in self.maps}
            return self.variables
        if name == "variable_names":
            self.variable_names = frozenset(self.variables)
            return self.variable_names
        return build_deferred(self, name)

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

        if "lost_counter" not in kwargs and lost_variable in self.variable_names:
            # Looked up when the count is read: a replayed collection reads its object only then.
            kwargs["lost_counter"] = lambda: int(self.variables[lost_variable].value)
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
        from pybpf.loader import load_spec

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
    cache: bool = True,
) -> Collection:
    """Read (or take) an object's specs and load it into the kernel. `.bpf.c` sources are compiled first.

    With `cache` (the default), loading an object file the second time on the same kernel boot, with the
    same options, replays a saved load plan (`pybpf.plan`) instead of reading and relocating the object
    again; `cache=False` always does the whole load (and saves no plan).
    """
    if not isinstance(source, (str, os.PathLike)):
        obj = ObjectFile(source) if not isinstance(source, bytes) else open_object(source)
        _apply(obj, set, max_entries, autoload)
        from pybpf.loader import load_spec

        return load_spec(obj.spec, log_level=log_level, pin_root=pin_root, targets=targets)
    path = os.fspath(source)
    if path.endswith(".c"):
        from pybpf.toolchain import compile as compile_c

        path = str(compile_c(path))
    options = (dict(set or {}), dict(max_entries or {}), dict(autoload or {}))
    return load_file(path, lambda: _read(path, *options), options, log_level=log_level, pin_root=pin_root,
                     targets=targets, cache=cache)


def load_file(path: str, read: Callable[[], ObjectFile], options: Any, *, log_level: int = 0,
              pin_root: str = "/sys/fs/bpf", targets: TargetBTF | None = None, cache: bool = True) -> Collection:
    """Load object file `path`, whose specs `read()` reads and adjusts as `options` (any value with a
    stable repr) say: from its cached plan when `cache` and the plan was made for these options."""
    ident = None
    if cache and not log_level and targets is None:
        from pybpf import plan

        key = plan.options_key(options, pin_root)
        try:
            ident = plan.identity(path, key) if key is not None else None
        except OSError:
            ident = None  # read() says what is wrong with the file
        if ident is not None:
            coll = plan.load(path, ident, pin_root, read)
            if coll is not None:
                return coll
    obj = read()
    from pybpf.loader import load_spec

    coll = load_spec(obj.spec, log_level=log_level, pin_root=pin_root, targets=targets)
    if ident is not None:
        plan.save(path, ident, coll)
    return coll


def _read(path: str, set: Mapping[str, Any], max_entries: Mapping[str, int],  # noqa: A002
          autoload: Mapping[str, bool]) -> ObjectFile:
    obj = open_object(path)
    _apply(obj, set, max_entries, autoload)
    return obj


def _apply(obj: ObjectFile, set: Mapping[str, Any] | None, max_entries: Mapping[str, int] | None,  # noqa: A002
           autoload: Mapping[str, bool] | None) -> None:
    """load()'s options, applied to the specs before loading."""
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


# ---- making a collection's maps (shared by pybpf.loader and pybpf.plan) ------------------------------------


def create_map(mspec: MapSpec, btf_fd: FD | None, pin_root: str, btf_ids: tuple[int, int],
               codecs: tuple[Any, Any], inner_btf_ids: tuple[int, int] = (0, 0)) -> Map:
    """Create one of an object's maps (or open its pin: `pinning` maps are shared through bpffs, as
    libbpf does). `btf_ids` are its key and value type ids in the object's BTF (0: none)."""
    from pybpf.errors import BPFError
    from pybpf.map import Map

    pin_path = os.path.join(pin_root, mspec.name) if mspec.pinning else ""
    if pin_path and os.path.exists(pin_path):
        existing = Map.from_pin(pin_path)
        if (existing.map_type, existing.key_size, existing.value_size, existing.max_entries) != (
            mspec.type, mspec.key_size, mspec.value_size, mspec.max_entries):
            existing.close()
            raise BPFError(f"pinned map {pin_path} does not match the object's definition of {mspec.name}; "
                           "remove the pin or fix the definition")
        # Decoded and described as a map this load created would be.
        existing.spec = mspec
        return existing.set_codec(key=codecs[0], value=codecs[1])
    inner_fd: FD | None = None
    inner: Map | None = None
    if mspec.inner is not None:
        inner = create_map(mspec.inner, btf_fd, "", inner_btf_ids, (None, None))  # template only
        inner_fd = inner.fd
    kid, vid = btf_ids
    create_spec = mspec
    if any(isinstance(v, str) for _, v in mspec.contents):
        # Slots naming programs or maps are filled once those exist (fill_slots).
        create_spec = mspec.copy()
        create_spec.contents = []
    try:
        m = Map.create(create_spec, btf_fd=btf_fd if (kid or vid) else None, btf_key_type_id=kid,
                       btf_value_type_id=vid, inner_map_fd=inner_fd, key=codecs[0], value=codecs[1])
    finally:
        if inner is not None:
            inner.close()
    if pin_path:
        m.pin(pin_path)
    return m


def fill_slots(coll: Collection, maps: Mapping[str, MapSpec], program_names: Iterable[str]) -> None:
    """Slots of prog arrays and maps of maps that the object initialises with programs or maps
    (`values = {...}`); Map.create filled the others."""
    from pybpf.errors import ObjectError

    for key, mspec in maps.items():
        if not any(isinstance(v, str) for _, v in mspec.contents):
            continue
        m = coll.maps[key]
        for slot, target in mspec.contents:
            if isinstance(target, str):
                obj: Program | Map | None = coll.programs.get(target) or coll.maps.get(target)
                if obj is None:
                    if target in program_names:
                        continue  # not autoloaded: leave the slot empty, as libbpf does
                    raise ObjectError(f"map {key} slot {slot} refers to unknown {target!r}")
                m.update(int(slot).to_bytes(4, "little"), int(obj.fd).to_bytes(4, "little"))
