"""Domain state: accounts, entries and holds, as the write side sees them.

These are plain mutable records owned by one decision at a time (the working set copies
them before changing them), so that a failed attempt never leaves a half-applied state
in the cache.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Literal, NamedTuple

from ledger.assets import Asset
from ledger.hashing import sha1_digest

__all__ = [
    "ENTRY_KINDS",
    "AccountState",
    "AccountStatus",
    "EntryKind",
    "EntryState",
    "FreezeMode",
    "HoldStatus",
    "Leg",
    "Normal",
    "account_stream_id",
    "asset_stream_id",
    "entry_id_for_key",
]

Normal = Literal["debit", "credit"]
#: An account's lifecycle: open; frozen (see :data:`FreezeMode`); closed for good.
AccountStatus = Literal["open", "frozen", "closed"]
#: What a freeze stops: ``"debits"`` (debit legs: money leaving a wallet) or ``"all"``
#: (any posting or new hold). Releasing a hold (void, expiry) is never stopped.
FreezeMode = Literal["debits", "all"]
EntryKind = Literal[
    "posted", "pending", "capture", "void", "expire", "reversal", "request", "decline"
]
#: Status of a hold (pending ...) or of a money request (open, paid, declined).
HoldStatus = Literal["pending", "posted", "voided", "expired", "open", "paid", "declined"]
ENTRY_KINDS: tuple[EntryKind, ...] = (
    "posted",
    "pending",
    "capture",
    "void",
    "expire",
    "reversal",
    "request",
    "decline",
)

# Fixed namespaces: stream ids are derived from readable ids, so every process agrees
# on them without a lookup, and a second open of the same account collides on the
# event store's primary key.
_NS_ACCOUNT = uuid.UUID("6f1c2d0e-3b7a-5c1e-9a4e-1d2b3c4d5e01")
_NS_ENTRY = uuid.UUID("6f1c2d0e-3b7a-5c1e-9a4e-1d2b3c4d5e02")
_NS_ASSET = uuid.UUID("6f1c2d0e-3b7a-5c1e-9a4e-1d2b3c4d5e03")


_NS_ACCOUNT_BYTES = _NS_ACCOUNT.bytes
_NS_ENTRY_BYTES = _NS_ENTRY.bytes
_NS_ASSET_BYTES = _NS_ASSET.bytes
# RFC 4122 name-based UUID, version 5: clear the version and variant bits, set 5 and 10.
_V5_MASK = ((1 << 128) - 1) & ~(0xF000 << 64) & ~(0xC000 << 48)
_V5_BITS = (5 << 76) | (0x8000 << 48)


def _uuid5(namespace: bytes, name: str) -> uuid.UUID:
    """``uuid.uuid5`` for a namespace given as bytes, at a third of its cost (it runs
    once per command on the write path; equality with ``uuid.uuid5`` is tested)."""
    digest = sha1_digest(namespace + name.encode())
    return uuid_from_int(int.from_bytes(digest[:16]) & _V5_MASK | _V5_BITS)


def uuid_from_int(value: int) -> uuid.UUID:
    """``uuid.UUID(int=value)`` for a value known to fit in 128 bits, without the
    constructor's argument checks (a third of its cost; the write path makes one per
    command). The fields are the ones the constructor sets."""
    made = _new_object(uuid.UUID)
    _set_field(made, "int", value)
    _set_field(made, "is_safe", uuid.SafeUUID.unknown)
    return made


_new_object = object.__new__
_set_field = object.__setattr__


#: Accounts whose stream ids are kept (about 280 bytes each, shared by the ledgers of
#: the process): a busy service's working set, not every account it ever touched.
ACCOUNT_IDS_CACHED = 32_768


@lru_cache(maxsize=ACCOUNT_IDS_CACHED)
def account_stream_id(account: str) -> uuid.UUID:
    """The event-stream id of an account (a pure function of its name; the most
    recently used are cached, see :data:`ACCOUNT_IDS_CACHED`)."""
    return _uuid5(_NS_ACCOUNT_BYTES, account)


def entry_id_for_key(key: str) -> uuid.UUID:
    """The entry id (and idempotency record id) of the command with this key."""
    return _uuid5(_NS_ENTRY_BYTES, key)


def asset_stream_id(code: str) -> uuid.UUID:
    """The event-stream id of a declared asset."""
    return _uuid5(_NS_ASSET_BYTES, code)


class Leg(NamedTuple):
    """One line of an entry: a signed amount in minor units (debit > 0, credit < 0).

    A named tuple (immutable, and several times cheaper to create than a frozen
    dataclass: every entry makes a few)."""

    account: str
    asset: str
    amount: int


@dataclass(slots=True)
class AccountState:
    """An account's rules and balances at a version.

    Balances are *normal-oriented*: for a credit-normal account (a user's wallet in the
    platform's books) a credit raises the balance; for a debit-normal account a debit
    does. ``posted`` counts posted entries; ``pending_out`` and ``pending_in`` count
    open holds that would lower or raise the balance. The rules hold at every version:
    ``posted - pending_out >= min_balance`` and ``posted + pending_in <= max_balance``.
    """

    account: str
    stream_id: uuid.UUID
    asset: Asset
    normal: Normal
    min_balance: int | None
    max_balance: int | None
    owner: str | None
    version: int
    last_hash: str
    posted: int = 0
    pending_out: int = 0
    pending_in: int = 0
    status: AccountStatus = "open"
    freeze: FreezeMode | None = None
    #: Whether a lifecycle command changed the rules since the opening (then every
    #: later event of the account carries them).
    rules_changed: bool = False

    @property
    def sign(self) -> int:
        """Multiply a leg amount (debit > 0) by this to get its normal-oriented delta."""
        return 1 if self.normal == "debit" else -1

    @property
    def available(self) -> int:
        """What may still be spent: posted minus what open holds reserve."""
        return self.posted - self.pending_out

    def copy(self) -> AccountState:
        """A copy that can be changed without touching this one."""
        # Spelled out: dataclasses.replace costs several times more on this hot path.
        return AccountState(
            self.account,
            self.stream_id,
            self.asset,
            self.normal,
            self.min_balance,
            self.max_balance,
            self.owner,
            self.version,
            self.last_hash,
            self.posted,
            self.pending_out,
            self.pending_in,
            self.status,
            self.freeze,
            self.rules_changed,
        )

    def rules(self) -> dict[str, str | None]:
        """The rules a lifecycle command can change, as stored in events."""
        return {
            "min": None if self.min_balance is None else str(self.min_balance),
            "max": None if self.max_balance is None else str(self.max_balance),
            "status": self.status,
            "freeze": self.freeze,
        }

    def set_rules(self, rules: dict[str, str | None]) -> None:
        """Take the rules from a stored event (see :meth:`rules`)."""
        low, high = rules["min"], rules["max"]
        self.min_balance = None if low is None else int(low)
        self.max_balance = None if high is None else int(high)
        self.status = rules["status"]  # type: ignore[assignment]
        self.freeze = rules["freeze"]  # type: ignore[assignment]
        self.rules_changed = True


@dataclass(slots=True)
class EntryState:
    """What later commands need to know of an entry: holds and reversible postings."""

    entry_id: uuid.UUID
    kind: EntryKind
    legs: tuple[Leg, ...]
    version: int
    last_hash: str
    status: HoldStatus | None
    expires_at: datetime | None
    effective_at: datetime
    remaining: list[int] = field(default_factory=list)
    #: When the entry was recorded (the ledger's clock when it was written); a hold's
    #: deadline is judged against the recorded time of its capture (see
    #: :class:`~ledger.errors.HoldExpired`).
    recorded_at: datetime | None = None

    def copy(self) -> EntryState:
        """A copy that can be changed without touching this one."""
        return EntryState(
            self.entry_id,
            self.kind,
            self.legs,
            self.version,
            self.last_hash,
            self.status,
            self.expires_at,
            self.effective_at,
            list(self.remaining),
            self.recorded_at,
        )
