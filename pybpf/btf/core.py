"""CO-RE: resolve compile-once-run-everywhere relocations against the target kernel's BTF.

The semantics are libbpf's (``relo_core.c``), kind for kind:

* a relocation names a local type (from the object's BTF), an access string ``"0:1:2"`` (first number: the
  index on the root pointer; then member indexes / array indexes) and a kind;
* candidates are target types whose *essential* name (the name without a ``___flavor`` suffix) and kind
  match; vmlinux is searched first, kernel modules only when vmlinux has none;
* each candidate is matched field by field (by name, through anonymous members, checking array bounds and
  type compatibility); every matching candidate must give the same answer, otherwise it is an error;
* candidates that fail to match are pruned from the candidate list shared by later relocations of the
  same local type (libbpf does this too);
* no match: existence kinds (FIELD_EXISTS, TYPE_EXISTS, ENUMVAL_EXISTS, TYPE_MATCHES) and TYPE_SIZE /
  TYPE_ID_TARGET give 0, the others *poison* the instruction: it becomes ``call 0xbad2310``, which the
  verifier removes as dead code or reports as "invalid func unknown#195896080".

`resolve` computes a `CoreResult`; `apply` (decoded `pybpf.asm` instructions) or `apply_raw` (raw
instruction bytes) validate the instruction against the value the compiler assumed and patch it.
"""

from __future__ import annotations

import struct

from pybpf._sys.record import field, record
from pybpf.asm import opcodes as op
from pybpf.asm.instruction import Instruction
from pybpf.btf.ext import CoreRelo, CoreReloKind
from pybpf.btf.spec import Spec
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
    Pointer,
    Qualifier,
    Type,
    Typedef,
    Union,
    Var,
    Void,
)
from pybpf.errors import ObjectError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, MutableSequence
    from typing import Final

__all__ = [
    "POISON_IMM",
    "Accessor",
    "Candidate",
    "CoreResult",
    "CoreSpec",
    "TargetBTF",
    "apply",
    "apply_raw",
    "essential_name",
    "resolve",
    "resolve_all",
]

POISON_IMM: Final = 0xBAD2310  # "bad relo": the helper id a poisoned instruction calls
_SPEC_MAX_LEN: Final = 64  # libbpf's BPF_CORE_SPEC_MAX_LEN
_MAX_DEPTH: Final = 32  # libbpf's recursion limit for type comparisons and size resolution
_PTR_SIZE: Final = 8
_MASK64: Final = (1 << 64) - 1
_S16_MAX: Final = 0x7FFF

K = CoreReloKind
_FIELD_KINDS = frozenset(
    {K.FIELD_BYTE_OFFSET, K.FIELD_BYTE_SIZE, K.FIELD_EXISTS, K.FIELD_SIGNED, K.FIELD_LSHIFT_U64,
     K.FIELD_RSHIFT_U64}
)
_TYPE_KINDS = frozenset({K.TYPE_ID_LOCAL, K.TYPE_ID_TARGET, K.TYPE_EXISTS, K.TYPE_MATCHES, K.TYPE_SIZE})
_ENUMVAL_KINDS = frozenset({K.ENUMVAL_EXISTS, K.ENUMVAL_VALUE})

# libbpf's short names, so messages read like libbpf's debug output.
_KIND_LABEL: dict[CoreReloKind, str] = {
    K.FIELD_BYTE_OFFSET: "byte_off",
    K.FIELD_BYTE_SIZE: "byte_sz",
    K.FIELD_EXISTS: "field_exists",
    K.FIELD_SIGNED: "signed",
    K.FIELD_LSHIFT_U64: "lshift_u64",
    K.FIELD_RSHIFT_U64: "rshift_u64",
    K.TYPE_ID_LOCAL: "local_type_id",
    K.TYPE_ID_TARGET: "target_type_id",
    K.TYPE_EXISTS: "type_exists",
    K.TYPE_MATCHES: "type_matches",
    K.TYPE_SIZE: "type_size",
    K.ENUMVAL_EXISTS: "enumval_exists",
    K.ENUMVAL_VALUE: "enumval_value",
}


class _Fail(Exception):
    """A relocation cannot be resolved at all (libbpf returns an error): the load must fail."""


class _Poison(Exception):
    """The relocation has no target: the instruction gets poisoned (libbpf's -EUCLEAN)."""


# ---- names -------------------------------------------------------------------------------------------


def _flavor_sep_at(name: str, i: int) -> bool:
    return name[i] != "_" and name[i + 1 : i + 4] == "___" and name[i + 4] != "_"


def essential_name(name: str) -> str:
    """The name without its last ``___flavor`` suffix: ``task_struct___v510`` -> ``task_struct``."""
    if "___" not in name:
        return name
    for i in range(len(name) - 5, -1, -1):
        if _flavor_sep_at(name, i):
            return name[: i + 1]
    return name


def _names_match(local_name: str, targ_name: str) -> bool:
    """libbpf's bpf_core_names_match: an anonymous target matches only an anonymous local."""
    if not targ_name:
        return not local_name
    return essential_name(local_name) == essential_name(targ_name)


# ---- small BTF helpers with libbpf's exact behaviour ---------------------------------------------------


def _type(spec: Spec, type_id: int) -> Type:
    try:
        return spec.type(type_id)
    except ObjectError:
        raise _Fail(f"type id {type_id} is not in {_btf_label(spec)}") from None


def _skip(spec: Spec, type_id: int) -> Type:
    """skip_mods_and_typedefs: the first type that is not a typedef, qualifier or type tag."""
    t = _type(spec, type_id)
    for _ in range(_MAX_DEPTH * 8):
        if not isinstance(t, (Typedef, Qualifier)):
            return t
        t = _type(spec, t.type_id)
    raise _Fail(f"typedef/modifier loop at type id {type_id}")


def _resolve_size(spec: Spec, type_id: int) -> int:
    """btf__resolve_size: bytes of a type, following typedefs, modifiers, vars and arrays."""
    t = _type(spec, type_id)
    nelems = 1
    for _ in range(_MAX_DEPTH):
        if isinstance(t, (Int, Composite, Enum, Datasec, Float)):
            size = t.size
            break
        if isinstance(t, Pointer):
            size = _PTR_SIZE
            break
        if isinstance(t, (Typedef, Qualifier, Var, DeclTag)):
            t = _type(spec, t.type_id)
            continue
        if isinstance(t, Array):
            if nelems and t.nelems > 0xFFFFFFFF // nelems:
                raise _Fail(f"array size overflow in type id {type_id}")
            nelems *= t.nelems
            t = _type(spec, t.elem_id)
            continue
        raise _Fail(f"type id {type_id} ({_describe_type(t)}) has no size")
    else:
        raise _Fail(f"type id {type_id} nests too deeply to size")
    if nelems and size > 0xFFFFFFFF // nelems:
        raise _Fail(f"size of type id {type_id} overflows 32 bits")
    return nelems * size


def _kind_compat(a: Type, b: Type) -> bool:
    """btf_kind_core_compat: same BTF kind, or enum vs enum64 (one `Enum` class for both)."""
    return type(a) is type(b)


def _int_encoding(t: Int) -> int:
    return int(t.encoding)


def _btf_label(spec: Spec) -> str:
    return spec.name or "BTF"


def _describe_type(t: Type) -> str:
    return f"{t.kind.name.lower()} {t.name or '<anon>'}"


# ---- specs (libbpf's bpf_core_spec) --------------------------------------------------------------------


@record(slots=True)
class Accessor:
    """One high-level step of an access: a named member (`name`) or an array index (`name` is None)."""

    type_id: int
    idx: int
    name: str | None


@record(slots=True)
class CoreSpec:
    """A relocation resolved against one BTF: high-level accessors, raw indexes, bit offset."""

    btf: Spec
    root_type_id: int
    kind: CoreReloKind
    accessors: list[Accessor] = field(default_factory=list)
    raw: list[int] = field(default_factory=list)
    bit_offset: int = 0

    def describe(self) -> str:
        """Like libbpf's bpf_core_format_spec: ``<byte_off> [114] struct task_struct.tgid (0:1 @ offset 4)``."""
        try:
            root = self.btf.type(self.root_type_id)
            text = f"<{_KIND_LABEL[self.kind]}> [{self.root_type_id}] {_describe_type(root)}"
        except ObjectError:
            return f"<{_KIND_LABEL[self.kind]}> [{self.root_type_id}] <invalid>"
        if self.kind in _TYPE_KINDS:
            return text
        if self.kind in _ENUMVAL_KINDS:
            if self.accessors:
                t = self.btf.type(self.accessors[0].type_id)
                if isinstance(t, Enum) and self.accessors[0].idx < len(t.values):
                    v = t.values[self.accessors[0].idx]
                    text += f"::{v.name} = {v.value}"
            return text
        for i, acc in enumerate(self.accessors):
            if acc.name is not None:
                text += f".{acc.name}"
            elif i > 0 or acc.idx > 0:
                text += f"[{acc.idx}]"
        raw = ":".join(str(x) for x in self.raw)
        off = f"{self.bit_offset // 8}.{self.bit_offset % 8}" if self.bit_offset % 8 else f"{self.bit_offset // 8}"
        return f"{text} ({raw} @ offset {off})"


def _parse_spec(local: Spec, relo: CoreRelo) -> CoreSpec:
    """bpf_core_parse_spec: turn the access string into accessors and a bit offset in the local BTF."""
    access = relo.access_str
    if not access or access.startswith(":"):
        raise _Fail(f"invalid access string {access!r}")
    spec = CoreSpec(local, relo.type_id, relo.kind)
    if relo.kind in _TYPE_KINDS:
        if access != "0":
            raise _Fail(f"type-based relocation with access string {access!r} (expected '0')")
        return spec
    for part in access.split(":"):
        try:
            idx = int(part)
        except ValueError:
            raise _Fail(f"invalid access string {access!r}") from None
        if idx < 0:
            raise _Fail(f"negative index in access string {access!r}")
        if len(spec.raw) == _SPEC_MAX_LEN:
            raise _Fail(f"access string {access!r} is longer than {_SPEC_MAX_LEN} steps")
        spec.raw.append(idx)

    t = _skip(local, relo.type_id)
    idx = spec.raw[0]
    spec.accessors.append(Accessor(t.id, idx, None))

    if relo.kind in _ENUMVAL_KINDS:
        if not isinstance(t, Enum) or len(spec.raw) > 1 or idx >= len(t.values):
            raise _Fail(f"enum value relocation {access!r} does not index an enumerator of {_describe_type(t)}")
        spec.accessors[0].name = t.values[idx].name
        return spec
    if relo.kind not in _FIELD_KINDS:
        raise _Fail(f"unknown relocation kind {relo.kind}")

    type_id = t.id
    spec.bit_offset = idx * _resolve_size(local, type_id) * 8
    for i in range(1, len(spec.raw)):
        t = _skip(local, type_id)
        type_id = t.id
        idx = spec.raw[i]
        if isinstance(t, Composite):
            if idx >= len(t.members):
                raise _Fail(f"member index {idx} out of range for {_describe_type(t)}")
            m = t.members[idx]
            spec.bit_offset += m.bit_offset
            if m.name:
                spec.accessors.append(Accessor(type_id, idx, m.name))
            type_id = m.type_id
        elif isinstance(t, Array):
            elem = _skip(local, t.elem_id)
            type_id = elem.id
            if not _is_flex_arr(local, spec.accessors[-1], t) and idx >= t.nelems:
                raise _Fail(f"array index {idx} out of bounds ({t.nelems} elements)")
            spec.accessors.append(Accessor(type_id, idx, None))
            spec.bit_offset += idx * _resolve_size(local, type_id) * 8
        else:
            raise _Fail(f"access {access!r} (step {i}) reaches {_describe_type(t)}, which has no members")
    return spec


def _is_flex_arr(btf: Spec, acc: Accessor, arr: Array) -> bool:
    """A zero-length array that is the last member of its struct may be indexed past its end."""
    if acc.name is None or arr.nelems > 0:
        return False
    t = btf.type(acc.type_id)
    return isinstance(t, Composite) and acc.idx == len(t.members) - 1


# ---- candidates and the target BTF ---------------------------------------------------------------------


@record(frozen=True, slots=True)
class Candidate:
    """A target type that may correspond to a local type: where it lives and its id there."""

    btf_name: str  # "vmlinux" or the module's name
    spec: Spec
    type_id: int


@record(slots=True)
class _LocalState:
    """Per local (object) BTF: candidate lists (pruned as relocations go) and compatibility results."""

    candidates: dict[int, list[Candidate]] = field(default_factory=dict)
    compat: dict[tuple[int, int, int, int], bool] = field(default_factory=dict)


@record(slots=True)
class _Ctx:
    state: _LocalState
    targets: TargetBTF


_FIELDS_COMPAT, _TYPES_COMPAT, _TYPES_MATCH = 0, 1, 2

if TYPE_CHECKING:
    ModuleSource = Mapping[str, Spec] | Callable[[], Iterable[tuple[str, Spec]]]


class TargetBTF:
    """The BTF relocations resolve against: a kernel (vmlinux) spec and, lazily, its modules' split BTF.

    Caches live here, so keep one `TargetBTF` per kernel (`TargetBTF.running()` is shared): candidate
    lists per (local BTF, local type id), type-compatibility results, and per target spec the ids for
    each essential name and the members of each struct. Caches of a local BTF live in its `caches`
    and go away with it. `modules`: a mapping or a callable giving (name, split spec) pairs; None searches
    vmlinux only (what libbpf does when its vmlinux BTF is overridden).
    """

    def __init__(self, kernel: Spec, modules: ModuleSource | None = None, *, kernel_name: str = "vmlinux") -> None:
        self.kernel = kernel
        self.kernel_name = kernel_name
        self._module_source = modules
        self._modules: list[tuple[str, Spec]] | None = None
        self._named: dict[tuple[int, str, bool], list[int]] = {}
        self._names: dict[int, _TargetNames] = {}
        self._members: dict[tuple[int, int], _MemberIndex] = {}

    @classmethod
    def running(cls) -> TargetBTF:
        """The running kernel: /sys/kernel/btf/vmlinux plus every module's BTF (loaded on demand).

        One shared instance per process, so every load after the first finds its caches warm.
        """
        global _running
        if _running is None:
            from pybpf.btf.spec import kernel_module_names, kernel_spec, module_spec

            def modules() -> Iterable[tuple[str, Spec]]:
                return [(name, module_spec(name)) for name in kernel_module_names()]

            _running = cls(kernel_spec(), modules)
        return _running

    def module_specs(self) -> list[tuple[str, Spec]]:
        """(name, split spec) of every module BTF; loaded the first time a type is missing from vmlinux."""
        if self._modules is None:
            source = self._module_source
            if source is None:
                self._modules = []
            elif callable(source):
                self._modules = list(source())
            else:
                self._modules = list(source.items())
        return self._modules

    def forget(self, local: Spec) -> None:
        """Drop the caches kept for one local BTF (they also go with it)."""
        local.caches.pop(self, None)

    def expect(self, local: Spec, relos: Iterable[CoreRelo]) -> None:
        """Tell the kernel spec how many types these relocations will look up by name, before resolving
        them: it then chooses between a search per name and sorting all its names once. Names this
        TargetBTF has looked up already (an earlier load of the same types) cost no lookup."""
        state = self._state(local)
        kernel = id(self.kernel)
        names = set()
        for r in relos:
            if r.kind != K.TYPE_ID_LOCAL and r.type_id not in state.candidates:
                try:
                    t = local.type(r.type_id)
                except ObjectError:
                    continue  # a bad type id: resolving that relocation reports it, with its context
                key = (kernel, essential_name(t.name), isinstance(t, Func))  # as _ids_with_essential_name's
                if t.name and key not in self._named:
                    names.add(key)
        self.kernel.expect_lookups(len(names))

    def _state(self, local: Spec) -> _LocalState:
        # Kept on the local spec, so they go with it (weakref's import costs ~1 ms of a cold start).
        state = local.caches.get(self)
        if state is None:
            state = local.caches[self] = _LocalState()
        assert isinstance(state, _LocalState)
        return state

    def candidates(self, local: Spec, local_id: int) -> list[Candidate]:
        """Target types that may correspond to local type `local_id` (the cached, possibly pruned list)."""
        try:
            return self._candidates(self._state(local), local, local_id)
        except _Fail as exc:
            raise ObjectError(f"CO-RE candidate search for type id {local_id}: {exc}", section=".BTF") from None

    def _candidates(self, state: _LocalState, local: Spec, local_id: int) -> list[Candidate]:
        cands = state.candidates.get(local_id)
        if cands is not None:
            return cands
        local_t = _type(local, local_id)
        if not local_t.name:
            raise _Fail(
                f"CO-RE relocations against anonymous types are not supported ({_describe_type(local_t)}, "
                f"id {local_id}); give the type a name"
            )
        ess = essential_name(local_t.name)
        cands = self._add_candidates(local_t, ess, self.kernel_name, self.kernel)
        if not cands:
            for name, spec in self.module_specs():
                cands.extend(self._add_candidates(local_t, ess, name, spec))
        state.candidates[local_id] = cands
        return cands

    def _add_candidates(self, local_t: Type, ess: str, btf_name: str, target: Spec) -> list[Candidate]:
        out = []
        # A FUNC local type is the only one whose candidates are FUNCs (they are most of vmlinux's names).
        for tid in self._ids_with_essential_name(target, ess, isinstance(local_t, Func)):
            if _kind_compat(target.type(tid), local_t):
                out.append(Candidate(btf_name, target, tid))
        return out

    def _ids_with_essential_name(self, target: Spec, ess: str, funcs: bool) -> list[int]:
        """Ids of `target`'s own types (not its base's) whose essential name is `ess`, in id order
        (FUNCs only when `funcs`)."""
        key = (id(target), ess, funcs)
        ids = self._named.get(key)
        if ids is None:
            names = self._names.get(id(target))
            if names is None:
                names = _TargetNames(target)
                self._names[id(target)] = names
            ids = names.ids_with_essential_name(ess, funcs)
            self._named[key] = ids
        return ids

    def _member_index(self, target: Spec, composite: Composite) -> _MemberIndex:
        """Named members of a target struct/union (through anonymous members), cached per type."""
        key = (id(target), composite.id)
        index = self._members.get(key)
        if index is None:
            index = _member_index(target, composite)
            self._members[key] = index
        return index


_running: TargetBTF | None = None


class _TargetNames:
    """Finds the types of one target spec by essential name: ``ess`` itself or ``ess___<flavor>``
    (kernel BTF has a few flavored types, e.g. ``nf_conn___init``).

    * large specs (vmlinux): the spec's own lookup (a search, or its name-sorted index once built);
    * small or split specs (kernel modules, whose names may live in the base's string table): one dict
      of essential name -> ids, built from the spec's own types.
    """

    __slots__ = ("_by_essential", "spec")

    def __init__(self, spec: Spec) -> None:
        self.spec = spec
        self._by_essential: dict[str, list[int]] | None = None
        if not spec.large or spec.base is not None:
            self._by_essential = {}
            for tid in range(spec.first_id, spec.next_id):
                _kind, name_off = spec.raw_kind_and_name(tid)
                if name_off:
                    self._by_essential.setdefault(essential_name(spec.string(name_off)), []).append(tid)

    def ids_with_essential_name(self, ess: str, funcs: bool = True) -> list[int]:
        """Ids whose essential name is `ess` (FUNCs only searched when `funcs`; small specs ignore it)."""
        if self._by_essential is not None:
            return list(self._by_essential.get(ess, ()))
        if not ess:
            return []
        exact = [ess] if essential_name(ess) == ess else []
        return sorted(tid for name, tid in self.spec.named(exact, [ess + "___"], funcs=funcs)
                      if essential_name(name) == ess)


# ---- matching local specs to candidates -----------------------------------------------------------------


def _fields_are_compat(local: Spec, local_id: int, targ: Spec, targ_id: int) -> bool:
    """bpf_core_fields_are_compat: may a local field's type be relocated onto the target field's type."""
    for _ in range(_MAX_DEPTH):
        lt = _skip(local, local_id)
        tt = _skip(targ, targ_id)
        if isinstance(lt, Composite) and isinstance(tt, Composite):
            return True
        if not _kind_compat(lt, tt):
            return False
        if isinstance(lt, (Pointer, Float)):
            return True
        if isinstance(lt, (Fwd, Enum)):
            ln, tn = essential_name(lt.name), essential_name(tt.name)
            return not ln or not tn or ln == tn
        if isinstance(lt, Int):
            assert isinstance(tt, Int)
            return lt.bit_offset == 0 and tt.bit_offset == 0
        if isinstance(lt, Array):
            assert isinstance(tt, Array)
            local_id, targ_id = lt.elem_id, tt.elem_id
            continue
        return False
    raise _Fail("array nesting too deep while comparing field types")


def _types_are_compat(local: Spec, local_id: int, targ: Spec, targ_id: int, level: int = _MAX_DEPTH) -> int:
    """bpf_core_types_are_compat (TYPE_EXISTS, TYPE_SIZE, TYPE_ID_TARGET)."""
    if not _kind_compat(_type(local, local_id), _type(targ, targ_id)):
        return 0
    depth = _MAX_DEPTH
    while True:
        depth -= 1
        if depth < 0:
            raise _Fail("types nest too deeply to compare")
        lt = _skip(local, local_id)
        tt = _skip(targ, targ_id)
        if not _kind_compat(lt, tt):
            return 0
        if isinstance(lt, (Void, Composite, Enum, Fwd)):
            return 1
        if isinstance(lt, Int):
            assert isinstance(tt, Int)
            return int(lt.bit_offset == 0 and tt.bit_offset == 0)
        if isinstance(lt, Pointer):
            assert isinstance(tt, Pointer)
            local_id, targ_id = lt.type_id, tt.type_id
            continue
        if isinstance(lt, Array):
            assert isinstance(tt, Array)
            local_id, targ_id = lt.elem_id, tt.elem_id
            continue
        if isinstance(lt, FuncProto):
            assert isinstance(tt, FuncProto)
            if len(lt.params) != len(tt.params):
                return 0
            for lp, tp in zip(lt.params, tt.params, strict=True):
                if level <= 0:
                    raise _Fail("function prototypes nest too deeply to compare")
                err = _types_are_compat(local, _skip(local, lp.type_id).id, targ, _skip(targ, tp.type_id).id,
                                        level - 1)
                if err <= 0:
                    return err
            local_id, targ_id = _skip(local, lt.return_id).id, _skip(targ, tt.return_id).id
            continue
        return 0


def _types_match(local: Spec, local_id: int, targ: Spec, targ_id: int, behind_ptr: bool, level: int) -> int:
    """bpf_core_types_match (TYPE_MATCHES): stricter than compatibility, see libbpf's description."""
    if level <= 0:
        raise _Fail("types nest too deeply to match")
    depth = _MAX_DEPTH
    while True:
        depth -= 1
        if depth < 0:
            raise _Fail("types nest too deeply to match")
        lt = _skip(local, local_id)
        tt = _skip(targ, targ_id)
        if not _names_match(lt.name, tt.name):
            return 0
        if isinstance(lt, Void):
            return int(isinstance(tt, Void))
        if isinstance(lt, Fwd):
            if behind_ptr:
                if isinstance(tt, Fwd):
                    return int(lt.is_union == tt.is_union)
                # A forward declaration's kflag says whether it stands for a struct (0) or a union (1).
                return int((isinstance(tt, Composite) and not isinstance(tt, Union) and not lt.is_union)
                           or (isinstance(tt, Union) and lt.is_union))
            if not isinstance(tt, Fwd):
                return 0
            return int(lt.is_union == tt.is_union)
        if isinstance(lt, Enum):
            if not isinstance(tt, Enum):
                return 0
            return _enums_match(lt, tt)
        if isinstance(lt, Composite):
            if behind_ptr:
                if type(lt) is type(tt):
                    return 1
                if not isinstance(tt, Fwd):
                    return 0
                return int(isinstance(lt, Union) == tt.is_union)
            if type(lt) is not type(tt):
                return 0
            assert isinstance(tt, Composite)
            return _composites_match(local, lt, targ, tt, behind_ptr, level)
        if isinstance(lt, Int):
            if not isinstance(tt, Int):
                return 0
            return int(lt.size == tt.size and (lt.encoding & IntEncoding.SIGNED) == (tt.encoding & IntEncoding.SIGNED))
        if isinstance(lt, Pointer):
            if not isinstance(tt, Pointer):
                return 0
            behind_ptr = True
            local_id, targ_id = lt.type_id, tt.type_id
            continue
        if isinstance(lt, Array):
            if not isinstance(tt, Array) or lt.nelems != tt.nelems:
                return 0
            local_id, targ_id = lt.elem_id, tt.elem_id
            continue
        if isinstance(lt, FuncProto):
            if not isinstance(tt, FuncProto) or len(lt.params) != len(tt.params):
                return 0
            for lp, tp in zip(lt.params, tt.params, strict=True):
                err = _types_match(local, lp.type_id, targ, tp.type_id, behind_ptr, level - 1)
                if err <= 0:
                    return err
            local_id, targ_id = lt.return_id, tt.return_id
            continue
        return 0


def _enums_match(lt: Enum, tt: Enum) -> int:
    if lt.size != tt.size or len(lt.values) > len(tt.values):
        return 0
    for lv in lt.values:
        if not any(_names_match(lv.name, tv.name) for tv in tt.values):
            return 0
    return 1


def _composites_match(local: Spec, lt: Composite, targ: Spec, tt: Composite, behind_ptr: bool, level: int) -> int:
    if len(lt.members) > len(tt.members):
        return 0
    for lm in lt.members:
        matched = False
        for tm in tt.members:
            if not _names_match(lm.name, tm.name):
                continue
            err = _types_match(local, lm.type_id, targ, tm.type_id, behind_ptr, level - 1)
            if err > 0:
                matched = True
                break
        if not matched:
            return 0
    return 1


def _root_compat(state: _LocalState, local: Spec, root: int, targ: Spec, targ_id: int, matches: bool) -> bool:
    """Root-level types_match / types_are_compat, cached per (local type, target type)."""
    key = (_TYPES_MATCH if matches else _TYPES_COMPAT, root, id(targ), targ_id)
    hit = state.compat.get(key)
    if hit is None:
        if matches:
            hit = _types_match(local, root, targ, targ_id, False, _MAX_DEPTH) > 0
        else:
            hit = _types_are_compat(local, root, targ, targ_id) > 0
        state.compat[key] = hit
    return hit


@record(frozen=True, slots=True)
class _MemberHit:
    """Where a member name occurs in a target composite, anonymous members flattened."""

    path: tuple[int, ...]  # member indexes from the outer type down through anonymous members
    bit_offset: int  # sum of the member offsets along the path
    parent_id: int  # the (anonymous or not) composite that declares the member
    idx: int
    type_id: int


_MemberIndex = dict[str, list[_MemberHit]]


def _member_index(targ: Spec, composite: Composite) -> _MemberIndex:
    """Every named member reachable through anonymous members, by name, in libbpf's search order
    (declaration order, depth first into anonymous struct/union members)."""
    out: _MemberIndex = {}

    def walk(t: Composite, path: tuple[int, ...], base: int, depth: int) -> None:
        if depth > _SPEC_MAX_LEN:
            raise _Fail(f"anonymous members of {_describe_type(composite)} nest too deeply")
        for i, m in enumerate(t.members):
            if m.name:
                out.setdefault(m.name, []).append(
                    _MemberHit((*path, i), base + m.bit_offset, t.id, i, m.type_id))
            else:
                inner = _skip(targ, m.type_id)
                if isinstance(inner, Composite):
                    walk(inner, (*path, i), base + m.bit_offset, depth + 1)

    walk(composite, (), 0, 0)
    return out


def _match_member(
    ctx: _Ctx, local: Spec, local_acc: Accessor, targ: Spec, targ_id: int, spec: CoreSpec
) -> tuple[bool, int]:
    """bpf_core_match_member: find the local accessor's member (by name, through anonymous members) in
    the target type; extends `spec` and returns (found, id of the found member's type)."""
    targ_t = _skip(targ, targ_id)
    if not isinstance(targ_t, Composite):
        return False, 0
    local_t = local.type(local_acc.type_id)
    assert isinstance(local_t, Composite)
    local_member = local_t.members[local_acc.idx]
    hits = ctx.targets._member_index(targ, targ_t).get(local_member.name, ())
    skip_prefix: tuple[int, ...] | None = None
    for hit in hits:
        if skip_prefix is not None and hit.path[: len(skip_prefix)] == skip_prefix:
            continue
        if len(spec.raw) + len(hit.path) > _SPEC_MAX_LEN:
            raise _Fail(f"target type nests deeper than {_SPEC_MAX_LEN} levels")
        key = (_FIELDS_COMPAT, local_member.type_id, id(targ), hit.type_id)
        ok = ctx.state.compat.get(key)
        if ok is None:
            ok = _fields_are_compat(local, local_member.type_id, targ, hit.type_id)
            ctx.state.compat[key] = ok
        if ok:
            spec.bit_offset += hit.bit_offset
            spec.raw.extend(hit.path)
            spec.accessors.append(Accessor(hit.parent_id, hit.idx, local_member.name))
            return True, hit.type_id
        # libbpf gives up on the anonymous member holding an incompatible match and goes on with the
        # next member of its parent; a direct member of the searched type ends the search.
        if len(hit.path) == 1:
            return False, 0
        skip_prefix = hit.path[:-1]
    return False, 0


def _spec_match(ctx: _Ctx, local_spec: CoreSpec, cand: Candidate) -> CoreSpec | None:
    """bpf_core_spec_match: the target spec for `cand`, or None when the candidate does not match."""
    local = local_spec.btf
    targ = cand.spec
    targ_id = cand.type_id
    spec = CoreSpec(targ, targ_id, local_spec.kind)
    kind = local_spec.kind

    if kind in _TYPE_KINDS:
        ok = _root_compat(ctx.state, local, local_spec.root_type_id, targ, targ_id, kind == K.TYPE_MATCHES)
        return spec if ok else None

    if kind in _ENUMVAL_KINDS:
        targ_t = _skip(targ, targ_id)
        if not isinstance(targ_t, Enum):
            return None
        local_name = local_spec.accessors[0].name or ""
        ess = essential_name(local_name)
        for i, v in enumerate(targ_t.values):
            if essential_name(v.name) == ess:
                spec.accessors.append(Accessor(targ_t.id, i, v.name))
                spec.raw.append(i)
                return spec
        return None

    for i, local_acc in enumerate(local_spec.accessors):
        targ_t = _skip(targ, targ_id)
        targ_id = targ_t.id
        if local_acc.name is not None:
            found, targ_id = _match_member(ctx, local, local_acc, targ, targ_id, spec)
            if not found:
                return None
            continue
        # The root accessor indexes the pointer itself; later unnamed accessors index an array.
        if i > 0:
            if not isinstance(targ_t, Array):
                return None
            if not _is_flex_arr(targ, spec.accessors[i - 1], targ_t) and local_acc.idx >= targ_t.nelems:
                return None
            targ_id = _skip(targ, targ_t.elem_id).id
        if len(spec.raw) == _SPEC_MAX_LEN:
            raise _Fail(f"target type nests deeper than {_SPEC_MAX_LEN} levels")
        spec.accessors.append(Accessor(targ_id, local_acc.idx, None))
        spec.raw.append(local_acc.idx)
        spec.bit_offset += local_acc.idx * _resolve_size(targ, targ_id) * 8
    return spec


# ---- computing values ----------------------------------------------------------------------------------


@record(slots=True)
class _FieldValue:
    value: int
    size: int = 0  # memory size of a plain (non-bitfield) field access, for LDX/ST/STX size fix-ups
    type_id: int = 0
    validate: bool = True


def _calc_field(kind: CoreReloKind, spec: CoreSpec | None) -> _FieldValue:
    """bpf_core_calc_field_relo."""
    if kind == K.FIELD_EXISTS:
        return _FieldValue(1 if spec is not None else 0)
    if spec is None:
        raise _Poison
    acc = spec.accessors[-1]
    btf = spec.btf
    if acc.name is None:  # the access ends on an array element (or the root)
        if kind == K.FIELD_BYTE_OFFSET:
            return _FieldValue(spec.bit_offset // 8, _resolve_size(btf, acc.type_id), acc.type_id)
        if kind == K.FIELD_BYTE_SIZE:
            return _FieldValue(_resolve_size(btf, acc.type_id))
        raise _Fail(f"{_KIND_LABEL[kind]} relocation cannot be applied to an array element access")

    t = btf.type(acc.type_id)
    assert isinstance(t, Composite)
    m = t.members[acc.idx]
    mt = _skip(btf, m.type_id)
    field_type_id = mt.id
    bit_off = spec.bit_offset
    bit_sz = m.bitfield_size
    bitfield = bit_sz > 0
    if bitfield:
        byte_sz = getattr(mt, "size", 0)
        if byte_sz <= 0:
            raise _Fail(f"bitfield {m.name!r} has a type without a size ({_describe_type(mt)})")
        byte_off = bit_off // 8 // byte_sz * byte_sz
        # The smallest load (up to 8 bytes) that covers the whole bitfield.
        while bit_off + bit_sz - byte_off * 8 > byte_sz * 8:
            if byte_sz >= 8:
                raise _Fail(f"bitfield {m.name!r} cannot be read with one 64-bit load")
            byte_sz *= 2
            byte_off = bit_off // 8 // byte_sz * byte_sz
    else:
        byte_sz = _resolve_size(btf, field_type_id)
        byte_off = bit_off // 8
        bit_sz = byte_sz * 8

    # The compiler's guesses for bitfields may legitimately differ from ours: only signedness and the
    # right shift are checked against the instruction for them.
    out = _FieldValue(0, validate=not bitfield)
    if kind == K.FIELD_BYTE_OFFSET:
        out.value = byte_off
        if not bitfield:
            out.size = byte_sz
            out.type_id = field_type_id
    elif kind == K.FIELD_BYTE_SIZE:
        out.value = byte_sz
    elif kind == K.FIELD_SIGNED:
        out.value = int((isinstance(mt, Enum) and mt.signed) or (isinstance(mt, Int) and mt.signed))
        out.validate = True
    elif kind == K.FIELD_LSHIFT_U64:
        out.value = 64 - (bit_off + bit_sz - byte_off * 8)  # little-endian hosts only (as Spec)
    elif kind == K.FIELD_RSHIFT_U64:
        out.value = 64 - bit_sz
        out.validate = True
    else:
        raise _Fail(f"unknown field relocation kind {kind}")
    return out


def _calc_type(kind: CoreReloKind, spec: CoreSpec | None) -> tuple[int, bool]:
    """bpf_core_calc_type_relo: (value, validate)."""
    if spec is None:
        return 0, True  # type-based relocations give 0 when the target type is missing
    if kind == K.TYPE_ID_TARGET:
        return spec.root_type_id, False  # ids shift when objects are linked: no point checking
    if kind in (K.TYPE_EXISTS, K.TYPE_MATCHES):
        return 1, True
    if kind == K.TYPE_SIZE:
        return _resolve_size(spec.btf, spec.root_type_id), True
    raise _Fail(f"unexpected type relocation kind {kind}")


def _calc_enumval(kind: CoreReloKind, spec: CoreSpec | None) -> int:
    """bpf_core_calc_enumval_relo; values are u64 as the instruction sees them."""
    if kind == K.ENUMVAL_EXISTS:
        return 1 if spec is not None else 0
    if spec is None:
        raise _Poison
    acc = spec.accessors[0]
    t = spec.btf.type(acc.type_id)
    assert isinstance(t, Enum)
    value = t.values[acc.idx].value
    if not t.is64:
        # BTF_KIND_ENUM stores an s32, which libbpf widens with sign extension whatever the enum's sign.
        value &= 0xFFFFFFFF
        if value & 0x80000000:
            value -= 1 << 32
    return value & _MASK64


@record(frozen=True, slots=True)
class CoreResult:
    """What a relocation resolves to; `apply` patches an instruction with it.

    `orig_value` is what the compiler assumed (checked against the instruction when `validate`),
    `new_value` what the target needs. `orig_size`/`new_size` and the type ids describe a plain field
    load/store whose width must change; `fail_memsz_adjust` says that change would read a wrong value
    (the instruction is then poisoned, as libbpf does). `poison`: no target, the instruction becomes
    ``call 0xbad2310``.
    """

    relo: CoreRelo
    orig_value: int
    new_value: int
    poison: bool = False
    validate: bool = True
    fail_memsz_adjust: bool = False
    orig_size: int = 0
    new_size: int = 0
    orig_type_id: int = 0
    new_type_id: int = 0
    target: Candidate | None = None
    local_spec: CoreSpec | None = None
    target_spec: CoreSpec | None = None

    def describe(self) -> str:
        local = self.local_spec.describe() if self.local_spec is not None else f"[{self.relo.type_id}]"
        if self.poison:
            outcome = "poisoned (no matching target)"
        else:
            where = f" in {self.target.btf_name}" if self.target is not None else ""
            outcome = f"{self.orig_value} -> {self.new_value}{where}"
        return f"insn #{self.relo.insn_index} {local}: {outcome}"


def _width_change_safe(orig_t: Type, new_t: Type) -> bool:
    """Changing a load's width is safe only for pointers (32-bit kernels) and unsigned integers (zero
    extension keeps the value); libbpf treats any encoding other than exactly SIGNED as unsigned."""
    if isinstance(orig_t, Pointer) and isinstance(new_t, Pointer):
        return True
    return (isinstance(orig_t, Int) and isinstance(new_t, Int)
            and _int_encoding(orig_t) != IntEncoding.SIGNED and _int_encoding(new_t) != IntEncoding.SIGNED)


def _calc(relo: CoreRelo, local_spec: CoreSpec, targ_spec: CoreSpec | None, cand: Candidate | None) -> CoreResult:
    """bpf_core_calc_relo: original and new value for one candidate (or for none)."""
    kind = relo.kind
    poison = False
    fail_memsz = False
    orig_size = new_size = orig_tid = new_tid = 0
    new_value = 0
    if kind in _FIELD_KINDS:
        orig = _calc_field(kind, local_spec)
        orig_value, validate = orig.value, orig.validate
        orig_size, orig_tid = orig.size, orig.type_id
        try:
            new = _calc_field(kind, targ_spec)
        except _Poison:
            poison = True
        else:
            new_value, new_size, new_tid = new.value, new.size, new.type_id
            if orig_size != new_size:
                assert targ_spec is not None
                orig_t = local_spec.btf.type(orig_tid)
                new_t = targ_spec.btf.type(new_tid)
                fail_memsz = not _width_change_safe(orig_t, new_t)
    elif kind in _TYPE_KINDS:
        orig_value, validate = _calc_type(kind, local_spec)
        new_value, _ = _calc_type(kind, targ_spec)
    else:
        orig_value = _calc_enumval(kind, local_spec)
        validate = True
        try:
            new_value = _calc_enumval(kind, targ_spec)
        except _Poison:
            poison = True
    return CoreResult(
        relo, orig_value, new_value, poison, validate, fail_memsz, orig_size, new_size, orig_tid, new_tid,
        cand, local_spec, targ_spec,
    )


# ---- public entry points -------------------------------------------------------------------------------


def _error(relo: CoreRelo, local: Spec | None, message: str) -> ObjectError:
    what = f"CO-RE relocation {_KIND_LABEL.get(relo.kind, str(relo.kind))} of type id {relo.type_id}"
    if local is not None:
        try:
            t = local.type(relo.type_id)
            what += f" ({_describe_type(t)}, access {relo.access_str!r})"
        except ObjectError:
            pass
    return ObjectError(
        f"{what} at instruction {relo.insn_index}: {message}",
        section=relo.section or ".BTF.ext",
        offset=relo.insn_off_bytes,
    )


def resolve(relo: CoreRelo, local: Spec, targets: TargetBTF) -> CoreResult:
    """Resolve one relocation of an object whose BTF is `local` against `targets`.

    Raises `ObjectError` when libbpf would fail the load (malformed relocation, ambiguous candidates);
    an unresolvable access is not an error but a result with ``poison=True``.
    """
    try:
        return _resolve(relo, local, targets)
    except _Fail as exc:
        raise _error(relo, local, str(exc)) from None


def resolve_all(relos: Iterable[CoreRelo], local: Spec, targets: TargetBTF) -> list[CoreResult]:
    """Resolve relocations in order (the order matters: candidate pruning carries over, as in libbpf)."""
    return [resolve(r, local, targets) for r in relos]


def _resolve(relo: CoreRelo, local: Spec, targets: TargetBTF) -> CoreResult:
    state = targets._state(local)
    ctx = _Ctx(state, targets)
    cands: list[Candidate] = []
    if relo.kind != K.TYPE_ID_LOCAL:
        cands = targets._candidates(state, local, relo.type_id)
    local_spec = _parse_spec(local, relo)

    if relo.kind == K.TYPE_ID_LOCAL:
        # The object's own type id; linking may renumber it, so the instruction is not checked.
        root = local_spec.root_type_id
        return CoreResult(relo, root, root, validate=False, local_spec=local_spec)

    best: CoreResult | None = None
    kept: list[Candidate] = []
    for cand in cands:
        targ_spec = _spec_match(ctx, local_spec, cand)
        if targ_spec is None:
            continue
        res = _calc(relo, local_spec, targ_spec, cand)
        if best is None:
            best = res
        else:
            assert best.target_spec is not None
            if targ_spec.bit_offset != best.target_spec.bit_offset:
                raise _Fail(
                    f"field offset ambiguity: {cand.btf_name} type [{cand.type_id}] puts it at bit "
                    f"{targ_spec.bit_offset}, [{best.target_spec.root_type_id}] at bit "
                    f"{best.target_spec.bit_offset}; the target BTF has conflicting types of this name "
                    "(libbpf refuses it too)"
                )
            if res.poison != best.poison or res.new_value != best.new_value:
                raise _Fail(
                    f"relocation decision ambiguity: candidate [{cand.type_id}] gives "
                    f"{'failure' if res.poison else res.new_value}, [{best.target_spec.root_type_id}] gives "
                    f"{'failure' if best.poison else best.new_value}"
                )
        kept.append(cand)
    if kept:
        # Later relocations of the same local type only consider candidates that matched so far.
        cands[:] = kept
        assert best is not None
        return best
    return _calc(relo, local_spec, None, None)


# ---- patching instructions -----------------------------------------------------------------------------


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _s16(v: int) -> int:
    v &= 0xFFFF
    return v - (1 << 16) if v & 0x8000 else v


def _as_u64_from_s32(v: int) -> int:
    """An instruction's 32-bit imm compared as libbpf does: sign-extended to 64 bits."""
    return _s32(v) & _MASK64


def _as_u64_from_s16(v: int) -> int:
    return _s16(v) & _MASK64


def _poison_insn() -> Instruction:
    return Instruction(op.OPCODE_CALL, 0, 0, 0, POISON_IMM)


def _patch_error(result: CoreResult, message: str) -> ObjectError:
    return _error(result.relo, result.local_spec.btf if result.local_spec is not None else None, message)


def apply(insns: MutableSequence[Instruction], index: int, result: CoreResult) -> None:
    """Patch instruction `index` of decoded `insns` (a `pybpf.asm.Instructions` or a list) with `result`.

    Raises `ObjectError` when the instruction does not carry the value the compiler was expected to put
    there, or cannot hold the new one. Poisoning an ``ld_imm64`` replaces it with two ``call 0xbad2310``
    (it took two slots), so instruction indexes after it shift by one while slot numbers do not: apply
    relocations by slot (``insns.index_of(slot)``) or from the last to the first.
    """
    insn = insns[index]
    if result.poison:
        _poison(insns, index, insn)
        return
    code = insn.opcode
    cls = code & 0x07
    orig, new = result.orig_value, result.new_value
    if cls in (op.ALU, op.ALU64):
        if op.source_of(code) != op.K:
            raise _patch_error(result, f"instruction {insn} has a register operand; expected an immediate")
        if result.validate and _as_u64_from_s32(insn.imm) != orig:
            raise _patch_error(result, f"unexpected ALU immediate {insn.imm} (expected {orig} -> {new})")
        insn.imm = _s32(new)
    elif cls in (op.LDX, op.ST, op.STX):
        if result.validate and _as_u64_from_s16(insn.off) != orig:
            raise _patch_error(result, f"unexpected memory offset {insn.off} (expected {orig} -> {new})")
        if new > _S16_MAX:
            raise _patch_error(result, f"offset {new} does not fit in the instruction's 16-bit offset")
        if result.fail_memsz_adjust:
            # Reading a field of another width would give a wrong value: poison, like libbpf.
            _poison(insns, index, insn)
            return
        insn.off = new
        if result.new_size != result.orig_size:
            width = op.SIZE_BYTES[code & 0x18]
            if width != result.orig_size:
                raise _patch_error(
                    result, f"instruction accesses {width} bytes, the relocation expected {result.orig_size}"
                )
            if result.new_size not in (1, 2, 4, 8):
                raise _patch_error(result, f"field size {result.new_size} cannot be loaded or stored directly")
            insn.opcode = op.mode_of(code) | op.size_for_bytes(result.new_size) | cls
    elif cls == op.LD:
        if code != op.OPCODE_LD_IMM64 or insn.src != 0 or insn.off != 0:
            raise _patch_error(result, f"instruction {insn} is not a plain ld_imm64")
        if result.validate and insn.imm & _MASK64 != orig:
            raise _patch_error(result, f"unexpected ld_imm64 value {insn.imm} (expected {orig} -> {new})")
        insn.imm = new & _MASK64
    else:
        raise _patch_error(result, f"cannot relocate instruction {insn} (opcode {code:#04x})")
    insns[index] = insn


def _poison(insns: MutableSequence[Instruction], index: int, insn: Instruction) -> None:
    if insn.opcode == op.OPCODE_LD_IMM64:
        insns[index] = _poison_insn()
        insns.insert(index + 1, _poison_insn())
    else:
        insns[index] = _poison_insn()


_SLOT = struct.Struct("<BBhi")


def apply_raw(code: bytearray | memoryview, slot: int, result: CoreResult) -> None:
    """Patch the instruction starting at 8-byte `slot` of raw little-endian program bytes, in place.

    Same checks as `apply`; an ``ld_imm64`` keeps its two slots (both become ``call 0xbad2310`` when
    poisoned). This is what a loader relocating the ELF section bytes before decoding needs.
    """
    pos = slot * 8
    if pos < 0 or pos + 8 > len(code):
        raise _patch_error(result, f"instruction slot {slot} is outside the program ({len(code) // 8} slots)")
    opcode, regs, off, imm = _SLOT.unpack_from(code, pos)
    insn = Instruction(opcode, regs & 0xF, regs >> 4, off, imm)
    if opcode == op.OPCODE_LD_IMM64:
        if pos + 16 > len(code):
            raise _patch_error(result, "ld_imm64 is cut off at the end of the program")
        opcode2, regs2, off2, imm2 = _SLOT.unpack_from(code, pos + 8)
        if opcode2 or regs2 or off2:
            raise _patch_error(result, "the second half of the ld_imm64 is malformed")
        insn.imm = (imm & 0xFFFFFFFF) | ((imm2 & 0xFFFFFFFF) << 32)
    patched: list[Instruction] = [insn]
    apply(patched, 0, result)
    buf = b"".join(i.encode() for i in patched)
    code[pos : pos + len(buf)] = buf
