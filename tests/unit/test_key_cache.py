"""The executor's cache of committed outcomes (KeyCache): replays what it kept, drops
the oldest beyond its cap, and holds nothing the host's garbage collector must walk."""

from __future__ import annotations

import gc
import uuid

import pytest

from ledger.commands import caches as ex
from ledger.commands.caches import KeyCache
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


def test_a_key_kept_again_keeps_its_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keeping a key again neither counts it twice nor moves it: the oldest still go
    first, and the cache never holds more than its cap."""
    monkeypatch.setattr(ex, "CACHE_KEYS_MAX", 10)
    cache = KeyCache()
    first = decided(6)
    cache.update(first)
    cache.update(first)  # the same outcomes again
    assert len(cache) == 6 and len(cache._order) == 6
    cache.update(decided(6, start=6))
    assert len(cache) == 10 and len(cache._order) == 10
    kept = [k for k in first if cache.get(k) is not None]
    assert kept == list(first)[2:]


def test_it_stays_at_its_cap_over_many_rounds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Long after the cache filled, it holds exactly the newest keys (the queue of
    their order and the dict agree)."""
    monkeypatch.setattr(ex, "CACHE_KEYS_MAX", 100)
    cache = KeyCache()
    for round_ in range(200):
        cache.update(decided(16, start=16 * round_))
    newest = decided(100, start=16 * 200 - 100)
    assert len(cache) == 100 and len(cache._order) == 100
    assert all((cache.get(k) or ("",))[0] == fp for k, (fp, _) in newest.items())
    assert list(cache._order) == [k.int for k in newest]
