"""Common payment flows as small functions over the core commands.

Each function takes the :class:`~ledger.Ledger`, an idempotency ``key`` chosen by the
caller (one per user request: a retry sends the same key) and the flow's parameters,
applies one command (or one atomic batch) and returns its :class:`~ledger.Outcome`
(``outcome.entry_id`` is the entry it recorded). Failures raise the core's typed
errors: :class:`~ledger.errors.BalanceRuleViolated` for insufficient funds,
:class:`~ledger.errors.HoldExpired`, :class:`~ledger.errors.EntryNotReversible` for an
over-refund, :class:`~ledger.errors.IdempotencyConflict`,
:class:`~ledger.errors.PaymentVetoed` when the ledger's risk policy says no.

Every entry carries ``metadata["flow"]`` (the flow's name, see :data:`FLOWS`), so a
risk policy and the read models can tell the flows apart; P2P flows also carry
``note`` and ``visibility`` for the activity feed.

Sign convention (as everywhere in the ledger): a positive leg debits its account, a
negative one credits it. Users' wallets and merchants' balances are credit-normal
(a credit raises them); bank settlement accounts are debit-normal assets of the
platform.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Literal

from ledger import events
from ledger.assets import parse_decimal, to_decimal, to_minor
from ledger.commands.models import RequestPayment
from ledger.errors import EntryNotFound, InvalidAmount, InvalidCommand
from ledger.facade import Ledger, build
from ledger.model import EntryState, entry_id_for_key
from ledger.outcome import Outcome

__all__ = [
    "FLOWS",
    "Split",
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

#: The values of ``metadata["flow"]`` this module writes.
FLOWS = (
    "p2p",
    "request",
    "bank_deposit",
    "bank_withdrawal",
    "card",
    "charge",
    "refund",
    "payout",
    "subscription",
    "fx",
)

Visibility = Literal["public", "friends", "private"]
AmountLike = Decimal | str | int


def _meta(flow: str, extra: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    meta: dict[str, Any] = dict(extra or {})
    meta.update({k: v for k, v in fields.items() if v is not None})
    meta["flow"] = flow
    return meta


def _neg(amount: AmountLike) -> Decimal:
    return -parse_decimal(amount)


def _entry(books: Ledger, entry_id: uuid.UUID) -> EntryState | None:
    """The entry's terms (immutable once written), or None: then the flow submits its
    command anyway, so that the core records EntryNotFound under the key."""
    found = books.store.load_streams([entry_id]).get(entry_id)
    return None if found is None else events.entry_state_from(*found)


def _recorded(books: Ledger, key: str) -> Outcome | None:
    """The outcome already recorded under ``key``, if any (a retry)."""
    key_id = entry_id_for_key(key)
    records, _ = books.store.read({key_id}, [])
    record = records.get(key_id)
    return None if record is None else Outcome.from_record(key, record.outcome)


# -- P2P ---------------------------------------------------------------------------------


def send(
    books: Ledger,
    key: str,
    *,
    sender: str,
    recipient: str,
    amount: AmountLike,
    asset: str,
    note: str = "",
    visibility: Visibility = "private",
    fee: AmountLike | None = None,
    fee_account: str | None = None,
    mode: Literal["instant", "standard"] = "instant",
    settle_by: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Outcome:
    """Send money between two wallets.

    ``instant``: one posted entry, available to the recipient at once; an optional
    ``fee`` is paid by the sender on top of ``amount`` to ``fee_account``.
    ``standard``: a hold (the sender's funds are reserved, the recipient sees them as
    incoming) that :func:`settle_p2p` posts later or :func:`cancel_p2p` releases;
    ``settle_by`` is the hold's deadline (after it, ``expire_due`` releases it).

    Entry: sender debit ``amount + fee``; recipient credit ``amount``; fee account
    credit ``fee``.
    """
    legs: list[tuple[str, Any, str]] = [(sender, amount, asset), (recipient, _neg(amount), asset)]
    if fee is not None and parse_decimal(fee) != 0:
        if fee_account is None:
            raise InvalidCommand("a fee needs a fee_account")
        legs = [
            (sender, parse_decimal(amount) + parse_decimal(fee), asset),
            (recipient, _neg(amount), asset),
            (fee_account, _neg(fee), asset),
        ]
    meta = _meta("p2p", metadata, note=note or None, visibility=visibility, mode=mode)
    if mode == "instant":
        return books.post(key, legs, description=note, metadata=meta)
    return books.hold(key, legs, description=note, metadata=meta, expires_at=settle_by)


def settle_p2p(books: Ledger, key: str, payment_id: uuid.UUID) -> Outcome:
    """Post a standard P2P payment (its hold) in full."""
    return books.post_hold(key, payment_id, metadata={"flow": "p2p"})


def cancel_p2p(books: Ledger, key: str, payment_id: uuid.UUID) -> Outcome:
    """Release a standard P2P payment that has not settled."""
    return books.void_hold(key, payment_id, description="cancelled")


# -- requests and bill splits -----------------------------------------------------------------


def request_money(
    books: Ledger,
    key: str,
    *,
    requester: str,
    payer: str,
    amount: AmountLike,
    asset: str,
    note: str = "",
    visibility: Visibility = "private",
) -> Outcome:
    """Ask ``payer`` for money. Nothing moves until :func:`accept_request`; the
    outcome's ``entry_id`` is the request id."""
    return books.request_payment(
        key,
        requester=requester,
        payer=payer,
        amount=amount,
        asset=asset,
        description=note,
        metadata=_meta("request", None, note=note or None, visibility=visibility),
    )


def accept_request(books: Ledger, key: str, request_id: uuid.UUID) -> Outcome:
    """Pay a request in full (once: a second payment is
    :class:`~ledger.errors.RequestNotOpen`). Entry: payer debit, requester credit."""
    return books.pay_request(key, request_id, metadata={"flow": "request"})


def decline_request(books: Ledger, key: str, request_id: uuid.UUID, *, reason: str = "") -> Outcome:
    """Decline (or, by the requester, cancel) a request; it can no longer be paid."""
    return books.decline_request(key, request_id, description=reason)


def split_shares(total: int, people: int) -> list[int]:
    """Split ``total`` minor units among ``people``: everyone gets ``total // people``
    and the first ``total % people`` people one minor unit more, so the shares add up
    to the total exactly (no cent lost or invented)."""
    if people < 1:
        raise InvalidCommand("a bill is split among at least one person")
    base, rest = divmod(total, people)
    return [base + (1 if i < rest else 0) for i in range(people)]


@dataclass(frozen=True, slots=True)
class Split:
    """A bill split: the batch outcome and one (payer, share, request id) per payer."""

    outcome: Outcome
    requests: tuple[tuple[str, Decimal, uuid.UUID], ...]
    requester_share: Decimal


def split_bill(
    books: Ledger,
    key: str,
    *,
    requester: str,
    payers: Sequence[str],
    amount: AmountLike,
    asset: str,
    note: str = "",
    visibility: Visibility = "private",
    include_requester: bool = True,
) -> Split:
    """Split a bill that ``requester`` paid among the ``payers`` (and the requester
    too, with ``include_requester``): one request per payer, created all-or-nothing.

    Remainder rule (:func:`split_shares`): the payers, in the order given, come first
    and the requester last, so odd minor units are asked of the first payers and the
    requester never asks for more than the bill. A payer whose share is zero (a bill
    of fewer minor units than people) gets no request. Each request's key is
    ``f"{key}:{payer}"``.
    """
    if len(set(payers)) != len(payers) or requester in payers:
        raise InvalidCommand("payers must be distinct and must not include the requester")
    if not payers:
        raise InvalidCommand("a split needs at least one payer")
    token = books.asset(asset)
    total = to_minor(parse_decimal(amount), token)
    if total <= 0:
        raise InvalidAmount("a bill must be positive")
    shares = split_shares(total, len(payers) + (1 if include_requester else 0))
    commands = [
        build(
            RequestPayment,
            key=f"{key}:{payer}",
            requester=requester,
            payer=payer,
            amount=to_decimal(share, token),
            asset=asset,
            description=note,
            metadata=_meta("request", None, note=note or None, visibility=visibility, split=key),
        )
        for payer, share in zip(payers, shares, strict=False)
        if share > 0
    ]
    outcome = books.atomic(key, commands)
    requests = tuple((cmd.payer, cmd.amount, entry_id_for_key(cmd.key)) for cmd in commands)
    mine = to_decimal(shares[-1], token) if include_requester else Decimal(0)
    return Split(outcome, requests, mine)


# -- bank rails ---------------------------------------------------------------------------------


def start_deposit(
    books: Ledger,
    key: str,
    *,
    wallet: str,
    rail: str,
    amount: AmountLike,
    asset: str,
    reference: str | None = None,
) -> Outcome:
    """A bank deposit in flight: a hold debiting the rail's settlement account and
    crediting the wallet (seen as incoming, not yet available). Confirm with
    :func:`confirm_bank_transfer`, or :func:`fail_bank_transfer` if it fails."""
    return books.hold(
        key,
        [(rail, amount, asset), (wallet, _neg(amount), asset)],
        metadata=_meta("bank_deposit", None, reference=reference),
    )


def start_withdrawal(
    books: Ledger,
    key: str,
    *,
    wallet: str,
    rail: str,
    amount: AmountLike,
    asset: str,
    reference: str | None = None,
) -> Outcome:
    """A withdrawal to the user's bank in flight: a hold debiting the wallet (the
    amount is reserved: no longer available) and crediting the rail's settlement
    account. Insufficient available funds raise BalanceRuleViolated."""
    return books.hold(
        key,
        [(wallet, amount, asset), (rail, _neg(amount), asset)],
        metadata=_meta("bank_withdrawal", None, reference=reference),
    )


def confirm_bank_transfer(books: Ledger, key: str, transfer_id: uuid.UUID) -> Outcome:
    """The bank confirmed a deposit, withdrawal or payout: post its hold in full."""
    return books.post_hold(key, transfer_id, metadata={"flow": "bank_confirm"})


def fail_bank_transfer(
    books: Ledger, key: str, transfer_id: uuid.UUID, *, reason: str = ""
) -> Outcome:
    """The transfer failed or was returned before settling: release its hold."""
    return books.void_hold(key, transfer_id, description=reason)


def return_bank_transfer(
    books: Ledger, key: str, posted_id: uuid.UUID, *, reason: str = ""
) -> Outcome:
    """The bank returned a transfer after it settled: reverse the posting (the
    ``entry_id`` of :func:`confirm_bank_transfer`'s outcome)."""
    return books.reverse(key, posted_id, description=reason, metadata={"flow": "bank_return"})


# -- cards ----------------------------------------------------------------------------------------


def authorize_card(
    books: Ledger,
    key: str,
    *,
    card: str,
    merchant: str,
    amount: AmountLike,
    asset: str,
    expires_at: datetime,
    reference: str | None = None,
) -> Outcome:
    """A card authorization: a hold on the cardholder's account for the merchant,
    released by ``expire_due`` after ``expires_at`` unless captured first."""
    return books.hold(
        key,
        [(card, amount, asset), (merchant, _neg(amount), asset)],
        expires_at=expires_at,
        metadata=_meta("card", None, reference=reference),
    )


def capture_card(
    books: Ledger, key: str, authorization_id: uuid.UUID, amount: AmountLike | None = None
) -> Outcome:
    """Capture an authorization in full, or ``amount`` of it (the rest is released
    at once). A second capture is HoldNotPending; after expiry, HoldExpired."""
    hold = _entry(books, authorization_id)
    if amount is None or hold is None:
        return books.post_hold(key, authorization_id, metadata={"flow": "card"})
    if hold.kind != "pending" or len(hold.legs) != 2:
        raise EntryNotFound(f"no card authorization with id {authorization_id}")
    debit = next(leg for leg in hold.legs if leg.amount > 0)
    credit = next(leg for leg in hold.legs if leg.amount < 0)
    legs = [(debit.account, amount, debit.asset), (credit.account, _neg(amount), credit.asset)]
    return books.post_hold(key, authorization_id, legs, metadata={"flow": "card"})


def release_card(books: Ledger, key: str, authorization_id: uuid.UUID) -> Outcome:
    """Release an authorization without capturing it."""
    return books.void_hold(key, authorization_id, description="released")


# -- merchants ----------------------------------------------------------------------------------


def charge(
    books: Ledger,
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
) -> Outcome:
    """Charge a customer for a merchant, with the platform's fee split in the same
    entry: customer debit ``amount``; merchant credit ``amount - fee`` (listed first);
    platform credit ``fee``."""
    gross, cut = parse_decimal(amount), parse_decimal(fee)
    if cut < 0 or cut > gross:
        raise InvalidAmount("the fee must be between zero and the amount")
    legs: list[tuple[str, Any, str]] = [(customer, gross, asset)]
    if cut < gross:
        legs.append((merchant, -(gross - cut), asset))
    if cut:
        if platform is None:
            raise InvalidCommand("a fee needs the platform's revenue account")
        legs.append((platform, -cut, asset))
    return books.post(
        key, legs, description=description, metadata=_meta("charge", metadata, merchant=merchant)
    )


def refund(
    books: Ledger,
    key: str,
    charge_id: uuid.UUID,
    *,
    amount: AmountLike | None = None,
    reason: str = "",
) -> Outcome:
    """Refund a charge in full (``amount=None``: everything not yet refunded) or in
    part. The customer gets ``amount`` back; the merchant's share gives it back first
    and the platform's fee only once the merchant's share is fully refunded (so a
    full refund returns everything, and the platform keeps its fee on partial
    refunds up to the merchant's share). The total refunded can never exceed what was
    charged, also when refunds race (EntryNotReversible)."""
    meta = {"flow": "refund"}
    original = _entry(books, charge_id)
    if amount is None or original is None:
        return books.reverse(key, charge_id, description=reason, metadata=meta)
    debits = [leg for leg in original.legs if leg.amount > 0]
    if len(debits) != 1:
        raise EntryNotFound(f"entry {charge_id} is not a charge (one customer debit)")
    return books.reverse(
        key,
        charge_id,
        amount=parse_decimal(amount),
        account=debits[0].account,
        description=reason,
        metadata=meta,
    )


def payout(
    books: Ledger,
    key: str,
    *,
    merchant: str,
    rail: str,
    amount: AmountLike | None = None,
    reference: str | None = None,
) -> Outcome:
    """Pay a merchant's balance out to its bank: a hold (like a withdrawal) that
    :func:`confirm_bank_transfer` posts or :func:`fail_bank_transfer` releases.
    ``amount=None`` pays out the whole available balance as read now; a retry with
    the same key returns the first outcome even if the balance has changed since."""
    if amount is None:
        earlier = _recorded(books, key)
        if earlier is not None:
            return earlier.raise_for_status()
    balance = books.balance(merchant)
    if amount is None:
        amount = balance.available
        if amount <= 0:
            raise InvalidAmount(f"{merchant!r} has no available balance to pay out")
    asset = balance.asset
    return books.hold(
        key,
        [(merchant, amount, asset), (rail, _neg(amount), asset)],
        metadata=_meta("payout", None, reference=reference),
    )


def subscription_key(subscription: str, period: str) -> str:
    """The idempotency key of a subscription's charge for one period."""
    return f"subscription:{subscription}:{period}"


def charge_subscription(
    books: Ledger,
    *,
    subscription: str,
    period: str,
    customer: str,
    merchant: str,
    amount: AmountLike,
    asset: str,
    fee: AmountLike = 0,
    platform: str | None = None,
) -> Outcome:
    """Charge one period of a subscription (e.g. ``period="2026-11"``). The key is
    derived from the subscription and the period, so however often a scheduler
    retries, each period is charged once."""
    return charge(
        books,
        subscription_key(subscription, period),
        customer=customer,
        merchant=merchant,
        amount=amount,
        asset=asset,
        fee=fee,
        platform=platform,
        description=f"subscription {subscription} {period}",
        metadata={"subscription": subscription, "period": period, "flow": "subscription"},
    )


# -- FX -----------------------------------------------------------------------------------------


def fx_pay(
    books: Ledger,
    key: str,
    *,
    payer: str,
    payee: str,
    amount: AmountLike,
    pay_asset: str,
    receive_asset: str,
    rate: AmountLike,
    fx_accounts: Mapping[str, str],
    note: str = "",
) -> Outcome:
    """Pay ``amount`` of ``pay_asset`` and have the payee receive ``receive_asset``
    at ``rate`` (receive units per pay unit), through the platform's FX account of
    each asset (``fx_accounts[asset]``). The received amount is ``amount * rate``
    rounded down to the receiving asset's decimals (the platform keeps the sub-unit).

    Entry: payer debit and FX(pay) credit in ``pay_asset``; FX(receive) debit and
    payee credit in ``receive_asset``; each asset balances. The rate is recorded in
    the metadata.
    """
    exact = parse_decimal(rate)
    if exact <= 0:
        raise InvalidAmount("the rate must be positive")
    paid = parse_decimal(amount)
    target = books.asset(receive_asset)
    received = (paid * exact).quantize(Decimal(1).scaleb(-target.scale), rounding=ROUND_DOWN)
    if received <= 0:
        raise InvalidAmount("the converted amount rounds to zero")
    try:
        fx_out, fx_in = fx_accounts[pay_asset], fx_accounts[receive_asset]
    except KeyError as e:
        raise InvalidCommand(f"no FX account for {e.args[0]}") from None
    legs = [
        (payer, paid, pay_asset),
        (fx_out, -paid, pay_asset),
        (fx_in, received, receive_asset),
        (payee, -received, receive_asset),
    ]
    meta = _meta(
        "fx", None, rate=str(exact), pair=f"{pay_asset}/{receive_asset}", note=note or None
    )
    return books.post(key, legs, description=note, metadata=meta)
