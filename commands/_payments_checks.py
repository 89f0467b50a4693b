"""The payment recipes' shared argument checks and exact arithmetic.

Each recipe (see :mod:`ledger.commands.payments`) refuses a request that cannot mean
what it says before it applies anything: amounts, fees and rates in range and
positive, distinct account ids, entry ids that are UUIDs, enumerated values one of
theirs; and it computes with amounts in the exact decimal contexts defined here.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from decimal import (
    MAX_EMAX,
    MIN_EMIN,
    Context,
    Decimal,
    DecimalException,
    Inexact,
    InvalidOperation,
    Overflow,
)
from typing import Any, get_args

from ledger.assets import parse_decimal
from ledger.commands.builders import AmountLike
from ledger.commands.models import ACCOUNT_ID_RULE, valid_name
from ledger.errors import InvalidAmount, InvalidCommand

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
    """The entry's metadata: the caller's ``extra``, then the recipe's own keys
    (``flow`` and the ``fields`` given). A caller's key that the recipe would replace
    with another value is refused (InvalidCommand), not silently overwritten."""
    if extra is not None and not isinstance(extra, Mapping):
        raise InvalidCommand(f"metadata is a mapping, not {type(extra).__name__}")
    meta: dict[str, Any] = dict(extra or {})
    own = {k: v for k, v in fields.items() if v is not None}
    own["flow"] = flow
    if meta:
        for name, value in own.items():
            if name in meta and meta[name] != value:
                raise InvalidCommand(
                    f"metadata[{name!r}] is {meta[name]!r:.40}, but the recipe records "
                    f"{value!r:.40} there: leave {name!r} out of metadata"
                    + ("" if name == "flow" else f" and pass it as the {name} argument")
                )
    meta.update(own)
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


def _reference(value: object) -> str | None:
    """A bank or card ``reference``: text, or None (none). Any other value would be
    stored as given (17 is not the reference "17")."""
    if value is not None and not isinstance(value, str):
        raise InvalidCommand(f"reference is a string, not {type(value).__name__}")
    return value


def _choice(value: object, allowed: Any, what: str) -> None:
    options = get_args(allowed)
    if value not in options:
        raise InvalidCommand(f"{what} must be one of {', '.join(options)}, not {value!r}")
