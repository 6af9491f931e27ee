"""How the CLI shows decoded BPF values: JSON data, one-line cells, streamed event rows, map tables and
log2 histograms (drawn as bars, as BCC's and libbpf-tools' `print_log2_hist` do).

Everything here works on values already decoded through BTF (`pybpf.btf.codec`: structs are namedtuples
with `asdict()`, enums IntEnums, `char[N]` str, other arrays lists) plus the BTF types, when known, to lay
out columns before the first value arrives.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import IO, Any

from pybpf._named import is_named
from pybpf.btf import types as bt

__all__ = [
    "Column", "EventPrinter", "Histogram", "columns_for", "flatten", "format_cell", "histograms_of",
    "jsonable", "log2_rows", "print_maps", "render_log2",
]

# ---- plain data ------------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """A decoded value (ints, bytes, BTF structs, lists, ctypes) as plain JSON data."""
    import ctypes

    if is_named(value):
        return value.name
    if isinstance(value, bool | int | float | str) or value is None:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return [f"0x{b:02x}" for b in bytes(value)]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if hasattr(value, "_asdict"):  # BTF structs: before the costlier dataclass test (once per event)
        return {k: jsonable(v) for k, v in value._asdict().items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, ctypes.Structure):
        return {name: jsonable(getattr(value, name)) for name, *_ in value._fields_}
    slots = getattr(type(value), "__slots__", None)
    if slots:
        return {s: jsonable(getattr(value, s)) for s in slots if not s.startswith("_")}
    if hasattr(value, "__dict__"):
        return {k: jsonable(v) for k, v in vars(value).items() if not k.startswith("_")}
    return repr(value)


def _is_record(value: Any) -> bool:
    return isinstance(value, tuple) and hasattr(value, "_fields")


def format_cell(value: Any) -> str:
    """One value as table-cell text."""
    if is_named(value):
        return str(value.name)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    if _is_record(value):
        return " ".join(f"{k}={format_cell(v)}" for k, v in zip(value._fields, value, strict=True))
    if isinstance(value, list | tuple):
        if len(value) > 16:
            return "[" + ", ".join(format_cell(v) for v in value[:16]) + f", … ({len(value)})]"
        return "[" + ", ".join(format_cell(v) for v in value) + "]"
    return str(value)


def flatten(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(column name, leaf value) pairs of a decoded value; nested structs become "outer.inner"."""
    if _is_record(value):
        out: list[tuple[str, Any]] = []
        for name, v in zip(value._fields, value, strict=True):
            out.extend(flatten(v, f"{prefix}.{name}" if prefix else name))
        return out
    return [(prefix or "value", value)]


def sum_percpu(values: Any) -> Any:
    """The per-CPU values of one entry added up (ints, floats, structs and arrays of them, field by field);
    values that cannot be added come back unchanged (a list, one per CPU)."""
    if not isinstance(values, list) or not values:
        return values
    first = values[0]
    if isinstance(first, bool):
        return values
    if isinstance(first, int | float):
        if all(isinstance(v, int | float) for v in values):
            return sum(values)
        return values
    if _is_record(first):
        fields = [sum_percpu([v[i] for v in values]) for i in range(len(first))]
        if any(isinstance(f, list) and not isinstance(first[i], list) for i, f in enumerate(fields)):
            return values
        return type(first)(*fields)
    if isinstance(first, list) and all(isinstance(v, list) and len(v) == len(first) for v in values):
        summed = [sum_percpu([v[i] for v in values]) for i in range(len(first))]
        if all(isinstance(s, int | float) for s in summed):
            return summed
    return values


def _is_zero(value: Any) -> bool:
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str):
        return value == ""
    if isinstance(value, bytes | bytearray):
        return not any(value)
    if isinstance(value, list | tuple):
        return all(_is_zero(v) for v in value)
    return False


# ---- columns of streamed events --------------------------------------------------------------------------


@dataclass
class Column:
    name: str
    width: int
    numeric: bool


_INT_WIDTH = {1: 3, 2: 5, 4: 7, 8: 12}  # typical, not maximal: wider values widen the column


def _is_char_array(t: bt.Type) -> bool:
    s = t.strip()
    if not isinstance(s, bt.Array):
        return False
    e = s.elem.strip()
    return isinstance(e, bt.Int) and e.size == 1 and (bool(e.encoding & bt.IntEncoding.CHAR) or e.name == "char")


def columns_for(t: bt.Type | None, prefix: str = "") -> list[Column]:
    """The columns a decoded value of BTF type t flattens to (see `flatten`), with starting widths."""
    if t is None:
        return []
    s = t.strip()
    if isinstance(s, bt.Struct):
        from pybpf.btf.codec import struct_class

        out: list[Column] = []
        for name, m in zip(struct_class(s)._fields, s.members, strict=True):
            out.extend(columns_for(m.type, f"{prefix}.{name}" if prefix else name))
        return out
    name = prefix or "value"
    if isinstance(s, bt.Int | bt.Enum):
        width = _INT_WIDTH.get(s.size, 10) if isinstance(s, bt.Int) else 8
        return [Column(name, max(len(name), width), isinstance(s, bt.Int))]
    if _is_char_array(s):
        assert isinstance(s, bt.Array)
        return [Column(name, max(len(name), min(s.nelems - 1, 24)), False)]
    return [Column(name, max(len(name), 8), False)]


class EventPrinter:
    """Writes events (ring/perf buffer records), bpf_printk lines and notes as aligned rows or JSON lines.

    Rows of one source share a header; a row from another source prints that source's header first. A
    value wider than its column widens the column for the rows after it (the last column is never padded).
    """

    def __init__(self, out: IO[str], *, json_lines: bool = False, color: bool = False) -> None:
        self.out = out
        self.json_lines = json_lines
        self.color = color
        self._columns: dict[str, list[Column]] = {}
        self._last_source: str | None = None

    def _header(self, source: str, columns: list[Column], many: bool) -> None:
        label = f"{source}: " if many else ""
        text = label + self._join([c.name.upper() for c in columns], columns)
        self.out.write(f"\x1b[1m{text}\x1b[0m\n" if self.color else text + "\n")

    @staticmethod
    def _join(cells: Sequence[str], columns: list[Column]) -> str:
        parts = []
        last = len(cells) - 1
        for i, (cell, col) in enumerate(zip(cells, columns, strict=False)):
            if i == last:
                parts.append(cell.rjust(col.width) if col.numeric else cell)
            else:
                parts.append(cell.rjust(col.width) if col.numeric else cell.ljust(col.width))
        return " ".join(parts)

    def event(self, source: str, value: Any, columns: list[Column] | None = None, *, many: bool = False) -> None:
        """One record from `source` (a map name). `columns` from `columns_for(record type)`, if known."""
        if self.json_lines:
            self._json({"kind": "event", "map": source, "data": jsonable(value)})
            return
        pairs = flatten(value)
        cols = self._columns.get(source)
        if cols is None or len(cols) != len(pairs):
            cols = columns if columns and len(columns) == len(pairs) else [
                Column(n, max(len(n), 8), isinstance(v, int)) for n, v in pairs]
            self._columns[source] = cols
            self._last_source = None
        if self._last_source != source:
            self._header(source, cols, many)
            self._last_source = source
        cells = [format_cell(v) for _, v in pairs]
        for cell, col in zip(cells[:-1], cols, strict=False):
            if len(cell) > col.width:
                col.width = len(cell)
        line = self._join(cells, cols)
        self.out.write((f"{source}: " if many else "") + line + "\n")

    def printk(self, ev: Any) -> None:
        """A trace_pipe line (pybpf.events.trace_pipe.TraceEvent)."""
        if self.json_lines:
            self._json({"kind": "printk", "task": ev.task, "pid": ev.pid, "cpu": ev.cpu, "timestamp": ev.timestamp,
                        "message": ev.message})
            return
        self._last_source = None  # the next event row gets its header again
        label = "\x1b[2mprintk\x1b[0m" if self.color else "printk"
        if ev.cpu < 0:
            self.out.write(f"{label} {ev.message}\n")
        else:
            self.out.write(f"{label} {ev.task}-{ev.pid} [{ev.cpu:03d}] {ev.timestamp:.6f}: {ev.message}\n")

    def _json(self, obj: dict[str, Any]) -> None:
        self.out.write(json.dumps(obj, default=str) + "\n")

    def flush(self) -> None:
        self.out.flush()


# ---- histograms ------------------------------------------------------------------------------------------


@dataclass
class Histogram:
    """log2 buckets: counts[i] counts values in [2^i, 2^(i+1)); bucket 0 also counts 0 (libbpf-tools' log2l)."""

    label: str  # what the histogram is of, for keyed histograms ("" for a map holding one)
    counts: list[int]
    key: Any = None  # the decoded key part that selects this histogram


def log2_rows(counts: Sequence[int]) -> list[tuple[int, int, int]]:
    """(low, high, count) per bucket up to the last non-empty one; [] when all are empty."""
    last = max((i for i, c in enumerate(counts) if c), default=-1)
    rows = []
    for i in range(last + 1):
        low, high = (1 << (i + 1)) >> 1, (1 << (i + 1)) - 1
        if low == high:
            low -= 1
        rows.append((low, high, int(counts[i])))
    return rows


def render_log2(counts: Sequence[int], label: str = "value", *, stars: int = 40, color: bool = True) -> list[str]:
    """The lines print_log2_hist prints: a header, then `low -> high : count |****|` per bucket."""
    rows = log2_rows(counts)
    if not rows:
        return []
    wide = len(rows) > 32
    if wide:
        stars //= 2
    top = max(c for _, _, c in rows) or 1
    header = f"{'':>15}{label:<29} : count     distribution" if wide else f"{'':>5}{label:<19} : count     distribution"
    lines = [header]
    for low, high, count in rows:
        n = min(stars, count * stars // top)
        bar = "*" * n
        if count and not n:
            bar = "."  # a non-empty bucket never draws as empty
        bar = bar.ljust(stars)
        if color:
            bar = f"[cyan]{bar}[/]"
        rng = f"{low:>20} -> {high:<20}" if wide else f"{low:>10} -> {high:<10}"
        lines.append(f"{rng} : {count:<8} |{bar}|")
    return lines


_HIST_NAMES = ("hist", "dist", "slot", "log2", "bucket")


def _int_type(t: bt.Type | None) -> bool:
    if t is None:
        return False
    s = t.strip()
    return isinstance(s, bt.Int) and not (s.encoding & bt.IntEncoding.BOOL)


def _slots_array(t: bt.Type | None) -> str | None:
    """For a value that is an array of counters, or a struct of one such array: the member name ('' when
    the value itself is the array); None otherwise."""
    if t is None:
        return None
    s = t.strip()
    if isinstance(s, bt.Array):
        return "" if _int_type(s.elem) and s.nelems >= 2 else None
    if isinstance(s, bt.Struct):
        arrays = [m for m in s.members if isinstance(m.type.strip(), bt.Array) and _int_type(m.type.strip().elem)]  # type: ignore[attr-defined]
        if len(arrays) == 1 and arrays[0].name in ("slots", "buckets", "hist", "counts"):
            return arrays[0].name
    return None


def hist_shape(name: str, key_type: bt.Type | None, value_type: bt.Type | None, force: bool = False) -> str | None:
    """How a map holds log2 histograms, judged from its name and BTF key/value types:
    "index" (key = bucket, value = count; needs a histogram-like name, or `force`),
    "slot" (struct key whose member `slot` is the bucket, the other members select the histogram),
    "array" (value = array of bucket counts, or struct of one `slots` array; one histogram per key);
    None when it does not look like one."""
    looks = force or any(h in name.lower() for h in _HIST_NAMES)
    member = _slots_array(value_type)
    if member is not None and (looks or member):  # a bare array of counters needs the name to tell
        return "array"
    if not _int_type(value_type):
        return None
    if _int_type(key_type):
        return "index" if looks else None
    ks = key_type.strip() if key_type is not None else None
    if isinstance(ks, bt.Struct) and len(ks.members) >= 2:
        names = [m.name for m in ks.members]
        if "slot" in names and _int_type(ks.member("slot").type):
            return "slot"
    return None


def histograms_of(shape: str, items: Iterable[tuple[Any, Any]]) -> list[Histogram]:
    """Group a map's (decoded, per-CPU summed) entries into histograms according to `shape`."""
    if shape == "index":
        counts: dict[int, int] = {}
        for k, v in items:
            counts[int(k)] = counts.get(int(k), 0) + int(v)
        n = min(max(counts, default=-1) + 1, 128)
        return [Histogram("", [counts.get(i, 0) for i in range(n)])]
    if shape == "slot":
        groups: dict[Any, dict[int, int]] = {}
        for k, v in items:
            d = k._asdict()
            slot = int(d.pop("slot"))
            group = tuple(d.items())
            g = groups.setdefault(group, {})
            g[slot] = g.get(slot, 0) + int(v)
        out = []
        for group, g in sorted(groups.items(), key=lambda kv: str(kv[0])):
            label = " ".join(f"{k}={format_cell(v)}" for k, v in group)
            out.append(Histogram(label, [g.get(i, 0) for i in range(min(max(g, default=-1) + 1, 128))],
                                 dict(group)))
        return out
    if shape == "array":
        out = []
        for k, v in items:
            arr = v if isinstance(v, list) else next(x for x in v if isinstance(x, list))
            if _is_zero(arr):
                continue
            label = format_cell(k) if _is_record(k) else f"key={format_cell(k)}"
            out.append(Histogram(label, [int(x) for x in arr], k))
        return out
    raise ValueError(f"unknown histogram shape {shape!r}")


# ---- maps ------------------------------------------------------------------------------------------------

_TABLE_TYPES = frozenset({"HASH", "ARRAY", "PERCPU_HASH", "PERCPU_ARRAY", "LRU_HASH", "LRU_PERCPU_HASH", "LPM_TRIE"})


def _type_name(m: Any) -> str:
    t = m.type
    return t.name if is_named(t) else str(t)


def _map_types(m: Any) -> tuple[bt.Type | None, bt.Type | None]:
    spec = getattr(m, "spec", None)
    return (getattr(spec, "key_type", None), getattr(spec, "value_type", None))


def _sort_key(entry: tuple[Any, Any]) -> Any:
    _, v = entry
    first = flatten(v)[0][1] if v is not None else 0
    return (0, -first) if isinstance(first, int | float) and not isinstance(first, bool) else (1, 0)


@dataclass
class MapView:
    """What `print_maps` shows of one map, computed once (reading the map) and rendered as text or JSON."""

    name: str
    kind: str  # "scalar", "table", "hist", "empty"
    entries: list[tuple[Any, Any]]
    hists: list[Histogram]
    hidden_zero: int = 0


def view_map(name: str, m: Any, force_hist: bool = False) -> MapView | None:
    """Read map `m` and decide how to show it; None for maps that are not shown (ring/perf buffers,
    global data sections, maps of maps, stack traces...)."""
    if _type_name(m) not in _TABLE_TYPES or name.startswith("."):
        return None
    key_type, value_type = _map_types(m)
    percpu = m.percpu
    entries = [(k, sum_percpu(v) if percpu else v) for k, v in m.items()]
    shape = hist_shape(name, key_type, value_type, force_hist)
    if shape is not None:
        try:
            hists = histograms_of(shape, entries)
        except (TypeError, ValueError, AttributeError, StopIteration):
            hists = []
        else:
            return MapView(name, "hist", entries, hists)
    is_array = _type_name(m) in ("ARRAY", "PERCPU_ARRAY")
    if is_array and int(m.max_entries) == 1:
        return MapView(name, "scalar", entries, [])
    hidden = 0
    if is_array:
        kept = [(k, v) for k, v in entries if not _is_zero(v)]
        hidden = len(entries) - len(kept)
        entries = kept
    entries.sort(key=_sort_key)
    return MapView(name, "table" if entries else "empty", entries, [], hidden)


def print_maps(maps: dict[str, Any], variables: dict[str, Any], console: Any, *, json_lines: bool = False,
               out: IO[str] | None = None, force_hist: Iterable[str] = (), top: int = 0,
               title: str | None = None) -> None:
    """Print every map worth showing (scalars, tables, histograms) and the writable global variables."""
    forced = set(force_hist)
    views = [v for name, m in maps.items() if (v := view_map(name, m, name in forced)) is not None]
    scalars = _variables(variables)
    if json_lines:
        assert out is not None
        now = time.time()
        for name, value in scalars:
            out.write(json.dumps({"kind": "variable", "name": name, "value": jsonable(value), "time": now},
                                 default=str) + "\n")
        for v in views:
            rec: dict[str, Any] = {"kind": "map", "map": v.name, "shape": v.kind, "time": now}
            if v.kind == "hist":
                rec["histograms"] = [{"label": h.label, "key": jsonable(h.key),
                                      "buckets": [{"low": lo, "high": hi, "count": c} for lo, hi, c in
                                                  log2_rows(h.counts)]} for h in v.hists]
            else:
                entries = v.entries[:top] if top else v.entries
                rec["entries"] = [{"key": jsonable(k), "value": jsonable(val)} for k, val in entries]
            out.write(json.dumps(rec, default=str) + "\n")
        out.flush()
        return
    from rich.markup import escape
    from rich.table import Table

    if title:
        console.print(f"[bold]{escape(title)}[/]")
    if scalars or any(v.kind == "scalar" for v in views):
        table = Table(box=None, show_header=False, pad_edge=False)
        table.add_column(style="bold")
        table.add_column()
        for name, value in scalars:
            table.add_row(escape(name), escape(format_cell(value)))
        for v in views:
            if v.kind == "scalar":
                value = v.entries[0][1] if v.entries else None
                table.add_row(escape(v.name), escape(format_cell(value)))
        console.print(table)
    for v in views:
        if v.kind == "empty":
            console.print(f"[bold]{escape(v.name)}[/]: (empty)")
        elif v.kind == "hist":
            if not v.hists or not any(log2_rows(h.counts) for h in v.hists):
                console.print(f"[bold]{escape(v.name)}[/]: (empty histogram)")
            for h in v.hists:
                lines = render_log2(h.counts)
                if not lines:
                    continue
                head = f"{v.name} {h.label}" if h.label else v.name
                console.print(f"[bold]{escape(head)}[/]")
                for line in lines:
                    console.print(line, highlight=False)
        elif v.kind == "table":
            _print_table(v, console, top)


def _print_table(v: MapView, console: Any, top: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    entries = v.entries[:top] if top else v.entries
    key_cols = [n for n, _ in flatten(entries[0][0])]
    val_cols = [n for n, _ in flatten(entries[0][1])]
    if key_cols == ["value"]:
        key_cols = ["key"]
    if val_cols == ["value"]:
        val_cols = [v.name]  # a plain counter is best named by its map ("counts")
    names = key_cols + [n if n not in key_cols else f"value.{n}" for n in val_cols]
    caption = None
    if top and len(v.entries) > top:
        caption = f"top {top} of {len(v.entries)}"
    elif v.hidden_zero:
        caption = f"{v.hidden_zero} zero entries not shown"
    table = Table(title=v.name, title_justify="left", title_style="bold", caption=caption)
    sample = flatten(entries[0][0]) + flatten(entries[0][1])
    for name, (_, val) in zip(names, sample, strict=False):
        numeric = isinstance(val, int | float) and not isinstance(val, bool) and not is_named(val)
        table.add_column(escape(name), justify="right" if numeric else "left",
                         style="cyan" if numeric and name in val_cols else None)
    for k, val in entries:
        cells = [format_cell(x) for _, x in flatten(k) + flatten(val)]
        table.add_row(*(escape(c) for c in cells))
    console.print(table)


def _variables(variables: dict[str, Any]) -> list[tuple[str, Any]]:
    """The writable globals (.bss/.data) worth printing: not static, not pointers (BTF anchors)."""
    out = []
    for name, var in variables.items():
        spec = var.spec
        if spec.read_only or spec.static or spec.section.startswith(".kconfig"):
            continue
        t = spec.type.strip()
        if isinstance(t, bt.Pointer | bt.Datasec | bt.FuncProto):
            continue
        try:
            out.append((name, var.value))
        except Exception:  # noqa: BLE001 - a variable that cannot be read is not shown
            continue
    return out
