"""The writers' lock on PostgreSQL: appends serialise on an advisory lock that vacuum
and analyze do not conflict with (eventsourcing's EXCLUSIVE table lock did: each
autovacuum of the event table stalled every writer for ``deadlock_timeout``), and
they still exclude a writer of an earlier version, which takes the EXCLUSIVE lock."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from decimal import Decimal

import psycopg
import pytest

from ledger import Ledger
from ledger.projections.audit import audit
from tests.conftest import require_postgres

pytestmark = pytest.mark.postgres


@pytest.fixture
def books(pg_url: str) -> Iterator[Ledger]:
    with Ledger.open(pg_url) as ledger:
        ledger.open_account("bank", "USD", normal="debit")
        ledger.open_account("alice", "USD")
        yield ledger


def hold_lock(url: str, mode: str) -> psycopg.Connection:
    conn = psycopg.connect(url)
    conn.execute(f"LOCK TABLE stored_events IN {mode} MODE")  # a transaction is open
    return conn


def pay_many(books: Ledger, prefix: str, n: int) -> None:
    books.submit_all(
        [
            {
                "kind": "post_entry",
                "key": f"{prefix}{i}",
                "legs": [
                    {"account": "bank", "amount": "1", "asset": "USD"},
                    {"account": "alice", "amount": "-1", "asset": "USD"},
                ],
            }
            for i in range(n)
        ]
    )


def test_a_vacuum_in_progress_does_not_hold_the_writers(books: Ledger) -> None:
    url = require_postgres()
    vacuum = hold_lock(url, "SHARE UPDATE EXCLUSIVE")  # what (auto)vacuum and analyze take
    done = threading.Event()

    def write() -> None:
        books.transfer("one", debit="bank", credit="alice", amount="1", asset="USD")  # function
        pay_many(books, "copy", 1_000)  # large enough for the COPY path
        done.set()

    thread = threading.Thread(target=write)
    started = time.monotonic()
    thread.start()
    try:
        # no wait for the vacuum (autovacuum is cancelled only after deadlock_timeout, 1 s)
        assert done.wait(5), "the writers waited for the vacuum's lock"
        assert time.monotonic() - started < 0.9
    finally:
        vacuum.rollback()
        vacuum.close()
        thread.join()
    assert books.balance("alice").posted == Decimal("1001.00")


@pytest.mark.parametrize("big", [False, True])
def test_an_earlier_versions_exclusive_lock_still_excludes_writers(
    books: Ledger, big: bool
) -> None:
    url = require_postgres()
    old_writer = hold_lock(url, "EXCLUSIVE")
    done = threading.Event()

    def write() -> None:
        if big:
            pay_many(books, "w", 1_000)
        else:
            books.transfer("w", debit="bank", credit="alice", amount="1", asset="USD")
        done.set()

    thread = threading.Thread(target=write)
    thread.start()
    try:
        assert not done.wait(0.5)  # waits for the old writer's transaction
    finally:
        old_writer.commit()
        old_writer.close()
    thread.join(10)
    assert done.is_set()
    # and while this version writes, an old writer's EXCLUSIVE lock waits for it
    with books.store.exclusive(), psycopg.connect(url) as other:
        other.execute("SET lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            other.execute("LOCK TABLE stored_events IN EXCLUSIVE MODE")
    assert audit(books.store).clean


def test_vacuum_and_writers_run_side_by_side(books: Ledger) -> None:
    url = require_postgres()
    pay_many(books, "seed", 3_000)
    stop = threading.Event()
    slowest = [0.0]

    def writer() -> None:
        i = 0
        while not stop.is_set():
            t = time.monotonic()
            books.transfer(f"v{i}", debit="bank", credit="alice", amount="1", asset="USD")
            slowest[0] = max(slowest[0], time.monotonic() - t)
            i += 1

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            for _ in range(3):
                conn.execute("VACUUM (ANALYZE) stored_events")
    finally:
        stop.set()
        thread.join()
    assert slowest[0] < 0.9
    assert audit(books.store).clean
