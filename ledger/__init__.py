"""An event-sourced double-entry ledger.

Quick start::

    from ledger import Ledger

    with Ledger.open("sqlite:///books.db") as books:
        books.open_account("users:1:wallet", "USD", min_balance="0")
        books.open_account("bank:settlement", "USD", normal="debit")
        books.transfer("deposit-1", debit="bank:settlement", credit="users:1:wallet",
                       amount="25.00", asset="USD")
        print(books.balance("users:1:wallet").available)   # Decimal('25.00')
"""

from ledger.aio import AsyncLedger
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
from ledger.facade import AccountBalance, Ledger, leg
from ledger.outcome import Outcome

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
]
