"""`Instruction` and `Instructions`: the in-memory form of BPF programs, encode and decode.

Kernel layout of one slot (``struct bpf_insn``), little-endian on every kernel pybpf targets::

    u8 code | u8 dst:4 src:4 | s16 off | s32 imm

``ld_imm64`` (opcode 0x18) is one `Instruction` whose ``imm`` holds the whole 64-bit constant; it encodes
to two slots (the second has code 0 and carries the upper 32 bits in its imm). Jump offsets count slots,
so `Instructions` offers `slot_of` / `index_of` to move between slot and instruction numbers.

Speed: `Instructions.decode` does not build Python objects. It keeps the bytes and creates an
`Instruction` the first time an index is touched (about a microsecond each), so decoding and re-encoding
a 100k-instruction program whose loader patched a few thousand instructions costs a few milliseconds.
No numpy here: importing it costs more start-up time than all of this module's work on a typical program.
"""

from __future__ import annotations

import bisect
import itertools
import struct

# The ABCs from their home module: `collections.abc` would import all of `collections` first.
from _collections_abc import MutableSequence, Sequence

from pybpf.asm import opcodes as op
from pybpf.errors import ObjectError

TYPE_CHECKING = False
if not TYPE_CHECKING:
    from pybpf._typing import cast, overload
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from typing import Literal, TypeAlias, cast, overload

    ByteOrder: TypeAlias = Literal["little", "big"]
else:
    ByteOrder = str  # a type alias: type checkers see the Literal above

__all__ = ["ByteOrder", "Instruction", "Instructions"]

_LD_IMM64 = op.OPCODE_LD_IMM64
_SLOT = struct.Struct("<BBhi")
_SLOT_PACK = struct.Struct("<BBhI")  # imm packed as u32 after masking, so both signs encode
_DOUBLE_PACK = struct.Struct("<BBhIBBhI")
_I32 = struct.Struct("<i")


def byte_positions(haystack: bytes, byte: int) -> list[int]:
    """Every index of `byte` in `haystack` (bytes.find runs in C); with haystack = code[::8], the slots whose
    opcode is `byte`."""
    out = []
    find = haystack.find
    i = find(byte)
    while i >= 0:
        out.append(i)
        i = find(byte, i + 1)
    return out

# Bumped whenever some Instruction's opcode changes to or from ld_imm64 (its slot count changes), so an
# Instructions can tell whether its cached slot offsets are still right without scanning every object.
_size_epoch = [0]


class Instruction:
    """One BPF instruction.

    Fields are those of ``struct bpf_insn``; ``imm`` is the signed 32-bit immediate, or for ``ld_imm64``
    the full 64-bit constant. Loader metadata rides along and is never encoded:

    * ``reference``: name of the symbol this instruction refers to (a map, a subprogram, a ksym, a label)
    * ``source``: the C source line it came from (BTF line info), shown by the disassembler
    * ``symbol``: name of the function (or label) that starts at this instruction

    Equality compares the encoded fields only, not the metadata.
    """

    __slots__ = ("_opcode", "dst", "imm", "off", "reference", "source", "src", "symbol")

    dst: int
    src: int
    off: int
    imm: int
    reference: str | None
    source: str | None
    symbol: str | None

    def __init__(
        self,
        opcode: int,
        dst: int = 0,
        src: int = 0,
        off: int = 0,
        imm: int = 0,
        *,
        reference: str | None = None,
        source: str | None = None,
        symbol: str | None = None,
    ) -> None:
        self._opcode = opcode
        self.dst = dst
        self.src = src
        self.off = off
        self.imm = imm
        self.reference = reference
        self.source = source
        self.symbol = symbol

    @property
    def opcode(self) -> int:
        """The 8-bit opcode (class | op/size | source/mode)."""
        return self._opcode

    @opcode.setter
    def opcode(self, value: int) -> None:
        if (value == _LD_IMM64) != (self._opcode == _LD_IMM64):
            _size_epoch[0] += 1
        self._opcode = value

    @property
    def size(self) -> int:
        """Slots this instruction takes when encoded: 2 for ``ld_imm64``, else 1."""
        return 2 if self._opcode == _LD_IMM64 else 1

    # -- classification -------------------------------------------------------------------------------
    @property
    def insn_class(self) -> int:
        return self._opcode & 0x07

    def is_ld_imm64(self) -> bool:
        return self._opcode == _LD_IMM64

    def is_call(self) -> bool:
        """Any call: helper, bpf-to-bpf or kfunc."""
        return self._opcode == op.OPCODE_CALL

    def is_helper_call(self) -> bool:
        return self._opcode == op.OPCODE_CALL and self.src == 0

    def is_pseudo_call(self) -> bool:
        """A bpf-to-bpf call (``imm`` is a slot offset to the callee)."""
        return self._opcode == op.OPCODE_CALL and self.src == op.PSEUDO_CALL

    def is_kfunc_call(self) -> bool:
        return self._opcode == op.OPCODE_CALL and self.src == op.PSEUDO_KFUNC_CALL

    def is_exit(self) -> bool:
        return self._opcode == op.OPCODE_EXIT

    def is_jump(self) -> bool:
        """A pc-relative jump (goto, gotol, may_goto, conditional jumps); not calls or exit."""
        code = self._opcode
        cls = code & 0x07
        if cls not in (op.JMP, op.JMP32):
            return False
        jop = code & 0xF0
        return jop not in (op.CALL, op.EXIT) and (jop != op.JCOND or code == op.OPCODE_MAY_GOTO)

    def is_func_pointer(self) -> bool:
        """``ld_imm64`` of a subprogram address (``PSEUDO_FUNC``, e.g. a callback)."""
        return self._opcode == _LD_IMM64 and self.src == op.PSEUDO_FUNC

    def is_map_load(self) -> bool:
        """``ld_imm64`` of a map pointer or map value address."""
        return self._opcode == _LD_IMM64 and self.src in (
            op.PSEUDO_MAP_FD,
            op.PSEUDO_MAP_VALUE,
            op.PSEUDO_MAP_IDX,
            op.PSEUDO_MAP_IDX_VALUE,
        )

    def relative_target(self) -> int | None:
        """The slot delta this instruction jumps or points to: the target is ``slot + 1 + delta``
        (also for a function-pointer ``ld_imm64``, whose delta does not skip its own second slot)."""
        if self.is_jump():
            return self.imm if self._opcode == op.OPCODE_GOTOL else self.off
        if self.is_pseudo_call() or self.is_func_pointer():
            return self.imm
        return None

    def set_relative_target(self, delta: int) -> None:
        """Set the slot delta of a jump, pseudo call or function pointer load."""
        if self.is_jump() and self._opcode != op.OPCODE_GOTOL:
            if not -0x8000 <= delta <= 0x7FFF:
                raise ValueError(
                    f"jump offset {delta} does not fit in 16 bits; use gotol (JMP32|JA) for long jumps"
                )
            self.off = delta
        elif self.is_jump() or self.is_pseudo_call() or self.is_func_pointer():
            self.imm = delta
        else:
            raise ValueError(f"{self} has no pc-relative target")

    # -- encoding --------------------------------------------------------------------------------------
    def encode(self, byteorder: ByteOrder = "little") -> bytes:
        """The instruction in kernel layout (8 or 16 bytes)."""
        buf = bytearray(8 * self.size)
        _pack_into(buf, 0, self)
        if byteorder == "big":
            return _convert_byteorder(bytes(buf), "little", "big")
        return bytes(buf)

    @classmethod
    def decode(cls, data: bytes, byteorder: ByteOrder = "little") -> Instruction:
        """Decode exactly one instruction (8 bytes, or 16 for ``ld_imm64``)."""
        insns = Instructions.decode(data, byteorder=byteorder)
        if len(insns) != 1:
            raise ObjectError(f"expected one instruction, got {len(insns)} in {len(data)} bytes")
        return insns[0]

    def copy(self) -> Instruction:
        return Instruction(
            self._opcode,
            self.dst,
            self.src,
            self.off,
            self.imm,
            reference=self.reference,
            source=self.source,
            symbol=self.symbol,
        )

    def _key(self) -> tuple[int, int, int, int, int]:
        mask = 0xFFFFFFFFFFFFFFFF if self._opcode == _LD_IMM64 else 0xFFFFFFFF
        return (self._opcode, self.dst, self.src, self.off, self.imm & mask)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Instruction):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        text = (
            f"Instruction(opcode={self._opcode:#04x}, dst={self.dst}, src={self.src}, "
            f"off={self.off}, imm={self.imm}"
        )
        for name in ("reference", "source", "symbol"):
            value = getattr(self, name)
            if value is not None:
                text += f", {name}={value!r}"
        return text + ")"

    def __str__(self) -> str:
        """Disassembly in the kernel's (bpftool's) syntax, e.g. ``(b7) r0 = 0``."""
        from pybpf.asm.disasm import format_instruction

        return format_instruction(self)


def _pack_into(buf: bytearray, pos: int, insn: Instruction) -> None:
    code = insn._opcode
    dst = insn.dst
    src = insn.src
    imm = insn.imm
    if (dst | src) & ~0xF:
        raise ValueError(f"register number out of range 0..15 in {insn!r}")
    try:
        if code == _LD_IMM64:
            if not -(1 << 63) <= imm < (1 << 64):
                raise ValueError(f"ld_imm64 constant {imm:#x} does not fit in 64 bits in {insn!r}")
            _DOUBLE_PACK.pack_into(
                buf,
                pos,
                code,
                dst | (src << 4),
                insn.off,
                imm & 0xFFFFFFFF,
                0,
                0,
                0,
                (imm >> 32) & 0xFFFFFFFF,
            )
        else:
            if not -0x80000000 <= imm <= 0xFFFFFFFF:
                raise ValueError(f"immediate {imm:#x} does not fit in 32 bits in {insn!r}")
            _SLOT_PACK.pack_into(buf, pos, code, dst | (src << 4), insn.off, imm & 0xFFFFFFFF)
    except struct.error as exc:
        raise ValueError(f"cannot encode {insn!r}: opcode must fit in 8 bits and off in 16 bits ({exc})")


def _pack_many(insns: Sequence[Instruction]) -> bytes:
    """Encode instructions back to back; one struct.pack call instead of one per instruction."""
    flat: list[int] = []
    parts: list[str] = []
    extend = flat.extend
    add = parts.append
    regs_seen = 0
    for insn in insns:
        dst = insn.dst
        src = insn.src
        regs_seen |= dst | src
        if insn._opcode == _LD_IMM64:
            imm = insn.imm
            extend((_LD_IMM64, dst | src << 4, insn.off, imm & 0xFFFFFFFF, 0, 0, 0, imm >> 32))
            add("BBhIBBhi")
        else:
            extend((insn._opcode, dst | src << 4, insn.off, insn.imm))
            add("BBhi")
    if not regs_seen & ~0xF:
        try:
            return struct.pack("<" + "".join(parts), *flat)
        except struct.error:
            pass
    # Something is out of range or given unsigned: the careful path masks what is valid and names the
    # instruction that is not.
    buf = bytearray(8 * sum(insn.size for insn in insns))
    pos = 0
    for insn in insns:
        _pack_into(buf, pos, insn)
        pos += 8 * insn.size
    return bytes(buf)


def _convert_byteorder(data: bytes, source: ByteOrder, target: ByteOrder) -> bytes:
    if source == target:
        return data
    import numpy as np  # only big-endian objects need this; numpy is slow to import

    le = np.dtype([("code", "u1"), ("regs", "u1"), ("off", "<i2"), ("imm", "<i4")])
    be = np.dtype([("code", "u1"), ("regs", "u1"), ("off", ">i2"), ("imm", ">i4")])
    src_dtype, dst_dtype = (le, be) if source == "little" else (be, le)
    a = np.frombuffer(data, dtype=src_dtype)
    b = np.empty(len(a), dtype=dst_dtype)
    b["code"] = a["code"]
    regs = a["regs"]
    # The register nibbles are a C bitfield, allocated from the other end on big-endian.
    b["regs"] = (regs >> 4) | ((regs & 0x0F) << 4)
    b["off"] = a["off"]
    b["imm"] = a["imm"]
    return b.tobytes()


_Item = Instruction | int  # int: slot number in Instructions._raw, not yet turned into an Instruction


class Instructions(MutableSequence[Instruction]):
    """A list of `Instruction` with kernel encoding, slot arithmetic and disassembly.

    Behaves like ``list[Instruction]``: indexing, slicing (gives `Instructions`), assignment, insert,
    delete, iteration. Indices count instructions; slots count 8-byte units (``ld_imm64`` takes two).
    Instructions obtained from a sequence are live: changing one changes the sequence.
    """

    __slots__ = ("_items", "_offsets", "_offsets_epoch", "_raw", "_starts", "_touched")

    _items: list[_Item]
    _raw: bytes
    _starts: list[int] | None  # slot of each item while the layout equals _raw's (after decode)
    _touched: list[int]  # indices materialised while _starts is set
    _offsets: list[int] | None  # cached slot offsets, plus the total at the end
    _offsets_epoch: int

    def __init__(self, instructions: Iterable[Instruction] = ()) -> None:
        self._raw = b""
        self._starts = None
        self._touched = []
        self._offsets = None
        self._offsets_epoch = -1
        if isinstance(instructions, Instructions):
            self._raw = instructions._raw
            self._items = list(instructions._items)
            return
        items: list[_Item] = list(instructions)
        for insn in items:
            if not isinstance(insn, Instruction):
                raise TypeError(f"Instructions holds Instruction objects, not {type(insn).__name__}")
        self._items = items

    # -- decode / encode -------------------------------------------------------------------------------
    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview, *, byteorder: ByteOrder = "little") -> Instructions:
        """Instructions from kernel-layout bytes (an ELF program section, ``xlated_prog_insns``, ...).

        Raises `ObjectError` if the length is not a multiple of 8 or an ``ld_imm64`` lacks its second
        slot (or that slot is not blank apart from its imm).
        """
        raw = bytes(data)
        if len(raw) % 8:
            raise ObjectError(
                f"instruction bytes must be a multiple of 8 long, got {len(raw)}", offset=len(raw) & ~7
            )
        if byteorder == "big":
            raw = _convert_byteorder(raw, "big", "little")
        elif byteorder != "little":
            raise ValueError(f"byteorder must be 'little' or 'big', not {byteorder!r}")
        nslots = len(raw) // 8
        codes = raw[::8]
        # Every slot starts an instruction except the second half of each ld_imm64; those are few, so
        # walk the ld_imm64 opcodes (found by a C-speed scan) and fill the runs between them.
        starts: list[int] = []
        run_start = 0
        for slot in byte_positions(codes, _LD_IMM64):
            if slot < run_start:
                continue  # the second half of the previous ld_imm64 (rejected below if non-blank)
            if slot == nslots - 1:
                raise ObjectError(
                    "ld_imm64 at the end of the program is missing its second slot", offset=slot * 8
                )
            if raw[slot * 8 + 8 : slot * 8 + 12] != b"\0\0\0\0":
                raise ObjectError(
                    f"ld_imm64 at slot {slot} is followed by a slot with code/registers/offset set; "
                    "the second half of ld_imm64 may only carry the upper 32 bits of the constant",
                    offset=(slot + 1) * 8,
                )
            starts.extend(range(run_start, slot + 1))
            run_start = slot + 2
        starts.extend(range(run_start, nslots))
        self = cls.__new__(cls)
        self._raw = raw
        self._items = cast("list[_Item]", starts[:])
        self._starts = starts
        self._touched = []
        self._offsets = None
        self._offsets_epoch = -1
        return self

    def encode(self, *, byteorder: ByteOrder = "little") -> bytes:
        """All instructions in kernel layout (``ld_imm64`` as two slots)."""
        items = self._items
        if self._pristine():
            if self._touched:
                starts = self._starts
                assert starts is not None
                buf = bytearray(self._raw)
                for k in self._touched:
                    _pack_into(buf, starts[k] * 8, cast(Instruction, items[k]))
                out = bytes(buf)
            else:
                out = self._raw
        elif not self._raw:
            out = _pack_many(cast("list[Instruction]", items))
        else:
            out = self._encode_mixed()
        if byteorder == "big":
            return _convert_byteorder(out, "little", "big")
        return out

    def _encode_mixed(self) -> bytes:
        """Encode a mix of undecoded slots (copied as runs of raw bytes) and Instruction objects."""
        raw = self._raw
        chunks: list[bytes] = []
        objects: list[Instruction] = []
        run_start = run_end = 0  # current run of consecutive raw slots [run_start, run_end)
        for x in self._items:
            if type(x) is int:
                if objects:
                    chunks.append(_pack_many(objects))
                    objects = []
                if x != run_end:
                    if run_end > run_start:
                        chunks.append(raw[run_start * 8 : run_end * 8])
                    run_start = x
                run_end = x + (2 if raw[x * 8] == _LD_IMM64 else 1)
            else:
                if run_end > run_start:
                    chunks.append(raw[run_start * 8 : run_end * 8])
                    run_start = run_end = 0
                objects.append(x)  # type: ignore[arg-type]
        if objects:
            chunks.append(_pack_many(objects))
        if run_end > run_start:
            chunks.append(raw[run_start * 8 : run_end * 8])
        return b"".join(chunks)

    # -- layout ----------------------------------------------------------------------------------------
    def _pristine(self) -> bool:
        """True if the items still sit exactly where decode() found them in _raw."""
        starts = self._starts
        if starts is None:
            return False
        if self._offsets is not None and self._offsets_epoch == _size_epoch[0]:
            return True
        raw = self._raw
        items = self._items
        for k in self._touched:
            insn = cast(Instruction, items[k])
            if (insn._opcode == _LD_IMM64) != (raw[starts[k] * 8] == _LD_IMM64):
                # An object changed size in place: the raw layout no longer applies.
                self._starts = None
                self._touched = []
                return False
        return True

    def _slot_offsets(self) -> list[int]:
        """Start slot of every instruction, then the total slot count."""
        epoch = _size_epoch[0]
        if self._offsets is not None and self._offsets_epoch == epoch:
            return self._offsets
        if self._pristine():
            assert self._starts is not None
            offsets = [*self._starts, len(self._raw) // 8]
        else:
            raw = self._raw
            sizes = [
                (2 if raw[x * 8] == _LD_IMM64 else 1)
                if type(x) is int
                else (2 if x._opcode == _LD_IMM64 else 1)  # type: ignore[union-attr]
                for x in self._items
            ]
            offsets = [0, *itertools.accumulate(sizes)]
        self._offsets = offsets
        self._offsets_epoch = epoch
        return offsets

    def slot_offsets(self) -> list[int]:
        """Start slot of every instruction (``len(self)`` entries)."""
        return self._slot_offsets()[:-1]

    def slot_count(self) -> int:
        """Total 8-byte slots (``len(self.encode()) // 8``)."""
        return self._slot_offsets()[-1]

    def slot_of(self, index: int) -> int:
        """Slot where instruction ``index`` starts."""
        n = len(self._items)
        if index < 0:
            index += n
        if not 0 <= index < n:
            raise IndexError(f"instruction index {index} out of range (0..{n - 1})")
        return self._slot_offsets()[index]

    def index_of(self, slot: int) -> int:
        """Instruction that starts at ``slot``; ValueError for the second half of an ``ld_imm64``."""
        offsets = self._slot_offsets()
        if not 0 <= slot < offsets[-1]:
            raise IndexError(f"slot {slot} out of range (0..{offsets[-1] - 1})")
        index = bisect.bisect_right(offsets, slot) - 1
        if offsets[index] != slot:
            raise ValueError(f"slot {slot} is the second half of the ld_imm64 at slot {slot - 1}")
        return index

    def at_slot(self, slot: int) -> Instruction:
        """The instruction starting at ``slot``."""
        return self[self.index_of(slot)]

    def iter_slots(self) -> Iterator[tuple[int, Instruction]]:
        """(slot, instruction) pairs in order."""
        slot = 0
        for insn in self:
            yield slot, insn
            slot += 2 if insn._opcode == _LD_IMM64 else 1

    def opcodes(self) -> bytes:
        """Opcode of every instruction, one byte each, without building Instruction objects
        (``insns.opcodes().count(OPCODE_CALL)``, or ``numpy.frombuffer`` it for vector work)."""
        raw = self._raw
        if self._starts is not None and not self._touched and len(self._starts) * 8 == len(raw):
            return raw[::8]
        return bytes(
            raw[x * 8] if type(x) is int else x._opcode  # type: ignore[union-attr]
            for x in self._items
        )

    # -- element access --------------------------------------------------------------------------------
    def _materialize(self, index: int, slot: int) -> Instruction:
        raw = self._raw
        pos = slot * 8
        code, regs, off, imm = _SLOT.unpack_from(raw, pos)
        if code == _LD_IMM64:
            imm = (_I32.unpack_from(raw, pos + 12)[0] << 32) | (imm & 0xFFFFFFFF)
        insn = Instruction(code, regs & 0x0F, regs >> 4, off, imm)
        self._items[index] = insn
        if self._starts is not None:
            self._touched.append(index)
        return insn

    def __len__(self) -> int:
        return len(self._items)

    @overload
    def __getitem__(self, index: int) -> Instruction: ...
    @overload
    def __getitem__(self, index: slice) -> Instructions: ...
    def __getitem__(self, index: int | slice) -> Instruction | Instructions:
        if isinstance(index, slice):
            new = Instructions.__new__(Instructions)
            new._raw = self._raw
            new._items = self._items[index]
            new._starts = None
            new._touched = []
            new._offsets = None
            new._offsets_epoch = -1
            return new
        x = self._items[index]
        if type(x) is int:
            return self._materialize(index if index >= 0 else index + len(self._items), x)
        return x  # type: ignore[return-value]

    def __iter__(self) -> Iterator[Instruction]:
        items = self._items
        unpack = _SLOT.unpack_from
        k = 0
        # Materialisation is inlined: a method call per instruction would double the cost.
        while k < len(items):
            x = items[k]
            if type(x) is int:
                raw = self._raw
                code, regs, off, imm = unpack(raw, x * 8)
                if code == _LD_IMM64:
                    imm = (_I32.unpack_from(raw, x * 8 + 12)[0] << 32) | (imm & 0xFFFFFFFF)
                x = items[k] = Instruction(code, regs & 0x0F, regs >> 4, off, imm)
                if self._starts is not None:
                    self._touched.append(k)
            yield x  # type: ignore[misc]
            k += 1

    def _structure_changed(self) -> None:
        self._starts = None
        self._touched = []
        self._offsets = None

    def _adopt(self, values: Iterable[Instruction]) -> list[_Item]:
        """Items for values being added, reusing undecoded slots of another Instructions."""
        if not isinstance(values, Instructions):
            items: list[_Item] = list(values)
            for insn in items:
                if not isinstance(insn, Instruction):
                    raise TypeError(f"Instructions holds Instruction objects, not {type(insn).__name__}")
            return items
        if values._raw is self._raw or not values._raw:
            return list(values._items)
        if not self._raw:
            if self._items:
                self._structure_changed()
            self._raw = values._raw
            return list(values._items)
        # Two different byte buffers: concatenate them and shift the other's slot numbers.
        shift = len(self._raw) // 8
        self._raw = self._raw + values._raw
        return [x + shift if type(x) is int else x for x in values._items]  # type: ignore[operator]

    @overload
    def __setitem__(self, index: int, value: Instruction) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[Instruction]) -> None: ...
    def __setitem__(self, index: int | slice, value: Instruction | Iterable[Instruction]) -> None:
        if isinstance(index, slice):
            assert not isinstance(value, Instruction)
            items = self._adopt(value)
            self._structure_changed()
            self._items[index] = items
            return
        if not isinstance(value, Instruction):
            raise TypeError(f"Instructions holds Instruction objects, not {type(value).__name__}")
        self._items[index] = value
        self._structure_changed()

    @overload
    def __delitem__(self, index: int) -> None: ...
    @overload
    def __delitem__(self, index: slice) -> None: ...
    def __delitem__(self, index: int | slice) -> None:
        del self._items[index]
        self._structure_changed()

    def insert(self, index: int, value: Instruction) -> None:
        if not isinstance(value, Instruction):
            raise TypeError(f"Instructions holds Instruction objects, not {type(value).__name__}")
        self._items.insert(index, value)
        self._structure_changed()

    def append(self, value: Instruction) -> None:
        if not isinstance(value, Instruction):
            raise TypeError(f"Instructions holds Instruction objects, not {type(value).__name__}")
        self._items.append(value)
        self._structure_changed()

    def extend(self, values: Iterable[Instruction]) -> None:
        items = self._adopt(values)
        self._items.extend(items)
        self._structure_changed()

    def __iadd__(self, values: Iterable[Instruction]) -> Instructions:
        self.extend(values)
        return self

    def __add__(self, other: Iterable[Instruction]) -> Instructions:
        new = self[:]
        new.extend(other)
        return new

    def copy(self) -> Instructions:
        """A deep copy: the new sequence's instructions are independent objects."""
        new = self[:]
        new._items = [x if type(x) is int else x.copy() for x in new._items]  # type: ignore[union-attr]
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Instructions):
            return len(self) == len(other) and self.encode() == other.encode()
        if isinstance(other, Sequence) and not isinstance(other, (str, bytes)):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<Instructions: {len(self)} instructions>"

    def __str__(self) -> str:
        return self.disassemble()

    # -- symbols and references ------------------------------------------------------------------------
    def symbols(self) -> dict[str, int]:
        """Instruction index of every ``symbol`` set in this sequence (functions, labels)."""
        out: dict[str, int] = {}
        for k, x in enumerate(self._items):
            if type(x) is not int and x.symbol is not None:  # type: ignore[union-attr]
                name = x.symbol  # type: ignore[union-attr]
                if name in out:
                    raise ObjectError(f"symbol {name!r} is defined twice (instructions {out[name]} and {k})")
                out[name] = k
        return out

    def resolve_references(self, targets: Mapping[str, int] | None = None) -> None:
        """Point every jump, bpf-to-bpf call and function-pointer load that has a ``reference`` at the
        instruction of that name.

        ``targets`` maps names to instruction indices; by default the sequence's own `symbols` (so
        call after linking subprograms into a program). References of other instructions (maps, ksyms)
        are left alone. Raises `ObjectError` naming any pc-relative reference with no target.
        """
        if targets is None:
            targets = self.symbols()
        offsets = self._slot_offsets()
        missing: list[str] = []
        for k, x in enumerate(self._items):
            if type(x) is int or x.reference is None:  # type: ignore[union-attr]
                continue
            insn: Instruction = x  # type: ignore[assignment]
            if not (insn.is_jump() or insn.is_pseudo_call() or insn.is_func_pointer()):
                continue
            ref = insn.reference
            assert ref is not None
            target = targets.get(ref)
            if target is None:
                missing.append(f"{ref!r} (instruction {k}: {insn})")
                continue
            # Kernel rule for jumps, calls and PSEUDO_FUNC alike: target = slot + 1 + delta, even for
            # the two-slot ld_imm64.
            insn.set_relative_target(offsets[target] - offsets[k] - 1)
        if missing:
            raise ObjectError(
                "unresolved references to " + ", ".join(missing) + "; define the label/function in this "
                "program or link the subprogram before resolving"
            )

    # -- disassembly -----------------------------------------------------------------------------------
    def disassemble(
        self,
        *,
        numbered: bool = True,
        source: bool = True,
        symbols: bool = True,
        imm_name: Callable[[Instruction], str | None] | None = None,
        call_name: Callable[[Instruction], str | None] | None = None,
    ) -> str:
        """Text like ``bpftool prog dump xlated``: ``   0: (b7) r0 = 0``, numbered by slot.

        ``source`` puts ``; <line>`` before instructions carrying source metadata, ``symbols`` puts
        ``<name>:`` before instructions that start a function. ``imm_name(insn)`` may return the text
        for an ``ld_imm64`` operand (e.g. a map name), ``call_name(insn)`` the name of a call target;
        returning None keeps the default.
        """
        from pybpf.asm.disasm import disassemble_lines

        return "\n".join(
            disassemble_lines(
                self,
                numbered=numbered,
                source=source,
                symbols=symbols,
                imm_name=imm_name,
                call_name=call_name,
            )
        )
