"""Replay the whole log (or up to a point) and check every invariant, without using
the read models. Memory grows with the number of accounts, not of entries.

Checks, each finding naming the log position:

* ``chain``     - each stream's versions are contiguous and in log order, every
  event after the first of its stream carries the hash of the previous event of that
  stream, and every event after the first of its write carries the hash of the event
  written just before it: an edited, deleted, reordered or inserted row breaks this;
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
* ``unknown``   - an event refers to an account or asset never declared;
* ``malformed`` - an event's body cannot be read;
* ``tail``      - at the end, every account's last event reflects all its entries;
* ``conservation`` - every asset sums to zero over all accounts;
* ``read_model`` - (with :func:`diff_read_model`) the live balances view differs from
  the replay.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, cast

from eventsourcing.persistence import Notification

from ledger.assets import SCALE_MAX, plain, scaled
from ledger.effects import (
    capture_excess_of,
    entry_effects,
    leg_effect,
    money,
    refused_by_lifecycle,
)
from ledger.errors import InvalidCommand
from ledger.events import (
    TOPIC_ACCOUNT_CHANGED,
    TOPIC_ACCOUNT_OPENED,
    TOPIC_ASSET_DECLARED,
    TOPIC_ENTRY,
    TOPIC_ENTRY_UPDATED,
    LogEvent,
    decode,
    link_hash,
    state_hash,
)
from ledger.model import account_stream_id, entry_id_for_key
from ledger.store import EventStore

__all__ = ["AuditReport", "Finding", "audit", "diff_read_model", "position_at"]

#: Events read per query while replaying.
READ_BATCH = 10_000
#: Findings kept in a report (the count is always exact).
FINDINGS_MAX = 1_000


@dataclass(frozen=True, slots=True)
class Finding:
    """One broken invariant, located in the log. Where it is about an amount, also
    the ``account`` (if one) and the ``asset``, and the ``expected`` and ``actual``
    amounts as exact decimal strings in the asset's scale, signed debits positive
    (for ``balance`` and ``read_model``: the posted balance; ``unbalanced`` and
    ``conservation``: the sum of the asset's legs or balances; ``hold``: what the hold
    reserved and what the capture posts on that account's side)."""

    position: int
    code: str
    message: str
    stream: str = ""
    account: str = ""
    asset: str = ""
    expected: str | None = None
    actual: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The finding in the report (the fields of schema 1, then the added ones)."""
        return {
            "position": self.position,
            "code": self.code,
            "stream": self.stream,
            "message": self.message,
            "account": self.account or None,
            "asset": self.asset or None,
            "expected": self.expected,
            "actual": self.actual,
        }


#: What the signed figures in the messages are.
SIGNS = "(signed, debits positive)"


def _amount(minor: int, scale: int) -> str:
    """Minor units as an exact decimal string with ``scale`` decimals."""
    return plain(scaled(minor, scale))


def _balances(sign: int, scale: int, asset: str, held: tuple[int, int, int]) -> str:
    """An account's (posted, pending_out, pending_in), kept on the account's normal
    side in minor units, in words: signed decimals, debits positive."""
    posted, out, inn = _signed(sign, held)
    return (
        f"posted {_amount(posted, scale)}, pending_out {_amount(out, scale)}, "
        f"pending_in {_amount(inn, scale)} {asset} {SIGNS}"
    )


def _signed(sign: int, held: tuple[int, int, int]) -> tuple[int, int, int]:
    """(posted, pending_out, pending_in) of the account's normal side as signed minor
    units, debits positive (what is held going out lowers the normal-side balance)."""
    posted, out, inn = held
    return sign * posted, -sign * out, sign * inn


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


@dataclass(slots=True)
class AuditReport:
    """The outcome of an audit: verdict, counts, trial balance and findings."""

    position: int = 0
    events: int = 0
    entries: int = 0
    accounts: int = 0
    findings: list[Finding] = field(default_factory=list)
    findings_total: int = 0
    trial_balance: dict[str, dict[str, Any]] = field(default_factory=dict)
    balances: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Each replayed account's asset, scale and normal side (+1 debit, -1 credit).
    account_assets: dict[str, tuple[str, int, int]] = field(default_factory=dict)

    @property
    def clean(self) -> bool:
        """True when no finding was made."""
        return self.findings_total == 0

    def to_json(self) -> dict[str, Any]:
        """The documented report (schema version 1)."""
        return {
            "schema": "ledger-audit/1",
            "verdict": "clean" if self.clean else "findings",
            "position": self.position,
            "counts": {
                "events": self.events,
                "entries": self.entries,
                "accounts": self.accounts,
                "findings": self.findings_total,
            },
            "trial_balance": dict(sorted(self.trial_balance.items())),
            "findings": [f.to_json() for f in self.findings],
        }


class _Auditor:
    def __init__(self, store: EventStore) -> None:
        self.store = store
        self.report = AuditReport()
        self.accounts: dict[str, _Account] = {}
        self.streams: dict[uuid.UUID, tuple[int, str]] = {}  # account and asset streams only
        self.previous_link = ""
        self.scales: dict[str, int] = {}  # of the assets declared or held by an account
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

    def event(self, e: LogEvent, state: bytes) -> None:
        link = e.body.get("link")
        if link is not None and link != self.previous_link:
            self.find(
                e.position,
                "chain",
                "the event before this one in its write is not the "
                "one it was written after (removed, inserted or moved)",
                e.stream_id,
            )
        self.previous_link = link_hash(state)
        awaited, self.awaiting = self.awaiting, None
        if awaited is not None or e.topic == TOPIC_ENTRY_UPDATED:
            self.check_update_follows(e, awaited)
        handler: dict[str, Callable[[LogEvent, bytes], None]] = {
            TOPIC_ASSET_DECLARED: self.first_of_stream,
            TOPIC_ACCOUNT_OPENED: self.opened,
            TOPIC_ACCOUNT_CHANGED: self.changed,
            TOPIC_ENTRY: self.entry,
            TOPIC_ENTRY_UPDATED: self.entry_updated,
        }
        fn = handler.get(e.topic)
        if fn is None:
            self.find(e.position, "unknown", f"unknown event topic {e.topic!r}", e.stream_id)
            return
        fn(e, state)

    def first_of_stream(self, e: LogEvent, state: bytes) -> None:
        if e.topic == TOPIC_ASSET_DECLARED:
            _check_asset(e.body["code"], e.body["scale"])
            self.scales.setdefault(e.body["code"], e.body["scale"])
        if e.version != 1 or e.stream_id in self.streams:
            self.find(e.position, "chain", f"stream starts at version {e.version}", e.stream_id)
        self.streams[e.stream_id] = (e.version, state_hash(state))

    def opened(self, e: LogEvent, state: bytes) -> None:
        body = e.body
        name = body["account"]
        if not isinstance(name, str):
            raise TypeError(f"account name {name!r} is not a string")
        _check_asset(body["asset"], body["scale"])
        if account_stream_id(name) != e.stream_id:
            self.find(
                e.position, "chain", f"account {name!r} opened in a foreign stream", e.stream_id
            )
        if e.version != 1 or name in self.accounts:
            self.find(
                e.position,
                "chain",
                f"account {name!r} opened twice or at version {e.version}",
                e.stream_id,
            )
        self.scales.setdefault(body["asset"], body["scale"])
        if body["normal"] not in ("debit", "credit"):
            raise ValueError(f"normal side {body['normal']!r} is neither debit nor credit")
        self.accounts[name] = _Account(
            body["asset"],
            body["scale"],
            1 if body["normal"] == "debit" else -1,
            None if body["min"] is None else int(body["min"]),
            None if body["max"] is None else int(body["max"]),
            e.version,
            state_hash(state),
        )

    def changed(self, e: LogEvent, state: bytes) -> None:
        body = e.body
        name = body["account"]
        acct = self.accounts.get(name)
        if acct is None:
            self.find(e.position, "unknown", f"change of unknown account {name!r}", e.stream_id)
            return
        if e.version != acct.version + 1 or body.get("prev") != acct.last_hash:
            self.find(
                e.position,
                "chain",
                f"account {name!r}: version {e.version} does not follow version "
                f"{acct.version} (hash chain broken)",
                e.stream_id,
            )
        recorded = (int(body["posted"]), int(body["pending_out"]), int(body["pending_in"]))
        replayed = (acct.posted, acct.out, acct.inn)
        if recorded != replayed or body["entries"] != acct.since_event:
            self.find(
                e.position,
                "balance",
                f"account {name!r} records "
                f"{_balances(acct.sign, acct.scale, acct.asset, recorded)} after "
                f"{body['entries']} entries; replay gives "
                f"{_balances(acct.sign, acct.scale, acct.asset, replayed)} after "
                f"{acct.since_event}",
                e.stream_id,
                account=name,
                asset=acct.asset,
                expected=_amount(acct.sign * acct.posted, acct.scale),
                actual=_amount(acct.sign * recorded[0], acct.scale),
            )
        acct.version, acct.last_hash, acct.since_event = e.version, state_hash(state), 0
        rules = body.get("rules")
        if rules is not None:  # the account's rules from now on (after this version)
            acct.low = None if rules["min"] is None else int(rules["min"])
            acct.high = None if rules["max"] is None else int(rules["max"])
            acct.status, acct.freeze = rules["status"], rules["freeze"]
        if "change" in body and (body["entries"] or rules is None):
            message = f"account {name!r}: malformed lifecycle change"
            self.find(e.position, "lifecycle", message, e.stream_id)

    def entry(self, e: LogEvent, state: bytes) -> None:
        body = e.body
        self.report.entries += 1
        if e.version != 1 or entry_id_for_key(body["key"]) != e.stream_id:
            self.find(
                e.position, "key", "entry not stored under the stream of its key", e.stream_id
            )
        legs, releases = e.legs(), e.legs("releases")
        totals: dict[str, int] = defaultdict(int)
        for leg in legs:
            totals[leg.asset] += leg.amount
        for asset, total in sorted(totals.items()):
            if total:
                self.find(
                    e.position,
                    "unbalanced",
                    f"entry does not balance in {asset}: its legs sum to "
                    f"{self.money(total, asset)} {SIGNS}, not zero",
                    e.stream_id,
                    asset=asset,
                    expected=self.figure(0, asset),
                    actual=self.figure(total, asset),
                )
        if body["kind"] in _RESOLVES:
            self.check_resolution(e, legs, releases)
        elif body["kind"] == "reversal":
            self.check_reversal(e)
        target = body.get("hold") or body.get("reverses") or body.get("request")
        if target is not None:
            self.awaiting = _Awaited(uuid.UUID(target), e.stream_id, body["kind"], e.position, legs)
        touched: set[str] = set()
        for leg, pending, sign in entry_effects(body["kind"], legs, releases):
            acct = self.accounts.get(leg.account)
            if acct is None or acct.asset != leg.asset:
                self.find(
                    e.position,
                    "unknown",
                    f"leg in {leg.asset} on unknown account {leg.account!r}"
                    if acct is None
                    else f"leg in {leg.asset} on account {leg.account!r}, which holds {acct.asset}",
                    e.stream_id,
                    account=leg.account,
                    asset=leg.asset,
                )
                continue
            if acct.status != "open" and refused_by_lifecycle(
                acct.status, acct.freeze, leg.amount, sign=sign
            ):
                self.find(
                    e.position,
                    "lifecycle",
                    f"entry moves account {leg.account!r}, which is {acct.status}",
                    e.stream_id,
                    account=leg.account,
                    asset=acct.asset,
                )
            dp, dout, din = leg_effect(acct.sign, leg.amount, pending=pending, sign=sign)
            acct.posted += dp
            acct.out += dout
            acct.inn += din
            touched.add(leg.account)
        for name in touched:
            acct = self.accounts[name]
            acct.since_event += 1
            if (acct.low is not None and acct.posted - acct.out < acct.low) or (
                acct.high is not None and acct.posted + acct.inn > acct.high
            ):
                posted = (acct.posted, acct.out, acct.inn)
                self.find(
                    e.position,
                    "rule",
                    f"account {name!r} breaks its balance rule: "
                    f"{_balances(acct.sign, acct.scale, acct.asset, posted)}",
                    e.stream_id,
                    account=name,
                    asset=acct.asset,
                    actual=_amount(acct.sign * acct.posted, acct.scale),
                )

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

    def finish(self) -> None:
        if self.awaiting is not None:  # the log ends before the update the write makes
            # (a decline's write has no account event after it to break the chain)
            self.missed_update(self.awaiting)
            self.awaiting = None
        totals: dict[str, list[int]] = defaultdict(lambda: [0, 0])
        scales: dict[str, int] = {}
        accounts: dict[str, dict[str, dict[str, str]]] = defaultdict(dict)
        for name, acct in self.accounts.items():
            if acct.since_event:
                self.find(
                    self.report.position,
                    "tail",
                    f"account {name!r}: {acct.since_event} entries after its last event",
                    account_stream_id(name),
                    account=name,
                    asset=acct.asset,
                )
            raw = acct.sign * acct.posted  # debits minus credits
            totals[acct.asset][0 if raw >= 0 else 1] += abs(raw)
            scales[acct.asset] = acct.scale
            accounts[acct.asset][name] = {
                "normal": "debit" if acct.sign > 0 else "credit",
                "balance": _amount(raw, acct.scale),
            }
            self.report.balances[name] = {
                "posted": acct.posted,
                "pending_out": acct.out,
                "pending_in": acct.inn,
            }
            self.report.account_assets[name] = (acct.asset, acct.scale, acct.sign)
        for asset, (debits, credits) in sorted(totals.items()):
            scale = scales[asset]
            self.report.trial_balance[asset] = {
                "debits": _amount(debits, scale),
                "credits": _amount(credits, scale),
                "balanced": debits == credits,
                "accounts": dict(sorted(accounts[asset].items())),
            }
            if debits != credits:
                self.find(
                    self.report.position,
                    "conservation",
                    f"{asset} does not sum to zero: debits {_amount(debits, scale)} {asset}, "
                    f"credits {_amount(credits, scale)} {asset}, net "
                    f"{_amount(debits - credits, scale)} {asset} {SIGNS}",
                    asset=asset,
                    expected=_amount(0, scale),
                    actual=_amount(debits - credits, scale),
                )
        self.report.accounts = len(self.accounts)


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


@dataclass(frozen=True, slots=True)
class _Awaited:
    """An entry (``by``) whose write must update ``target`` next."""

    target: uuid.UUID
    by: uuid.UUID
    kind: str
    position: int
    legs: tuple[Any, ...]


def _check_asset(code: Any, scale: Any) -> None:
    """Raise ValueError unless ``code`` and ``scale`` can name an asset: an account or
    asset event edited to hold anything else is ``malformed``, and is kept out of the
    replay (whose trial balance sorts codes and scales amounts by them)."""
    if not isinstance(code, str) or type(scale) is not int or not 0 <= scale <= SCALE_MAX:
        raise ValueError(f"asset {code!r} with scale {scale!r} is not an asset")


def _decode(state: bytes) -> dict[str, Any]:
    return decode(state, unseal=False)  # personal fields are not the audit's business


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
