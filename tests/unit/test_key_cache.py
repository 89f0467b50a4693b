"""The executor's cache of committed outcomes (KeyCache): replays what it kept, drops
the oldest beyond its cap, and holds nothing the host's garbage collector must walk."""

from __future__ import annotations

import gc
import uuid

import pytest

from ledger.commands import executor as ex
from ledger.commands.executor import KeyCache
from ledger.outcome import Outcome


def decided(n: int, start: int = 0) -> dict[uuid.UUID, tuple[str, Outcome]]:
    out = {}
    for i in range(start, start + n):
        entry = uuid.uuid4() if i % 2 else None
        outcome = Outcome(f"k{i}", "applied" if i % 3 else "rejected", entry, "c", "m", False, "x")
        out[uuid.uuid5(uuid.NAMESPACE_OID, f"k{i}")] = (f"fp{i}", outcome)
    return out


def test_it_returns_what_was_kept() -> None:
    cache = KeyCache()
    kept = decided(50)
    cache.update(kept)
    assert len(cache) == 50
    for key_id, value in kept.items():
        assert cache.get(key_id) == value
    assert cache.get(uuid.uuid4()) is None


def test_the_oldest_go_beyond_the_cap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ex, "CACHE_KEYS_MAX", 10)
    cache = KeyCache()
    first, second = decided(8), decided(8, start=8)
    cache.update(first)
    cache.update(second)
    assert len(cache) == 10
    assert all(cache.get(k) is not None for k in second)
    assert sum(cache.get(k) is not None for k in first) == 2


def test_the_collector_does_not_track_what_it_keeps() -> None:
    cache = KeyCache()
    cache.update(decided(100))
    gc.collect()
    values = list(cache._items.values())
    assert not any(gc.is_tracked(v) for v in values)
    assert not any(gc.is_tracked(k) for k in cache._items)
