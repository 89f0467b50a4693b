"""``payments.payout(amount=None)`` and its idempotency key, in both forms (a
``Ledger`` and an awaited ``AsyncLedger``), on every store.

A payout of "the whole available balance" is not known in advance, so a retry cannot
be compared with the first request by its amount; the recipe used to return whatever
outcome its key had recorded. A key already used for another request (another
merchant's payout, another rail or reference, or not a payout at all) then answered
"applied" for a payout that never happened. It must be IdempotencyConflict, with
nothing changed, while a true retry still replays its first outcome whatever the
balance and the hold's state have become since."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import pytest

from ledger import AsyncLedger, IdempotencyConflict, Ledger
from ledger import payments as pay

Form = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def form(request: pytest.FixtureRequest) -> Iterator[Callable[[Ledger], Form]]:
    """Run a recipe on the ledger (``form(books)(recipe, key, **kw)``), directly or
    awaited through an AsyncLedger on a loop of its own."""
    loops: list[asyncio.AbstractEventLoop] = []

    def bind(books: Ledger) -> Form:
        if request.param == "sync":
            return lambda recipe, *args, **kw: recipe(books, *args, **kw)
        loop = asyncio.new_event_loop()
        loops.append(loop)
        abooks = AsyncLedger(books)
        return lambda recipe, *args, **kw: loop.run_until_complete(recipe(abooks, *args, **kw))

    yield bind
    for loop in loops:
        loop.close()


@pytest.fixture
def books(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(store_url) as ledger:
        ledger.open_account("bank", "USD", normal="debit")
        ledger.open_account("bank:2", "USD", normal="debit")
        for name in ("shop", "other", "alice"):
            ledger.open_account(name, "USD", min_balance="0")
            ledger.transfer(f"fund:{name}", debit="bank", credit=name, amount="50", asset="USD")
        yield ledger


def state(books: Ledger) -> dict[str, tuple[Decimal, Decimal, Decimal]]:
    return {
        name: (b.posted, b.pending_out, b.pending_in)
        for name in ("bank", "bank:2", "shop", "other", "alice")
        for b in [books.balance(name)]
    }


@pytest.mark.parametrize(
    "earlier",
    ["another merchant", "another rail", "another reference", "a payment", "an account"],
)
def test_a_payout_of_everything_under_another_requests_key_is_a_conflict(
    books: Ledger, form: Callable[[Ledger], Form], earlier: str
) -> None:
    run = form(books)
    if earlier == "a payment":
        pay.send(books, "k", sender="alice", recipient="other", amount="1", asset="USD")
    elif earlier == "an account":
        books.open_account("new", "USD", key="k")
    else:
        merchant = "other" if earlier == "another merchant" else "shop"
        rail = "bank:2" if earlier == "another rail" else "bank"
        ref = "r2" if earlier == "another reference" else "r1"
        pay.payout(books, "k", merchant=merchant, rail=rail, reference=ref)
    before = state(books)
    with pytest.raises(IdempotencyConflict):
        run(pay.payout, "k", merchant="shop", rail="bank", reference="r1")
    assert state(books) == before


def test_a_payout_of_everything_replays_whatever_happened_since(
    books: Ledger, form: Callable[[Ledger], Form]
) -> None:
    run = form(books)
    first = run(pay.payout, "p", merchant="shop", rail="bank", reference="r1")
    assert first.ok and books.balance("shop").pending_out == Decimal("50.00")
    books.transfer("more", debit="bank", credit="shop", amount="7", asset="USD")
    again = run(pay.payout, "p", merchant="shop", rail="bank", reference="r1")
    assert again.replayed and again.entry_id == first.entry_id
    pay.confirm_bank_transfer(books, "c", first.entry_id)
    again = run(pay.payout, "p", merchant="shop", rail="bank", reference="r1")
    assert again.replayed and again.entry_id == first.entry_id
    # A payout of a given amount, retried as "everything": the same request.
    fixed = run(pay.payout, "q", merchant="shop", rail="bank", amount="3")
    pay.fail_bank_transfer(books, "f", fixed.entry_id)
    again = run(pay.payout, "q", merchant="shop", rail="bank")
    assert again.replayed and again.entry_id == fixed.entry_id
    balance = books.balance("shop")
    assert (balance.posted, balance.pending_out) == (Decimal("7.00"), Decimal("0.00"))
