"""Example: check your own payment flows against the ledger's invariants with the
test kit (``pip install 'ledger-engine[testing]' pytest``, then ``pytest`` here).

The machine below is what an application team writes: it opens its accounts, then
hypothesis drives its flows (here P2P sends with a fee, and refunds of them as
reversals) in random orders, retrying requests; the kit checks conservation, balance
rules, idempotent replay and read model == store after every step.
"""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, rule

from ledger import payments
from ledger.testing import LedgerInvariants
from ledger.testing.strategies import p2p

WALLETS = ["users:1:wallet", "users:2:wallet", "users:3:wallet"]


class MyPaymentFlows(LedgerInvariants):
    sent = Bundle("sent")

    def setup_books(self) -> None:
        self.open_account("bank", "USD", normal="debit")
        self.open_account("revenue:fees", "USD")
        for wallet in WALLETS:
            self.open_account(wallet, "USD", min_balance="0", owner=wallet)
            self.books.transfer(
                f"seed:{wallet}", debit="bank", credit=wallet, amount="50", asset="USD"
            )

    @rule(target=sent, payment=p2p(WALLETS))
    def send_with_fee(self, payment: dict[str, Any]) -> Any:
        key = payment.pop("key")
        status, result = self.remember(
            key,
            lambda: payments.send(
                self.books, key, **payment, fee="0.10", fee_account="revenue:fees"
            ),
        )
        assert status in ("applied", "balance_rule_violated"), status
        return result.entry_id if status == "applied" else None

    @rule(entry=sent, key=st.uuids())
    def refund_it(self, entry: Any, key: Any) -> None:
        if entry is None:
            return
        request = f"refund-{key}"
        status, _ = self.remember(
            request, lambda: self.books.reverse(request, entry, description="refund")
        )
        assert status in ("applied", "entry_not_reversible", "balance_rule_violated"), status


MyPaymentFlows.TestCase.settings = settings(max_examples=25, stateful_step_count=20, deadline=None)
TestMyPaymentFlows = MyPaymentFlows.TestCase
