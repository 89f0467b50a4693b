"""Payment recipes for merchants: card authorizations and their capture or
release, charges with the platform's fee, refunds, and subscription charges.

Re-exported by :mod:`ledger.commands.payments` and :mod:`ledger.payments`, which
users import; see there for what every recipe guarantees.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any

from ledger.commands import builders
from ledger.commands._payments_checks import (
    _EXACT,
    _distinct,
    _entry_id,
    _fee,
    _meta,
    _positive,
    _reference,
)
from ledger.commands.builders import AmountLike
from ledger.commands.flows import Steps, flow, read, write
from ledger.commands.models import aware_instant
from ledger.errors import EntryNotFound, InvalidAmount, InvalidCommand
from ledger.outcome import Outcome

__all__ = [
    "authorize_card",
    "capture_card",
    "charge",
    "charge_subscription",
    "refund",
    "release_card",
    "subscription_key",
]


# -- cards ----------------------------------------------------------------------------------------


@flow
def authorize_card(
    key: str,
    *,
    card: str,
    merchant: str,
    amount: AmountLike,
    asset: str,
    expires_at: datetime,
    reference: str | None = None,
) -> Steps[Outcome]:
    """A card authorization: a hold on the cardholder's account for the merchant,
    released by ``expire_due`` after ``expires_at`` unless captured first. Refused: a
    non-positive amount, the card and merchant the same, an ``expires_at`` that is
    not a timezone-aware datetime (``None`` too: an authorization always expires)."""
    value = _positive(amount)
    aware_instant(expires_at, "expires_at")
    _distinct(card=card, merchant=merchant)
    legs = [(card, value, asset), (merchant, value.copy_negate(), asset)]
    meta = _meta("card", None, reference=_reference(reference))
    return (yield from write(builders.hold(key, legs, expires_at=expires_at, metadata=meta)))


@flow
def capture_card(
    key: str, authorization_id: uuid.UUID, amount: AmountLike | None = None
) -> Steps[Outcome]:
    """Capture an authorization in full, or ``amount`` of it (the rest is released
    at once; more than authorized is ExceedsHold). A second capture is
    HoldNotPending; after expiry, HoldExpired."""
    meta = {"flow": "card"}
    value = None if amount is None else _positive(amount, "a capture")
    _entry_id(authorization_id, "authorization_id")
    hold = yield from read(lambda books: books.entry(authorization_id))
    if value is None or hold is None:
        return (yield from write(builders.post_hold(key, authorization_id, metadata=meta)))
    if hold.kind != "pending" or len(hold.legs) != 2:
        raise EntryNotFound(f"no card authorization with id {authorization_id}")
    debit = next(leg for leg in hold.legs if leg.amount > 0)
    credit = next(leg for leg in hold.legs if leg.amount < 0)
    legs = [
        (debit.account, value, debit.asset),
        (credit.account, value.copy_negate(), credit.asset),
    ]
    return (yield from write(builders.post_hold(key, authorization_id, legs, metadata=meta)))


@flow
def release_card(key: str, authorization_id: uuid.UUID) -> Steps[Outcome]:
    """Release an authorization without capturing it."""
    return (yield from write(builders.void_hold(key, authorization_id, description="released")))


# -- merchants ----------------------------------------------------------------------------------


def _charge_command(
    key: str,
    *,
    customer: str,
    merchant: str,
    amount: AmountLike,
    asset: str,
    fee: AmountLike,
    platform: str | None,
    description: str,
    metadata: dict[str, Any],
) -> Any:
    gross, cut = _positive(amount), _fee(fee)
    if cut > gross:
        raise InvalidAmount(f"the fee ({cut}) must not exceed the amount ({gross})")
    if cut and platform is None:
        raise InvalidCommand("a fee needs the platform's revenue account")
    _distinct(customer=customer, merchant=merchant, platform=platform if cut else None)
    legs: list[tuple[str, Decimal, str]] = [(customer, gross, asset)]
    if cut < gross:
        legs.append((merchant, _EXACT.subtract(gross, cut).copy_negate(), asset))
    if cut:
        assert platform is not None
        legs.append((platform, cut.copy_negate(), asset))
    return builders.post(key, legs, description=description, metadata=metadata)


@flow
def charge(
    key: str,
    *,
    customer: str,
    merchant: str,
    amount: AmountLike,
    asset: str,
    fee: AmountLike = 0,
    platform: str | None = None,
    description: str = "",
    metadata: Mapping[str, Any] | None = None,
) -> Steps[Outcome]:
    """Charge a customer for a merchant, with the platform's fee split in the same
    entry: customer debit ``amount``; merchant credit ``amount - fee`` (listed first);
    platform credit ``fee``. Refused: a non-positive amount, a fee below zero or above
    the amount, a fee without a platform account, the same account on two sides, a
    ``metadata`` key the recipe records itself (``flow``, ``merchant``) with another
    value (it would be overwritten)."""
    command = _charge_command(
        key,
        customer=customer,
        merchant=merchant,
        amount=amount,
        asset=asset,
        fee=fee,
        platform=platform,
        description=description,
        metadata=_meta("charge", metadata, merchant=merchant),
    )
    return (yield from write(command))


@flow
def refund(
    key: str,
    charge_id: uuid.UUID,
    *,
    amount: AmountLike | None = None,
    reason: str = "",
) -> Steps[Outcome]:
    """Refund a charge in full (``amount=None``: everything not yet refunded) or in
    part. The customer gets ``amount`` back; the merchant's share gives it back first
    and the platform's fee only once the merchant's share is fully refunded (so a
    full refund returns everything, and the platform keeps its fee on partial
    refunds up to the merchant's share). The total refunded can never exceed what was
    charged, also when refunds race (EntryNotReversible)."""
    meta = {"flow": "refund"}
    value = None if amount is None else _positive(amount, "a refund")
    _entry_id(charge_id, "charge_id")
    original = yield from read(lambda books: books.entry(charge_id))
    if value is None or original is None:
        whole = builders.reverse(key, charge_id, description=reason, metadata=meta)
        return (yield from write(whole))
    debits = [leg for leg in original.legs if leg.amount > 0]
    if len(debits) != 1:
        raise EntryNotFound(f"entry {charge_id} is not a charge (one customer debit)")
    command = builders.reverse(
        key, charge_id, amount=value, account=debits[0].account, description=reason, metadata=meta
    )
    return (yield from write(command))


def subscription_key(subscription: str, period: str) -> str:
    """The idempotency key of a subscription's charge for one period (both are
    non-empty strings, else InvalidCommand)."""
    for what, text in (("subscription", subscription), ("period", period)):
        if not isinstance(text, str) or not text:
            raise InvalidCommand(f"{what} is a non-empty string, not {type(text).__name__}")
    return f"subscription:{subscription}:{period}"


@flow
def charge_subscription(
    *,
    subscription: str,
    period: str,
    customer: str,
    merchant: str,
    amount: AmountLike,
    asset: str,
    fee: AmountLike = 0,
    platform: str | None = None,
) -> Steps[Outcome]:
    """Charge one period of a subscription (e.g. ``period="2026-11"``). The key is
    derived from the subscription and the period, so however often a scheduler
    retries, each period is charged once. The entry is a charge (see :func:`charge`)
    whose ``metadata["flow"]`` is ``"subscription"``."""
    meta = {"subscription": subscription, "period": period, "merchant": merchant}
    command = _charge_command(
        subscription_key(subscription, period),
        customer=customer,
        merchant=merchant,
        amount=amount,
        asset=asset,
        fee=fee,
        platform=platform,
        description=f"subscription {subscription} {period}",
        metadata=_meta("subscription", meta),
    )
    return (yield from write(command))
