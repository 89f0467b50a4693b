"""The store's append never skips a version: a batch that writes a stream at a version
other than the one after the stream's latest is refused whole, on every path of every
store (a small append, a large one, and the exclusive session of the fallback)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from ledger.adapters.urls import open_store
from ledger.store import AppendConflict, EventStore, WriteBatch, stored_event

#: Enough events to take PostgreSQL's COPY path (over its append function's limit).
LARGE = 2_100


@pytest.fixture
def store(store_url: str) -> Iterator[EventStore]:
    opened = open_store(store_url)
    opened.create_schema()
    try:
        yield opened
    finally:
        opened.close()


def _batch(stream: uuid.UUID, expected: int, writes: int, *, padding: int) -> WriteBatch:
    """``stream`` expected at ``expected`` and written at version ``writes``, beside
    ``padding`` new streams (each expected absent and written at version 1)."""
    batch = WriteBatch()
    batch.events.append(stored_event(stream, writes, "test.changed", b'{"n":1}'))
    batch.expect_versions[stream] = expected
    for _ in range(padding):
        other = uuid.uuid4()
        batch.events.append(stored_event(other, 1, "test.opened", b'{"n":0}'))
        batch.expect_versions[other] = 0
    return batch


def _plain(store: EventStore, batch: WriteBatch) -> None:
    store.append(batch)


def _exclusive(store: EventStore, batch: WriteBatch) -> None:
    with store.exclusive() as session:
        session.append(batch)


PATHS: dict[str, tuple[Callable[[EventStore, WriteBatch], None], int]] = {
    "small": (_plain, 0),
    "large": (_plain, LARGE),
    "exclusive": (_exclusive, 0),
    "exclusive-large": (_exclusive, LARGE),
}


@pytest.mark.parametrize("path", list(PATHS))
def test_a_version_gap_is_refused_and_nothing_is_written(store: EventStore, path: str) -> None:
    write, padding = PATHS[path]
    stream = uuid.uuid4()
    store.append(_batch(stream, 0, 1, padding=0))
    store.append(_batch(stream, 1, 2, padding=0))
    before = store.max_position()
    # A writer whose state is ahead of the store (it holds version 3, the store has 2):
    # version 4 is free, but writing it would leave version 3 missing.
    with pytest.raises(AppendConflict):
        write(store, _batch(stream, 3, 4, padding=padding))
    # One behind (it holds version 1): version 2 is taken.
    with pytest.raises(AppendConflict):
        write(store, _batch(stream, 1, 2, padding=padding))
    assert store.max_position() == before
    assert store.load_streams([stream])[stream][1].originator_version == 2
    # The version after the latest is written.
    write(store, _batch(stream, 2, 3, padding=padding))
    assert store.load_streams([stream])[stream][1].originator_version == 3
    assert store.read_stream_version(stream, 3) == b'{"n":1}'


@pytest.mark.parametrize("path", list(PATHS))
def test_a_stream_expected_absent_but_present_is_refused(store: EventStore, path: str) -> None:
    write, padding = PATHS[path]
    stream = uuid.uuid4()
    store.append(_batch(stream, 0, 1, padding=0))
    before = store.max_position()
    with pytest.raises(AppendConflict):
        write(store, _batch(stream, 0, 2, padding=padding))
    # Created again (the primary key on its first version refuses it).
    with pytest.raises(AppendConflict):
        write(store, _batch(stream, 0, 1, padding=padding))
    assert store.max_position() == before
