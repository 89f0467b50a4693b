"""Errors that say what happened: each case once misled (issue: money safety)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import Ledger
from ledger import payments as pay
from ledger.errors import AssetExists, EntryNotReversible, HoldExpired, InvalidCommand
from ledger.projections import BalancesView, FeedView, ProjectionRunner


def test_errors_name_the_real_cause(store_url: str) -> None:
    now = [datetime(2026, 1, 1, tzinfo=UTC)]
    with Ledger.open(store_url, clock=lambda: now[0]) as books:
        books.open_account("bank", "USD", normal="debit")
        books.open_account("a", "USD", min_balance="0")
        books.open_account("c", "USD")
        books.transfer("fund", debit="bank", credit="a", amount="50", asset="USD")
        hold = books.hold(
            "h", [("a", "5", "USD"), ("c", "-5", "USD")], expires_at=now[0] + timedelta(hours=1)
        )
        now[0] += timedelta(hours=2)
        books.expire_due()  # released by the sweeper: still "expired", not "not pending"
        with pytest.raises(HoldExpired, match="expired at 2026-01-01T01:00:00"):
            books.post_hold("capture", hold.entry_id)
        paid = books.transfer("p", debit="a", credit="c", amount="10", asset="USD")
        with pytest.raises(EntryNotReversible, match="must credit it"):
            books.reverse("r", paid.entry_id, [("a", "10", "USD"), ("c", "-10", "USD")])
        books.declare_asset("PTS", 2)
        assert books.declare_asset("PTS", 2).replayed
        with pytest.raises(AssetExists, match="scale 2, not 3"):
            books.declare_asset("PTS", 3)
        with pytest.raises(InvalidCommand, match="visibility"):
            pay.send(
                books,
                "s",
                sender="a",
                recipient="c",
                amount="1",
                asset="USD",
                visibility="Public",  # type: ignore[arg-type]
            )
        runner = ProjectionRunner.for_ledger(books, [BalancesView(), FeedView()])
        runner.catch_up()
        with runner.views.snapshot() as w:
            with pytest.raises(InvalidCommand, match="not a feed cursor"):
                FeedView.feed(w, "a", cursor="12; DROP")
            with pytest.raises(InvalidCommand, match="time zone"):
                BalancesView.balance_as_of(w, "a", datetime(2026, 1, 5))
            aware = BalancesView.balance_as_of(w, "a", datetime(2026, 1, 5, tzinfo=UTC))
            assert aware is not None
        runner.close()
