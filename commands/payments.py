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
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    ROUND_DOWN,
    Context,
    Decimal,
    DecimalException,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Any, Literal, get_args

from ledger.assets import parse_decimal, to_decimal, to_minor
from ledger.commands import builders
from ledger.commands.builders import AmountLike
from ledger.commands.flows import Steps, flow, read, write
from ledger.commands.models import (
    ACCOUNT_ID_RULE,
    ASSET_CODE_RULE,
    KEY_RULE,
    RequestPayment,
    valid_name,
)
from ledger.errors import EntryNotFound, IdempotencyConflict, InvalidAmount, InvalidCommand
from ledger.model import EntryState, Leg, entry_id_for_key
from ledger.outcome import Outcome

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

#: The values of ``metadata["flow"]`` this module writes.
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

Visibility = Literal["public", "friends", "private"]
Mode = Literal["instant", "standard"]

#: Exact decimal arithmetic for every amount the ledger accepts (at most 39 integer
#: digits and 18 decimals) and every rate (at most 80 characters): an inexact result
#: raises instead of rounding silently (see :func:`_arithmetic`).
_EXACT = Context(prec=200, traps=[Inexact, InvalidOperation, Overflow])
#: Rounding on purpose (FX conversion rounds down to the receiving asset's decimals).
_ROUNDING = Context(prec=200, traps=[InvalidOperation, Overflow])
#: The largest magnitude of an amount (in major units) any asset can hold: 2**127 - 1
#: minor units at scale 0. A larger one is refused before any arithmetic.
_AMOUNT_MAX = Decimal(2**127 - 1)
#: The most decimals any asset has.
_DECIMALS_MAX = 18
_NO_FEE = Decimal(0)
#: Exact at any exponent a decimal string can carry (normalising "1e-999999999" in
#: the default range would underflow).
_WIDE = Context(prec=200, Emin=MIN_EMIN, Emax=MAX_EMAX, traps=[Inexact, InvalidOperation, Overflow])


@contextmanager
def _arithmetic(what: str) -> Iterator[None]:
    """A recipe's exact arithmetic: a result that cannot be exact (an amount or rate
    beyond any asset's range) is :class:`InvalidAmount`, not a ``decimal`` signal."""
    try:
        yield
    except DecimalException:
        raise InvalidAmount(
            f"{what} is beyond exact arithmetic: amount or rate out of range"
        ) from None


def _meta(flow: str, extra: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
    if extra is not None and not isinstance(extra, Mapping):
        raise InvalidCommand(f"metadata is a mapping, not {type(extra).__name__}")
    meta: dict[str, Any] = dict(extra or {})
    meta.update({k: v for k, v in fields.items() if v is not None})
    meta["flow"] = flow
    return meta


def _positive(value: AmountLike, what: str = "the amount") -> Decimal:
    number = parse_decimal(value)
    if number <= 0:
        raise InvalidAmount(f"{what} must be positive, not {number}")
    return _in_range(number, what)


def _fee(value: AmountLike | None) -> Decimal:
    """A fee: zero (or None) means no fee; never negative."""
    if value is None:
        return _NO_FEE
    number = parse_decimal(value)
    if number < 0:
        raise InvalidAmount(f"a fee must not be negative, not {number}")
    return _in_range(number, "the fee")


def _in_range(number: Decimal, what: str) -> Decimal:
    """``number`` if some asset could hold it (the core then checks the asset's own
    scale and bound), else InvalidAmount: a recipe computes only with amounts whose
    sums and differences are exact."""
    if number.copy_abs() > _AMOUNT_MAX:  # copy_abs: no context, no overflow at any exponent
        raise InvalidAmount(f"{what} {number} is beyond the largest amount of any asset")
    exponent = number.as_tuple().exponent  # as written; trailing zeros may not count
    if isinstance(exponent, int) and exponent < -_DECIMALS_MAX:
        exponent = number.normalize(_WIDE).as_tuple().exponent
    if isinstance(exponent, int) and exponent < -_DECIMALS_MAX:
        raise InvalidAmount(f"{what} {number} has more decimals than any asset ({_DECIMALS_MAX})")
    return number


def _distinct(**accounts: str | None) -> None:
    """Refuse a payment whose sides (or fee account) are not account ids or are the
    same account."""
    named = {
        role: valid_name(ACCOUNT_ID_RULE, account, role)
        for role, account in accounts.items()
        if account is not None
    }
    seen: dict[str, str] = {}
    for role, account in named.items():
        if account in seen:
            raise InvalidCommand(
                f"{seen[account]} and {role} are the same account ({account!r}): a payment "
                "moves money between different accounts"
            )
        seen[account] = role


def _entry_id(value: object, what: str) -> uuid.UUID:
    """An entry id given to a flow: a UUID (as returned in ``Outcome.entry_id``)."""
    if not isinstance(value, uuid.UUID):
        raise InvalidCommand(f"{what} must be an entry id (a UUID), not {value!r}")
    return value


def _choice(value: object, allowed: Any, what: str) -> None:
    options = get_args(allowed)
    if value not in options:
        raise InvalidCommand(f"{what} must be one of {', '.join(options)}, not {value!r}")


# -- P2P ---------------------------------------------------------------------------------


@flow
def send(
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
    mode: Mode = "instant",
    settle_by: datetime | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> Steps[Outcome]:
    """Send money between two wallets.

    ``instant``: one posted entry, available to the recipient at once; an optional
    ``fee`` is paid by the sender on top of ``amount`` to ``fee_account``.
    ``standard``: a hold (the sender's funds are reserved, the recipient sees them as
    incoming) that :func:`settle_p2p` posts later or :func:`cancel_p2p` releases;
    ``settle_by`` is the hold's deadline (after it, ``expire_due`` releases it).

    Entry: sender debit ``amount + fee``; recipient credit ``amount``; fee account
    credit ``fee``. Refused: a non-positive amount, a negative fee, a fee without a
    fee account, the same account on two sides, an unknown visibility or mode.
    """
    value, cut = _positive(amount), _fee(fee)
    _choice(visibility, Visibility, "visibility")
    _choice(mode, Mode, "mode")
    if cut and fee_account is None:
        raise InvalidCommand("a fee needs a fee_account")
    _distinct(sender=sender, recipient=recipient, fee_account=fee_account if cut else None)
    legs: list[tuple[str, Decimal, str]] = [
        (sender, _EXACT.add(value, cut), asset),
        (recipient, value.copy_negate(), asset),
    ]
    if cut:
        assert fee_account is not None
        legs.append((fee_account, cut.copy_negate(), asset))
    meta = _meta("p2p", metadata, note=note or None, visibility=visibility, mode=mode)
    if mode == "instant":
        command: Any = builders.post(key, legs, description=note, metadata=meta)
    else:
        command = builders.hold(key, legs, description=note, metadata=meta, expires_at=settle_by)
    return (yield from write(command))


@flow
def settle_p2p(key: str, payment_id: uuid.UUID) -> Steps[Outcome]:
    """Post a standard P2P payment (its hold) in full."""
    return (yield from write(builders.post_hold(key, payment_id, metadata={"flow": "p2p"})))


@flow
def cancel_p2p(key: str, payment_id: uuid.UUID) -> Steps[Outcome]:
    """Release a standard P2P payment that has not settled."""
    return (yield from write(builders.void_hold(key, payment_id, description="cancelled")))


# -- requests and bill splits -----------------------------------------------------------------


@flow
def request_money(
    key: str,
    *,
    requester: str,
    payer: str,
    amount: AmountLike,
    asset: str,
    note: str = "",
    visibility: Visibility = "private",
) -> Steps[Outcome]:
    """Ask ``payer`` for money. Nothing moves until :func:`accept_request`; the
    outcome's ``entry_id`` is the request id. Refused: a non-positive amount, the
    requester asking themselves, an unknown visibility."""
    value = _positive(amount)
    _choice(visibility, Visibility, "visibility")
    _distinct(requester=requester, payer=payer)
    command = builders.request_payment(
        key,
        requester=requester,
        payer=payer,
        amount=value,
        asset=asset,
        description=note,
        metadata=_meta("request", None, note=note or None, visibility=visibility),
    )
    return (yield from write(command))


@flow
def accept_request(key: str, request_id: uuid.UUID) -> Steps[Outcome]:
    """Pay a request in full (once: a second payment is
    :class:`~ledger.errors.RequestNotOpen`). Entry: payer debit, requester credit."""
    return (yield from write(builders.pay_request(key, request_id, metadata={"flow": "request"})))


@flow
def decline_request(key: str, request_id: uuid.UUID, *, reason: str = "") -> Steps[Outcome]:
    """Decline (or, by the requester, cancel) a request; it can no longer be paid."""
    return (yield from write(builders.decline_request(key, request_id, description=reason)))


def split_shares(total: int, people: int) -> list[int]:
    """Split ``total`` minor units among ``people``: everyone gets ``total // people``
    and the first ``total % people`` people one minor unit more, so the shares add up
    to the total exactly (no cent lost or invented)."""
    if type(total) is not int or type(people) is not int:
        raise InvalidCommand("a split takes whole minor units and a whole number of people")
    if people < 1:
        raise InvalidCommand("a bill is split among at least one person")
    if total < 0:
        raise InvalidAmount("a bill must not be negative")
    base, rest = divmod(total, people)
    return [base + (1 if i < rest else 0) for i in range(people)]


@dataclass(frozen=True, slots=True)
class Split:
    """A bill split: the batch outcome and one (payer, share, request id) per payer."""

    outcome: Outcome
    requests: tuple[tuple[str, Decimal, uuid.UUID], ...]
    requester_share: Decimal


@flow
def split_bill(
    key: str,
    *,
    requester: str,
    payers: Sequence[str],
    amount: AmountLike,
    asset: str,
    note: str = "",
    visibility: Visibility = "private",
    include_requester: bool = True,
) -> Steps[Split]:
    """Split a bill that ``requester`` paid among the ``payers`` (and the requester
    too, with ``include_requester``): one request per payer, created all-or-nothing.

    Remainder rule (:func:`split_shares`): the payers, in the order given, come first
    and the requester last, so odd minor units are asked of the first payers and the
    requester never asks for more than the bill. A payer whose share is zero (a bill
    of fewer minor units than people) gets no request. Each request's key is
    ``f"{key}:{payer}"``.
    """
    if isinstance(payers, str | bytes | Mapping) or not isinstance(payers, Iterable):
        raise InvalidCommand(f"payers is a list of accounts, not {type(payers).__name__}")
    if not isinstance(include_requester, bool):
        raise InvalidCommand(
            f"include_requester is True or False, not {type(include_requester).__name__}"
        )
    payers = [valid_name(ACCOUNT_ID_RULE, payer, "a payer") for payer in payers]
    requester = valid_name(ACCOUNT_ID_RULE, requester, "requester")
    if len(set(payers)) != len(payers) or requester in payers:
        raise InvalidCommand("payers must be distinct and must not include the requester")
    if not payers:
        raise InvalidCommand("a split needs at least one payer")
    value = _positive(amount, "a bill")
    _choice(visibility, Visibility, "visibility")
    valid_name(ASSET_CODE_RULE, asset, "asset")
    token = yield from read(lambda books: books.asset(asset))
    total = to_minor(value, token)
    shares = split_shares(total, len(payers) + (1 if include_requester else 0))
    commands = [
        builders.request_payment(
            f"{key}:{payer}",
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
    outcome = yield from write(builders.atomic(key, commands))
    requests = tuple(
        (cmd.payer, cmd.amount, entry_id_for_key(cmd.key))
        for cmd in commands
        if isinstance(cmd, RequestPayment)
    )
    mine = to_decimal(shares[-1], token) if include_requester else Decimal(0)
    return Split(outcome, requests, mine)


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
    meta = _meta("bank_deposit", None, reference=reference)
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
    meta = _meta("bank_withdrawal", None, reference=reference)
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
    released by ``expire_due`` after ``expires_at`` unless captured first."""
    value = _positive(amount)
    _distinct(card=card, merchant=merchant)
    legs = [(card, value, asset), (merchant, value.copy_negate(), asset)]
    meta = _meta("card", None, reference=reference)
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
    the amount, a fee without a platform account, the same account on two sides."""
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
    meta = _meta("payout", None, reference=reference)
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


# -- FX -----------------------------------------------------------------------------------------


@flow
def fx_pay(
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
) -> Steps[Outcome]:
    """Pay ``amount`` of ``pay_asset`` and have the payee receive ``receive_asset``
    at ``rate`` (receive units per pay unit), through the platform's FX account of
    each asset (``fx_accounts[asset]``). The received amount is ``amount * rate``
    rounded down to the receiving asset's decimals (the platform keeps the sub-unit),
    computed exactly at any size.

    Entry: payer debit and FX(pay) credit in ``pay_asset``; FX(receive) debit and
    payee credit in ``receive_asset``; each asset balances. The rate is recorded in
    the metadata.
    """
    paid = _positive(amount)
    exact = parse_decimal(rate)
    if exact <= 0:
        raise InvalidAmount(f"the rate must be positive, not {exact}")
    valid_name(ASSET_CODE_RULE, pay_asset, "pay_asset")
    valid_name(ASSET_CODE_RULE, receive_asset, "receive_asset")
    if pay_asset == receive_asset:
        raise InvalidCommand(
            f"an FX payment converts between two assets, not {pay_asset} to itself"
        )
    if not isinstance(fx_accounts, Mapping):
        raise InvalidCommand("fx_accounts maps each asset to the platform's FX account")
    try:
        fx_out, fx_in = fx_accounts[pay_asset], fx_accounts[receive_asset]
    except KeyError as e:
        raise InvalidCommand(f"no FX account for {e.args[0]}") from None
    _distinct(payer=payer, payee=payee, fx_out=fx_out, fx_in=fx_in)
    target = yield from read(lambda books: books.asset(receive_asset))
    with _arithmetic("the converted amount"):
        product = _EXACT.multiply(paid, exact)
        received = product.quantize(
            Decimal(1).scaleb(-target.scale), rounding=ROUND_DOWN, context=_ROUNDING
        )
    if received <= 0:
        raise InvalidAmount("the converted amount rounds to zero")
    legs = [
        (payer, paid, pay_asset),
        (fx_out, paid.copy_negate(), pay_asset),
        (fx_in, received, receive_asset),
        (payee, received.copy_negate(), receive_asset),
    ]
    meta = _meta(
        "fx", None, rate=str(exact), pair=f"{pay_asset}/{receive_asset}", note=note or None
    )
    return (yield from write(builders.post(key, legs, description=note, metadata=meta)))
