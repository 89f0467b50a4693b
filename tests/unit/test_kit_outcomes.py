"""LedgerInvariants judges what a write really did: an outcome returned instead of
raised (``books.submit``, ``submit_many``) counts by its status, a list of outcomes is
checked outcome by outcome on replay, and the balance rules checked are the account's
current ones (``change_limits``)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis.stateful import rule, run_state_machine_as_test

from ledger.commands.models import LegInput, PostEntry
from ledger.testing import LedgerInvariants

USD = "USD"
FAST = settings(max_examples=5, stateful_step_count=4, deadline=None, database=None)
counter = itertools.count()


def move(key: str, amount: str, asset: str = "USD") -> PostEntry:
    """``amount`` from ``a`` to ``bank``."""
    return PostEntry(
        key=key,
        legs=(
            LegInput(account="a", amount=amount, asset=asset),  # a debit: a pays
            LegInput(account="bank", amount=f"-{amount}", asset=asset),
        ),
    )


class Base(LedgerInvariants):
    def setup_books(self) -> None:
        self.open_account("bank", "USD", normal="debit")
        self.open_account("a", "USD", min_balance="0")
        self.books.transfer("seed", debit="bank", credit="a", amount="10", asset="USD")


def test_a_returned_rejection_is_not_reported_as_applied() -> None:
    """``remember`` said "applied" for any Outcome, a rejected or invalid one too, and
    then called the replay of an invalid one (which burns no key) "applied again"."""
    seen: list[str] = []

    class Submitting(Base):
        @rule()
        def overdraw_and_mistype(self) -> None:
            n = next(counter)
            over, typo = f"over-{n}", f"typo-{n}"
            seen.append(self.remember(over, lambda: self.books.submit(move(over, "1000")))[0])
            seen.append(self.remember(typo, lambda: self.books.submit(move(typo, "1", "ZZZ")))[0])
            assert over in self.requests and typo not in self.requests

    run_state_machine_as_test(Submitting, settings=FAST)
    assert set(seen) == {"balance_rule_violated", "unknown_asset"}


def test_a_batch_that_applies_again_on_retry_is_caught() -> None:
    """A flow whose retry makes fresh keys double-applies; with a list of outcomes
    (``submit_many``) the machine compared only "applied" and let it pass."""

    class FreshKeysOnRetry(Base):
        @rule()
        def pay(self) -> None:
            key = f"batch-{next(counter)}"
            tries = itertools.count()
            self.remember(
                key, lambda: self.books.submit_many([move(f"{key}-{next(tries)}", "0.01")])
            )

    with pytest.raises(AssertionError, match="was applied again"):
        run_state_machine_as_test(FreshKeysOnRetry, settings=FAST)


def test_the_rules_checked_are_the_accounts_current_ones() -> None:
    """The machine kept the bounds given at opening: after ``change_limits`` allowed
    an overdraft, a correct overdraft failed the test ("below its minimum")."""

    class Overdraft(Base):
        @rule()
        def allow_overdraft_and_use_it(self) -> None:
            n = next(counter)
            self.books.change_limits(f"limit-{n}", "a", min_balance="-100")
            key = f"od-{n}"
            code, _ = self.remember(
                key,
                lambda: self.books.transfer(key, debit="a", credit="bank", amount="15", asset=USD),
            )
            assert code == "applied"  # at most 4 steps: -50 at worst, within -100

    run_state_machine_as_test(Overdraft, settings=FAST)
