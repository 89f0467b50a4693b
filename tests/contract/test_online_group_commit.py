"""The online path: concurrent callers (threads and asyncio tasks) of one ledger share
group commits, each command keeping its own outcome, on every store."""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest

from ledger import AsyncLedger, Ledger, Outcome, Overloaded
from ledger import payments as pay
from ledger.commands import AtomicBatch, FreezeAccount, LegInput, PostEntry
from ledger.commands.group_commit import GroupCommitter, ThreadWaiter
from ledger.errors import InvalidCommand, RiskPolicyFailed, StoreUnavailable
from ledger.model import account_stream_id
from ledger.projections.audit import audit
from ledger.risk import RiskCheck

WALLETS = 6


def setup(books: Ledger, funds: str = "100") -> None:
    books.open_account("bank", "USD", normal="debit")
    for w in range(WALLETS):
        books.open_account(f"w{w}", "USD", min_balance="0")
        books.transfer(f"fund-{w}", debit="bank", credit=f"w{w}", amount=funds, asset="USD")


def payment(key: str, src: int, dst: int, amount: str = "1") -> PostEntry:
    value = Decimal(amount)
    return PostEntry(
        key=key,
        legs=(
            LegInput(account=f"w{src}", amount=value, asset="USD"),
            LegInput(account=f"w{dst}", amount=-value, asset="USD"),
        ),
    )


def total(books: Ledger) -> Decimal:
    return sum((books.balance(f"w{w}").posted for w in range(WALLETS)), Decimal(0))


def test_threads_with_duplicate_keys_apply_each_key_once(books: Ledger) -> None:
    setup(books)
    keys = [f"k{i}" for i in range(40)]
    results: list[tuple[str, Outcome]] = []
    lock = threading.Lock()
    start = threading.Barrier(16)

    def caller(index: int) -> None:
        start.wait()
        for i, key in enumerate(keys):
            # every thread sends every key (the same request): 16 copies of each
            outcome = books.submit(payment(key, i % WALLETS, (i + 1) % WALLETS))
            with lock:
                results.append((key, outcome))

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    applied = Counter(key for key, o in results if o.ok and not o.replayed)
    assert applied == Counter(keys)  # exactly one first application per key
    by_key: dict[str, set[Any]] = {}
    for key, o in results:
        assert o.ok
        by_key.setdefault(key, set()).add(o.entry_id)
    assert all(len(ids) == 1 for ids in by_key.values())
    assert total(books) == Decimal(100 * WALLETS)
    stats = books.group_commit_stats
    assert stats.largest_group > 1  # the callers did share commits
    assert audit(books.store).clean


def test_a_group_keeps_each_commands_outcome(books: Ledger) -> None:
    setup(books, funds="10")
    books.submit(payment("used", 0, 1))
    committer = books._committer
    good = [payment(f"g{i}", i % WALLETS, (i + 2) % WALLETS) for i in range(5)]
    rejected = payment("too-much", 2, 3, "1000")
    invalid = PostEntry(
        key="unknown-asset",
        legs=(
            LegInput(account="w0", amount=Decimal(1), asset="XXQ"),
            LegInput(account="w1", amount=Decimal(-1), asset="XXQ"),
        ),
    )
    conflicting = payment("used", 0, 1, "2")  # the key's first request moved 1, not 2
    waiters = []
    # Hold the committer so that every submission lands in one group.
    with committer.exclusive():
        for cmd in [*good[:2], rejected, invalid, conflicting, *good[2:]]:
            waiter = ThreadWaiter()
            committer.submit([cmd], waiter)
            waiters.append(waiter)
    outcomes = [w.wait()[0] for w in waiters]
    statuses = [o.status for o in outcomes]
    assert statuses == ["applied"] * 2 + ["rejected", "invalid", "conflict"] + ["applied"] * 3
    assert outcomes[2].code == "balance_rule_violated"
    assert outcomes[3].code == "unknown_asset"
    assert outcomes[4].code == "idempotency_conflict"
    assert books.recorded("unknown-asset") is None  # invalid: the key is not burned
    rejected_again = books.recorded("too-much")
    assert rejected_again is not None and rejected_again.code == "balance_rule_violated"
    assert total(books) == Decimal(10 * WALLETS)
    assert audit(books.store).clean


def test_a_failing_risk_policy_refuses_only_its_command(store_url: str) -> None:
    def policy(check: RiskCheck) -> str | None:
        if check.command.key == "boom":
            raise RuntimeError("policy service down")
        return None

    with Ledger.open(store_url, risk=policy) as books:
        setup(books)
        committer = books._committer
        waiters = []
        with committer.exclusive():
            for key in ("before", "boom", "after"):
                waiter = ThreadWaiter()
                committer.submit([payment(key, 0, 1)], waiter)
                waiters.append(waiter)
        before, boom, after = (w.wait()[0] for w in waiters)
        assert before.ok and after.ok
        assert boom.code == "risk_policy_failed"
        with pytest.raises(RiskPolicyFailed, match="policy service down"):
            boom.raise_for_status()
        assert books.recorded("boom") is None  # not burned: a retry is decided again


def test_a_retry_replays_a_key_another_ledger_applied_even_if_now_invalid(
    store_url: str,
) -> None:
    """The committer trusts its cache and lets the append catch keys written elsewhere;
    an invalid outcome appends nothing, so the key must still be looked up: a retried
    hold whose expiry has passed since replays its outcome, it is not judged again."""
    from datetime import UTC, datetime, timedelta

    from ledger.commands import PlaceHold

    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    hold = PlaceHold(
        key="h1",
        legs=payment("h1", 0, 1).legs,
        expires_at=now[0] + timedelta(hours=1),
    )
    with Ledger.open(store_url, clock=lambda: now[0]) as books:
        setup(books)
        first = books.submit(hold)
        assert first.ok and not first.replayed
    now[0] += timedelta(hours=2)
    with Ledger.open(store_url, clock=lambda: now[0]) as books:
        assert books.submit(payment("warm", 0, 1)).ok  # w0 and w1 now cached
        again = books.submit(hold)
        assert (again.status, again.replayed, again.entry_id) == (
            "applied",
            True,
            first.entry_id,
        )
        late = books.submit(hold.model_copy(update={"key": "h2"}))
        assert late.status == "invalid"  # a new key is judged now


def test_a_store_reads_a_known_stream_only_if_it_moved_on(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        setup(books)
        store: Any = books.store
        w0, w1 = account_stream_id("w0"), account_stream_id("w1")
        heads = store.load_streams([w0, w1])
        known = {sid: (first, last.originator_version) for sid, (first, last) in heads.items()}
        _, found = store.read([], [], known)
        assert found == {}  # neither moved on
        assert books.submit(payment("moves-w0", 0, 2)).ok
        _, found = store.read([], [account_stream_id("w3")], known)
        assert set(found) == {w0, account_stream_id("w3")}
        assert found[w0] == store.load_streams([w0])[w0]
        assert found[w0][1].originator_version == heads[w0][1].originator_version + 1


def test_after_a_conflict_groups_decide_on_what_other_ledgers_wrote(store_url: str) -> None:
    """Groups that read their states again (for a while after a conflict) read only
    the accounts that moved on, and decide on their newest state."""
    with Ledger.open(store_url) as first:
        setup(first)
    with Ledger.open(store_url) as books, Ledger.open(store_url) as other:
        assert books.submit(payment("warm", 0, 1)).ok  # w0 and w1 read from the store
        assert {"w0", "w1"} <= set(books._executor.cache.openings)  # type: ignore[attr-defined]
        books._committer._careful_until = float("inf")  # type: ignore[attr-defined]
        assert other.submit(payment("spend", 0, 2, amount="90")).ok  # w0 has 9 left
        refused = books.submit(payment("too-much", 0, 3, amount="10"))
        assert refused.status == "rejected"  # decided on w0's newest state
        assert books.submit(payment("fits", 0, 3, amount="9")).ok
        assert books.group_commit_stats.redone == 0  # never decided on a stale state
        assert books.balance("w0").posted == Decimal(0)
        assert total(books) == Decimal(100 * WALLETS)
        assert audit(books.store).clean


@pytest.mark.parametrize("limit", [1000, 4])
def test_submissions_queued_while_a_group_reads_its_states_join_it(
    store_url: str, limit: int
) -> None:
    """After a conflict a group reads its states first; the callers who come in
    meanwhile join it (their states read in turn), up to the group's limit, so that
    one append carries them all."""
    with Ledger.open(store_url, group_commands_max=limit) as books:
        setup(books)
        committer: Any = books._committer  # type: ignore[attr-defined]
        executor: Any = books._executor  # type: ignore[attr-defined]
        committer._careful_until = float("inf")
        real_refresh = executor.refresh
        reading, go_on = threading.Event(), threading.Event()

        def slow_first_read(flat: Any, store: Any = None) -> None:
            if not reading.is_set():
                reading.set()
                assert go_on.wait(10)
            real_refresh(flat, store)

        executor.refresh = slow_first_read
        real_decide = executor.decide
        layouts: list[list[str]] = []

        def decide(prints: Any, flat: Any, **options: Any) -> Any:
            layouts.append([cmd.key for cmd in flat])
            return real_decide(prints, flat, **options)

        executor.decide = decide
        outcomes: list[Outcome] = []
        lock = threading.Lock()

        def pay(i: int) -> None:
            command: Any = payment(f"j{i}", i % WALLETS, (i + 1) % WALLETS)
            if i == 0:  # an atomic batch first: its inner commands come after all others
                inner = (payment("j0-a", 0, 1), payment("j0-b", 1, 2))
                command = AtomicBatch(key="j0", commands=inner)
            outcome = books.submit(command)
            with lock:
                outcomes.append(outcome)

        threads = [threading.Thread(target=pay, args=(0,))]
        threads[0].start()
        assert reading.wait(10)  # the first group is reading its states
        threads += [threading.Thread(target=pay, args=(i,)) for i in range(1, 7)]
        for t in threads[1:]:
            t.start()
        deadline = time.monotonic() + 10
        while committer._queued_commands < 6 and time.monotonic() < deadline:
            time.sleep(0.001)
        go_on.set()
        for t in threads:
            t.join()
        stats = books.group_commit_stats
        assert len(outcomes) == 7 and all(o.ok and not o.replayed for o in outcomes)
        if limit == 4:  # the first group: 1 + 3 joined; the other 3 after it
            assert (stats.joined, stats.largest_group) == (3, 4)
        else:  # one append for all seven (the setup's commands aside)
            assert (stats.joined, stats.largest_group) == (6, 7)
        first = layouts[0]  # one group's layout: its commands, then the inner ones
        assert first[0] == "j0" and first[-2:] == ["j0-a", "j0-b"]
        assert total(books) == Decimal(100 * WALLETS)
        assert audit(books.store).clean


@pytest.mark.parametrize("careful", [False, True])
@pytest.mark.parametrize("atomic", [False, True])
def test_a_key_another_ledger_used_for_an_entry_is_not_reused_for_an_account_command(
    store_url: str, careful: bool, atomic: bool
) -> None:
    """An account command records its key in a key row, not an entry: its append must
    still see that another ledger's entry holds the key (keys are not read when the
    states are cached, nor while groups read their states after a conflict)."""
    with Ledger.open(store_url) as first:
        setup(first)
    with Ledger.open(store_url) as books, Ledger.open(store_url) as other:
        assert books.submit(payment("warm", 0, 1)).ok  # w0 cached here
        if careful:
            books._committer._careful_until = float("inf")  # type: ignore[attr-defined]
        assert other.submit(payment("K", 2, 3)).ok
        freeze = FreezeAccount(key="K", account="w0")
        command: Any = AtomicBatch(key="B", commands=(freeze,)) if atomic else freeze
        second = books.submit(command)
        assert not second.ok  # never applied under a key that already holds an entry
        assert second.status == "conflict"
        assert books.submit(payment("w0-still-open", 0, 1)).ok  # w0 was not frozen
        assert books.submit(payment("K", 2, 3)).replayed
        assert audit(books.store).clean


def test_a_failed_pipelined_batch_leaves_no_state_ahead_of_the_store(store_url: str) -> None:
    """The batch path caches a chunk's states as soon as it is decided, before its append
    commits; when the batch stops on an error, those states are dropped, so the next
    write is decided on what the store holds (no version skipped, no money lost)."""
    with Ledger.open(store_url) as first:
        setup(first)
    with Ledger.open(store_url) as books:
        assert books.submit(payment("warm", 0, 1)).ok
        store: Any = books.store
        real_lookup = store.lookup_keys
        lookups = [0]

        def failing_append(batch: Any) -> Any:
            raise StoreUnavailable("outage: nothing written")

        def lookup_then_fail(ids: Any) -> Any:
            lookups[0] += 1
            if lookups[0] >= 2:
                raise StoreUnavailable("outage")
            return real_lookup(ids)

        store.append, store.lookup_keys = failing_append, lookup_then_fail
        try:
            with pytest.raises(StoreUnavailable):
                books.submit_all([payment(f"bulk-{i}", 0, 1, "10") for i in range(4)], chunk_size=2)
        finally:
            del store.append, store.lookup_keys
        w0 = account_stream_id("w0")
        cached = books._executor.cache.accounts.get("w0")  # type: ignore[attr-defined]
        assert (
            cached is None or cached.version == store.load_streams([w0])[w0][1].originator_version
        )
        assert books.submit(payment("after", 0, 1)).ok
        assert books.balance("w0").posted == Decimal(98)
        assert total(books) == Decimal(100 * WALLETS)
        assert audit(books.store).clean


def test_a_key_is_used_once_within_a_group_inner_commands_included(books: Ledger) -> None:
    """Keys written in one append cannot see each other in the store: an atomic
    batch's inner key that another command of the group uses is a conflict for the
    later one, and never fails the group's other commands."""
    setup(books)
    freeze = FreezeAccount(key="K2", account="w0")
    first, second = books.submit_many(
        [payment("K2", 0, 1), AtomicBatch(key="B", commands=(freeze,))]
    )
    assert first.ok and (second.status, second.code) == ("conflict", "idempotency_conflict")
    batch, later = books.submit_many(
        [
            AtomicBatch(key="B0", commands=(FreezeAccount(key="K", account="w4"),)),
            payment("K", 2, 3),
        ]
    )
    assert batch.ok and later.status == "conflict"
    innocent, b1, b2 = books.submit_many(
        [
            payment("innocent", 0, 1),
            AtomicBatch(key="B1", commands=(FreezeAccount(key="K3", account="w2"),)),
            AtomicBatch(key="B2", commands=(FreezeAccount(key="K3", account="w3"),)),
        ]
    )
    assert innocent.ok and b1.ok and b2.status == "conflict"
    assert books.submit(payment("w0-open", 0, 1)).ok  # w0 was never frozen
    assert books.submit(payment("w3-open", 3, 1)).ok  # nor w3
    assert audit(books.store).clean


def test_fairness_no_caller_waits_more_than_three_commits(books: Ledger) -> None:
    setup(books, funds="100000")
    stop = threading.Event()

    def caller(index: int) -> None:
        i = 0
        while not stop.is_set():
            books.submit(payment(f"f{index}-{i}", index % WALLETS, (index + 1) % WALLETS))
            i += 1

    threads = [threading.Thread(target=caller, args=(t,)) for t in range(12)]
    for t in threads:
        t.start()
    threading.Event().wait(1.5)
    stop.set()
    for t in threads:
        t.join()
    stats = books.group_commit_stats
    assert stats.commits > 10
    # Taken in arrival order: a submission arriving while one group is in flight and
    # the next one is being decided goes in the group after those two (or a redone
    # group's retry). Without sending ahead (SQLite), the group after the one in flight.
    bound = 3 if hasattr(type(books.store), "committer_connection") else 2
    assert stats.most_commits_waited <= bound + stats.redone


def test_a_full_queue_refuses_with_overloaded_and_records_nothing(store_url: str) -> None:
    with Ledger.open(store_url, queue_commands_max=3) as books:
        setup(books)
        committer = books._committer
        waiters = []
        with committer.exclusive():  # the committer is held: submissions queue up
            for i in range(3):
                waiter = ThreadWaiter()
                committer.submit([payment(f"q{i}", 0, 1)], waiter)
                waiters.append(waiter)
            with pytest.raises(Overloaded):
                committer.submit([payment("q-over", 0, 1)], ThreadWaiter())
        assert all(w.wait()[0].ok for w in waiters)
        assert books.recorded("q-over") is None
        assert books.submit(payment("q-over", 0, 1)).ok  # the key was not burned


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        GroupCommitter(None, None, group_commands_max=0)  # type: ignore[arg-type]


def test_closed_ledger_refuses_writes(store_url: str) -> None:
    books = Ledger.open(store_url)
    setup(books)
    books.close()
    with pytest.raises(Exception, match="closed"):
        books.submit(payment("late", 0, 1))


# -- asyncio ---------------------------------------------------------------------------------


@pytest.mark.usefixtures("each_event_loop")
def test_tasks_and_threads_share_group_commits(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        setup(books, funds="1000")
        abooks = AsyncLedger(books)
        thread_outcomes: list[Outcome] = []

        def thread_caller() -> None:
            for i in range(30):
                thread_outcomes.append(books.submit(payment(f"t{i}", 0, 1)))

        async def main() -> list[Outcome]:
            async def task(n: int) -> list[Outcome]:
                return [await abooks.submit(payment(f"a{n}-{i}", 2, 3)) for i in range(10)]

            # duplicates among tasks: the same key from three tasks
            dup = await asyncio.gather(*(abooks.submit(payment("dup", 4, 5)) for _ in range(3)))
            parts = await asyncio.gather(*(task(n) for n in range(16)))
            return list(dup) + [o for part in parts for o in part]

        worker = threading.Thread(target=thread_caller)
        worker.start()
        outcomes = asyncio.run(main())
        worker.join()
        assert all(o.ok for o in outcomes + thread_outcomes)
        dup = outcomes[:3]
        assert sum(not o.replayed for o in dup) == 1
        assert len({o.entry_id for o in dup}) == 1
        assert books.balance("w3").posted == Decimal("1160.00")
        assert books.group_commit_stats.largest_group > 1
        assert audit(books.store).clean


@pytest.mark.usefixtures("each_event_loop")
def test_async_recipes_and_typed_errors(store_url: str) -> None:
    async def main() -> None:
        async with await AsyncLedger.open(store_url) as abooks:
            await abooks.open_account("bank", "USD", normal="debit")
            await abooks.open_account("alice", "USD", min_balance="0")
            await abooks.open_account("bob", "USD", min_balance="0")
            await abooks.transfer("seed", debit="bank", credit="alice", amount="10", asset="USD")
            sent = await pay.send(
                abooks, "p1", sender="alice", recipient="bob", amount="4", asset="USD"
            )
            assert sent.ok and (await abooks.balance("bob")).posted == Decimal("4.00")
            with pytest.raises(InvalidCommand):
                await pay.send(
                    abooks, "p2", sender="alice", recipient="alice", amount="1", asset="USD"
                )
            from ledger import BalanceRuleViolated

            with pytest.raises(BalanceRuleViolated):
                await pay.send(
                    abooks, "p3", sender="alice", recipient="bob", amount="100", asset="USD"
                )
            again = await abooks.recorded("p3")
            assert again is not None and again.code == "balance_rule_violated"

    asyncio.run(main())


@pytest.mark.usefixtures("each_event_loop")
def test_cancelled_tasks_never_half_apply(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        setup(books, funds="1000")
        abooks = AsyncLedger(books)

        async def main() -> None:
            committer = books._committer
            # Hold the committer: the tasks are queued, then cancelled while waiting.
            with committer.exclusive():
                tasks = [
                    asyncio.create_task(abooks.submit(payment(f"c{i}", 0, 1))) for i in range(20)
                ]
                await asyncio.sleep(0.05)
                for task in tasks[::2]:
                    task.cancel()
                await asyncio.sleep(0)
            results = await asyncio.gather(*tasks, return_exceptions=True)
            cancelled = [r for r in results if isinstance(r, asyncio.CancelledError)]
            assert len(cancelled) == 10
            # A retry of every key returns its one outcome: each applied once.
            again = [await abooks.submit(payment(f"c{i}", 0, 1)) for i in range(20)]
            assert all(o.ok for o in again)
            assert all(o.replayed for o in again)  # queued whole: applied, not half
            assert len({o.entry_id for o in again}) == 20

        asyncio.run(main())
        assert books.balance("w1").posted == Decimal("1020.00")
        assert audit(books.store).clean


def test_a_defect_in_the_committer_reaches_the_caller_and_the_next_group_commits(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Ledger.open(store_url) as books:
        setup(books)
        executor = books._committer.executor
        calls = {"n": 0}

        def broken(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            raise TypeError("a defect")

        monkeypatch.setattr(executor, "decide", broken)
        monkeypatch.setattr(executor, "forget", broken)
        with pytest.raises(TypeError, match="a defect"):
            books.submit(payment("d1", 0, 1))
        assert calls["n"] == 2
        monkeypatch.undo()
        assert books.submit(payment("d2", 0, 1)).ok  # the committer thread lives on
        assert books.recorded("d1") is None
