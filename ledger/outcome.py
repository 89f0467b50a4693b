"""The result of one write command, as returned (and replayed) to callers."""

from __future__ import annotations

import uuid
from typing import Any, Literal, NamedTuple

import orjson

from ledger.errors import (
    CommandRejected,
    ConcurrencyConflict,
    IdempotencyConflict,
    InvalidCommand,
    LedgerError,
    error_from_code,
    rejection_from_code,
)

__all__ = ["Outcome", "Status"]

Status = Literal["applied", "rejected", "invalid", "conflict"]


class Outcome(NamedTuple):
    """What happened to one command (an immutable record: a named tuple, several times
    cheaper to make than a frozen dataclass; a batch makes one per command).

    * ``applied``: the command took effect (``entry_id`` names its entry, if any).
    * ``rejected``: refused by the ledger's state; recorded under the key forever.
    * ``invalid``: malformed; nothing recorded, the key may be reused once fixed.
    * ``conflict``: the key was used for another request, or a pinned version moved on.

    ``replayed`` is True when the outcome was recorded by an earlier request with the
    same key (nothing was applied this time).
    """

    key: str
    status: Status
    entry_id: uuid.UUID | None = None
    code: str | None = None
    message: str | None = None
    replayed: bool = False
    kind: str | None = None

    @property
    def ok(self) -> bool:
        """True if the command is (or was already) applied."""
        return self.status == "applied"

    def raise_for_status(self) -> Outcome:
        """Return self if applied; otherwise raise the matching typed error."""
        if self.status == "applied":
            return self
        message = self.message or self.code or self.status
        if self.status == "rejected":
            unrecorded = error_from_code(self.code or "rejected", message)
            if not isinstance(unrecorded, CommandRejected) and type(unrecorded) is not LedgerError:
                raise unrecorded  # refused without being recorded (e.g. RiskPolicyFailed)
            raise rejection_from_code(self.code or "rejected", message, replayed=self.replayed)
        if self.status == "invalid":
            error = error_from_code(self.code or InvalidCommand.code, message)
            raise error if isinstance(error, InvalidCommand) else InvalidCommand(message)
        if self.code == IdempotencyConflict.code:
            raise IdempotencyConflict(message)
        raise ConcurrencyConflict(message)

    @classmethod
    def from_error(cls, key: str, error: LedgerError) -> Outcome:
        """The outcome of a command that failed with ``error`` (not recorded)."""
        if isinstance(error, InvalidCommand):
            status: Status = "invalid"
        elif isinstance(error, IdempotencyConflict | ConcurrencyConflict):
            status = "conflict"
        else:
            status = "rejected"
        return cls(key, status, code=error.code, message=error.message)

    def to_record(self) -> bytes:
        """The durable form stored under the idempotency key."""
        body: dict[str, Any] = {
            "status": self.status,
            "entry_id": None if self.entry_id is None else str(self.entry_id),
            "code": self.code,
            "message": self.message,
            "kind": self.kind,
        }
        return orjson.dumps(body)

    @classmethod
    def from_record(cls, key: str, record: bytes) -> Outcome:
        """The outcome stored under ``key``, marked as replayed."""
        body = orjson.loads(record)
        entry = body.get("entry_id")
        return cls(
            key,
            body["status"],
            entry_id=None if entry is None else uuid.UUID(entry),
            code=body.get("code"),
            message=body.get("message"),
            replayed=True,
            kind=body.get("kind"),
        )
