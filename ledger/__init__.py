"""An event-sourced double-entry ledger.

Quick start::

    from ledger import Ledger

    with Ledger.open("sqlite:///books.db") as books:
        books.open_account("users:1:wallet", "USD", min_balance="0")
        books.open_account("bank:settlement", "USD", normal="debit")
        books.transfer("deposit-1", debit="bank:settlement", credit="users:1:wallet",
                       amount="25.00", asset="USD")
        print(books.balance("users:1:wallet").available)   # 25.00
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ledger.accounts import AccountBalance
from ledger.assets import AMOUNT_MAX_MINOR, BALANCE_MAX_MINOR, SCALE_MAX, Asset
from ledger.errors import (
    AccountClosed,
    AccountExists,
    AccountFrozen,
    AccountNotEmpty,
    AccountNotFrozen,
    AssetExists,
    AssetMismatch,
    BalanceOverflow,
    BalanceRuleViolated,
    CommandRejected,
    ConcurrencyConflict,
    DecryptionError,
    EntryNotFound,
    EntryNotReversible,
    ExceedsHold,
    HoldExpired,
    HoldNotPending,
    IdempotencyConflict,
    InvalidAmount,
    InvalidCommand,
    LedgerError,
    LimitExceeded,
    Overloaded,
    PaymentVetoed,
    RequestNotOpen,
    RiskPolicyFailed,
    StoreError,
    StoreUnavailable,
    UnbalancedEntry,
    UnknownAccount,
    UnknownAsset,
)
from ledger.outcome import Outcome

if TYPE_CHECKING:  # the lazy attributes below, for type checkers
    from ledger import payments as payments
    from ledger.adapters.crypto import Keyring as Keyring
    from ledger.adapters.crypto import new_key as new_key
    from ledger.adapters.opening import AsyncLedger as AsyncLedger
    from ledger.adapters.opening import Ledger as Ledger
    from ledger.commands.builders import leg as leg

#: Attributes loaded on first use, so that ``import ledger`` stays light (the write
#: side loads pydantic, the stores their drivers): name -> (module, attribute or None
#: for the module itself).
_LAZY: dict[str, tuple[str, str | None]] = {
    "Ledger": ("ledger.adapters.opening", "Ledger"),
    "AsyncLedger": ("ledger.adapters.opening", "AsyncLedger"),
    "Keyring": ("ledger.adapters.crypto", "Keyring"),
    "new_key": ("ledger.adapters.crypto", "new_key"),
    "leg": ("ledger.commands.builders", "leg"),
    "payments": ("ledger.payments", None),
}


def __getattr__(name: str) -> Any:
    """Load a lazy attribute on first use (see ``_LAZY``)."""
    try:
        module, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'ledger' has no attribute {name!r}") from None
    loaded = importlib.import_module(module)
    value = loaded if attribute is None else getattr(loaded, attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAZY})


__all__ = [
    "AMOUNT_MAX_MINOR",
    "BALANCE_MAX_MINOR",
    "SCALE_MAX",
    "AccountBalance",
    "AccountClosed",
    "AccountExists",
    "AccountFrozen",
    "AccountNotEmpty",
    "AccountNotFrozen",
    "Asset",
    "AssetExists",
    "AssetMismatch",
    "AsyncLedger",
    "BalanceOverflow",
    "BalanceRuleViolated",
    "CommandRejected",
    "ConcurrencyConflict",
    "DecryptionError",
    "EntryNotFound",
    "EntryNotReversible",
    "ExceedsHold",
    "HoldExpired",
    "HoldNotPending",
    "IdempotencyConflict",
    "InvalidAmount",
    "InvalidCommand",
    "Keyring",
    "Ledger",
    "LedgerError",
    "LimitExceeded",
    "Outcome",
    "Overloaded",
    "PaymentVetoed",
    "RequestNotOpen",
    "RiskPolicyFailed",
    "StoreError",
    "StoreUnavailable",
    "UnbalancedEntry",
    "UnknownAccount",
    "UnknownAsset",
    "leg",
    "new_key",
    "payments",
]
