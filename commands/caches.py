"""The executor's memory between attempts: the latest known states (accounts, open
entries, assets) and the outcomes this process committed, by key."""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Iterable

from eventsourcing.persistence import StoredEvent

from ledger.assets import Asset
from ledger.model import AccountState, EntryState
from ledger.outcome import Outcome, Status

from .working_set import WorkingSet

__all__ = ["CACHE_KEYS_MAX", "CACHE_STREAMS_MAX", "KeyCache", "StateCache"]

#: States kept in memory before the cache is emptied (it refills from the store).
CACHE_STREAMS_MAX = 1_000_000
#: Committed outcomes kept in memory for replays without a lookup (the oldest go).
CACHE_KEYS_MAX = 100_000


class StateCache:
    """Latest known states, shared by the attempts of one process.

    The cache may be stale when other processes write: that is safe, because every
    append names the versions it extends and fails if another writer got there first.
    """

    def __init__(self) -> None:
        self.accounts: dict[str, AccountState] = {}
        self.entries: dict[uuid.UUID, EntryState] = {}
        self.assets: dict[str, Asset] = {}
        #: The first event of each account read from the store (it never changes): a
        #: state read again needs only the account's latest event.
        self.openings: dict[str, StoredEvent] = {}
        #: Outcomes this process committed, by key id: a retry that reaches this
        #: process replays without a lookup. Only committed outcomes are kept, and a
        #: key's outcome never changes, so they cannot be stale.
        self.keys = KeyCache()

    def remember(self, decided: dict[uuid.UUID, tuple[str, Outcome]]) -> None:
        """Keep the outcomes of a committed decision (the oldest go beyond the cap)."""
        self.keys.update(decided)

    def forget(self, accounts: Iterable[str], entries: Iterable[uuid.UUID]) -> None:
        """Drop states so the next attempt reads them from the store."""
        for name in accounts:
            self.accounts.pop(name, None)
        for entry_id in entries:
            self.entries.pop(entry_id, None)

    def absorb(self, ws: WorkingSet) -> None:
        """Keep the states a successful append produced."""
        if len(self.accounts) + len(ws.accounts) > CACHE_STREAMS_MAX:
            self.accounts.clear()
            self.openings.clear()
        self.accounts.update(ws.accounts)
        for entry_id, entry in ws.entries.items():
            if entry.status == "pending":
                self.entries[entry_id] = entry
            else:
                self.entries.pop(entry_id, None)
        self.assets.update(ws.assets)


class KeyCache:
    """Committed outcomes by key id, the oldest dropped beyond :data:`CACHE_KEYS_MAX`.

    Kept as plain values (ints, strings, tuples of them), which the host's garbage
    collector stops tracking, rather than as outcome objects and UUIDs, which it would
    walk at every full collection: with 100,000 keys cached, collections of the host
    process took up to 19 ms (measured in the example service).

    The order of arrival is kept beside, in a queue, so dropping the oldest costs the
    same however long the process has run. Dropping them by iterating the dict from
    its start did not: a dict keeps the slots of deleted items until it resizes, and
    iteration walks over them, so once the cache was full each key kept cost up to
    12 us instead of 0.5 us (the example service's payments slowed down after its
    first 100,000).
    """

    __slots__ = ("_items", "_order")

    def __init__(self) -> None:
        self._items: dict[int, _KeptOutcome] = {}
        #: The kept keys' ids, oldest first (ints: nothing for the collector to walk).
        self._order: deque[int] = deque()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key_id: uuid.UUID) -> tuple[str, Outcome] | None:
        """The fingerprint and outcome committed under ``key_id``, if kept."""
        kept = self._items.get(key_id.int)
        if kept is None:
            return None
        fingerprint, key, status, entry, code, message, kind = kept
        entry_id = None if entry is None else uuid.UUID(int=entry)
        return fingerprint, Outcome(key, status, entry_id, code, message, False, kind)

    def update(self, decided: dict[uuid.UUID, tuple[str, Outcome]]) -> None:
        """Keep these outcomes (the oldest kept ones go beyond the cap)."""
        items, order = self._items, self._order
        for key_id, (fp, o) in decided.items():
            entry = None if o.entry_id is None else o.entry_id.int
            number = key_id.int
            if number not in items:
                order.append(number)
            items[number] = (fp, o.key, o.status, entry, o.code, o.message, o.kind)
        for _ in range(len(items) - CACHE_KEYS_MAX):
            del items[order.popleft()]


_KeptOutcome = tuple[str, str, Status, int | None, str | None, str | None, str | None]
