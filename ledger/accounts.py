"""An account's balances as callers see them: exact decimals, normal-oriented."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from ledger.assets import to_decimal
from ledger.model import AccountState

__all__ = ["AccountBalance", "balance_of"]


@dataclass(frozen=True, slots=True)
class AccountBalance:
    """An account's balances at its latest version (normal-oriented, exact decimals)."""

    account: str
    asset: str
    normal: str
    version: int
    posted: Decimal
    pending_out: Decimal
    pending_in: Decimal
    available: Decimal
    owner: str | None
    #: ``"open"``, ``"frozen"`` or ``"closed"``; ``freeze`` says what a freeze stops.
    status: str = "open"
    freeze: str | None = None
    min_balance: Decimal | None = None
    max_balance: Decimal | None = None


def balance_of(state: AccountState) -> AccountBalance:
    """The caller's view of an account state."""
    asset = state.asset
    return AccountBalance(
        account=state.account,
        asset=asset.code,
        normal=state.normal,
        version=state.version,
        posted=to_decimal(state.posted, asset),
        pending_out=to_decimal(state.pending_out, asset),
        pending_in=to_decimal(state.pending_in, asset),
        available=to_decimal(state.available, asset),
        owner=state.owner,
        status=state.status,
        freeze=state.freeze,
        min_balance=None if state.min_balance is None else to_decimal(state.min_balance, asset),
        max_balance=None if state.max_balance is None else to_decimal(state.max_balance, asset),
    )
