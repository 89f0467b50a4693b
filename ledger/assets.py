"""Assets (currencies and user-defined units) and exact amount conversion.

Amounts live inside the ledger as Python ``int`` in *minor units* (cents for USD, wei
for an 18-decimal token). ``Decimal`` and decimal strings are accepted and produced
only at the edges, through :func:`to_minor` and :func:`to_decimal`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import MAX_EMAX, MAX_PREC, MIN_EMIN, Context, Decimal, InvalidOperation
from functools import lru_cache

from iso4217 import Currency

from ledger.errors import InvalidAmount, UnknownAsset

__all__ = [
    "AMOUNT_MAX_MINOR",
    "BALANCE_MAX_MINOR",
    "EXACT",
    "SCALE_MAX",
    "Asset",
    "iso_currency",
    "parse_decimal",
    "plain",
    "scaled",
    "to_decimal",
    "to_minor",
    "validate_asset_code",
]

#: Largest absolute amount of one leg, in minor units (the range of a signed 128-bit int).
AMOUNT_MAX_MINOR = 2**127 - 1
#: Balances (posted, pending, available) stay within +/- this bound; a command that
#: would leave it is rejected with ``balance_overflow``.
BALANCE_MAX_MINOR = 2**127 - 1
#: Exact decimal arithmetic, whatever the host's context: ``decimal.getcontext()``
#: belongs to the application (its precision, rounding, traps and ``capitals`` apply
#: to the operators and to ``str``), so the ledger computes and formats amounts with
#: this context's methods instead (``EXACT.subtract(a, b)``, ``EXACT.to_sci_string``).
EXACT = Context(prec=MAX_PREC, Emin=MIN_EMIN, Emax=MAX_EMAX, capitals=1)
#: Largest number of decimals an asset may declare.
SCALE_MAX = 18
_POWERS_OF_TEN: tuple[int, ...] = tuple(10**n for n in range(SCALE_MAX + 1))

_ASSET_CODE = re.compile(r"^[A-Z][A-Z0-9_]{1,15}$")


@dataclass(frozen=True, slots=True)
class Asset:
    """A currency or user-defined unit with its number of decimals (``scale``)."""

    code: str
    scale: int


def validate_asset_code(code: str) -> str:
    """Return ``code`` if it is a valid asset code (2-16 of A-Z, 0-9, _), else raise."""
    if not _ASSET_CODE.match(code):
        raise UnknownAsset(
            f"asset code {code!r} is invalid: use 2-16 characters A-Z, 0-9 or _ "
            "starting with a letter"
        )
    return code


@lru_cache(maxsize=1024)
def iso_currency(code: str) -> Asset | None:
    """The ISO 4217 currency ``code`` with its minor units, or None if not one.

    Codes without minor units in ISO 4217 (gold ``XAU``, test codes...) return None:
    declare them as assets with the scale you need.
    """
    try:
        currency = Currency(code)
    except ValueError:
        return None
    exponent = currency.exponent
    if exponent is None:
        return None
    return Asset(code, int(exponent))


def parse_decimal(value: object) -> Decimal:
    """Parse an edge value (Decimal, decimal string or int) into a finite Decimal.

    Floats and booleans are refused: a float cannot represent most decimal amounts
    exactly, so accepting one would silently change money. A string is a decimal
    literal in ASCII (``"12.50"``, ``"-3"``, ``"1e2"``; surrounding spaces ignored): no
    digit separators, no other script's digits.
    """
    if isinstance(value, bool | float):
        raise InvalidAmount(
            f"amount {value!r} is a {type(value).__name__}; pass a Decimal or a decimal string"
        )
    if isinstance(value, Decimal):
        number = value
    elif isinstance(value, int):
        number = Decimal(value)
    elif isinstance(value, str):
        text = value.strip()
        if len(text) > 80:
            raise InvalidAmount("amount string is longer than 80 characters")
        if not text.isascii() or "_" in text:
            # Python's Decimal also reads digit separators and any script's digits
            # ("1_000", fullwidth or Arabic-Indic digits): an amount is ASCII.
            raise InvalidAmount(f"amount {value!r} is not a decimal number (ASCII digits only)")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise InvalidAmount(f"amount {value!r} is not a decimal number") from None
    else:
        raise InvalidAmount(
            f"amount of type {type(value).__name__} is not accepted; "
            "pass a Decimal or a decimal string"
        )
    if not number.is_finite():
        raise InvalidAmount(f"amount {value!r} is not finite")
    return number


def to_minor(value: object, asset: Asset) -> int:
    """Convert an edge amount to exact minor units of ``asset``.

    Raises :class:`InvalidAmount` if the value has more decimals than the asset's scale
    or its magnitude exceeds :data:`AMOUNT_MAX_MINOR`.
    """
    number: Decimal = (
        value if type(value) is Decimal and value.is_finite() else parse_decimal(value)
    )
    if number and number.adjusted() + asset.scale > 40:
        raise InvalidAmount(f"amount {_said(value)} exceeds the maximum of {_max(asset)}")
    # Exact integer arithmetic on the fraction the Decimal is (half the cost of Decimal
    # scaling on the write path). A tiny non-zero value has too many decimals anyway;
    # refusing it first keeps the fraction's denominator small.
    if number and number.adjusted() < -(SCALE_MAX + 1):
        raise InvalidAmount(
            f"amount {_said(value)} has more than {asset.scale} decimals allowed for {asset.code}"
        )
    numerator, denominator = number.as_integer_ratio()
    minor, rest = divmod(numerator * _POWERS_OF_TEN[asset.scale], denominator)
    if rest:
        raise InvalidAmount(
            f"amount {_said(value)} has more than {asset.scale} decimals allowed for {asset.code}"
        )
    if abs(minor) > AMOUNT_MAX_MINOR:
        raise InvalidAmount(f"amount {_said(value)} exceeds the maximum of {_max(asset)}")
    return minor


def _said(value: object) -> str:
    """An amount in a message, quoted as text: never a Python repr (``Decimal('1.005')``)."""
    return repr(value if isinstance(value, str) else str(value))


def _max(asset: Asset) -> str:
    return f"{plain(scaled(AMOUNT_MAX_MINOR, asset.scale))} {asset.code}"


def plain(value: Decimal) -> str:
    """A Decimal as fixed-point text, never in exponent form: ``0.000000000000000001``
    rather than ``1E-18`` (``str`` switches to exponents below 1e-6), keeping its
    decimals (``10.00``)."""
    return format(value, "f")


def scaled(minor: int, scale: int) -> Decimal:
    """``minor`` units of ``10**-scale`` as an exact Decimal with ``scale`` decimals."""
    # Built from digits rather than with arithmetic: Decimal arithmetic rounds to the
    # context precision (28 digits), and 128-bit amounts have up to 39.
    digits = tuple(int(c) for c in str(abs(minor)))
    return Decimal((1 if minor < 0 else 0, digits, -scale))


def to_decimal(minor: int, asset: Asset) -> Decimal:
    """Minor units of ``asset`` as an exact Decimal with the asset's number of decimals."""
    return scaled(minor, asset.scale)
