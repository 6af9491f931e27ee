"""Batch operations on large maps, and iteration that stays correct while entries are deleted."""

from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import pytest

from pybpf._sys.cpus import possible_cpus
from pybpf.errors import NotSupportedError
from pybpf.map import Map, MapSpec, MapType

pytestmark = [pytest.mark.usefixtures("require_root"), pytest.mark.kernel2]  # also pass on Debian 6.1

N = 100_000


@pytest.fixture
def big_hash() -> Iterator[Map]:
    with Map.create(MapSpec("t_big", MapType.HASH, 4, 8, N), key="I", value="Q") as m:
        yield m


def test_batch_update_lookup_delete_100k(big_hash: Map) -> None:
    m = big_hash
    keys = list(range(N))
    assert m.batch_update(keys, [k * 3 for k in keys]) == N
    got = m.batch_lookup()
    assert len(got) == N
    assert dict(got) == {k: k * 3 for k in keys}
    # Small chunks: many calls, each continuing from the last one's cursor.
    assert sorted(m.batch_lookup(chunk=8192)) == sorted(got)
    # A count stops the walk early: at most that many, short only by the rest of one hash bucket.
    part = m.batch_lookup(count=50_000, chunk=4096)
    assert 50_000 - 64 < len(part) <= 50_000 and set(part) <= set(got)
    # Spot-check through the element API: the batch wrote what it said.
    assert m[0] == 0 and m[N - 1] == (N - 1) * 3

    # Update again with other values (numpy arrays go straight through as raw items).
    assert m.batch_update(np.arange(N, dtype=np.uint32), np.arange(N, dtype=np.uint64) + 7) == N
    raw_keys, raw_values, n = m.lookup_batch_raw(chunk=4096)  # many small calls, same result
    assert n == N
    k = np.frombuffer(raw_keys, dtype=np.uint32)
    v = np.frombuffer(raw_values, dtype=np.uint64)
    assert (v == k.astype(np.uint64) + 7).all() and len(set(k.tolist())) == N

    # Delete the even keys; a missing key in the middle does not stop the batch.
    evens = list(range(0, N, 2))
    assert m.batch_delete(evens) == N // 2
    assert m.batch_delete([0, 1, 2, 3]) == 2  # 0 and 2 are gone already
    rest = dict(m.batch_lookup())
    assert len(rest) == N // 2 - 2
    assert all(key % 2 == 1 for key in rest) and 1 not in rest and 5 in rest

    # Lookup-and-delete empties the map.
    drained = m.batch_lookup(delete=True, chunk=2048)
    assert len(drained) == len(rest)
    assert m.batch_lookup() == [] and len(m) == 0


def test_batch_lookup_count_caps_entries(big_hash: Map) -> None:
    big_hash.batch_update(range(1000), range(1000))
    some = big_hash.batch_lookup(count=100)
    assert 0 < len(some) <= 100
    assert all(v == k for k, v in some)


def test_batch_lookup_falls_back_when_unsupported() -> None:
    with Map.create(MapSpec("t_blpm", MapType.LPM_TRIE, 8, 4, 100), key="=I4s", value="I") as m:
        for i in range(100):
            m[(32, bytes([10, 0, 0, i]))] = i
        assert sorted(v for _, v in m.batch_lookup(chunk=10)) == list(range(100))


def test_batch_on_arrays_and_percpu() -> None:
    with Map.create(MapSpec("t_barr", MapType.ARRAY, 4, 4, 1000), value="I") as arr:
        arr.batch_update(range(1000), range(1000, 2000))
        assert arr.batch_lookup() == [(i, 1000 + i) for i in range(1000)]
        with pytest.raises(NotSupportedError):
            arr.lookup_batch_raw(delete=True)  # array entries cannot be deleted
    ncpu = possible_cpus()
    with Map.create(MapSpec("t_bpc", MapType.PERCPU_HASH, 4, 4, 1000), key="I", value="I") as pc:
        pc.batch_update(range(500), [[i + cpu for cpu in range(ncpu)] for i in range(500)])
        got = dict(pc.batch_lookup())
        assert len(got) == 500 and got[10] == [10 + cpu for cpu in range(ncpu)]


def test_iterate_while_deleting_every_other_key() -> None:
    with Map.create(MapSpec("t_iterdel", MapType.HASH, 4, 4, 4096), key="I", value="I") as m:
        m.batch_update(range(2000), range(2000))
        seen: list[int] = []
        for i, key in enumerate(m.keys()):
            seen.append(key)
            if i % 2 == 0:
                del m[key]
        assert sorted(seen) == list(range(2000))  # every key exactly once
        assert len(m) == 1000


def test_iterate_items_while_deleting_already_seen_keys() -> None:
    with Map.create(MapSpec("t_iterdel2", MapType.HASH, 4, 4, 4096), key="I", value="I") as m:
        m.batch_update(range(1000), range(1000))
        seen: list[int] = []
        for key, value in m.items():
            assert key == value
            seen.append(key)
            if len(seen) % 2 == 0:
                del m[seen[-2]]  # the previous key
        assert sorted(seen) == list(range(1000))


def test_iterate_when_the_next_key_disappears() -> None:
    """Deleting the key the walk would continue from makes the kernel restart from the first bucket;
    keys already produced must not come out again and surviving keys must all come out."""
    rng = random.Random(7)
    with Map.create(MapSpec("t_iterdel3", MapType.HASH, 4, 4, 4096), key="I", value="I") as m:
        m.batch_update(range(1500), range(1500))
        order = [k for k, _ in m.batch_lookup()]  # the kernel's iteration order
        deleted: set[int] = set()
        seen: list[int] = []
        for key, _ in m.items():
            seen.append(key)
            # Delete the next two keys in kernel order, and now and then some random keys.
            pos = order.index(key)
            for victim in order[pos + 1:pos + 3] + ([rng.randrange(1500)] if rng.random() < 0.1 else []):
                if victim not in deleted and victim not in seen:
                    deleted.add(victim)
                    m.delete(victim)
        assert len(seen) == len(set(seen))  # no key twice
        survivors = set(range(1500)) - deleted
        assert survivors <= set(seen)  # none missed
        assert set(seen) <= set(range(1500))


def test_iteration_over_lpm_trie_with_deletes() -> None:
    with Map.create(MapSpec("t_lpmdel", MapType.LPM_TRIE, 8, 4, 512), key="=I4s", value="I") as m:
        for i in range(256):
            m[(32, bytes([10, 0, 0, i]))] = i
        seen = []
        for i, (key, _) in enumerate(m.items()):
            seen.append(key)
            if i % 2:
                del m[key]
        assert len(seen) == len(set(seen)) == 256
