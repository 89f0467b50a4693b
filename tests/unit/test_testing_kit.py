"""The test kit's invariants machine catches broken flows (it is not vacuous)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import settings
from hypothesis.stateful import rule, run_state_machine_as_test

from ledger import payments
from ledger.testing import LedgerInvariants, memory_ledger
from ledger.testing.strategies import balanced_legs, entries

FAST = settings(max_examples=10, stateful_step_count=5, deadline=None, database=None)
counter = itertools.count()


class Base(LedgerInvariants):
    def setup_books(self) -> None:
        self.open_account("bank", "USD", normal="debit")
        self.open_account("a", "USD", min_balance="0")
        self.books.transfer("seed", debit="bank", credit="a", amount="10", asset="USD")


def test_a_correct_flow_passes() -> None:
    class Good(Base):
        @rule()
        def pay(self) -> None:
            key = f"k{next(counter)}"
            self.remember(
                key,
                lambda: payments.send(
                    self.books, key, sender="a", recipient="bank", amount="1", asset="USD"
                ),
            )

    run_state_machine_as_test(Good, settings=FAST)


def test_a_flow_that_changes_its_request_on_retry_is_caught() -> None:
    class Unstable(Base):
        @rule()
        def pay(self) -> None:
            key = f"u{next(counter)}"
            amounts = iter(["1", "2", "3", "4", "5", "6", "7"])
            self.remember(
                key,
                lambda: payments.send(
                    self.books, key, sender="a", recipient="bank", amount=next(amounts), asset="USD"
                ),
            )

    with pytest.raises(AssertionError, match="first applied, now idempotency_conflict"):
        run_state_machine_as_test(Unstable, settings=FAST)


def test_a_read_model_that_drifts_is_caught() -> None:
    class Drifting(Base):
        @rule()
        def corrupt_view(self) -> None:
            self.runner.catch_up()
            with self.runner.views.transaction() as w:
                w.execute("UPDATE rm_balances SET posted = posted + 1 WHERE account = 'a'")

    with pytest.raises(AssertionError, match="read model of a differs"):
        run_state_machine_as_test(Drifting, settings=FAST)


def test_strategies_make_valid_commands() -> None:
    from hypothesis import given

    @given(entries(["x", "y", "z"]), balanced_legs(["p", "q"]))
    @settings(max_examples=30, deadline=None, database=None)
    def check(entry: object, legs: object) -> None:
        assert sum(leg.amount for leg in entry.legs) == 0  # type: ignore[attr-defined]
        assert sum(leg.amount for leg in legs) == 0  # type: ignore[attr-defined]

    check()
    with memory_ledger() as books:
        assert books.store.max_position() == 0
