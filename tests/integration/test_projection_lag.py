"""``lag()`` tells a monitor how far a read model is behind: its age is that of the
oldest unprocessed write, also when the first unprocessed event is an account's
(which carries no time of its own)."""

from __future__ import annotations

import time

from ledger import Ledger
from ledger.projections import BalancesView, ProjectionRunner


def test_lag_ages_a_pending_lifecycle_change(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        books.open_account("alice", "USD")
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        try:
            runner.catch_up()
            assert runner.lag()["balances"].events == 0
            assert runner.lag()["balances"].seconds == 0.0
            books.freeze("freeze-1", "alice", reason="a check")
            time.sleep(0.2)
            lag = runner.lag()["balances"]
            assert lag.events >= 1
            assert 0.2 <= lag.seconds < 60
            runner.catch_up()
            assert runner.lag()["balances"].seconds == 0.0
        finally:
            runner.close()


def test_lag_ages_a_checkpoint_between_an_entry_and_its_accounts(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("alice", "USD")
        runner = ProjectionRunner.for_ledger(books, [BalancesView()], batch_size=1)
        try:
            runner.catch_up()
            books.transfer("t1", debit="bank", credit="alice", amount="5", asset="USD")
            time.sleep(0.2)
            # one event at a time: stop right after the entry, before its accounts'
            runner.catch_up(until=runner.checkpoint("balances") + 1)
            lag = runner.lag()["balances"]
            assert lag.events >= 1
            assert 0.2 <= lag.seconds < 60
        finally:
            runner.close()


def _transfers(key: str, count: int) -> list[dict[str, object]]:
    return [
        {
            "kind": "post_entry",
            "key": f"{key}{i}",
            "legs": [
                {"account": "bank", "amount": "1", "asset": "USD"},
                {"account": f"u{i}", "amount": "-1", "asset": "USD"},
            ],
        }
        for i in range(count)
    ]


def _after_a_bulk_write(books: Ledger) -> tuple[ProjectionRunner, int]:
    """150 accounts, a runner caught up on their openings, then one write of 150
    transfers made 0.3 s ago: the runner, and the position before that write."""
    books.open_account("bank", "USD", normal="debit")
    for i in range(150):
        books.open_account(f"u{i}", "USD")
    runner = ProjectionRunner.for_ledger(books, [BalancesView()])
    runner.catch_up()
    start = books.store.max_position()
    books.submit_all(_transfers("old", 150))
    time.sleep(0.3)
    return runner, start


def test_lag_ages_a_checkpoint_among_many_accounts_of_one_write(store_url: str) -> None:
    # A bulk write's entries come first, then one event per account it touched: a
    # runner's batch may end anywhere among them, far from the write's last entry.
    with Ledger.open(store_url) as books:
        runner, start = _after_a_bulk_write(books)
        try:
            books.transfer("new", debit="bank", credit="u0", amount="1", asset="USD")
            # The old write's entries, and all but a few of its accounts' events.
            runner.catch_up(until=start + 150 + 140)
            lag = runner.lag()["balances"]
            assert lag.events >= 10
            assert 0.3 <= lag.seconds < 60  # the old write's age, not the new one's
        finally:
            runner.close()


def test_lag_ages_a_checkpoint_late_among_many_accounts(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        runner, start = _after_a_bulk_write(books)
        try:
            runner.catch_up(until=start + 150 + 100)  # the last 50 accounts pending
            lag = runner.lag()["balances"]
            assert lag.events >= 40
            assert 0.3 <= lag.seconds < 60
        finally:
            runner.close()
