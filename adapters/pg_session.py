"""The PostgreSQL store's exclusive session: reads and one append under the writers' lock.

:meth:`PostgresEventStore.exclusive
<ledger.adapters.postgres_store.PostgresEventStore.exclusive>` (the fallback after
repeated optimistic conflicts) opens the transaction, takes the writers' lock and
yields a :class:`PostgresSession`, which reads and appends in that transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import StoredEvent

from ledger.store import KeyRecord, Known, WriteBatch

if TYPE_CHECKING:
    from .postgres_store import PostgresEventStore

__all__ = ["PostgresSession"]


class PostgresSession:
    """Reads and one append inside a transaction that holds the writers' lock."""

    def __init__(self, store: PostgresEventStore, cur: psycopg.Cursor[Any]) -> None:
        self.store = store
        self.cur = cur

    def read(
        self,
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """As :meth:`PostgresEventStore.read`, under the lock."""
        if not key_ids and not stream_ids and not known:
            return {}, {}
        return self.store.read_with(self.cur, key_ids, stream_ids, known)

    def load_streams(
        self, stream_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
        """As :meth:`PostgresEventStore.load_streams`, under the lock."""
        return self.read((), stream_ids)[1]

    def append(self, batch: WriteBatch) -> Sequence[int]:
        """As :meth:`PostgresEventStore.append`, in the locked transaction."""
        self.store.write_locked(self.cur, batch)
        return []
