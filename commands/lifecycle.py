"""Handlers of the account lifecycle: change limits, freeze, unfreeze, close.

Each change is a version of the account's stream of its own (see
:meth:`~ledger.commands.working_set.Tx.change_account`), recorded under its
idempotency key like an opening; the rules it sets hold for every later entry, on the
write side and in the audit.
"""

from __future__ import annotations

import uuid
from typing import Any

from ledger.assets import to_decimal, to_minor
from ledger.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotEmpty,
    AccountNotFrozen,
    BalanceRuleViolated,
    InvalidCommand,
)
from ledger.model import AccountState

from .models import ChangeLimits, CloseAccount, FreezeAccount, UnfreezeAccount
from .working_set import Tx

__all__ = ["change_limits", "close_account", "freeze_account", "unfreeze_account"]


def _open_account(tx: Tx, name: str) -> AccountState:
    state = tx.require_account(name)
    if state.status == "closed":
        raise AccountClosed(f"account {name!r} is closed")
    return state


def _change(cmd: Any, tx: Tx, **fields: Any) -> dict[str, Any]:
    return {"kind": cmd.kind, "key": cmd.key, "at": tx.ws.now.isoformat(), **fields}


def change_limits(cmd: ChangeLimits, tx: Tx, entry_id: uuid.UUID) -> str:
    """Replace the account's balance bounds; its balances must already be within them."""
    state = _open_account(tx, cmd.account)
    asset = state.asset
    low = None if cmd.min_balance is None else to_minor(cmd.min_balance, asset)
    high = None if cmd.max_balance is None else to_minor(cmd.max_balance, asset)
    if low is not None and high is not None and low > high:
        raise InvalidCommand("min_balance is greater than max_balance")
    if low is not None and state.available < low:
        raise BalanceRuleViolated(
            f"account {cmd.account!r} has an available balance of "
            f"{to_decimal(state.available, asset)} {asset.code}, below the new minimum"
        )
    top = state.posted + state.pending_in
    if high is not None and top > high:
        raise BalanceRuleViolated(
            f"account {cmd.account!r} has a balance of {to_decimal(top, asset)} "
            f"{asset.code}, above the new maximum"
        )
    change = _change(
        cmd,
        tx,
        min=None if low is None else str(low),
        max=None if high is None else str(high),
    )
    tx.change_account(state, change, min_balance=low, max_balance=high)
    return "change_limits"


def freeze_account(cmd: FreezeAccount, tx: Tx, entry_id: uuid.UUID) -> str:
    """Freeze the account (debits, or all movement)."""
    state = _open_account(tx, cmd.account)
    if state.status == "frozen":
        raise AccountFrozen(f"account {cmd.account!r} is already frozen; unfreeze it first")
    change = _change(cmd, tx, mode=cmd.mode, reason=cmd.reason)
    tx.change_account(state, change, status="frozen", freeze=cmd.mode)
    return "freeze_account"


def unfreeze_account(cmd: UnfreezeAccount, tx: Tx, entry_id: uuid.UUID) -> str:
    """Lift the account's freeze."""
    state = _open_account(tx, cmd.account)
    if state.status != "frozen":
        raise AccountNotFrozen(f"account {cmd.account!r} is not frozen")
    tx.change_account(state, _change(cmd, tx, reason=cmd.reason), status="open", freeze=None)
    return "unfreeze_account"


def close_account(cmd: CloseAccount, tx: Tx, entry_id: uuid.UUID) -> str:
    """Close the account for good: only at zero, with no open holds."""
    state = _open_account(tx, cmd.account)
    if state.posted or state.pending_out or state.pending_in:
        asset = state.asset
        raise AccountNotEmpty(
            f"account {cmd.account!r} has a balance of {to_decimal(state.posted, asset)} "
            f"{asset.code} and holds of {to_decimal(state.pending_out, asset)} out, "
            f"{to_decimal(state.pending_in, asset)} in; close it at zero with no open holds"
        )
    change = _change(cmd, tx, reason=cmd.reason)
    tx.change_account(state, change, status="closed", freeze=None)
    return "close_account"
