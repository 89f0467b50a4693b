"""The auditor: each event replayed through its checks (the chain of streams,
accounts and writes, entries' keys and balance per asset, recorded balances, balance
rules and lifecycle), and at the end of the log the tail, conservation and trial
balance checks."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from ledger.assets import SCALE_MAX, iso_currency, validate_asset_code
from ledger.effects import entry_effects, leg_effect, refused_by_lifecycle
from ledger.errors import UnknownAsset
from ledger.events import (
    TOPIC_ACCOUNT_CHANGED,
    TOPIC_ACCOUNT_OPENED,
    TOPIC_ASSET_DECLARED,
    TOPIC_ENTRY,
    TOPIC_ENTRY_UPDATED,
    LogEvent,
    link_hash,
    state_hash,
)
from ledger.model import account_stream_id, asset_stream_id, entry_id_for_key
from ledger.projections._audit_holds import _RESOLVES, _HoldChecks
from ledger.projections._audit_report import SIGNS, _amount, _balances
from ledger.projections._audit_state import _Account, _Awaited


class _Auditor(_HoldChecks):
    """Replays events one by one (:meth:`event`), then sums up (:meth:`finish`)."""

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
        fn = _HANDLERS.get(e.topic)
        if fn is None:
            self.find(e.position, "unknown", f"unknown event topic {e.topic!r}", e.stream_id)
            return
        fn(self, e, state)

    def first_of_stream(self, e: LogEvent, state: bytes) -> None:
        if e.topic == TOPIC_ASSET_DECLARED:
            self.declaration(e)
        if e.version != 1 or e.stream_id in self.streams:
            self.find(e.position, "chain", f"stream starts at version {e.version}", e.stream_id)
        self.streams[e.stream_id] = (e.version, state_hash(state))

    def declaration(self, e: LogEvent) -> None:
        """An asset declared as the write path declares one: once, in its own stream,
        with a valid code that is not an ISO 4217 currency (whose scale is fixed)."""
        code, scale = e.body["code"], e.body["scale"]
        _check_asset(code, scale)
        if asset_stream_id(code) != e.stream_id:
            message = f"asset {code!r} declared in a foreign stream"
            self.find(e.position, "chain", message, e.stream_id, asset=code)
        first = self.declared.get(code)
        if first is not None:
            message = f"asset {code!r} declared twice (scale {first}, then {scale})"
            self.find(e.position, "chain", message, e.stream_id, asset=code)
            return  # the first declaration stays the asset's
        self.declared[code] = self.scales[code] = scale
        iso = iso_currency(code)
        if iso is not None:
            message = (
                f"asset {code!r} declared with scale {scale}: an ISO 4217 currency "
                f"({iso.scale} decimals) is never declared"
            )
            self.find(e.position, "asset", message, e.stream_id, asset=code)
            self.scales[code] = iso.scale
            return
        try:
            validate_asset_code(code)
        except UnknownAsset:
            message = (
                f"asset code {code!r} is invalid: not 2-16 characters A-Z, 0-9 or _ "
                "starting with a letter"
            )
            self.find(e.position, "asset", message, e.stream_id, asset=code)

    def opening_scale(self, e: LogEvent, name: str, code: str, scale: int) -> None:
        """An account opened in an ISO 4217 currency or an asset declared before it,
        with that asset's scale (else its amounts would be read at another scale)."""
        iso = iso_currency(code)
        expected = iso.scale if iso is not None else self.declared.get(code)
        if expected is None:
            self.find(
                e.position,
                "unknown",
                f"account {name!r} opened in {code}, which is neither an ISO 4217 "
                "currency nor declared",
                e.stream_id,
                account=name,
                asset=code,
            )
            self.scales.setdefault(code, scale)
            return
        self.scales[code] = expected
        if scale != expected:
            held = (
                f"{code} has {expected} decimals (ISO 4217)"
                if iso is not None
                else f"{code} is declared with {expected} decimals"
            )
            self.find(
                e.position,
                "asset",
                f"account {name!r} opened in {code} with scale {scale}; {held}",
                e.stream_id,
                account=name,
                asset=code,
            )

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
        self.opening_scale(e, name, body["asset"], body["scale"])
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
        if account_stream_id(name) != e.stream_id:  # the write path would never read it
            message = f"account {name!r} changed in a foreign stream"
            self.find(e.position, "chain", message, e.stream_id, account=name)
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


#: Each topic's check, made once rather than per event (building the dict of bound
#: methods cost about 0.5 us an event).
_HANDLERS: dict[str, Callable[[_Auditor, LogEvent, bytes], None]] = {
    TOPIC_ASSET_DECLARED: _Auditor.first_of_stream,
    TOPIC_ACCOUNT_OPENED: _Auditor.opened,
    TOPIC_ACCOUNT_CHANGED: _Auditor.changed,
    TOPIC_ENTRY: _Auditor.entry,
    TOPIC_ENTRY_UPDATED: _Auditor.entry_updated,
}


def _check_asset(code: Any, scale: Any) -> None:
    """Raise ValueError unless ``code`` and ``scale`` can name an asset: an account or
    asset event edited to hold anything else is ``malformed``, and is kept out of the
    replay (whose trial balance sorts codes and scales amounts by them)."""
    if not isinstance(code, str) or type(scale) is not int or not 0 <= scale <= SCALE_MAX:
        raise ValueError(f"asset {code!r} with scale {scale!r} is not an asset")
