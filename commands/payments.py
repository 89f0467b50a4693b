"""Common payment flows as small recipes over the core commands.

Each recipe takes the ledger (a :class:`~ledger.Ledger`, or an
:class:`~ledger.AsyncLedger`: then the call returns a coroutine to await), an
idempotency ``key`` chosen by the caller (one per user request: a retry sends the
same key) and the flow's parameters, applies one command (or one atomic batch) and
returns its :class:`~ledger.Outcome` (``outcome.entry_id`` is the entry it recorded).

Every recipe checks its own meaning before it applies anything, so a refused request
has used no key and may be fixed and sent again under the same key: amounts, fees and
rates are positive (a fee may be zero: no fee), the two sides of a payment are
different accounts, a fee never exceeds what it is taken from, and enumerated values
(visibility, mode) are one of theirs. Those refusals raise
:class:`~ledger.errors.InvalidAmount` or :class:`~ledger.errors.InvalidCommand`.
Failures decided by the ledger's state raise the core's typed errors:
:class:`~ledger.errors.BalanceRuleViolated` for insufficient funds,
:class:`~ledger.errors.HoldExpired`, :class:`~ledger.errors.EntryNotReversible` for
an over-refund, :class:`~ledger.errors.IdempotencyConflict`,
:class:`~ledger.errors.PaymentVetoed` when the ledger's risk policy says no.

Amount arithmetic (fee sums, FX conversion) is exact at any size the ledger accepts
(up to 18 decimals and ``AMOUNT_MAX_MINOR`` minor units): it runs in a decimal
context wide enough for every such amount, with inexact results trapped.

Every entry carries ``metadata["flow"]`` (the flow's name, see :data:`FLOWS`), so a
risk policy and the read models can tell the flows apart; P2P flows also carry
``note`` and ``visibility`` for the activity feed.

Sign convention (as everywhere in the ledger): a positive leg debits its account, a
negative one credits it. Users' wallets and merchants' balances are credit-normal
(a credit raises them); bank settlement accounts are debit-normal assets of the
platform.

The recipes live in private modules by flow family (people: ``_payments_p2p``; bank
rails and payouts: ``_payments_bank``; cards, charges, refunds and subscriptions:
``_payments_merchants``; FX: ``_payments_fx``; the argument checks and exact
arithmetic they share: ``_payments_checks``); this module re-exports them all.
"""

from __future__ import annotations

from ledger.commands._payments_bank import (
    confirm_bank_transfer,
    fail_bank_transfer,
    payout,
    return_bank_transfer,
    start_deposit,
    start_withdrawal,
)
from ledger.commands._payments_fx import fx_pay
from ledger.commands._payments_merchants import (
    authorize_card,
    capture_card,
    charge,
    charge_subscription,
    refund,
    release_card,
    subscription_key,
)
from ledger.commands._payments_p2p import (
    Mode,
    Split,
    Visibility,
    accept_request,
    cancel_p2p,
    decline_request,
    request_money,
    send,
    settle_p2p,
    split_bill,
    split_shares,
)

__all__ = [
    "FLOWS",
    "Mode",
    "Split",
    "Visibility",
    "accept_request",
    "authorize_card",
    "cancel_p2p",
    "capture_card",
    "charge",
    "charge_subscription",
    "confirm_bank_transfer",
    "decline_request",
    "fail_bank_transfer",
    "fx_pay",
    "payout",
    "refund",
    "release_card",
    "request_money",
    "return_bank_transfer",
    "send",
    "settle_p2p",
    "split_bill",
    "split_shares",
    "start_deposit",
    "start_withdrawal",
    "subscription_key",
]

#: The values of ``metadata["flow"]`` the recipes write.
FLOWS = (
    "p2p",
    "request",
    "bank_deposit",
    "bank_withdrawal",
    "bank_confirm",
    "bank_return",
    "card",
    "charge",
    "refund",
    "payout",
    "subscription",
    "fx",
)
