"""A capture, void or reversal cannot take effect before the entry it resolves or
reverses: balances as of a time between the two would show a negative pending amount
or money given back before it moved. On every store."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger import InvalidCommand, Ledger
from ledger.commands import builders
from ledger.model import entry_id_for_key
from ledger.projections import BalancesView, ProjectionRunner
from ledger.projections.audit import audit

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
EARLIER = T0 - timedelta(days=2)


@pytest.fixture
def books(store_url: str) -> Iterator[Ledger]:
    clock = [T0 - timedelta(days=10)]  # accounts opened before every date used
    with Ledger.open(store_url, clock=lambda: clock[0]) as ledger:
        ledger.open_account("bank", "USD", normal="debit")
        ledger.open_account("alice", "USD", min_balance="0")
        ledger.open_account("shop", "USD", min_balance="0")
        clock[0] = T0
        ledger.transfer(
            "fund", debit="bank", credit="alice", amount="100", asset="USD", effective_at=T0
        )
        yield ledger
        report = audit(ledger.store)
        assert report.clean, report.findings


def pending_as_of(books: Ledger, account: str, at: datetime) -> tuple[Decimal, Decimal]:
    runner = ProjectionRunner.for_ledger(books, [BalancesView()])
    try:
        runner.catch_up()
        with runner.views.snapshot() as w:
            row = BalancesView.balance_as_of(w, account, at)
        assert row is not None
        return row.pending_out, row.pending_in
    finally:
        runner.close()


def test_capture_and_void_dated_before_their_hold_are_refused(books: Ledger) -> None:
    legs = [("alice", "30", "USD"), ("shop", "-30", "USD")]
    held = books.hold("h", legs, expires_at=T0 + timedelta(days=1))
    assert held.entry_id is not None
    with pytest.raises(InvalidCommand, match="before entry"):
        books.post_hold("cap", held.entry_id, effective_at=EARLIER)
    with pytest.raises(InvalidCommand, match="before entry"):
        books.void_hold("void", held.entry_id, effective_at=EARLIER)
    assert books.entry(held.entry_id).status == "pending"  # type: ignore[union-attr]
    assert books.balance("alice").pending_out == Decimal("30.00")
    # The request burns no key: dated correctly it applies.
    assert books.void_hold("void", held.entry_id, effective_at=T0).ok
    assert pending_as_of(books, "alice", T0 - timedelta(days=1)) == (0, 0)
    assert pending_as_of(books, "shop", T0 - timedelta(days=1)) == (0, 0)


def test_reversal_dated_before_its_posting_is_refused(books: Ledger) -> None:
    charge = books.transfer("ch", debit="alice", credit="shop", amount="20", asset="USD")
    assert charge.entry_id is not None
    with pytest.raises(InvalidCommand, match="before entry"):
        books.reverse("refund", charge.entry_id, effective_at=EARLIER)
    assert books.balance("shop").posted == Decimal("20.00")
    assert books.reverse("refund", charge.entry_id, effective_at=T0).ok


def test_backdated_posting_and_its_reversal_in_one_batch(books: Ledger) -> None:
    """A reversal of a posting made earlier in the same batch sees the posting's own
    effective date (not the batch's time)."""
    post = builders.transfer(
        "ch", debit="alice", credit="shop", amount="20", asset="USD", effective_at=EARLIER
    )
    back = builders.reverse("refund", entry_id_for_key("ch"), effective_at=EARLIER)
    assert books.atomic("both", [post, back]).ok
    too_early = builders.reverse(
        "refund2", entry_id_for_key("ch2"), effective_at=EARLIER - timedelta(days=1)
    )
    post2 = builders.transfer(
        "ch2", debit="alice", credit="shop", amount="5", asset="USD", effective_at=EARLIER
    )
    with pytest.raises(InvalidCommand, match="before entry"):
        books.atomic("both2", [post2, too_early])
    assert books.balance("shop").posted == Decimal("0.00")


def test_undated_resolutions_of_a_future_dated_entry_are_refused(books: Ledger) -> None:
    """A command without ``effective_at`` takes effect now: for an entry dated later
    than now that is before it, as surely as an explicit earlier date."""
    later = T0 + timedelta(days=5)
    charge = books.transfer(
        "ch", debit="alice", credit="shop", amount="20", asset="USD", effective_at=later
    )
    assert charge.entry_id is not None
    with pytest.raises(InvalidCommand, match="before entry"):
        books.reverse("refund", charge.entry_id)
    legs = [("alice", "30", "USD"), ("shop", "-30", "USD")]
    held = books.hold("h", legs, effective_at=later)
    assert held.entry_id is not None
    with pytest.raises(InvalidCommand, match="before entry"):
        books.post_hold("cap", held.entry_id)
    with pytest.raises(InvalidCommand, match="before entry"):
        books.void_hold("void", held.entry_id)
    assert pending_as_of(books, "alice", T0 + timedelta(days=1)) == (0, 0)
    # Dated at or after the entry they apply.
    assert books.reverse("refund", charge.entry_id, effective_at=later).ok
    assert books.void_hold("void", held.entry_id, effective_at=later).ok


def test_an_entry_dated_by_a_clock_slightly_ahead_is_resolved_with_it(books: Ledger) -> None:
    """Another server's clock a few milliseconds ahead dated the hold and the charge
    (as its ``now``): an undated capture and refund made at once here take effect with
    them, neither refused nor dated before them."""
    ahead = T0 + timedelta(milliseconds=3)
    legs = [("alice", "30", "USD"), ("shop", "-30", "USD")]
    held = books.hold("h-skew", legs, effective_at=ahead)
    charge = books.transfer(
        "ch-skew", debit="alice", credit="shop", amount="5", asset="USD", effective_at=ahead
    )
    assert held.entry_id is not None and charge.entry_id is not None
    assert books.post_hold("cap-skew", held.entry_id).ok
    assert books.reverse("refund-skew", charge.entry_id).ok
    for key in ("cap-skew", "refund-skew"):
        entry = books.entry(entry_id_for_key(key))
        assert entry is not None and entry.effective_at == ahead
    assert audit(books.store).clean
