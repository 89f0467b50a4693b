"""SQLite event store: the embedded default (``sqlite:///path/to/ledger.db``).

Built on eventsourcing's SQLite datastore and application recorder (its
``stored_events`` table, WAL mode, notification log by rowid). Appends run in
``BEGIN IMMEDIATE`` transactions, so writers from several processes queue on SQLite's
single write lock instead of failing on a lock upgrade, and log positions (rowids)
are issued in commit order.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from eventsourcing.persistence import (
    ConnectionPoolClosedError,
    InterfaceError,
    Notification,
    PersistenceError,
    StoredEvent,
)
from eventsourcing.persistence import OperationalError as RecorderOperationalError
from eventsourcing.sqlite import (
    SQLiteApplicationRecorder,
    SQLiteConnection,
    SQLiteConnectionPool,
    SQLiteDatastore,
)

from ledger.errors import StoreError, StoreUnavailable
from ledger.events import TOPIC_ENTRY, key_record_from_entry
from ledger.logs import get_logger
from ledger.store import AppendConflict, KeyRecord, Known, WriteBatch, moved_only, stored_event

__all__ = ["SQLiteEventStore"]

#: Keys looked up per statement. Each statement hands the GIL over and takes it back,
#: which beside the busy deciding thread waits up to the interpreter's switch interval:
#: a few large statements, not many small ones (SQLite allows 32,766 parameters).
_CHUNK = 16_000
#: Events per multi-row INSERT (4 parameters each; SQLite allows 32,766 per statement).
#: One statement per thousands of rows, rather than ``executemany``, because the whole
#: insert then runs in C without the GIL: ``executemany`` takes the GIL back after every
#: row, and while the executor decides the next chunk in the main thread (see
#: ``Executor.run_chunked``) each of those hand-overs waits for the interpreter's switch
#: interval (measured: 17 us per row alone, 4.6 ms per row beside a busy thread).
_ROWS_PER_INSERT = 8000
#: Parameters in one statement (SQLite's default limit is 32,766).
_PARAMS_MAX = 32000
_ROW_MARKS = ",".join(["(?,?,?,?)"] * _ROWS_PER_INSERT)
_CACHE_KIB = 65536
_PAGE_SIZE = 4096
#: WAL pages before a commit also checkpoints (64 MiB): fewer, larger checkpoints
#: cost less per row than one per large commit.
_CHECKPOINT_PAGES = 65536
log = get_logger(__name__)

_LOCK_TIMEOUT_S = 30
_POOL_SIZE = 2

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS ledger_keys ("
    " key_id TEXT PRIMARY KEY, key TEXT NOT NULL, fingerprint TEXT NOT NULL,"
    " outcome BLOB NOT NULL) WITHOUT ROWID",
    "CREATE TABLE IF NOT EXISTS ledger_open_holds ( hold_id TEXT PRIMARY KEY, expires_at TEXT)",
    "CREATE INDEX IF NOT EXISTS ledger_open_holds_due ON ledger_open_holds (expires_at)"
    " WHERE expires_at IS NOT NULL",
)


def _utc(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).isoformat()


def _prepare_file(path: str) -> None:
    """Set a new database file's page size and WAL mode before anything else touches it.

    Every append inserts keys spread at random over the stream index, dirtying about
    one page per row, which smaller pages would write less of; but the event rows
    (200-400 bytes) then split pages every few rows, and the CPU that costs dominates:
    measured on 2 cores, 1 KiB pages insert at ~20 us of CPU per row, 4 KiB at ~12.
    """
    if path.startswith("file:") or os.path.exists(path):
        return
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"PRAGMA page_size={_PAGE_SIZE}")
        conn.execute("PRAGMA journal_mode=WAL")
    finally:
        conn.close()


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


#: Connection pools a forked child inherited: never used nor closed there (SQLite's
#: connections must not cross a fork; closing the child's copy of a file descriptor
#: would also drop the POSIX locks the child's own connections hold on the file).
_INHERITED: list[SQLiteConnectionPool] = []


class _Datastore(SQLiteDatastore):
    """eventsourcing's datastore; a forked child opens connections of its own."""

    def __init__(self, path: str) -> None:
        self._path = path
        super().__init__(path, lock_timeout=_LOCK_TIMEOUT_S, pool_size=_POOL_SIZE)
        self._pid = os.getpid()
        #: Taken only in a forked child, by the first threads to want a connection.
        self._fork_lock = threading.Lock()
        #: Connections handed out and not yet back (``_held``: by the calling thread),
        #: whether the store is closing, and whether the last connection back closes
        #: the pool: :meth:`close` waits for them (see there).
        self._users = 0
        self._held = threading.local()
        self._closing = False
        self._close_when_back = False
        self._returned = threading.Condition()

    @contextmanager
    def get_connection(self, *, commit: bool) -> Iterator[SQLiteConnection]:
        """A pooled connection of this process's own pool (ConnectionPoolClosedError
        once the store is closing)."""
        if self._pid != os.getpid():
            with self._fork_lock:  # one thread of the child swaps the pool, once
                if self._pid != os.getpid():
                    if self._closing:  # closed (or closing) before the fork, or here
                        raise ConnectionPoolClosedError("the store is closed")
                    _INHERITED.append(self.pool)
                    self.pool = SQLiteConnectionPool(
                        db_name=self._path, lock_timeout=_LOCK_TIMEOUT_S, pool_size=_POOL_SIZE
                    )
                    self._pid = os.getpid()
                    self._users, self._close_when_back = 0, False
                    self._held = threading.local()
                    self._returned = threading.Condition()
        with self._returned:
            if self._closing:
                raise ConnectionPoolClosedError("the store is closing")
            self._users += 1
        held = self._held
        held.count = getattr(held, "count", 0) + 1
        try:
            with super().get_connection(commit=commit) as conn:
                yield conn
        finally:
            held.count -= 1
            with self._returned:
                self._users -= 1
                close_now = False
                if not self._users:
                    self._returned.notify_all()
                    close_now, self._close_when_back = self._close_when_back, False
            if close_now:
                super().close()

    def close(self) -> None:
        """Close this process's pool once the connections in use are back (closing
        one while another thread runs a statement on it is a segmentation fault in
        sqlite3). New requests fail at once. The caller's own connections (a close
        inside :meth:`exclusive`), or another thread's not back within the lock
        timeout plus 5 s (with a warning), are not waited for: the last one back
        closes the pool. A forked child's close leaves the parent's pool alone."""
        if self._pid != os.getpid():
            self._closing = True  # the inherited lock may be held: not taken
            return
        mine = getattr(self._held, "count", 0)
        with self._returned:
            self._closing = True
            if not self._returned.wait_for(lambda: self._users <= mine, _LOCK_TIMEOUT_S + 5):
                log.warning("ledger.sqlite_close_deferred", connections_in_use=self._users)
            if self._users:
                self._close_when_back = True
                return
        super().close()


class SQLiteEventStore:
    """An :class:`~ledger.store.EventStore` in one SQLite file."""

    def __init__(self, url: str, path: str) -> None:
        self.url = url
        self.path = path
        try:
            _prepare_file(path)
        except sqlite3.Error as e:  # a missing directory, no permission
            raise StoreUnavailable(f"SQLite store {url} cannot be opened: {e}") from e
        self.datastore = _Datastore(path)
        self.recorder = SQLiteApplicationRecorder(self.datastore)

    @staticmethod
    def _tuned(conn: Any) -> sqlite3.Cursor:
        """A cursor on a pooled connection set for durable commits and with a page
        cache fit for the random-key indexes of an event store (default: 2 MB)."""
        cursor: sqlite3.Cursor = conn.cursor().sqlite_cursor
        if not getattr(conn, "_ledger_tuned", False):
            cursor.execute("PRAGMA synchronous=FULL")
            cursor.execute(f"PRAGMA cache_size=-{_CACHE_KIB}")
            cursor.execute(f"PRAGMA wal_autocheckpoint={_CHECKPOINT_PAGES}")
            conn._ledger_tuned = True
        return cursor

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Cursor]:
        try:
            with self.datastore.get_connection(commit=True) as conn:
                cursor = self._tuned(conn)
                cursor.execute("BEGIN IMMEDIATE")
                try:
                    yield cursor
                except BaseException:
                    cursor.execute("ROLLBACK")
                    raise
                cursor.execute("COMMIT")
        except sqlite3.IntegrityError as e:
            raise AppendConflict(str(e)) from e
        except sqlite3.OperationalError as e:
            if getattr(e, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_READONLY:
                # Not busy: waiting and trying again cannot make it writable.
                raise StoreError(f"SQLite store {self.url} is read-only: {e}") from e
            raise StoreUnavailable(f"SQLite store {self.url} is busy or unavailable: {e}") from e
        except InterfaceError as e:  # eventsourcing could not open the file (a directory)
            raise StoreUnavailable(f"SQLite store {self.url} is busy or unavailable: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store {self.url} failed: {e}") from e
        except ConnectionPoolClosedError as e:
            raise self._closed() from e

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Cursor]:
        try:
            with self.datastore.get_connection(commit=False) as conn:
                yield self._tuned(conn)
        except (sqlite3.OperationalError, InterfaceError) as e:
            raise StoreUnavailable(f"SQLite store {self.url} is unavailable: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"SQLite store {self.url} failed: {e}") from e
        except ConnectionPoolClosedError as e:
            raise self._closed() from e

    @contextmanager
    def _recorder(self) -> Iterator[None]:
        """The errors of eventsourcing's recorder as the ledger's (as :meth:`_read`)."""
        try:
            yield
        except ConnectionPoolClosedError as e:
            raise self._closed() from e
        except (RecorderOperationalError, InterfaceError) as e:
            raise StoreUnavailable(f"SQLite store {self.url} is unavailable: {e}") from e
        except PersistenceError as e:
            raise StoreError(f"SQLite store {self.url} failed: {e}") from e

    def _closed(self) -> StoreError:
        """The error of a read or write that meets the store closed (a race with
        :meth:`close`)."""
        return StoreError(f"SQLite store {self.url} is closed")

    def create_schema(self) -> None:
        """Create the event table and the ledger's side tables if missing."""
        with self._write() as cur:
            for statement in (*self.recorder.create_table_statements, *_SCHEMA):
                cur.execute(statement)
            cur.execute("PRAGMA synchronous")
            level = cur.fetchone()[0]
        if level < 2:  # 2 = FULL: a commit is on disk before it is acknowledged
            raise StoreError(f"SQLite synchronous level is {level}; the ledger requires FULL (2)")

    def load_streams(
        self, stream_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
        """The first and latest event of each stream that exists."""
        with self._read() as cur:
            return _load_streams(cur, stream_ids)

    def lookup_keys(self, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, KeyRecord]:
        """The idempotency records among ``key_ids`` (key rows and entries)."""
        with self._read() as cur:
            return _lookup_keys(cur, key_ids)

    def read(
        self,
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """Key records and stream heads, from one consistent snapshot."""
        with self._read() as cur:
            cur.execute("BEGIN")
            try:
                return _read(cur, key_ids, stream_ids, known)
            finally:
                cur.execute("COMMIT")

    def append(self, batch: WriteBatch) -> Sequence[int]:
        """Write the batch in one IMMEDIATE transaction; conflicts raise AppendConflict."""
        with self._write() as cur:
            _append(cur, batch)
        return []

    @contextmanager
    def exclusive(self) -> Iterator[SQLiteSession]:
        """Hold the write lock for a whole read-decide-append cycle (see EventStore)."""
        with self._write() as cur:
            yield SQLiteSession(cur)

    def due_holds(self, now: datetime, limit: int) -> list[uuid.UUID]:
        """Open holds due at ``now``, earliest first."""
        with self._read() as cur:
            cur.execute(
                "SELECT hold_id FROM ledger_open_holds WHERE expires_at IS NOT NULL"
                " AND expires_at <= ? ORDER BY expires_at LIMIT ?",
                (_utc(now), limit),
            )
            return [uuid.UUID(row[0]) for row in cur.fetchall()]

    def read_log(self, after: int, limit: int) -> Sequence[Notification]:
        """Events after position ``after``, in log order."""
        with self._recorder():
            return self.recorder.select_notifications(after, limit, inclusive_of_start=False)

    def read_stream_version(self, stream_id: uuid.UUID, version: int) -> bytes | None:
        """The state of one event of one stream, or None."""
        with self._recorder():
            events = self.recorder.select_events(stream_id, gt=version - 1, lte=version)
        return bytes(events[0].state) if events else None

    def max_position(self) -> int:
        """The highest log position (0 for an empty log)."""
        with self._recorder():
            return self.recorder.max_notification_id() or 0

    def close(self) -> None:
        """Close the connection pool."""
        self.datastore.close()


class SQLiteSession:
    """Reads and one append inside a transaction that already holds the write lock."""

    def __init__(self, cur: sqlite3.Cursor) -> None:
        self.cur = cur

    def read(
        self,
        key_ids: Collection[uuid.UUID],
        stream_ids: Collection[uuid.UUID],
        known: Mapping[uuid.UUID, Known] | None = None,
    ) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
        """As :meth:`SQLiteEventStore.read`, under the lock."""
        return _read(self.cur, key_ids, stream_ids, known)

    def load_streams(
        self, stream_ids: Collection[uuid.UUID]
    ) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
        """As :meth:`SQLiteEventStore.load_streams`, under the lock."""
        return _load_streams(self.cur, stream_ids)

    def append(self, batch: WriteBatch) -> Sequence[int]:
        """As :meth:`SQLiteEventStore.append`, in the locked transaction."""
        _append(self.cur, batch)
        return []


def _read(
    cur: sqlite3.Cursor,
    key_ids: Collection[uuid.UUID],
    stream_ids: Collection[uuid.UUID],
    known: Mapping[uuid.UUID, Known] | None,
) -> tuple[dict[uuid.UUID, KeyRecord], dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]]:
    """Key records and stream heads (known streams only if they moved: a probe costs
    no round trip here, so they are read like the others)."""
    if not known:
        return _lookup_keys(cur, key_ids), _load_streams(cur, stream_ids)
    found = _load_streams(cur, [*stream_ids, *known])
    return _lookup_keys(cur, key_ids), moved_only(found, known)


def _load_streams(
    cur: sqlite3.Cursor, stream_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[StoredEvent, StoredEvent]]:
    """First and latest event of each stream: two primary-key probes per stream (no
    round trips to save in SQLite, and a probe does not depend on the stream's length)."""
    found: dict[uuid.UUID, tuple[StoredEvent, StoredEvent]] = {}
    for sid in stream_ids:
        cur.execute(
            "SELECT originator_version, topic, state FROM stored_events"
            " WHERE originator_id = ? AND originator_version = 1",
            (sid.hex,),
        )
        first_row = cur.fetchone()
        if first_row is None:
            continue
        first = stored_event(sid, first_row[0], first_row[1], bytes(first_row[2]))
        cur.execute(
            "SELECT originator_version, topic, state FROM stored_events WHERE originator_id = ?"
            " ORDER BY originator_version DESC LIMIT 1",
            (sid.hex,),
        )
        last_row = cur.fetchone()
        last = (
            first
            if last_row[0] == 1
            else stored_event(sid, last_row[0], last_row[1], bytes(last_row[2]))
        )
        found[sid] = (first, last)
    return found


def _lookup_keys(cur: sqlite3.Cursor, key_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, KeyRecord]:
    found: dict[uuid.UUID, KeyRecord] = {}
    for chunk in _chunks([k.hex for k in key_ids], _CHUNK):
        marks = ",".join("?" * len(chunk))
        cur.execute(
            f"SELECT key_id, key, fingerprint, outcome FROM ledger_keys WHERE key_id IN ({marks})",
            chunk,
        )
        for key_id, key, fp, outcome in cur.fetchall():
            kid = uuid.UUID(key_id)
            found[kid] = KeyRecord(kid, key, fp, bytes(outcome))
        cur.execute(
            "SELECT originator_id, topic, state FROM stored_events"
            f" WHERE originator_id IN ({marks}) AND originator_version = 1 AND topic = ?",
            [*chunk, TOPIC_ENTRY],
        )
        for sid, topic, state in cur.fetchall():
            entry_id = uuid.UUID(sid)
            found[entry_id] = key_record_from_entry(stored_event(entry_id, 1, topic, bytes(state)))
    return found


def _append(cur: sqlite3.Cursor, batch: WriteBatch) -> None:
    """Check, then write, inside a transaction that holds the write lock."""
    _check_versions(cur, batch.expectations_to_check())
    _check_keys_free(cur, batch.entry_keys)
    for chunk in _chunks(batch.events, _ROWS_PER_INSERT):
        cur.execute(
            "INSERT INTO stored_events (originator_id, originator_version, topic, state)"
            f" VALUES {_ROW_MARKS[: 10 * len(chunk) - 1]}",
            [
                value
                for e in chunk
                for value in (e.originator_id.hex, e.originator_version, e.topic, e.state)
            ],
        )
    # Each statement hands the GIL over and back (see _ROWS_PER_INSERT): skip empty ones.
    if batch.keys:
        cur.executemany(
            "INSERT INTO ledger_keys (key_id, key, fingerprint, outcome) VALUES (?, ?, ?, ?)",
            [(k.key_id.hex, k.key, k.fingerprint, k.outcome) for k in batch.keys],
        )
    if batch.holds_opened:
        cur.executemany(
            "INSERT INTO ledger_open_holds (hold_id, expires_at) VALUES (?, ?)",
            [(h.hex, _utc(at)) for h, at in batch.holds_opened],
        )
    if batch.holds_closed:
        cur.executemany(
            "DELETE FROM ledger_open_holds WHERE hold_id = ?",
            [(h.hex,) for h in batch.holds_closed],
        )


def _check_versions(cur: sqlite3.Cursor, expect: dict[uuid.UUID, int]) -> None:
    """Every stream read is at the version the decision saw (see
    :meth:`WriteBatch.expectations_to_check`). One statement per chunk, a primary-key
    probe per stream, comparing in SQL: only a stream that moved comes back, so the
    writer thread builds no rows while the next chunk is decided beside it."""
    items = list(expect.items())
    for start in range(0, len(items), _CHUNK):
        chunk = {sid.hex: version for sid, version in items[start : start + _CHUNK]}
        cur.execute(
            "SELECT j.key, j.value FROM json_each(?) AS j WHERE j.value IS NOT"
            " (SELECT coalesce(MAX(originator_version), 0) FROM stored_events"
            " WHERE originator_id = j.key) LIMIT 1",
            (json.dumps(chunk),),
        )
        moved = cur.fetchone()
        if moved is not None:
            raise AppendConflict(
                f"stream {uuid.UUID(moved[0])} is not at version {moved[1]} any more"
            )


def _check_keys_free(cur: sqlite3.Cursor, key_ids: list[uuid.UUID]) -> None:
    for chunk in _chunks([k.hex for k in key_ids], _PARAMS_MAX):
        marks = ",".join("?" * len(chunk))
        cur.execute(f"SELECT key_id FROM ledger_keys WHERE key_id IN ({marks}) LIMIT 1", chunk)
        row = cur.fetchone()
        if row is not None:
            raise AppendConflict(f"key {row[0]} was recorded by a concurrent writer")
