"""`pybpf run FILE`: compile (cached), load, attach everything, stream events, print the maps at the end.

This module is the click command; the work is in pybpf.cli.runner, which `pybpf run` usually reaches
without importing click (see pybpf.cli.main).
"""

from __future__ import annotations

from typing import Any

import click

from pybpf.cli.runner import OPTIONS, BadOption, execute

__all__ = ["run"]

EXAMPLES = """
\b
Examples:
  pybpf run examples/execsnoop.bpf.c                  # one row per exec(), Ctrl-C to stop
  pybpf run examples/tracepoint_counter.bpf.c --duration 5
  pybpf run examples/read_histogram.bpf.c --interval 1 --duration 10
  pybpf run examples/uprobe_malloc.bpf.c --pid 1234
  pybpf run examples/xdp_counter.bpf.c --iface eth0 --json
  pybpf run filter.bpf.c --set target_pid=1234 --set min_bytes=4096

\b
Events: every ring buffer and perf buffer map is read and its records are decoded through BTF as the
struct named like the map ("events" -> struct event), or the one given with --type MAP=STRUCT (the struct
must be in the object's BTF: a global like `struct event *unused_event;` keeps it there). bpf_printk
output is followed when a program calls it. Maps are printed at the end: scalars, tables sorted by value,
and log2 histograms (maps named *hist*/*dist*/*slot* with integer keys and values, maps keyed by a
struct with a `slot` member, or values holding a `slots` array; bucket i counts [2^i, 2^(i+1))).

\b
Exit: Ctrl-C (SIGINT), SIGTERM and the end of --duration print the maps, detach and exit 0;
a compile, load (verifier) or attach failure exits 1 with the reason.
"""


_TYPES: dict[str, type] = {"int": int, "float": float}


def _with_options(command: click.Command) -> click.Command:
    """The options of runner.OPTIONS added to `command`, in table order."""
    for flags, dest, kind, metavar, default, help_text in OPTIONS:
        option = click.Option([*flags, dest], metavar=metavar, help=help_text, default=default,
                              is_flag=kind == "flag", multiple=kind == "multiple", type=_TYPES.get(kind))
        command.params.append(option)
    return command


@_with_options
@click.command(epilog=EXAMPLES, context_settings={"max_content_width": 110})
@click.argument("file", type=click.Path(exists=True, dir_okay=False))
def run(**params: Any) -> None:
    """Load FILE (.bpf.c compiled on the fly and cached, or .bpf.o), attach every program, stream its
    events and print its maps at the end."""
    try:
        execute(**params)
    except BadOption as exc:
        raise click.BadParameter(str(exc), param_hint=exc.option) from None
