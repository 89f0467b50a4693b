"""The exception tree of the ledger, rooted at :class:`LedgerError`.

Three families matter to callers:

* :class:`InvalidCommand` - the request itself is malformed (bad amount, unbalanced
  legs, unknown asset, a limit exceeded). Nothing is written and the idempotency key
  is *not* burned: the caller may fix the request and reuse the key.
* :class:`CommandRejected` - the request was well formed but the ledger's state refused
  it (insufficient funds, unknown account, hold already resolved...). The rejection is
  recorded under the idempotency key, so every retry with that key gets the same
  rejection, forever, even after the state changes. No event is written.
* :class:`IdempotencyConflict` and :class:`ConcurrencyConflict` - the key was used for
  another request, or a pinned account version no longer holds. Nothing is written.

Every error has a stable machine-readable ``code`` (documented in the README).
"""

from __future__ import annotations

from typing import ClassVar

__all__ = [
    "AccountClosed",
    "AccountExists",
    "AccountFrozen",
    "AccountNotEmpty",
    "AccountNotFrozen",
    "AssetExists",
    "AssetMismatch",
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
    "LedgerError",
    "LimitExceeded",
    "Overloaded",
    "PaymentVetoed",
    "RequestNotOpen",
    "RiskPolicyFailed",
    "StoreError",
    "StoreUnavailable",
    "UnbalancedEntry",
    "UnknownAccount",
    "UnknownAsset",
    "error_from_code",
    "rejection_from_code",
]


class LedgerError(Exception):
    """Root of every error raised by the ledger on purpose."""

    code: ClassVar[str] = "ledger_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# -- validation: nothing written, key not burned ---------------------------------------


class InvalidCommand(LedgerError):
    """The request is malformed; fix it and retry (the key is not burned)."""

    code = "invalid_command"


class InvalidAmount(InvalidCommand):
    """An amount is not a finite exact decimal within the asset's scale and limits."""

    code = "invalid_amount"


class UnbalancedEntry(InvalidCommand):
    """The legs of an entry do not sum to zero in every asset."""

    code = "unbalanced_entry"


class UnknownAsset(InvalidCommand):
    """The asset is neither an ISO 4217 currency with minor units nor declared."""

    code = "unknown_asset"


class LimitExceeded(InvalidCommand):
    """A documented size limit (legs, batch, metadata, text) was exceeded."""

    code = "limit_exceeded"


# -- business rejections: recorded under the key -----------------------------------------


class CommandRejected(LedgerError):
    """The ledger refused a well-formed command; the refusal is final for its key."""

    code = "rejected"

    def __init__(self, message: str, *, replayed: bool = False) -> None:
        super().__init__(message)
        self.replayed = replayed


class UnknownAccount(CommandRejected):
    """A leg or reference names an account that was never opened."""

    code = "unknown_account"


class AccountExists(CommandRejected):
    """An account with this id was already opened (by another request)."""

    code = "account_exists"


class AccountFrozen(CommandRejected):
    """The account is frozen: it takes no debit (or no movement at all), and it cannot
    be frozen again until unfrozen."""

    code = "account_frozen"


class AccountNotFrozen(CommandRejected):
    """An unfreeze of an account that is not frozen."""

    code = "account_not_frozen"


class AccountClosed(CommandRejected):
    """The account is closed: nothing can be posted to it or changed on it."""

    code = "account_closed"


class AccountNotEmpty(CommandRejected):
    """The account cannot be closed: it has a balance or open holds."""

    code = "account_not_empty"


class AssetExists(CommandRejected):
    """The asset code was already declared (by another request)."""

    code = "asset_exists"


class AssetMismatch(CommandRejected):
    """A leg's asset differs from the asset of its account."""

    code = "asset_mismatch"


class BalanceRuleViolated(CommandRejected):
    """Applying the command would break an account's balance rule (e.g. overdraft)."""

    code = "balance_rule_violated"


class BalanceOverflow(CommandRejected):
    """A balance would leave the documented representable range."""

    code = "balance_overflow"


class EntryNotFound(CommandRejected):
    """The referenced entry or hold does not exist."""

    code = "entry_not_found"


class HoldNotPending(CommandRejected):
    """The hold was already posted, voided or expired."""

    code = "hold_not_pending"


class HoldExpired(CommandRejected):
    """The hold's deadline has passed; it can no longer be posted."""

    code = "hold_expired"


class ExceedsHold(CommandRejected):
    """A partial posting asks for more than the hold reserved."""

    code = "exceeds_hold"


class EntryNotReversible(CommandRejected):
    """The entry cannot be reversed (not a posting, or nothing left to reverse)."""

    code = "entry_not_reversible"


class RequestNotOpen(CommandRejected):
    """The money request was already paid or declined."""

    code = "request_not_open"


class PaymentVetoed(CommandRejected):
    """The risk policy vetoed the payment; the veto is final for its key."""

    code = "vetoed"


def rejection_from_code(code: str, message: str, *, replayed: bool) -> CommandRejected:
    """Rebuild the typed rejection recorded under an idempotency key."""
    cls = _by_code().get(code)
    if cls is None or not issubclass(cls, CommandRejected):
        return CommandRejected(message, replayed=replayed)
    return cls(message, replayed=replayed)


def error_from_code(code: str, message: str) -> LedgerError:
    """The typed error for ``code`` (any code documented in this module)."""
    return _by_code().get(code, LedgerError)(message)


def _by_code() -> dict[str, type[LedgerError]]:
    found: dict[str, type[LedgerError]] = {}
    pending: list[type[LedgerError]] = [LedgerError]
    while pending:
        cls = pending.pop()
        found.setdefault(cls.code, cls)
        pending.extend(cls.__subclasses__())
    return found


# -- conflicts: nothing written ------------------------------------------------------------


class IdempotencyConflict(LedgerError):
    """The idempotency key was already used for a different request."""

    code = "idempotency_conflict"


class ConcurrencyConflict(LedgerError):
    """A pinned account version did not match, or retries were exhausted under contention."""

    code = "concurrency_conflict"


class RiskPolicyFailed(LedgerError):
    """The risk policy raised instead of answering; nothing is recorded for the command
    (its key is not burned), and the other commands of its group are unaffected. The
    policy's exception is named in the message."""

    code = "risk_policy_failed"


class Overloaded(LedgerError):
    """The ledger's write queue is full; nothing was queued or recorded. Retry after a
    short pause (the key is not burned)."""

    code = "overloaded"


# -- storage ---------------------------------------------------------------------------------


class StoreError(LedgerError):
    """The store failed in a way the ledger cannot resolve by retrying."""

    code = "store_error"


class StoreUnavailable(StoreError):
    """The store cannot be reached (bad URL, server down, timeout)."""

    code = "store_unavailable"


class DecryptionError(StoreError):
    """Sealed data cannot be opened: no keyring is in use, its key is not in the
    keyring, or it was altered."""

    code = "decryption_error"
