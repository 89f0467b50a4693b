"""The replay's state shared by the audit's checks: the accounts and streams
replayed so far, the findings made, and the reads of entries' earlier events (per
batch prefetch, then the batch itself, then one by one)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from eventsourcing.persistence import Notification

from ledger.effects import money
from ledger.events import TOPIC_ENTRY, TOPIC_ENTRY_UPDATED, LogEvent, decode
from ledger.projections._audit_report import FINDINGS_MAX, AuditReport, Finding, _amount
from ledger.store import EventStore


@dataclass(slots=True)
class _Account:
    asset: str
    scale: int
    sign: int
    low: int | None
    high: int | None
    version: int
    last_hash: str
    posted: int = 0
    out: int = 0
    inn: int = 0
    since_event: int = 0  # entries applied since the account's last event
    status: Any = "open"  # lifecycle (see ledger.model.AccountStatus)
    freeze: Any = None


@dataclass(frozen=True, slots=True)
class _Awaited:
    """An entry (``by``) whose write must update ``target`` next."""

    target: uuid.UUID
    by: uuid.UUID
    kind: str
    position: int
    legs: tuple[Any, ...]


def _decode(state: bytes) -> dict[str, Any]:
    return decode(state, unseal=False)  # personal fields are not the audit's business


class _AuditState:
    """What the replay has seen so far, where findings go, and how the checks read
    the earlier events of an entry."""

    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.report = AuditReport()
        self.accounts: dict[str, _Account] = {}
        self.streams: dict[uuid.UUID, tuple[int, str]] = {}  # account and asset streams only
        self.previous_link = ""
        self.scales: dict[str, int] = {}  # of the assets declared or held by an account
        self.declared: dict[str, int] = {}  # the assets declared so far, with their scale
        #: The entry just replayed that updates another (a hold, posting or request):
        #: its update must be the next event of the write.
        self.awaiting: _Awaited | None = None
        #: Entries' events the batch being replayed may compare with (see prefetch).
        self.known: dict[tuple[uuid.UUID, int], bytes] = {}

    def find(
        self, position: int, code: str, message: str, stream: object = "", **fields: Any
    ) -> None:
        self.report.findings_total += 1
        if len(self.report.findings) < FINDINGS_MAX:
            self.report.findings.append(Finding(position, code, message, str(stream), **fields))

    def money(self, minor: int, asset: str) -> str:
        """Signed minor units of ``asset`` as a decimal string with the asset code."""
        return money(minor, asset, self.scales.get)

    def figure(self, minor: int, asset: str) -> str | None:
        """Signed minor units of ``asset`` as a bare decimal string (None if the
        asset's scale is unknown)."""
        scale = self.scales.get(asset)
        return None if scale is None else _amount(minor, scale)

    def prefetch(self, batch: Sequence[Notification]) -> None:
        """Before a batch is replayed: read in one round trip the first event of each
        entry its updates change (the hold a capture resolves, the posting a reversal
        gives back), which the checks compare with; one read per event made a log of
        card payments audit 20 times slower than one of transfers. Earlier versions
        of those entries are found among the events of the batch as it is replayed
        (see :meth:`seen_event`), else read one by one."""
        ids = {cast(uuid.UUID, n.originator_id) for n in batch if n.topic == TOPIC_ENTRY_UPDATED}
        heads = self.store.load_streams(ids) if ids else {}
        self.known = {(sid, 1): first.state for sid, (first, _) in heads.items()}

    def seen_event(self, e: LogEvent, state: bytes) -> None:
        """Keep an entry's event of this batch for the checks of later ones."""
        if e.topic in (TOPIC_ENTRY, TOPIC_ENTRY_UPDATED):
            self.known[(e.stream_id, e.version)] = state

    def store_event(self, stream_id: uuid.UUID, version: int) -> bytes | None:
        known = self.known.get((stream_id, version))
        if known is not None:
            return known
        return self.store.read_stream_version(stream_id, version)
