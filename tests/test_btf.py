"""pybpf.btf marshalling (encode, DATASEC fix-ups, sanitising, BPF_BTF_LOAD), C header output and `pybpf btf`."""

from __future__ import annotations

import dataclasses
import itertools
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner
from elftools.elf.elffile import ELFFile
from elftools.elf.sections import SymbolTableSection

from pybpf.btf import (
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
    Kind,
    Qualifier,
    Spec,
    Struct,
    Type,
    Typedef,
    Union,
    Var,
    kernel_spec,
)
from pybpf.btf.cdump import CDumper, dump_spec, vmlinux_header
from pybpf.btf.marshal import (
    BTFLoadError,
    KernelBTFFeatures,
    RawType,
    StringTable,
    encode,
    fixup_datasecs,
    for_kernel,
    load_into_kernel,
    raw_types,
    to_raw,
)
from pybpf.btf.types import _Ref
from pybpf.cli.btf import raw_dump
from pybpf.cli.main import main as cli_main
from pybpf.errors import ObjectError

KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
FEATURES = [f.name for f in dataclasses.fields(KernelBTFFeatures)]
# Kinds each feature flag removes from a sanitised blob.
FORBIDDEN = {
    "func": {Kind.FUNC, Kind.FUNC_PROTO},
    "global_func": set(),
    "datasec": {Kind.VAR, Kind.DATASEC},
    "float": {Kind.FLOAT},
    "decl_tag": {Kind.DECL_TAG},
    "type_tag": {Kind.TYPE_TAG},
    "enum64": {Kind.ENUM64},
}


def clang() -> str:
    path = shutil.which("clang")
    if path is None:
        pytest.skip("clang is not installed")
    return path


def bpftool() -> str:
    path = shutil.which("bpftool")
    if path is None:
        pytest.skip("bpftool is not installed (needed only as the reference output)")
    return path


def need_kernel_btf() -> None:
    if not KERNEL_BTF.exists():
        pytest.skip("kernel BTF (/sys/kernel/btf/vmlinux, CONFIG_DEBUG_INFO_BTF) is missing")


# ---- helpers --------------------------------------------------------------------------------------------


def signature(t: Type) -> tuple[object, ...]:
    """Everything the model exposes about a type, for equality across specs."""
    base: tuple[object, ...] = (t.id, t.kind, t.name)
    if isinstance(t, Int):
        return (*base, t.size, int(t.encoding), t.bits, t.bit_offset)
    if isinstance(t, Array):
        return (*base, t.elem_id, t.index_id, t.nelems)
    if isinstance(t, Composite):
        return (*base, t.size, tuple((m.name, m.type_id, m.bit_offset, m.bitfield_size) for m in t.members))
    if isinstance(t, Enum):
        return (*base, t.size, t.signed, t.is64, tuple((v.name, v.value) for v in t.values))
    if isinstance(t, Fwd):
        return (*base, t.is_union)
    if isinstance(t, FuncProto):
        return (*base, t.return_id, tuple((p.name, p.type_id) for p in t.params))
    if isinstance(t, Func):
        return (*base, t.type_id, int(t.linkage))
    if isinstance(t, Var):
        return (*base, t.type_id, int(t.linkage))
    if isinstance(t, Datasec):
        return (*base, t.size, tuple((v.type_id, v.offset, v.size) for v in t.vars))
    if isinstance(t, Float):
        return (*base, t.size)
    if isinstance(t, DeclTag):
        return (*base, t.type_id, t.component_idx)
    if isinstance(t, _Ref):
        return (*base, t.type_id)
    return base


def assert_same_types(a: Spec, b: Spec) -> None:
    assert (a.first_id, a.next_id) == (b.first_id, b.next_id)
    for x, y in zip(a, b, strict=True):
        assert signature(x) == signature(y)


@dataclasses.dataclass
class ObjectBTF:
    path: Path
    spec: Spec
    section_sizes: dict[str, int]
    symbol_offsets: dict[tuple[str, str], int]


def read_object(path: Path) -> ObjectBTF:
    with path.open("rb") as f:
        elf = ELFFile(f)
        btf_section, symtab = elf.get_section_by_name(".BTF"), elf.get_section_by_name(".symtab")
        assert btf_section is not None and isinstance(symtab, SymbolTableSection)
        spec = Spec(btf_section.data(), name=str(path))
        sizes = {s.name: s["sh_size"] for s in elf.iter_sections()}
        symbols: dict[tuple[str, str], int] = {}
        for sym in symtab.iter_symbols():
            shndx = sym["st_shndx"]
            if isinstance(shndx, int) and sym.name:
                symbols[(elf.get_section(shndx).name, sym.name)] = sym["st_value"]
    return ObjectBTF(path, spec, sizes, symbols)


@pytest.fixture(scope="module")
def kinds_obj(bpf_obj: Callable[[str], Path]) -> ObjectBTF:
    return read_object(bpf_obj("btf_kinds"))


@pytest.fixture(scope="module")
def layouts_obj(bpf_obj: Callable[[str], Path]) -> ObjectBTF:
    return read_object(bpf_obj("btf_layouts"))


def all_kinds_raws(obj: ObjectBTF) -> list[RawType]:
    """The fixed-up object BTF plus what clang 14 does not emit (ENUM64, a signed one, a union FWD)."""
    raws = raw_types(fixup_datasecs(obj.spec, obj.section_sizes, obj.symbol_offsets))
    raws.append(RawType(Kind.ENUM64, "wide", 8, 2, False, ["WIDE_A", 1, 0, "WIDE_B", 0x90, 0x12]))
    raws.append(RawType(Kind.ENUM64, "swide", 8, 1, True, ["SWIDE_NEG", 0xFFFFFFFE, 0xFFFFFFFF]))
    raws.append(RawType(Kind.ENUM, "senum", 4, 1, True, ["SENUM_NEG", 0xFFFFFFFF]))
    raws.append(RawType(Kind.FWD, "some_union", 0, 0, True))
    return raws


# ---- encoding ----------------------------------------------------------------------------------------------


def test_roundtrip_object_btf(kinds_obj: ObjectBTF) -> None:
    spec = kinds_obj.spec
    assert {t.kind for t in spec} >= {Kind.DATASEC, Kind.VAR, Kind.FLOAT, Kind.DECL_TAG, Kind.TYPE_TAG, Kind.FUNC}
    # fresh string table, from raw records and from the type model (renumbered in list order)
    assert_same_types(Spec(encode(spec)), spec)
    assert_same_types(Spec(encode(list(spec))), spec)
    # keeping the original string section reproduces clang's blob byte for byte
    assert encode(spec, strings=StringTable.of_spec(spec)) == spec.data


def test_roundtrip_vmlinux_btf() -> None:
    need_kernel_btf()
    spec = kernel_spec()
    start = time.process_time()
    blob = encode(spec)
    encode_s = time.process_time() - start
    again = Spec(blob)
    assert len(again) == len(spec) > 100_000
    # every record, kflags included (cheaper than decoding 126k model types twice) ...
    assert raw_types(again) == raw_types(spec)
    # ... and the model agrees on a sample
    for type_id in random.sample(range(1, spec.next_id), 5000):
        assert signature(again.type(type_id)) == signature(spec.type(type_id))
    assert encode(spec, strings=StringTable.of_spec(spec)) == spec.data
    assert encode_s < 3.0, f"encoding vmlinux BTF took {encode_s:.2f}s of CPU"


def test_encode_subset_remaps_ids(kinds_obj: ObjectBTF) -> None:
    spec = kinds_obj.spec
    record = spec.find("record", Struct)
    assert isinstance(record, Struct)
    # the struct and everything it refers to, in reverse id order: every id changes
    needed: dict[int, Type] = {}
    pending = [record.id]
    while pending:
        tid = pending.pop()
        if tid and tid not in needed:
            needed[tid] = spec.type(tid)
            pending += to_raw(needed[tid]).type_ids()
    subset = sorted(needed.values(), key=lambda t: -t.id)
    out = Spec(encode(subset))
    assert out.next_id - 1 == len(subset) < spec.next_id - 1
    new_record = out.find("record", Struct)
    assert isinstance(new_record, Struct)
    assert new_record.id == 1 + subset.index(record) != record.id
    for old_m, new_m in zip(record.members, new_record.members, strict=True):
        assert (old_m.name, old_m.bit_offset, old_m.bitfield_size) == (new_m.name, new_m.bit_offset, new_m.bitfield_size)
        assert (old_m.type.kind, old_m.type.name) == (new_m.type.kind, new_m.type.name)
    flags = new_record.member("flags").type
    assert isinstance(flags, Struct) and [m.bitfield_size for m in flags.members] == [3, 5, 12, 40, 0]
    matrix = new_record.member("matrix").type
    assert isinstance(matrix, Array) and matrix.nelems == 3
    assert isinstance(matrix.elem, Array) and matrix.elem.nelems == 4 and matrix.elem.elem.name == "int"
    with pytest.raises(ValueError, match="not in the list"):
        encode([record])


def test_raw_records_encode_every_kind(kinds_obj: ObjectBTF) -> None:
    raws = all_kinds_raws(kinds_obj)
    spec = Spec(encode(raws))
    wide = spec.find("wide", Enum)
    assert isinstance(wide, Enum) and wide.is64 and not wide.signed
    assert wide.value_of("WIDE_B") == 0x12_00000090
    swide = spec.find("swide", Enum)
    assert isinstance(swide, Enum) and swide.signed and swide.value_of("SWIDE_NEG") == -2
    senum = spec.find("senum", Enum)
    assert isinstance(senum, Enum) and senum.value_of("SENUM_NEG") == -1
    fwd = spec.find("some_union", Fwd)
    assert isinstance(fwd, Fwd) and fwd.is_union
    # the model round-trips these too
    assert_same_types(Spec(encode(list(spec))), spec)
    with pytest.raises(ValueError, match="out of u32 range"):
        encode([RawType(Kind.INT, "bad", -1, 0, False, [32])])


def test_fixup_datasecs_fills_sizes_and_offsets(kinds_obj: ObjectBTF) -> None:
    raw_secs = {t.name: t for t in kinds_obj.spec if isinstance(t, Datasec)}
    assert raw_secs[".bss"].size == 0  # what clang leaves behind
    fixed = fixup_datasecs(kinds_obj.spec, kinds_obj.section_sizes, kinds_obj.symbol_offsets)
    secs = {t.name: t for t in fixed if isinstance(t, Datasec)}
    for name in (".bss", ".data", ".rodata", ".data.custom", ".maps", "license"):
        sec = secs[name]
        assert sec.size == kinds_obj.section_sizes[name]
        offsets = [v.offset for v in sec.vars]
        assert offsets == sorted(offsets)
        for v in sec.vars:
            var = v.var
            assert isinstance(var, Var)
            if var.linkage != 0:
                assert v.offset == kinds_obj.symbol_offsets[(name, var.name)]
    custom = {v.var.name: v.offset for v in secs[".data.custom"].vars}
    assert custom == {"scale": 0, "scale_bits": 8}
    # type ids do not move (.BTF.ext refers to them) and the strings section is kept
    assert fixed.next_id == kinds_obj.spec.next_id
    assert fixed.data.endswith(bytes(StringTable.of_spec(kinds_obj.spec)))
    with pytest.raises(ObjectError, match=re.escape("DATASEC '.bss' has size 0")):
        fixup_datasecs(kinds_obj.spec, {}, {})


@pytest.mark.parametrize("missing", [*FEATURES, "all"])
def test_sanitized_blob_has_no_forbidden_kinds(kinds_obj: ObjectBTF, missing: str) -> None:
    raws = all_kinds_raws(kinds_obj)
    off = FEATURES if missing == "all" else [missing]
    features = KernelBTFFeatures(**{name: False for name in off})
    spec = Spec(for_kernel(raws, features))
    forbidden = set().union(*(FORBIDDEN[name] for name in off))
    kinds = [t.kind for t in spec]
    assert not forbidden & set(kinds)
    # ids are kept; only ENUM64 sanitising appends one placeholder INT
    extra = 1 if "enum64" in off else 0
    assert spec.next_id == len(raws) + 1 + extra
    if "global_func" in off and "func" not in off:
        assert all(t.linkage == 0 for t in spec if isinstance(t, Func))
    if "datasec" in off:
        bss = spec.find("_bss", Struct)
        assert isinstance(bss, Struct) and bss.size == kinds_obj.section_sizes[".bss"]
        assert [(m.name, m.bit_offset) for m in bss.members] == [("counter", 0), ("last_record", 128), ("static_bss", 1280)]
    if "enum64" in off:
        wide = spec.find("wide", Union)
        assert isinstance(wide, Union) and wide.size == 8 and [m.name for m in wide.members] == ["WIDE_A", "WIDE_B"]
        assert not any(t.signed for t in spec if isinstance(t, Enum))
    if "func" in off:
        assert isinstance(spec.types_by_name("on_getpid")[0], Typedef)


# ---- the kernel's verdict ----------------------------------------------------------------------------------


def test_kernel_accepts_object_btf(require_root: None, kinds_obj: ObjectBTF) -> None:
    blob = for_kernel(kinds_obj.spec, section_sizes=kinds_obj.section_sizes, symbol_offsets=kinds_obj.symbol_offsets)
    with load_into_kernel(blob) as fd:
        assert int(fd) > 0


def test_kernel_rejects_unfixed_datasec_with_log(require_root: None, kinds_obj: ObjectBTF) -> None:
    with pytest.raises(BTFLoadError) as info:
        load_into_kernel(encode(kinds_obj.spec))
    assert info.value.errno == 22
    assert "DATASEC .bss" in info.value.log
    assert "DATASEC .bss" in str(info.value)


def test_kernel_rejects_corrupted_blob_with_log(require_root: None, kinds_obj: ObjectBTF) -> None:
    raws = raw_types(fixup_datasecs(kinds_obj.spec, kinds_obj.section_sizes, kinds_obj.symbol_offsets))
    record = next(r for r in raws if r.kind == Kind.STRUCT and r.name == "record")
    record.extra[1] = len(raws) + 1000  # first member points at a type that does not exist
    with pytest.raises(BTFLoadError) as info:
        load_into_kernel(encode(raws))
    log = info.value.log
    assert "record" in log and "Invalid member" in log, log
    assert "Invalid member" in str(info.value)


@pytest.mark.parametrize("missing", [*FEATURES, "all"])
def test_kernel_accepts_sanitized_blob(require_root: None, kinds_obj: ObjectBTF, missing: str) -> None:
    off = FEATURES if missing == "all" else [missing]
    features = KernelBTFFeatures(**{name: False for name in off})
    with load_into_kernel(for_kernel(all_kinds_raws(kinds_obj), features)) as fd:
        assert int(fd) > 0


def test_kernel_accepts_reencoded_vmlinux(require_root: None) -> None:
    need_kernel_btf()
    with load_into_kernel(encode(kernel_spec())) as fd:
        assert int(fd) > 0


# ---- C output ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def vmlinux_dump(tmp_path_factory: pytest.TempPathFactory) -> tuple[CDumper, Path]:
    need_kernel_btf()
    dumper = dump_spec(kernel_spec())
    path = tmp_path_factory.mktemp("vmlinux") / "vmlinux.h"
    path.write_text(dumper.header())
    return dumper, path


def compile_c(source: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    argv = [clang(), "-target", "bpf", "-O2", "-g", "-D__TARGET_ARCH_x86", *extra, "-c", str(source),
            "-o", str(source.with_suffix(".o"))]
    return subprocess.run(argv, capture_output=True, text=True, check=False)


def layout_asserts(dumper: CDumper, types: list[Composite]) -> Iterator[str]:
    """Static asserts of sizeof and of every named, non-bit-field member's offsetof, as BTF says."""
    for t in types:
        name = dumper.name_of(t.id)
        if not name:
            continue
        kw = "struct" if isinstance(t, Struct) else "union"
        yield f'_Static_assert(sizeof({kw} {name}) == {t.size}, "sizeof {name}");'
        for m in t.members:
            if m.name and not m.bitfield_size:
                yield (f"_Static_assert(__builtin_offsetof({kw} {name}, {m.name}) == {m.bit_offset // 8}, "
                       f'"{name}.{m.name}");')


KEY_STRUCTS = ["task_struct", "file", "inode", "dentry", "super_block", "mm_struct", "vm_area_struct", "cred",
               "sk_buff", "sock", "sock_common", "net_device", "bpf_prog", "bpf_map", "page", "pt_regs",
               "trace_event_raw_sys_enter", "path", "qstr", "xdp_buff", "socket", "kiocb"]


def holds_builtin_va_list(spec: Spec, t: Type, seen: set[int] | None = None) -> bool:
    """True when a record holds the compiler's `__builtin_va_list` by value (directly or nested)."""
    seen = set() if seen is None else seen
    if t.id in seen:
        return False
    seen.add(t.id)
    if isinstance(t, Typedef) and t.name == "__builtin_va_list":
        return True
    if isinstance(t, Typedef | Qualifier):
        return holds_builtin_va_list(spec, t.type, seen)
    if isinstance(t, Array):
        return holds_builtin_va_list(spec, t.elem, seen)
    if isinstance(t, Composite):
        return any(holds_builtin_va_list(spec, spec.type(m.type_id), seen) for m in t.members)
    return False


def test_vmlinux_header_layout_matches_btf(vmlinux_dump: tuple[CDumper, Path]) -> None:
    """Every named struct and union of vmlinux has BTF's size and member offsets in the header (~10k records)."""
    dumper, header = vmlinux_dump
    spec = kernel_spec()
    records = [t for t in (spec.type(i) for i in range(1, spec.next_id)) if isinstance(t, Composite) and t.name]
    assert {"task_struct", "sk_buff", "pt_regs"} <= {t.name for t in records}
    # The documented limit (pybpf.btf.cdump): the BPF target's va_list is 8 bytes, x86-64's is 24.
    va_list_holders = [t for t in records if holds_builtin_va_list(spec, t)]
    assert len(va_list_holders) < 5, [t.name for t in va_list_holders]
    considered = [t for t in records if t not in va_list_holders]
    checks = list(layout_asserts(dumper, considered))
    # One sizeof assert for every record considered (none dropped), and member offsets beyond those.
    sizes = [c for c in checks if c.startswith("_Static_assert(sizeof(")]
    assert len(sizes) == len(considered)
    assert len(checks) - len(sizes) > len(considered)
    assert set(KEY_STRUCTS) <= {c.rsplit('"sizeof ', 1)[1].removesuffix('");') for c in sizes}
    src = header.parent / "layout_check.c"
    src.write_text('#include "vmlinux.h"\n' + "\n".join(checks) + "\n")
    result = compile_c(src)
    assert result.returncode == 0, result.stderr[:4000]


def test_bpf_program_compiles_against_vmlinux_header(vmlinux_dump: tuple[CDumper, Path]) -> None:
    header = vmlinux_dump[1]
    src = header.parent / "prog.bpf.c"
    src.write_text("""\
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 4096);
} events SEC(".maps");

SEC("tp_btf/sched_switch")
int BPF_PROG(on_switch, bool preempt, struct task_struct *prev, struct task_struct *next)
{
	u32 *pid = bpf_ringbuf_reserve(&events, sizeof(u32), 0);
	if (!pid)
		return 0;
	*pid = BPF_CORE_READ(next, real_parent, tgid) + prev->pid;
	bpf_ringbuf_submit(pid, 0);
	return 0;
}

SEC("tracepoint/syscalls/sys_enter_openat")
int on_openat(struct trace_event_raw_sys_enter *ctx)
{
	struct task_struct *task = (void *)bpf_get_current_task();
	return BPF_CORE_READ(task, mm, exe_file, f_path.dentry, d_name.len) + ctx->args[0];
}

char LICENSE[] SEC("license") = "GPL";
""")
    result = compile_c(src, f"-I{header.parent}")
    assert result.returncode == 0, result.stderr[:4000]
    with src.with_suffix(".o").open("rb") as f:
        assert ELFFile(f).get_section_by_name(".BTF.ext") is not None  # CO-RE relocations were recorded


def test_vmlinux_header_speed() -> None:
    need_kernel_btf()
    spec = Spec.from_file(KERNEL_BTF)  # nothing decoded yet: the whole cost is counted
    start = time.process_time()
    text = vmlinux_header(spec)
    elapsed = time.process_time() - start
    assert text.count("\nstruct task_struct {\n") == 1
    assert elapsed < 5.0, f"vmlinux.h took {elapsed:.2f}s of CPU"


DEFINITION = re.compile(r"^(?:typedef )?(struct|union|enum) ([A-Za-z_]\w*) \{", re.M)
PADDING = re.compile(r"\t+(long|int|short|char): \d+;")


def test_vmlinux_header_defines_what_bpftool_defines(vmlinux_dump: tuple[CDumper, Path]) -> None:
    reference = subprocess.run([bpftool(), "btf", "dump", "file", str(KERNEL_BTF), "format", "c"],
                               capture_output=True, text=True, check=True).stdout
    ours = vmlinux_dump[1].read_text()
    defined = set(DEFINITION.findall(ours))
    assert ("struct", "task_struct") in defined
    assert defined == set(DEFINITION.findall(reference))
    assert ours.splitlines()[:6] == reference.splitlines()[:6]
    assert ours.endswith("#endif /* __VMLINUX_H__ */\n")
    # Same declarations in the same order; lines differ only where we add layout attributes or padding.
    ours_only = Counter(ours.splitlines()) - Counter(reference.splitlines())
    ref_only = Counter(reference.splitlines()) - Counter(ours.splitlines())
    assert sum(ours_only.values()) < 200
    assert all("__attribute__((" in ln or PADDING.fullmatch(ln) for ln in ours_only), ours_only
    assert all(ln.lstrip("\t").startswith("}") for ln in ref_only), ref_only


def test_record_layouts_needing_attributes(layouts_obj: ObjectBTF, tmp_path: Path) -> None:
    dumper = dump_spec(layouts_obj.spec)
    header = tmp_path / "layouts.h"
    header.write_text(dumper.header())
    text = header.read_text()
    assert "} __attribute__((packed));" in text
    assert "union bigger_union {\n\tint a;\n\tchar b[3];\n} __attribute__((aligned(16)));" in text
    assert "} __attribute__((mode(byte)));" in text
    assert "\tint (*cb[2])(int, char *);" in text
    assert "\tint arr[2][3][4];" in text
    assert "\tconst char * const *strv;" in text
    assert "\tvoid (* (*ret_fp)(int))(long);" in text
    assert "typedef int (*handler_t)(void *, ...);" in text
    assert "\t\tstruct {\n\t\t\tshort x;\n\t\t\tshort y;\n\t\t};" in text  # anonymous members inline
    assert "\tunsigned long long c: 50;" in text
    records = [t for t in layouts_obj.spec if isinstance(t, Composite) and t.name]
    checks = list(layout_asserts(dumper, records))
    assert len(checks) > 50
    src = tmp_path / "check.c"
    src.write_text('#include "layouts.h"\n' + "\n".join(checks) + "\n")
    result = compile_c(src)
    assert result.returncode == 0, result.stderr[:4000] + "\n" + text


def test_duplicate_names_get_suffixes(tmp_path: Path) -> None:
    raws = [
        RawType(Kind.INT, "int", 4, 0, False, [(1 << 24) | 32]),  # 1
        RawType(Kind.STRUCT, "dup", 4, 1, False, ["a", 1, 0]),  # 2
        RawType(Kind.STRUCT, "dup", 8, 2, False, ["a", 1, 0, "b", 1, 32]),  # 3
        RawType(Kind.ENUM, "e1", 4, 1, False, ["SAME", 1]),  # 4
        RawType(Kind.ENUM, "e2", 4, 1, False, ["SAME", 2]),  # 5
        RawType(Kind.TYPEDEF, "dup_t", 3),  # 6
        RawType(Kind.STRUCT, "user", 16, 2, False, ["x", 2, 0, "y", 6, 32]),  # 7
    ]
    spec = Spec(encode(raws))
    dumper = dump_spec(spec)
    text = dumper.text()
    assert (dumper.name_of(2), dumper.name_of(3)) == ("dup", "dup___2")
    assert "struct dup {\n\tint a;\n};" in text
    assert "struct dup___2 {\n\tint a;\n\tint b;\n};" in text
    assert "typedef struct dup___2 dup_t;" in text
    assert "\tSAME = 1," in text and "\tSAME___2 = 2," in text
    assert "struct user {\n\tstruct dup x;\n\tdup_t y;\n" in text
    header = tmp_path / "dups.h"
    header.write_text(dumper.header())
    src = tmp_path / "dups.c"
    src.write_text('#include "dups.h"\n' + "\n".join(layout_asserts(dumper, [spec.type(7)])) + "\n")  # type: ignore[list-item]
    result = compile_c(src)
    assert result.returncode == 0, result.stderr + text


# ---- the command line ----------------------------------------------------------------------------------------


def test_cli_raw_matches_bpftool_for_object(kinds_obj: ObjectBTF) -> None:
    reference = subprocess.run([bpftool(), "btf", "dump", "file", str(kinds_obj.path)],
                               capture_output=True, text=True, check=True).stdout
    result = CliRunner().invoke(cli_main, ["btf", "dump", "--file", str(kinds_obj.path), "--format", "raw"])
    assert result.exit_code == 0, result.output
    assert result.output == reference


def test_cli_raw_matches_bpftool_for_vmlinux_head() -> None:
    need_kernel_btf()
    proc = subprocess.Popen([bpftool(), "btf", "dump", "file", str(KERNEL_BTF)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    try:
        reference = list(itertools.islice(proc.stdout, 5000))
    finally:
        proc.kill()
        proc.wait()
    ours = "".join(itertools.islice(raw_dump(kernel_spec()), 5000)).splitlines(keepends=True)[:5000]
    assert ours[0] == "[1] INT 'long unsigned int' size=8 bits_offset=0 nr_bits=64 encoding=(none)\n"
    assert ours == reference


def test_cli_c_output_to_file(layouts_obj: ObjectBTF, tmp_path: Path) -> None:
    out = tmp_path / "out.h"
    result = CliRunner().invoke(cli_main, ["btf", "dump", "--file", str(layouts_obj.path), "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.startswith("#ifndef __VMLINUX_H__\n") and "struct all {" in text
    src = tmp_path / "use.c"
    src.write_text('#include "out.h"\nint size_all = sizeof(struct all);\n')
    assert compile_c(src).returncode == 0


def test_cli_rejects_file_without_btf(tmp_path: Path) -> None:
    bogus = tmp_path / "bogus.btf"
    bogus.write_bytes(b"\x00" * 64)
    result = CliRunner().invoke(cli_main, ["btf", "dump", "--file", str(bogus)])
    assert result.exit_code != 0
    assert "BTF magic" in result.output
