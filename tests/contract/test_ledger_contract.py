"""The ledger's behaviour, run identically against every store (SQLite, PostgreSQL)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger import (
    AccountExists,
    AssetMismatch,
    BalanceRuleViolated,
    ConcurrencyConflict,
    EntryNotReversible,
    ExceedsHold,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    Ledger,
    UnknownAccount,
)
from ledger.commands import OpenAccount, PostEntry
from ledger.model import entry_id_for_key
from ledger.projections.audit import audit

NOW = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)


def setup_wallets(books: Ledger) -> None:
    books.open_account("bank:usd", "USD", normal="debit")
    books.open_account("alice", "USD", min_balance="0", owner="user:alice")
    books.open_account("bob", "USD", min_balance="0", owner="user:bob")
    books.transfer("fund-alice", debit="bank:usd", credit="alice", amount="100.00", asset="USD")


def test_case_01_conservation_transfer_moves_money_and_balances_sum_to_zero(books: Ledger) -> None:
    setup_wallets(books)
    books.transfer("p1", debit="alice", credit="bob", amount="30.25", asset="USD")
    assert books.balance("alice").posted == Decimal("69.75")
    assert books.balance("bob").posted == Decimal("30.25")
    # bank is debit-normal: +100; wallets credit-normal: 69.75 + 30.25 = 100
    assert books.balance("bank:usd").posted == Decimal("100.00")


def test_case_08_failures_stay_failed_overdraft_stays_rejected_for_its_key(books: Ledger) -> None:
    setup_wallets(books)
    with pytest.raises(BalanceRuleViolated):
        books.transfer("big", debit="alice", credit="bob", amount="100.01", asset="USD")
    books.transfer("fund-more", debit="bank:usd", credit="alice", amount="50", asset="USD")
    with pytest.raises(BalanceRuleViolated) as caught:
        books.transfer("big", debit="alice", credit="bob", amount="100.01", asset="USD")
    assert caught.value.replayed
    assert books.balance("bob").posted == Decimal("0.00")


def test_same_key_same_request_replays_without_applying_again(books: Ledger) -> None:
    setup_wallets(books)
    first = books.transfer("p1", debit="alice", credit="bob", amount="10", asset="USD")
    again = books.transfer("p1", debit="alice", credit="bob", amount="10.00", asset="USD")
    assert again.replayed and again.entry_id == first.entry_id
    assert books.balance("bob").posted == Decimal("10.00")


def test_case_07_key_mismatch_same_key_different_request_is_a_conflict(books: Ledger) -> None:
    setup_wallets(books)
    books.transfer("p1", debit="alice", credit="bob", amount="10", asset="USD")
    position = books.store.max_position()
    with pytest.raises(IdempotencyConflict):
        books.transfer("p1", debit="alice", credit="bob", amount="11", asset="USD")
    with pytest.raises(IdempotencyConflict):
        books.transfer("p1", debit="bob", credit="alice", amount="10", asset="USD")
    assert books.store.max_position() == position


def test_opening_twice_with_another_key_is_rejected(books: Ledger) -> None:
    books.open_account("alice", "USD")
    books.open_account("alice", "USD")  # same default key: a replay
    with pytest.raises(AccountExists):
        books.open_account("alice", "USD", key="another-key")


def test_credit_limit_and_must_not_go_positive(books: Ledger) -> None:
    books.open_account("card", "USD", min_balance="-50")
    books.open_account("sink", "USD", max_balance="0")
    books.open_account("src", "USD")
    books.transfer("c1", debit="card", credit="src", amount="50", asset="USD")
    with pytest.raises(BalanceRuleViolated):
        books.transfer("c2", debit="card", credit="src", amount="0.01", asset="USD")
    with pytest.raises(BalanceRuleViolated):
        books.transfer("s1", debit="src", credit="sink", amount="1", asset="USD")
    books.transfer("s2", debit="sink", credit="src", amount="1", asset="USD")
    assert books.balance("sink").posted == Decimal("-1.00")


def test_multi_currency_entry_balances_per_currency(books: Ledger) -> None:
    books.open_account("alice:usd", "USD", min_balance="0")
    books.open_account("alice:eur", "EUR")
    books.open_account("fx:usd", "USD")
    books.open_account("fx:eur", "EUR")
    books.open_account("bank:usd", "USD", normal="debit")
    books.transfer("fund", debit="bank:usd", credit="alice:usd", amount="110", asset="USD")
    books.post(
        "fx-1",
        [
            ("alice:usd", "110", "USD"),
            ("fx:usd", "-110", "USD"),
            ("fx:eur", "100", "EUR"),
            ("alice:eur", "-100", "EUR"),
        ],
        metadata={"rate": "0.909090"},
    )
    assert books.balance("alice:eur").posted == Decimal("100.00")
    assert books.balance("alice:usd").posted == Decimal("0.00")


def test_asset_mismatch_and_unknown_account_are_rejected(books: Ledger) -> None:
    setup_wallets(books)
    books.open_account("eur", "EUR")
    with pytest.raises(AssetMismatch):
        books.post("m1", [("alice", "1", "EUR"), ("eur", "-1", "EUR")])
    with pytest.raises(UnknownAccount):
        books.transfer("u1", debit="alice", credit="nobody", amount="1", asset="USD")


def test_user_defined_asset_with_18_decimals(books: Ledger) -> None:
    books.declare_asset("ETH", 18)
    books.open_account("w1", "ETH", min_balance="0")
    books.open_account("mint", "ETH")
    books.transfer("m", debit="mint", credit="w1", amount="1234.000000000000000001", asset="ETH")
    assert books.balance("w1").posted == Decimal("1234.000000000000000001")


def test_hold_reserves_then_partial_capture_releases_rest(books: Ledger) -> None:
    setup_wallets(books)
    hold = books.hold("h1", [("alice", "40", "USD"), ("bob", "-40", "USD")])
    alice = books.balance("alice")
    assert (alice.posted, alice.pending_out, alice.available) == (
        Decimal("100.00"),
        Decimal("40.00"),
        Decimal("60.00"),
    )
    with pytest.raises(BalanceRuleViolated):
        books.transfer("p", debit="alice", credit="bob", amount="60.01", asset="USD")
    assert hold.entry_id is not None
    books.post_hold("cap", hold.entry_id, [("alice", "25", "USD"), ("bob", "-25", "USD")])
    alice = books.balance("alice")
    assert (alice.posted, alice.pending_out) == (Decimal("75.00"), Decimal("0.00"))
    assert books.balance("bob").posted == Decimal("25.00")
    with pytest.raises(HoldNotPending):
        books.post_hold("cap-again", hold.entry_id)
    with pytest.raises(HoldNotPending):
        books.void_hold("void-after", hold.entry_id)


def test_capture_beyond_hold_is_rejected(books: Ledger) -> None:
    setup_wallets(books)
    hold = books.hold("h1", [("alice", "10", "USD"), ("bob", "-10", "USD")])
    assert hold.entry_id is not None
    with pytest.raises(ExceedsHold):
        books.post_hold("cap", hold.entry_id, [("alice", "11", "USD"), ("bob", "-11", "USD")])


@pytest.mark.parametrize(
    "legs",
    [
        # one account's legs netting within the hold, but a leg above it
        [("alice", "20", "USD"), ("alice", "-10", "USD"), ("bob", "-10", "USD")],
        # legs on an account the hold never reserved, netting to zero
        [
            ("alice", "10", "USD"),
            ("bob", "-10", "USD"),
            ("bank:usd", "5", "USD"),
            ("bank:usd", "-5", "USD"),
        ],
        # several legs on one account, each within the hold, together above it
        [("alice", "6", "USD"), ("alice", "6", "USD"), ("bob", "-12", "USD")],
    ],
    ids=["leg-above-hold", "unreserved-account", "legs-sum-above-hold"],
)
def test_a_capture_the_audit_would_flag_is_refused(
    books: Ledger, legs: list[tuple[str, str, str]]
) -> None:
    """The write side and the audit apply one rule to captures: what the ledger
    accepts, the audit passes."""
    setup_wallets(books)
    hold = books.hold("h1", [("alice", "10", "USD"), ("bob", "-10", "USD")])
    assert hold.entry_id is not None
    with pytest.raises(ExceedsHold):
        books.post_hold("cap", hold.entry_id, legs)
    whole = [("alice", "4", "USD"), ("alice", "6", "USD"), ("bob", "-10", "USD")]
    books.post_hold("cap-ok", hold.entry_id, whole)
    assert books.balance("alice").posted == Decimal("90.00")
    assert audit(books.store).clean


def test_a_hold_with_both_sides_on_one_account_is_captured_in_full_or_in_part(
    books: Ledger,
) -> None:
    setup_wallets(books)
    legs = [("alice", "10", "USD"), ("alice", "-3", "USD"), ("bob", "-7", "USD")]
    whole = books.hold("h1", legs)
    part = books.hold("h2", legs)
    assert whole.entry_id is not None and part.entry_id is not None
    books.post_hold("cap-whole", whole.entry_id)
    with pytest.raises(ExceedsHold):  # a debit above the debits reserved on alice
        books.post_hold("cap-over", part.entry_id, [("alice", "11", "USD"), ("bob", "-11", "USD")])
    books.post_hold(
        "cap-part",
        part.entry_id,
        [("alice", "5", "USD"), ("alice", "-1", "USD"), ("bob", "-4", "USD")],
    )
    assert books.balance("alice").posted == Decimal(100 - 7 - 4)
    assert audit(books.store).clean


def test_void_releases_and_a_voided_hold_cannot_post(books: Ledger) -> None:
    setup_wallets(books)
    hold = books.hold("h1", [("alice", "10", "USD"), ("bob", "-10", "USD")])
    assert hold.entry_id is not None
    books.void_hold("v1", hold.entry_id)
    assert books.balance("alice").available == Decimal("100.00")
    with pytest.raises(HoldNotPending):
        books.post_hold("cap", hold.entry_id)


def test_expiry_releases_due_holds_once(store_url: str) -> None:
    clock = [NOW]
    with Ledger.open(store_url, clock=lambda: clock[0]) as books:
        setup_wallets(books)
        hold = books.hold(
            "h1",
            [("alice", "10", "USD"), ("bob", "-10", "USD")],
            expires_at=NOW + timedelta(hours=1),
        )
        assert books.expire_due() == []
        clock[0] = NOW + timedelta(hours=2)
        assert hold.entry_id is not None
        with pytest.raises(HoldExpired):
            books.post_hold("late", hold.entry_id)
        expired = books.expire_due()
        assert [o.kind for o in expired] == ["expire"]
        assert books.expire_due() == []
        assert books.balance("alice").available == Decimal("100.00")


def test_reverse_full_and_partial_never_beyond_posted(books: Ledger) -> None:
    setup_wallets(books)
    pay = books.transfer("pay", debit="alice", credit="bob", amount="50", asset="USD")
    assert pay.entry_id is not None
    books.reverse("r1", pay.entry_id, [("bob", "20", "USD"), ("alice", "-20", "USD")])
    with pytest.raises(EntryNotReversible):
        books.reverse("r2", pay.entry_id, [("bob", "30.01", "USD"), ("alice", "-30.01", "USD")])
    books.reverse("r3", pay.entry_id)
    assert books.balance("bob").posted == Decimal("0.00")
    assert books.balance("alice").posted == Decimal("100.00")
    with pytest.raises(EntryNotReversible):
        books.reverse("r4", pay.entry_id)


def test_case_05_atomic_batch_all_or_nothing(books: Ledger) -> None:
    setup_wallets(books)
    position = books.store.max_position()
    good = PostEntry(
        key="a1",
        legs=[
            {"account": "alice", "amount": "10", "asset": "USD"},
            {"account": "bob", "amount": "-10", "asset": "USD"},
        ],
    )
    bad = PostEntry(
        key="a2",
        legs=[
            {"account": "alice", "amount": "95", "asset": "USD"},
            {"account": "bob", "amount": "-95", "asset": "USD"},
        ],
    )
    with pytest.raises(BalanceRuleViolated):
        books.atomic("batch-1", [good, bad])
    assert books.store.max_position() == position
    assert books.balance("bob").posted == Decimal("0.00")
    # the inner keys were not burned: they can be used on their own
    books.execute(good)
    assert books.balance("bob").posted == Decimal("10.00")


def test_atomic_batch_can_open_and_post_together(books: Ledger) -> None:
    books.open_account("bank:usd", "USD", normal="debit")
    outcome = books.atomic(
        "onboard",
        [
            OpenAccount(key="open-carol", account="carol", asset="USD", min_balance=Decimal(0)),
            PostEntry(
                key="bonus-carol",
                legs=[
                    {"account": "bank:usd", "amount": "5", "asset": "USD"},
                    {"account": "carol", "amount": "-5", "asset": "USD"},
                ],
            ),
        ],
    )
    assert outcome.ok
    assert books.balance("carol").posted == Decimal("5.00")


def test_group_commit_rejects_only_the_bad_commands(books: Ledger) -> None:
    setup_wallets(books)
    commands = [
        PostEntry(
            key=f"g{i}",
            legs=[
                {"account": "alice", "amount": amount, "asset": "USD"},
                {"account": "bob", "amount": f"-{amount}", "asset": "USD"},
            ],
        )
        for i, amount in enumerate(["40", "70", "60", "0.5"])
    ]
    outcomes = books.submit_many(commands)
    assert [o.status for o in outcomes] == ["applied", "rejected", "applied", "rejected"]
    assert books.balance("bob").posted == Decimal("100.00")
    replay = books.submit_many(commands)
    assert [o.status for o in replay] == ["applied", "rejected", "applied", "rejected"]
    assert all(o.replayed for o in replay)


def test_case_04_optimistic_concurrency_pinned_version_mismatch_writes_nothing(
    books: Ledger,
) -> None:
    setup_wallets(books)
    version = books.balance("alice").version
    books.transfer(
        "p1",
        debit="alice",
        credit="bob",
        amount="1",
        asset="USD",
        expected_versions={"alice": version},
    )
    position = books.store.max_position()
    with pytest.raises(ConcurrencyConflict):
        books.transfer(
            "p2",
            debit="alice",
            credit="bob",
            amount="1",
            asset="USD",
            expected_versions={"alice": version},
        )
    assert books.store.max_position() == position
    # the key was not burned
    books.transfer(
        "p2",
        debit="alice",
        credit="bob",
        amount="1",
        asset="USD",
        expected_versions={"alice": version + 1},
    )


def test_state_survives_reopening(store_url: str) -> None:
    with Ledger.open(store_url) as books:
        setup_wallets(books)
        hold = books.hold("h1", [("alice", "10", "USD"), ("bob", "-10", "USD")])
        before = {name: books.balance(name) for name in ("alice", "bob", "bank:usd")}
    with Ledger.open(store_url) as books:
        assert {name: books.balance(name) for name in ("alice", "bob", "bank:usd")} == before
        assert hold.entry_id is not None
        books.post_hold("cap", hold.entry_id)
        assert books.balance("bob").posted == Decimal("10.00")


def test_two_ledger_objects_on_one_store_stay_consistent(store_url: str) -> None:
    """Two writers with their own caches: stale caches are caught by versions."""
    with Ledger.open(store_url) as one, Ledger.open(store_url) as two:
        setup_wallets(one)
        two.transfer("t1", debit="alice", credit="bob", amount="60", asset="USD")
        # `one` has a stale cache of alice (100): the overdraft must still be refused
        with pytest.raises(BalanceRuleViolated):
            one.transfer("t2", debit="alice", credit="bob", amount="60", asset="USD")
        one.transfer("t3", debit="alice", credit="bob", amount="40", asset="USD")
        assert two.balance("alice").posted == Decimal("0.00")


def test_entry_ids_are_derived_from_keys(books: Ledger) -> None:
    setup_wallets(books)
    outcome = books.transfer("p1", debit="alice", credit="bob", amount="1", asset="USD")
    assert outcome.entry_id == entry_id_for_key("p1")
    assert isinstance(outcome.entry_id, uuid.UUID)
