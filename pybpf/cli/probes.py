"""`pybpf probes`: list attach points like `bpftrace -l` (and `-lv`)."""

from __future__ import annotations

import json

import click

from pybpf.errors import BPFError


@click.command()
@click.argument("pattern", default="*")
@click.option("--binary", "-b", type=click.Path(exists=True, dir_okay=False), help="List uprobes/USDT of this ELF file.")
@click.option("--pid", "-p", type=int, help="List uprobes/USDT of every binary this process maps.")
@click.option("-v", "--verbose", is_flag=True, help="Show tracepoint fields, kfunc arguments, USDT arguments.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def probes(pattern: str, binary: str | None, pid: int | None, verbose: bool, as_json: bool) -> None:
    """List probes matching PATTERN (`syscalls:*open*`, `tracepoint:sched:*`, `kprobe:vfs_*`, `usdt:*`)."""
    from pybpf import probes as pr

    try:
        found = pr.list_probes(pattern, binary=binary, pid=pid)
        if as_json:
            rows = []
            for p in found:
                row: dict[str, object] = {"probe": str(p), "provider": p.provider, "target": p.target,
                                          "name": p.name}
                if verbose:
                    row["details"] = pr.describe(p)
                rows.append(row)
            click.echo(json.dumps(rows, indent=2))
            return
        for p in found:
            click.echo(str(p))
            if verbose:
                for line in pr.describe(p):
                    click.echo(f"    {line}")
    except (BPFError, OSError) as exc:
        raise click.ClickException(str(exc)) from exc
