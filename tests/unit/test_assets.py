"""Exact amount conversion at the edges."""

from __future__ import annotations

from decimal import Context, Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.assets import AMOUNT_MAX_MINOR, Asset, iso_currency, to_decimal, to_minor
from ledger.errors import InvalidAmount

USD = Asset("USD", 2)
ETH = Asset("ETH", 18)


def test_iso_currencies_carry_their_minor_units() -> None:
    assert iso_currency("USD") == Asset("USD", 2)
    assert iso_currency("JPY") == Asset("JPY", 0)
    assert iso_currency("BHD") == Asset("BHD", 3)
    assert iso_currency("XAU") is None  # no minor units: declare it
    assert iso_currency("ZZZ") is None


@pytest.mark.parametrize(
    ("value", "asset", "minor"),
    [
        ("1", USD, 100),
        ("-0.5", USD, -50),
        (Decimal("12.30"), USD, 1230),
        ("1e2", USD, 10000),
        (7, USD, 700),
        ("0.000000000000000001", ETH, 1),
        ("123456789012345678901.123456789012345678", ETH, 123456789012345678901123456789012345678),
    ],
)
def test_to_minor_is_exact(value: object, asset: Asset, minor: int) -> None:
    assert to_minor(value, asset) == minor


@pytest.mark.parametrize(
    "value", ["0.001", 1.5, float("nan"), "NaN", "Infinity", "-inf", True, "1e40", None, "", "1,00"]
)
def test_to_minor_refuses_inexact_or_non_finite(value: object) -> None:
    with pytest.raises(InvalidAmount):
        to_minor(value, USD)


def test_maximum_is_inclusive() -> None:
    assert to_minor(str(AMOUNT_MAX_MINOR), Asset("WEI", 0)) == AMOUNT_MAX_MINOR
    with pytest.raises(InvalidAmount):
        to_minor(str(AMOUNT_MAX_MINOR + 1), Asset("WEI", 0))


@given(minor=st.integers(-AMOUNT_MAX_MINOR, AMOUNT_MAX_MINOR), scale=st.integers(0, 18))
def test_round_trip_through_decimal(minor: int, scale: int) -> None:
    asset = Asset("X", scale)
    assert to_minor(to_decimal(minor, asset), asset) == minor
    assert to_minor(str(to_decimal(minor, asset)), asset) == minor


def _reference_minor(number: Decimal, scale: int) -> int | None:
    """Minor units by Decimal scaling (the definition), or None if inexact."""
    scaled = number.scaleb(scale, context=Context(prec=200))
    if scaled != scaled.to_integral_value(context=Context(prec=200)):
        return None
    return int(scaled)


@given(
    digits=st.integers(-(10**42), 10**42),
    exponent=st.integers(-60, 45),
    scale=st.integers(0, 18),
)
def test_to_minor_agrees_with_decimal_scaling(digits: int, exponent: int, scale: int) -> None:
    number = Decimal(digits).scaleb(exponent, context=Context(prec=200))
    expected = _reference_minor(number, scale)
    if expected is None or abs(expected) > AMOUNT_MAX_MINOR:
        with pytest.raises(InvalidAmount):
            to_minor(number, Asset("X", scale))
    else:
        assert to_minor(number, Asset("X", scale)) == expected


@pytest.mark.parametrize("value", ["1E-1000000", "-1E-999999999", "1E+999999999"])
def test_extreme_exponents_are_refused_at_once(value: str) -> None:
    with pytest.raises(InvalidAmount):
        to_minor(value, USD)
    assert to_minor("0E-1000000", USD) == 0


@pytest.mark.parametrize(
    ("value", "said"),
    [
        (Decimal("1.005"), "amount '1.005' has more than 2 decimals allowed for USD"),
        ("1.005", "amount '1.005' has more than 2 decimals allowed for USD"),
        (
            Decimal("1e400"),
            "amount '1E+400' exceeds the maximum of 1701411834604692317316873037158841057.27 USD",
        ),
    ],
)
def test_refused_amounts_are_said_as_decimals_of_the_asset(value: object, said: str) -> None:
    # never a Python repr (Decimal('1.005')) nor a count of minor units
    with pytest.raises(InvalidAmount) as caught:
        to_minor(value, USD)
    assert str(caught.value.message) == said
