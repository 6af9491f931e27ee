"""Helpers for tests that drive a small user-space program (imported by test modules; pytest puts tests/ on
sys.path because it holds the rootdir conftest.py)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def waiting(binary: Path, env: dict[str, str] | None = None) -> Iterator[subprocess.Popen[str]]:
    """Start `binary` with pipes for stdin/stdout (text), typically blocked reading stdin until the test has
    attached; it is killed at the end of the block if it has not exited by then."""
    proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def release(proc: subprocess.Popen[str], line: str = "go", *, close: bool = False) -> None:
    """Send `line` to a child blocked reading stdin (the "go" once the test has attached); `close` then closes
    its stdin too (end of input)."""
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    if close:
        proc.stdin.close()


def fresh_python(code: str, cache: Path, *args: object, netns: str | None = None) -> list[str]:
    """The output lines of `code`, run with `args` as argv[1:] in a new interpreter on this checkout of pybpf
    and the pybpf cache `cache` (inside network namespace `netns` when given): what a tool starting up sees.
    -S: no site-packages .pth hooks, which may import modules first that pybpf must not."""
    root = Path(__file__).resolve().parent.parent
    prefix = ["ip", "netns", "exec", netns] if netns is not None else []
    result = subprocess.run([*prefix, sys.executable, "-S", "-c", code, *map(str, args)], capture_output=True,
                            text=True, check=False, timeout=60,
                            env={**os.environ, "PYBPF_CACHE": str(cache), "PYTHONPATH": str(root)})
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def print_imported(names: tuple[str, ...], *, since: str | None = None, indent: str = "") -> str:
    """A line of Python for `fresh_python` code: print the modules of `names` imported by then (sorted, comma
    separated; a package's submodules count as it), or since the module names in variable `since` of that
    code. An empty line: none."""
    pool = "sys.modules" if since is None else f"set(sys.modules) - {since}"
    return (f"{indent}print(','.join(sorted(m for m in {pool} "
            f"if any(m == h or m.startswith(h + '.') for h in {names!r}))))\n")
