"""Balances as of a time leave out accounts not yet opened then (they did not exist),
by recorded and by effective time; an account opened later whose entries are
backdated to before that time has its balance by effective time; a read model made
before opening times were kept gains the column and counts its old accounts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import Ledger
from ledger.adapters.view_store import open_view_store
from ledger.projections import BalancesView, ProjectionRunner

T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def books_over_time(url: str) -> tuple[Ledger, Clock]:
    clock = Clock()
    books = Ledger.open(url, clock=clock)
    books.open_account("bank", "USD", normal="debit")
    books.open_account("alice", "USD")
    clock.now = T0 + timedelta(days=1)
    books.transfer("t1", debit="bank", credit="alice", amount="5", asset="USD")
    clock.now = T0 + timedelta(days=10)
    books.open_account("bob", "USD")  # opened on day 10, nothing backdated
    books.open_account("carol", "USD")  # opened on day 10, with an entry of day 2
    books.transfer(
        "t2",
        debit="bank",
        credit="carol",
        amount="7",
        asset="USD",
        effective_at=T0 + timedelta(days=2),
    )
    return books, clock


def test_accounts_opened_later_are_not_in_a_balance_as_of(store_url: str) -> None:
    books, _ = books_over_time(store_url)
    with books:
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        try:
            runner.catch_up()
            day5 = T0 + timedelta(days=5)
            with runner.views.snapshot() as w:
                for by in ("effective", "recorded"):
                    alice = BalancesView.balance_as_of(w, "alice", day5, by=by)
                    assert alice is not None and alice.signed == -5
                    assert BalancesView.balance_as_of(w, "bob", day5, by=by) is None
                carol = BalancesView.balance_as_of(w, "carol", day5, by="effective")
                assert carol is not None and carol.signed == -7  # backdated into day 2
                assert BalancesView.balance_as_of(w, "carol", day5, by="recorded") is None
                later = T0 + timedelta(days=11)
                bob = BalancesView.balance_as_of(w, "bob", later, by="recorded")
                assert bob is not None and bob.signed == 0
        finally:
            runner.close()


def test_a_view_from_before_opening_times_gains_the_column(store_url: str) -> None:
    books, _ = books_over_time(store_url)
    with books:
        views = open_view_store(books.store)
        with views.transaction() as w:  # the table as it was made before
            w.execute("DROP TABLE IF EXISTS rm_balances")
            w.execute(
                w.ddl(
                    "CREATE TABLE rm_balances ("
                    " account TEXT PRIMARY KEY, asset TEXT NOT NULL, scale INTEGER NOT NULL,"
                    " sign INTEGER NOT NULL, owner TEXT, posted {amount} NOT NULL,"
                    " pending_out {amount} NOT NULL, pending_in {amount} NOT NULL,"
                    " position BIGINT NOT NULL)"
                )
            )
            w.execute(
                "INSERT INTO rm_balances VALUES ('bob', 'USD', 2, -1, NULL, ?, ?, ?, 0)",
                (w.amount(0), w.amount(0), w.amount(0)),
            )
        views.close()
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        try:
            with runner.views.snapshot() as w:  # an old row: its opening is not known
                old = BalancesView.balance_as_of(w, "bob", T0 + timedelta(days=5))
            assert old is not None and old.signed == 0
        finally:
            runner.close()


@pytest.mark.parametrize("rebuild", [False, True])
def test_a_rebuilt_view_keeps_opening_times(store_url: str, rebuild: bool) -> None:
    books, _ = books_over_time(store_url)
    with books:
        runner = ProjectionRunner.for_ledger(books, [BalancesView()])
        try:
            runner.catch_up()
            if rebuild:
                runner.rebuild("balances")
            with runner.views.snapshot() as w:
                assert BalancesView.balance_as_of(w, "bob", T0 + timedelta(days=5)) is None
        finally:
            runner.close()
