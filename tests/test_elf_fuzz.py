"""pybpf.elf on damaged objects: truncations and byte flips must give ObjectError (or a valid spec when
the damage hits bytes nobody reads), never another exception."""

from __future__ import annotations

import io
import random
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from pybpf import elf
from pybpf.errors import ObjectError

# Objects covering BTF maps with initial slots, global data + externs, subprograms + CO-RE, legacy maps.
OBJECTS = ["elf_maps", "elf_globals", "elf_subprogs", "elf_legacy_maps"]


def _read_or_object_error(data: bytes) -> ObjectError | None:
    try:
        elf.read(data, name="fuzz")
    except ObjectError as exc:
        assert str(exc)
        return exc
    return None


def _interesting_ranges(data: bytes) -> list[tuple[str, int, int]]:
    """(name, start, end) of everything the reader looks at: headers and the non-DWARF sections."""
    f = ELFFile(io.BytesIO(data))
    shoff = f.header["e_shoff"]
    out = [("ELF header", 0, 64), ("section headers", shoff, shoff + 64 * f.num_sections())]
    for sec in f.iter_sections():
        name = sec.name
        if name.startswith((".debug", ".rel.debug")) or sec["sh_type"] == "SHT_NOBITS" or not sec["sh_size"]:
            continue
        out.append((name, sec["sh_offset"], sec["sh_offset"] + sec["sh_size"]))
    return out


def _flips(data: bytes, rng: random.Random, count: int) -> Iterator[tuple[str, int, int]]:
    ranges = _interesting_ranges(data)
    for _ in range(count):
        name, start, end = rng.choice(ranges)
        pos = rng.randrange(start, end)
        yield name, pos, rng.choice([0x00, 0xFF, data[pos] ^ (1 << rng.randrange(8)), rng.randrange(256)])


@pytest.mark.parametrize("obj", OBJECTS)
def test_truncated_objects_raise_object_error(bpf_obj: Callable[[str], Path], obj: str) -> None:
    data = bpf_obj(obj).read_bytes()
    rng = random.Random(f"truncate-{obj}")
    lengths = {*range(0, 80), len(data) - 1, len(data) - 64, len(data) - 65}
    lengths |= {rng.randrange(len(data)) for _ in range(150)}
    # Cuts at section boundaries are the most instructive: the data of that section goes missing.
    lengths |= {end for _, _, end in _interesting_ranges(data) if end < len(data)}
    lengths |= {start + 1 for _, start, _ in _interesting_ranges(data) if start + 1 < len(data)}
    for n in sorted(lengths):
        err = _read_or_object_error(data[:n])
        # The section header table is at the end of clang's output: every cut loses it.
        assert err is not None, f"a {obj} cut to {n} of {len(data)} bytes was read without complaint"


@pytest.mark.parametrize("obj", OBJECTS)
def test_byte_flips_raise_object_error_or_read(bpf_obj: Callable[[str], Path], obj: str) -> None:
    data = bpf_obj(obj).read_bytes()
    rng = random.Random(f"flip-{obj}")
    errors = 0
    for name, pos, value in _flips(data, rng, 400):
        damaged = bytearray(data)
        damaged[pos] = value
        try:
            err = _read_or_object_error(bytes(damaged))
        except Exception as exc:  # pragma: no cover - the failure message is the point
            raise AssertionError(
                f"{obj}: byte {pos:#x} (in {name}) set to {value:#04x} raised {type(exc).__name__}: {exc}"
            ) from exc
        errors += err is not None
    assert errors > 0  # the flips do hit things that matter


def test_multi_byte_corruption_of_each_section(bpf_obj: Callable[[str], Path]) -> None:
    """Overwrite a run of bytes in every section the reader uses (counts, offsets, sizes all go wild)."""
    data = bpf_obj("elf_globals").read_bytes()
    rng = random.Random("smear")
    for name, start, end in _interesting_ranges(data):
        for _ in range(25):
            pos = rng.randrange(start, end)
            run = bytes(rng.randrange(256) for _ in range(rng.randrange(2, 9)))
            damaged = data[:pos] + run + data[pos + len(run) :]
            try:
                _read_or_object_error(damaged[: len(data)])
            except Exception as exc:  # pragma: no cover
                raise AssertionError(
                    f"{name}: {run.hex()} at {pos:#x} raised {type(exc).__name__}: {exc}"
                ) from exc


def test_error_names_section_and_offset(bpf_obj: Callable[[str], Path], tmp_path: Path) -> None:
    data = bytearray(bpf_obj("elf_subprogs").read_bytes())
    f = ELFFile(io.BytesIO(bytes(data)))
    rel = f.get_section_by_name(".reltp/syscalls/sys_enter_getpid")
    assert rel is not None
    # Point the first relocation far past the end of its program section.
    off = rel["sh_offset"]
    data[off : off + 8] = (0x10000).to_bytes(8, "little")
    path = tmp_path / "bad.bpf.o"
    path.write_bytes(bytes(data))
    with pytest.raises(ObjectError) as info:
        elf.read(path)
    err = info.value
    assert err.section == "tp/syscalls/sys_enter_getpid" and err.offset == 0x10000 and err.path == str(path)
    assert "past the end" in str(err) and str(path) in str(err)


def test_not_an_object_file(tmp_path: Path) -> None:
    for content in (b"", b"hello world", b"\x7fELF" + bytes(60)):
        with pytest.raises(ObjectError):
            elf.read(content)
    with pytest.raises(ObjectError, match="cannot read"):
        elf.read(tmp_path / "missing.o")
    # A host object (x86-64 ELF) is not a BPF object.
    import sys

    exe = Path(sys.executable).resolve().read_bytes()[:4096]
    with pytest.raises(ObjectError):
        elf.read(exe)


def test_unknown_section_type_is_an_error(bpf_obj: Callable[[str], Path]) -> None:
    data = bytearray(bpf_obj("elf_maps").read_bytes())
    f = ELFFile(io.BytesIO(bytes(data)))
    index = next(i for i, s in enumerate(f.iter_sections()) if s.name == "license")
    hdr = f.header["e_shoff"] + 64 * index
    data[hdr + 4 : hdr + 8] = (0x1234).to_bytes(4, "little")
    with pytest.raises(ObjectError, match="unknown section type") as info:
        elf.read(bytes(data))
    assert info.value.section == "license"


def test_huge_bss_is_refused_not_allocated(bpf_obj: Callable[[str], Path]) -> None:
    data = bytearray(bpf_obj("elf_subprogs").read_bytes())
    f = ELFFile(io.BytesIO(bytes(data)))
    index = next(i for i, s in enumerate(f.iter_sections()) if s.name == ".bss")
    size_field = f.header["e_shoff"] + 64 * index + 32
    data[size_field : size_field + 8] = (1 << 62).to_bytes(8, "little")
    with pytest.raises(ObjectError, match="implausibly large") as info:
        elf.read(bytes(data))
    assert info.value.section == ".bss"
