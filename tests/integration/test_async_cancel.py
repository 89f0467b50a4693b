"""Cancellation around an AsyncLedger's writes on PostgreSQL, where the event loop
commits its own tasks' groups (``LoopDriver``): of the awaiting tasks (before they
submit, while queued, while their group is decided in the worker thread after a
conflict, while its append is in flight) and of the loop's driver task itself while
the loop goes on (a shutdown routine that cancels every task, then closes).

What must hold: every command applies whole or not at all, a retry with its key
returns the original outcome, the callers not cancelled get their own outcomes,
nothing waits forever, and close returns."""

from __future__ import annotations

import asyncio
import random
import threading
from decimal import Decimal

import pytest

from ledger import AsyncLedger, Ledger, Outcome
from ledger.errors import StoreError
from ledger.projections.audit import audit
from tests.contract.test_online_group_commit import WALLETS, payment, setup, total

pytestmark = [pytest.mark.postgres, pytest.mark.usefixtures("each_event_loop")]


def source(i: int) -> int:
    return 1 + i % (WALLETS - 1)


def conflict(url: str, key: str) -> None:
    """Another ledger writes an account this one has cached: its next groups read
    their states again, in the worker thread."""
    with Ledger.open(url) as other:
        assert other.submit(payment(key, 0, 1)).ok


def driver_task(abooks: AsyncLedger) -> asyncio.Task[None] | None:
    driver = abooks.sync._committer._drivers.get(asyncio.get_running_loop())
    return None if driver is None else driver.task


def test_a_driver_cancelled_before_its_first_step_leaves_nobody_waiting(pg_url: str) -> None:
    """Cancelled before it ever ran, the driver's body (and the ``finally`` that
    forgets it) never ran: its caller waited forever, every later write of the loop
    too (a new driver was never started), and close spun on the finished task."""
    with Ledger.open(pg_url) as seeder:
        setup(seeder)

    async def main() -> None:
        abooks = await AsyncLedger.open(pg_url)
        assert (await abooks.submit(payment("warm", 1, 0))).ok
        waiting = asyncio.create_task(abooks.submit(payment("queued", 1, 0)))
        await asyncio.sleep(0)  # it submitted and kicked the driver, not yet run
        task = driver_task(abooks)
        assert task is not None
        task.cancel()
        queued = await asyncio.wait_for(waiting, 10)
        later = await asyncio.wait_for(abooks.submit(payment("later", 1, 0)), 10)
        assert queued.ok and later.ok
        await asyncio.wait_for(abooks.close(), 10)

    asyncio.run(main())
    with Ledger.open(pg_url) as books:
        assert books.balance("w0").posted == Decimal("103.00")


@pytest.mark.parametrize("seed", range(3))
def test_the_driver_cancelled_anywhere_while_the_loop_goes_on(pg_url: str, seed: int) -> None:
    with Ledger.open(pg_url) as seeder:
        setup(seeder, funds="10000")
    rnd = random.Random(seed)
    answered = conflicts = 0

    async def round_(abooks: AsyncLedger, tag: str) -> None:
        nonlocal answered, conflicts
        if rnd.random() < 0.5:
            conflict(pg_url, f"{tag}-other")
            conflicts += 1
        keys = [f"{tag}-{i}" for i in range(30)]
        tasks = [
            asyncio.create_task(abooks.submit(payment(k, source(i), 0))) for i, k in enumerate(keys)
        ]
        await asyncio.sleep(rnd.choice([0, 0, 0.0005, 0.001, 0.003]))
        task = driver_task(abooks)
        if task is not None:
            task.cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
        for result in results:
            # Answered, or told that its commit was cut short (retry with the key).
            assert isinstance(result, Outcome | StoreError), result
            if isinstance(result, Outcome):
                assert result.ok
        again = [
            await asyncio.wait_for(abooks.submit(payment(k, source(i), 0)), 20)
            for i, k in enumerate(keys)
        ]
        assert all(o.ok for o in again)
        for first, retry in zip(results, again, strict=True):
            if isinstance(first, Outcome):
                answered += 1
                assert retry.replayed and retry.entry_id == first.entry_id

    async def main() -> None:
        abooks = await AsyncLedger.open(pg_url)
        for n in range(12):
            await round_(abooks, f"s{seed}-r{n}")
        await asyncio.wait_for(abooks.close(), 10)

    asyncio.run(main())
    with Ledger.open(pg_url) as books:
        # Every key applied exactly once (its retry applied it if it had not).
        assert books.balance("w0").posted == Decimal(10000 + 12 * 30 - conflicts)
        assert total(books) == Decimal(10000 * WALLETS)
        assert audit(books.store).clean
    assert answered > 0


@pytest.mark.parametrize("seed", range(3))
def test_cancelled_callers_apply_whole_or_not_and_leave_the_others_alone(
    pg_url: str, seed: int
) -> None:
    with Ledger.open(pg_url) as seeder:
        setup(seeder, funds="10000")
    rnd = random.Random(seed)
    conflicts = 0

    async def round_(abooks: AsyncLedger, tag: str) -> None:
        nonlocal conflicts
        if rnd.random() < 0.5:
            conflict(pg_url, f"{tag}-other")  # decided in the worker thread
            conflicts += 1
        keys = [f"{tag}-{i}" for i in range(40)]
        tasks = {
            k: asyncio.create_task(abooks.submit(payment(k, source(i), 0)))
            for i, k in enumerate(keys)
        }
        for _ in range(rnd.randint(0, 5)):
            await asyncio.sleep(0)  # before submitting, queued, deciding, appending
        victims = set(rnd.sample(keys, 15))
        for key in victims:
            tasks[key].cancel()
        results = dict(
            zip(tasks, await asyncio.gather(*tasks.values(), return_exceptions=True), strict=True)
        )
        for key, result in results.items():
            if key not in victims:
                assert isinstance(result, Outcome) and result.ok, (key, result)
        again = {
            k: await asyncio.wait_for(abooks.submit(payment(k, source(i), 0)), 20)
            for i, k in enumerate(keys)
        }
        assert all(o.ok for o in again.values())
        for key, retry in again.items():
            first = results[key]
            if isinstance(first, Outcome):
                assert retry.replayed and retry.entry_id == first.entry_id

    async def main() -> None:
        abooks = await AsyncLedger.open(pg_url)
        for n in range(10):
            await round_(abooks, f"s{seed}-r{n}")
        await asyncio.wait_for(abooks.close(), 10)

    asyncio.run(main())
    with Ledger.open(pg_url) as books:
        # Each of the 400 keys applied exactly once, whatever was cancelled when.
        assert books.balance("w0").posted == Decimal(10000 + 400 - conflicts)
        assert total(books) == Decimal(10000 * WALLETS)
        assert audit(books.store).clean


def test_a_driver_cancelled_while_its_redo_waits_for_the_worker_still_answers(
    pg_url: str,
) -> None:
    """A group whose append conflicted is run again in the worker thread. Cancelling
    the driver while that work had not started yet cancelled the work itself (the
    future it awaited was tied to it): the group was never run again and its callers
    were never answered."""
    with Ledger.open(pg_url) as seeder:
        setup(seeder)

    async def main() -> None:
        abooks = await AsyncLedger.open(pg_url)
        committer = abooks.sync._committer
        assert (await abooks.submit(payment("warm", 1, 0))).ok  # w0, w1 cached
        conflict(pg_url, "other")  # the next group's append conflicts
        gate = threading.Event()
        busy = committer._in_worker(gate.wait)  # the worker thread is busy
        try:
            waiting = asyncio.create_task(abooks.submit(payment("redone", 1, 0)))
            for _ in range(200):  # until the group waits for its redo
                await asyncio.sleep(0.01)
                if committer.stats.redone or waiting.done():
                    break
            await asyncio.sleep(0.05)
            task = driver_task(abooks)
            assert task is not None and not waiting.done()
            task.cancel()
        finally:
            gate.set()
        await asyncio.wrap_future(busy)
        outcome = await asyncio.wait_for(waiting, 10)
        assert outcome.ok
        again = await asyncio.wait_for(abooks.submit(payment("redone", 1, 0)), 10)
        assert again.replayed and again.entry_id == outcome.entry_id
        await asyncio.wait_for(abooks.close(), 10)

    asyncio.run(main())
    with Ledger.open(pg_url) as books:
        assert books.balance("w0").posted == Decimal("101.00")
        assert audit(books.store).clean
