"""The ``Ledger``'s reads and counted arguments given hostile values: each is a typed
refusal (``InvalidCommand``, ``LimitExceeded`` above a limit), alike through the
``AsyncLedger``, never a bare TypeError, AttributeError, OverflowError or
UnicodeEncodeError from deeper down, and nothing is written. Two threads closing one
ledger at once both return only once it is closed."""

from __future__ import annotations

import asyncio
import threading
import uuid
from decimal import Decimal
from typing import Any

import pytest

from ledger import AsyncLedger, Ledger
from ledger.errors import InvalidCommand, LimitExceeded

NAMES: list[Any] = [None, 7, 7.5, b"alice", ["alice"], {"a": 1}, Decimal("NaN"), "", "\ud800"]
ONE = uuid.UUID("6f1d2c44-8a8e-4f4e-9d55-0c7b3c0f5a11")
IDS: list[Any] = [None, "not a uuid", str(ONE), 7, b"x" * 16, ONE.int]
COUNTS: list[Any] = [0, -1, None, "10", 2.0, True, "\ud800"]


def seeded(books: Ledger) -> int:
    books.open_account("bank", "USD", normal="debit")
    books.open_account("alice", "USD")
    books.transfer("t1", debit="bank", credit="alice", amount="5", asset="USD")
    return books.store.max_position()


@pytest.mark.parametrize("name", NAMES)
def test_hostile_names_are_refused_by_the_reads(books: Ledger, name: Any) -> None:
    head = seeded(books)
    for read in (books.balance, books.recorded, books.asset):
        with pytest.raises(InvalidCommand):
            read(name)

    async def from_a_loop() -> None:
        abooks = AsyncLedger(books)
        for read in (abooks.balance, abooks.recorded, abooks.asset):
            with pytest.raises(InvalidCommand):
                await read(name)

    asyncio.run(from_a_loop())
    assert books.store.max_position() == head


@pytest.mark.parametrize("value", IDS)
def test_ids_that_are_not_uuids_are_refused(books: Ledger, value: Any) -> None:
    seeded(books)
    with pytest.raises(InvalidCommand):
        books.entry(value)
    with pytest.raises(InvalidCommand):
        books.request_status(value)


@pytest.mark.parametrize("count", COUNTS)
def test_counts_that_are_not_whole_numbers_from_one_are_refused(books: Ledger, count: Any) -> None:
    head = seeded(books)
    with pytest.raises(InvalidCommand):
        books.expire_due(limit=count)
    with pytest.raises(InvalidCommand):
        books.due_expiries(limit=count)
    with pytest.raises(InvalidCommand):
        books.submit_all([], chunk_size=count)
    assert books.store.max_position() == head


def test_counts_over_their_limit_are_limit_exceeded(books: Ledger) -> None:
    seeded(books)
    for count in (10_001, 10**30):
        with pytest.raises(LimitExceeded):
            books.expire_due(limit=count)
        with pytest.raises(LimitExceeded):
            books.submit_all([], chunk_size=count)
    assert books.expire_due(limit=10_000) == []


def close_twice_while_writing(books: Ledger, prefix: str) -> list[Any]:
    """32 threads write while two threads close ``books``: each write's result (True)
    or the name of the error it got."""
    results: list[Any] = []
    submitted = threading.Barrier(33)

    def write(n: int) -> None:
        submitted.wait()
        try:
            key = f"{prefix}-{n}"
            out = books.transfer(key, debit="bank", credit="alice", amount="1", asset="USD")
            results.append(out.ok)
        except Exception as e:  # e.g. the store closed under a queued write
            results.append(type(e).__name__)

    writers = [threading.Thread(target=write, args=(n,)) for n in range(32)]
    for t in writers:
        t.start()
    submitted.wait()
    closers = [threading.Thread(target=books.close) for _ in range(2)]
    for t in closers:
        t.start()
    for t in writers + closers:
        t.join(30)
    return results


def test_two_threads_closing_at_once_let_the_writes_in_flight_finish(store_url: str) -> None:
    """Writes submitted before a close are committed, even when a second close comes
    from another thread meanwhile (it waits for the first instead of closing the store
    under it)."""
    for round_ in range(5):
        books = Ledger.open(store_url)
        if round_ == 0:
            seeded(books)
        results = close_twice_while_writing(books, f"w{round_}")
        # refused as closed (never queued), or applied whole
        refused = [r for r in results if r is not True and r != "StoreError"]
        assert not refused, refused
        with Ledger.open(store_url) as again:
            applied = [again.recorded(f"w{round_}-{n}") for n in range(32)]
        assert sum(r is True for r in results) == sum(a is not None for a in applied)
