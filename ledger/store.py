"""The contract between the ledger and a storage backend.

A backend (SQLite, PostgreSQL) stores events in an eventsourcing application recorder
table and keeps two side tables written *in the same transaction*:

* idempotency records: one row per key whose command recorded no entry (a rejection,
  an account opening, an atomic batch) with the request fingerprint and the outcome.
  A command that recorded an entry needs no row: the entry's stream id is derived from
  the key and the entry event carries the fingerprint, so the event store's primary
  key makes the key apply at most once. Under the append's lock each side checks the
  other (no entry for a rejected key, no row for an applied one);
* the open-holds index (hold id, deadline), so ``expire_due`` finds due holds without
  reading the log. It is derived from the log and can be rebuilt from it.

:meth:`EventStore.append` is all-or-nothing. It raises :class:`AppendConflict` when a
stream version or key already exists, or a stream read by the decision moved on: the
caller reloads and decides again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from eventsourcing.persistence import Notification, StoredEvent

__all__ = [
    "AppendConflict",
    "CommitterConnection",
    "EventStore",
    "KeyRecord",
    "Known",
    "LoopAppender",
    "SendingAhead",
    "StateReader",
    "StoreSession",
    "WriteBatch",
    "moved_only",
    "notification",
    "stored_event",
]

_FIELDS = ("originator_id", "originator_version", "topic", "state")
_new = object.__new__
_set = object.__setattr__


def _stored_event(
    originator_id: uuid.UUID, originator_version: int, topic: str, state: bytes
) -> StoredEvent:
    event = _new(StoredEvent)
    _set(
        event,
        "__dict__",
        {
            "originator_id": originator_id,
            "originator_version": originator_version,
            "topic": topic,
            "state": state,
        },
    )
    return event


def _fills_dict(cls: type[StoredEvent], fields: tuple[str, ...], values: tuple[Any, ...]) -> bool:
    """Whether an instance of ``cls`` is its ``fields`` in its ``__dict__``, in that
    order (eventsourcing 9 lays StoredEvent and Notification out so)."""
    made = cls(**dict(zip(fields, values, strict=True)))
    return tuple(getattr(cls, "__dataclass_fields__", ())) == fields and getattr(
        made, "__dict__", None
    ) == dict(zip(fields, values, strict=True))


_SAMPLE = (uuid.UUID(int=0), 1, "topic", b"{}")

stored_event: Callable[[uuid.UUID, int, str, bytes], StoredEvent] = (
    _stored_event if _fills_dict(StoredEvent, _FIELDS, _SAMPLE) else StoredEvent
)
"""``StoredEvent(originator_id, originator_version, topic, state)``, made without the
frozen dataclass's ``__init__`` (which sets each field with ``object.__setattr__``:
1.0 us, twice what this costs; about two events are made per transfer). Equal to the
constructor's in value, hash, repr and pickling (tested). Falls back to the constructor
if a future eventsourcing lays the class out otherwise."""


def _notification(
    position: int, originator_id: uuid.UUID, originator_version: int, topic: str, state: bytes
) -> Notification:
    made = _new(Notification)
    _set(
        made,
        "__dict__",
        {
            "originator_id": originator_id,
            "originator_version": originator_version,
            "topic": topic,
            "state": state,
            "id": position,
        },
    )
    return made


def _notification_by_init(
    position: int, originator_id: uuid.UUID, originator_version: int, topic: str, state: bytes
) -> Notification:
    return Notification(originator_id, originator_version, topic, state, position)


notification: Callable[[int, uuid.UUID, int, str, bytes], Notification] = (
    _notification
    if _fills_dict(Notification, (*_FIELDS, "id"), (*_SAMPLE, 1))
    else _notification_by_init
)
"""``Notification`` at log ``position`` (first, as a log row reads), made without the
frozen dataclass's ``__init__``, as :data:`stored_event`."""


class AppendConflict(Exception):
    """A concurrent writer got there first; reload the named streams and retry."""


@dataclass(frozen=True, slots=True)
class KeyRecord:
    """The durable outcome of one idempotency key."""

    key_id: uuid.UUID
    key: str
    fingerprint: str
    outcome: bytes


@dataclass(slots=True)
class WriteBatch:
    """Everything one decision writes, atomically."""

    events: list[StoredEvent] = field(default_factory=list)
    keys: list[KeyRecord] = field(default_factory=list)
    #: Keys of the entries written: the append fails if any has a key row (a
    #: concurrent writer recorded a rejection under it).
    entry_keys: list[uuid.UUID] = field(default_factory=list)
    holds_opened: list[tuple[uuid.UUID, datetime | None]] = field(default_factory=list)
    holds_closed: list[uuid.UUID] = field(default_factory=list)
    #: Streams the decision read (written or not), with the version it saw (0 =
    #: absent). The append fails if any of them is at another version: moved on, or
    #: behind (a writer's state ahead of the store would otherwise skip a version of
    #: a stream it writes, which the primary key alone does not see).
    expect_versions: dict[uuid.UUID, int] = field(default_factory=dict)

    def expectations_to_check(self) -> dict[uuid.UUID, int]:
        """The expected versions a store's append checks under its write lock: all of
        them but the streams this batch creates (expected absent and written from
        version 1), whose first row the primary key refuses should they exist. A
        stream written at a later version is checked too: the primary key alone would
        let a writer whose state is ahead of the store skip a version."""
        created = {e.originator_id for e in self.events if e.originator_version == 1}
        return {sid: v for sid, v in self.expect_versions.items() if v or sid not in created}


#: A stream a reader already holds: its first event and the version held.
Known = tuple[StoredEvent, int]


def moved_only(
    found: dict[uuid.UUID, tuple[StoredEvent, StoredEvent]],
    known: Mapping[uuid.UUID, Known],
) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
    """``found`` without the known streams whose latest version is the one known (for
    a store that reads known streams in full, see :meth:`EventStore.read`)."""
    for sid, (_, version) in known.items():
        head = found.get(sid)
        if head is not None and head[1].originator_version == version:
            del found[sid]
    return found


class StateReader(Protocol):
    """Where a decision reads key records and stream heads: the store, a session
    holding its lock, or the committer's connection."""

    def read(
        self,
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """As :meth:`EventStore.read`."""

    def load_streams(
        self, stream_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
        """As :meth:`EventStore.load_streams`."""


class StoreSession(StateReader, Protocol):
    """Reads and one append inside a transaction that holds the store's write lock."""

    def append(self, batch: WriteBatch) -> Sequence[int]:
        """As :meth:`EventStore.append`."""


class EventStore(Protocol):
    """What the ledger needs of a storage backend."""

    url: str

    def create_schema(self) -> None:
        """Create tables and indexes if missing (safe to run again)."""

    def load_streams(
        self, stream_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
        """The first and the latest event of each existing stream."""

    def lookup_keys(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, KeyRecord]:
        """The idempotency records among ``key_ids``: key rows, and entries recorded
        under those keys (see :func:`ledger.events.key_record_from_entry`)."""

    def read(
        self,
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """:meth:`lookup_keys` and :meth:`load_streams` together (one round trip
        where the backend can).

        ``known``: streams the caller already holds, with their first event and the
        version it holds them at. Such a stream is among the heads returned only if
        its latest version is another (its first event the caller's); the store may
        read less for them (PostgreSQL reads only the latest event, and returns it
        only then)."""

    def append(self, batch: WriteBatch) -> Sequence[int]:
        """Write the batch atomically; return the log positions of its events."""

    def exclusive(self) -> AbstractContextManager[StoreSession]:
        """A session holding the write lock from the first read to the append.

        Used after repeated optimistic conflicts, so that a writer contending with
        many others on hot accounts still makes progress.
        """

    def due_holds(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Open holds whose deadline is at or before ``now``."""

    def read_log(self, after: int, limit: int) -> Sequence[Notification]:
        """Events with position greater than ``after``, in log order."""

    def read_stream_version(self, stream_id: uuid.UUID, version: int) -> bytes | None:
        """The stored state of one event of one stream, or None if absent."""

    def max_position(self) -> int:
        """The highest log position written (0 if none)."""

    def close(self) -> None:
        """Release connections."""


class LoopAppender(Protocol):
    """Appends from one asyncio event loop without blocking it (a backend's option).

    A store that can offers ``loop_appender()``, which returns one of these for the
    running loop. The group commit then decides the groups of that loop's tasks on the
    loop itself and awaits the append, instead of handing them to its thread: no
    thread switch per group, so the loop keeps serving requests while the store
    commits (see :mod:`ledger.commands.group_commit`).
    """

    async def append(self, batch: WriteBatch) -> None:
        """As :meth:`EventStore.append`, awaited (same errors)."""

    async def aclose(self) -> None:
        """Release the connection (on the loop it was opened on)."""

    def discard(self) -> None:
        """Release the connection of a loop that has closed (nothing to await)."""


class CommitterConnection(StateReader, Protocol):
    """A connection of its own for the group commit's thread (a backend's option).

    A store that can offers ``committer_connection()``; the committer thread opens
    one when it starts and closes it when it stops, and reads what its groups need
    and appends them through it: every caller waits on that thread, and a connection
    of its own measured faster there than a pooled one borrowed per group (see
    :mod:`ledger.commands.group_commit`).
    """

    def append(self, batch: WriteBatch) -> None:
        """As :meth:`EventStore.append` (same errors)."""

    def close(self) -> None:
        """Release the connection."""


class SendingAhead(CommitterConnection, Protocol):
    """A committer connection that sends an append and collects its result later (a
    backend's option): while the server writes one group, the committer thread
    decides the next (see :mod:`ledger.commands.group_commit`)."""

    def send_append(self, batch: WriteBatch) -> bool:
        """Send the append and return at once (True); False for a batch it cannot send
        this way (append it with :meth:`append`). Until :meth:`collect_append`,
        nothing else may use the connection."""

    def wait_append(self, wake: int) -> bool:
        """Wait until the result can be collected (True) or the file descriptor
        ``wake`` is readable (False)."""

    def collect_append(self) -> None:
        """Return once the append sent committed, or raise as :meth:`append` does."""
