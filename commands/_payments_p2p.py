"""Payment recipes between people: P2P payments (instant or held until settled),
money requests and bill splits.

Re-exported by :mod:`ledger.commands.payments` and :mod:`ledger.payments`, which
users import; see there for what every recipe guarantees.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from ledger.assets import to_decimal, to_minor
from ledger.commands import builders
from ledger.commands._payments_checks import _EXACT, _choice, _distinct, _fee, _meta, _positive
from ledger.commands.builders import AmountLike
from ledger.commands.flows import Steps, flow, read, write
from ledger.commands.models import ACCOUNT_ID_RULE, ASSET_CODE_RULE, RequestPayment, valid_name
from ledger.errors import InvalidAmount, InvalidCommand
from ledger.model import entry_id_for_key
from ledger.outcome import Outcome

__all__ = [
    "Mode",
    "Split",
    "Visibility",
    "accept_request",
    "cancel_p2p",
    "decline_request",
    "request_money",
    "send",
    "settle_p2p",
    "split_bill",
    "split_shares",
]

Visibility = Literal["public", "friends", "private"]
Mode = Literal["instant", "standard"]


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
    fee account, the same account on two sides, an unknown visibility or mode, a
    ``settle_by`` for an instant payment (it would be ignored), a ``metadata`` key the
    recipe records itself (``flow``, ``note``, ``visibility``, ``mode``) with another
    value than it records (it would be overwritten).
    """
    value, cut = _positive(amount), _fee(fee)
    _choice(visibility, Visibility, "visibility")
    _choice(mode, Mode, "mode")
    if cut and fee_account is None:
        raise InvalidCommand("a fee needs a fee_account")
    if mode == "instant" and settle_by is not None:
        raise InvalidCommand(
            "settle_by is the deadline of a standard payment; an instant payment settles at once"
        )
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
