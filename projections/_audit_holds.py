"""The audit's checks of holds and reversals: a capture, void or expiry resolves
one hold once and releases what it reserved, a reversal gives back what remains
reversible of a posting, and each such entry is followed in its write by the update
of the entry it names."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from ledger.effects import capture_excess_of
from ledger.events import TOPIC_ENTRY, TOPIC_ENTRY_UPDATED, LogEvent, state_hash
from ledger.projections._audit_state import _AuditState, _Awaited, _decode

_RESOLVES = ("capture", "void", "expire")
#: The status an entry update sets after each kind of entry that makes one.
_STATUS_AFTER: dict[str, str | None] = {
    "capture": "posted",
    "void": "voided",
    "expire": "expired",
    "reversal": None,
    "decline": "declined",
    "posted": "paid",
}


class _HoldChecks(_AuditState):
    """The hold and reversal checks, made as entries and entry updates are replayed."""

    def original_legs(self, entry_id: Any, kinds: tuple[str, ...]) -> tuple[Any, ...] | None:
        """The legs of the entry ``entry_id`` if it is one of ``kinds`` (else None)."""
        raw = None if entry_id is None else self.store_event(uuid.UUID(entry_id), 1)
        if raw is None:
            return None
        first = LogEvent(0, uuid.UUID(entry_id), 1, TOPIC_ENTRY, _decode(raw))
        return first.legs() if first.body.get("kind") in kinds else None

    def check_resolution(self, e: LogEvent, legs: Any, releases: Any) -> None:
        kind, hold = e.body["kind"], e.body.get("hold")
        held = self.original_legs(hold, ("pending",))
        if held is None:
            self.find(e.position, "hold", f"{kind} entry resolves no hold ({hold})", e.stream_id)
            return
        if sorted(releases) != sorted(held):
            message = f"{kind} entry releases other amounts than hold {hold} reserved"
            self.find(e.position, "hold", message, e.stream_id)
        if kind != "capture" and legs:
            self.find(e.position, "hold", f"{kind} entry posts legs", e.stream_id)
        excess = capture_excess_of(legs, held) if kind == "capture" else None
        if excess is not None:
            self.find(
                e.position,
                "hold",
                f"capture exceeds its hold: {excess.describe(self.scales.get)}",
                e.stream_id,
                account=excess.account,
                asset=excess.asset,
                expected=self.figure(excess.reserved, excess.asset),
                actual=self.figure(excess.posted, excess.asset),
            )

    def check_reversal(self, e: LogEvent) -> None:
        target = e.body.get("reverses")
        if self.original_legs(target, ("posted", "capture")) is None:
            message = f"reversal reverses no posting ({target})"
            self.find(e.position, "reversal", message, e.stream_id)

    def check_update_follows(self, e: LogEvent, awaited: _Awaited | None) -> None:
        """An entry that resolves or reverses another is followed by that entry's
        update naming it, and every update follows the entry that made it."""
        made = (
            awaited is not None
            and e.topic == TOPIC_ENTRY_UPDATED
            and e.stream_id == awaited.target
            and e.body.get("by") == str(awaited.by)
        )
        if awaited is not None and not made:
            self.missed_update(awaited)
        if e.topic != TOPIC_ENTRY_UPDATED:
            return
        status = e.body.get("status")
        if not made:
            code = "reversal" if status is None else "hold"
            message = "entry update is not made by the entry written just before it"
            self.find(e.position, code, message, e.stream_id)
        elif awaited is not None and status != _STATUS_AFTER.get(awaited.kind, status):
            code = "reversal" if awaited.kind == "reversal" else "hold"
            message = f"entry update sets status {status!r} after a {awaited.kind} entry"
            self.find(e.position, code, message, e.stream_id)
        elif awaited is not None and awaited.kind == "reversal":
            self.check_reversed(e, awaited.legs)

    def missed_update(self, awaited: _Awaited) -> None:
        code = "reversal" if awaited.kind == "reversal" else "hold"
        message = (
            f"{awaited.kind} entry is not followed in its write by the update of "
            f"{awaited.target} it makes"
        )
        self.find(awaited.position, code, message, awaited.by)

    def check_reversed(self, e: LogEvent, legs: Any) -> None:
        """What remains reversible goes down by exactly what the reversal gave back."""
        original = self.store_event(e.stream_id, 1)
        before = self.store_event(e.stream_id, e.version - 1)
        if original is None or before is None:
            return  # the chain check names the missing event
        first = LogEvent(0, e.stream_id, 1, TOPIC_ENTRY, _decode(original)).legs()
        if e.version == 2:
            was = [abs(leg.amount) for leg in first]
        else:
            was = [int(r) for r in _decode(before).get("remaining", [])]
        now = [int(r) for r in e.body.get("remaining", [])]
        if len(was) != len(first) or len(now) != len(first):
            return  # the range check below names it
        down: dict[str, int] = defaultdict(int)
        for leg, old, new in zip(first, was, now, strict=True):
            down[leg.asset] += old - new
        given: dict[str, int] = defaultdict(int)
        for leg in legs:
            given[leg.asset] += abs(leg.amount)
        for asset in sorted(set(down) | set(given)):
            if down[asset] != given[asset]:
                self.find(
                    e.position,
                    "reversal",
                    f"reversal legs total {self.money(given[asset], asset)} (both sides) but "
                    f"what remains reversible of the entry went down by "
                    f"{self.money(down[asset], asset)}",
                    e.stream_id,
                    asset=asset,
                    expected=self.figure(given[asset], asset),
                    actual=self.figure(down[asset], asset),
                )
                return

    def entry_updated(self, e: LogEvent, state: bytes) -> None:
        body = e.body
        previous = self.store_event(e.stream_id, e.version - 1)
        if previous is None or body.get("prev") != state_hash(previous):
            self.find(
                e.position, "chain", f"entry update version {e.version} does not chain", e.stream_id
            )
        status = body.get("status")
        if status in ("posted", "voided", "expired", "paid", "declined") and e.version != 2:
            self.find(e.position, "hold", "hold or request resolved more than once", e.stream_id)
        original = self.store_event(e.stream_id, 1)
        if original is not None and status is None:
            first = LogEvent(0, e.stream_id, 1, TOPIC_ENTRY, _decode(original))
            amounts = [abs(leg.amount) for leg in first.legs()]
            remaining = [int(r) for r in body.get("remaining", [])]
            if len(remaining) != len(amounts) or any(
                r < 0 or r > a for r, a in zip(remaining, amounts, strict=False)
            ):
                self.find(e.position, "reversal", "reversible remainder out of range", e.stream_id)
