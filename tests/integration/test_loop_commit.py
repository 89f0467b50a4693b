"""On PostgreSQL an AsyncLedger's event loop commits its own tasks' groups
(:class:`ledger.commands.loop_commit.LoopDriver`), against the real server: groups
that need reads are decided off the loop, a blocking write from the driving loop is
refused, a loop that stops mid-commit leaves the ledger usable with every key applied
at most once, conflicts with another writer and dropped connections are redone, and
personal data stays sealed."""

from __future__ import annotations

import asyncio
import gc
import threading
import warnings
from decimal import Decimal
from typing import Any

import psycopg
import pytest

from ledger import AsyncLedger, Ledger, Outcome
from ledger import payments as pay
from ledger.adapters.crypto import Keyring, new_key
from ledger.projections.audit import audit
from tests.contract.test_online_group_commit import WALLETS, payment, setup, total
from tests.integration.test_encryption import holds, raw_contents

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("each_event_loop")]


@pytest.fixture
def url(pg_url: str) -> str:
    return pg_url


def test_the_loop_commits_its_groups_and_never_reads_on_the_loop(
    url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger.open(url) as seeder:
        setup(seeder, funds="1000")
    # A second ledger starts cold: its first groups need reads.
    with Ledger.open(url) as books:
        reads_on: list[threading.Thread] = []
        read = books.store.read

        def spy(*args: Any, **kwargs: Any) -> Any:
            reads_on.append(threading.current_thread())
            return read(*args, **kwargs)

        monkeypatch.setattr(books.store, "read", spy)
        abooks = AsyncLedger(books)

        async def main() -> tuple[threading.Thread, list[Outcome]]:
            async def task(n: int) -> list[Outcome]:
                out = []
                for i in range(10):
                    out.append(await abooks.submit(payment(f"a{n}-{i}", 1 + n % (WALLETS - 1), 0)))
                return out

            parts = await asyncio.gather(*(task(n) for n in range(1, 25)))
            return threading.current_thread(), [o for part in parts for o in part]

        loop_thread, outcomes = asyncio.run(main())
        assert all(o.ok and not o.replayed for o in outcomes)
        assert reads_on and loop_thread not in reads_on  # reads ran in a worker thread
        stats = books.group_commit_stats
        assert stats.loop_commits > 0 and stats.loop_commits == stats.commits
        assert stats.largest_group > 1
        assert books.balance("w0").posted == Decimal(1000 + 240)
        assert total(books) == Decimal(1000 * WALLETS)
        assert audit(books.store).clean


def test_a_blocking_write_from_the_driving_loop_is_refused_and_changes_nothing(url: str) -> None:
    with Ledger.open(url) as books:
        setup(books)
        abooks = AsyncLedger(books)

        async def main() -> None:
            assert (await abooks.submit(payment("a", 0, 1))).ok
            with pytest.raises(RuntimeError, match="blocking ledger write"):
                books.submit(payment("b", 0, 1))
            with pytest.raises(RuntimeError, match="blocking ledger write"):
                books.submit_all([payment("c", 0, 1)])
            with pytest.raises(RuntimeError, match="blocking ledger write"):
                books.close()  # would wait on the loop it blocks
            # the same calls from a thread are fine
            assert (await asyncio.to_thread(books.submit, payment("b", 0, 1))).ok
            await abooks.close()

        asyncio.run(main())
    with Ledger.open(url) as books:
        assert books.recorded("c") is None
        assert books.balance("w1").posted == Decimal("102.00")


@pytest.mark.parametrize("delay", [0.0, 0.0005, 0.002, 0.005])
def test_a_loop_that_stops_mid_commit_leaves_the_ledger_usable(url: str, delay: float) -> None:
    with Ledger.open(url) as books:
        setup(books, funds="1000")
        abooks = AsyncLedger(books)

        async def main() -> None:
            loop = asyncio.get_running_loop()
            tasks = [loop.create_task(abooks.submit(payment(f"s{i}", 0, 1))) for i in range(20)]
            await asyncio.sleep(delay)
            assert len(tasks) == 20
            # returning now: asyncio.run cancels the driver wherever it is

        asyncio.run(main())
        # The executor was released: threads (and other loops) commit; every key
        # applied at most once, and its retry returns the one outcome.
        again = [books.submit(payment(f"s{i}", 0, 1)) for i in range(20)]
        assert all(o.ok for o in again)
        assert len({o.entry_id for o in again}) == 20

        async def later() -> Outcome:
            return await abooks.submit(payment("after", 2, 3))

        assert asyncio.run(later()).ok
        assert books.balance("w1").posted == Decimal("1020.00")
        assert total(books) == Decimal(1000 * WALLETS)
        assert audit(books.store).clean


def test_conflicts_with_another_writer_are_redone(url: str) -> None:
    with Ledger.open(url) as a, Ledger.open(url) as b:
        setup(a, funds="10000")
        abooks = AsyncLedger(a)
        stop = threading.Event()
        other: list[Outcome] = []

        def writer() -> None:  # another process, as far as a's caches know
            i = 0
            while not stop.is_set():
                other.append(b.submit(payment(f"b{i}", i % WALLETS, (i + 1) % WALLETS)))
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()

        async def main() -> list[Outcome]:
            async def task(n: int) -> list[Outcome]:
                return [
                    await abooks.submit(payment(f"a{n}-{i}", (n + i) % WALLETS, n % WALLETS))
                    for i in range(15)
                ]

            # the same keys from both writers too
            shared = [
                await asyncio.gather(
                    abooks.submit(payment(f"dup{i}", 0, 1)),
                    asyncio.to_thread(b.submit, payment(f"dup{i}", 0, 1)),
                )
                for i in range(5)
            ]
            parts = await asyncio.gather(*(task(n) for n in range(16)))
            return [o for pair in shared for o in pair] + [o for p in parts for o in p]

        try:
            outcomes = asyncio.run(main())
        finally:
            stop.set()
            thread.join()
        assert all(o.ok for o in outcomes + other)
        for i in range(5):
            pair = outcomes[2 * i : 2 * i + 2]
            assert pair[0].entry_id == pair[1].entry_id
            assert sum(not o.replayed for o in pair) == 1
        assert a.group_commit_stats.redone > 0  # the loop's groups did conflict
        assert a.group_commit_stats.loop_commits > 0
        assert total(a) == Decimal(10000 * WALLETS)
        assert audit(a.store).clean


def test_a_dropped_connection_is_redone_and_reopened(url: str) -> None:
    with Ledger.open(url) as books:
        setup(books, funds="1000")
        abooks = AsyncLedger(books)

        def drop_connections() -> None:
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

        async def main() -> list[Outcome]:
            out = []
            for round_ in range(3):
                out += await asyncio.gather(
                    *(abooks.submit(payment(f"r{round_}-{i}", 0, 1)) for i in range(10))
                )
                await asyncio.to_thread(drop_connections)
            await abooks.close()
            return out

        outcomes = asyncio.run(main())
    assert all(o.ok and not o.replayed for o in outcomes)
    with Ledger.open(url) as books:
        assert books.balance("w1").posted == Decimal("1030.00")
        assert audit(books.store).clean


def test_the_loop_path_seals_personal_data(url: str) -> None:
    keyring = Keyring({"k1": new_key()}, current="k1")

    async def main() -> None:
        async with await AsyncLedger.open(url, keyring=keyring) as abooks:
            await abooks.open_account("bank", "USD", normal="debit")
            await abooks.open_account("alice", "USD", metadata={"email": "SECRET-MAIL-4"})
            await abooks.open_account("bob", "USD")
            await abooks.transfer("fund", debit="bank", credit="alice", amount="50", asset="USD")
            sent = await asyncio.gather(
                *(
                    pay.send(
                        abooks,
                        f"p{i}",
                        sender="alice",
                        recipient="bob",
                        amount="1",
                        asset="USD",
                        note="SECRET-NOTE-1",
                    )
                    for i in range(10)
                )
            )
            assert all(o.ok for o in sent)
            assert abooks.sync.group_commit_stats.loop_commits > 0

    asyncio.run(main())
    raw = raw_contents(url)
    assert holds(raw, '"sealed":"k1:')
    assert not holds(raw, "SECRET-NOTE-1") and not holds(raw, "SECRET-MAIL-4")


def test_a_loop_that_stops_hands_another_loops_work_to_the_thread(url: str) -> None:
    with Ledger.open(url) as books:
        setup(books)
        abooks = AsyncLedger(books)
        committer = books._committer
        real = committer._loop_appender
        assert real is not None

        class Slow:  # an append that takes its time, so loop A is caught mid-commit
            def __init__(self) -> None:
                self.inner = real()

            async def append(self, batch: Any) -> None:
                await asyncio.sleep(0.3)
                await self.inner.append(batch)

            async def aclose(self) -> None:
                await self.inner.aclose()

            def discard(self) -> None:
                self.inner.discard()

        committer._loop_appender = Slow
        in_flight = threading.Event()
        from_b: list[Outcome] = []

        async def loop_a() -> None:
            task = asyncio.get_running_loop().create_task(abooks.submit(payment("a", 0, 1)))
            await asyncio.sleep(0.1)  # A's driver is in its append
            in_flight.set()
            await asyncio.sleep(0.1)  # B submits; its driver finds A's holding the ledger
            assert not task.done()
            # returning: asyncio.run cancels A's driver mid-commit

        def run_b() -> None:
            in_flight.wait(5)

            async def loop_b() -> Outcome:
                return await asyncio.wait_for(abooks.submit(payment("b", 2, 3)), 10)

            from_b.append(asyncio.run(loop_b()))

        thread = threading.Thread(target=run_b)
        thread.start()
        asyncio.run(loop_a())
        thread.join(15)
        assert from_b and from_b[0].ok  # the thread took B's command
        again = books.submit(payment("a", 0, 1))
        assert again.ok  # applied at most once, whatever A's fate
        assert books.balance("w1").posted == Decimal("101.00")
        assert audit(books.store).clean


def test_closing_the_ledger_from_another_thread_closes_a_running_loops_connection(
    url: str,
) -> None:
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever)
    runner.start()
    try:
        books = Ledger.open(url)
        setup(books)
        abooks = AsyncLedger(books)
        done = asyncio.run_coroutine_threadsafe(abooks.submit(payment("far", 0, 1)), loop)
        assert done.result(timeout=10).ok
        driver = books._committer._drivers[loop]  # type: ignore[attr-defined]
        connection = driver.appender._conn
        assert connection is not None and not connection.closed
        # The AsyncLedger is never closed with await: closing the Ledger from this
        # thread has the still-running loop close its connection.
        books.close()
        for _ in range(500):
            if connection.closed:
                break
            threading.Event().wait(0.01)
        assert connection.closed
        assert driver.appender is None
    finally:
        loop.call_soon_threadsafe(loop.stop)
        runner.join()
        loop.close()


def test_a_loop_that_ended_has_its_session_ended_not_left_to_the_collector(url: str) -> None:
    """An ``asyncio.run`` per call (a script, a sync framework's worker): when the next
    loop arrives, the ended loop's connection is closed, not dropped with a
    ResourceWarning (\"deleted while still open\")."""
    with Ledger.open(url) as books:
        setup(books)
        gc.collect()  # what earlier tests of this worker left is not this test's
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for n in range(5):
                asyncio.run(AsyncLedger(books).submit(payment("x", n, 1)))
            gc.collect()
        leaks = [
            w
            for w in caught
            if issubclass(w.category, ResourceWarning) and "Connection" in str(w.message)
        ]
        assert leaks == [], [str(w.message) for w in leaks]
        assert len(books._committer._drivers) == 1  # the last loop's, closed with books
