"""Bad input catalogue: each invalid command gets its documented typed error, and the
event log holds exactly the same events afterwards (on every store)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from decimal import Decimal
from typing import Any

import pytest

from ledger import (
    AMOUNT_MAX_MINOR,
    AssetMismatch,
    BalanceOverflow,
    BalanceRuleViolated,
    EntryNotFound,
    EntryNotReversible,
    ExceedsHold,
    HoldNotPending,
    IdempotencyConflict,
    InvalidAmount,
    InvalidCommand,
    LedgerError,
    LimitExceeded,
    UnbalancedEntry,
    UnknownAccount,
    UnknownAsset,
)
from ledger import payments as pay
from ledger.adapters.opening import Ledger


def legs(a: str, b: str, amount: Any, asset: str = "USD") -> list[tuple[str, Any, str]]:
    return [(a, amount, asset), (b, f"-{amount}" if isinstance(amount, str) else amount, asset)]


def log_of(books: Ledger) -> list[tuple[Any, ...]]:
    return [
        (n.id, n.originator_id, n.originator_version, n.topic, n.state)
        for n in books.store.read_log(0, 1_000_000)
    ]


@pytest.fixture
def prepared(books: Ledger) -> Ledger:
    books.open_account("bank", "USD", normal="debit")
    books.open_account("alice", "USD", min_balance="0")
    books.open_account("bob", "USD", min_balance="0")
    books.open_account("euro", "EUR")
    books.transfer("fund", debit="bank", credit="alice", amount="100", asset="USD")
    books.transfer("paid", debit="alice", credit="bob", amount="10", asset="USD")
    hold = books.hold("h-void", legs("alice", "bob", "5"))
    assert hold.entry_id is not None
    books.void_hold("voided", hold.entry_id)
    captured = books.hold("h-cap", legs("alice", "bob", "5"))
    assert captured.entry_id is not None
    books.post_hold("captured", captured.entry_id)
    return books


def voided(books: Ledger) -> uuid.UUID:
    from ledger.model import entry_id_for_key

    return entry_id_for_key("h-void")


def captured(books: Ledger) -> uuid.UUID:
    from ledger.model import entry_id_for_key

    return entry_id_for_key("h-cap")


NOW = datetime.now(UTC)


class Failing(tzinfo):
    """A caller's time zone whose offset raises."""

    def utcoffset(self, dt: datetime | None) -> timedelta:
        raise RuntimeError("no offset")


class IntOffset(tzinfo):
    """A caller's time zone whose offset is not a timedelta."""

    def utcoffset(self, dt: datetime | None) -> Any:
        return 3600


EAST, WEST = timezone(timedelta(hours=1)), timezone(timedelta(hours=-1))
LAST = datetime(9999, 12, 31, 23, 59)

# (case id, call, expected error, whether the key stays free afterwards)
CASES: list[tuple[str, Callable[[Ledger], Any], type[LedgerError], bool]] = [
    (
        "unbalanced",
        lambda b: b.post("k", [("alice", "1", "USD"), ("bob", "-2", "USD")]),
        UnbalancedEntry,
        True,
    ),
    ("empty legs", lambda b: b.post("k", []), InvalidCommand, True),
    ("one leg", lambda b: b.post("k", [("alice", "1", "USD")]), InvalidCommand, True),
    (
        "unknown currency",
        lambda b: b.post("k", legs("alice", "bob", "1", "XYZ")),
        UnknownAsset,
        True,
    ),
    (
        "lowercase currency",
        lambda b: b.post("k", legs("alice", "bob", "1", "usd")),
        InvalidCommand,
        True,
    ),
    (
        "currency mismatch",
        lambda b: b.post("k", legs("alice", "euro", "1", "EUR")),
        AssetMismatch,
        False,
    ),
    (
        "too many decimals",
        lambda b: b.post("k", legs("alice", "bob", "1.001")),
        InvalidAmount,
        True,
    ),
    ("zero amount", lambda b: b.post("k", legs("alice", "bob", "0")), InvalidAmount, True),
    ("NaN", lambda b: b.post("k", legs("alice", "bob", "NaN")), InvalidAmount, True),
    ("Infinity", lambda b: b.post("k", legs("alice", "bob", "Infinity")), InvalidAmount, True),
    (
        "Decimal NaN",
        lambda b: b.post("k", legs("alice", "bob", Decimal("NaN"))),
        InvalidAmount,
        True,
    ),
    ("float", lambda b: b.post("k", legs("alice", "bob", 1.5)), InvalidAmount, True),
    ("bool", lambda b: b.post("k", legs("alice", "bob", True)), InvalidAmount, True),
    ("not a number", lambda b: b.post("k", legs("alice", "bob", "12abc")), InvalidAmount, True),
    ("beyond maximum", lambda b: b.post("k", legs("alice", "bob", "1e40")), InvalidAmount, True),
    ("unknown account", lambda b: b.post("k", legs("alice", "nobody", "1")), UnknownAccount, False),
    (
        "bad account id",
        lambda b: b.post("k", legs("alice", "has space", "1")),
        InvalidCommand,
        True,
    ),
    ("overdraft", lambda b: b.post("k", legs("alice", "bob", "1000")), BalanceRuleViolated, False),
    (
        "key reused with another request",
        lambda b: b.post("paid", legs("alice", "bob", "11")),
        IdempotencyConflict,
        False,
    ),
    ("post a voided hold", lambda b: b.post_hold("k", voided(b)), HoldNotPending, False),
    ("post a captured hold twice", lambda b: b.post_hold("k", captured(b)), HoldNotPending, False),
    ("void a captured hold", lambda b: b.void_hold("k", captured(b)), HoldNotPending, False),
    ("reverse unknown entry", lambda b: b.reverse("k", uuid.uuid4()), EntryNotFound, False),
    ("reverse a hold", lambda b: b.reverse("k", voided(b)), EntryNotReversible, False),
    ("post unknown hold", lambda b: b.post_hold("k", uuid.uuid4()), EntryNotFound, False),
    ("too many legs", lambda b: b.post("k", legs("alice", "bob", "1") * 33), InvalidCommand, True),
    (
        "oversized metadata",
        lambda b: b.post("k", legs("alice", "bob", "1"), metadata={"x": "y" * 9000}),
        InvalidCommand,
        True,
    ),
    (
        "description too long",
        lambda b: b.post("k", legs("alice", "bob", "1"), description="d" * 1025),
        InvalidCommand,
        True,
    ),
    (
        "non-UTF-8 description",
        lambda b: b.post("k", legs("alice", "bob", "1"), description="bad \udcff"),
        InvalidCommand,
        True,
    ),
    (
        "naive effective date",
        lambda b: b.post("k", legs("alice", "bob", "1"), effective_at=datetime(2026, 1, 1)),
        InvalidCommand,
        True,
    ),
    (
        "hold expiring in the past",
        lambda b: b.hold("k", legs("alice", "bob", "1"), expires_at=NOW - timedelta(days=1)),
        InvalidCommand,
        True,
    ),
    ("empty key", lambda b: b.post("", legs("alice", "bob", "1")), InvalidCommand, True),
    ("key too long", lambda b: b.post("k" * 257, legs("alice", "bob", "1")), InvalidCommand, True),
    (
        "unknown field",
        lambda b: b.post("k", legs("alice", "bob", "1"), colour="red"),
        InvalidCommand,
        True,
    ),
    (
        "capture beyond the hold",
        lambda b: b.post_hold("k", captured(b), legs("alice", "bob", "6")),
        HoldNotPending,
        False,
    ),
    ("digit separators", lambda b: b.post("k", legs("alice", "bob", "1_000")), InvalidAmount, True),
    (
        "fullwidth digits",
        lambda b: b.post("k", legs("alice", "bob", "\uff11")),
        InvalidAmount,
        True,
    ),
    (
        "Arabic-Indic digits",
        lambda b: b.transfer("k", debit="alice", credit="bob", amount="\u0661", asset="USD"),
        InvalidAmount,
        True,
    ),
    (
        "effective date before year 1 in UTC",
        lambda b: b.post(
            "k", legs("alice", "bob", "1"), effective_at=datetime(1, 1, 1, tzinfo=EAST)
        ),
        InvalidCommand,
        True,
    ),
    (
        "effective date after year 9999 in UTC",
        lambda b: b.post("k", legs("alice", "bob", "1"), effective_at=LAST.replace(tzinfo=WEST)),
        InvalidCommand,
        True,
    ),
    (
        "hold expiring after year 9999 in UTC",
        lambda b: b.hold("k", legs("alice", "bob", "1"), expires_at=LAST.replace(tzinfo=WEST)),
        InvalidCommand,
        True,
    ),
    (
        "sweep before year 1 in UTC",
        lambda b: b.expire_due(datetime(1, 1, 1, tzinfo=EAST)),
        InvalidCommand,
        True,
    ),
    ("sweep at a naive time", lambda b: b.expire_due(datetime(2026, 1, 1)), InvalidCommand, True),
    (
        "a time zone that fails",
        lambda b: b.post(
            "k", legs("alice", "bob", "1"), effective_at=datetime(2026, 1, 1, tzinfo=Failing())
        ),
        InvalidCommand,
        True,
    ),
    (
        "a time zone with an integer offset",
        lambda b: b.post(
            "k", legs("alice", "bob", "1"), effective_at=datetime(2026, 1, 1, tzinfo=IntOffset())
        ),
        InvalidCommand,
        True,
    ),
    (
        "expected version beyond 64 bits",
        lambda b: b.post("k", legs("alice", "bob", "1"), expected_versions={"alice": 2**70}),
        InvalidCommand,
        True,
    ),
    (
        "NaN in metadata",
        lambda b: b.post("k", legs("alice", "bob", "1"), metadata={"x": float("nan")}),
        InvalidCommand,
        True,
    ),
    (
        "infinity in metadata",
        lambda b: b.post("k", legs("alice", "bob", "1"), metadata={"y": [1, {"z": float("-inf")}]}),
        InvalidCommand,
        True,
    ),
    ("commands not a list", lambda b: b.submit_many(None), InvalidCommand, True),
    ("negative scale", lambda b: b.declare_asset("PTS", -1, key="k"), InvalidCommand, True),
    ("scale above 18", lambda b: b.declare_asset("PTS", 19, key="k"), InvalidCommand, True),
    (
        "bounds exclude zero",
        lambda b: b.open_account("carol", "USD", min_balance="1", key="k"),
        InvalidCommand,
        True,
    ),
]


@pytest.mark.parametrize(("case", "call", "error", "key_free"), CASES, ids=[c[0] for c in CASES])
def test_case_16_bad_input_gets_typed_error_and_log_is_unchanged(
    prepared: Ledger,
    case: str,
    call: Callable[[Ledger], Any],
    error: type[LedgerError],
    key_free: bool,
) -> None:
    before = log_of(prepared)
    with pytest.raises(error) as caught:
        call(prepared)
    assert caught.value.code == error.code
    assert caught.value.message
    assert log_of(prepared) == before, f"{case}: the event log changed"
    if key_free:
        # a malformed request burns no key: the same key serves a valid request
        prepared.post("k", legs("alice", "bob", "1"))
    assert prepared.balance("bob").posted == Decimal("15.00") + (Decimal(1) if key_free else 0)


def test_capture_beyond_an_open_hold_is_exceeds_hold(prepared: Ledger) -> None:
    hold = prepared.hold("h-open", legs("alice", "bob", "5"))
    assert hold.entry_id is not None
    before = log_of(prepared)
    with pytest.raises(ExceedsHold):
        prepared.post_hold("k", hold.entry_id, legs("alice", "bob", "6"))
    with pytest.raises(ExceedsHold):
        prepared.post_hold("k2", hold.entry_id, legs("bob", "alice", "1"))
    assert log_of(prepared) == before


def test_case_18_limits_balance_overflow_is_rejected(books: Ledger) -> None:
    books.declare_asset("WEI", 0)
    books.open_account("a", "WEI")
    books.open_account("b", "WEI")
    books.transfer("t1", debit="a", credit="b", amount=str(AMOUNT_MAX_MINOR), asset="WEI")
    before = log_of(books)
    with pytest.raises(BalanceOverflow):
        books.transfer("t2", debit="a", credit="b", amount="1", asset="WEI")
    assert log_of(books) == before


def test_case_18_limits_group_commit_over_the_batch_limit_is_refused(books: Ledger) -> None:
    from ledger.commands import DeclareAsset

    commands = [DeclareAsset(key=f"k{i}", code="PTS", scale=0) for i in range(10_001)]
    with pytest.raises(LimitExceeded):
        books.submit_many(commands)
    assert log_of(books) == []


FX = {"USD": "fx:usd", "EUR": "fx:eur"}


def send(amount: str, fee: str) -> Callable[[Ledger], Any]:
    return lambda b: pay.send(
        b,
        "k",
        sender="alice",
        recipient="bob",
        amount=amount,
        asset="USD",
        fee=fee,
        fee_account="bank",
    )


def fx(amount: str, rate: str, accounts: Any = FX) -> Callable[[Ledger], Any]:
    return lambda b: pay.fx_pay(
        b,
        "k",
        payer="alice",
        payee="euro",
        amount=amount,
        pay_asset="USD",
        receive_asset="EUR",
        rate=rate,
        fx_accounts=accounts,
    )


# Recipes check their own arguments before the core sees them: (case, call, error)
RECIPE_CASES: list[tuple[str, Callable[[Ledger], Any], type[LedgerError]]] = [
    ("send: amount beyond any asset, with a fee", send("1e300", "1"), InvalidAmount),
    ("send: amount and fee beyond decimal range", send("9e999999", "9e999999"), InvalidAmount),
    ("send: more decimals than any asset", send("1e-19", "1"), InvalidAmount),
    ("send: amount below decimal range", send("1e-999999999", "1"), InvalidAmount),
    ("send: amount above decimal range", send("1e999999999", "1"), InvalidAmount),
    ("send: fee above decimal range", send("1", "1e999999999"), InvalidAmount),
    ("send: fee below decimal range", send("1", "1e-999999999"), InvalidAmount),
    (
        "charge: amount beyond any asset, with a fee",
        lambda b: pay.charge(
            b,
            "k",
            customer="alice",
            merchant="bob",
            amount="1e300",
            asset="USD",
            fee="1",
            platform="bank",
        ),
        InvalidAmount,
    ),
    ("fx: amount beyond any asset", fx("1e300", "1"), InvalidAmount),
    ("fx: rate beyond decimal range", fx("10", "1e999999"), InvalidAmount),
    ("fx: rate too small to compute exactly", fx("10", "1e-999999999"), InvalidAmount),
    ("fx: no FX accounts", fx("10", "0.9", None), InvalidCommand),
    (
        "split: include_requester not a bool",
        lambda b: pay.split_bill(
            b,
            "k",
            requester="alice",
            payers=["bob"],
            amount="10",
            asset="USD",
            include_requester="no",
        ),
        InvalidCommand,
    ),
]


@pytest.mark.parametrize(("case", "call", "error"), RECIPE_CASES, ids=[c[0] for c in RECIPE_CASES])
def test_recipes_refuse_their_bad_arguments_with_typed_errors(
    prepared: Ledger, case: str, call: Callable[[Ledger], Any], error: type[LedgerError]
) -> None:
    prepared.open_account("fx:usd", "USD", normal="debit")
    prepared.open_account("fx:eur", "EUR", normal="debit")
    before = log_of(prepared)
    with pytest.raises(error) as caught:
        call(prepared)
    assert caught.value.code == error.code
    assert log_of(prepared) == before, f"{case}: the event log changed"
    prepared.post("k", legs("alice", "bob", "1"))  # the key is still free
