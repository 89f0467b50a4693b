"""Payment flows (ledger.payments): happy paths, failure paths and invariants, on
every store. Each test ends with a full audit (conservation per currency, rules after
every entry, holds resolved once, reversals within what was posted)."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from ledger import (
    BalanceRuleViolated,
    EntryNotReversible,
    ExceedsHold,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    InvalidAmount,
    InvalidCommand,
    Ledger,
    PaymentVetoed,
    RequestNotOpen,
)
from ledger import payments as pay
from ledger.projections.audit import audit
from ledger.risk import RiskCheck

NOW = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


@pytest.fixture
def books(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(store_url, clock=lambda: NOW) as ledger:
        open_books(ledger)
        yield ledger
        report = audit(ledger.store)
        assert report.clean, report.findings


def open_books(books: Ledger) -> None:
    for name in ("bank:ach", "bank:card", "bank:payouts"):
        books.open_account(name, "USD", normal="debit")
    books.open_account("bank:eur", "EUR", normal="debit")
    books.open_account("revenue:fees", "USD")
    books.open_account("fx:usd", "USD", normal="debit")
    books.open_account("fx:eur", "EUR", normal="debit")
    for user in ("alice", "bob", "carol", "dave"):
        books.open_account(f"{user}:wallet", "USD", min_balance="0", owner=f"user:{user}")
    books.open_account("erin:wallet", "EUR", min_balance="0", owner="user:erin")
    books.open_account("shop:balance", "USD", min_balance="0", owner="merchant:shop")
    fund(books, "alice:wallet", "100.00")


def fund(books: Ledger, wallet: str, amount: str) -> None:
    books.transfer(
        f"fund:{wallet}:{amount}", debit="bank:ach", credit=wallet, amount=amount, asset="USD"
    )


def avail(books: Ledger, account: str) -> Decimal:
    return books.balance(account).available


# -- P2P ---------------------------------------------------------------------------------------


def test_instant_send_with_fee_is_one_entry_and_available_at_once(books: Ledger) -> None:
    out = pay.send(
        books,
        "p2p-1",
        sender="alice:wallet",
        recipient="bob:wallet",
        amount="20.00",
        asset="USD",
        note="pizza",
        visibility="friends",
        fee="0.50",
        fee_account="revenue:fees",
    )
    assert out.ok and out.kind == "posted"
    assert avail(books, "alice:wallet") == Decimal("79.50")
    assert avail(books, "bob:wallet") == Decimal("20.00")
    assert avail(books, "revenue:fees") == Decimal("0.50")
    again = pay.send(
        books,
        "p2p-1",
        sender="alice:wallet",
        recipient="bob:wallet",
        amount="20",
        asset="USD",
        note="pizza",
        visibility="friends",
        fee="0.5",
        fee_account="revenue:fees",
    )
    assert again.replayed and again.entry_id == out.entry_id
    assert avail(books, "alice:wallet") == Decimal("79.50")


def test_send_failures(books: Ledger) -> None:
    with pytest.raises(BalanceRuleViolated):
        pay.send(
            books,
            "big",
            sender="alice:wallet",
            recipient="bob:wallet",
            amount="100.01",
            asset="USD",
        )
    # a rejected payment stays rejected under its key, even once funds arrive
    fund(books, "alice:wallet", "50.00")
    with pytest.raises(BalanceRuleViolated):
        pay.send(
            books,
            "big",
            sender="alice:wallet",
            recipient="bob:wallet",
            amount="100.01",
            asset="USD",
        )
    pay.send(books, "ok", sender="alice:wallet", recipient="bob:wallet", amount="1", asset="USD")
    with pytest.raises(IdempotencyConflict):
        pay.send(
            books, "ok", sender="alice:wallet", recipient="bob:wallet", amount="2", asset="USD"
        )
    assert avail(books, "bob:wallet") == Decimal("1.00")


def test_an_instant_send_with_a_deadline_is_refused_and_moves_nothing(books: Ledger) -> None:
    """``settle_by`` is a standard payment's deadline: with an instant payment it would
    be ignored, so the recipe refuses it (no key used: the same key works afterwards)."""
    later = NOW + timedelta(days=3)
    with pytest.raises(InvalidCommand, match="settle_by"):
        pay.send(
            books, "inst-dl", sender="alice:wallet", recipient="bob:wallet", amount="1",
            asset="USD", settle_by=later,
        )  # fmt: skip
    assert avail(books, "alice:wallet") == Decimal("100.00")
    pay.send(
        books, "inst-dl", sender="alice:wallet", recipient="bob:wallet", amount="1", asset="USD"
    )
    assert avail(books, "bob:wallet") == Decimal("1.00")


@pytest.mark.parametrize(
    ("recipe", "metadata", "named"),
    [
        ("send", {"visibility": "public"}, "visibility"),
        ("send", {"note": "rent"}, "note"),
        ("send", {"mode": "standard"}, "mode"),
        ("send", {"flow": "charge"}, "flow"),
        ("charge", {"merchant": "other:balance"}, "merchant"),
        ("charge", {"flow": "p2p"}, "flow"),
    ],
)
def test_metadata_the_recipe_would_overwrite_is_refused(
    books: Ledger, recipe: str, metadata: dict[str, str], named: str
) -> None:
    """A metadata key the recipe writes itself (``flow``; ``note``, ``visibility`` and
    ``mode`` of a P2P payment; ``merchant`` of a charge) given with another value was
    silently replaced (a feed item asked to be public stored as private): refused,
    naming the key, nothing moved and no key used. The same value is accepted."""

    def run(key: str, meta: dict[str, str]) -> None:
        if recipe == "send":
            pay.send(
                books, key, sender="alice:wallet", recipient="bob:wallet", amount="1",
                asset="USD", note="pizza", metadata=meta,
            )  # fmt: skip
        else:
            pay.charge(
                books, key, customer="alice:wallet", merchant="shop:balance", amount="1",
                asset="USD", metadata=meta,
            )  # fmt: skip

    with pytest.raises(InvalidCommand, match=named):
        run("meta-1", metadata)
    assert avail(books, "alice:wallet") == Decimal("100.00")
    assert books.recorded("meta-1") is None
    same = {"send": {"flow": "p2p", "note": "pizza", "visibility": "private", "mode": "instant"}}
    run("meta-1", same.get(recipe, {"flow": "charge", "merchant": "shop:balance"}))
    assert avail(books, "alice:wallet") == Decimal("99.00")


@pytest.mark.parametrize("reference", [17, ["r"]])
@pytest.mark.parametrize("recipe", ["start_deposit", "start_withdrawal", "authorize", "payout"])
def test_a_reference_that_is_not_text_is_refused(
    books: Ledger, recipe: str, reference: object
) -> None:
    """A bank or card reference is text: a number, list or mapping was stored as given
    (so 17 and "17" were different references, and a retry with the other was a
    conflict). Refused before anything is read or written; no key used."""
    later = NOW + timedelta(days=3)
    calls = {
        "start_deposit": lambda ref: pay.start_deposit(
            books, "ref-1", wallet="bob:wallet", rail="bank:ach", amount="1", asset="USD",
            reference=ref,
        ),
        "start_withdrawal": lambda ref: pay.start_withdrawal(
            books, "ref-1", wallet="alice:wallet", rail="bank:ach", amount="1", asset="USD",
            reference=ref,
        ),
        "authorize": lambda ref: pay.authorize_card(
            books, "ref-1", card="alice:wallet", merchant="shop:balance", amount="1",
            asset="USD", expires_at=later, reference=ref,
        ),
        "payout": lambda ref: pay.payout(
            books, "ref-1", merchant="alice:wallet", rail="bank:payouts", amount="1",
            reference=ref,
        ),
    }  # fmt: skip
    with pytest.raises(InvalidCommand, match="reference"):
        calls[recipe](reference)
    assert books.recorded("ref-1") is None
    assert books.balance("alice:wallet").pending_out == 0
    calls[recipe]("R-17")
    assert books.recorded("ref-1") is not None


def test_a_card_authorization_without_a_deadline_is_refused(books: Ledger) -> None:
    """``expires_at`` is required: a card authorization is released at its deadline.
    ``None`` placed a hold that never expired (the customer's funds reserved until
    someone captured or released it by hand); refused, nothing held, no key used."""
    with pytest.raises(InvalidCommand, match="expires_at"):
        pay.authorize_card(
            books, "auth-none", card="alice:wallet", merchant="shop:balance", amount="5",
            asset="USD", expires_at=None,  # type: ignore[arg-type]
        )  # fmt: skip
    assert avail(books, "alice:wallet") == Decimal("100.00")
    assert books.recorded("auth-none") is None


def test_standard_send_holds_then_settles_or_cancels(books: Ledger) -> None:
    held = pay.send(
        books,
        "std-1",
        sender="alice:wallet",
        recipient="bob:wallet",
        amount="30",
        asset="USD",
        mode="standard",
        settle_by=NOW + timedelta(days=3),
    )
    assert held.kind == "pending"
    assert avail(books, "alice:wallet") == Decimal("70.00")
    assert books.balance("bob:wallet").pending_in == Decimal("30.00")
    assert avail(books, "bob:wallet") == Decimal("0.00")
    assert held.entry_id is not None
    pay.settle_p2p(books, "std-1:settle", held.entry_id)
    assert avail(books, "bob:wallet") == Decimal("30.00")
    with pytest.raises(HoldNotPending):
        pay.settle_p2p(books, "std-1:settle-again", held.entry_id)
    with pytest.raises(HoldNotPending):
        pay.cancel_p2p(books, "std-1:cancel", held.entry_id)
    other = pay.send(
        books,
        "std-2",
        sender="alice:wallet",
        recipient="bob:wallet",
        amount="10",
        asset="USD",
        mode="standard",
    )
    assert other.entry_id is not None
    pay.cancel_p2p(books, "std-2:cancel", other.entry_id)
    assert avail(books, "alice:wallet") == Decimal("70.00")
    assert books.balance("bob:wallet").pending_in == Decimal("0.00")


# -- requests and splits ----------------------------------------------------------------------


def test_request_accept_decline_and_never_twice(books: Ledger) -> None:
    req = pay.request_money(
        books,
        "req-1",
        requester="bob:wallet",
        payer="alice:wallet",
        amount="12.34",
        asset="USD",
        note="tickets",
    )
    assert req.entry_id is not None and books.request_status(req.entry_id) == "open"
    assert avail(books, "alice:wallet") == Decimal("100.00")  # nothing moves yet
    paid = pay.accept_request(books, "req-1:pay", req.entry_id)
    assert paid.kind == "posted"
    assert avail(books, "bob:wallet") == Decimal("12.34")
    assert books.request_status(req.entry_id) == "paid"
    assert pay.accept_request(books, "req-1:pay", req.entry_id).replayed
    with pytest.raises(RequestNotOpen):
        pay.accept_request(books, "req-1:pay-again", req.entry_id)
    with pytest.raises(RequestNotOpen):
        pay.decline_request(books, "req-1:decline", req.entry_id)
    second = pay.request_money(
        books, "req-2", requester="bob:wallet", payer="alice:wallet", amount="5", asset="USD"
    )
    assert second.entry_id is not None
    pay.decline_request(books, "req-2:decline", second.entry_id, reason="no thanks")
    assert books.request_status(second.entry_id) == "declined"
    with pytest.raises(RequestNotOpen):
        pay.accept_request(books, "req-2:pay", second.entry_id)
    assert avail(books, "bob:wallet") == Decimal("12.34")


def test_paying_a_request_without_funds_is_rejected_and_request_stays_open(books: Ledger) -> None:
    req = pay.request_money(
        books, "req-poor", requester="alice:wallet", payer="carol:wallet", amount="5", asset="USD"
    )
    assert req.entry_id is not None
    with pytest.raises(BalanceRuleViolated):
        pay.accept_request(books, "req-poor:pay", req.entry_id)
    assert books.request_status(req.entry_id) == "open"
    fund(books, "carol:wallet", "5.00")
    pay.accept_request(books, "req-poor:pay-2", req.entry_id)  # a new attempt, a new key
    assert avail(books, "alice:wallet") == Decimal("105.00")


@pytest.mark.parametrize(
    ("total", "people", "shares"),
    [(100, 3, [34, 33, 33]), (10, 4, [3, 3, 2, 2]), (2, 3, [1, 1, 0]), (9, 3, [3, 3, 3])],
)
def test_split_shares_add_up_exactly(total: int, people: int, shares: list[int]) -> None:
    assert pay.split_shares(total, people) == shares
    assert sum(shares) == total


def test_split_bill_requests_each_share_and_remainder_rule(books: Ledger) -> None:
    split = pay.split_bill(
        books,
        "dinner",
        requester="alice:wallet",
        payers=["bob:wallet", "carol:wallet"],
        amount="100.00",
        asset="USD",
        note="dinner",
    )
    assert [(p, s) for p, s, _ in split.requests] == [
        ("bob:wallet", Decimal("33.34")),
        ("carol:wallet", Decimal("33.33")),
    ]
    assert split.requester_share == Decimal("33.33")
    assert sum(s for _, s, _ in split.requests) + split.requester_share == Decimal("100.00")
    fund(books, "bob:wallet", "40.00")
    bob_request = split.requests[0][2]
    pay.accept_request(books, "dinner:bob:pay", bob_request)
    pay.decline_request(books, "dinner:carol:decline", split.requests[1][2])
    assert avail(books, "alice:wallet") == Decimal("133.34")
    # retrying the whole split creates nothing new
    again = pay.split_bill(
        books,
        "dinner",
        requester="alice:wallet",
        payers=["bob:wallet", "carol:wallet"],
        amount="100.00",
        asset="USD",
        note="dinner",
    )
    assert again.outcome.replayed and again.requests == split.requests


# -- bank rails -----------------------------------------------------------------------------------


def test_bank_deposit_pending_then_posted_or_failed(books: Ledger) -> None:
    dep = pay.start_deposit(
        books, "dep-1", wallet="dave:wallet", rail="bank:ach", amount="50", asset="USD"
    )
    assert dep.entry_id is not None
    assert books.balance("dave:wallet").pending_in == Decimal("50.00")
    assert avail(books, "dave:wallet") == Decimal("0.00")
    confirmed = pay.confirm_bank_transfer(books, "dep-1:ok", dep.entry_id)
    assert avail(books, "dave:wallet") == Decimal("50.00")
    failed = pay.start_deposit(
        books, "dep-2", wallet="dave:wallet", rail="bank:ach", amount="9", asset="USD"
    )
    assert failed.entry_id is not None
    pay.fail_bank_transfer(books, "dep-2:fail", failed.entry_id, reason="R01")
    assert books.balance("dave:wallet").pending_in == Decimal("0.00")
    with pytest.raises(HoldNotPending):
        pay.confirm_bank_transfer(books, "dep-2:ok", failed.entry_id)
    # returned after settlement: reversed, never edited
    assert confirmed.entry_id is not None
    pay.return_bank_transfer(books, "dep-1:return", confirmed.entry_id, reason="R10")
    assert avail(books, "dave:wallet") == Decimal("0.00")
    with pytest.raises(EntryNotReversible):
        pay.return_bank_transfer(books, "dep-1:return-2", confirmed.entry_id)


def test_withdrawal_reserves_funds_and_release_on_failure(books: Ledger) -> None:
    wd = pay.start_withdrawal(
        books, "wd-1", wallet="alice:wallet", rail="bank:ach", amount="60", asset="USD"
    )
    assert wd.entry_id is not None
    assert avail(books, "alice:wallet") == Decimal("40.00")
    with pytest.raises(BalanceRuleViolated):  # reserved funds cannot be spent twice
        pay.start_withdrawal(
            books, "wd-2", wallet="alice:wallet", rail="bank:ach", amount="41", asset="USD"
        )
    pay.fail_bank_transfer(books, "wd-1:fail", wd.entry_id)
    assert avail(books, "alice:wallet") == Decimal("100.00")
    ok = pay.start_withdrawal(
        books, "wd-3", wallet="alice:wallet", rail="bank:ach", amount="100", asset="USD"
    )
    assert ok.entry_id is not None
    pay.confirm_bank_transfer(books, "wd-3:ok", ok.entry_id)
    assert books.balance("alice:wallet").posted == Decimal("0.00")


# -- cards -----------------------------------------------------------------------


def test_card_partial_capture_releases_rest_and_never_twice(books: Ledger) -> None:
    auth = pay.authorize_card(
        books,
        "auth-1",
        card="alice:wallet",
        merchant="shop:balance",
        amount="80",
        asset="USD",
        expires_at=NOW + timedelta(days=7),
    )
    assert auth.entry_id is not None
    assert avail(books, "alice:wallet") == Decimal("20.00")
    with pytest.raises(ExceedsHold):
        pay.capture_card(books, "cap-too-much", auth.entry_id, "80.01")
    pay.capture_card(books, "cap-1", auth.entry_id, "55.00")
    assert avail(books, "alice:wallet") == Decimal("45.00")
    assert avail(books, "shop:balance") == Decimal("55.00")
    assert books.balance("alice:wallet").pending_out == Decimal("0.00")
    with pytest.raises(HoldNotPending):
        pay.capture_card(books, "cap-2", auth.entry_id, "10")
    with pytest.raises(HoldNotPending):
        pay.release_card(books, "rel-1", auth.entry_id)


def test_card_hold_expires_and_cannot_be_captured(store_url: str) -> None:
    clock = [NOW]
    with Ledger.open(store_url, clock=lambda: clock[0]) as books:
        open_books(books)
        auth = pay.authorize_card(
            books,
            "auth-x",
            card="alice:wallet",
            merchant="shop:balance",
            amount="30",
            asset="USD",
            expires_at=NOW + timedelta(hours=1),
        )
        assert auth.entry_id is not None
        clock[0] = NOW + timedelta(hours=2)
        with pytest.raises(HoldExpired):
            pay.capture_card(books, "cap-x", auth.entry_id)
        released = books.expire_due()
        assert [o.kind for o in released] == ["expire"]
        assert books.expire_due() == []
        assert avail(books, "alice:wallet") == Decimal("100.00")
        with pytest.raises(HoldNotPending):
            pay.release_card(books, "rel-x", auth.entry_id)
        assert audit(books.store).clean


# -- merchants -----------------------------------------------------------------------


def charge_shop(books: Ledger, key: str = "ch-1") -> uuid.UUID:
    out = pay.charge(
        books,
        key,
        customer="alice:wallet",
        merchant="shop:balance",
        amount="50.00",
        asset="USD",
        fee="1.75",
        platform="revenue:fees",
        description="order 17",
    )
    assert out.entry_id is not None
    return out.entry_id


def test_charge_splits_fee_in_one_entry(books: Ledger) -> None:
    charge_shop(books)
    assert avail(books, "alice:wallet") == Decimal("50.00")
    assert avail(books, "shop:balance") == Decimal("48.25")
    assert avail(books, "revenue:fees") == Decimal("1.75")
    with pytest.raises(InvalidAmount):
        pay.charge(
            books,
            "bad-fee",
            customer="alice:wallet",
            merchant="shop:balance",
            amount="5",
            asset="USD",
            fee="6",
            platform="revenue:fees",
        )


def test_refunds_partial_then_full_never_above_captured(books: Ledger) -> None:
    charge_id = charge_shop(books)
    pay.refund(books, "rf-1", charge_id, amount="20.00")
    assert avail(books, "alice:wallet") == Decimal("70.00")
    assert avail(books, "shop:balance") == Decimal("28.25")  # merchant's share first
    assert avail(books, "revenue:fees") == Decimal("1.75")
    pay.refund(books, "rf-2", charge_id, amount="29.00")  # takes 28.25 + 0.75 of the fee
    assert avail(books, "shop:balance") == Decimal("0.00")
    assert avail(books, "revenue:fees") == Decimal("1.00")
    # the amounts in the asset's decimals (before: "101 minor units of USD")
    with pytest.raises(EntryNotReversible, match=r"reversing 1\.01 USD .* \(1\.00 USD\)"):
        pay.refund(books, "rf-3", charge_id, amount="1.01")
    beyond = r"reversing 2\.00 USD on 'revenue:fees' .* \(1\.00 USD\)"
    with pytest.raises(EntryNotReversible, match=beyond):
        legs = [("revenue:fees", "2.00", "USD"), ("alice:wallet", "-2.00", "USD")]
        books.reverse("rf-legs", charge_id, legs)
    pay.refund(books, "rf-4", charge_id)  # the rest: 1.00
    assert avail(books, "alice:wallet") == Decimal("100.00")
    assert avail(books, "revenue:fees") == Decimal("0.00")
    with pytest.raises(EntryNotReversible):
        pay.refund(books, "rf-5", charge_id, amount="0.01")


def test_concurrent_refunds_never_exceed_the_charge(store_url: str) -> None:
    with Ledger.open(store_url) as setup:
        open_books(setup)
        charge_id = charge_shop(setup)
    results: list[str] = []

    def worker(n: int) -> None:
        with Ledger.open(store_url) as books:
            for i in range(6):
                try:
                    pay.refund(books, f"race-{n}-{i}", charge_id, amount="5.00")
                    results.append("ok")
                except EntryNotReversible:
                    results.append("over")

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count("ok") == 10 and results.count("over") == 14
    with Ledger.open(store_url) as books:
        assert avail(books, "alice:wallet") == Decimal("100.00")
        assert avail(books, "shop:balance") + avail(books, "revenue:fees") == Decimal("0.00")
        assert audit(books.store).clean


def test_payout_of_available_balance_is_once(books: Ledger) -> None:
    charge_shop(books)
    out = pay.payout(books, "po-1", merchant="shop:balance", rail="bank:payouts")
    assert out.entry_id is not None
    assert avail(books, "shop:balance") == Decimal("0.00")
    charge_shop(books, "ch-2")
    again = pay.payout(books, "po-1", merchant="shop:balance", rail="bank:payouts")
    assert again.replayed and again.entry_id == out.entry_id
    assert avail(books, "shop:balance") == Decimal("48.25")  # the new charge stays
    pay.confirm_bank_transfer(books, "po-1:ok", out.entry_id)
    with pytest.raises(BalanceRuleViolated):
        pay.payout(books, "po-2", merchant="shop:balance", rail="bank:payouts", amount="48.26")


def test_subscription_charges_once_per_period(books: Ledger) -> None:
    for _ in range(3):
        out = pay.charge_subscription(
            books,
            subscription="sub-9",
            period="2026-03",
            customer="alice:wallet",
            merchant="shop:balance",
            amount="9.99",
            asset="USD",
        )
    assert out.replayed
    pay.charge_subscription(
        books,
        subscription="sub-9",
        period="2026-04",
        customer="alice:wallet",
        merchant="shop:balance",
        amount="9.99",
        asset="USD",
    )
    assert avail(books, "alice:wallet") == Decimal("80.02")
    with pytest.raises(IdempotencyConflict):
        pay.charge_subscription(
            books,
            subscription="sub-9",
            period="2026-04",
            customer="alice:wallet",
            merchant="shop:balance",
            amount="19.99",
            asset="USD",
        )


# -- FX -----------------------------------------------------------------------


def test_fx_payment_balances_each_currency_and_records_rate(books: Ledger) -> None:
    out = pay.fx_pay(
        books,
        "fx-1",
        payer="alice:wallet",
        payee="erin:wallet",
        amount="10.00",
        pay_asset="USD",
        receive_asset="EUR",
        rate="0.923456",
        fx_accounts={"USD": "fx:usd", "EUR": "fx:eur"},
    )
    assert out.ok
    assert avail(books, "alice:wallet") == Decimal("90.00")
    assert avail(books, "erin:wallet") == Decimal("9.23")  # rounded down
    assert books.balance("fx:usd").posted == Decimal("-10.00")
    assert books.balance("fx:eur").posted == Decimal("9.23")
    with pytest.raises(BalanceRuleViolated):
        pay.fx_pay(
            books,
            "fx-2",
            payer="alice:wallet",
            payee="erin:wallet",
            amount="90.01",
            pay_asset="USD",
            receive_asset="EUR",
            rate="0.9",
            fx_accounts={"USD": "fx:usd", "EUR": "fx:eur"},
        )


# -- risk -----------------------------------------------------------------------


def no_big_p2p(check: RiskCheck) -> str | None:
    meta = getattr(check.command, "metadata", {})
    out = [amount for _, amount, _ in check.legs if amount > 0]
    if meta.get("flow") in ("p2p", "request") and out and max(out) > Decimal("25"):
        return "p2p over 25 needs review"
    return None


def test_risk_veto_is_final_for_its_key(store_url: str) -> None:
    with Ledger.open(store_url, risk=no_big_p2p) as books:
        open_books(books)
        with pytest.raises(PaymentVetoed) as caught:
            pay.send(
                books,
                "big-p2p",
                sender="alice:wallet",
                recipient="bob:wallet",
                amount="30",
                asset="USD",
            )
        assert "needs review" in caught.value.message
        pay.send(
            books,
            "small-p2p",
            sender="alice:wallet",
            recipient="bob:wallet",
            amount="5",
            asset="USD",
        )
        pay.charge(
            books,
            "big-charge",
            customer="alice:wallet",
            merchant="shop:balance",
            amount="30",
            asset="USD",
        )
        req = pay.request_money(
            books, "r-big", requester="bob:wallet", payer="alice:wallet", amount="40", asset="USD"
        )
        assert req.entry_id is not None
        with pytest.raises(PaymentVetoed):
            pay.accept_request(books, "r-big:pay", req.entry_id)
    # the policy is gone, the veto stays under its key
    with Ledger.open(store_url) as books:
        with pytest.raises(PaymentVetoed) as again:
            pay.send(
                books,
                "big-p2p",
                sender="alice:wallet",
                recipient="bob:wallet",
                amount="30",
                asset="USD",
            )
        assert again.value.replayed
        assert avail(books, "alice:wallet") == Decimal("65.00")
        assert audit(books.store).clean


def test_policy_sees_current_balances(books: Ledger) -> None:
    seen: list[Decimal] = []

    def watch(check: RiskCheck) -> None:
        seen.append(check.balances["alice:wallet"].available)

    books._executor.risk = watch
    pay.send(books, "w1", sender="alice:wallet", recipient="bob:wallet", amount="10", asset="USD")
    pay.send(books, "w2", sender="alice:wallet", recipient="bob:wallet", amount="10", asset="USD")
    assert seen == [Decimal("100.00"), Decimal("90.00")]
