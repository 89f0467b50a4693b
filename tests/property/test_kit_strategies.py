"""The kit's strategies make only data the ledger accepts: amounts carry the asset's
decimals (an ISO currency's own scale by default: JPY has none), legs are over
distinct accounts, and arguments that could only make refused data are an
InvalidArgument when the strategy is made, not a failure deep in the user's test."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ledger import Ledger, payments
from ledger.commands.models import LegInput, PostEntry
from ledger.testing import memory_ledger
from ledger.testing.strategies import account_ids, amounts, balanced_legs, entries, p2p

FEW = settings(max_examples=25, deadline=None, database=None)


def funded(asset: str, accounts: list[str]) -> Ledger:
    books = memory_ledger()
    books.open_account("bank", asset, normal="debit")
    for name in accounts:
        books.open_account(name, asset)
        books.transfer(f"fund-{name}", debit="bank", credit=name, amount="1000000", asset=asset)
    return books


@FEW
@given(p2p(["w1", "w2"], asset="JPY"), entries(["w1", "w2", "w3"], asset="JPY"))
def test_yen_payments_and_entries_are_accepted(send: dict[str, object], entry: PostEntry) -> None:
    """Before, both drew amounts with 2 decimals for any asset: 0.01 JPY, refused."""
    with funded("JPY", ["w1", "w2", "w3"]) as books:
        payments.send(books, **send)
        assert books.submit(entry).status == "applied"
        assert all(leg.amount == leg.amount.to_integral_value() for leg in entry.legs)


@FEW
@given(p2p(["p1", "p2"], asset="PTS", scale=0))
def test_a_declared_asset_takes_its_scale(send: dict[str, object]) -> None:
    with memory_ledger() as books:
        books.declare_asset("PTS", 0)
        books.open_account("p1", "PTS", normal="debit")
        books.open_account("p2", "PTS")
        payments.send(books, **send)


@FEW
@given(balanced_legs(["a", "a", "b", "b", "c"], max_legs=5))
def test_legs_are_over_distinct_accounts(legs: tuple[LegInput, ...]) -> None:
    """Before, a repeated account in the list could get two legs of one entry."""
    accounts = [leg.account for leg in legs]
    assert len(set(accounts)) == len(accounts)
    assert sum(leg.amount for leg in legs) == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: amounts(min_minor=0),  # "positive amounts" included zero...
        lambda: amounts(min_minor=-5, max_minor=-1),  # ...and negatives
        lambda: amounts(max_minor=2**127),  # beyond the largest amount
        lambda: amounts(scale=19),
        lambda: account_ids("bad prefix!"),  # ids the ledger refuses
        lambda: balanced_legs(["a"]),
        lambda: balanced_legs(["a", "a"]),
        lambda: balanced_legs(["a", "b"], max_legs=65),
        lambda: balanced_legs(["a", "b"], asset="PTS"),  # no ISO scale to take
        lambda: p2p(["w", "w"]),
        lambda: p2p(["w", "v"], asset="PTS"),
    ],
)
def test_arguments_that_make_refused_data_are_refused(make: object) -> None:
    with pytest.raises(InvalidArgument):
        make().example()  # type: ignore[operator]


def test_amounts_stay_exact_and_positive() -> None:
    @FEW
    @given(amounts(18, max_minor=2**127 - 1), st.just(None))
    def check(amount: Decimal, _: None) -> None:
        assert amount > 0 and -amount.as_tuple().exponent == 18  # type: ignore[operator]

    check()
