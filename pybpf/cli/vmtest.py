"""`pybpf vmtest`: run a command as root under a second kernel (Debian's 6.1 by default) in qemu."""

from __future__ import annotations

import sys

import click


@click.command(
    "vmtest",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--kernel", "kernel", metavar="VMLINUZ", type=click.Path(exists=True, dir_okay=False),
              help="Kernel image to boot (modules are looked for in ../lib/modules/RELEASE beside it).")
@click.option("--modules", "modules", metavar="DIR", type=click.Path(exists=True, file_okay=False),
              help="The kernel's /lib/modules/RELEASE directory, for --kernel.")
@click.option("--debian", "debian", metavar="VERSION", default=None,
              help="Boot Debian's linux-image-VERSION (fetched and cached on first use). Default: 6.1.")
@click.option("--memory", "-m", default="2G", show_default=True, help="Guest memory (qemu -m syntax).")
@click.option("--cpus", default=2, show_default=True, type=click.IntRange(1, 64), help="Guest CPUs (1 boots ~1.5 s faster; 2 matches this machine).")
@click.option("--timeout", default=None, type=float, metavar="SECONDS",
              help="Kill the guest after this long (exit status 124).")
@click.option("--console", "show_console", is_flag=True, help="Print the guest kernel's console log to stderr.")
@click.option("--fetch", "fetch_only", is_flag=True, help="Only fetch the kernel and print its paths.")
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def vmtest(
    kernel: str | None,
    modules: str | None,
    debian: str | None,
    memory: str,
    cpus: int,
    timeout: float | None,
    show_console: bool,
    fetch_only: bool,
    cmd: tuple[str, ...],
) -> None:
    """Boot a kernel under qemu with this machine's root filesystem (read-only, tmpfs overlay on top)
    and run CMD as root in the current directory; exits with CMD's exit status.

    \b
    Examples:
      pybpf vmtest -- uname -r
      pybpf vmtest --debian 6.1 -- python3 -m pytest -m kernel2 tests/
    """
    from pybpf.vmtest import VMTestError, resolve_kernel, run

    if kernel is not None and debian is not None:
        raise click.UsageError("give --kernel or --debian, not both")
    if modules is not None and kernel is None:
        raise click.UsageError("--modules goes with --kernel")
    try:
        image = resolve_kernel(kernel, debian, modules=modules)
        if fetch_only:
            click.echo(f"release: {image.release}\nvmlinuz: {image.vmlinuz}\nmodules: {image.modules_dir}")
            return
        if not cmd:
            raise click.UsageError("give the command to run after --, e.g. pybpf vmtest -- uname -r")
        console = sys.stderr if show_console else None
        # Bytes straight through: the command's output need not be text.
        status = run(list(cmd), kernel=image, memory=memory, cpus=cpus, timeout=timeout, console=console,
                     stdout=sys.stdout.buffer, stderr=sys.stderr.buffer)
    except VMTestError as exc:
        click.echo(f"pybpf vmtest: {exc}", err=True)
        sys.exit(124 if exc.timed_out else 125)
    sys.exit(status)
