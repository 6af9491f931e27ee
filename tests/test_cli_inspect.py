"""`pybpf prog|map|link` against objects the test loads, compared with bpftool; the examples load."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

import pybpf.collection as pc

pytestmark = pytest.mark.usefixtures("require_root")
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "pybpf.cli.main", *args], capture_output=True, text=True,
                            timeout=120, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def loaded(bpf_obj: Callable[[str], Path]):  # type: ignore[no-untyped-def]
    with pc.load(bpf_obj("inspect_maps")) as coll:
        pairs = coll.maps["inspect_pairs"]
        for k in range(4):
            raw = (k * 10).to_bytes(4, "little") + bytes(4) + (k * 1000 + 7).to_bytes(8, "little")
            pairs.update(k.to_bytes(4, "little"), raw)
        yield coll


def test_map_dump_matches_bpftool(loaded) -> None:  # type: ignore[no-untyped-def]
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    map_id = loaded.maps["inspect_pairs"].id
    ours = json.loads(cli("map", "dump", str(map_id), "--json"))
    theirs = json.loads(subprocess.run(["bpftool", "map", "dump", "id", str(map_id), "-j"], capture_output=True,
                                       text=True, check=True).stdout)
    expected = sorted((e["formatted"]["key"], e["formatted"]["value"]["count"], e["formatted"]["value"]["bytes"])
                      for e in theirs)
    got = sorted((e["key"], e["value"]["count"], e["value"]["bytes"]) for e in ours)
    assert got == expected == [(k, k * 10, k * 1000 + 7) for k in range(4)]
    # by name and in the table form too
    assert json.loads(cli("map", "dump", "inspect_pairs", "--json")) == ours
    assert "3007" in cli("map", "dump", str(map_id))


def test_map_list_and_show(loaded) -> None:  # type: ignore[no-untyped-def]
    map_id = loaded.maps["inspect_pairs"].id
    maps = json.loads(cli("map", "list", "--json"))
    mine = [m for m in maps if m["id"] == map_id]
    assert mine and mine[0]["name"] == "inspect_pairs" and mine[0]["type"] == "hash"
    shown = json.loads(cli("map", "show", str(map_id), "--json"))
    assert shown["key_size"] == 4 and shown["value_size"] == 16 and shown["max_entries"] == 16


def test_map_dump_by_pin(loaded) -> None:  # type: ignore[no-untyped-def]
    path = "/sys/fs/bpf/pybpf_test_inspect_pairs"
    m = loaded.maps["inspect_pairs"]
    m.pin(path)
    try:
        assert len(json.loads(cli("map", "dump", path, "--json"))) == 4
    finally:
        m.unpin()
    assert not Path(path).exists()


def test_prog_list_contains_loaded(loaded) -> None:  # type: ignore[no-untyped-def]
    prog = loaded.programs["inspect_prog"]
    progs = json.loads(cli("prog", "list", "--json"))
    mine = [p for p in progs if p["id"] == prog.id]
    assert mine and mine[0]["name"] == "inspect_prog" and mine[0]["type"] == "tracepoint"
    assert loaded.maps["inspect_pairs"].id in mine[0]["map_ids"]
    assert mine[0]["tag"] == prog.tag
    assert json.loads(cli("prog", "show", str(prog.id), "--json"))["insn_count"] == mine[0]["insn_count"]


def test_prog_dump_shows_instructions_and_source(loaded) -> None:  # type: ignore[no-untyped-def]
    prog = loaded.programs["inspect_prog"]
    lines = cli("prog", "dump", str(prog.id)).splitlines()
    assert lines[0] == "inspect_prog:"
    assert any(line.endswith("exit") for line in lines)
    assert f"map[id:{loaded.maps['inspect_pairs'].id}]" in "\n".join(lines)
    assert any(line.startswith("; ") and "bpf_map_lookup_elem" in line for line in lines)  # BTF line info
    insns = json.loads(cli("prog", "dump", str(prog.id), "--json"))
    assert insns[-1]["disasm"].endswith("exit") and insns[0]["function"] == "inspect_prog"


def test_prog_dump_names_kernel_calls_as_bpftool(loaded) -> None:  # type: ignore[no-untyped-def]
    """Translated helper calls are named after the kernel function they jump to, exactly as bpftool names them."""
    if shutil.which("bpftool") is None:
        pytest.skip("bpftool is not installed")
    prog_id = str(loaded.programs["inspect_prog"].id)

    def calls(text: str) -> list[str]:
        return [line.split(") ", 1)[1] for line in text.splitlines() if ": (85) call " in line]

    ours = calls(cli("prog", "dump", prog_id))
    theirs = calls(subprocess.run(["bpftool", "prog", "dump", "xlated", "id", prog_id], capture_output=True,
                                  text=True, check=True).stdout)
    assert ours and ours == theirs
    assert not any("unknown" in c for c in ours)


def test_link_list(loaded) -> None:  # type: ignore[no-untyped-def]
    prog = loaded.programs["inspect_prog"]
    with prog.attach():
        links = json.loads(cli("link", "list", "--json"))
        assert any(entry["prog_id"] == prog.id for entry in links)


@pytest.mark.parametrize("example", sorted(p.name for p in EXAMPLES.glob("*.bpf.c")))
def test_example_compiles_and_loads(example: str, tmp_path: Path) -> None:
    obj = tmp_path / "example.bpf.o"
    cli("build", str(EXAMPLES / example), "-o", str(obj))  # `pybpf build` compiles it
    assert obj.stat().st_size > 0
    with pc.load(EXAMPLES / example) as coll:
        assert coll.programs and coll.maps
        for prog in coll.programs.values():
            assert prog.id > 0


def test_help_lists_commands_without_importing_them() -> None:
    # `pybpf --help` prints the summaries of pybpf.cli.main.SUBCOMMANDS; each must be what click derives
    # from the command itself, and no subcommand module may load for it.
    import importlib

    from pybpf.cli.main import SUBCOMMANDS

    for name, (target, summary) in SUBCOMMANDS.items():
        module, attr = target.split(":")
        command = getattr(importlib.import_module(module), attr)
        assert summary == " ".join((command.help or "").split("\n\n")[0].split()), name
    code = ("import sys\nsys.argv = ['pybpf', '--help']\nfrom pybpf.cli.main import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in sys.modules if m.startswith('pybpf.cli.') and m != 'pybpf.cli.main'))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.splitlines()[-1] == "[]"
    for name in SUBCOMMANDS:
        assert f"  {name} " in result.stdout
