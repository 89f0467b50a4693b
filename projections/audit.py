"""Replay the whole log (or up to a point) and check every invariant, without using
the read models. Memory grows with the number of accounts, not of entries.

Checks, each finding naming the log position:

* ``chain``     - each stream's versions are contiguous and in log order, every
  event after the first of its stream carries the hash of the previous event of that
  stream, and every event after the first of its write carries the hash of the event
  written just before it: an edited, deleted, reordered or inserted row breaks this;
  each account is opened, and each asset declared, once and in its own stream;
* ``key``       - each entry is stored under the stream derived from its idempotency
  key, as version 1 (so a key applied twice cannot exist);
* ``unbalanced``- every entry balances in every asset;
* ``balance``   - every ``AccountChanged`` carries exactly the balances and entry
  count that replaying the entries before it gives;
* ``rule``      - no account's balance rule is broken after any entry;
* ``hold``      - a hold resolves at most once, and a capture never exceeds the hold;
  a capture, void or expiry names a hold, releases exactly what that hold reserved (a
  void or expiry posts nothing) and is followed in its write by the hold's update
  naming it; an entry update is made by the entry written just before it;
* ``reversal``  - a reversal names a posting, and what remains reversible of it goes
  down by exactly what the reversal gives back (per asset), never below zero;
* ``asset``     - every account is opened with its asset's scale (an ISO 4217
  currency's minor units, or the scale the asset was declared with); no ISO 4217
  currency is declared, and every declared code is valid;
* ``unknown``   - an event refers to an account or asset not opened or declared before it;
* ``malformed`` - an event's body cannot be read;
* ``tail``      - at the end, every account's last event reflects all its entries;
* ``conservation`` - every asset sums to zero over all accounts;
* ``read_model`` - (with :func:`diff_read_model`) the live balances view differs from
  the replay.

Here: the driver (:func:`audit`), the point in time (:func:`position_at`) and the
read-model comparison (:func:`diff_read_model`). The report and findings are in
``_audit_report``, the replay's state and reads in ``_audit_state``, the hold and
reversal checks in ``_audit_holds`` and the other checks in ``_auditor``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime

from eventsourcing.persistence import Notification

from ledger.errors import InvalidCommand
from ledger.events import (
    TOPIC_ACCOUNT_CHANGED,
    TOPIC_ACCOUNT_OPENED,
    TOPIC_ASSET_DECLARED,
    LogEvent,
)
from ledger.model import account_stream_id
from ledger.projections._audit_report import FINDINGS_MAX, AuditReport, Finding, _amount, _balances
from ledger.projections._auditor import _Auditor
from ledger.store import EventStore

__all__ = ["AuditReport", "Finding", "audit", "diff_read_model", "position_at"]

#: Events read per query while replaying.
READ_BATCH = 10_000


def audit(
    store: EventStore,
    *,
    until_position: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> AuditReport:
    """Replay the log from the first event (up to ``until_position``) and check it."""
    auditor = _Auditor(store)
    position = 0
    last: list[str] = []
    while True:
        batch = store.read_log(position, READ_BATCH)
        if until_position is not None:
            full = len(batch)
            batch = _cut(batch, until_position, last)
            if len(batch) < full:
                until_position = -1  # the cut is made: read no further
        if not batch:
            break
        auditor.prefetch(batch)
        for n in batch:
            try:
                event = LogEvent.from_notification(n, unseal=False)
            except ValueError as exc:
                auditor.find(n.id, "chain", f"undecodable event: {exc}", n.originator_id)
                continue
            if not isinstance(event.body, dict):
                kind = type(event.body).__name__
                message = f"event body is a JSON {kind}, not an object"
                auditor.find(n.id, "malformed", message, n.originator_id)
                continue
            try:
                auditor.event(event, n.state)
            except (AttributeError, KeyError, TypeError, ValueError, IndexError) as exc:
                auditor.find(
                    n.id, "malformed", f"event body is malformed: {exc!r}", n.originator_id
                )
            auditor.seen_event(event, n.state)
        position = batch[-1].id
        auditor.report.events += len(batch)
        auditor.report.position = position
        if progress is not None:
            progress(len(batch))
    auditor.finish()
    return auditor.report


_STARTS = (TOPIC_ACCOUNT_OPENED, TOPIC_ASSET_DECLARED)


def _cut(batch: Sequence[Notification], until: int, last: list[str]) -> list[Notification]:
    """Events up to ``until``, plus the rest of the write in progress there (a write
    with entries ends with the account events of its entries, which belong with
    them). ``last`` carries the topic of the previous event across batches."""
    out = []
    for n in batch:
        if n.id > until:
            if not last:
                break
            ended = last[0] == TOPIC_ACCOUNT_CHANGED and n.topic != TOPIC_ACCOUNT_CHANGED
            if ended or (last[0] in _STARTS and n.topic in _STARTS):
                break
        out.append(n)
        last[:] = [n.topic]
    return out


def position_at(store: EventStore, at: datetime) -> int:
    """The last log position of the writes recorded at or before ``at`` (which needs a
    time zone: InvalidCommand without one).

    A write's first event is an entry, an account opening or an asset declaration,
    all stamped with the write's time; its account events follow without a stamp. An
    event whose stamp cannot be read (an edited row) is passed over here: the audit
    reports it.
    """
    if not isinstance(at, datetime) or at.tzinfo is None or at.utcoffset() is None:
        raise InvalidCommand(f"{at!r} needs a time zone (e.g. datetime(..., tzinfo=UTC))")
    position = 0
    while True:
        batch = store.read_log(position, READ_BATCH)
        if not batch:
            return position
        for n in batch:
            stamp = _stamp(n)
            if stamp is not None and stamp > at:
                return position
            position = n.id


def _stamp(n: Notification) -> datetime | None:
    """The time an event's write was recorded, if it carries a readable one."""
    try:
        body = LogEvent.from_notification(n, unseal=False).body
        text = body.get("recorded_at") or body.get("at")
        stamp = None if text is None else datetime.fromisoformat(text)
    except (AttributeError, TypeError, ValueError):
        return None
    return stamp if stamp is not None and stamp.utcoffset() is not None else None


def diff_read_model(report: AuditReport, rows: dict[str, tuple[int, int, int]]) -> None:
    """Add a ``read_model`` finding for every account whose live read-model balances
    (posted, pending_out, pending_in in minor units of the account's normal side, as
    the read model keeps them) differ from the replay. The finding says both as signed
    decimals in the account's asset, debits positive."""
    for name in sorted(set(rows) | set(report.balances)):
        replayed = report.balances.get(name)
        live = rows.get(name)
        expected = (
            None
            if replayed is None
            else (replayed["posted"], replayed["pending_out"], replayed["pending_in"])
        )
        if live == expected:
            continue
        report.findings_total += 1
        if len(report.findings) >= FINDINGS_MAX:
            continue
        meta = report.account_assets.get(name)
        if meta is None:  # an account the replay does not know: its asset is unknown
            message = (
                f"read model has account {name!r} (posted, pending_out, pending_in "
                f"{live} in minor units of its normal side); the replay has no such account"
            )
            report.findings.append(
                Finding(report.position, "read_model", message, str(account_stream_id(name)))
            )
            continue
        asset, scale, sign = meta
        have = "no row" if live is None else _balances(sign, scale, asset, live)
        want = "no account" if expected is None else _balances(sign, scale, asset, expected)
        report.findings.append(
            Finding(
                report.position,
                "read_model",
                f"read model has {have} for account {name!r}; replay gives {want}",
                str(account_stream_id(name)),
                account=name,
                asset=asset,
                expected=None if expected is None else _amount(sign * expected[0], scale),
                actual=None if live is None else _amount(sign * live[0], scale),
            )
        )
