"""Entry point of the `pybpf` command. Subcommands are imported only when used, so start-up stays fast."""

from __future__ import annotations

import importlib
from typing import Any

import click

# name -> "module:attribute" of a click command; imported on first use.
SUBCOMMANDS: dict[str, str] = {
    "feature": "pybpf.cli.feature:feature",
    "build": "pybpf.cli.build:build",
    "btf": "pybpf.cli.btf:btf",
    "load": "pybpf.cli.load:load",
    "run": "pybpf.cli.run:run",
    "trace": "pybpf.cli.trace:trace",
    "probes": "pybpf.cli.probes:probes",
    "prog": "pybpf.cli.inspect:prog",
    "map": "pybpf.cli.inspect:map_",
    "link": "pybpf.cli.inspect:link",
    "vmtest": "pybpf.cli.vmtest:vmtest",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(SUBCOMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = SUBCOMMANDS.get(cmd_name)
        if target is None:
            return None
        module_name, attr = target.split(":")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                return None  # not written yet
            raise
        command: Any = getattr(module, attr)
        assert isinstance(command, click.Command)
        return command


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="pybpf")
def main() -> None:
    """pybpf: build, load, attach and observe eBPF programs from Python."""


if __name__ == "__main__":
    main()
