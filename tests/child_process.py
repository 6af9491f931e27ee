"""Helpers for tests that drive a small user-space program (imported by test modules; pytest puts tests/ on
sys.path because it holds the rootdir conftest.py)."""

from __future__ import annotations

import contextlib
import subprocess
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
