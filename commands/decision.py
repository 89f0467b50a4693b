"""A decision: the outcomes of one attempt and the batch it will append; how a key
already used replays its outcome; the log line of each outcome."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ledger.errors import IdempotencyConflict
from ledger.logs import get_logger
from ledger.outcome import Outcome
from ledger.store import WriteBatch

from .working_set import WorkingSet

__all__ = ["Decision", "replay"]

log = get_logger(__name__)


@dataclass(slots=True)
class Decision:
    """Outcomes of one attempt, and what it will append."""

    outcomes: list[Outcome]
    touched: list[Sequence[tuple[str, uuid.UUID]]]
    ws: WorkingSet
    batch: WriteBatch
    #: The outcomes decided here that a retry of their key replays.
    decided: dict[uuid.UUID, tuple[str, Outcome]]

    def log(self) -> None:
        if log.isEnabledFor(logging.INFO):
            for outcome, touched in zip(self.outcomes, self.touched, strict=True):
                _log_outcome(outcome, sorted({name for name, _ in touched}))


def replay(key: str, fp: str, recorded_fp: str, recorded: Outcome) -> Outcome:
    if fp != recorded_fp:
        return Outcome(
            key,
            "conflict",
            code=IdempotencyConflict.code,
            message=f"idempotency key {key!r} was already used for a different request",
        )
    if recorded.replayed:
        return recorded
    return Outcome(
        recorded.key,
        recorded.status,
        entry_id=recorded.entry_id,
        code=recorded.code,
        message=recorded.message,
        replayed=True,
        kind=recorded.kind,
    )


def _log_outcome(outcome: Outcome, accounts: list[str]) -> None:
    fields: dict[str, Any] = {
        "idempotency_key": outcome.key,
        "status": outcome.status,
        "replayed": outcome.replayed,
    }
    if outcome.entry_id is not None:
        fields["entry_id"] = str(outcome.entry_id)
    if outcome.kind is not None:
        fields["kind"] = outcome.kind
    if accounts:
        fields["accounts"] = accounts
    if outcome.code is not None:
        fields["code"] = outcome.code
    log.info("ledger.write", **fields)
