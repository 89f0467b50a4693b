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
