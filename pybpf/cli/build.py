"""`pybpf build`: compile a BPF C file to an object with clang (cached)."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import click


@click.command()
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Object file [default: SOURCE with .o].",
)
@click.option(
    "-I", "include", multiple=True, type=click.Path(file_okay=False, path_type=Path), help="Include dir."
)
@click.option("--cflags", multiple=True, help="Extra clang flags (shell-quoted; repeatable).")
@click.option("--no-cache", is_flag=True, help="Always run clang.")
@click.option("-v", "--verbose", is_flag=True, help="Print the clang command line.")
def build(
    source: Path,
    output: Path | None,
    include: tuple[Path, ...],
    cflags: tuple[str, ...],
    no_cache: bool,
    verbose: bool,
) -> None:
    """Compile SOURCE (a .bpf.c file) to a BPF object and print its path."""
    from rich.console import Console

    from pybpf.errors import BPFError
    from pybpf.toolchain import CompileError, compile_with_info
    from pybpf.toolchain.clang import _default_output

    err = Console(stderr=True, highlight=False)
    flags = [flag for chunk in cflags for flag in shlex.split(chunk)]
    target = output if output is not None else _default_output(source)
    try:
        with err.status(f"Compiling {source}", spinner="dots"):
            result = compile_with_info(
                source, target, cflags=flags, include=list(include), cache=not no_cache
            )
    except CompileError as exc:
        if verbose:
            err.print(shlex.join(exc.argv), markup=False, soft_wrap=True)
        # clang's diagnostics verbatim, so editors can jump to file:line:col
        sys.stderr.write(exc.diagnostics if exc.diagnostics.endswith("\n") else exc.diagnostics + "\n")
        sys.exit(1)
    except BPFError as exc:  # no clang, no kernel BTF for vmlinux.h, ...
        err.print(f"error: {exc}", markup=False, soft_wrap=True)
        sys.exit(1)
    if verbose:
        err.print(
            shlex.join(result.argv) + ("  (cached)" if result.cached else ""), markup=False, soft_wrap=True
        )
    if result.warnings:
        sys.stderr.write(result.warnings)
    click.echo(str(result.path))
