"""`pybpf feature`: what the running kernel supports, as tables or JSON."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from pybpf.features.versions import MAP_TYPES, MISC, PROG_TYPES


def _since(table: dict[str, str], name: str, prefix: str = "") -> str:
    for key in (prefix + name, name):
        found = table.get(key.upper(), table.get(key))
        if found:
            return found
    return ""


def _yes_no(flag: bool) -> str:
    return "[green]yes[/green]" if flag else "[red]no[/red]"


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object (for machines).")
@click.option(
    "--helpers/--no-helpers",
    default=None,
    help="Probe the helpers of every program type (~0.3 s). Default: on for --json, off for tables.",
)
def feature(as_json: bool, helpers: bool | None) -> None:
    """Probe the running kernel: program types, map types, helpers, links, BTF kinds and more.

    Every answer comes from loading or creating a tiny object, as `bpftool feature probe` does; needs root.
    """
    from pybpf.features import probe_all

    with_helpers = as_json if helpers is None else helpers
    report = probe_all(helpers=with_helpers)
    if as_json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    _print_tables(report)


def _print_tables(report: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    reasons: dict[str, dict[str, str]] = report["reasons"]
    kernel = report["kernel"]
    console.print(f"[bold]Linux {kernel['release']}[/bold]")

    def yes_no_table(title: str, key: str, versions: dict[str, str], prefix: str = "") -> Table:
        table = Table(title=title, title_justify="left", show_edge=False, pad_edge=False, expand=False)
        for column in (title.split()[0].lower(), "", "since", "note"):
            table.add_column(column, no_wrap=column != "note")
        for name, flag in report[key].items():
            note = reasons[key].get(name, "")
            table.add_row(name, _yes_no(flag), _since(versions, name, prefix), note)
        return table

    console.print(yes_no_table("Program types", "program_types", PROG_TYPES))
    console.print(yes_no_table("Map types", "map_types", MAP_TYPES))
    console.print(yes_no_table("Links (BPF_LINK_CREATE)", "links", MISC))
    console.print(yes_no_table("BTF kinds", "btf", MISC, prefix="btf_"))
    console.print(yes_no_table("Misc", "misc", MISC))
    helpers: dict[str, list[str]] | None = report.get("helpers")
    if helpers is not None:
        table = Table(title="Helpers per program type", title_justify="left", show_edge=False, pad_edge=False)
        table.add_column("program type", no_wrap=True)
        table.add_column("n", justify="right")
        table.add_column("helpers (bpf_ prefix dropped)")
        for prog_type, names in helpers.items():
            table.add_row(prog_type, str(len(names)), " ".join(n.removeprefix("bpf_") for n in names))
        console.print(table)
    else:
        console.print("[dim]helpers per program type: pybpf feature --helpers[/dim]")
    console.print(f"[dim]probed in {report['probe_seconds']:.3f} s[/dim]")
