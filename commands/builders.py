"""Commands from keyword arguments: what the ledger's convenience methods submit.

Each function validates its arguments into one frozen command model and raises
:class:`~ledger.errors.InvalidCommand` (never a pydantic error) when they are wrong.
:class:`~ledger.Ledger` and :class:`~ledger.AsyncLedger` call the same builders, so a
method means the same in both; users may call them too and submit the commands in
batches.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ValidationError

from ledger.assets import parse_decimal
from ledger.errors import InvalidAmount, InvalidCommand

from .models import (
    AtomicBatch,
    ChangeLimits,
    CloseAccount,
    DeclareAsset,
    DeclineRequest,
    FreezeAccount,
    LegInput,
    OpenAccount,
    PayRequest,
    PlaceHold,
    PostEntry,
    PostHold,
    RequestPayment,
    ReverseEntry,
    UnfreezeAccount,
    VoidHold,
    refusal,
)

__all__ = [
    "AmountLike",
    "LegLike",
    "atomic",
    "build",
    "declare_asset",
    "decline_request",
    "hold",
    "leg",
    "legs_of",
    "open_account",
    "pay_request",
    "post",
    "post_hold",
    "request_payment",
    "reverse",
    "transfer",
    "void_hold",
]

M = TypeVar("M", bound=BaseModel)
AmountLike = Decimal | str | int
"""An amount at the edge: a Decimal, a decimal string or an int (never a float)."""
LegLike = Any
"""A :class:`LegInput`, a mapping with its fields, or an ``(account, amount, asset)``
tuple."""


def build(model: type[M], **data: Any) -> M:
    """Validate ``data`` into ``model``, turning pydantic errors into InvalidCommand."""
    try:
        return model(**data)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or model.__name__
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        raise refusal(e, f"{where}: {first['msg']}{more}") from None


def leg(account: str, amount: AmountLike, asset: str) -> LegInput:
    """One entry leg: positive ``amount`` debits ``account``, negative credits it."""
    return build(LegInput, account=account, amount=amount, asset=asset)


def legs_of(legs: Iterable[LegLike]) -> list[LegInput | Mapping[str, Any]]:
    """Legs given in any of the accepted forms, as :class:`LegInput` values or as
    mappings of their fields: the command's model validates them with the command,
    in one call (a third of the cost of validating each leg on its own)."""
    if isinstance(legs, str | bytes | Mapping):
        raise InvalidCommand("legs is a sequence of legs, not one string or mapping")
    out: list[LegInput | Mapping[str, Any]] = []
    for item in legs:
        if isinstance(item, LegInput | Mapping):
            out.append(item)
            continue
        try:
            account, amount, asset = item
        except (TypeError, ValueError):
            raise InvalidCommand(
                f"a leg is a LegInput, a mapping or an (account, amount, asset) tuple, "
                f"not {type(item).__name__}"
            ) from None
        out.append({"account": account, "amount": amount, "asset": asset})
    return out


def declare_asset(code: str, scale: int, *, key: str | None = None) -> DeclareAsset:
    """Declare a user-defined asset with ``scale`` decimals (0-18); the key defaults
    (``None``) to ``asset:<code>``."""
    return build(DeclareAsset, key=f"asset:{code}" if key is None else key, code=code, scale=scale)


def open_account(
    account: str,
    asset: str,
    *,
    key: str | None = None,
    normal: Literal["debit", "credit"] = "credit",
    min_balance: AmountLike | None = None,
    max_balance: AmountLike | None = None,
    owner: str | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> OpenAccount:
    """Open an account (see :class:`OpenAccount`); the key defaults (``None``) to
    ``account:<id>``; ``metadata`` is a mapping or None."""
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidCommand(f"metadata is a mapping, not {type(metadata).__name__}")
    return build(
        OpenAccount,
        key=f"account:{account}" if key is None else key,
        account=account,
        asset=asset,
        normal=normal,
        min_balance=min_balance,
        max_balance=max_balance,
        owner=owner,
        metadata=dict(metadata or {}),
    )


def change_limits(
    key: str,
    account: str,
    *,
    min_balance: AmountLike | None = None,
    max_balance: AmountLike | None = None,
) -> ChangeLimits:
    """Replace an account's bounds (``None``: unbounded on that side)."""
    return build(
        ChangeLimits, key=key, account=account, min_balance=min_balance, max_balance=max_balance
    )


def freeze(
    key: str, account: str, *, mode: Literal["debits", "all"] = "all", reason: str = ""
) -> FreezeAccount:
    """Freeze an account: no debits (``mode="debits"``) or no movement (``"all"``)."""
    return build(FreezeAccount, key=key, account=account, mode=mode, reason=reason)


def unfreeze(key: str, account: str, *, reason: str = "") -> UnfreezeAccount:
    """Lift an account's freeze."""
    return build(UnfreezeAccount, key=key, account=account, reason=reason)


def close_account(key: str, account: str, *, reason: str = "") -> CloseAccount:
    """Close an account at zero with no open holds; nothing posts to it afterwards."""
    return build(CloseAccount, key=key, account=account, reason=reason)


def post(key: str, legs: Iterable[LegLike], **fields: Any) -> PostEntry:
    """A balanced entry. ``fields``: effective_at, description, metadata,
    expected_versions."""
    return build(PostEntry, key=key, legs=legs_of(legs), **fields)


def transfer(
    key: str, *, debit: str, credit: str, amount: AmountLike, asset: str, **fields: Any
) -> PostEntry:
    """A two-leg entry debiting ``debit`` and crediting ``credit`` with ``amount``
    (positive), between two different accounts."""
    if "legs" in fields:
        raise InvalidCommand("a transfer makes its own two legs: give legs to post instead")
    if debit == credit:
        raise InvalidCommand(
            f"a transfer moves money between two accounts; debit and credit are both {debit!r}"
        )
    value = parse_decimal(amount)
    if value <= 0:
        raise InvalidAmount(
            f"a transfer amount must be positive, not {value}; to move money the other "
            "way, swap debit and credit"
        )
    # copy_negate is exact; unary minus rounds to the context's 28 digits.
    return post(key, [(debit, value, asset), (credit, value.copy_negate(), asset)], **fields)


def hold(key: str, legs: Iterable[LegLike], **fields: Any) -> PlaceHold:
    """A pending entry reserving the legs' amounts; ``fields`` may include expires_at."""
    return build(PlaceHold, key=key, legs=legs_of(legs), **fields)


def post_hold(
    key: str, hold_id: uuid.UUID, legs: Iterable[LegLike] | None = None, **fields: Any
) -> PostHold:
    """Post a hold in full, or in part with ``legs`` (the rest is released)."""
    given = None if legs is None else legs_of(legs)
    return build(PostHold, key=key, hold_id=hold_id, legs=given, **fields)


def void_hold(key: str, hold_id: uuid.UUID, **fields: Any) -> VoidHold:
    """Release a hold without posting."""
    return build(VoidHold, key=key, hold_id=hold_id, **fields)


def reverse(
    key: str, entry_id: uuid.UUID, legs: Iterable[LegLike] | None = None, **fields: Any
) -> ReverseEntry:
    """Reverse a posting fully, or partly with ``legs`` or with ``amount=`` and
    ``account=`` (see :class:`ReverseEntry`)."""
    given = None if legs is None else legs_of(legs)
    return build(ReverseEntry, key=key, entry_id=entry_id, legs=given, **fields)


def atomic(key: str, commands: Sequence[Any]) -> AtomicBatch:
    """Several commands applied all-or-nothing under one key."""
    return build(AtomicBatch, key=key, commands=tuple(commands))


def request_payment(
    key: str, *, requester: str, payer: str, amount: AmountLike, asset: str, **fields: Any
) -> RequestPayment:
    """Ask ``payer`` to pay ``requester``."""
    return build(
        RequestPayment,
        key=key,
        requester=requester,
        payer=payer,
        amount=amount,
        asset=asset,
        **fields,
    )


def pay_request(key: str, request_id: uuid.UUID, **fields: Any) -> PayRequest:
    """Pay an open request in full."""
    return build(PayRequest, key=key, request_id=request_id, **fields)


def decline_request(key: str, request_id: uuid.UUID, **fields: Any) -> DeclineRequest:
    """Decline or cancel an open request."""
    return build(DeclineRequest, key=key, request_id=request_id, **fields)
