"""`pybpf load OBJ`: load every program and map of an object, report each, exit."""

from __future__ import annotations

import sys

import click


def _parse_set(values: tuple[str, ...]) -> dict[str, object]:
    out: dict[str, object] = {}
    for item in values:
        if "=" not in item:
            raise click.BadParameter(f"{item!r}: expected NAME=VALUE", param_hint="--set")
        name, raw = item.split("=", 1)
        value: object = raw
        try:
            value = int(raw, 0)
        except ValueError:
            pass
        out[name] = value
    return out


@click.command()
@click.argument("obj", type=click.Path(exists=True, dir_okay=False))
@click.option("--set", "sets", multiple=True, metavar="VAR=VALUE", help="Set a global (.rodata) variable before load.")
@click.option("--log-level", default=0, type=int, help="Verifier log level for every program (1 or 2).")
def load(obj: str, sets: tuple[str, ...], log_level: int) -> None:
    """Load OBJ (a .bpf.o, or a .bpf.c compiled first) and report every program and map.

    \b
    Examples:
      pybpf load counter.bpf.o
      pybpf load filter.bpf.c --set target_pid=1234
    """
    from rich.console import Console
    from rich.table import Table

    import pybpf
    from pybpf.errors import BPFError, VerifierError

    console = Console()
    err_console = Console(stderr=True)
    try:
        spec = pybpf.open_object(obj)
        for name, value in _parse_set(sets).items():
            spec.set(name, value)
    except (BPFError, KeyError, ValueError, TypeError) as exc:
        err_console.print(f"[red]error:[/] {exc}")
        sys.exit(1)

    failures: dict[str, BPFError] = {}
    coll = None
    # Load; when a program is rejected, note why and load the rest without it.
    while coll is None:
        try:
            coll = spec.load(log_level=log_level)
        except VerifierError as exc:
            failures[exc.program] = exc
            match = [n for n, p in spec.programs.items() if p.autoload and
                     (n == exc.program or exc.program.startswith(n[:15]) or n.startswith(exc.program))]
            if not match:
                err_console.print(f"[red]error:[/] {exc}")
                sys.exit(1)
            spec.programs[match[0]].autoload = False
        except BPFError as exc:
            err_console.print(f"[red]error:[/] {exc}")
            sys.exit(1)

    with coll:
        progs = Table(title=f"programs of {obj}")
        for col in ("name", "type", "section", "insns", "status"):
            progs.add_column(col)
        for name, pspec in spec.programs.items():
            section = pspec.section
            ptype = pspec.type.name.lower() if hasattr(pspec.type, "name") else str(pspec.type)
            if name in coll.programs:
                info = coll.programs[name].info()
                progs.add_row(name, ptype, section, str(info.xlated_insns if hasattr(info, "xlated_insns")
                                                         else len(pspec.instructions)),
                              f"[green]verified[/] (id {coll.programs[name].id})")
            elif name in failures:
                progs.add_row(name, ptype, section, str(len(pspec.instructions)), "[red]rejected[/]")
            else:
                progs.add_row(name, ptype, section, str(len(pspec.instructions)), "not loaded (autoload off)")
        console.print(progs)
        maps = Table(title="maps")
        for col in ("name", "type", "key", "value", "max entries", "flags"):
            maps.add_column(col)
        for key, m in coll.maps.items():
            mtype = m.type.name.lower() if hasattr(m.type, "name") else str(m.type)
            maps.add_row(key, mtype, str(m.key_size), str(m.value_size), str(m.max_entries), hex(m.flags))
        console.print(maps)
    for name, failure in failures.items():
        err_console.print(f"[red]program {name}:[/] {failure}")
    if failures:
        sys.exit(1)
