"""What makes a journal entry well formed, shared by the write side and the import's
check of a whole file before anything is applied."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from decimal import Decimal

from ledger.assets import Asset, to_minor
from ledger.errors import InvalidAmount, UnbalancedEntry
from ledger.model import Leg

__all__ = ["minor_legs"]


def minor_legs(
    given: Iterable[tuple[str, Decimal, str]], asset_of: Callable[[str], Asset]
) -> tuple[Leg, ...]:
    """``(account, amount, asset code)`` legs in minor units of their assets (found by
    ``asset_of``). Refused: an amount finer than its asset's decimals
    (``InvalidAmount``), a zero leg, and legs that do not balance per asset
    (``UnbalancedEntry``, naming each asset and by how much)."""
    legs: list[Leg] = []
    totals: dict[str, int] = {}
    for account, value, code in given:
        asset = asset_of(code)
        amount = to_minor(value, asset)
        if amount == 0:
            raise InvalidAmount(f"leg on {account!r} has a zero amount")
        legs.append(Leg(account, asset.code, amount))
        totals[asset.code] = totals.get(asset.code, 0) + amount
    if any(totals.values()):
        detail = ", ".join(
            f"{code} off by {total} minor units" for code, total in totals.items() if total
        )
        raise UnbalancedEntry(f"entry does not balance: {detail} (debits must equal credits)")
    return tuple(legs)
