"""A hold's deadline is about when a capture arrives (its recorded time), not about
the effective date the capture is given; on every store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger import HoldExpired, Ledger
from ledger import payments as pay
from ledger.adapters.jsonl import import_lines
from ledger.projections.audit import audit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def clock() -> list[datetime]:
    return [T0]


@pytest.fixture
def books(store_url: str, clock: list[datetime]) -> Iterator[Ledger]:
    with Ledger.open(store_url, clock=lambda: clock[0]) as ledger:
        ledger.open_account("bank", "USD", normal="debit")
        ledger.open_account("alice", "USD", min_balance="0")
        ledger.open_account("shop", "USD", min_balance="0")
        ledger.transfer("fund", debit="bank", credit="alice", amount="100", asset="USD")
        yield ledger
        report = audit(ledger.store)
        assert report.clean, report.findings


def test_late_capture_backdated_before_the_deadline_is_refused(
    books: Ledger, clock: list[datetime]
) -> None:
    auth = pay.authorize_card(
        books,
        "auth",
        card="alice",
        merchant="shop",
        amount="30",
        asset="USD",
        expires_at=T0 + timedelta(hours=1),
    )
    assert auth.entry_id is not None
    clock[0] = T0 + timedelta(hours=2)  # expire_due has not run yet
    with pytest.raises(HoldExpired):
        books.post_hold("cap", auth.entry_id, effective_at=T0 + timedelta(minutes=30))
    assert books.balance("shop").posted == Decimal("0.00")
    assert books.entry(auth.entry_id).status == "pending"  # type: ignore[union-attr]
    assert [o.kind for o in books.expire_due()] == ["expire"]
    assert books.balance("alice").available == Decimal("100.00")


def test_capture_recorded_before_the_deadline_may_be_backdated(
    books: Ledger, clock: list[datetime]
) -> None:
    held = books.hold(
        "auth", [("alice", "30", "USD"), ("shop", "-30", "USD")], expires_at=T0 + timedelta(hours=1)
    )
    assert held.entry_id is not None
    clock[0] = T0 + timedelta(minutes=59)
    assert books.post_hold("cap", held.entry_id, effective_at=T0 + timedelta(minutes=1)).ok
    assert books.balance("shop").posted == Decimal("30.00")


def test_history_imported_after_the_deadline_keeps_its_capture(
    books: Ledger, clock: list[datetime]
) -> None:
    """An import records every line at the import's time: a hold of the past (recorded
    already past its deadline) is judged by the dates the history gives."""
    clock[0] = T0 + timedelta(days=30)
    lines = [
        '{"key": "h", "kind": "pending", "effective_at": "2026-03-01T09:00:00Z",'
        ' "expires_at": "2026-03-08T09:00:00Z", "legs": ['
        '{"account": "alice", "amount": "30", "currency": "USD"},'
        '{"account": "shop", "amount": "-30", "currency": "USD"}]}',
        '{"key": "c", "kind": "capture", "hold": "h", "effective_at": "2026-03-02T09:00:00Z"}',
    ]
    report = import_lines(books, lambda: iter(lines), open_accounts=False)
    assert (report.applied, report.rejected, report.invalid) == (2, 0, 0), report.errors
    assert books.balance("shop").posted == Decimal("30.00")
