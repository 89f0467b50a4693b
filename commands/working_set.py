"""The state one write decision works on, and what it will append.

A :class:`WorkingSet` holds the states loaded for a batch of commands. Each command
is decided inside a :class:`Tx` that copies what it touches; a rejected command's
``Tx`` is dropped, so it leaves no trace, and an applied one is merged. At the end
:meth:`WorkingSet.finish` emits one ``AccountChanged`` per touched account and returns
the :class:`~ledger.store.WriteBatch` to append.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from eventsourcing.persistence import StoredEvent

from ledger import events
from ledger.assets import BALANCE_MAX_MINOR, Asset, iso_currency, to_decimal
from ledger.effects import leg_effect, refused_by_lifecycle
from ledger.errors import (
    AccountClosed,
    AccountFrozen,
    AssetMismatch,
    BalanceOverflow,
    BalanceRuleViolated,
    UnknownAccount,
    UnknownAsset,
)
from ledger.model import AccountState, EntryState, Leg, account_stream_id, asset_stream_id
from ledger.store import KeyRecord, WriteBatch

__all__ = ["Tx", "WorkingSet"]


Posting = tuple[Any, tuple[Leg, ...], StoredEvent]


def posting_state(entry_id: uuid.UUID, posting: Posting, now: datetime) -> EntryState:
    """The state of a posting recorded earlier in the same batch."""
    kind, legs, event = posting
    # Read back only when a later command of the batch asks (a reversal: rare).
    effective = events.decode(event.state, unseal=False)["effective_at"]
    return EntryState(
        entry_id=entry_id,
        kind=kind,
        legs=legs,
        version=1,
        last_hash=events.state_hash(event.state),
        status=None,
        expires_at=None,
        effective_at=datetime.fromisoformat(effective),
        remaining=[abs(leg.amount) for leg in legs],
        recorded_at=now,
    )


class WorkingSet:
    """Loaded states plus the changes of the commands applied so far in this batch."""

    def __init__(
        self,
        accounts: Mapping[str, AccountState],
        entries: Mapping[uuid.UUID, EntryState],
        assets: Mapping[str, Asset],
        now: datetime,
    ) -> None:
        self.now = now
        self._base_accounts = accounts
        self._base_entries = entries
        self.accounts: dict[str, AccountState] = {}
        self.entries: dict[uuid.UUID, EntryState] = {}
        self.postings: dict[uuid.UUID, Posting] = {}
        self.assets: dict[str, Asset] = dict(assets)
        self.account_entries: dict[str, list[uuid.UUID]] = {}
        self.events: list[StoredEvent] = []
        self.keys: list[KeyRecord] = []
        self.entry_keys: list[uuid.UUID] = []
        self.holds_opened: list[tuple[uuid.UUID, datetime | None]] = []
        self.holds_closed: list[uuid.UUID] = []
        self.read_versions: dict[uuid.UUID, int] = {}

    def current_account(self, name: str) -> AccountState | None:
        """The account as this batch has left it so far (not a copy)."""
        state = self.accounts.get(name)
        if state is not None:
            return state
        state = self._base_accounts.get(name)
        sid = account_stream_id(name) if state is None else state.stream_id
        if sid not in self.read_versions:
            self.read_versions[sid] = 0 if state is None else state.version
        return state

    def last_event(self) -> StoredEvent | None:
        """The latest event of the commands applied so far in this batch."""
        return self.events[-1] if self.events else None

    def writable_account(self, name: str) -> AccountState | None:
        """The batch's own copy of the account (made on first use), to change in place."""
        state = self.accounts.get(name)
        if state is not None:
            return state
        base = self._base_accounts.get(name)
        if base is None:
            self.read_versions.setdefault(account_stream_id(name), 0)
            return None
        self.read_versions.setdefault(base.stream_id, base.version)
        state = self.accounts[name] = base.copy()
        return state

    def current_entry(self, entry_id: uuid.UUID) -> EntryState | None:
        """The entry as this batch has left it so far (not a copy)."""
        state = self.entries.get(entry_id)
        if state is not None:
            return state
        posting = self.postings.pop(entry_id, None)
        if posting is not None:  # posted earlier in this batch
            state = posting_state(entry_id, posting, self.now)
            self.entries[entry_id] = state
            return state
        state = self._base_entries.get(entry_id)
        if entry_id not in self.read_versions:
            self.read_versions[entry_id] = 0 if state is None else state.version
        return state

    def asset(self, code: str) -> Asset:
        """The asset ``code``: an ISO 4217 currency or a declared asset.

        Not recorded as a read (unlike accounts and entries): a declared asset never
        changes, and one not known yet is read from the store first, so a decision
        made on the cache (the group commit's deciding ahead) never depends on an
        asset declared by a group still in flight."""
        known = self.assets.get(code)
        if known is None:
            known = iso_currency(code)
            if known is None:
                raise UnknownAsset(
                    f"asset {code!r} is not an ISO 4217 currency and was not declared"
                )
            self.assets[code] = known
        return known

    def touched_before(self, name: str) -> bool:
        """Whether an earlier command of this batch changed the account."""
        return name in self.account_entries

    def merge(self, tx: Tx) -> None:
        """Keep the changes of an applied command."""
        self.accounts.update(tx.accounts)
        for name in tx.flushed:  # their entries so far got a version of their own
            self.account_entries.pop(name, None)
        if tx.entries:
            self.entries.update(tx.entries)
        if tx.new_postings:
            self.postings.update(tx.new_postings)
        if tx.new_assets:
            self.assets.update(tx.new_assets)
        account_entries = self.account_entries
        for name, entry_id in tx.touched:
            touched = account_entries.get(name)
            if touched is None:
                account_entries[name] = [entry_id]
            else:
                touched.append(entry_id)
        self.events.extend(tx.events)
        if tx.holds_opened:
            self.holds_opened.extend(tx.holds_opened)
        if tx.holds_closed:
            self.holds_closed.extend(tx.holds_closed)

    def finish(self) -> WriteBatch:
        """Emit one AccountChanged per touched account and return what to append."""
        batch = WriteBatch(
            events=list(self.events),
            keys=list(self.keys),
            entry_keys=list(self.entry_keys),
            holds_opened=list(self.holds_opened),
            holds_closed=list(self.holds_closed),
        )
        # Each event links to the one before it in this write (see Tx.emit); the
        # account events come last.
        previous = self.last_event()
        for name, entry_ids in self.account_entries.items():
            state = self.accounts[name]
            state.version += 1
            previous = events.account_changed(state, len(entry_ids), previous)
            state.last_hash = events.state_hash(previous.state)
            batch.events.append(previous)
        # Every stream the decision read, written or not, must still be at the version
        # it saw (0 = absent, as for the stream of each new entry).
        batch.expect_versions = dict(self.read_versions)
        for key_id in self.entry_keys:
            batch.expect_versions.setdefault(key_id, 0)
        return batch


class Tx:
    """The changes of one command, kept apart until the command is known to succeed.

    Accounts are changed in place in the batch's copies (copying each account per
    command cost a tenth of the batch path); the balances they had before this command
    are kept so that :meth:`rollback` restores them when the command fails. Entries are
    private copies until :meth:`WorkingSet.merge`.
    """

    __slots__ = (
        "_undo",
        "_undo_rules",
        "accounts",
        "entries",
        "events",
        "fingerprint",
        "flushed",
        "holds_closed",
        "holds_opened",
        "new_assets",
        "new_postings",
        "touched",
        "ws",
    )

    def __init__(self, ws: WorkingSet) -> None:
        self.ws = ws
        self.accounts: dict[str, AccountState] = {}
        self._undo: list[tuple[AccountState, int, int, int]] = []
        self._undo_rules: list[tuple[AccountState, AccountState]] = []
        #: Accounts whose entries of this batch so far were given a version by a
        #: lifecycle change (see :meth:`change_account`).
        self.flushed: list[str] = []
        self.entries: dict[uuid.UUID, EntryState] = {}
        self.new_assets: dict[str, Asset] = {}
        self.touched: list[tuple[str, uuid.UUID]] = []
        self.events: list[StoredEvent] = []
        self.holds_opened: list[tuple[uuid.UUID, datetime | None]] = []
        self.holds_closed: list[uuid.UUID] = []
        self.new_postings: dict[uuid.UUID, Posting] = {}
        #: The fingerprint of the command being decided (recorded in its entry).
        self.fingerprint = ""

    # -- reading -----------------------------------------------------------------------

    def account(self, name: str) -> AccountState | None:
        """The account to change, or None if it was never opened."""
        mine = self.accounts.get(name)
        if mine is not None:
            return mine
        mine = self.ws.writable_account(name)
        if mine is None:
            return None
        self._undo.append((mine, mine.posted, mine.pending_out, mine.pending_in))
        self.accounts[name] = mine
        return mine

    def rollback(self) -> None:
        """Undo this command's changes to accounts (it failed)."""
        for state, before in reversed(self._undo_rules):
            state.version, state.last_hash = before.version, before.last_hash
            state.min_balance, state.max_balance = before.min_balance, before.max_balance
            state.status, state.freeze = before.status, before.freeze
            state.rules_changed = before.rules_changed
        self._undo_rules.clear()
        for state, posted, pending_out, pending_in in self._undo:
            state.posted = posted
            state.pending_out = pending_out
            state.pending_in = pending_in
        self._undo.clear()

    def require_account(self, name: str) -> AccountState:
        """The account, or :class:`UnknownAccount`."""
        state = self.account(name)
        if state is None:
            raise UnknownAccount(f"account {name!r} does not exist; open it first")
        return state

    def entry(self, entry_id: uuid.UUID) -> EntryState | None:
        """A private copy of the entry, or None if there is no such entry."""
        mine = self.entries.get(entry_id)
        if mine is not None:
            return mine
        posting = self.new_postings.pop(entry_id, None)
        if posting is not None:  # posted earlier in this command (an atomic batch)
            mine = posting_state(entry_id, posting, self.ws.now)
            self.entries[entry_id] = mine
            return mine
        base = self.ws.current_entry(entry_id)
        if base is None:
            return None
        mine = base.copy()
        self.entries[entry_id] = mine
        return mine

    def asset(self, code: str) -> Asset:
        """The asset, including one declared earlier in this command."""
        return self.new_assets.get(code) or self.ws.asset(code)

    def asset_is_declared(self, code: str) -> bool:
        """Whether ``code`` is already a declared asset."""
        sid = asset_stream_id(code)
        if sid not in self.ws.read_versions:
            self.ws.read_versions[sid] = 1 if code in self.ws.assets else 0
        return code in self.ws.assets or code in self.new_assets

    # -- changing ----------------------------------------------------------------------

    def last_event(self) -> StoredEvent | None:
        """The event the next one this command emits comes after in the write."""
        return self.events[-1] if self.events else self.ws.last_event()

    def emit(self, event: StoredEvent, *, linked_to: StoredEvent | None = None) -> None:
        """Append an event of this command (entries, openings, entry updates).

        Every event of a write links to the one before it (stream hashes ignore the
        link). An event made already linked (cheaper: made once) names the event it
        links to as ``linked_to``, which must be :meth:`last_event`; any other event is
        linked here. A command's events only reach the write if it applies, and
        commands are decided one after another, so the order is final.
        """
        previous = self.last_event()
        if linked_to is None:
            if previous is not None:
                event = events.with_link(event, previous)
        elif linked_to is not previous:
            raise AssertionError("an event was linked to another event than the one before it")
        self.events.append(event)

    def update_entry(self, entry: EntryState, by: uuid.UUID) -> None:
        """Record a new version of ``entry`` (hold resolved or reversal applied)."""
        entry.version += 1
        previous = self.last_event()
        event = events.entry_updated(entry, by, previous)
        entry.last_hash = events.state_hash(event.state)
        self.emit(event, linked_to=previous)

    def change_account(self, state: AccountState, change: dict[str, Any], **rules: Any) -> None:
        """Record a lifecycle change of an account (new ``rules``: bounds, status,
        freeze) as a version of its own, written after a version for the entries this
        batch already applied to the account: each version's entries were decided under
        the rules of the version before it (the audit checks them so)."""
        self._undo_rules.append((state, state.copy()))
        name = state.account
        # The batch's entries on the account before this command, unless an earlier
        # change of this command (an atomic batch) gave them their version already.
        before = 0 if name in self.flushed else len(self.ws.account_entries.get(name, ()))
        earlier = before + sum(1 for touched, _ in self.touched if touched == name)
        if earlier:
            state.version += 1
            previous = self.last_event()
            event = events.account_changed(state, earlier, previous)
            state.last_hash = events.state_hash(event.state)
            self.emit(event, linked_to=previous)
            self.flushed.append(name)
            self.touched = [pair for pair in self.touched if pair[0] != name]
        for field, value in rules.items():
            setattr(state, field, value)
        state.rules_changed = True
        state.version += 1
        previous = self.last_event()
        event = events.account_changed(state, 0, previous, change)
        state.last_hash = events.state_hash(event.state)
        self.emit(event, linked_to=previous)

    def apply_legs(
        self, entry_id: uuid.UUID, legs: tuple[Leg, ...], *, pending: bool, sign: int = 1
    ) -> None:
        """Apply legs to balances: posted, or as holds (``pending``); ``sign=-1`` releases."""
        touched = self.touched
        for leg in legs:
            name = leg.account
            state = self.accounts.get(name) or self.require_account(name)
            if state.asset.code != leg.asset:
                raise AssetMismatch(
                    f"leg in {leg.asset} on account {name!r} which holds {state.asset.code}"
                )
            if state.status != "open":
                refused = refused_by_lifecycle(state.status, state.freeze, leg.amount, sign=sign)
                if refused == "closed":
                    raise AccountClosed(f"account {name!r} is closed")
                if refused == "frozen":
                    what = "debits" if state.freeze == "debits" else "movements"
                    raise AccountFrozen(f"account {name!r} is frozen (no {what})")
            posted, pending_out, pending_in = leg_effect(
                state.sign, leg.amount, pending=pending, sign=sign
            )
            state.posted += posted
            state.pending_out += pending_out
            state.pending_in += pending_in
            pair = (name, entry_id)
            if pair not in touched:
                touched.append(pair)

    def check_rules(self) -> None:
        """Raise if any account changed by this command breaks a rule or bound."""
        for name, _ in self.touched:
            state = self.accounts[name]
            if (
                abs(state.posted) > BALANCE_MAX_MINOR
                or abs(state.pending_out) > BALANCE_MAX_MINOR
                or abs(state.pending_in) > BALANCE_MAX_MINOR
            ):
                raise BalanceOverflow(f"a balance of account {name!r} would exceed the maximum")
            if state.min_balance is not None and state.available < state.min_balance:
                raise BalanceRuleViolated(
                    f"account {name!r} would have an available balance of "
                    f"{to_decimal(state.available, state.asset)} {state.asset.code}, below its "
                    f"minimum of {to_decimal(state.min_balance, state.asset)}"
                )
            top = state.posted + state.pending_in
            if state.max_balance is not None and top > state.max_balance:
                raise BalanceRuleViolated(
                    f"account {name!r} would reach a balance of {to_decimal(top, state.asset)} "
                    f"{state.asset.code}, above its maximum of "
                    f"{to_decimal(state.max_balance, state.asset)}"
                )
