"""Closing an AsyncLedger on PostgreSQL while its tasks keep writing.

Its loop commits its own tasks' groups until its queue is empty, and ``close`` waited
for that: tasks that submit again as soon as they are answered (a consumer loop, a
busy service shutting down) kept the queue from ever emptying, and ``close`` never
returned. Now writes submitted once closing has begun raise StoreError (as after
``Ledger.close``), everything submitted before is committed and answered, and close
returns."""

from __future__ import annotations

import asyncio
import gc
import time
import warnings
from decimal import Decimal

import psycopg
import pytest

from ledger import AsyncLedger, Ledger, Outcome
from ledger.errors import StoreError
from ledger.projections.audit import audit
from tests.contract.test_online_group_commit import WALLETS, payment, setup, total

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("each_event_loop")]


def test_close_ends_while_tasks_keep_writing(pg_url: str) -> None:
    with Ledger.open(pg_url) as seeder:
        setup(seeder, funds="1000")
    answers: dict[str, Outcome | BaseException] = {}

    async def main() -> None:
        abooks = await AsyncLedger.open(pg_url)

        async def writer(n: int) -> None:
            for i in range(100_000):
                key = f"w{n}-{i}"
                try:
                    answers[key] = await abooks.submit(payment(key, 1 + n % (WALLETS - 1), 0))
                except StoreError as e:
                    answers[key] = e
                    return

        tasks = [asyncio.create_task(writer(n)) for n in range(1, 9)]
        await asyncio.sleep(0.2)
        assert not any(task.done() for task in tasks)
        await asyncio.wait_for(abooks.close(), 20)
        await asyncio.wait_for(asyncio.gather(*tasks), 5)
        with pytest.raises(StoreError, match="closed"):
            await abooks.submit(payment("after", 1, 0))

    asyncio.run(main())
    refused = [k for k, a in answers.items() if isinstance(a, BaseException)]
    applied = [a for a in answers.values() if isinstance(a, Outcome)]
    assert len(refused) == 8 and all(a.ok and not a.replayed for a in applied)
    with Ledger.open(pg_url) as books:
        assert all(books.recorded(k) is None for k in [*refused, "after"])
        assert books.balance("w0").posted == Decimal(1000 + len(applied))
        assert total(books) == Decimal(1000 * WALLETS)
        assert audit(books.store).clean


def sessions(url: str, timeout_s: float = 5) -> int:
    """Sessions open on the test's database, this one apart, once none are left or
    after ``timeout_s``: a backend leaves pg_stat_activity as it exits, just after its
    client closed the connection, not at once."""
    deadline = time.monotonic() + timeout_s
    while True:
        with psycopg.connect(url) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()
        assert row is not None
        if not row[0] or time.monotonic() > deadline:
            return int(row[0])
        time.sleep(0.05)


def test_a_close_cut_short_by_a_timeout_still_closes(pg_url: str) -> None:
    """``asyncio.wait_for(abooks.close(), t)`` at shutdown: the timeout cancelled the
    close midway, which left the Ledger open (its pool's sessions and committer
    thread) and the loop's own session to the collector. The closing now runs to its
    end whatever happens to its caller, and every write submitted before it is
    answered."""
    with Ledger.open(pg_url) as seeder:
        setup(seeder)
    assert sessions(pg_url) == 0

    async def main() -> AsyncLedger:
        abooks = await AsyncLedger.open(pg_url)
        tasks = [asyncio.create_task(abooks.submit(payment(f"k{i}", 1, 0))) for i in range(40)]
        await asyncio.sleep(0)
        await asyncio.sleep(0)  # the loop's driver is committing
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(abooks.close(), 0.0001)
        answers = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        assert all(o.ok for o in answers)
        for _ in range(100):  # the closing goes on without its caller
            if abooks.sync.closed:
                break
            await asyncio.sleep(0.05)
        assert abooks.sync.closed
        await asyncio.wait_for(abooks.close(), 10)  # awaits the closing under way
        return abooks

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        abooks = asyncio.run(main())
        gc.collect()
    assert abooks.sync.closed
    assert sessions(pg_url) == 0
    assert not [w for w in caught if issubclass(w.category, ResourceWarning)]
    with Ledger.open(pg_url) as books:
        assert books.balance("w0").posted == Decimal("140.00")
