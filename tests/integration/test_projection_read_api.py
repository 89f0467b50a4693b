"""The public read API given hostile arguments, on every store: a typed error or a
correct answer, the same on SQLite and PostgreSQL; and statements that add up
(opening + lines == closing, each closing the next opening, the whole history the
balance) for every account over periods cut anywhere, including at entries' own
instants and at the ends of time."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest

from ledger import Ledger
from ledger.errors import InvalidCommand
from ledger.projections import BalancesView, FeedView, ProjectionRunner, statement
from ledger.projections.feed import PAGE_LIMIT_MAX

T0 = datetime(2026, 3, 1, tzinfo=UTC)
ACCOUNTS = ["bank", "ann:wallet", "ben:wallet", "fees"]


def seeded(books: Ledger) -> ProjectionRunner:
    books.open_account("bank", "USD", normal="debit")
    books.open_account("ann:wallet", "USD", owner="ann")
    books.open_account("ben:wallet", "USD", owner="ben")
    books.open_account("fees", "USD")
    pairs = [("bank", "ann:wallet"), ("ann:wallet", "ben:wallet"), ("ben:wallet", "fees")]
    for i in range(24):
        debit, credit = pairs[i % 3]
        books.transfer(
            f"t{i}",
            debit=debit,
            credit=credit,
            amount=str(Decimal(i + 1) / 4),
            asset="USD",
            effective_at=T0 + timedelta(hours=7 * (i % 8), minutes=i),  # out of order
            metadata={"visibility": "public"},
        )
    held = books.hold("h", [("ann:wallet", "1", "USD"), ("bank", "-1", "USD")])
    assert held.entry_id is not None
    books.post_hold("cap", held.entry_id, [("ann:wallet", "0.5", "USD"), ("bank", "-0.5", "USD")])
    runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
    runner.catch_up()
    return runner


def test_bad_names_and_limits_are_invalid_commands(books: Ledger) -> None:
    runner = seeded(books)
    calls: list[Callable[[Any], Any]] = []
    for bad in (5, None, b"ann", "ann\x00", "\udcff"):
        calls += [
            lambda w, bad=bad: BalancesView.balance(w, bad),
            lambda w, bad=bad: BalancesView.balance_as_of(w, bad, T0),
            lambda w, bad=bad: statement(w, bad, T0, T0),
            lambda w, bad=bad: FeedView.feed(w, bad),
        ]
        if bad is not None:  # None is "every user" and "every owner" there
            calls.append(lambda w, bad=bad: FeedView.feed(w, "ann", user=bad))
            calls.append(lambda w, bad=bad: BalancesView.totals(w, owner=bad))
    calls += [lambda w, n=n: FeedView.feed(w, "ann", limit=n) for n in (0, -1, -(10**30))]
    with runner.views.snapshot() as w:
        for call in calls:
            with pytest.raises(InvalidCommand):
                call(w)
    for bad in (7, "ann\x00"):
        with runner.views.transaction() as w, pytest.raises(InvalidCommand):
            FeedView.offer_friendship(w, "ben", bad)
    with runner.views.snapshot() as w:  # and nothing was written
        assert w.query("SELECT count(*) FROM rm_friend_requests")[0][0] == 0
    runner.close()


def test_unknown_accounts_forged_cursors_and_huge_limits_answer_correctly(books: Ledger) -> None:
    runner = seeded(books)
    with runner.views.snapshot() as w:
        assert BalancesView.balance(w, "nobody") is None
        assert BalancesView.balance_as_of(w, "nobody", T0) is None
        assert statement(w, "nobody", T0, T0) is None
        everything = FeedView.feed(w, "ann", limit=10**30)
        assert len(everything.items) == 25 <= PAGE_LIMIT_MAX
        assert everything.next_cursor is None
        newest = everything.items[0].position
        # a cursor is a position: forged, stale or another viewer's, it only moves
        # the page; never shows what this viewer may not see
        assert FeedView.feed(w, "ann", cursor="0").items == ()
        assert FeedView.feed(w, "ann", cursor=str(10**17)).items == everything.items[:20]
        page = FeedView.feed(w, "ann", cursor=str(newest), limit=3)
        assert page.items == everything.items[1:4]
    runner.close()


def test_statements_add_up_for_every_account_and_period(books: Ledger) -> None:
    runner = seeded(books)
    begin, end = datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC)
    with runner.views.snapshot() as w:
        instants = sorted(
            {
                datetime.fromisoformat(r[0])
                for r in w.query("SELECT effective_at FROM rm_balance_lines")
            }
        )
        cuts = sorted(
            {
                begin,
                end,
                T0 - timedelta(days=1),
                *instants,
                *(t + timedelta(microseconds=1) for t in instants),
            }
        )
        for account in ACCOUNTS:
            balance = BalancesView.balance(w, account)
            assert balance is not None
            whole = statement(w, account, begin, end)
            assert whole is not None
            assert whole.opening == 0
            assert whole.closing == balance.posted
            for start, stop in itertools.pairwise(cuts):
                s = statement(w, account, start, stop)
                assert s is not None
                assert s.opening + sum(line.amount for line in s.lines) == s.closing
                assert [line.running for line in s.lines][-1:] in ([], [s.closing])
                nxt = statement(w, account, stop, end)
                assert nxt is not None and nxt.opening == s.closing, (account, start, stop)
                as_of = BalancesView.balance_as_of(w, account, stop - timedelta(microseconds=1))
                if stop > begin:  # None: not opened by then, and nothing backdated
                    assert (0 if as_of is None else as_of.posted) == s.closing
            empty = statement(w, account, T0, T0)
            assert empty is not None and empty.lines == () and empty.opening == empty.closing
    runner.close()
