"""Payment recipes over bank rails: deposits and withdrawals in flight, payouts of
a merchant's balance, and the bank's confirmation, failure or return of a transfer.

Re-exported by :mod:`ledger.commands.payments` and :mod:`ledger.payments`, which
users import; see there for what every recipe guarantees.
"""

from __future__ import annotations

import uuid

from ledger.assets import to_decimal
from ledger.commands import builders
from ledger.commands._payments_checks import _distinct, _meta, _positive, _reference
from ledger.commands.builders import AmountLike
from ledger.commands.flows import Steps, flow, read, write
from ledger.commands.models import ACCOUNT_ID_RULE, KEY_RULE, valid_name
from ledger.errors import IdempotencyConflict, InvalidAmount
from ledger.model import EntryState, Leg
from ledger.outcome import Outcome

__all__ = [
    "confirm_bank_transfer",
    "fail_bank_transfer",
    "payout",
    "return_bank_transfer",
    "start_deposit",
    "start_withdrawal",
]


# -- bank rails ---------------------------------------------------------------------------------


@flow
def start_deposit(
    key: str,
    *,
    wallet: str,
    rail: str,
    amount: AmountLike,
    asset: str,
    reference: str | None = None,
) -> Steps[Outcome]:
    """A bank deposit in flight: a hold debiting the rail's settlement account and
    crediting the wallet (seen as incoming, not yet available). Confirm with
    :func:`confirm_bank_transfer`, or :func:`fail_bank_transfer` if it fails."""
    value = _positive(amount)
    _distinct(wallet=wallet, rail=rail)
    legs = [(rail, value, asset), (wallet, value.copy_negate(), asset)]
    meta = _meta("bank_deposit", None, reference=_reference(reference))
    return (yield from write(builders.hold(key, legs, metadata=meta)))


@flow
def start_withdrawal(
    key: str,
    *,
    wallet: str,
    rail: str,
    amount: AmountLike,
    asset: str,
    reference: str | None = None,
) -> Steps[Outcome]:
    """A withdrawal to the user's bank in flight: a hold debiting the wallet (the
    amount is reserved: no longer available) and crediting the rail's settlement
    account. Insufficient available funds raise BalanceRuleViolated."""
    value = _positive(amount)
    _distinct(wallet=wallet, rail=rail)
    legs = [(wallet, value, asset), (rail, value.copy_negate(), asset)]
    meta = _meta("bank_withdrawal", None, reference=_reference(reference))
    return (yield from write(builders.hold(key, legs, metadata=meta)))


@flow
def confirm_bank_transfer(key: str, transfer_id: uuid.UUID) -> Steps[Outcome]:
    """The bank confirmed a deposit, withdrawal or payout: post its hold in full."""
    command = builders.post_hold(key, transfer_id, metadata={"flow": "bank_confirm"})
    return (yield from write(command))


@flow
def fail_bank_transfer(key: str, transfer_id: uuid.UUID, *, reason: str = "") -> Steps[Outcome]:
    """The transfer failed or was returned before settling: release its hold."""
    return (yield from write(builders.void_hold(key, transfer_id, description=reason)))


@flow
def return_bank_transfer(key: str, posted_id: uuid.UUID, *, reason: str = "") -> Steps[Outcome]:
    """The bank returned a transfer after it settled: reverse the posting (the
    ``entry_id`` of :func:`confirm_bank_transfer`'s outcome)."""
    command = builders.reverse(key, posted_id, description=reason, metadata={"flow": "bank_return"})
    return (yield from write(command))


# -- payouts -----------------------------------------------------------------------------------


@flow
def payout(
    key: str,
    *,
    merchant: str,
    rail: str,
    amount: AmountLike | None = None,
    reference: str | None = None,
) -> Steps[Outcome]:
    """Pay a merchant's balance out to its bank: a hold (like a withdrawal) that
    :func:`confirm_bank_transfer` posts or :func:`fail_bank_transfer` releases.
    ``amount=None`` pays out the whole available balance as read now; a retry with
    the same key returns the first outcome even if the balance has changed since (it
    is the same request: the amount is the one that key's payout holds). The key of
    another request (another merchant, rail or reference, or not a payout) is
    IdempotencyConflict; a key whose payout was rejected replays that rejection."""
    value = None if amount is None else _positive(amount, "a payout")
    valid_name(ACCOUNT_ID_RULE, merchant, "merchant")
    _distinct(merchant=merchant, rail=rail)
    meta = _meta("payout", None, reference=_reference(reference))
    if value is None:
        valid_name(KEY_RULE, key, "key")
        earlier = yield from read(lambda books: books.recorded(key))
        if earlier is not None and not earlier.ok:
            return earlier.raise_for_status()  # a rejection: its amount is not known
        if earlier is not None:
            # Resent as the request that key recorded (its amount): the ledger replays
            # it, or refuses it as another request (IdempotencyConflict).
            entry_id = earlier.entry_id
            held = None if entry_id is None else (yield from read(lambda b: b.entry(entry_id)))
            debit = _payout_debit(key, held, merchant)
            token = yield from read(lambda books: books.asset(debit.asset))
            value = to_decimal(debit.amount, token)
            legs = [(merchant, value, token.code), (rail, value.copy_negate(), token.code)]
            return (yield from write(builders.hold(key, legs, metadata=meta)))
    balance = yield from read(lambda books: books.balance(merchant))
    if value is None:
        value = balance.available
        if value <= 0:
            raise InvalidAmount(f"{merchant!r} has no available balance to pay out")
    legs = [(merchant, value, balance.asset), (rail, value.copy_negate(), balance.asset)]
    return (yield from write(builders.hold(key, legs, metadata=meta)))


def _payout_debit(key: str, held: EntryState | None, merchant: str) -> Leg:
    """The merchant's leg of the payout recorded under ``key``; IdempotencyConflict
    if that entry is not a payout from ``merchant``."""
    debit = None
    if held is not None and held.kind == "pending" and len(held.legs) == 2:
        debit = next((leg for leg in held.legs if leg.amount > 0), None)
    if debit is None or debit.account != merchant:
        raise IdempotencyConflict(
            f"idempotency key {key!r} was already used for a different request"
        )
    return debit
