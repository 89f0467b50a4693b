"""The account lifecycle on every store: limits changed, freeze (debits or all) and
unfreeze, close at zero; each an idempotent command with its own event, kept across
reopening, seen by other ledgers on the same store, and checked by the audit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import orjson
import pytest

from ledger import Ledger
from ledger.errors import (
    AccountClosed,
    AccountExists,
    AccountFrozen,
    AccountNotEmpty,
    AccountNotFrozen,
    BalanceRuleViolated,
    IdempotencyConflict,
    InvalidCommand,
)
from ledger.projections.audit import audit
from tests.integration.test_cli import Raw


def setup(books: Ledger) -> None:
    books.open_account("bank", "USD", normal="debit")
    for name in ("w", "v"):
        books.open_account(name, "USD", min_balance="0")
    books.transfer("fund-w", debit="bank", credit="w", amount="10", asset="USD")


def pay(books: Ledger, key: str, src: str, dst: str, amount: str = "1") -> object:
    return books.transfer(key, debit=src, credit=dst, amount=amount, asset="USD")


def test_freeze_debits_stops_money_leaving_but_not_arriving(books: Ledger) -> None:
    setup(books)
    hold = books.hold("h1", [("w", "2", "USD"), ("v", "-2", "USD")])
    books.freeze("fr-1", "w", mode="debits", reason="under review")
    with pytest.raises(AccountFrozen, match="no debits"):
        pay(books, "out", "w", "v")
    with pytest.raises(AccountFrozen):
        books.hold("h2", [("w", "1", "USD"), ("v", "-1", "USD")])
    with pytest.raises(AccountFrozen):  # a capture moves the money
        books.post_hold("cap", hold.entry_id)
    assert pay(books, "in", "bank", "w").ok  # credits still arrive
    assert books.void_hold("void", hold.entry_id).ok  # releasing is allowed
    state = books.balance("w")
    assert (state.status, state.freeze, state.posted) == ("frozen", "debits", Decimal("11.00"))
    with pytest.raises(AccountFrozen, match="already frozen"):
        books.freeze("fr-2", "w")
    assert books.unfreeze("uf-1", "w").ok
    assert pay(books, "out-2", "w", "v").ok
    with pytest.raises(AccountNotFrozen):
        books.unfreeze("uf-2", "w")
    assert audit(books.store).clean


def test_freeze_all_stops_every_movement_and_holds_still_expire(store_url: str) -> None:
    now = [datetime(2026, 3, 1, tzinfo=UTC)]
    with Ledger.open(store_url, clock=lambda: now[0]) as books:
        setup(books)
        books.hold(
            "h1", [("w", "2", "USD"), ("v", "-2", "USD")], expires_at=now[0] + timedelta(hours=1)
        )
        books.freeze("fr", "w", mode="all")
        with pytest.raises(AccountFrozen, match="no movements"):
            pay(books, "in", "bank", "w")
        with pytest.raises(AccountFrozen):
            pay(books, "out", "w", "v")
        now[0] += timedelta(hours=2)
        expired = books.expire_due()
        assert [o.ok for o in expired] == [True]
        assert books.balance("w").pending_out == 0
        assert audit(books.store).clean


def test_close_only_at_zero_and_nothing_after(books: Ledger) -> None:
    setup(books)
    with pytest.raises(AccountNotEmpty, match=r"balance of 10\.00"):
        books.close_account("c1", "w")
    pay(books, "sweep", "w", "bank", "10")
    hold = books.hold("h", [("bank", "1", "USD"), ("w", "-1", "USD")])
    with pytest.raises(AccountNotEmpty, match="holds"):
        books.close_account("c2", "w")
    books.void_hold("void", hold.entry_id)
    assert books.close_account("c3", "w", reason="customer left").ok
    assert books.close_account("c3", "w", reason="customer left").replayed
    for attempt in (
        lambda: pay(books, "late-in", "bank", "w"),
        lambda: books.freeze("fr", "w"),
        lambda: books.change_limits("lim", "w", min_balance="-5"),
        lambda: books.close_account("c4", "w"),
    ):
        with pytest.raises(AccountClosed):
            attempt()
    with pytest.raises(AccountExists):
        books.open_account("w", "USD", key="reopen")
    assert books.balance("w").status == "closed"
    assert audit(books.store).clean


def test_sweep_and_close_in_one_atomic_batch_and_rolled_back_together(books: Ledger) -> None:
    setup(books)
    sweep = {
        "kind": "post_entry",
        "key": "sweep",
        "legs": [
            {"account": "w", "amount": "10", "asset": "USD"},
            {"account": "bank", "amount": "-10", "asset": "USD"},
        ],
    }
    close = {"kind": "close_account", "key": "close", "account": "w"}
    late = {**sweep, "key": "late"}  # w is closed by then
    with pytest.raises(AccountClosed, match="command 2"):
        books.atomic("a1", [sweep, close, late])
    assert books.balance("w").status == "open"  # nothing of it applied
    assert books.balance("w").posted == Decimal("10.00")
    assert books.atomic("a2", [sweep, close]).ok
    assert books.balance("w").status == "closed"
    assert audit(books.store).clean


def test_payment_then_freeze_in_one_group_keeps_the_audit_clean(books: Ledger) -> None:
    setup(books)
    outcomes = books.submit_many(
        [
            {
                "kind": "post_entry",
                "key": "p1",
                "legs": [
                    {"account": "w", "amount": "1", "asset": "USD"},
                    {"account": "v", "amount": "-1", "asset": "USD"},
                ],
            },
            {"kind": "freeze_account", "key": "fr", "account": "w", "mode": "debits"},
            {
                "kind": "post_entry",
                "key": "p2",
                "legs": [
                    {"account": "w", "amount": "1", "asset": "USD"},
                    {"account": "v", "amount": "-1", "asset": "USD"},
                ],
            },
            {"kind": "unfreeze_account", "key": "uf", "account": "w"},
            {
                "kind": "post_entry",
                "key": "p3",
                "legs": [
                    {"account": "w", "amount": "1", "asset": "USD"},
                    {"account": "v", "amount": "-1", "asset": "USD"},
                ],
            },
        ]
    )
    assert [o.status for o in outcomes] == ["applied", "applied", "rejected", "applied", "applied"]
    assert outcomes[2].code == "account_frozen"
    assert books.balance("w").posted == Decimal("8.00")
    report = audit(books.store)
    assert report.clean, report.findings


def test_change_limits(books: Ledger) -> None:
    setup(books)
    assert books.change_limits("l1", "w", min_balance="-5", max_balance="100").ok
    assert pay(books, "p", "w", "v", "14").ok  # into the credit line
    with pytest.raises(BalanceRuleViolated):
        pay(books, "p2", "w", "v", "2")
    with pytest.raises(BalanceRuleViolated, match="below the new minimum"):
        books.change_limits("l2", "w", min_balance="0")
    with pytest.raises(InvalidCommand, match="greater"):
        books.change_limits("l3", "w", min_balance="5", max_balance="1")
    with pytest.raises(BalanceRuleViolated):
        pay(books, "big", "bank", "w", "200")  # above the new maximum
    with pytest.raises(IdempotencyConflict):
        books.change_limits("l1", "w", min_balance="-6")
    state = books.balance("w")
    assert (state.min_balance, state.max_balance) == (Decimal("-5.00"), Decimal("100.00"))
    assert audit(books.store).clean


def test_lifecycle_survives_reopening_and_reaches_other_ledgers(store_url: str) -> None:
    with Ledger.open(store_url) as first, Ledger.open(store_url) as second:
        setup(first)
        assert pay(second, "warm", "w", "v").ok  # second caches w
        first.freeze("fr", "w", mode="debits")
        with pytest.raises(AccountFrozen):  # its cached state is stale: the append's
            pay(second, "stale", "w", "v")  # guard sends it back to the store
        first.change_limits("lim", "v", max_balance="5")
    with Ledger.open(store_url) as again:
        state = again.balance("w")
        assert (state.status, state.freeze) == ("frozen", "debits")
        assert again.balance("v").max_balance == Decimal("5.00")
        with pytest.raises(AccountFrozen):
            pay(again, "after", "w", "v")
        assert again.recorded("stale") is not None  # the rejection is final for its key


def test_the_audit_flags_an_entry_forged_onto_a_closed_account(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        setup(books)
        pay(books, "sweep", "w", "bank", "10")
        books.close_account("close", "w")
    raw = Raw(store_url)
    entries = [(p, s) for p, t, s in raw.rows() if t == "ledger:Entry:1"]
    _, state = entries[-1]  # the sweep: w debited 10
    body = orjson.loads(state)
    body["key"] = "forged"
    stream = uuid.uuid4()
    raw.execute(
        "INSERT INTO stored_events (originator_id, originator_version, topic, state)"
        " VALUES (?, 1, ?, ?)",
        stream if raw.pg else stream.hex,
        "ledger:Entry:1",
        orjson.dumps(body),
    )
    with Ledger.open(store_url) as books:
        report = audit(books.store)
    codes = {f.code for f in report.findings}
    assert "lifecycle" in codes, report.findings
    assert any("which is closed" in f.message for f in report.findings)
