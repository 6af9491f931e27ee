"""Entry point of the `pybpf` command.

Start-up stays fast: `pybpf run` goes straight to pybpf.cli.runner, which parses the usual command lines
without click (click alone costs more than loading and attaching a program); every other command line goes
to the click group, which imports a subcommand's module only when that subcommand runs and lists them in
`pybpf --help` from the summaries below without importing any.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    import click

# name -> ("module:attribute" of a click command, imported on first use; the first paragraph of its help,
# for `pybpf --help`). tests/test_cli_inspect.py checks the summaries against the commands.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "feature": ("pybpf.cli.feature:feature",
                "Probe the running kernel: program types, map types, helpers, links, BTF kinds and more."),
    "build": ("pybpf.cli.build:build",
              "Compile SOURCE (a .bpf.c file) to a BPF object and print its path."),
    "btf": ("pybpf.cli.btf:btf", "Inspect BTF type information."),
    "load": ("pybpf.cli.load:load", "Load OBJ (a .bpf.o, or a .bpf.c compiled first) and report every program "
             "and map."),
    "run": ("pybpf.cli.run:run", "Load FILE (.bpf.c compiled on the fly and cached, or .bpf.o), attach every "
            "program, stream its events and print its maps at the end."),
    "trace": ("pybpf.cli.trace:trace",
              "Follow bpf_printk output: task, PID, CPU, timestamp and message of every trace_pipe line."),
    "probes": ("pybpf.cli.probes:probes", "List probes matching PATTERN (`syscalls:*open*`, "
               "`tracepoint:sched:*`, `kprobe:vfs_*`, `usdt:*`)."),
    "prog": ("pybpf.cli.inspect:prog", "Inspect loaded BPF programs."),
    "map": ("pybpf.cli.inspect:map_", "Inspect BPF maps."),
    "link": ("pybpf.cli.inspect:link", "Inspect BPF links."),
    "vmtest": ("pybpf.cli.vmtest:vmtest", "Boot a kernel under qemu with this machine's root filesystem "
               "(read-only, tmpfs overlay on top) and run CMD as root in the current directory; exits with CMD's "
               "exit status."),
}

_group: click.Group | None = None


def group() -> click.Group:
    """The click group of every subcommand (built on first use)."""
    global _group
    if _group is None:
        _group = _build_group()
    return _group


def _build_group() -> click.Group:
    import importlib

    import click
    from click.utils import make_default_short_help

    class LazyGroup(click.Group):
        def list_commands(self, ctx: click.Context) -> list[str]:
            return sorted(SUBCOMMANDS)

        def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
            target = SUBCOMMANDS.get(cmd_name)
            if target is None:
                return None
            module_name, attr = target[0].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:
                    return None  # not written yet
                raise
            command = getattr(module, attr)
            assert isinstance(command, click.Command)
            return command

        def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
            # As click.Group does, from the summaries instead of the imported commands.
            names = self.list_commands(ctx)
            limit = formatter.width - 6 - max(len(name) for name in names)
            rows = [(name, make_default_short_help(SUBCOMMANDS[name][1], limit)) for name in names]
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    @click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
    @click.version_option(package_name="pybpf")
    def main() -> None:
        """pybpf: build, load, attach and observe eBPF programs from Python."""

    return main


class _Main:
    """The `pybpf` command as the console script (and `python -m pybpf.cli.main`) calls it: `run` command
    lines go to pybpf.cli.runner.fast_run first, which handles the ordinary ones without click. Everything
    else, including attribute access (click.testing.CliRunner calls `main.main(...)`), is the click group."""

    def __call__(self, args: list[str] | None = None, **extra: Any) -> Any:
        argv = sys.argv[1:] if args is None else list(args)
        if not extra and argv[:1] == ["run"]:
            from pybpf.cli.runner import fast_run

            fast_run(argv[1:])  # returns only when click has to parse this line
        return group()(args, **extra)

    def __getattr__(self, name: str) -> Any:
        return getattr(group(), name)

    def __repr__(self) -> str:
        return f"<pybpf command {group()!r}>"


if TYPE_CHECKING:
    main: click.Group
else:
    main = _Main()


if __name__ == "__main__":
    main()
