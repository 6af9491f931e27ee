"""Map lifetime: pins that outlive their process, opening by id, and no leaked file descriptors."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from pybpf._sys import types as T
from pybpf._sys.mounts import ensure_bpffs
from pybpf.errors import BPFError
from pybpf.map import Map, MapSpec, MapType

pytestmark = [pytest.mark.usefixtures("require_root"), pytest.mark.kernel2]  # also pass on Debian 6.1


@pytest.fixture
def pin_path() -> Iterator[Path]:
    """A fresh path on bpffs, removed at teardown whatever the test did."""
    path = Path(ensure_bpffs()) / f"pybpf_test_{os.getpid()}_map"
    if path.exists():
        path.unlink()
    yield path
    if path.exists():
        path.unlink()


def test_pin_survives_the_creating_process(pin_path: Path) -> None:
    script = textwrap.dedent(f"""
        from pybpf.map import Map, MapSpec, MapType
        m = Map.create(MapSpec("t_pinned", MapType.HASH, 4, 8, 16), key="I", value="Q")
        m[7] = 700
        m.pin({str(pin_path)!r})
        print(m.id)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    creator_id = int(out.stdout)
    assert pin_path.exists()  # the process is gone, the pin keeps the map
    with Map.from_pin(pin_path, key="I", value="Q") as m:
        assert m.id == creator_id and m.name == "t_pinned" and m.type == MapType.HASH
        assert m[7] == 700
        m[8] = 800
        m.unpin()
    assert not pin_path.exists()


def test_pin_errors(pin_path: Path) -> None:
    with Map.create(MapSpec("t_pinerr", MapType.ARRAY, 4, 4, 1)) as m:
        m.pin(pin_path)
        with Map.create(MapSpec("t_pinerr2", MapType.ARRAY, 4, 4, 1)) as other, \
                pytest.raises(BPFError, match="already exists") as exc:
            other.pin(pin_path)
        assert exc.value.errno == errno.EEXIST
        m.unpin()
        with pytest.raises(BPFError, match="nothing is pinned"):
            Map.from_pin(pin_path)
        with pytest.raises(BPFError, match="bpf filesystem"):
            m.pin("/tmp/pybpf_not_bpffs_pin")


def test_read_only_open_by_pin(pin_path: Path) -> None:
    with Map.create(MapSpec("t_pinro", MapType.HASH, 4, 4, 4), key="I", value="I") as m:
        m[1] = 1
        m.pin(pin_path)
        with Map.from_pin(pin_path, key="I", value="I", flags=T.BPF_F_RDONLY) as ro:
            assert ro[1] == 1
            with pytest.raises(BPFError) as exc:
                ro[1] = 2
            assert exc.value.errno == errno.EPERM
        m.unpin()


def test_open_by_id() -> None:
    with Map.create(MapSpec("t_byid", MapType.PERCPU_ARRAY, 4, 8, 4), value="Q") as m:
        with Map.from_id(m.id) as again:
            assert again.info() == m.info()
            assert again.type == MapType.PERCPU_ARRAY and again.percpu
            assert again.set_codec(value="Q") is again
            again[2] = list(range(again.ncpus))
        assert m[2] == list(range(m.ncpus))  # same kernel object
        with Map.from_fd(int(m.fd), value="Q") as dup:  # a raw int is duplicated, not taken over
            assert dup.id == m.id and int(dup.fd) != int(m.fd)
        assert m[2] == list(range(m.ncpus))  # still open
    with pytest.raises(BPFError, match="no map with id"):
        Map.from_id(0x7FFF_FFFF)


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.slow
def test_ten_thousand_maps_leak_no_fds() -> None:
    before = _open_fds()
    spec = MapSpec("t_leak", MapType.HASH, 4, 4, 4)
    for i in range(10_000):
        if i % 2:
            with Map.create(spec) as m:
                m[b"abcd"] = b"efgh"
        else:
            Map.create(spec).close()
    assert _open_fds() == before
    # Failed creations and opens must not leak either.
    for _ in range(100):
        with pytest.raises(BPFError):
            Map.create(MapSpec("t_leakbad", MapType.ARRAY, 8, 4, 4))
        with pytest.raises(ValueError):
            Map.create(spec, key="Q")  # rejected before the map is created
    assert _open_fds() == before


def test_closed_map_refuses_use() -> None:
    m = Map.create(MapSpec("t_closed", MapType.HASH, 4, 4, 4))
    m.close()
    assert m.closed
    m.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        list(m.keys())
